//! Wake-ups for WatchExecution: a counter per watched execution, bumped whenever something of it
//! is stored. Watchers read what changed from the database, so a bump carries no data and a missed
//! one only delays an update until the watcher's periodic check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::domain::{ExecutionId, ReleaseExecutionId};

/// Change counters of executions.
pub type ExecutionSignals = Signals<ExecutionId>;
/// Change counters of release executions.
pub type ReleaseSignals = Signals<ReleaseExecutionId>;

/// Per-record change counters; cheap to clone.
#[derive(Clone)]
pub struct Signals<K> {
    counters: Arc<Mutex<HashMap<K, watch::Sender<u64>>>>,
}

impl<K> Default for Signals<K> {
    fn default() -> Self {
        Self {
            counters: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy> Signals<K> {
    fn counters(&self) -> std::sync::MutexGuard<'_, HashMap<K, watch::Sender<u64>>> {
        self.counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Follows an execution's changes.
    pub fn subscribe(&self, execution_id: K) -> watch::Receiver<u64> {
        self.counters()
            .entry(execution_id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Says the execution changed; forgets executions nobody watches any more.
    pub fn bump(&self, execution_id: K) {
        let mut counters = self.counters();
        let unwatched = match counters.get(&execution_id) {
            Some(sender) if sender.receiver_count() > 0 => {
                sender.send_modify(|counter| *counter += 1);
                false
            }
            Some(_) => true,
            None => false,
        };
        if unwatched {
            counters.remove(&execution_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_reach_subscribers_and_unwatched_entries_are_dropped() {
        let signals = ExecutionSignals::default();
        let execution = ExecutionId::from_db(1);
        let mut watcher = signals.subscribe(execution);
        signals.bump(execution);
        assert!(watcher.has_changed().expect("open"));
        watcher.mark_unchanged();
        drop(watcher);
        signals.bump(execution);
        assert!(signals.counters().is_empty());
    }
}
