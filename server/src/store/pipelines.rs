//! Pipelines: definitions and their execution counters.

use std::collections::HashMap;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query, SelectStatement};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use super::entities::{agent, execution, pipeline, pipeline_version};
use super::error::corrupt;
use super::rollups;
use super::{Store, StoreError, now};
use crate::auth::TenantScope;
use crate::domain::execution::ExecutionStatus;
use crate::domain::pipeline::{
    AgentSelector, ParameterDefinition, Pipeline, PipelineDefinition, PipelinePatch, PipelineStats,
    StepDefinition, StepsVersion,
};
use crate::domain::{
    AgentId, CustomerId, Page, PageRequest, PipelineId, Quota, QuotaExceeded, QuotaLimits, UserId,
    VariableGroupId,
};

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    // Serialising our own plain data types cannot fail.
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

pub(super) fn steps_from_json(value: serde_json::Value) -> Result<Vec<StepDefinition>, StoreError> {
    serde_json::from_value(value).map_err(|error| corrupt("steps", error))
}

pub(super) fn labels_from_json(value: serde_json::Value) -> Result<Vec<String>, StoreError> {
    serde_json::from_value(value).map_err(|error| corrupt("labels", error))
}

fn definition_from_row(row: &pipeline::Model) -> Result<PipelineDefinition, StoreError> {
    Ok(PipelineDefinition {
        name: row.name.clone(),
        description: row.description.clone(),
        selector: AgentSelector {
            agent_id: row.selector_agent_id.map(AgentId::from_db),
            labels: labels_from_json(row.selector_labels.clone())?,
        },
        steps: steps_from_json(row.steps.clone())?,
        parameters: serde_json::from_value::<Vec<ParameterDefinition>>(row.parameters.clone())
            .map_err(|error| corrupt("parameters", error))?,
        timeout_seconds: row.timeout_seconds,
        variable_group_ids: group_ids_from_row(row)?,
    })
}

pub(super) fn group_ids_from_row(
    row: &pipeline::Model,
) -> Result<Vec<VariableGroupId>, StoreError> {
    group_ids_from_text(&row.variable_group_ids)
}

/// A JSON list of variable group ids, as pipelines and executions store it.
pub(super) fn group_ids_from_text(text: &str) -> Result<Vec<VariableGroupId>, StoreError> {
    serde_json::from_str::<Vec<i64>>(text)
        .map(|ids| ids.into_iter().map(VariableGroupId::from_db).collect())
        .map_err(|error| corrupt("variable_group_ids", error))
}

pub(super) fn group_ids_to_text(ids: &[VariableGroupId]) -> String {
    serde_json::Value::from(ids.iter().map(|id| id.get()).collect::<Vec<i64>>()).to_string()
}

/// Execution counters of these pipelines: the counts from the rollups (two index reads per
/// pipeline however long its history), and each one's latest execution by one index seek.
async fn stats_of(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    pipeline_ids: &[i64],
) -> Result<HashMap<i64, PipelineStats>, StoreError> {
    let mut stats: HashMap<i64, PipelineStats> = HashMap::new();
    if pipeline_ids.is_empty() {
        return Ok(stats);
    }
    let counts =
        rollups::execution_counts(db, rollups::Counted::Pipelines(customer_id, pipeline_ids))
            .await?;
    for ((pipeline_id, status), count) in counts {
        let entry = stats.entry(pipeline_id).or_default();
        entry.total += count;
        match ExecutionStatus::from_db(&status) {
            Some(ExecutionStatus::Succeeded) => entry.succeeded += count,
            Some(ExecutionStatus::Failed | ExecutionStatus::TimedOut) => entry.failed += count,
            _ => {}
        }
    }
    let latest = execution::Entity::find()
        .select_only()
        .column(execution::Column::PipelineId)
        .column(execution::Column::Status)
        .column(execution::Column::CreatedAt)
        .filter(execution::Column::Id.in_subquery(latest_of_each(customer_id, pipeline_ids, None)))
        .into_tuple::<(i64, String, chrono::DateTime<chrono::Utc>)>()
        .all(db)
        .await?;
    for (pipeline_id, status, created_at) in latest {
        let entry = stats.entry(pipeline_id).or_default();
        entry.last_status = ExecutionStatus::from_db(&status);
        entry.last_execution_at = Some(created_at);
    }
    Ok(stats)
}

