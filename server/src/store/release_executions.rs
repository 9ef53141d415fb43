//! Release executions: deploying a release, its stages strictly in order, approvals, rejection,
//! cancellation, and the link from each stage to its deploy pipeline's execution (by id).
//!
//! Every state change goes through [`advance`], one transaction that looks at the release
//! execution and makes the next move: start the next stage's deploy, wait for an approval, or
//! finish the release. It is idempotent, so calling it again (after a server restart, from the
//! periodic sweep) is always safe.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LockType};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};

use super::entities::{
    artifact, customer, execution, release, release_execution, release_execution_build,
    stage_execution_record as stage, user,
};
use super::environments::{environment_from_row, find_environment};
use super::error::corrupt;
use super::executions::{insert_execution, status_of};
use super::pipelines::{labels_from_json, load_pipeline, to_json};
use super::releases::load_release;
use super::{Store, StoreError, SystemStore, activity, now};
use crate::auth::{AuthenticatedAgent, TenantScope};
use crate::domain::execution::{Artifact, ExecutionStatus, Trigger};
use crate::domain::pipeline::{AgentSelector, resolve_parameters};
use crate::domain::release::{
    DeployRequest, ReleaseExecution, ReleaseExecutionStatus, ReleaseStatus, StageExecution,
    StageStatus,
};
use crate::domain::{
    AgentId, CustomerId, EnvironmentId, ExecutionId, NewActivity, Page, PageRequest, PipelineId,
    Refusal, ReleaseExecutionId, ReleaseId, StageExecutionId, UserId,
};

fn stage_status(row: &stage::Model) -> Result<StageStatus, StoreError> {
    StageStatus::from_db(&row.status).ok_or_else(|| corrupt("stage status", &row.status))
}

fn release_status(row: &release_execution::Model) -> Result<ReleaseExecutionStatus, StoreError> {
    ReleaseExecutionStatus::from_db(&row.status)
        .ok_or_else(|| corrupt("release execution status", &row.status))
}

fn stage_from_row(row: stage::Model) -> Result<StageExecution, StoreError> {
    Ok(StageExecution {
        id: StageExecutionId::from_db(row.id),
        order: row.stage_order,
        environment_id: EnvironmentId::from_db(row.environment_id),
        status: stage_status(&row)?,
        environment_name: row.environment_name,
        pipeline_id: PipelineId::from_db(row.pipeline_id),
        requires_approval: row.requires_approval,
        execution_id: row.execution_id.map(ExecutionId::from_db),
        approved_by: row.approved_by.map(UserId::from_db),
        approved_at: row.approved_at,
        rejected_by: row.rejected_by.map(UserId::from_db),
        comment: row.comment,
        started_at: row.started_at,
        finished_at: row.finished_at,
        reason: row.reason,
    })
}

async fn stages_of(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    release_execution_id: i64,
) -> Result<Vec<stage::Model>, StoreError> {
    Ok(stage::Entity::find()
        .filter(stage::Column::CustomerId.eq(customer_id.get()))
        .filter(stage::Column::ReleaseExecutionId.eq(release_execution_id))
        .order_by_asc(stage::Column::StageOrder)
        .all(db)
        .await?)
}

async fn find_release_execution(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    release_execution_id: ReleaseExecutionId,
) -> Result<release_execution::Model, StoreError> {
    release_execution::Entity::find_by_id(release_execution_id.get())
        .filter(release_execution::Column::CustomerId.eq(customer_id.get()))
        .one(db)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "release execution {release_execution_id} not found"
            ))
        })
}

/// Reads a release execution and, on PostgreSQL, locks its row until the transaction ends, so
/// the moves on one release execution (an approval, a cancellation, a deploy ending, the sweep,
/// on any replica) happen one after the other, each seeing what the previous one wrote. SQLite
/// needs no lock: its write transactions already exclude each other.
async fn lock_release_execution(
    db: &DatabaseTransaction,
    customer_id: CustomerId,
    release_execution_id: i64,
) -> Result<Option<release_execution::Model>, StoreError> {
    let mut query = release_execution::Entity::find_by_id(release_execution_id)
        .filter(release_execution::Column::CustomerId.eq(customer_id.get()));
    if db.get_database_backend() == DbBackend::Postgres {
        query = query.lock(LockType::Update);
    }
    Ok(query.one(db).await?)
}

