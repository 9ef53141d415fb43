//! Applying what agents report about their jobs. Each event is stored once (by sequence) with
//! the state change it implies; events that arrived together on a stream share one transaction;
//! repeats after a reconnect are recognised and only acknowledged.

use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use super::entities::{execution, log_chunk, step_execution};
use super::executions::{finished_event, skip_unfinished_steps, status_of};
use super::{Store, StoreError, activity, now};
use crate::auth::AuthenticatedAgent;
use crate::domain::NewActivity;
use crate::domain::execution::{
    ExecutionStatus, JobEventInput, JobEventKind, JobEventOutcome, LogStream, StepStatus,
};

/// Largest log text stored per event, bytes.
pub const MAX_LOG_TEXT_BYTES: usize = 1024 * 1024;

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
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            match self.apply_in(&transaction, agent, event).await {
                Ok(outcome) => outcomes.push(Ok(outcome)),
                Err(StoreError::NotFound(message)) => {
                    outcomes.push(Err(StoreError::NotFound(message)));
                }
                Err(error) => return Err(error),
            }
        }
        transaction.commit().await?;
        Ok(outcomes)
    }

    async fn apply_in(
        &self,
        transaction: &sea_orm::DatabaseTransaction,
        agent: &AuthenticatedAgent,
        event: JobEventInput,
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
        execution::Entity::update_many()
            .col_expr(execution::Column::LastSequence, Expr::value(event.sequence))
            .filter(execution::Column::Id.eq(row.id))
            .exec(transaction)
            .await?;

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
        activity::record(
            transaction,
            agent.customer_id(),
            finished_event(row, status, reason, Some(agent.name())),
            at,
        )
        .await
    }
}