/// The id of each pipeline's latest execution (among `statuses`, when given): one backward
/// seek in `(customer_id, pipeline_id, id)` per pipeline, not a scan of its history.
pub(super) fn latest_of_each(
    customer_id: CustomerId,
    pipeline_ids: &[i64],
    statuses: Option<&[ExecutionStatus]>,
) -> SelectStatement {
    let (outer, inner) = (Alias::new("p"), Alias::new("x"));
    let mut latest = Query::select()
        .column((inner.clone(), execution::Column::Id))
        .from_as(execution::Entity, inner.clone())
        .and_where(Expr::col((inner.clone(), execution::Column::CustomerId)).eq(customer_id.get()))
        .and_where(
            Expr::col((inner.clone(), execution::Column::PipelineId))
                .equals((outer.clone(), pipeline::Column::Id)),
        )
        .order_by((inner.clone(), execution::Column::Id), Order::Desc)
        .limit(1)
        .to_owned();
    if let Some(statuses) = statuses {
        latest.and_where(
            Expr::col((inner, execution::Column::Status))
                .is_in(statuses.iter().map(|status| status.as_str())),
        );
    }
    Query::select()
        .expr(Expr::SubQuery(None, Box::new(latest.into())))
        .from_as(pipeline::Entity, outer.clone())
        .and_where(Expr::col((outer.clone(), pipeline::Column::CustomerId)).eq(customer_id.get()))
        .and_where(Expr::col((outer, pipeline::Column::Id)).is_in(pipeline_ids.iter().copied()))
        .to_owned()
}

/// Checks that a selector's agent is a live agent of the customer; NOT_FOUND naming `field`.
pub(super) async fn check_selector_agent(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    agent_id: Option<AgentId>,
    field: &str,
) -> Result<(), StoreError> {
    if let Some(agent_id) = agent_id {
        let found = agent::Entity::find_by_id(agent_id.get())
            .filter(agent::Column::CustomerId.eq(customer_id.get()))
            .filter(agent::Column::DeletedAt.is_null())
            .count(db)
            .await?;
        if found == 0 {
            return Err(StoreError::NotFound(format!(
                "{field}: agent {agent_id} not found"
            )));
        }
    }
    Ok(())
}

fn duplicate_name(name: &str) -> impl FnOnce(&str) -> String + '_ {
    move |_| format!("a pipeline named {name:?} already exists")
}

pub(super) async fn find_live(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    pipeline_id: PipelineId,
) -> Result<pipeline::Model, StoreError> {
    pipeline::Entity::find_by_id(pipeline_id.get())
        .filter(pipeline::Column::CustomerId.eq(customer_id.get()))
        .filter(pipeline::Column::DeletedAt.is_null())
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("pipeline {pipeline_id} not found")))
}

/// [`find_live`] with the row locked until the transaction ends (PostgreSQL; SQLite's write
/// transactions exclude each other already).
async fn find_live_locked(
    db: &sea_orm::DatabaseTransaction,
    customer_id: CustomerId,
    pipeline_id: PipelineId,
) -> Result<pipeline::Model, StoreError> {
    let mut query = pipeline::Entity::find_by_id(pipeline_id.get())
        .filter(pipeline::Column::CustomerId.eq(customer_id.get()))
        .filter(pipeline::Column::DeletedAt.is_null());
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        query = query.lock(sea_orm::sea_query::LockType::Update);
    }
    query
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("pipeline {pipeline_id} not found")))
}

/// One live pipeline of the customer with its definition (no counters).
pub(super) async fn load_pipeline(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    pipeline_id: PipelineId,
) -> Result<Pipeline, StoreError> {
    let row = find_live(db, customer_id, pipeline_id).await?;
    pipeline_of(row, PipelineStats::default())
}