/// A release execution with its stages and builds.
async fn load_release_execution(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    release_execution_id: ReleaseExecutionId,
) -> Result<ReleaseExecution, StoreError> {
    let row = find_release_execution(db, customer_id, release_execution_id).await?;
    let mut loaded = release_executions_from_rows(db, customer_id, vec![row]).await?;
    loaded.pop().ok_or_else(|| {
        StoreError::NotFound(format!(
            "release execution {release_execution_id} not found"
        ))
    })
}

async fn release_executions_from_rows(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    rows: Vec<release_execution::Model>,
) -> Result<Vec<ReleaseExecution>, StoreError> {
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    let mut stages: BTreeMap<i64, Vec<StageExecution>> = BTreeMap::new();
    for row in stage::Entity::find()
        .filter(stage::Column::CustomerId.eq(customer_id.get()))
        .filter(stage::Column::ReleaseExecutionId.is_in(ids.clone()))
        .order_by_asc(stage::Column::StageOrder)
        .all(db)
        .await?
    {
        stages
            .entry(row.release_execution_id)
            .or_default()
            .push(stage_from_row(row)?);
    }
    let mut builds: BTreeMap<i64, Vec<(PipelineId, ExecutionId)>> = BTreeMap::new();
    for row in release_execution_build::Entity::find()
        .filter(release_execution_build::Column::CustomerId.eq(customer_id.get()))
        .filter(release_execution_build::Column::ReleaseExecutionId.is_in(ids))
        .order_by_asc(release_execution_build::Column::PipelineId)
        .all(db)
        .await?
    {
        builds.entry(row.release_execution_id).or_default().push((
            PipelineId::from_db(row.pipeline_id),
            ExecutionId::from_db(row.execution_id),
        ));
    }
    rows.into_iter()
        .map(|row| {
            Ok(ReleaseExecution {
                id: ReleaseExecutionId::from_db(row.id),
                customer_id: CustomerId::from_db(row.customer_id),
                release_id: ReleaseId::from_db(row.release_id),
                status: release_status(&row)?,
                stages: stages.remove(&row.id).unwrap_or_default(),
                builds: builds.remove(&row.id).unwrap_or_default(),
                parameters: serde_json::from_value(row.parameters.clone())
                    .map_err(|error| corrupt("parameters", error))?,
                triggered_by: UserId::from_db(row.triggered_by),
                release_name: row.release_name,
                number: row.number,
                version: row.version,
                reason: row.reason,
                created_at: row.created_at,
                finished_at: row.finished_at,
            })
        })
        .collect()
}

fn event(
    kind: &'static str,
    subject_id: i64,
    message: String,
    actor: Option<UserId>,
) -> NewActivity {
    NewActivity {
        kind,
        subject_type: "release_execution",
        subject_id,
        message,
        actor,
    }
}

fn label(row: &release_execution::Model) -> String {
    format!("{} Release-{}", row.release_name, row.number)
}

