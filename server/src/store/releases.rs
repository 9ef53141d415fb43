//! Release definitions: associated build pipelines and ordered stages.

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::entities::{release, release_pipeline, release_stage};
use super::environments::find_environment;
use super::error::corrupt;
use super::pipelines::{check_selector_agent, find_live, labels_from_json, load_pipeline, to_json};
use super::{Store, StoreError, now};
use crate::auth::TenantScope;
use crate::domain::pipeline::{AgentSelector, given_parameters};
use crate::domain::release::{
    Release, ReleaseDefinition, ReleasePatch, ReleaseStatus, StageDefinition,
};
use crate::domain::{
    AgentId, CustomerId, EnvironmentId, Page, PageRequest, PipelineId, ReleaseId, UserId,
};

/// Checks every reference of a definition against the customer: pipelines (live), environments,
/// selector agents. A reference to nothing and one to another customer's record look the same:
/// NOT_FOUND, naming the field.
async fn check_references(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    definition: &ReleaseDefinition,
) -> Result<(), StoreError> {
    for (index, pipeline_id) in definition.pipeline_ids.iter().enumerate() {
        if find_live(db, customer_id, *pipeline_id).await.is_err() {
            return Err(StoreError::NotFound(format!(
                "pipeline_ids[{index}]: pipeline {pipeline_id} not found"
            )));
        }
    }
    for (index, stage) in definition.stages.iter().enumerate() {
        if find_environment(db, customer_id, stage.environment_id)
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound(format!(
                "stages[{index}].environment_id: environment {} not found",
                stage.environment_id
            )));
        }
        let Ok(pipeline) = load_pipeline(db, customer_id, stage.pipeline_id).await else {
            return Err(StoreError::NotFound(format!(
                "stages[{index}].pipeline_id: pipeline {} not found",
                stage.pipeline_id
            )));
        };
        // Values the stage sets must fit its deploy pipeline now; required ones may still come
        // with the deployment.
        given_parameters(&pipeline.definition.parameters, &stage.parameters)
            .map_err(|error| StoreError::InvalidArgument(format!("stages[{index}].{error}")))?;
        check_selector_agent(
            db,
            customer_id,
            stage
                .selector
                .as_ref()
                .and_then(|selector| selector.agent_id),
            &format!("stages[{index}].agent_selector.agent_id"),
        )
        .await?;
    }
    Ok(())
}

async fn write_parts(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    release_id: i64,
    pipeline_ids: Option<&[PipelineId]>,
    stages: Option<&[StageDefinition]>,
) -> Result<(), StoreError> {
    if let Some(pipeline_ids) = pipeline_ids {
        release_pipeline::Entity::delete_many()
            .filter(release_pipeline::Column::CustomerId.eq(customer_id.get()))
            .filter(release_pipeline::Column::ReleaseId.eq(release_id))
            .exec(db)
            .await?;
        if !pipeline_ids.is_empty() {
            release_pipeline::Entity::insert_many(pipeline_ids.iter().map(|pipeline_id| {
                release_pipeline::ActiveModel {
                    customer_id: Set(customer_id.get()),
                    release_id: Set(release_id),
                    pipeline_id: Set(pipeline_id.get()),
                }
            }))
            .exec(db)
            .await?;
        }
    }
    if let Some(stages) = stages {
        release_stage::Entity::delete_many()
            .filter(release_stage::Column::CustomerId.eq(customer_id.get()))
            .filter(release_stage::Column::ReleaseId.eq(release_id))
            .exec(db)
            .await?;
        release_stage::Entity::insert_many(stages.iter().map(|stage| {
            release_stage::ActiveModel {
                customer_id: Set(customer_id.get()),
                release_id: Set(release_id),
                stage_order: Set(stage.order),
                environment_id: Set(stage.environment_id.get()),
                pipeline_id: Set(stage.pipeline_id.get()),
                selector_agent_id: Set(stage
                    .selector
                    .as_ref()
                    .and_then(|selector| selector.agent_id.map(AgentId::get))),
                selector_labels: Set(stage
                    .selector
                    .as_ref()
                    .map(|selector| to_json(&selector.labels))),
                requires_approval: Set(stage.requires_approval),
                parameters: Set(to_json(&stage.parameters)),
            }
        }))
        .exec(db)
        .await?;
    }
    Ok(())
}