fn pipeline_of(row: pipeline::Model, stats: PipelineStats) -> Result<Pipeline, StoreError> {
    Ok(Pipeline {
        id: PipelineId::from_db(row.id),
        customer_id: CustomerId::from_db(row.customer_id),
        definition: definition_from_row(&row)?,
        steps_version: StepsVersion {
            id: row.version_id.unwrap_or_default(),
            number: row.steps_version,
        },
        created_by: UserId::from_db(row.created_by),
        created_at: row.created_at,
        updated_at: row.updated_at,
        stats,
    })
}

impl Store {
    /// Creates a pipeline in the scope's customer.
    pub async fn create_pipeline(
        &self,
        scope: &TenantScope,
        definition: PipelineDefinition,
    ) -> Result<Pipeline, StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let limits = self
            .admit_one_more(&transaction, customer_id, Quota::Pipelines)
            .await?;
        let steps = to_json(&definition.steps);
        let parameters = to_json(&definition.parameters);
        let labels = to_json(&definition.selector.labels);
        check_definition_size(
            &limits,
            customer_id,
            definition.steps.len(),
            &[&steps, &parameters, &labels],
        )
        .map_err(|exceeded| self.over_quota(exceeded))?;
        check_selector_agent(
            &transaction,
            customer_id,
            definition.selector.agent_id,
            "agent_selector.agent_id",
        )
        .await?;
        super::variables::check_groups(&transaction, customer_id, &definition.variable_group_ids)
            .await?;
        super::variables::check_secret_authority(
            &transaction,
            scope,
            &format!("pipeline {:?}", definition.name),
            &definition.variable_group_ids,
            &definition.variable_group_ids,
            false,
        )
        .await?;
        let now = now();
        let row = pipeline::ActiveModel {
            customer_id: Set(customer_id.get()),
            name: Set(definition.name.clone()),
            description: Set(definition.description.clone()),
            selector_agent_id: Set(definition.selector.agent_id.map(AgentId::get)),
            selector_labels: Set(labels),
            steps: Set(steps),
            parameters: Set(parameters),
            timeout_seconds: Set(definition.timeout_seconds),
            variable_group_ids: Set(group_ids_to_text(&definition.variable_group_ids)),
            created_by: Set(scope.actor().get()),
            created_at: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
            version_id: Set(None),
            steps_version: Set(1),
            ..Default::default()
        }
        .insert(&transaction)
        .await
        .map_err(|error| {
            StoreError::on_unique_violation(error, duplicate_name(&definition.name))
        })?;
        let version_id = insert_steps_version(&transaction, &row, 1, scope.actor()).await?;
        let mut row: pipeline::ActiveModel = row.into();
        row.version_id = Set(Some(version_id));
        let row = row.update(&transaction).await?;
        transaction.commit().await?;
        self.pipeline_from_row(row, PipelineStats::default())
    }

    fn pipeline_from_row(
        &self,
        row: pipeline::Model,
        stats: PipelineStats,
    ) -> Result<Pipeline, StoreError> {
        pipeline_of(row, stats)
    }

    /// One of the scope's live pipelines with its counters.
    pub async fn get_pipeline(
        &self,
        scope: &TenantScope,
        pipeline_id: PipelineId,
    ) -> Result<Pipeline, StoreError> {
        let row = find_live(&self.db, scope.customer_id(), pipeline_id).await?;
        let stats = stats_of(&self.db, scope.customer_id(), &[row.id])
            .await?
            .remove(&row.id)
            .unwrap_or_default();
        self.pipeline_from_row(row, stats)
    }

    /// One of the scope's live pipelines without its counters (what queueing a run needs).
    pub async fn pipeline_to_run(
        &self,
        scope: &TenantScope,
        pipeline_id: PipelineId,
    ) -> Result<Pipeline, StoreError> {
        load_pipeline(&self.db, scope.customer_id(), pipeline_id).await
    }

    /// The scope's live pipelines by id, with counters.
    pub async fn list_pipelines(
        &self,
        scope: &TenantScope,
        page: PageRequest,
    ) -> Result<Page<Pipeline>, StoreError> {
        let mut query = pipeline::Entity::find()
            .filter(pipeline::Column::CustomerId.eq(scope.customer_id().get()))
            .filter(pipeline::Column::DeletedAt.is_null());
        if let Some(after) = page.after {
            query = query.filter(pipeline::Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(pipeline::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        let page = Page::from_rows(rows, page, |row| row.id);
        let ids: Vec<i64> = page.items.iter().map(|row| row.id).collect();
        let mut stats = stats_of(&self.db, scope.customer_id(), &ids).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for row in page.items {
            let row_stats = stats.remove(&row.id).unwrap_or_default();
            items.push(self.pipeline_from_row(row, row_stats)?);
        }
        Ok(Page {
            items,
            next_page_token: page.next_page_token,
        })
    }

    /// Applies a patch to one of the scope's pipelines.
    pub async fn update_pipeline(
        &self,
        scope: &TenantScope,
        pipeline_id: PipelineId,
        patch: PipelinePatch,
    ) -> Result<Pipeline, StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        // Locked: two changes at once (a developer's steps, devops attaching secrets) are
        // judged one after the other, each on what the other left.
        let current = find_live_locked(&transaction, customer_id, pipeline_id).await?;
        let name = patch.name.clone().unwrap_or_else(|| current.name.clone());
        let mut row: pipeline::ActiveModel = current.into();
        if let Some(value) = patch.name {
            row.name = Set(value);
        }
        if let Some(value) = patch.description {
            row.description = Set(value);
        }
        if let Some(selector) = patch.selector {
            check_selector_agent(
                &transaction,
                customer_id,
                selector.agent_id,
                "agent_selector.agent_id",
            )
            .await?;
            row.selector_agent_id = Set(selector.agent_id.map(AgentId::get));
            row.selector_labels = Set(to_json(&selector.labels));
        }
        let steps_changed = patch.steps.is_some();
        // Parameters are code too: their values reach the steps' commands and environment.
        let code_changed = steps_changed || patch.parameters.is_some();
        if let Some(steps) = patch.steps {
            row.steps = Set(to_json(&steps));
        }
        if let Some(parameters) = patch.parameters {
            row.parameters = Set(to_json(&parameters));
        }
        let before = group_ids_from_text(row.variable_group_ids.as_ref())?;
        if let Some(groups) = patch.variable_group_ids {
            super::variables::check_groups(&transaction, customer_id, &groups).await?;
            row.variable_group_ids = Set(group_ids_to_text(&groups));
        }
        let groups = group_ids_from_text(row.variable_group_ids.as_ref())?;
        let attached: Vec<VariableGroupId> = groups
            .iter()
            .filter(|id| !before.contains(id))
            .copied()
            .collect();
        super::variables::check_secret_authority(
            &transaction,
            scope,
            &format!("pipeline {pipeline_id}"),
            &groups,
            &attached,
            code_changed,
        )
        .await?;
        if let Some(timeout) = patch.timeout_seconds {
            row.timeout_seconds = Set(timeout);
        }
        // The definition as it becomes must fit the customer's size quotas.
        let limits = self.quota_limits(&transaction, customer_id).await?;
        let (steps, parameters, labels) = (
            row.steps.as_ref().clone(),
            row.parameters.as_ref().clone(),
            row.selector_labels.as_ref().clone(),
        );
        let step_count = steps.as_array().map_or(0, Vec::len);
        check_definition_size(
            &limits,
            customer_id,
            step_count,
            &[&steps, &parameters, &labels],
        )
        .map_err(|exceeded| self.over_quota(exceeded))?;
        row.updated_at = Set(now());
        let mut updated = row
            .update(&transaction)
            .await
            .map_err(|error| StoreError::on_unique_violation(error, duplicate_name(&name)))?;
        if steps_changed {
            // New steps are a new version; runs queued before keep theirs.
            let number = updated.steps_version + 1;
            let version_id =
                insert_steps_version(&transaction, &updated, number, scope.actor()).await?;
            let mut row: pipeline::ActiveModel = updated.into();
            row.version_id = Set(Some(version_id));
            row.steps_version = Set(number);
            updated = row.update(&transaction).await?;
        }
        transaction.commit().await?;
        let stats = stats_of(&self.db, customer_id, &[updated.id])
            .await?
            .remove(&updated.id)
            .unwrap_or_default();
        self.pipeline_from_row(updated, stats)
    }

    /// Deletes one of the scope's pipelines: hidden from listings and runs, its name freed; its
    /// executions stay readable.
    pub async fn delete_pipeline(
        &self,
        scope: &TenantScope,
        pipeline_id: PipelineId,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_write().await?;
        let current = find_live(&transaction, scope.customer_id(), pipeline_id).await?;
        let mut row: pipeline::ActiveModel = current.into();
        row.deleted_at = Set(Some(now()));
        row.update(&transaction).await?;
        transaction.commit().await?;
        Ok(())
    }
}

/// Refuses a definition over the customer's `steps_per_pipeline` or `pipeline_definition_bytes`
/// (the size of what is stored: steps, parameters and selector labels as JSON).
fn check_definition_size(
    limits: &QuotaLimits,
    customer_id: CustomerId,
    steps: usize,
    parts: &[&serde_json::Value],
) -> Result<(), QuotaExceeded> {
    let steps = i64::try_from(steps).unwrap_or(i64::MAX);
    limits.check(customer_id, Quota::StepsPerPipeline, 0, steps)?;
    let bytes: usize = parts.iter().map(|part| part.to_string().len()).sum();
    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
    limits.check(customer_id, Quota::PipelineDefinitionBytes, 0, bytes)
}

/// Stores the steps of `row` as its version `number`; returns the version's id.
async fn insert_steps_version(
    db: &impl ConnectionTrait,
    row: &pipeline::Model,
    number: i32,
    actor: UserId,
) -> Result<i64, StoreError> {
    let version = pipeline_version::ActiveModel {
        customer_id: Set(row.customer_id),
        pipeline_id: Set(row.id),
        number: Set(number),
        steps: Set(row.steps.clone()),
        created_by: Set(actor.get()),
        created_at: Set(now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(version.id)
}

/// Most step versions kept parsed; past it the cache starts over.
const STEPS_CACHE_ENTRIES: usize = 1024;

/// Parsed pipeline step versions, by version id.
#[derive(Default)]
pub(super) struct StepsCache {
    entries: std::sync::Mutex<HashMap<i64, std::sync::Arc<Vec<StepDefinition>>>>,
}

impl Store {
    /// The steps of these versions, each parsed once (missing ones read in one query).
    pub(super) async fn steps_of_versions(
        &self,
        db: &impl ConnectionTrait,
        versions: &[i64],
    ) -> Result<HashMap<i64, std::sync::Arc<Vec<StepDefinition>>>, StoreError> {
        let lock = || {
            self.steps_cache
                .entries
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = lock();
            for version in versions {
                match cache.get(version) {
                    Some(steps) => {
                        found.insert(*version, steps.clone());
                    }
                    None => missing.push(*version),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let rows = pipeline_version::Entity::find()
            .filter(pipeline_version::Column::Id.is_in(missing))
            .all(db)
            .await?;
        let mut parsed = Vec::with_capacity(rows.len());
        for row in rows {
            parsed.push((row.id, std::sync::Arc::new(steps_from_json(row.steps)?)));
        }
        let mut cache = lock();
        if cache.len() + parsed.len() > STEPS_CACHE_ENTRIES {
            cache.clear();
        }
        for (id, steps) in parsed {
            cache.insert(id, steps.clone());
            found.insert(id, steps);
        }
        Ok(found)
    }
}
