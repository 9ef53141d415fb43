//! Environments a customer deploys to.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};

use super::entities::environment;
use super::pipelines::to_json;
use super::{Store, StoreError, now};
use crate::auth::TenantScope;
use crate::domain::release::{DEFAULT_ENVIRONMENTS, Environment, EnvironmentPatch, NewEnvironment};
use crate::domain::{CustomerId, EnvironmentId, Page, PageRequest, Role};

pub(super) fn environment_from_row(row: environment::Model) -> Result<Environment, StoreError> {
    let names: Vec<String> = serde_json::from_value(row.approver_roles.clone())
        .map_err(|error| super::error::corrupt("approver roles", error))?;
    let approver_roles = names
        .iter()
        .map(|name| super::convert::role(name))
        .collect::<Result<Vec<Role>, _>>()?;
    Ok(Environment {
        id: EnvironmentId::from_db(row.id),
        customer_id: CustomerId::from_db(row.customer_id),
        name: row.name,
        description: row.description,
        order: row.sort_order,
        requires_approval: row.requires_approval,
        approver_roles,
        allow_self_approval: row.allow_self_approval,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn roles_json(roles: &[Role]) -> serde_json::Value {
    to_json(&roles.iter().map(|role| role.as_str()).collect::<Vec<_>>())
}

/// Creates the seed's four environments for a new customer, in the caller's transaction.
pub(super) async fn create_default_environments(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
) -> Result<(), StoreError> {
    let now = now();
    environment::Entity::insert_many(DEFAULT_ENVIRONMENTS.iter().map(
        |(name, order, requires_approval, roles)| environment::ActiveModel {
            customer_id: Set(customer_id.get()),
            name: Set((*name).to_owned()),
            description: Set(String::new()),
            sort_order: Set(*order),
            requires_approval: Set(*requires_approval),
            approver_roles: Set(roles_json(roles)),
            allow_self_approval: Set(false),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        },
    ))
    .exec(db)
    .await?;
    Ok(())
}

/// One environment of the customer.
pub(super) async fn find_environment(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    environment_id: EnvironmentId,
) -> Result<Option<environment::Model>, StoreError> {
    Ok(environment::Entity::find_by_id(environment_id.get())
        .filter(environment::Column::CustomerId.eq(customer_id.get()))
        .one(db)
        .await?)
}

fn duplicate(name: &str) -> impl FnOnce(&str) -> String + '_ {
    move |_| format!("an environment named {name:?} already exists")
}

impl Store {
    /// Adds an environment to the scope's customer.
    pub async fn create_environment(
        &self,
        scope: &TenantScope,
        new: NewEnvironment,
    ) -> Result<Environment, StoreError> {
        let now = now();
        let row = environment::ActiveModel {
            customer_id: Set(scope.customer_id().get()),
            name: Set(new.name.clone()),
            description: Set(new.description),
            sort_order: Set(new.order),
            requires_approval: Set(new.requires_approval),
            approver_roles: Set(roles_json(&new.approver_roles)),
            allow_self_approval: Set(new.allow_self_approval),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&self.writer)
        .await
        .map_err(|error| StoreError::on_unique_violation(error, duplicate(&new.name)))?;
        environment_from_row(row)
    }

    /// The scope's environments by order, then id.
    pub async fn list_environments(
        &self,
        scope: &TenantScope,
        page: PageRequest,
    ) -> Result<Page<Environment>, StoreError> {
        // Few per customer: ordered by position, paged by position in that order.
        let rows = environment::Entity::find()
            .filter(environment::Column::CustomerId.eq(scope.customer_id().get()))
            .order_by_asc(environment::Column::SortOrder)
            .order_by_asc(environment::Column::Id)
            .all(&self.db)
            .await?;
        let skip = page.after.unwrap_or(0).max(0) as usize;
        let rows: Vec<(i64, environment::Model)> = rows
            .into_iter()
            .enumerate()
            .skip(skip)
            .take(page.fetch_limit() as usize)
            .map(|(index, row)| (index as i64 + 1, row))
            .collect();
        let page = Page::from_rows(rows, page, |(position, _)| *position);
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|(_, row)| environment_from_row(row))
                .collect::<Result<_, _>>()?,
            next_page_token: page.next_page_token,
        })
    }

    /// Changes one of the scope's environments.
    pub async fn update_environment(
        &self,
        scope: &TenantScope,
        environment_id: EnvironmentId,
        patch: EnvironmentPatch,
    ) -> Result<Environment, StoreError> {
        let transaction = self.begin_write().await?;
        let current = find_environment(&transaction, scope.customer_id(), environment_id)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("environment {environment_id} not found"))
            })?;
        let name = patch.name.clone().unwrap_or_else(|| current.name.clone());
        let requires_approval = patch.requires_approval.unwrap_or(current.requires_approval);
        let mut row: environment::ActiveModel = current.into();
        if let Some(value) = patch.name {
            row.name = Set(value);
        }
        if let Some(value) = patch.description {
            row.description = Set(value);
        }
        if let Some(value) = patch.order {
            row.sort_order = Set(value);
        }
        if let Some(value) = patch.requires_approval {
            row.requires_approval = Set(value);
        }
        if let Some(roles) = &patch.approver_roles {
            row.approver_roles = Set(roles_json(roles));
        }
        if let Some(value) = patch.allow_self_approval {
            row.allow_self_approval = Set(value);
        }
        row.updated_at = Set(now());
        let updated = row
            .update(&transaction)
            .await
            .map_err(|error| StoreError::on_unique_violation(error, duplicate(&name)))?;
        let environment = environment_from_row(updated)?;
        if requires_approval && environment.approver_roles.is_empty() {
            return Err(StoreError::InvalidArgument(
                "approver_roles must name at least one role when approval is required".into(),
            ));
        }
        transaction.commit().await?;
        Ok(environment)
    }
}
