//! Applying what agents report about their jobs. Each event is stored once (by sequence) with
//! the state change it implies; events that arrived together on a stream share one transaction;
//! repeats after a reconnect are recognised and only acknowledged.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use super::entities::{execution, log_chunk, step_execution};
use super::executions::{finished_event, skip_unfinished_steps, status_of};
use super::usage::{self, UsageDelta};
use super::{Store, StoreError, activity, now, quotas};
use crate::auth::AuthenticatedAgent;
use crate::domain::execution::{
    ExecutionStatus, JobEventInput, JobEventKind, JobEventOutcome, LogStream, StepStatus,
};
use crate::domain::{NewActivity, Quota, QuotaExceeded};

/// Largest log text stored per event, bytes.
pub const MAX_LOG_TEXT_BYTES: usize = 1024 * 1024;

/// What the log quotas leave for the events of one batch (one customer's agent).
struct LogBudget {
    per_execution: i64,
    stored_limit: i64,
    /// The customer's stored log bytes when the batch began.
    stored: i64,
    /// Bytes this batch stores.
    added: i64,
    /// The quota that cut output in this batch, with its limit and use.
    exceeded: Option<(Quota, i64, i64)>,
}

/// What of an event's log text is kept.
enum Admitted {
    Whole(String),
    /// What fits, ending with the truncation line.
    Cut(String),
    Dropped,
}

impl LogBudget {
    /// Decides what of `text` the execution `row` keeps: the agent's lines (`output`) only while
    /// they fit both quotas; the server's own lines (job and step progress) always, so the log
    /// still shows how the job ended.
    fn admit(&mut self, row: &execution::Model, output: bool, text: String) -> Admitted {
        let bytes = i64::try_from(text.len()).unwrap_or(i64::MAX);
        if !output {
            self.added += bytes;
            return Admitted::Whole(text);
        }
        if row.log_truncated {
            return Admitted::Dropped;
        }
        let execution_left = self.per_execution - row.log_bytes;
        let stored_left = self.stored_limit - self.stored - self.added;
        if bytes <= execution_left && bytes <= stored_left {
            self.added += bytes;
            return Admitted::Whole(text);
        }
        let (quota, limit, used) = if execution_left <= stored_left {
            (
                Quota::LogBytesPerExecution,
                self.per_execution,
                row.log_bytes,
            )
        } else {
            (
                Quota::LogBytesStored,
                self.stored_limit,
                self.stored + self.added,
            )
        };
        self.exceeded = Some((quota, limit, used));
        let room = Ord::max(Ord::min(execution_left, stored_left), 0);
        let mut end = usize::try_from(room).unwrap_or(0);
        end = end.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut kept = text[..end].to_owned();
        if !kept.is_empty() && !kept.ends_with('\n') {
            kept.push('\n');
        }
        kept.push_str(&format!(
            "==> output truncated: the {quota} quota of {limit} bytes is reached; the rest of this job's output is not kept\n"
        ));
        self.added += i64::try_from(kept.len()).unwrap_or(i64::MAX);
        Admitted::Cut(kept)
    }
}

/// What a batch changes in one execution, written with one `UPDATE` when the batch ends.
#[derive(Default)]
struct ExecutionChange {
    sequence: Option<i64>,
    log_bytes_added: i64,
    truncated: bool,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    finished: Option<(ExecutionStatus, String, chrono::DateTime<chrono::Utc>)>,
}

/// An execution the batch names: its row as the batch's events have left it so far, and what
/// is to be written.
struct Tracked {
    row: execution::Model,
    change: ExecutionChange,
}

/// What a batch writes when its events are applied: the executions' rows, log chunks,
/// activity events and usage, each in as few statements as the backends allow.
#[derive(Default)]
struct BatchWrites {
    chunks: Vec<log_chunk::ActiveModel>,
    activities: Vec<(NewActivity, chrono::DateTime<chrono::Utc>)>,
    usage: UsageDelta,
}

/// Rows one multi-row `INSERT` of log chunks carries at most (7 values each, well under
/// SQLite's limit of bound values).
const CHUNKS_PER_INSERT: usize = 500;

