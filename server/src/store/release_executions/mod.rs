//! Release executions: deploying a release, its stages strictly in order, approvals, rejection,
//! cancellation, and the link from each stage to its deploy pipeline's execution (by id).
//!
//! The rules are pure functions in `domain::release_flow`; here they are applied. Every move is
//! made under the release execution's lock by [`moves::advance`]: it reads the state, asks the
//! rules for the next move (start the next stage's deploy, wait for an approval, finish the
//! release) and applies it in the same transaction. It is idempotent, so calling it again (after
//! a server restart, from the periodic sweep) is always safe.
//!
//! `deploy.rs` creates a release execution, `decide.rs` approves, rejects and cancels,
//! `moves.rs` applies moves; this file reads.

mod decide;
mod deploy;
mod moves;

use std::collections::BTreeMap;

use sea_orm::sea_query::LockType;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::entities::{
    artifact, execution, release_execution, release_execution_build,
    stage_execution_record as stage,
};
use super::error::corrupt;
use super::{Store, StoreError, SystemStore};
use crate::auth::{AuthenticatedAgent, TenantScope};
use crate::domain::execution::Artifact;
use crate::domain::release::{
    ReleaseExecution, ReleaseExecutionStatus, StageExecution, StageStatus,
};
use crate::domain::snapshot::StageSnapshot;
use crate::domain::{
    CustomerId, EnvironmentId, ExecutionId, NewActivity, Page, PageRequest, PipelineId,
    ReleaseExecutionId, ReleaseId, StageExecutionId, UserId,
};
use crate::store::environments::find_environment;

fn stage_status(row: &stage::Model) -> Result<StageStatus, StoreError> {
    StageStatus::from_db(&row.status).ok_or_else(|| corrupt("stage status", &row.status))
}

fn release_status(row: &release_execution::Model) -> Result<ReleaseExecutionStatus, StoreError> {
    ReleaseExecutionStatus::from_db(&row.status)
        .ok_or_else(|| corrupt("release execution status", &row.status))
}

/// The snapshot a stage deploys; `None` for stages deployed before snapshots.
fn stage_snapshot(row: &stage::Model) -> Result<Option<StageSnapshot>, StoreError> {
    row.snapshot
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|error| corrupt("stage snapshot", error))
}

fn stage_from_row(row: stage::Model) -> Result<StageExecution, StoreError> {
    let pipeline_version = stage_snapshot(&row)?.map_or(0, |snapshot| snapshot.version_number);
    Ok(StageExecution {
        pipeline_version,
        snapshot_digest: row.snapshot_digest.clone(),
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
    /// The environment requires approval and this stage has none: its secrets stay sealed.
    pub unapproved: bool,
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
    /// One of the scope's release executions.
    pub async fn get_release_execution(
        &self,
        scope: &TenantScope,
        id: ReleaseExecutionId,
    ) -> Result<ReleaseExecution, StoreError> {
        let snapshot = self.read_snapshot().await?;
        let loaded = load_release_execution(&snapshot, scope.customer_id(), id).await?;
        snapshot.commit().await?;
        Ok(loaded)
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
        let requires_approval = find_environment(
            &self.db,
            customer_id,
            EnvironmentId::from_db(stage_row.environment_id),
        )
        .await?
        .is_some_and(|environment| environment.requires_approval);
        Ok(Some(ReleaseContext {
            unapproved: (requires_approval || stage_row.requires_approval)
                && stage_row.approved_by.is_none(),
            release_name: row.release_name.clone(),
            release_number: row.number,
            environment_name: stage_row.environment_name,
            environment_id: EnvironmentId::from_db(stage_row.environment_id),
            version: row.version.clone(),
            artifacts: shipped_artifacts(&self.db, customer_id, row.id).await?,
        }))
    }
}
