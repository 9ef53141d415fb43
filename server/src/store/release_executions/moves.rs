//! Moving a release execution on: the rules (`domain::release_flow`) decide the move from the
//! state read under the release execution's lock; this applies it in the same transaction.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    QueryTrait,
};

use super::{event, label, lock_release_execution, release_status, stage_status, stages_of};
use crate::domain::execution::{ExecutionStatus, Trigger};
use crate::domain::pipeline::{AgentSelector, StepsVersion, resolve_parameters};
use crate::domain::release::{ReleaseExecutionStatus, StageStatus};
use crate::domain::release_flow::{Change, ReleaseState, StageState, next_move, stage_not_started};
use crate::domain::{
    AgentId, CustomerId, ExecutionId, PipelineId, ReleaseExecutionId, StageExecutionId, UserId,
};
use crate::store::entities::{
    execution, pipeline_version, release_execution, stage_execution_record as stage,
};
use crate::store::error::corrupt;
use crate::store::executions::{insert_execution, status_of};
use crate::store::pipelines::{labels_from_json, load_pipeline, steps_from_json};
use crate::store::{StoreError, SystemStore, activity, now};

/// Sets a release execution's final status, once.
pub(super) async fn finish_release(
    db: &DatabaseTransaction,
    row: &release_execution::Model,
    status: ReleaseExecutionStatus,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let changed = release_execution::Entity::update_many()
        .col_expr(
            release_execution::Column::Status,
            Expr::value(status.as_str()),
        )
        .col_expr(release_execution::Column::Reason, Expr::value(reason))
        .col_expr(release_execution::Column::FinishedAt, Expr::value(at))
        .filter(release_execution::Column::Id.eq(row.id))
        .filter(release_execution::Column::Status.is_in([
            ReleaseExecutionStatus::Pending.as_str(),
            ReleaseExecutionStatus::InProgress.as_str(),
        ]))
        .exec(db)
        .await?
        .rows_affected;
    if changed == 1 {
        let outcome = if reason.is_empty() {
            status.as_str().replace('_', " ")
        } else {
            format!("{} ({reason})", status.as_str().replace('_', " "))
        };
        activity::record(
            db,
            CustomerId::from_db(row.customer_id),
            event(
                match status {
                    ReleaseExecutionStatus::Succeeded => "release.succeeded",
                    ReleaseExecutionStatus::Rejected => "release.rejected",
                    ReleaseExecutionStatus::Cancelled => "release.cancelled",
                    _ => "release.failed",
                },
                row.id,
                format!("Release {} {outcome}", label(row)),
                None,
            ),
            at,
        )
        .await?;
    }
    Ok(())
}

/// Marks every stage not yet started as skipped.
pub(super) async fn skip_remaining(
    db: &DatabaseTransaction,
    row: &release_execution::Model,
    reason: &str,
) -> Result<(), StoreError> {
    stage::Entity::update_many()
        .col_expr(
            stage::Column::Status,
            Expr::value(StageStatus::Skipped.as_str()),
        )
        .col_expr(stage::Column::Reason, Expr::value(reason))
        .filter(stage::Column::ReleaseExecutionId.eq(row.id))
        .filter(stage::Column::Status.is_in([
            StageStatus::Pending.as_str(),
            StageStatus::AwaitingApproval.as_str(),
        ]))
        .exec(db)
        .await?;
    Ok(())
}

