//! The live activity feed: one task per server tails the `activity_events` table and broadcasts
//! each new event to the WatchActivity streams of this server, which keep their customer's.
//!
//! Tailing the table (rather than announcing events where they are written) makes events written
//! by any replica, in any transaction, reach every watcher once committed. On PostgreSQL ids are
//! taken before commit, so a later id can commit first: an id skipped by a read is remembered and
//! looked for again until it appears or [`GAP_PATIENCE`] passes (a rolled-back insert leaves a
//! gap forever).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::ActivityEvent;
use crate::store::SystemStore;

/// How often the table is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long a skipped id is looked for.
const GAP_PATIENCE: Duration = Duration::from_secs(10);
/// Most skipped ids remembered at once.
const MAX_GAPS: usize = 10_000;
/// Most events read per poll.
const BATCH: u64 = 1000;
/// Events a slow watcher may fall behind before it re-reads from the database.
const CHANNEL_CAPACITY: usize = 4096;

/// Subscribe to every new event of every customer (filter by customer!).
#[derive(Clone)]
pub struct ActivityFeed {
    sender: broadcast::Sender<Arc<ActivityEvent>>,
}

impl Default for ActivityFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl ActivityFeed {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        Self { sender }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ActivityEvent>> {
        self.sender.subscribe()
    }

    /// Tails the table until `shutdown` is cancelled.
    pub fn spawn(&self, store: SystemStore, shutdown: CancellationToken) -> JoinHandle<()> {
        let sender = self.sender.clone();
        tokio::spawn(async move {
            let mut tail = Tail {
                last: None,
                gaps: BTreeMap::new(),
            };
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(error) = tail.poll(&store, &sender).await {
                            tracing::warn!(%error, "cannot read the activity feed");
                        }
                    }
                    () = shutdown.cancelled() => return,
                }
            }
        })
    }
}

struct Tail {
    /// The highest id read; `None` until the first poll found where the table ends.
    last: Option<i64>,
    /// Ids skipped by a read, with when they were first missed.
    gaps: BTreeMap<i64, Instant>,
}

impl Tail {
    async fn poll(
        &mut self,
        store: &SystemStore,
        sender: &broadcast::Sender<Arc<ActivityEvent>>,
    ) -> Result<(), crate::store::StoreError> {
        let Some(mut last) = self.last else {
            // Watchers replay older events themselves (WatchActivity.after_id).
            self.last = Some(store.latest_activity_id().await?);
            return Ok(());
        };
        if !self.gaps.is_empty() {
            let ids: Vec<i64> = self.gaps.keys().copied().collect();
            for event in store.activity_with_ids(&ids).await? {
                self.gaps.remove(&event.id);
                let _ = sender.send(Arc::new(event));
            }
            self.gaps
                .retain(|_, missed| missed.elapsed() < GAP_PATIENCE);
        }
        let now = Instant::now();
        for event in store.activity_after(last, BATCH).await? {
            let room = MAX_GAPS.saturating_sub(self.gaps.len());
            for skipped in (last + 1..event.id).take(room) {
                self.gaps.insert(skipped, now);
            }
            last = event.id;
            let _ = sender.send(Arc::new(event));
        }
        self.last = Some(last);
        Ok(())
    }
}
