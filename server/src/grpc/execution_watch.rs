//! WatchExecution's loop, and the reads its watchers share: however many watch one execution,
//! each change is read from the database once (the first watcher woken reads, the others take
//! its read), and an idle watcher reads nothing until the execution changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cygnet_proto::v1 as pb;

use super::watch::{SAFETY_POLL, Watcher};
use crate::auth::TenantScope;
use crate::domain::execution::{Execution, LogChunk};
use crate::domain::{ExecutionId, Page, PageRequest};
use crate::store::{Store, StoreError};

/// Log chunks per read.
const LOG_PAGE: u64 = 500;

/// What the watchers of one execution read for one change of it.
#[derive(Default)]
struct Reads {
    /// The change (the execution's signal counter) the reads below are of.
    version: Option<u64>,
    /// Pages of the log after a sequence.
    logs: HashMap<i64, Page<LogChunk>>,
    execution: Option<Execution>,
}

impl Reads {
    /// Makes these the reads of change `version`: kept when they are of it (or of a later
    /// change: newer is as good), dropped otherwise; `None` asks for fresh reads.
    fn at(&mut self, version: Option<u64>) {
        let current = match (version, self.version) {
            (Some(wanted), Some(held)) => held >= wanted,
            _ => false,
        };
        if !current {
            *self = Reads {
                version,
                ..Default::default()
            };
        }
    }
}

/// The latest reads of each watched execution on this server; cheap to clone.
#[derive(Clone)]
pub struct SharedReads {
    store: Store,
    reads: Arc<Mutex<HashMap<ExecutionId, Arc<tokio::sync::Mutex<Reads>>>>>,
}

impl SharedReads {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            reads: Default::default(),
        }
    }

    fn entry(&self, execution_id: ExecutionId) -> Arc<tokio::sync::Mutex<Reads>> {
        self.reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(execution_id)
            .or_default()
            .clone()
    }

    /// Forgets an execution nobody watches any more.
    fn release(&self, execution_id: ExecutionId) {
        let mut reads = self
            .reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if reads
            .get(&execution_id)
            .is_some_and(|entry| Arc::strong_count(entry) == 1)
        {
            reads.remove(&execution_id);
        }
    }

    /// One page of the log after `after`, as of change `version` (`None`: read afresh).
    async fn logs(
        &self,
        scope: &TenantScope,
        execution_id: ExecutionId,
        version: Option<u64>,
        after: i64,
    ) -> Result<Page<LogChunk>, StoreError> {
        let entry = self.entry(execution_id);
        let mut reads = entry.lock().await;
        reads.at(version);
        if let Some(page) = reads.logs.get(&after) {
            return Ok(page.clone());
        }
        let page = self
            .store
            .execution_logs(
                scope,
                execution_id,
                None,
                after,
                PageRequest::first(LOG_PAGE),
            )
            .await?;
        reads.logs.insert(after, page.clone());
        Ok(page)
    }

    /// The execution with its steps, as of change `version` (`None`: read afresh).
    async fn execution(
        &self,
        scope: &TenantScope,
        execution_id: ExecutionId,
        version: Option<u64>,
    ) -> Result<Execution, StoreError> {
        let entry = self.entry(execution_id);
        let mut reads = entry.lock().await;
        reads.at(version);
        if let Some(execution) = &reads.execution {
            return Ok(execution.clone());
        }
        let execution = self.store.get_execution(scope, execution_id).await?;
        reads.execution = Some(execution.clone());
        Ok(execution)
    }
}

/// Streams an execution's changes to one watcher until it is finished (or the watcher leaves):
/// new log chunks first, then status and step changes, read when the execution's signal says it
/// changed (and, as a safety net, every [`SAFETY_POLL`]).
pub(super) async fn watch(
    reads: SharedReads,
    scope: TenantScope,
    mut last: Execution,
    mut sequence: i64,
    mut signal: tokio::sync::watch::Receiver<u64>,
    watcher: Watcher<pb::WatchExecutionResponse>,
) {
    let execution_id = last.id;
    follow(
        &reads,
        &scope,
        &mut last,
        &mut sequence,
        &mut signal,
        &watcher,
    )
    .await;
    reads.release(execution_id);
}

async fn follow(
    reads: &SharedReads,
    scope: &TenantScope,
    last: &mut Execution,
    sequence: &mut i64,
    signal: &mut tokio::sync::watch::Receiver<u64>,
    watcher: &Watcher<pb::WatchExecutionResponse>,
) {
    use pb::watch_execution_response::Update;
    let send = |update: Update| {
        watcher.send(pb::WatchExecutionResponse {
            update: Some(update),
        })
    };
    if !send(Update::Execution(last.clone().into())).await {
        return;
    }
    let mut finished = false;
    // The first read, and reads after a safety poll, are fresh; the others are of the change the
    // signal announced, shared with the other watchers woken by it.
    let mut version: Option<u64> = None;
    loop {
        signal.mark_unchanged();
        // New output, in order.
        loop {
            let page = match reads.logs(scope, last.id, version, *sequence).await {
                Ok(page) => page,
                Err(error) => return watcher.fail(error).await,
            };
            for chunk in page.items {
                *sequence = chunk.sequence;
                if !send(Update::Log(chunk.into())).await {
                    return;
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
        }
        let current = match reads.execution(scope, last.id, version).await {
            Ok(current) => current,
            Err(error) => return watcher.fail(error).await,
        };
        for step in &current.steps {
            let changed = last
                .steps
                .iter()
                .find(|previous| previous.index == step.index)
                .is_none_or(|previous| previous != step);
            if changed && !send(Update::Step(step.clone().into())).await {
                return;
            }
        }
        if current.status.is_terminal() && !finished {
            // Read the output once more (the final event's own chunk), then send the status.
            last.steps = current.steps;
            finished = true;
            version = None;
            continue;
        }
        let status_changed = current.status != last.status
            || current.agent_id != last.agent_id
            || current.queue_reason != last.queue_reason;
        if status_changed && !send(Update::Execution(current.clone().into())).await {
            return;
        }
        if finished {
            return;
        }
        *last = current;
        let before = *signal.borrow();
        if !watcher.wait_for_change(signal, SAFETY_POLL).await {
            return;
        }
        let now = *signal.borrow();
        // Woken by a change: read what every watcher woken by it reads; by the poll: afresh.
        version = (now != before).then_some(now);
    }
}
