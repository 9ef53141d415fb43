//! The application layer: every operation that spans components — queueing a run, cancelling,
//! retrying, an execution ending, deploying, approving, rejecting and moving a release — lives
//! here once. gRPC handlers and the dashboard (through them), the dispatcher and the agent
//! stream call these; none of them repeats the sequence.
//!
//! A handler authenticates, validates and converts; an operation here orchestrates (store calls
//! and what must happen after they commit: watchers woken, other replicas told, dispatch woken,
//! a release moved on); the domain decides; the store applies one transaction.

mod moves;
mod releases;
mod runs;
mod signals;

use std::sync::Arc;

use tokio::sync::Notify;

pub use signals::{ExecutionSignals, ReleaseSignals};

use crate::agents::AgentHub;
use crate::domain::ValidationError;
use crate::store::{Notifier, Store, StoreError, SystemStore};

/// What an operation of the application layer can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request does not fit what is stored (e.g. parameters of the pipeline); names the
    /// field.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Handle to the application layer; cheap to clone.
#[derive(Clone)]
pub struct Operations {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// The cross-customer operations of moving work along (release moves after a deploy ends).
    system: SystemStore,
    hub: Arc<AgentHub>,
    signals: ExecutionSignals,
    release_signals: ReleaseSignals,
    notifier: Notifier,
    /// Wakes the dispatch loop of this replica.
    dispatch_wanted: Notify,
}

impl Operations {
    /// `system` is the store view of the dispatcher (the operations here move work along on its
    /// behalf after a request's own transaction committed).
    pub(crate) fn new(
        store: Store,
        system: SystemStore,
        hub: Arc<AgentHub>,
        notifier: Notifier,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                system,
                hub,
                signals: ExecutionSignals::default(),
                release_signals: ReleaseSignals::default(),
                notifier,
                dispatch_wanted: Notify::new(),
            }),
        }
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Change counters of executions (for WatchExecution).
    pub fn signals(&self) -> &ExecutionSignals {
        &self.inner.signals
    }

    /// Change counters of release executions (for WatchReleaseExecution).
    pub fn release_signals(&self) -> &ReleaseSignals {
        &self.inner.release_signals
    }

    /// Completes when someone asked for a dispatch round (the dispatch loop waits on it).
    pub(crate) fn dispatch_wanted(&self) -> &Notify {
        &self.inner.dispatch_wanted
    }
}