/// Loads releases with their parts in three queries.
async fn releases_from_rows(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    rows: Vec<release::Model>,
) -> Result<Vec<Release>, StoreError> {
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    let mut pipelines: HashMap<i64, Vec<PipelineId>> = HashMap::new();
    for row in release_pipeline::Entity::find()
        .filter(release_pipeline::Column::CustomerId.eq(customer_id.get()))
        .filter(release_pipeline::Column::ReleaseId.is_in(ids.clone()))
        .order_by_asc(release_pipeline::Column::PipelineId)
        .all(db)
        .await?
    {
        pipelines
            .entry(row.release_id)
            .or_default()
            .push(PipelineId::from_db(row.pipeline_id));
    }
    let mut stages: HashMap<i64, Vec<StageDefinition>> = HashMap::new();
    for row in release_stage::Entity::find()
        .filter(release_stage::Column::CustomerId.eq(customer_id.get()))
        .filter(release_stage::Column::ReleaseId.is_in(ids))
        .order_by_asc(release_stage::Column::StageOrder)
        .all(db)
        .await?
    {
        let selector = match (row.selector_agent_id, row.selector_labels) {
            (None, None) => None,
            (agent_id, labels) => Some(AgentSelector {
                agent_id: agent_id.map(AgentId::from_db),
                labels: labels
                    .map(labels_from_json)
                    .transpose()?
                    .unwrap_or_default(),
            }),
        };
        stages
            .entry(row.release_id)
            .or_default()
            .push(StageDefinition {
                order: row.stage_order,
                environment_id: EnvironmentId::from_db(row.environment_id),
                pipeline_id: PipelineId::from_db(row.pipeline_id),
                selector,
                requires_approval: row.requires_approval,
                parameters: serde_json::from_value(row.parameters)
                    .map_err(|error| corrupt("stage parameters", error))?,
            });
    }
    rows.into_iter()
        .map(|row| {
            Ok(Release {
                id: ReleaseId::from_db(row.id),
                customer_id: CustomerId::from_db(row.customer_id),
                status: ReleaseStatus::from_db(&row.status)
                    .ok_or_else(|| corrupt("release status", &row.status))?,
                definition: ReleaseDefinition {
                    name: row.name,
                    description: row.description,
                    pipeline_ids: pipelines.remove(&row.id).unwrap_or_default(),
                    stages: stages.remove(&row.id).unwrap_or_default(),
                },
                created_by: UserId::from_db(row.created_by),
                created_at: row.created_at,
                updated_at: row.updated_at,
            })
        })
        .collect()
}

pub(super) async fn find_release(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    release_id: ReleaseId,
) -> Result<release::Model, StoreError> {
    release::Entity::find_by_id(release_id.get())
        .filter(release::Column::CustomerId.eq(customer_id.get()))
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("release {release_id} not found")))
}

pub(super) async fn load_release(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    release_id: ReleaseId,
) -> Result<Release, StoreError> {
    let row = find_release(db, customer_id, release_id).await?;
    releases_from_rows(db, customer_id, vec![row])
        .await?
        .pop()
        .ok_or_else(|| StoreError::NotFound(format!("release {release_id} not found")))
}

fn duplicate(name: &str) -> impl FnOnce(&str) -> String + '_ {
    move |_| format!("a release named {name:?} already exists")
}

