//! Executions as members see them: queue one, read them, cancel, read their logs and artifacts.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, Func};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::entities::{
    artifact, execution, log_chunk, pipeline, stage_execution_record, step_execution, user,
};
use super::error::corrupt;
use super::pipelines::{
    group_ids_from_row, group_ids_from_text, group_ids_to_text, labels_from_json, steps_from_json,
    to_json,
};
use super::{Store, StoreError, SystemStore, activity, now};
use crate::auth::TenantScope;
use crate::domain::execution::{
    Artifact, Execution, ExecutionFilter, ExecutionStatus, LogChunk, LogStream, NewArtifact,
    QueueCandidate, QueuedExecution, StepExecution, StepStatus, Trigger, TriggerKind,
};
use crate::domain::pipeline::{AgentSelector, Pipeline};
use crate::domain::{
    AgentId, CustomerId, ExecutionId, NewActivity, Page, PageRequest, PipelineId, Quota,
    ReleaseExecutionId, ScheduleId, StageExecutionId, UserId, WebhookDeliveryId, WebhookId,
};

pub(super) fn status_of(row: &execution::Model) -> Result<ExecutionStatus, StoreError> {
    ExecutionStatus::from_db(&row.status).ok_or_else(|| corrupt("execution status", &row.status))
}

fn parameters_of(row: &execution::Model) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_value(row.parameters.clone()).map_err(|error| corrupt("parameters", error))
}

pub(super) fn step_from_row(row: step_execution::Model) -> Result<StepExecution, StoreError> {
    Ok(StepExecution {
        index: row.step_index,
        status: StepStatus::from_db(&row.status)
            .ok_or_else(|| corrupt("step status", &row.status))?,
        name: row.name,
        exit_code: row.exit_code,
        started_at: row.started_at,
        finished_at: row.finished_at,
        reason: row.reason,
    })
}

pub(super) fn chunk_from_row(row: log_chunk::Model) -> Result<LogChunk, StoreError> {
    Ok(LogChunk {
        sequence: row.sequence,
        step_index: row.step_index,
        stream: LogStream::from_db(&row.stream)
            .ok_or_else(|| corrupt("log stream", &row.stream))?,
        text: row.text,
        logged_at: row.logged_at,
    })
}

fn artifact_from_row(row: artifact::Model) -> Artifact {
    Artifact {
        id: row.id,
        execution_id: ExecutionId::from_db(row.execution_id),
        step_index: row.step_index,
        path: row.path,
        size_bytes: row.size_bytes,
        sha256: row.sha256,
        storage_key: row.storage_key,
        created_at: row.created_at,
    }
}

/// Rows → executions, with the triggering users' names in one query.
async fn executions_from_rows(
    db: &impl ConnectionTrait,
    rows: Vec<execution::Model>,
) -> Result<Vec<Execution>, StoreError> {
    let user_ids: Vec<i64> = rows.iter().map(|row| row.triggered_by).collect();
    let usernames: HashMap<i64, String> = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .column(user::Column::Username)
        .filter(user::Column::Id.is_in(user_ids))
        .into_tuple::<(i64, String)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    rows.into_iter()
        .map(|row| {
            Ok(Execution {
                id: ExecutionId::from_db(row.id),
                customer_id: CustomerId::from_db(row.customer_id),
                pipeline_id: PipelineId::from_db(row.pipeline_id),
                status: status_of(&row)?,
                parameters: parameters_of(&row)?,
                triggered_by: UserId::from_db(row.triggered_by),
                triggered_by_username: usernames
                    .get(&row.triggered_by)
                    .cloned()
                    .unwrap_or_default(),
                agent_id: row.agent_id.map(AgentId::from_db),
                queue_reason: row.queue_reason,
                failure_reason: row.failure_reason,
                created_at: row.created_at,
                started_at: row.started_at,
                finished_at: row.finished_at,
                steps: Vec::new(),
                retry_of: row.retry_of.map(ExecutionId::from_db),
                timeout_seconds: row.timeout_seconds,
                trigger: Trigger::from_parts(
                    TriggerKind::parse(&row.trigger_kind),
                    UserId::from_db(row.triggered_by),
                    row.retry_of.map(ExecutionId::from_db),
                    row.trigger_release_execution_id
                        .zip(row.trigger_stage_execution_id)
                        .map(|(release, stage)| {
                            (
                                ReleaseExecutionId::from_db(release),
                                StageExecutionId::from_db(stage),
                            )
                        }),
                    row.trigger_schedule_id.map(ScheduleId::from_db),
                    row.trigger_webhook_id
                        .zip(row.trigger_webhook_delivery_id)
                        .map(|(webhook, delivery)| {
                            (
                                WebhookId::from_db(webhook),
                                WebhookDeliveryId::from_db(delivery),
                            )
                        }),
                ),
                trigger_event: row.trigger_event,
                trigger_branch: row.trigger_branch,
                trigger_commit: row.trigger_commit,
                pipeline_name: row.pipeline_name,
            })
        })
        .collect()
}

