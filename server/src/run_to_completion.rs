//! Runs every request handler to completion, even when its client goes away.
//!
//! A gRPC handler future is dropped the moment its client disconnects. A handler dropped in the
//! middle of a transaction leaves work half done (an agent attached but never marked online) and
//! can leave a pooled PostgreSQL connection inside an open transaction (sqlx 0.9 does not roll
//! back a `BEGIN` whose future was dropped before its reply arrived). Handlers here therefore run
//! as their own tasks: the client's disconnect drops only the wait for the answer. The tasks are
//! tracked, so shutdown waits for them before it closes the database.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_util::task::TaskTracker;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

/// Wraps a service so each call runs on a task of `tasks`.
#[derive(Clone)]
pub struct RunToCompletionLayer {
    tasks: TaskTracker,
}

impl RunToCompletionLayer {
    pub fn new(tasks: TaskTracker) -> Self {
        Self { tasks }
    }
}

impl<S> Layer<S> for RunToCompletionLayer {
    type Service = RunToCompletion<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RunToCompletion {
            inner,
            tasks: self.tasks.clone(),
        }
    }
}

/// See [`RunToCompletionLayer`].
#[derive(Clone)]
pub struct RunToCompletion<S> {
    inner: S,
    tasks: TaskTracker,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, Request> Service<Request> for RunToCompletion<S>
where
    S: Service<Request>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let call = self
            .inner
            .call(request)
            .instrument(tracing::Span::current());
        let handle = self.tasks.spawn(call);
        Box::pin(async move {
            match handle.await {
                Ok(result) => result,
                // Handlers do not panic; if one does, the caller sees it as before.
                Err(error) => std::panic::resume_unwind(error.into_panic()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::sync::oneshot;

    /// A service whose call waits for `release` and then records that it finished.
    #[derive(Clone)]
    struct Slow {
        release: Arc<tokio::sync::Mutex<Option<oneshot::Receiver<()>>>>,
        finished: Arc<AtomicBool>,
    }

    impl Service<()> for Slow {
        type Response = ();
        type Error = ();
        type Future = BoxFuture<Result<(), ()>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, (): ()) -> Self::Future {
            let release = self.release.clone();
            let finished = self.finished.clone();
            Box::pin(async move {
                if let Some(release) = release.lock().await.take() {
                    let _ = release.await;
                }
                finished.store(true, Ordering::SeqCst);
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn a_dropped_call_still_finishes_and_shutdown_can_wait_for_it() {
        let (release, released) = oneshot::channel();
        let finished = Arc::new(AtomicBool::new(false));
        let tasks = TaskTracker::new();
        let mut service = RunToCompletionLayer::new(tasks.clone()).layer(Slow {
            release: Arc::new(tokio::sync::Mutex::new(Some(released))),
            finished: finished.clone(),
        });
        // The client goes away: its future is dropped before the handler is done.
        drop(service.call(()));
        assert!(!finished.load(Ordering::SeqCst));
        release.send(()).expect("handler waiting");
        tasks.close();
        tasks.wait().await;
        assert!(finished.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn the_caller_gets_the_handler_result() {
        let tasks = TaskTracker::new();
        let finished = Arc::new(AtomicBool::new(false));
        let mut service = RunToCompletionLayer::new(tasks).layer(Slow {
            release: Arc::new(tokio::sync::Mutex::new(None)),
            finished: finished.clone(),
        });
        assert_eq!(service.call(()).await, Ok(()));
        assert!(finished.load(Ordering::SeqCst));
    }
}