/// Sets a release execution's final status, once.
async fn finish_release(
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
async fn skip_remaining(
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

/// Starts a stage: a normal pipeline execution of its deploy pipeline, linked by id.
async fn start_stage(
    db: &DatabaseTransaction,
    row: &release_execution::Model,
    stage_row: &stage::Model,
    at: DateTime<Utc>,
) -> Result<Option<ExecutionId>, StoreError> {
    let customer_id = CustomerId::from_db(row.customer_id);
    let pipeline =
        match load_pipeline(db, customer_id, PipelineId::from_db(stage_row.pipeline_id)).await {
            Ok(pipeline) => pipeline,
            Err(StoreError::NotFound(_)) => {
                let reason = format!("deploy pipeline {} was deleted", stage_row.pipeline_id);
                set_stage(db, stage_row.id, StageStatus::Failed, &reason, at).await?;
                skip_remaining(db, row, "an earlier stage failed").await?;
                finish_release(
                    db,
                    row,
                    ReleaseExecutionStatus::Failed,
                    &format!(
                        "stage {} ({}): {reason}",
                        stage_row.stage_order, stage_row.environment_name
                    ),
                    at,
                )
                .await?;
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
    let parameters: BTreeMap<String, String> = serde_json::from_value(stage_row.parameters.clone())
        .map_err(|error| corrupt("stage parameters", error))?;
    let parameters = match resolve_parameters(&pipeline.definition.parameters, &parameters) {
        Ok(parameters) => parameters,
        Err(error) => {
            // The deploy pipeline changed since the release was deployed.
            let reason = format!("parameters no longer fit the deploy pipeline: {error}");
            set_stage(db, stage_row.id, StageStatus::Failed, &reason, at).await?;
            skip_remaining(db, row, "an earlier stage failed").await?;
            finish_release(
                db,
                row,
                ReleaseExecutionStatus::Failed,
                &format!(
                    "stage {} ({}): {reason}",
                    stage_row.stage_order, stage_row.environment_name
                ),
                at,
            )
            .await?;
            return Ok(None);
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
            stage: StageExecutionId::from_db(stage_row.id),
        },
    )
    .await?;
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
    Ok(Some(execution_id))
}

/// Makes the next move of a release execution; returns the deploy execution it started, if any.
async fn advance(
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
    let at = now();
    for stage_row in stages_of(db, customer_id, row.id).await? {
        match stage_status(&stage_row)? {
            StageStatus::Succeeded => continue,
            StageStatus::InProgress => {
                let Some(execution_id) = stage_row.execution_id else {
                    return Err(corrupt(
                        "stage",
                        format!("stage execution {} runs without an execution", stage_row.id),
                    ));
                };
                let Some(deploy) = execution::Entity::find_by_id(execution_id)
                    .filter(execution::Column::CustomerId.eq(customer_id.get()))
                    .one(db)
                    .await?
                else {
                    return Err(corrupt(
                        "stage",
                        format!("execution {execution_id} is missing"),
                    ));
                };
                let where_ = format!(
                    "stage {} ({})",
                    stage_row.stage_order, stage_row.environment_name
                );
                match status_of(&deploy)? {
                    ExecutionStatus::Succeeded => {
                        set_stage(db, stage_row.id, StageStatus::Succeeded, "", at).await?;
                        activity::record(
                            db,
                            customer_id,
                            event(
                                "release.stage.succeeded",
                                row.id,
                                format!(
                                    "Release {} deployed to {}",
                                    label(&row),
                                    stage_row.environment_name
                                ),
                                None,
                            ),
                            at,
                        )
                        .await?;
                        continue;
                    }
                    ExecutionStatus::Cancelled => {
                        set_stage(
                            db,
                            stage_row.id,
                            StageStatus::Cancelled,
                            &deploy.failure_reason,
                            at,
                        )
                        .await?;
                        skip_remaining(db, &row, "the release was cancelled").await?;
                        finish_release(
                            db,
                            &row,
                            ReleaseExecutionStatus::Cancelled,
                            &format!("{where_}: {}", deploy.failure_reason),
                            at,
                        )
                        .await?;
                    }
                    ExecutionStatus::Failed | ExecutionStatus::TimedOut => {
                        set_stage(
                            db,
                            stage_row.id,
                            StageStatus::Failed,
                            &deploy.failure_reason,
                            at,
                        )
                        .await?;
                        skip_remaining(db, &row, "an earlier stage failed").await?;
                        finish_release(
                            db,
                            &row,
                            ReleaseExecutionStatus::Failed,
                            &format!("{where_} failed: {}", deploy.failure_reason),
                            at,
                        )
                        .await?;
                    }
                    _ => {}
                }
                return Ok(None);
            }
            StageStatus::AwaitingApproval => return Ok(None),
            StageStatus::Pending => {
                if row.cancel_requested_at.is_some() {
                    skip_remaining(db, &row, "the release was cancelled").await?;
                    finish_release(
                        db,
                        &row,
                        ReleaseExecutionStatus::Cancelled,
                        "cancelled before this stage started",
                        at,
                    )
                    .await?;
                    return Ok(None);
                }
                release_execution::Entity::update_many()
                    .col_expr(
                        release_execution::Column::Status,
                        Expr::value(ReleaseExecutionStatus::InProgress.as_str()),
                    )
                    .filter(release_execution::Column::Id.eq(row.id))
                    .exec(db)
                    .await?;
                if stage_row.requires_approval && stage_row.approved_by.is_none() {
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
                                label(&row),
                                stage_row.environment_name
                            ),
                            None,
                        ),
                        at,
                    )
                    .await?;
                    return Ok(None);
                }
                return start_stage(db, &row, &stage_row, at).await;
            }
            StageStatus::Failed | StageStatus::Cancelled | StageStatus::Skipped => {
                // Only possible when the release already ended; make it consistent.
                finish_release(
                    db,
                    &row,
                    ReleaseExecutionStatus::Failed,
                    "a stage did not succeed",
                    at,
                )
                .await?;
                return Ok(None);
            }
        }
    }
    finish_release(db, &row, ReleaseExecutionStatus::Succeeded, "", at).await?;
    Ok(None)
}

/// What a deploy job needs to know about its release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseContext {
    pub release_name: String,
    pub release_number: i64,
    pub environment_name: String,
    /// The stage's environment (its variables win over those for every environment).
    pub environment_id: EnvironmentId,
    pub version: String,
    /// (pipeline id, artifact) of every shipped build.
    pub artifacts: Vec<(PipelineId, Artifact)>,
}

