//! The server side of the Watch RPCs (WatchExecution, WatchReleaseExecution, WatchActivity):
//! a task per watcher feeding a bounded channel that the response streams. The task ends when
//! its loop returns or the client leaves; a slow client holds back only its own task.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

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

/// Starts a watch: `feed` runs as its own task with a [`Watcher`] of a channel of `buffer`
/// messages, and the returned stream carries what it sends.
pub(super) fn spawn_watch<T, F, Fut>(buffer: usize, feed: F) -> WatchStream<T>
where
    T: Send + 'static,
    F: FnOnce(Watcher<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(buffer);
    tokio::spawn(feed(Watcher { sender }));
    Box::pin(ReceiverStream::new(receiver))
}