impl Store {
    /// Applies job events of `agent`, in order, in one transaction: events that arrived together
    /// cost one commit, one read of the executions they name, one write per execution and one
    /// insert of their log chunks. Each gets its outcome: an event of an execution that is not
    /// this agent's is refused with NOT_FOUND (and writes nothing); a sequence already stored
    /// is acknowledged again; a sequence past the next one is not stored (the agent resends
    /// from its last acknowledgement). Any other failure stores none of them.
    pub async fn apply_job_events(
        &self,
        agent: &AuthenticatedAgent,
        events: Vec<JobEventInput>,
    ) -> Result<Vec<Result<JobEventOutcome, StoreError>>, StoreError> {
        let customer_id = agent.customer_id();
        // The limits are read before the write lock is taken (they change rarely; a change
        // racing a batch applies from the next one). What is stored is read under it.
        let limits = self.quota_limits(&self.db, customer_id).await?;
        let transaction = self.begin_write().await?;
        let mut logs = LogBudget {
            per_execution: limits.get(Quota::LogBytesPerExecution),
            stored_limit: limits.get(Quota::LogBytesStored),
            stored: quotas::used(&transaction, customer_id, Quota::LogBytesStored).await?,
            added: 0,
            exceeded: None,
        };
        let mut ids: Vec<i64> = events
            .iter()
            .map(|event| event.execution_id.get())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut tracked: std::collections::HashMap<i64, Tracked> = execution::Entity::find()
            .filter(execution::Column::Id.is_in(ids))
            .filter(execution::Column::CustomerId.eq(customer_id.get()))
            .filter(execution::Column::AgentId.eq(agent.agent_id().get()))
            .all(&transaction)
            .await?
            .into_iter()
            .map(|row| {
                (
                    row.id,
                    Tracked {
                        row,
                        change: ExecutionChange::default(),
                    },
                )
            })
            .collect();
        let mut writes = BatchWrites::default();
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            let Some(execution) = tracked.get_mut(&event.execution_id.get()) else {
                outcomes.push(Err(StoreError::NotFound(format!(
                    "execution {} not found",
                    event.execution_id
                ))));
                continue;
            };
            let outcome = self
                .apply_in(
                    &transaction,
                    agent,
                    event,
                    execution,
                    &mut writes,
                    &mut logs,
                )
                .await?;
            outcomes.push(Ok(outcome));
        }
        // In id order, so two batches touching the same rows take their locks alike.
        let mut changed: Vec<&Tracked> = tracked.values().collect();
        changed.sort_unstable_by_key(|execution| execution.row.id);
        for execution in changed {
            write_change(&transaction, execution).await?;
        }
        for chunks in writes.chunks.chunks(CHUNKS_PER_INSERT) {
            log_chunk::Entity::insert_many(chunks.to_vec())
                .exec_without_returning(&transaction)
                .await?;
        }
        activity::record_many(&transaction, customer_id, writes.activities).await?;
        if logs.added > 0 {
            quotas::add_stored_bytes(
                &transaction,
                customer_id,
                Quota::LogBytesStored,
                logs.added,
                i64::MAX,
            )
            .await?;
            writes.usage.log_bytes_added += logs.added;
        }
        usage::add_usage(&transaction, customer_id, now(), writes.usage).await?;
        transaction.commit().await?;
        if let Some((quota, limit, used)) = logs.exceeded {
            let _ = self.over_quota(QuotaExceeded {
                customer_id,
                quota,
                limit,
                used,
                wanted: 0,
            });
        }
        Ok(outcomes)
    }

    async fn apply_in(
        &self,
        transaction: &sea_orm::DatabaseTransaction,
        agent: &AuthenticatedAgent,
        event: JobEventInput,
        execution: &mut Tracked,
        writes: &mut BatchWrites,
        logs: &mut LogBudget,
    ) -> Result<JobEventOutcome, StoreError> {
        let row = &execution.row;
        if event.sequence != row.last_sequence + 1 {
            return Ok(JobEventOutcome {
                acknowledged: row.last_sequence,
                stored: false,
                finished: None,
            });
        }
        let at = now();
        let status = status_of(row)?;
        let execution_id = row.id;
        let step_name = |index: i32| async move {
            step_execution::Entity::find_by_id((execution_id, index))
                .one(transaction)
                .await
                .map(|step| step.map(|step| step.name))
        };
        let (step_index, stream, text) = match &event.kind {
            JobEventKind::Started { workspace } => (
                -1,
                LogStream::System,
                format!("==> job started on agent {} in {workspace}\n", agent.name()),
            ),
            JobEventKind::Rejected { reason } => (
                -1,
                LogStream::System,
                format!("==> agent refused the job: {reason}\n"),
            ),
            JobEventKind::StepStarted { step_index } => {
                let name = step_name(*step_index).await?.unwrap_or_default();
                (
                    *step_index,
                    LogStream::System,
                    format!("==> step {} {name:?} started\n", step_index + 1),
                )
            }
            JobEventKind::Log {
                step_index,
                stream,
                text,
            } => {
                let mut text = text.clone();
                if text.len() > MAX_LOG_TEXT_BYTES {
                    let mut cut = MAX_LOG_TEXT_BYTES;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                    text.push_str("\n[chunk truncated by the server]\n");
                }
                (*step_index, *stream, text)
            }
            JobEventKind::StepFinished {
                step_index,
                status,
                exit_code,
                reason,
            } => {
                let name = step_name(*step_index).await?.unwrap_or_default();
                let detail = match (exit_code, reason.is_empty()) {
                    (Some(code), true) => format!(" (exit code {code})"),
                    (_, false) => format!(" ({reason})"),
                    (None, true) => String::new(),
                };
                (
                    *step_index,
                    LogStream::System,
                    format!(
                        "==> step {} {name:?} {}{detail}\n",
                        step_index + 1,
                        status.as_str().replace('_', " ")
                    ),
                )
            }
            JobEventKind::Finished { status, reason } => {
                let detail = if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                };
                (
                    -1,
                    LogStream::System,
                    format!(
                        "==> execution {}{detail}\n",
                        status.as_str().replace('_', " ")
                    ),
                )
            }
        };
        // Output past the execution's log quota, or past what the customer may store, is not
        // kept: what fits is, then one line says the rest is cut; the job itself goes on.
        let output = matches!(event.kind, JobEventKind::Log { .. });
        let chunk = match logs.admit(&execution.row, output, text) {
            Admitted::Whole(text) => Some((step_index, stream, text, false)),
            Admitted::Cut(text) => Some((step_index, LogStream::System, text, true)),
            Admitted::Dropped => None,
        };
        execution.row.last_sequence = event.sequence;
        execution.change.sequence = Some(event.sequence);
        if let Some((step_index, stream, text, cut)) = chunk {
            let bytes = i64::try_from(text.len()).unwrap_or(i64::MAX);
            writes.chunks.push(log_chunk::ActiveModel {
                customer_id: Set(execution.row.customer_id),
                execution_id: Set(execution.row.id),
                sequence: Set(event.sequence),
                step_index: Set(step_index),
                stream: Set(stream.as_str().to_owned()),
                text: Set(text),
                logged_at: Set(event.occurred_at),
            });
            execution.row.log_bytes += bytes;
            execution.change.log_bytes_added += bytes;
            if cut {
                execution.row.log_truncated = true;
                execution.change.truncated = true;
            }
        }

        let mut finished = None;
        if !status.is_terminal() {
            match &event.kind {
                JobEventKind::Started { .. } | JobEventKind::StepStarted { .. }
                    if status == ExecutionStatus::Assigned =>
                {
                    execution.row.status = ExecutionStatus::Running.as_str().to_owned();
                    execution.row.started_at = Some(at);
                    execution.change.started_at = Some(at);
                    writes.activities.push((
                        NewActivity {
                            kind: "execution.started",
                            subject_type: "execution",
                            subject_id: execution.row.id,
                            message: format!(
                                "Pipeline {:?} execution {} started on {}{}",
                                execution.row.pipeline_name,
                                execution.row.id,
                                agent.name(),
                                super::executions::trigger_note(&execution.row)
                            ),
                            actor: None,
                        },
                        at,
                    ));
                }
                _ => {}
            }
            match &event.kind {
                JobEventKind::StepStarted { step_index } => {
                    step_execution::Entity::update_many()
                        .col_expr(
                            step_execution::Column::Status,
                            Expr::value(StepStatus::Running.as_str()),
                        )
                        .col_expr(step_execution::Column::StartedAt, Expr::value(at))
                        .filter(step_execution::Column::ExecutionId.eq(execution.row.id))
                        .filter(step_execution::Column::StepIndex.eq(*step_index))
                        .exec(transaction)
                        .await?;
                }
                JobEventKind::StepFinished {
                    step_index,
                    status: step_status,
                    exit_code,
                    reason,
                } => {
                    // A skipped step never ran: it has no finish time.
                    let finished_at = (*step_status != StepStatus::Skipped).then_some(at);
                    let update = step_execution::Entity::update_many()
                        .col_expr(
                            step_execution::Column::Status,
                            Expr::value(step_status.as_str()),
                        )
                        .col_expr(step_execution::Column::ExitCode, Expr::value(*exit_code))
                        .col_expr(step_execution::Column::Reason, Expr::value(reason.as_str()))
                        .col_expr(step_execution::Column::FinishedAt, Expr::value(finished_at));
                    update
                        .filter(step_execution::Column::ExecutionId.eq(execution.row.id))
                        .filter(step_execution::Column::StepIndex.eq(*step_index))
                        .exec(transaction)
                        .await?;
                }
                JobEventKind::Finished {
                    status: final_status,
                    reason,
                } => {
                    let final_status = if final_status.is_terminal() {
                        *final_status
                    } else {
                        ExecutionStatus::Failed
                    };
                    finish(
                        transaction,
                        execution,
                        writes,
                        final_status,
                        reason,
                        agent,
                        at,
                    )
                    .await?;
                    finished = Some(final_status);
                }
                JobEventKind::Rejected { reason } => {
                    let reason = format!("agent {} refused the job: {reason}", agent.name());
                    finish(
                        transaction,
                        execution,
                        writes,
                        ExecutionStatus::Failed,
                        &reason,
                        agent,
                        at,
                    )
                    .await?;
                    finished = Some(ExecutionStatus::Failed);
                }
                _ => {}
            }
        }
        Ok(JobEventOutcome {
            acknowledged: event.sequence,
            stored: true,
            finished,
        })
    }
}