/// What a release action needs the caller to do next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseEffects {
    /// A deploy execution was queued: wake dispatch.
    pub started: Option<ExecutionId>,
    /// This deploy execution must be cancelled (on its agent).
    pub cancel: Option<ExecutionId>,
}

impl Store {
    /// Deploys an active release: Release-N with the chosen builds, one stage execution per stage,
    /// and the first move made (first stage started or awaiting approval).
    pub async fn deploy_release(
        &self,
        scope: &TenantScope,
        release_id: ReleaseId,
        request: DeployRequest,
    ) -> Result<(ReleaseExecution, ReleaseEffects), StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let release = load_release(&transaction, customer_id, release_id).await?;
        match release.status {
            ReleaseStatus::Active => {}
            status => {
                return Err(StoreError::FailedPrecondition(format!(
                    "release {release_id} is {}",
                    status.as_str()
                )));
            }
        }
        // The builds to ship: the ones asked for, the latest succeeded for the rest.
        let mut builds: Vec<(PipelineId, ExecutionId)> = Vec::new();
        for (index, (pipeline_id, execution_id)) in request.builds.iter().enumerate() {
            if !release.definition.pipeline_ids.contains(pipeline_id) {
                return Err(StoreError::InvalidArgument(format!(
                    "builds[{index}].pipeline_id is not a pipeline of release {release_id} ({pipeline_id})"
                )));
            }
            let found = execution::Entity::find_by_id(execution_id.get())
                .filter(execution::Column::CustomerId.eq(customer_id.get()))
                .filter(execution::Column::PipelineId.eq(pipeline_id.get()))
                .one(&transaction)
                .await?;
            match found {
                Some(row) if status_of(&row)? == ExecutionStatus::Succeeded => {
                    builds.push((*pipeline_id, *execution_id))
                }
                Some(_) => {
                    return Err(StoreError::InvalidArgument(format!(
                        "builds[{index}].execution_id did not succeed ({execution_id})"
                    )));
                }
                None => {
                    return Err(StoreError::NotFound(format!(
                        "builds[{index}].execution_id: execution {execution_id} of pipeline {pipeline_id} not found"
                    )));
                }
            }
        }
        for pipeline_id in &release.definition.pipeline_ids {
            if builds.iter().any(|(chosen, _)| chosen == pipeline_id) {
                continue;
            }
            let latest = execution::Entity::find()
                .filter(execution::Column::CustomerId.eq(customer_id.get()))
                .filter(execution::Column::PipelineId.eq(pipeline_id.get()))
                .filter(execution::Column::Status.eq(ExecutionStatus::Succeeded.as_str()))
                .order_by_desc(execution::Column::Id)
                .one(&transaction)
                .await?
                .ok_or_else(|| {
                    StoreError::FailedPrecondition(format!(
                        "pipeline {pipeline_id} has no succeeded execution to ship"
                    ))
                })?;
            builds.push((*pipeline_id, ExecutionId::from_db(latest.id)));
        }
        // Every stage's parameters must fit its deploy pipeline now, not fail later.
        let mut stage_rows = Vec::new();
        let mut used = std::collections::HashSet::new();
        for (index, definition) in release.definition.stages.iter().enumerate() {
            let pipeline = load_pipeline(&transaction, customer_id, definition.pipeline_id)
                .await
                .map_err(|_| {
                    StoreError::FailedPrecondition(format!(
                        "stages[{index}]: deploy pipeline {} was deleted",
                        definition.pipeline_id
                    ))
                })?;
            let mut parameters = definition.parameters.clone();
            for (name, value) in &request.parameters {
                if let Some(known) = pipeline
                    .definition
                    .parameters
                    .iter()
                    .find(|parameter| parameter.name.eq_ignore_ascii_case(name))
                {
                    used.insert(name.clone());
                    parameters.retain(|key, _| !key.eq_ignore_ascii_case(&known.name));
                    parameters.insert(known.name.clone(), value.clone());
                }
            }
            let resolved = resolve_parameters(&pipeline.definition.parameters, &parameters)
                .map_err(|error| StoreError::InvalidArgument(format!("stages[{index}].{error}")))?;
            let environment =
                find_environment(&transaction, customer_id, definition.environment_id)
                    .await?
                    .ok_or_else(|| {
                        StoreError::FailedPrecondition(format!(
                            "stages[{index}]: environment {} is gone",
                            definition.environment_id
                        ))
                    })?;
            let environment = environment_from_row(environment)?;
            stage_rows.push((definition.clone(), environment, resolved));
        }
        if let Some(unused) = request.parameters.keys().find(|name| !used.contains(*name)) {
            return Err(StoreError::InvalidArgument(format!(
                "parameters[{unused}] is not a parameter of any stage's deploy pipeline"
            )));
        }
        // Release-N, numbered per release under the row lock of the update.
        release::Entity::update_many()
            .col_expr(
                release::Column::LastNumber,
                Expr::col(release::Column::LastNumber).add(1),
            )
            .filter(release::Column::Id.eq(release_id.get()))
            .exec(&transaction)
            .await?;
        let number = release::Entity::find_by_id(release_id.get())
            .one(&transaction)
            .await?
            .map(|row| row.last_number)
            .ok_or_else(|| StoreError::NotFound(format!("release {release_id} not found")))?;
        let at = now();
        let row = release_execution::ActiveModel {
            customer_id: Set(customer_id.get()),
            release_id: Set(release_id.get()),
            release_name: Set(release.definition.name.clone()),
            number: Set(number),
            version: Set(request.version.clone()),
            status: Set(ReleaseExecutionStatus::Pending.as_str().to_owned()),
            parameters: Set(to_json(&request.parameters)),
            triggered_by: Set(scope.actor().get()),
            reason: Set(String::new()),
            created_at: Set(at),
            finished_at: Set(None),
            cancel_requested_at: Set(None),
            ..Default::default()
        }
        .insert(&transaction)
        .await?;
        release_execution_build::Entity::insert_many(builds.iter().map(
            |(pipeline_id, execution_id)| release_execution_build::ActiveModel {
                customer_id: Set(customer_id.get()),
                release_execution_id: Set(row.id),
                pipeline_id: Set(pipeline_id.get()),
                execution_id: Set(execution_id.get()),
            },
        ))
        .exec_without_returning(&transaction)
        .await?;
        for (definition, environment, parameters) in &stage_rows {
            stage::ActiveModel {
                customer_id: Set(customer_id.get()),
                release_execution_id: Set(row.id),
                stage_order: Set(definition.order),
                environment_id: Set(environment.id.get()),
                environment_name: Set(environment.name.clone()),
                pipeline_id: Set(definition.pipeline_id.get()),
                selector_agent_id: Set(definition
                    .selector
                    .as_ref()
                    .and_then(|selector| selector.agent_id.map(AgentId::get))),
                selector_labels: Set(definition
                    .selector
                    .as_ref()
                    .map(|selector| to_json(&selector.labels))),
                parameters: Set(to_json(parameters)),
                requires_approval: Set(definition
                    .requires_approval
                    .unwrap_or(environment.requires_approval)),
                status: Set(StageStatus::Pending.as_str().to_owned()),
                execution_id: Set(None),
                approved_by: Set(None),
                approved_at: Set(None),
                rejected_by: Set(None),
                comment: Set(String::new()),
                started_at: Set(None),
                finished_at: Set(None),
                reason: Set(String::new()),
                ..Default::default()
            }
            .insert(&transaction)
            .await?;
        }
        activity::record(
            &transaction,
            customer_id,
            event(
                "release.deployed",
                row.id,
                format!(
                    "Release {} (version {}) deployed",
                    label(&row),
                    request.version
                ),
                Some(scope.actor()),
            ),
            at,
        )
        .await?;
        let started = advance(&transaction, customer_id, row.id).await?;
        let loaded = load_release_execution(
            &transaction,
            customer_id,
            ReleaseExecutionId::from_db(row.id),
        )
        .await?;
        transaction.commit().await?;
        Ok((
            loaded,
            ReleaseEffects {
                started,
                cancel: None,
            },
        ))
    }

    /// One of the scope's release executions.
    pub async fn get_release_execution(
        &self,
        scope: &TenantScope,
        id: ReleaseExecutionId,
    ) -> Result<ReleaseExecution, StoreError> {
        load_release_execution(&self.db, scope.customer_id(), id).await
    }

    /// The scope's release executions, newest first.
    pub async fn list_release_executions(
        &self,
        scope: &TenantScope,
        release_id: Option<ReleaseId>,
        status: Option<ReleaseExecutionStatus>,
        page: PageRequest,
    ) -> Result<Page<ReleaseExecution>, StoreError> {
        let mut query = release_execution::Entity::find()
            .filter(release_execution::Column::CustomerId.eq(scope.customer_id().get()));
        if let Some(release_id) = release_id {
            query = query.filter(release_execution::Column::ReleaseId.eq(release_id.get()));
        }
        if let Some(status) = status {
            query = query.filter(release_execution::Column::Status.eq(status.as_str()));
        }
        if let Some(before) = page.after {
            query = query.filter(release_execution::Column::Id.lt(before));
        }
        let rows = query
            .order_by_desc(release_execution::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        let page = Page::from_rows(rows, page, |row| row.id);
        Ok(Page {
            items: release_executions_from_rows(&self.db, scope.customer_id(), page.items).await?,
            next_page_token: page.next_page_token,
        })
    }

    /// Approves (or rejects) a stage awaiting approval. The caller's role must be one of the
    /// environment's approver roles; the deployer may not approve their own production stage
    /// unless the customer's settings have `"allow_self_approval": true`.
    pub async fn decide_stage(
        &self,
        scope: &TenantScope,
        stage_execution_id: StageExecutionId,
        approve: bool,
        comment: &str,
    ) -> Result<(ReleaseExecution, ReleaseEffects), StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let not_found =
            || StoreError::NotFound(format!("stage execution {stage_execution_id} not found"));
        let find_stage = || {
            stage::Entity::find_by_id(stage_execution_id.get())
                .filter(stage::Column::CustomerId.eq(customer_id.get()))
                .one(&transaction)
        };
        let found = find_stage().await?.ok_or_else(not_found)?;
        // Two approvers at once: the second waits for the first and reads the stage it left.
        lock_release_execution(&transaction, customer_id, found.release_execution_id).await?;
        let stage_row = find_stage().await?.ok_or_else(not_found)?;
        let environment = find_environment(
            &transaction,
            customer_id,
            EnvironmentId::from_db(stage_row.environment_id),
        )
        .await?
        .map(environment_from_row)
        .transpose()?
        .ok_or_else(|| corrupt("stage", "environment missing"))?;
        if !environment.approver_roles.contains(&scope.role()) {
            let roles: Vec<&str> = environment
                .approver_roles
                .iter()
                .map(|role| role.as_str())
                .collect();
            return Err(Refusal::NotPermitted(format!(
                "role {} may not approve or reject stages in {} (approver roles: {})",
                scope.role(),
                environment.name,
                roles.join(", ")
            ))
            .into());
        }
        let status = stage_status(&stage_row)?;
        if status != StageStatus::AwaitingApproval {
            return Err(StoreError::FailedPrecondition(format!(
                "stage execution {stage_execution_id} is {}, not awaiting approval",
                status.as_str().replace('_', " ")
            )));
        }
        let row = find_release_execution(
            &transaction,
            customer_id,
            ReleaseExecutionId::from_db(stage_row.release_execution_id),
        )
        .await?;
        if approve && environment.is_production() && row.triggered_by == scope.actor().get() {
            let settings = customer::Entity::find_by_id(customer_id.get())
                .one(&transaction)
                .await?
                .map(|customer| customer.settings)
                .unwrap_or_default();
            if settings
                .get("allow_self_approval")
                .and_then(serde_json::Value::as_bool)
                != Some(true)
            {
                return Err(Refusal::NotPermitted(format!(
                    "the person who deployed {} may not approve its {} stage (customer setting allow_self_approval is off)",
                    label(&row),
                    environment.name
                )).into());
            }
        }
        let at = now();
        let username = user::Entity::find_by_id(scope.actor().get())
            .one(&transaction)
            .await?
            .map(|user| user.username)
            .unwrap_or_default();
        let mut effects = ReleaseEffects::default();
        if approve {
            stage::Entity::update_many()
                .col_expr(
                    stage::Column::Status,
                    Expr::value(StageStatus::Pending.as_str()),
                )
                .col_expr(stage::Column::ApprovedBy, Expr::value(scope.actor().get()))
                .col_expr(stage::Column::ApprovedAt, Expr::value(at))
                .col_expr(stage::Column::Comment, Expr::value(comment))
                .filter(stage::Column::Id.eq(stage_row.id))
                .exec(&transaction)
                .await?;
            activity::record(
                &transaction,
                customer_id,
                event(
                    "release.stage.approved",
                    row.id,
                    format!(
                        "{username} approved {} for {}",
                        label(&row),
                        environment.name
                    ),
                    Some(scope.actor()),
                ),
                at,
            )
            .await?;
            effects.started = advance(&transaction, customer_id, row.id).await?;
        } else {
            let reason = if comment.is_empty() {
                format!("rejected by {username}")
            } else {
                format!("rejected by {username}: {comment}")
            };
            stage::Entity::update_many()
                .col_expr(
                    stage::Column::Status,
                    Expr::value(StageStatus::Cancelled.as_str()),
                )
                .col_expr(stage::Column::RejectedBy, Expr::value(scope.actor().get()))
                .col_expr(stage::Column::Comment, Expr::value(comment))
                .col_expr(stage::Column::Reason, Expr::value(reason.as_str()))
                .col_expr(stage::Column::FinishedAt, Expr::value(at))
                .filter(stage::Column::Id.eq(stage_row.id))
                .exec(&transaction)
                .await?;
            skip_remaining(&transaction, &row, "the release was rejected").await?;
            finish_release(
                &transaction,
                &row,
                ReleaseExecutionStatus::Rejected,
                &format!("{} {reason}", environment.name),
                at,
            )
            .await?;
        }
        let loaded = load_release_execution(
            &transaction,
            customer_id,
            ReleaseExecutionId::from_db(row.id),
        )
        .await?;
        transaction.commit().await?;
        Ok((loaded, effects))
    }

    /// Cancels a release execution: stages not started are skipped; a running stage's deploy must
    /// be cancelled by the caller (returned), and the release ends when it has stopped.
    pub async fn cancel_release_execution(
        &self,
        scope: &TenantScope,
        id: ReleaseExecutionId,
        reason: &str,
    ) -> Result<(ReleaseExecution, ReleaseEffects), StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let row = lock_release_execution(&transaction, customer_id, id.get())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("release execution {id} not found")))?;
        let mut effects = ReleaseEffects::default();
        if !release_status(&row)?.is_terminal() {
            let at = now();
            release_execution::Entity::update_many()
                .col_expr(
                    release_execution::Column::CancelRequestedAt,
                    Expr::value(at),
                )
                .filter(release_execution::Column::Id.eq(row.id))
                .exec(&transaction)
                .await?;
            skip_remaining(&transaction, &row, reason).await?;
            let running = stages_of(&transaction, customer_id, row.id)
                .await?
                .into_iter()
                .find(|stage_row| stage_row.status == StageStatus::InProgress.as_str());
            match running.and_then(|stage_row| stage_row.execution_id) {
                Some(execution_id) => effects.cancel = Some(ExecutionId::from_db(execution_id)),
                None => {
                    finish_release(
                        &transaction,
                        &row,
                        ReleaseExecutionStatus::Cancelled,
                        reason,
                        at,
                    )
                    .await?
                }
            }
        }
        let loaded = load_release_execution(&transaction, customer_id, id).await?;
        transaction.commit().await?;
        Ok((loaded, effects))
    }

    /// The artifacts a release execution ships.
    pub async fn list_release_artifacts(
        &self,
        scope: &TenantScope,
        id: ReleaseExecutionId,
    ) -> Result<Vec<Artifact>, StoreError> {
        let row = find_release_execution(&self.db, scope.customer_id(), id).await?;
        Ok(shipped_artifacts(&self.db, scope.customer_id(), row.id)
            .await?
            .into_iter()
            .map(|(_, artifact)| artifact)
            .collect())
    }

    /// An artifact the deploy execution `execution_id`, running on `agent`, ships; NOT_FOUND for
    /// anything else.
    pub async fn artifact_for_deploy(
        &self,
        agent: &AuthenticatedAgent,
        execution_id: ExecutionId,
        artifact_id: i64,
    ) -> Result<Artifact, StoreError> {
        let not_found = || StoreError::NotFound(format!("artifact {artifact_id} not found"));
        let deploy = execution::Entity::find_by_id(execution_id.get())
            .filter(execution::Column::CustomerId.eq(agent.customer_id().get()))
            .filter(execution::Column::AgentId.eq(agent.agent_id().get()))
            .one(&self.db)
            .await?
            .ok_or_else(not_found)?;
        let stage_row = stage::Entity::find()
            .filter(stage::Column::CustomerId.eq(deploy.customer_id))
            .filter(stage::Column::ExecutionId.eq(deploy.id))
            .one(&self.db)
            .await?
            .ok_or_else(not_found)?;
        shipped_artifacts(
            &self.db,
            agent.customer_id(),
            stage_row.release_execution_id,
        )
        .await?
        .into_iter()
        .map(|(_, artifact)| artifact)
        .find(|artifact| artifact.id == artifact_id)
        .ok_or_else(not_found)
    }
}