pub(super) async fn find_execution(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    execution_id: ExecutionId,
) -> Result<execution::Model, StoreError> {
    execution::Entity::find_by_id(execution_id.get())
        .filter(execution::Column::CustomerId.eq(customer_id.get()))
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("execution {execution_id} not found")))
}

/// Loads an execution with its steps.
pub(super) async fn load_execution(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    execution_id: ExecutionId,
) -> Result<Execution, StoreError> {
    let row = find_execution(db, customer_id, execution_id).await?;
    let mut execution = executions_from_rows(db, vec![row])
        .await?
        .pop()
        .ok_or_else(|| StoreError::NotFound(format!("execution {execution_id} not found")))?;
    execution.steps = step_execution::Entity::find()
        .filter(step_execution::Column::CustomerId.eq(customer_id.get()))
        .filter(step_execution::Column::ExecutionId.eq(execution_id.get()))
        .order_by_asc(step_execution::Column::StepIndex)
        .all(db)
        .await?
        .into_iter()
        .map(step_from_row)
        .collect::<Result<_, _>>()?;
    Ok(execution)
}

/// The outcome of a cancellation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancellation {
    /// It was queued and is now cancelled.
    Cancelled,
    /// It is on this agent, which must stop it.
    Requested { agent_id: AgentId },
    /// It had already ended; nothing changed.
    AlreadyFinished,
}

/// Text one page of GetExecutionLogs carries at most (one chunk more if that chunk alone is
/// larger), well inside the 4 MiB gRPC clients accept by default.
pub const MAX_LOG_PAGE_BYTES: usize = 1 << 20;

impl Store {
    /// Queues an execution of `pipeline` with resolved parameters, snapshotting its definition,
    /// within the customer's `queued_executions` quota; returns its id as soon as it is
    /// committed (the caller wakes the dispatcher before reading it back). `agent_id` overrides
    /// the pipeline's selector with one agent of the customer.
    pub async fn create_execution(
        &self,
        scope: &TenantScope,
        pipeline: &Pipeline,
        parameters: BTreeMap<String, String>,
        agent_id: Option<AgentId>,
        trigger: Trigger,
    ) -> Result<ExecutionId, StoreError> {
        let customer_id = scope.customer_id();
        self.precheck_one_more(customer_id, Quota::QueuedExecutions)
            .await?;
        // Reads that need no lock come before the write lock is taken, the answer's after it
        // is released: every write of the server waits for this one.
        let limits = self.quota_limits(&self.db, customer_id).await?;
        let transaction = self.begin_write().await?;
        self.admit_one_more_within(&transaction, customer_id, Quota::QueuedExecutions, &limits)
            .await?;
        let selector = match agent_id {
            Some(agent_id) => {
                let found = super::entities::agent::Entity::find_by_id(agent_id.get())
                    .filter(super::entities::agent::Column::CustomerId.eq(customer_id.get()))
                    .filter(super::entities::agent::Column::DeletedAt.is_null())
                    .one(&transaction)
                    .await?;
                if found.is_none() {
                    return Err(StoreError::NotFound(format!("agent {agent_id} not found")));
                }
                AgentSelector {
                    agent_id: Some(agent_id),
                    labels: Vec::new(),
                }
            }
            None => pipeline.definition.selector.clone(),
        };
        let execution_id =
            insert_execution(&transaction, pipeline, &parameters, &selector, trigger).await?;
        transaction.commit().await?;
        Ok(execution_id)
    }

