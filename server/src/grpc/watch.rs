//! The server side of the Watch RPCs (WatchExecution, WatchReleaseExecution, WatchActivity):
//! a task per watcher feeding a bounded channel that the response streams. The task ends when
//! its loop returns or the client leaves; a slow client holds back only its own task.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use super::ApiContext;
use crate::auth::{Action, TenantScope};
use crate::domain::{CustomerId, Quota, QuotaExceeded, UserId};

/// How often a watcher re-reads when nothing woke it. Every change wakes its watchers — on this
/// server through the change signals, from other replicas through PostgreSQL notifications — so
/// this is only the safety net for a notification lost with a connection; an idle watcher costs
/// one read per interval.
pub(super) const SAFETY_POLL: Duration = Duration::from_secs(30);

/// The response stream of a Watch RPC.
pub type WatchStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The feeding end of one watcher's stream.
pub(super) struct Watcher<T> {
    sender: mpsc::Sender<Result<T, Status>>,
}

impl<T> Watcher<T> {
    /// Sends one message; false when the client has left.
    pub async fn send(&self, message: T) -> bool {
        self.sender.send(Ok(message)).await.is_ok()
    }

    /// Ends the stream with an error.
    pub async fn fail(&self, error: impl Into<Status>) {
        let _ = self.sender.send(Err(error.into())).await;
    }

    /// Completes when the client has left.
    pub async fn closed(&self) {
        self.sender.closed().await
    }

    /// Waits until `signal` is bumped or `poll` has passed (changes made where nothing bumps it,
    /// such as another replica); false when the client left meanwhile.
    pub async fn wait_for_change(&self, signal: &mut watch::Receiver<u64>, poll: Duration) -> bool {
        tokio::select! {
            changed = signal.changed() => {
                if changed.is_err() {
                    // Nobody bumps this signal any more: fall back to polling.
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = self.sender.closed() => return false,
                    }
                }
                true
            }
            _ = tokio::time::sleep(poll) => true,
            _ = self.sender.closed() => false,
        }
    }
}

/// How often a watch stream re-checks its caller's access when nothing on this server said it
/// may have changed: how a change made through another replica reaches it (plus the
/// authentication cache's lifetime, `store::auth_cache::TTL`).
pub(super) const ACCESS_RECHECK: Duration = Duration::from_secs(3);

/// After a re-check, a stream waits this long before the next: however often access changes
/// (every token revocation on this server signals), each open stream checks at most once per
/// gap.
const RECHECK_GAP: Duration = Duration::from_secs(1);

/// Who a watch stream is for, re-checked for as long as it is open: the request's credentials
/// and the customer and action it was admitted for.
pub(super) struct AccessCheck {
    context: ApiContext,
    metadata: MetadataMap,
    customer_id: i64,
    action: Action,
}

impl AccessCheck {
    pub(super) fn new(
        context: &ApiContext,
        metadata: &MetadataMap,
        customer_id: i64,
        action: Action,
    ) -> Self {
        Self {
            context: context.clone(),
            metadata: metadata.clone(),
            customer_id,
            action,
        }
    }

    /// Completes with the status a new call would get once the caller's access is gone (token
    /// revoked or expired, user deactivated, membership removed or role changed): checked at
    /// once when this server changes who may do what, and every [`ACCESS_RECHECK`] otherwise.
    /// A database error keeps the stream (the next check decides).
    async fn lost(self) -> Status {
        let mut changes = self.context.store.access_changes();
        let mut signalled = true;
        loop {
            tokio::select! {
                changed = changes.changed(), if signalled => signalled = changed.is_ok(),
                _ = tokio::time::sleep(ACCESS_RECHECK) => {}
            }
            if let Err(status) = self
                .context
                .scope(&self.metadata, self.customer_id, self.action)
                .await
                && matches!(
                    status.code(),
                    Code::Unauthenticated | Code::PermissionDenied | Code::NotFound
                )
            {
                return status;
            }
            tokio::time::sleep(RECHECK_GAP).await;
        }
    }
}

/// Starts a watch: `feed` runs as its own task with a [`Watcher`] of a channel of `buffer`
/// messages, and the returned stream carries what it sends. The `ticket` counts the stream
/// against its caller's quota until the task ends. When `access` is lost the feed stops and
/// the stream ends with the status a new call would get.
pub(super) fn spawn_watch<T, F, Fut>(
    buffer: usize,
    ticket: WatchTicket,
    access: AccessCheck,
    feed: F,
) -> WatchStream<T>
where
    T: Send + 'static,
    F: FnOnce(Watcher<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(buffer);
    let ending = sender.clone();
    let fed = feed(Watcher { sender });
    tokio::spawn(async move {
        tokio::select! {
            () = fed => {}
            status = access.lost() => {
                // The feed (and its sender) is gone; this is the stream's last message, if the
                // client still reads at all.
                let _ = tokio::time::timeout(ACCESS_RECHECK, ending.send(Err(status))).await;
            }
            () = ending.closed() => {}
        }
        drop(ticket);
    });
    Box::pin(ReceiverStream::new(receiver))
}

/// The Watch streams open on this server, per customer and user.
#[derive(Debug, Default)]
pub struct OpenWatches {
    open: Mutex<HashMap<(CustomerId, UserId), i64>>,
}

impl OpenWatches {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<(CustomerId, UserId), i64>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one more stream of the scope's caller, if that stays within `limit`.
    pub(super) fn admit(
        self: &Arc<Self>,
        scope: &TenantScope,
        limit: i64,
    ) -> Result<WatchTicket, QuotaExceeded> {
        let key = (scope.customer_id(), scope.actor());
        let mut open = self.open();
        let used = open.get(&key).copied().unwrap_or(0);
        if used >= limit {
            return Err(QuotaExceeded {
                customer_id: key.0,
                quota: Quota::WatchStreamsPerCaller,
                limit,
                used,
                wanted: 1,
            });
        }
        open.insert(key, used + 1);
        Ok(WatchTicket {
            watches: self.clone(),
            key,
        })
    }
}

/// One open Watch stream; dropping it gives the slot back.
#[derive(Debug)]
pub(super) struct WatchTicket {
    watches: Arc<OpenWatches>,
    key: (CustomerId, UserId),
}

impl Drop for WatchTicket {
    fn drop(&mut self) {
        let mut open = self.watches.open();
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count <= 0 {
                open.remove(&self.key);
            }
        }
    }
}