/// Artifacts of every build a release execution ships, with their pipeline.
async fn shipped_artifacts(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    release_execution_id: i64,
) -> Result<Vec<(PipelineId, Artifact)>, StoreError> {
    let builds = release_execution_build::Entity::find()
        .filter(release_execution_build::Column::CustomerId.eq(customer_id.get()))
        .filter(release_execution_build::Column::ReleaseExecutionId.eq(release_execution_id))
        .all(db)
        .await?;
    let pipeline_of: BTreeMap<i64, i64> = builds
        .iter()
        .map(|build| (build.execution_id, build.pipeline_id))
        .collect();
    let rows = artifact::Entity::find()
        .filter(artifact::Column::CustomerId.eq(customer_id.get()))
        .filter(artifact::Column::ExecutionId.is_in(pipeline_of.keys().copied()))
        .order_by_asc(artifact::Column::ExecutionId)
        .order_by_asc(artifact::Column::StepIndex)
        .order_by_asc(artifact::Column::Path)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let pipeline_id = PipelineId::from_db(
                pipeline_of
                    .get(&row.execution_id)
                    .copied()
                    .unwrap_or_default(),
            );
            (
                pipeline_id,
                Artifact {
                    id: row.id,
                    execution_id: ExecutionId::from_db(row.execution_id),
                    step_index: row.step_index,
                    path: row.path,
                    size_bytes: row.size_bytes,
                    sha256: row.sha256,
                    storage_key: row.storage_key,
                    created_at: row.created_at,
                },
            )
        })
        .collect())
}