    /// One of the scope's executions with its steps.
    pub async fn get_execution(
        &self,
        scope: &TenantScope,
        execution_id: ExecutionId,
    ) -> Result<Execution, StoreError> {
        load_execution(&self.db, scope.customer_id(), execution_id).await
    }

    /// The queue snapshot of one of the scope's executions (to retry it).
    pub async fn execution_run_request(
        &self,
        scope: &TenantScope,
        execution_id: ExecutionId,
    ) -> Result<(PipelineId, BTreeMap<String, String>, Option<AgentId>), StoreError> {
        let row = find_execution(&self.db, scope.customer_id(), execution_id).await?;
        let parameters = parameters_of(&row)?;
        Ok((PipelineId::from_db(row.pipeline_id), parameters, None))
    }

    /// The scope's executions, newest first.
    pub async fn list_executions(
        &self,
        scope: &TenantScope,
        filter: &ExecutionFilter,
        page: PageRequest,
    ) -> Result<Page<Execution>, StoreError> {
        let mut query = execution::Entity::find()
            .filter(execution::Column::CustomerId.eq(scope.customer_id().get()));
        if let Some(pipeline_id) = filter.pipeline_id {
            query = query.filter(execution::Column::PipelineId.eq(pipeline_id.get()));
        }
        if let Some(status) = filter.status {
            query = query.filter(execution::Column::Status.eq(status.as_str()));
        }
        if let Some(kind) = filter.trigger_kind {
            query = query.filter(execution::Column::TriggerKind.eq(kind.as_str()));
        }
        if let Some(before) = page.after {
            query = query.filter(execution::Column::Id.lt(before));
        }
        let rows = query
            .order_by_desc(execution::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        let page = Page::from_rows(rows, page, |row| row.id);
        Ok(Page {
            items: executions_from_rows(&self.db, page.items).await?,
            next_page_token: page.next_page_token,
        })
    }

    /// Cancels one of the scope's executions: a queued one at once (with its steps skipped and an
    /// activity event); one on an agent is marked as cancel-requested and the caller tells the
    /// agent. Cancelling a finished execution changes nothing.
    pub async fn cancel_execution(
        &self,
        scope: &TenantScope,
        execution_id: ExecutionId,
        reason: &str,
    ) -> Result<(Execution, Cancellation), StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let row = find_execution(&transaction, customer_id, execution_id).await?;
        let status = status_of(&row)?;
        let outcome = if status.is_terminal() {
            Cancellation::AlreadyFinished
        } else if status == ExecutionStatus::Queued {
            let at = now();
            let changed = execution::Entity::update_many()
                .col_expr(
                    execution::Column::Status,
                    Expr::value(ExecutionStatus::Cancelled.as_str()),
                )
                .col_expr(execution::Column::FailureReason, Expr::value(reason))
                .col_expr(execution::Column::QueueReason, Expr::value(""))
                .col_expr(execution::Column::FinishedAt, Expr::value(at))
                .col_expr(execution::Column::CancelRequestedAt, Expr::value(at))
                .col_expr(execution::Column::CancelReason, Expr::value(reason))
                .filter(execution::Column::Id.eq(row.id))
                .filter(execution::Column::Status.eq(ExecutionStatus::Queued.as_str()))
                .exec(&transaction)
                .await?
                .rows_affected;
            if changed == 1 {
                skip_unfinished_steps(&transaction, customer_id, row.id, reason, at).await?;
                super::usage::add_usage(
                    &transaction,
                    customer_id,
                    at,
                    super::usage::UsageDelta::execution_ended(ExecutionStatus::Cancelled, None, at),
                )
                .await?;
                activity::record(
                    &transaction,
                    customer_id,
                    finished_event(&row, ExecutionStatus::Cancelled, reason, None),
                    at,
                )
                .await?;
                Cancellation::Cancelled
            } else {
                // Claimed by an agent in the meantime: ask it to stop.
                Cancellation::Requested {
                    agent_id: AgentId::from_db(0),
                }
            }
        } else {
            let agent_id = row.agent_id.map(AgentId::from_db).ok_or_else(|| {
                corrupt(
                    "execution",
                    format!(
                        "execution {execution_id} is {} without an agent",
                        row.status
                    ),
                )
            })?;
            Cancellation::Requested { agent_id }
        };
        if matches!(outcome, Cancellation::Requested { .. }) {
            execution::Entity::update_many()
                .col_expr(execution::Column::CancelRequestedAt, Expr::value(now()))
                .col_expr(execution::Column::CancelReason, Expr::value(reason))
                .filter(execution::Column::Id.eq(row.id))
                .filter(execution::Column::CancelRequestedAt.is_null())
                .exec(&transaction)
                .await?;
        }
        let execution = load_execution(&transaction, customer_id, execution_id).await?;
        transaction.commit().await?;
        // A cancel that lost the race with the dispatcher learns the agent from the reloaded row.
        let outcome = match outcome {
            Cancellation::Requested { .. } if execution.status.is_terminal() => {
                Cancellation::AlreadyFinished
            }
            Cancellation::Requested { .. } => match execution.agent_id {
                Some(agent_id) => Cancellation::Requested { agent_id },
                None => Cancellation::AlreadyFinished,
            },
            other => other,
        };
        Ok((execution, outcome))
    }