/// Ends an execution as the batch sees it: its steps at once (a later event of the batch may
/// not touch them), its row, activity and usage with the batch's writes.
async fn finish(
    transaction: &sea_orm::DatabaseTransaction,
    execution: &mut Tracked,
    writes: &mut BatchWrites,
    status: ExecutionStatus,
    reason: &str,
    agent: &AuthenticatedAgent,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    let step_reason = match status {
        ExecutionStatus::Succeeded => "",
        _ => reason,
    };
    skip_unfinished_steps(
        transaction,
        agent.customer_id(),
        execution.row.id,
        step_reason,
        at,
    )
    .await?;
    writes.usage += UsageDelta::execution_ended(status, execution.row.started_at, at);
    writes.activities.push((
        finished_event(&execution.row, status, reason, Some(agent.name())),
        at,
    ));
    execution.row.status = status.as_str().to_owned();
    execution.row.finished_at = Some(at);
    execution.row.lease_expires_at = None;
    execution.change.finished = Some((status, reason.to_owned(), at));
    Ok(())
}

/// One `UPDATE` with what the batch changed in an execution (nothing when it changed nothing).
/// The log size is added to, not set: the row is read without a lock.
async fn write_change(
    transaction: &sea_orm::DatabaseTransaction,
    execution: &Tracked,
) -> Result<(), StoreError> {
    let change = &execution.change;
    let Some(sequence) = change.sequence else {
        return Ok(());
    };
    let mut update = execution::Entity::update_many()
        .col_expr(execution::Column::LastSequence, Expr::value(sequence))
        .filter(execution::Column::Id.eq(execution.row.id));
    if change.log_bytes_added != 0 {
        update = update.col_expr(
            execution::Column::LogBytes,
            Expr::col(execution::Column::LogBytes).add(change.log_bytes_added),
        );
    }
    if change.truncated {
        update = update.col_expr(execution::Column::LogTruncated, Expr::value(true));
    }
    if let Some(started_at) = change.started_at {
        update = update.col_expr(execution::Column::StartedAt, Expr::value(started_at));
        if change.finished.is_none() {
            update = update.col_expr(
                execution::Column::Status,
                Expr::value(ExecutionStatus::Running.as_str()),
            );
        }
    }
    if let Some((status, reason, at)) = &change.finished {
        update = update
            .col_expr(execution::Column::Status, Expr::value(status.as_str()))
            .col_expr(
                execution::Column::FailureReason,
                Expr::value(reason.as_str()),
            )
            .col_expr(execution::Column::FinishedAt, Expr::value(*at))
            .col_expr(
                execution::Column::LeaseExpiresAt,
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            );
    }
    update.exec(transaction).await?;
    Ok(())
}