impl SystemStore {
    /// Moves on the release a finished deploy execution belongs to, if any. Returns the release
    /// execution and the next deploy it started.
    pub(crate) async fn advance_release_of(
        &self,
        execution_id: ExecutionId,
    ) -> Result<Option<(ReleaseExecutionId, Option<ExecutionId>)>, StoreError> {
        let Some(stage_row) = stage::Entity::find()
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
    pub(crate) async fn stalled_release_executions(&self) -> Result<Vec<ExecutionId>, StoreError> {
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
            .column(stage::Column::ExecutionId)
            .filter(stage::Column::Status.eq(StageStatus::InProgress.as_str()))
            .filter(Expr::col(stage::Column::ExecutionId).in_subquery(finished))
            .limit(100)
            .into_tuple::<Option<i64>>()
            .all(&self.db)
            .await?
            .into_iter()
            .flatten()
            .map(ExecutionId::from_db)
            .collect())
    }

    /// The release a deploy execution belongs to, for its job assignment.
    pub(crate) async fn release_context(
        &self,
        execution_id: ExecutionId,
    ) -> Result<Option<ReleaseContext>, StoreError> {
        let Some(stage_row) = stage::Entity::find()
            .filter(stage::Column::ExecutionId.eq(execution_id.get()))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let customer_id = CustomerId::from_db(stage_row.customer_id);
        let row = find_release_execution(
            &self.db,
            customer_id,
            ReleaseExecutionId::from_db(stage_row.release_execution_id),
        )
        .await?;
        Ok(Some(ReleaseContext {
            release_name: row.release_name.clone(),
            release_number: row.number,
            environment_name: stage_row.environment_name,
            environment_id: EnvironmentId::from_db(stage_row.environment_id),
            version: row.version.clone(),
            artifacts: shipped_artifacts(&self.db, customer_id, row.id).await?,
        }))
    }
}
