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

impl Store {
    /// Applies job events of `agent`, in order, in one transaction: events that arrived together
    /// cost one commit. Each gets its outcome: an event of an execution that is not this
    /// agent's is refused with NOT_FOUND (and writes nothing); a sequence already stored is
    /// acknowledged again; a sequence past the next one is not stored (the agent resends from
    /// its last acknowledgement). Any other failure stores none of them.
    pub async fn apply_job_events(
        &self,
        agent: &AuthenticatedAgent,
        events: Vec<JobEventInput>,
    ) -> Result<Vec<Result<JobEventOutcome, StoreError>>, StoreError> {
        let transaction = self.begin_write().await?;
        let customer_id = agent.customer_id();
        let limits = self.quota_limits(&transaction, customer_id).await?;
        let mut logs = LogBudget {
            per_execution: limits.get(Quota::LogBytesPerExecution),
            stored_limit: limits.get(Quota::LogBytesStored),
            stored: quotas::used(&transaction, customer_id, Quota::LogBytesStored).await?,
            added: 0,
            exceeded: None,
        };
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            match self.apply_in(&transaction, agent, event, &mut logs).await {
                Ok(outcome) => outcomes.push(Ok(outcome)),
                Err(StoreError::NotFound(message)) => {
                    outcomes.push(Err(StoreError::NotFound(message)));
                }
                Err(error) => return Err(error),
            }
        }
        if logs.added > 0 {
            quotas::add_stored_bytes(
                &transaction,
                customer_id,
                Quota::LogBytesStored,
                logs.added,
                i64::MAX,
            )
            .await?;
            usage::add_usage(
                &transaction,
                customer_id,
                now(),
                UsageDelta {
                    log_bytes_added: logs.added,
                    ..Default::default()
                },
            )
            .await?;
        }
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
        logs: &mut LogBudget,
    ) -> Result<JobEventOutcome, StoreError> {
        let not_found =
            || StoreError::NotFound(format!("execution {} not found", event.execution_id));
        let row = execution::Entity::find_by_id(event.execution_id.get())
            .filter(execution::Column::CustomerId.eq(agent.customer_id().get()))
            .filter(execution::Column::AgentId.eq(agent.agent_id().get()))
            .one(transaction)
            .await?
            .ok_or_else(not_found)?;
        if event.sequence != row.last_sequence + 1 {
            return Ok(JobEventOutcome {
                acknowledged: row.last_sequence,
                stored: false,
                finished: None,
            });
        }
        let at = now();
        let status = status_of(&row)?;
        let step_name = |index: i32| async move {
            step_execution::Entity::find_by_id((row.id, index))
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
        let chunk = match logs.admit(&row, output, text) {
            Admitted::Whole(text) => Some((step_index, stream, text, false)),
            Admitted::Cut(text) => Some((step_index, LogStream::System, text, true)),
            Admitted::Dropped => None,
        };
        let mut update = execution::Entity::update_many()
            .col_expr(execution::Column::LastSequence, Expr::value(event.sequence))
            .filter(execution::Column::Id.eq(row.id));
        if let Some((step_index, stream, text, cut)) = chunk {
            let bytes = i64::try_from(text.len()).unwrap_or(i64::MAX);
            log_chunk::Entity::insert(log_chunk::ActiveModel {
                customer_id: Set(row.customer_id),
                execution_id: Set(row.id),
                sequence: Set(event.sequence),
                step_index: Set(step_index),
                stream: Set(stream.as_str().to_owned()),
                text: Set(text),
                logged_at: Set(event.occurred_at),
            })
            .exec(transaction)
            .await?;
            update = update.col_expr(
                execution::Column::LogBytes,
                Expr::col(execution::Column::LogBytes).add(bytes),
            );
            if cut {
                update = update.col_expr(execution::Column::LogTruncated, Expr::value(true));
            }
        }
        update.exec(transaction).await?;

        let mut finished = None;
        if !status.is_terminal() {
            match &event.kind {
                JobEventKind::Started { .. } | JobEventKind::StepStarted { .. }
                    if status == ExecutionStatus::Assigned =>
                {
                    execution::Entity::update_many()
                        .col_expr(
                            execution::Column::Status,
                            Expr::value(ExecutionStatus::Running.as_str()),
                        )
                        .col_expr(execution::Column::StartedAt, Expr::value(at))
                        .filter(execution::Column::Id.eq(row.id))
                        .exec(transaction)
                        .await?;
                    activity::record(
                        transaction,
                        agent.customer_id(),
                        NewActivity {
                            kind: "execution.started",
                            subject_type: "execution",
                            subject_id: row.id,
                            message: format!(
                                "Pipeline {:?} execution {} started on {}",
                                row.pipeline_name,
                                row.id,
                                agent.name()
                            ),
                            actor: None,
                        },
                        at,
                    )
                    .await?;
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
                        .filter(step_execution::Column::ExecutionId.eq(row.id))
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
                        .filter(step_execution::Column::ExecutionId.eq(row.id))
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
                    self.finish(transaction, &row, final_status, reason, agent, at)
                        .await?;
                    finished = Some(final_status);
                }
                JobEventKind::Rejected { reason } => {
                    let reason = format!("agent {} refused the job: {reason}", agent.name());
                    self.finish(
                        transaction,
                        &row,
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

    async fn finish(
        &self,
        transaction: &sea_orm::DatabaseTransaction,
        row: &execution::Model,
        status: ExecutionStatus,
        reason: &str,
        agent: &AuthenticatedAgent,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        execution::Entity::update_many()
            .col_expr(execution::Column::Status, Expr::value(status.as_str()))
            .col_expr(execution::Column::FailureReason, Expr::value(reason))
            .col_expr(execution::Column::FinishedAt, Expr::value(at))
            .col_expr(
                execution::Column::LeaseExpiresAt,
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            )
            .filter(execution::Column::Id.eq(row.id))
            .exec(transaction)
            .await?;
        let step_reason = match status {
            ExecutionStatus::Succeeded => "",
            _ => reason,
        };
        skip_unfinished_steps(transaction, agent.customer_id(), row.id, step_reason, at).await?;
        usage::add_usage(
            transaction,
            agent.customer_id(),
            at,
            UsageDelta::execution_ended(status, row.started_at, at),
        )
        .await?;
        activity::record(
            transaction,
            agent.customer_id(),
            finished_event(row, status, reason, Some(agent.name())),
            at,
        )
        .await
    }
}