    /// A page of one of the scope's executions' log, in sequence order.
    pub async fn execution_logs(
        &self,
        scope: &TenantScope,
        execution_id: ExecutionId,
        step_index: Option<i32>,
        after_sequence: i64,
        page: PageRequest,
    ) -> Result<Page<LogChunk>, StoreError> {
        find_execution(&self.db, scope.customer_id(), execution_id).await?;
        let after = page.after.unwrap_or(0).max(after_sequence);
        let mut query = log_chunk::Entity::find()
            .filter(log_chunk::Column::CustomerId.eq(scope.customer_id().get()))
            .filter(log_chunk::Column::ExecutionId.eq(execution_id.get()))
            .filter(log_chunk::Column::Sequence.gt(after));
        if let Some(step_index) = step_index {
            query = query.filter(log_chunk::Column::StepIndex.eq(step_index));
        }
        let rows = query
            .order_by_asc(log_chunk::Column::Sequence)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        let page = Page::from_rows(rows, page, |row| row.sequence).limit_bytes(
            MAX_LOG_PAGE_BYTES,
            |row| row.text.len(),
            |row| row.sequence,
        );
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(chunk_from_row)
                .collect::<Result<_, _>>()?,
            next_page_token: page.next_page_token,
        })
    }

    /// One of the scope's executions' artifacts.
    pub async fn list_artifacts(
        &self,
        scope: &TenantScope,
        execution_id: ExecutionId,
    ) -> Result<Vec<Artifact>, StoreError> {
        find_execution(&self.db, scope.customer_id(), execution_id).await?;
        Ok(artifact::Entity::find()
            .filter(artifact::Column::CustomerId.eq(scope.customer_id().get()))
            .filter(artifact::Column::ExecutionId.eq(execution_id.get()))
            .order_by_asc(artifact::Column::StepIndex)
            .order_by_asc(artifact::Column::Path)
            .all(&self.db)
            .await?
            .into_iter()
            .map(artifact_from_row)
            .collect())
    }

    /// One of the scope's artifacts.
    pub async fn get_artifact(
        &self,
        scope: &TenantScope,
        artifact_id: i64,
    ) -> Result<Artifact, StoreError> {
        artifact::Entity::find_by_id(artifact_id)
            .filter(artifact::Column::CustomerId.eq(scope.customer_id().get()))
            .one(&self.db)
            .await?
            .map(artifact_from_row)
            .ok_or_else(|| StoreError::NotFound(format!("artifact {artifact_id} not found")))
    }
}

