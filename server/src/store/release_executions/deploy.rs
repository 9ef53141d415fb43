//! Deploying a release: Release-N with the builds it ships and one stage execution per stage,
//! every stage's parameters checked against its deploy pipeline first, and the first move made.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
};

use super::moves::advance;
use super::{ReleaseEffects, event, label, load_release_execution};
use crate::auth::TenantScope;
use crate::domain::execution::ExecutionStatus;
use crate::domain::pipeline::{named_like_a_secret, resolve_parameters};
use crate::domain::release::{
    DeployRequest, ReleaseExecution, ReleaseExecutionStatus, ReleaseStatus, StageStatus,
};
use crate::domain::snapshot::{self, DigestInput, StageSnapshot};
use crate::domain::{AgentId, ExecutionId, PipelineId, ReleaseExecutionId, ReleaseId};
use crate::store::entities::{
    execution, release, release_execution, release_execution_build, stage_execution_record as stage,
};
use crate::store::environments::{environment_from_row, find_environment};
use crate::store::executions::status_of;
use crate::store::pipelines::{load_pipeline, to_json};
use crate::store::releases::load_release;
use crate::store::variables::secret_keys_of_groups;
use crate::store::{Store, StoreError, activity, now};

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
        // Its first stage may queue a deploy at once.
        self.admit_one_more(
            &transaction,
            customer_id,
            crate::domain::Quota::QueuedExecutions,
        )
        .await?;
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
            let secret_keys = secret_keys_of_groups(
                &transaction,
                customer_id,
                &pipeline.definition.variable_group_ids,
            )
            .await?;
            for (name, value) in &request.parameters {
                if let Some(known) = pipeline
                    .definition
                    .parameters
                    .iter()
                    .find(|parameter| parameter.name.eq_ignore_ascii_case(name))
                {
                    // A deployer's parameter never stands in for a secret, as for a run.
                    if named_like_a_secret([name.as_str()], &secret_keys).is_some() {
                        return Err(StoreError::InvalidArgument(format!(
                            "parameters[{name}] is a secret variable of stage {}'s deploy pipeline and cannot be overridden",
                            definition.order
                        )));
                    }
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
            let selector = definition
                .selector
                .clone()
                .unwrap_or_else(|| pipeline.definition.selector.clone());
            let snapshot = StageSnapshot {
                version_id: pipeline.steps_version.id,
                version_number: pipeline.steps_version.number,
                variable_group_ids: pipeline
                    .definition
                    .variable_group_ids
                    .iter()
                    .map(|id| id.get())
                    .collect(),
                timeout_seconds: pipeline.definition.timeout_seconds,
                selector_agent_id: selector.agent_id.map(AgentId::get),
                selector_labels: selector.labels,
            };
            stage_rows.push((
                definition.clone(),
                environment,
                resolved,
                snapshot,
                pipeline.definition.steps,
            ));
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
        // What each stage will run is fixed now; its digest covers the shipped artifacts too.
        let artifacts: Vec<(String, String)> =
            super::shipped_artifacts(&transaction, customer_id, row.id)
                .await?
                .into_iter()
                .map(|(_, artifact)| (artifact.path, artifact.sha256))
                .collect();
        for (definition, environment, parameters, snapshot, steps) in &stage_rows {
            let digest = snapshot::digest(&DigestInput {
                pipeline_id: definition.pipeline_id,
                environment_id: environment.id,
                snapshot,
                steps,
                parameters,
                artifacts: &artifacts,
            });
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
                // A stage may add an approval; it never removes its environment's.
                requires_approval: Set(
                    environment.requires_approval || definition.requires_approval.unwrap_or(false)
                ),
                pipeline_version_id: Set((snapshot.version_id > 0).then_some(snapshot.version_id)),
                snapshot: Set(Some(to_json(snapshot))),
                snapshot_digest: Set(digest),
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
}