async fn set_stage(
    db: &DatabaseTransaction,
    stage_id: i64,
    status: StageStatus,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    stage::Entity::update_many()
        .col_expr(stage::Column::Status, Expr::value(status.as_str()))
        .col_expr(stage::Column::Reason, Expr::value(reason))
        .col_expr(stage::Column::FinishedAt, Expr::value(at))
        .filter(stage::Column::Id.eq(stage_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Queues a stage's deploy: a normal pipeline execution of its deploy pipeline with the
/// stage's parameters and selector, linked by id. When the deploy cannot be queued (its pipeline
/// was deleted, or its parameters no longer fit it) the reason is returned instead.
async fn start_stage(
    db: &DatabaseTransaction,
    row: &release_execution::Model,
    stage_row: &stage::Model,
    at: DateTime<Utc>,
) -> Result<Result<ExecutionId, String>, StoreError> {
    let customer_id = CustomerId::from_db(row.customer_id);
    let pipeline =
        match load_pipeline(db, customer_id, PipelineId::from_db(stage_row.pipeline_id)).await {
            Ok(pipeline) => pipeline,
            Err(StoreError::NotFound(_)) => {
                return Ok(Err(format!(
                    "deploy pipeline {} was deleted",
                    stage_row.pipeline_id
                )));
            }
            Err(error) => return Err(error),
        };
    let parameters: BTreeMap<String, String> = serde_json::from_value(stage_row.parameters.clone())
        .map_err(|error| corrupt("stage parameters", error))?;
    // A stage runs what was fixed when its release execution started (what an approval binds),
    // whatever the deploy pipeline became since.
    if let Some(snapshot) = super::stage_snapshot(stage_row)? {
        let version = pipeline_version::Entity::find_by_id(snapshot.version_id)
            .filter(pipeline_version::Column::CustomerId.eq(customer_id.get()))
            .one(db)
            .await?
            .ok_or_else(|| corrupt("stage snapshot", "steps version missing"))?;
        let mut pinned = pipeline;
        pinned.definition.steps = steps_from_json(version.steps)?;
        pinned.steps_version = StepsVersion {
            id: snapshot.version_id,
            number: snapshot.version_number,
        };
        pinned.definition.variable_group_ids = snapshot.variable_groups();
        pinned.definition.timeout_seconds = snapshot.timeout_seconds;
        let execution_id = insert_execution(
            db,
            &pinned,
            &parameters,
            &snapshot.selector(),
            Trigger::ReleaseStage {
                deployed_by: UserId::from_db(row.triggered_by),
                release: ReleaseExecutionId::from_db(row.id),
                stage: StageExecutionId::from_db(stage_row.id),
            },
        )
        .await?;
        return stage_started(db, row, stage_row, execution_id, at).await;
    }
    let parameters = match resolve_parameters(&pipeline.definition.parameters, &parameters) {
        Ok(parameters) => parameters,
        // The deploy pipeline changed since the release was deployed.
        Err(error) => {
            return Ok(Err(format!(
                "parameters no longer fit the deploy pipeline: {error}"
            )));
        }
    };
    let selector = match (stage_row.selector_agent_id, &stage_row.selector_labels) {
        (None, None) => pipeline.definition.selector.clone(),
        (agent_id, labels) => AgentSelector {
            agent_id: agent_id.map(AgentId::from_db),
            labels: labels
                .clone()
                .map(labels_from_json)
                .transpose()?
                .unwrap_or_default(),
        },
    };
    let execution_id = insert_execution(
        db,
        &pipeline,
        &parameters,
        &selector,
        Trigger::ReleaseStage {
            deployed_by: UserId::from_db(row.triggered_by),
            release: ReleaseExecutionId::from_db(row.id),
            stage: StageExecutionId::from_db(stage_row.id),
        },
    )
    .await?;
    stage_started(db, row, stage_row, execution_id, at).await
}

/// Marks a stage in progress with its deploy execution.
async fn stage_started(
    db: &DatabaseTransaction,
    row: &release_execution::Model,
    stage_row: &stage::Model,
    execution_id: ExecutionId,
    at: DateTime<Utc>,
) -> Result<Result<ExecutionId, String>, StoreError> {
    let customer_id = CustomerId::from_db(row.customer_id);
    stage::Entity::update_many()
        .col_expr(
            stage::Column::Status,
            Expr::value(StageStatus::InProgress.as_str()),
        )
        .col_expr(stage::Column::ExecutionId, Expr::value(execution_id.get()))
        .col_expr(stage::Column::StartedAt, Expr::value(at))
        .filter(stage::Column::Id.eq(stage_row.id))
        .exec(db)
        .await?;
    activity::record(
        db,
        customer_id,
        event(
            "release.stage.started",
            row.id,
            format!(
                "Release {} deploying to {} (execution {execution_id})",
                label(row),
                stage_row.environment_name
            ),
            None,
        ),
        at,
    )
    .await?;
    Ok(Ok(execution_id))
}

/// What the rules see of a release execution and its stages: each stage's row as it is, with
/// the status of the deploy of a stage in progress.
pub(super) async fn release_state(
    db: &impl ConnectionTrait,
    row: &release_execution::Model,
    stage_rows: &[stage::Model],
) -> Result<ReleaseState, StoreError> {
    let mut stages = Vec::with_capacity(stage_rows.len());
    for stage_row in stage_rows {
        let status = stage_status(stage_row)?;
        let deploy = match (status, stage_row.execution_id) {
            (StageStatus::InProgress, None) => {
                return Err(corrupt(
                    "stage",
                    format!("stage execution {} runs without an execution", stage_row.id),
                ));
            }
            (StageStatus::InProgress, Some(execution_id)) => {
                let deploy = execution::Entity::find_by_id(execution_id)
                    .filter(execution::Column::CustomerId.eq(row.customer_id))
                    .one(db)
                    .await?
                    .ok_or_else(|| {
                        corrupt("stage", format!("execution {execution_id} is missing"))
                    })?;
                Some((status_of(&deploy)?, deploy.failure_reason))
            }
            _ => None,
        };
        stages.push(stage_state(stage_row, deploy)?);
    }
    Ok(ReleaseState {
        status: release_status(row)?,
        cancel_requested: row.cancel_requested_at.is_some(),
        stages,
    })
}

fn stage_state(
    stage_row: &stage::Model,
    deploy: Option<(ExecutionStatus, String)>,
) -> Result<StageState, StoreError> {
    Ok(StageState {
        id: StageExecutionId::from_db(stage_row.id),
        order: stage_row.stage_order,
        environment_name: stage_row.environment_name.clone(),
        status: stage_status(stage_row)?,
        requires_approval: stage_row.requires_approval,
        approved: stage_row.approved_by.is_some(),
        deploy,
    })
}

/// Applies a move the rules decided, change by change, inside the caller's transaction (which
/// holds the release execution's lock). Returns the deploy execution it queued, if any.
pub(super) async fn apply_move(
    db: &DatabaseTransaction,
    row: &release_execution::Model,
    stage_rows: &[stage::Model],
    changes: Vec<Change>,
) -> Result<Option<ExecutionId>, StoreError> {
    let customer_id = CustomerId::from_db(row.customer_id);
    let at = now();
    let stage_row = |id: StageExecutionId| {
        stage_rows
            .iter()
            .find(|stage_row| stage_row.id == id.get())
            .ok_or_else(|| corrupt("stage", format!("stage execution {id} is missing")))
    };
    let mut started = None;
    let mut changes: VecDeque<Change> = changes.into();
    while let Some(change) = changes.pop_front() {
        match change {
            Change::StageSucceeded(id) => {
                let stage_row = stage_row(id)?;
                set_stage(db, stage_row.id, StageStatus::Succeeded, "", at).await?;
                activity::record(
                    db,
                    customer_id,
                    event(
                        "release.stage.succeeded",
                        row.id,
                        format!(
                            "Release {} deployed to {}",
                            label(row),
                            stage_row.environment_name
                        ),
                        None,
                    ),
                    at,
                )
                .await?;
            }
            Change::StageEnded {
                stage,
                status,
                reason,
            } => set_stage(db, stage.get(), status, &reason, at).await?,
            Change::SkipRemaining(reason) => skip_remaining(db, row, &reason).await?,
            Change::CancelRequested => {
                release_execution::Entity::update_many()
                    .col_expr(
                        release_execution::Column::CancelRequestedAt,
                        Expr::value(at),
                    )
                    .filter(release_execution::Column::Id.eq(row.id))
                    .exec(db)
                    .await?;
            }
            Change::InProgress => {
                release_execution::Entity::update_many()
                    .col_expr(
                        release_execution::Column::Status,
                        Expr::value(ReleaseExecutionStatus::InProgress.as_str()),
                    )
                    .filter(release_execution::Column::Id.eq(row.id))
                    .exec(db)
                    .await?;
            }
            Change::AwaitApproval(id) => {
                let stage_row = stage_row(id)?;
                stage::Entity::update_many()
                    .col_expr(
                        stage::Column::Status,
                        Expr::value(StageStatus::AwaitingApproval.as_str()),
                    )
                    .filter(stage::Column::Id.eq(stage_row.id))
                    .exec(db)
                    .await?;
                activity::record(
                    db,
                    customer_id,
                    event(
                        "release.stage.awaiting_approval",
                        row.id,
                        format!(
                            "Release {} awaits approval for {}",
                            label(row),
                            stage_row.environment_name
                        ),
                        None,
                    ),
                    at,
                )
                .await?;
            }
            Change::StartStage(id) => {
                let stage_row = stage_row(id)?;
                match start_stage(db, row, stage_row, at).await? {
                    Ok(execution_id) => started = Some(execution_id),
                    Err(reason) => {
                        let stage = stage_state(stage_row, None)?;
                        changes.extend(stage_not_started(&stage, &reason));
                    }
                }
            }
            Change::Finish { status, reason } => {
                finish_release(db, row, status, &reason, at).await?
            }
        }
    }
    Ok(started)
}

/// Makes the next move of a release execution (see [`next_move`]) under its lock; returns the
/// deploy execution it queued, if any. Running it again changes nothing more.
pub(super) async fn advance(
    db: &DatabaseTransaction,
    customer_id: CustomerId,
    release_execution_id: i64,
) -> Result<Option<ExecutionId>, StoreError> {
    let Some(row) = lock_release_execution(db, customer_id, release_execution_id).await? else {
        return Ok(None);
    };
    if release_status(&row)?.is_terminal() {
        return Ok(None);
    }
    let stage_rows = stages_of(db, customer_id, row.id).await?;
    let state = release_state(db, &row, &stage_rows).await?;
    apply_move(db, &row, &stage_rows, next_move(&state)).await
}

impl SystemStore {
    /// Moves on the release a finished deploy execution belongs to, if any. Returns the release
    /// execution and the next deploy it started.
    pub(crate) async fn advance_release_of(
        &self,
        customer_id: CustomerId,
        execution_id: ExecutionId,
    ) -> Result<Option<(ReleaseExecutionId, Option<ExecutionId>)>, StoreError> {
        let Some(stage_row) = stage::Entity::find()
            .filter(stage::Column::CustomerId.eq(customer_id.get()))
            .filter(stage::Column::ExecutionId.eq(execution_id.get()))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let transaction = self.begin_write().await?;
        let started = advance(
            &transaction,
            CustomerId::from_db(stage_row.customer_id),
            stage_row.release_execution_id,
        )
        .await?;
        transaction.commit().await?;
        Ok(Some((
            ReleaseExecutionId::from_db(stage_row.release_execution_id),
            started,
        )))
    }

    /// Release executions whose running stage's deploy has ended without the release moving on
    /// (the server stopped in between): the sweep advances them.
    pub(crate) async fn stalled_release_executions(
        &self,
    ) -> Result<Vec<(CustomerId, ExecutionId)>, StoreError> {
        let terminal = [
            ExecutionStatus::Succeeded.as_str(),
            ExecutionStatus::Failed.as_str(),
            ExecutionStatus::Cancelled.as_str(),
            ExecutionStatus::TimedOut.as_str(),
        ];
        let finished = execution::Entity::find()
            .select_only()
            .column(execution::Column::Id)
            .filter(execution::Column::Status.is_in(terminal))
            .into_query();
        Ok(stage::Entity::find()
            .select_only()
            .column(stage::Column::CustomerId)
            .column(stage::Column::ExecutionId)
            .filter(stage::Column::Status.eq(StageStatus::InProgress.as_str()))
            .filter(Expr::col(stage::Column::ExecutionId).in_subquery(finished))
            .limit(100)
            .into_tuple::<(i64, Option<i64>)>()
            .all(&self.db)
            .await?
            .into_iter()
            .filter_map(|(customer_id, execution_id)| {
                Some((
                    CustomerId::from_db(customer_id),
                    ExecutionId::from_db(execution_id?),
                ))
            })
            .collect())
    }
}