/// Inserts a queued execution of `pipeline` (of `pipeline.customer_id`) with its step rows. The
/// caller owns the transaction and has checked the selector's agent.
pub(super) async fn insert_execution(
    db: &impl ConnectionTrait,
    pipeline: &Pipeline,
    parameters: &BTreeMap<String, String>,
    selector: &AgentSelector,
    trigger: Trigger,
) -> Result<ExecutionId, StoreError> {
    let customer_id = pipeline.customer_id;
    let row = execution::ActiveModel {
        customer_id: Set(customer_id.get()),
        pipeline_id: Set(pipeline.id.get()),
        pipeline_name: Set(pipeline.definition.name.clone()),
        status: Set(ExecutionStatus::Queued.as_str().to_owned()),
        parameters: Set(to_json(parameters)),
        // The steps are the pipeline version's, stored once; a pipeline without a stored
        // version (none since migration m20261210) has them copied.
        steps: Set(if pipeline.steps_version.id > 0 {
            serde_json::Value::Array(Vec::new())
        } else {
            to_json(&pipeline.definition.steps)
        }),
        pipeline_version_id: Set(
            (pipeline.steps_version.id > 0).then_some(pipeline.steps_version.id)
        ),
        selector_agent_id: Set(selector.agent_id.map(AgentId::get)),
        selector_labels: Set(to_json(&selector.labels)),
        // The groups it was queued with: attaching a group later does not reach it.
        variable_group_ids: Set(Some(group_ids_to_text(
            &pipeline.definition.variable_group_ids,
        ))),
        timeout_seconds: Set(pipeline.definition.timeout_seconds),
        triggered_by: Set(trigger.triggered_by().get()),
        agent_id: Set(None),
        queue_reason: Set("waiting for a matching agent".into()),
        failure_reason: Set(String::new()),
        created_at: Set(now()),
        assigned_at: Set(None),
        started_at: Set(None),
        finished_at: Set(None),
        lease_expires_at: Set(None),
        cancel_requested_at: Set(None),
        cancel_reason: Set(String::new()),
        retry_of: Set(trigger.retry_of().map(ExecutionId::get)),
        trigger_kind: Set(trigger.kind().as_str().to_owned()),
        trigger_release_execution_id: Set(trigger
            .release_stage()
            .map(|(release, _)| release.get())),
        trigger_stage_execution_id: Set(trigger.release_stage().map(|(_, stage)| stage.get())),
        trigger_schedule_id: Set(trigger.schedule().map(ScheduleId::get)),
        trigger_webhook_id: Set(trigger.webhook().map(|(webhook, _)| webhook.get())),
        trigger_webhook_delivery_id: Set(trigger.webhook().map(|(_, delivery)| delivery.get())),
        last_sequence: Set(0),
        log_bytes: Set(0),
        log_truncated: Set(false),
        log_expired: Set(false),
        ..Default::default()
    }
    .insert(db)
    .await?;
    step_execution::Entity::insert_many(pipeline.definition.steps.iter().enumerate().map(
        |(index, step)| step_execution::ActiveModel {
            customer_id: Set(customer_id.get()),
            execution_id: Set(row.id),
            step_index: Set(index as i32),
            name: Set(step.name.clone()),
            status: Set(StepStatus::Pending.as_str().to_owned()),
            exit_code: Set(None),
            started_at: Set(None),
            finished_at: Set(None),
            reason: Set(String::new()),
        },
    ))
    .exec(db)
    .await?;
    Ok(ExecutionId::from_db(row.id))
}