impl Store {
    /// Creates a release in the scope's customer.
    pub async fn create_release(
        &self,
        scope: &TenantScope,
        definition: ReleaseDefinition,
    ) -> Result<Release, StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        check_references(&transaction, customer_id, &definition).await?;
        let now = now();
        let row = release::ActiveModel {
            customer_id: Set(customer_id.get()),
            name: Set(definition.name.clone()),
            description: Set(definition.description.clone()),
            status: Set(ReleaseStatus::Active.as_str().to_owned()),
            last_number: Set(0),
            created_by: Set(scope.actor().get()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&transaction)
        .await
        .map_err(|error| StoreError::on_unique_violation(error, duplicate(&definition.name)))?;
        write_parts(
            &transaction,
            customer_id,
            row.id,
            Some(&definition.pipeline_ids),
            Some(&definition.stages),
        )
        .await?;
        let release = load_release(&transaction, customer_id, ReleaseId::from_db(row.id)).await?;
        transaction.commit().await?;
        Ok(release)
    }

    /// One of the scope's releases.
    pub async fn get_release(
        &self,
        scope: &TenantScope,
        release_id: ReleaseId,
    ) -> Result<Release, StoreError> {
        load_release(&self.db, scope.customer_id(), release_id).await
    }

    /// The scope's releases by id.
    pub async fn list_releases(
        &self,
        scope: &TenantScope,
        page: PageRequest,
        include_archived: bool,
    ) -> Result<Page<Release>, StoreError> {
        let mut query = release::Entity::find()
            .filter(release::Column::CustomerId.eq(scope.customer_id().get()));
        if !include_archived {
            query = query.filter(release::Column::Status.ne(ReleaseStatus::Archived.as_str()));
        }
        if let Some(after) = page.after {
            query = query.filter(release::Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(release::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        let page = Page::from_rows(rows, page, |row| row.id);
        Ok(Page {
            items: releases_from_rows(&self.db, scope.customer_id(), page.items).await?,
            next_page_token: page.next_page_token,
        })
    }

    /// Changes one of the scope's releases; an archived one cannot change.
    pub async fn update_release(
        &self,
        scope: &TenantScope,
        release_id: ReleaseId,
        patch: ReleasePatch,
    ) -> Result<Release, StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let current = load_release(&transaction, customer_id, release_id).await?;
        if current.status == ReleaseStatus::Archived {
            return Err(StoreError::FailedPrecondition(format!(
                "release {release_id} is archived"
            )));
        }
        let mut definition = current.definition.clone();
        if let Some(pipeline_ids) = &patch.pipeline_ids {
            definition.pipeline_ids = pipeline_ids.clone();
        }
        if let Some(stages) = &patch.stages {
            definition.stages = stages.clone();
        }
        check_references(&transaction, customer_id, &definition).await?;
        let row = find_release(&transaction, customer_id, release_id).await?;
        let name = patch.name.clone().unwrap_or_else(|| row.name.clone());
        let mut row: release::ActiveModel = row.into();
        if let Some(value) = patch.name {
            row.name = Set(value);
        }
        if let Some(value) = patch.description {
            row.description = Set(value);
        }
        if let Some(status) = patch.status {
            row.status = Set(status.as_str().to_owned());
        }
        row.updated_at = Set(now());
        row.update(&transaction)
            .await
            .map_err(|error| StoreError::on_unique_violation(error, duplicate(&name)))?;
        write_parts(
            &transaction,
            customer_id,
            release_id.get(),
            patch.pipeline_ids.as_deref(),
            patch.stages.as_deref(),
        )
        .await?;
        let release = load_release(&transaction, customer_id, release_id).await?;
        transaction.commit().await?;
        Ok(release)
    }

    /// Archives one of the scope's releases (idempotent).
    pub async fn archive_release(
        &self,
        scope: &TenantScope,
        release_id: ReleaseId,
    ) -> Result<Release, StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let row = find_release(&transaction, customer_id, release_id).await?;
        let mut row: release::ActiveModel = row.into();
        row.status = Set(ReleaseStatus::Archived.as_str().to_owned());
        row.updated_at = Set(now());
        row.update(&transaction).await?;
        let release = load_release(&transaction, customer_id, release_id).await?;
        transaction.commit().await?;
        Ok(release)
    }
}