/// Marks every step not yet finished as skipped (or cancelled if it was running).
pub(super) async fn skip_unfinished_steps(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    execution_id: i64,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    // One statement: pending steps become skipped (they never ran: no finish time), running
    // ones failed at `at`.
    let running = || step_execution::Column::Status.eq(StepStatus::Running.as_str());
    step_execution::Entity::update_many()
        .col_expr(
            step_execution::Column::Status,
            Expr::case(running(), StepStatus::Failed.as_str())
                .finally(StepStatus::Skipped.as_str())
                .into(),
        )
        .col_expr(step_execution::Column::Reason, Expr::value(reason))
        .col_expr(
            step_execution::Column::FinishedAt,
            Expr::case(running(), Expr::value(at))
                .finally(Expr::col(step_execution::Column::FinishedAt))
                .into(),
        )
        .filter(step_execution::Column::CustomerId.eq(customer_id.get()))
        .filter(step_execution::Column::ExecutionId.eq(execution_id))
        .filter(
            step_execution::Column::Status
                .is_in([StepStatus::Pending.as_str(), StepStatus::Running.as_str()]),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// What an activity message adds about an execution's trigger: " (retry of execution 4)",
/// " (deployment 7)"; nothing for a member's own run.
pub(super) fn trigger_note(row: &execution::Model) -> String {
    match TriggerKind::parse(&row.trigger_kind) {
        TriggerKind::Retry => row
            .retry_of
            .map(|of| format!(" (retry of execution {of})"))
            .unwrap_or_default(),
        TriggerKind::ReleaseStage => row
            .trigger_release_execution_id
            .map(|release| format!(" (deployment {release})"))
            .unwrap_or_default(),
        TriggerKind::Schedule => row
            .trigger_schedule_id
            .map(|schedule| format!(" (schedule {schedule})"))
            .unwrap_or_default(),
        TriggerKind::Webhook => row
            .trigger_webhook_id
            .map(|webhook| match row.trigger_branch.as_str() {
                "" => format!(" (webhook {webhook})"),
                branch => format!(" (webhook {webhook}, {branch})"),
            })
            .unwrap_or_default(),
        TriggerKind::User => String::new(),
    }
}

/// The activity event of an execution that ended.
pub(super) fn finished_event(
    row: &execution::Model,
    status: ExecutionStatus,
    reason: &str,
    agent_name: Option<&str>,
) -> NewActivity {
    let outcome = match status {
        ExecutionStatus::Succeeded => "succeeded".to_owned(),
        ExecutionStatus::Cancelled => format!("was cancelled ({reason})"),
        ExecutionStatus::TimedOut => format!("timed out ({reason})"),
        _ => format!("failed ({reason})"),
    };
    let on_agent = agent_name
        .map(|name| format!(" on {name}"))
        .unwrap_or_default();
    NewActivity {
        kind: match status {
            ExecutionStatus::Succeeded => "execution.succeeded",
            ExecutionStatus::Cancelled => "execution.cancelled",
            ExecutionStatus::TimedOut => "execution.timed_out",
            _ => "execution.failed",
        },
        subject_type: "execution",
        subject_id: row.id,
        message: format!(
            "Pipeline {:?} execution {} {outcome}{on_agent}{}",
            row.pipeline_name,
            row.id,
            trigger_note(row)
        ),
        actor: None,
    }
}

impl Store {
    /// Checks that `agent` may upload an artifact for the execution: it runs there.
    pub async fn check_artifact_upload(
        &self,
        agent: &crate::auth::AuthenticatedAgent,
        header: &NewArtifact,
    ) -> Result<(), StoreError> {
        let execution_id = header.execution_id;
        let row = find_execution(&self.db, agent.customer_id(), execution_id).await?;
        if row.agent_id != Some(agent.agent_id().get()) {
            return Err(StoreError::NotFound(format!(
                "execution {execution_id} not found"
            )));
        }
        // Assigned counts too: the agent's "started" events travel on its stream and may be
        // applied a moment after an upload made on a separate connection.
        if !ExecutionStatus::ON_AGENT.contains(&status_of(&row)?) {
            return Err(StoreError::FailedPrecondition(format!(
                "execution {execution_id} is not running"
            )));
        }
        // Refused before any byte is stored when it cannot fit; checked again when recorded.
        self.check_artifact_quotas(&self.db, agent.customer_id(), header)
            .await
    }

    /// Refuses an artifact past the execution's or the customer's artifact quota.
    async fn check_artifact_quotas(
        &self,
        db: &impl ConnectionTrait,
        customer_id: CustomerId,
        header: &NewArtifact,
    ) -> Result<(), StoreError> {
        let limits = self.quota_limits(db, customer_id).await?;
        let of_execution: Option<i64> = artifact::Entity::find()
            .select_only()
            // PostgreSQL sums BIGINT as NUMERIC, which does not read back as i64: a second
            // artifact of one execution was refused with an internal error there.
            .column_as(
                Expr::from(Func::cast_as(
                    Func::sum(Expr::col(artifact::Column::SizeBytes)),
                    Alias::new("BIGINT"),
                )),
                "total",
            )
            .filter(artifact::Column::CustomerId.eq(customer_id.get()))
            .filter(artifact::Column::ExecutionId.eq(header.execution_id.get()))
            .into_tuple::<Option<i64>>()
            .one(db)
            .await?
            .flatten();
        limits
            .check(
                customer_id,
                Quota::ArtifactBytesPerExecution,
                of_execution.unwrap_or(0),
                header.size_bytes,
            )
            .map_err(|exceeded| self.over_quota(exceeded))?;
        let stored = super::quotas::used(db, customer_id, Quota::ArtifactBytesStored).await?;
        limits
            .check(
                customer_id,
                Quota::ArtifactBytesStored,
                stored,
                header.size_bytes,
            )
            .map_err(|exceeded| self.over_quota(exceeded))?;
        Ok(())
    }

    /// Records a stored artifact file, within the execution's and the customer's artifact
    /// quotas (the customer's stored bytes are counted in the same transaction).
    pub async fn create_artifact(
        &self,
        agent: &crate::auth::AuthenticatedAgent,
        header: &NewArtifact,
        storage_key: &str,
    ) -> Result<Artifact, StoreError> {
        let customer_id = agent.customer_id();
        let transaction = self.begin_write().await?;
        super::quotas::hold_quotas(&transaction, customer_id).await?;
        self.check_artifact_quotas(&transaction, customer_id, header)
            .await?;
        super::quotas::add_stored_bytes(
            &transaction,
            customer_id,
            Quota::ArtifactBytesStored,
            header.size_bytes,
            i64::MAX,
        )
        .await?;
        super::usage::add_usage(
            &transaction,
            customer_id,
            now(),
            super::usage::UsageDelta {
                artifact_bytes_added: header.size_bytes,
                ..Default::default()
            },
        )
        .await?;
        let row = artifact::ActiveModel {
            customer_id: Set(agent.customer_id().get()),
            execution_id: Set(header.execution_id.get()),
            step_index: Set(header.step_index),
            path: Set(header.path.clone()),
            size_bytes: Set(header.size_bytes),
            sha256: Set(header.sha256.clone()),
            storage_key: Set(storage_key.to_owned()),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&transaction)
        .await
        .map_err(|error| {
            StoreError::on_unique_violation(error, |_| {
                format!(
                    "artifact {:?} of step {} already exists",
                    header.path, header.step_index
                )
            })
        })?;
        transaction.commit().await?;
        Ok(artifact_from_row(row))
    }
}

impl SystemStore {
    /// Queued executions for a dispatch round, fairly across customers: at most `per_customer`
    /// of each customer's oldest (of `customers`, or of every customer), taken in turns — every
    /// customer's oldest first, then every customer's second, … — starting with the customers
    /// after `after_customer` and wrapping around, at most `limit` in all. So one customer's
    /// backlog (even one no agent can take) never keeps another customer's work out of a round,
    /// and the customers a full round leaves out come first in the next.
    pub(crate) async fn queue_candidates(
        &self,
        customers: Option<&[CustomerId]>,
        after_customer: CustomerId,
        per_customer: u64,
        limit: u64,
    ) -> Result<Vec<QueueCandidate>, StoreError> {
        use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
        let mut ranked = Query::select();
        ranked
            .columns([
                execution::Column::Id,
                execution::Column::CustomerId,
                execution::Column::SelectorAgentId,
                execution::Column::SelectorLabels,
                execution::Column::QueueReason,
            ])
            .expr_as(
                Expr::cust("ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY id)"),
                Alias::new("queue_rank"),
            )
            .from(execution::Entity)
            .and_where(execution::Column::Status.eq(ExecutionStatus::Queued.as_str()));
        if let Some(customers) = customers {
            ranked.and_where(
                execution::Column::CustomerId.is_in(customers.iter().map(|id| id.get())),
            );
        }
        let mut query = Query::select();
        query
            .columns(
                [
                    "id",
                    "customer_id",
                    "selector_agent_id",
                    "selector_labels",
                    "queue_reason",
                ]
                .map(Alias::new),
            )
            .from_subquery(ranked, Alias::new("ranked"))
            .and_where(
                Expr::col(Alias::new("queue_rank"))
                    .lte(i64::try_from(per_customer).unwrap_or(i64::MAX)),
            )
            .order_by(Alias::new("queue_rank"), Order::Asc)
            .order_by_expr(
                Expr::col(Alias::new("customer_id")).lte(after_customer.get()),
                Order::Asc,
            )
            .order_by(Alias::new("customer_id"), Order::Asc)
            .limit(limit);
        let rows = self.db.query_all(&query).await?;
        rows.into_iter()
            .map(|row| {
                let labels: serde_json::Value = row.try_get("", "selector_labels")?;
                Ok(QueueCandidate {
                    id: ExecutionId::from_db(row.try_get("", "id")?),
                    customer_id: CustomerId::from_db(row.try_get("", "customer_id")?),
                    selector: AgentSelector {
                        agent_id: row
                            .try_get::<Option<i64>>("", "selector_agent_id")?
                            .map(AgentId::from_db),
                        labels: labels_from_json(labels)?,
                    },
                    queue_reason: row.try_get("", "queue_reason")?,
                })
            })
            .collect()
    }

    /// What the claimed executions `ids` run, for their job assignments (in no order).
    pub(crate) async fn executions_to_deliver(
        &self,
        ids: &[ExecutionId],
    ) -> Result<Vec<QueuedExecution>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = execution::Entity::find()
            .filter(execution::Column::Id.is_in(ids.iter().map(|id| id.get())))
            .all(&self.db)
            .await?;
        // Which of them deploy a release stage: one query for the batch.
        let deploys: std::collections::HashSet<i64> = if rows.is_empty() {
            Default::default()
        } else {
            stage_execution_record::Entity::find()
                .select_only()
                .column(stage_execution_record::Column::ExecutionId)
                .filter(
                    stage_execution_record::Column::ExecutionId
                        .is_in(rows.iter().map(|row| row.id)),
                )
                .into_tuple::<Option<i64>>()
                .all(&self.db)
                .await?
                .into_iter()
                .flatten()
                .collect()
        };
        // Their steps: each version parsed once, then kept (versions never change).
        let versions: Vec<i64> = rows
            .iter()
            .filter_map(|row| row.pipeline_version_id)
            .collect();
        let steps_of = self.store.steps_of_versions(&self.db, &versions).await?;
        // The variable groups each was queued with; runs queued before migration m20261212
        // read their pipeline's (one query for the batch).
        let mut groups: std::collections::HashMap<i64, Vec<crate::domain::VariableGroupId>> =
            Default::default();
        let unpinned: Vec<i64> = rows
            .iter()
            .filter(|row| row.variable_group_ids.is_none())
            .map(|row| row.pipeline_id)
            .collect();
        if !unpinned.is_empty() {
            let pipelines = pipeline::Entity::find()
                .filter(pipeline::Column::Id.is_in(unpinned))
                .filter(pipeline::Column::VariableGroupIds.ne("[]"))
                .all(&self.db)
                .await?;
            for pipeline in pipelines {
                groups.insert(pipeline.id, group_ids_from_row(&pipeline)?);
            }
        }
        rows.into_iter()
            .map(|row| {
                Ok(QueuedExecution {
                    deploy: deploys.contains(&row.id),
                    variable_group_ids: match &row.variable_group_ids {
                        Some(text) => group_ids_from_text(text)?,
                        None => groups.get(&row.pipeline_id).cloned().unwrap_or_default(),
                    },
                    id: ExecutionId::from_db(row.id),
                    customer_id: CustomerId::from_db(row.customer_id),
                    pipeline_id: PipelineId::from_db(row.pipeline_id),
                    steps: match row.pipeline_version_id {
                        Some(version) => steps_of.get(&version).cloned().ok_or_else(|| {
                            corrupt("execution", format!("steps version {version} is missing"))
                        })?,
                        None => std::sync::Arc::new(steps_from_json(row.steps.clone())?),
                    },
                    parameters: parameters_of(&row)?,
                    timeout_seconds: row.timeout_seconds,
                    pipeline_name: row.pipeline_name,
                    created_at: row.created_at,
                })
            })
            .collect()
    }
}
