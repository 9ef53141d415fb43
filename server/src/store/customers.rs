//! Customers.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
};

use super::entities::{customer, user_customer};
use super::{Store, StoreError, now};
use crate::auth::{PlatformAdmin, TenantScope};
use crate::domain::{Customer, CustomerPatch, NewCustomer, Page, PageRequest, UserId};

impl Store {
    /// Creates a customer; ALREADY_EXISTS when the name is taken.
    pub async fn create_customer(
        &self,
        admin: &PlatformAdmin,
        new: NewCustomer,
    ) -> Result<Customer, StoreError> {
        let now = now();
        let name = new.name.clone();
        let transaction = self.begin_write().await?;
        let row = customer::ActiveModel {
            name: Set(new.name),
            display_name: Set(new.display_name),
            description: Set(new.description),
            logo_url: Set(new.logo_url),
            contact_email: Set(new.contact_email),
            contact_phone: Set(new.contact_phone),
            address: Set(new.address),
            is_active: Set(true),
            settings: Set(new.settings),
            created_at: Set(now),
            updated_at: Set(now),
            created_by: Set(Some(admin.actor().get())),
            ..Default::default()
        }
        .insert(&transaction)
        .await
        .map_err(|error| {
            StoreError::on_unique_violation(error, |_| {
                format!("customer name {name:?} is already taken")
            })
        })?;
        super::environments::create_default_environments(
            &transaction,
            crate::domain::CustomerId::from_db(row.id),
        )
        .await?;
        super::quotas::create_storage(&transaction, crate::domain::CustomerId::from_db(row.id))
            .await?;
        transaction.commit().await?;
        self.auth_cache.invalidate();
        Ok(row.into())
    }

    /// The scope's customer.
    pub async fn get_customer(&self, scope: &TenantScope) -> Result<Customer, StoreError> {
        customer::Entity::find_by_id(scope.customer_id().get())
            .one(&self.db)
            .await?
            .map(Customer::from)
            .ok_or_else(|| {
                StoreError::NotFound(format!("customer {} not found", scope.customer_id()))
            })
    }

    /// The customers a user is a member of, by id.
    pub(crate) async fn list_member_customers(
        &self,
        user_id: UserId,
        page: PageRequest,
        active_only: bool,
    ) -> Result<Page<Customer>, StoreError> {
        let memberships = user_customer::Entity::find()
            .select_only()
            .column(user_customer::Column::CustomerId)
            .filter(user_customer::Column::UserId.eq(user_id.get()))
            .into_query();
        let query = customer::Entity::find().filter(customer::Column::Id.in_subquery(memberships));
        self.page_customers(query, page, active_only).await
    }

    /// Every customer, by id.
    pub async fn list_all_customers(
        &self,
        _admin: &PlatformAdmin,
        page: PageRequest,
        active_only: bool,
    ) -> Result<Page<Customer>, StoreError> {
        self.page_customers(customer::Entity::find(), page, active_only)
            .await
    }

    async fn page_customers(
        &self,
        mut query: sea_orm::Select<customer::Entity>,
        page: PageRequest,
        active_only: bool,
    ) -> Result<Page<Customer>, StoreError> {
        if active_only {
            query = query.filter(customer::Column::IsActive.eq(true));
        }
        if let Some(after) = page.after {
            query = query.filter(customer::Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(customer::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        Ok(Page::from_rows(rows, page, |row| row.id).map(Customer::from))
    }

    /// Applies a patch to the scope's customer.
    pub async fn update_customer(
        &self,
        scope: &TenantScope,
        patch: CustomerPatch,
    ) -> Result<Customer, StoreError> {
        let transaction = self.begin_write().await?;
        let current = customer::Entity::find_by_id(scope.customer_id().get())
            .one(&transaction)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("customer {} not found", scope.customer_id()))
            })?;
        if patch.is_empty() {
            return Ok(current.into());
        }
        let mut row: customer::ActiveModel = current.into();
        if let Some(value) = patch.display_name {
            row.display_name = Set(value);
        }
        if let Some(value) = patch.description {
            row.description = Set(value);
        }
        if let Some(value) = patch.logo_url {
            row.logo_url = Set(value);
        }
        if let Some(value) = patch.contact_email {
            row.contact_email = Set(value);
        }
        if let Some(value) = patch.contact_phone {
            row.contact_phone = Set(value);
        }
        if let Some(value) = patch.address {
            row.address = Set(value);
        }
        if let Some(value) = patch.settings {
            row.settings = Set(value);
        }
        row.updated_at = Set(now());
        let updated = row.update(&transaction).await?;
        transaction.commit().await?;
        self.auth_cache.invalidate();
        Ok(updated.into())
    }

    /// Deactivates (soft-deletes) or reactivates the scope's customer. Idempotent.
    pub async fn set_customer_active(
        &self,
        scope: &TenantScope,
        is_active: bool,
    ) -> Result<Customer, StoreError> {
        let transaction = self.begin_write().await?;
        let current = customer::Entity::find_by_id(scope.customer_id().get())
            .one(&transaction)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("customer {} not found", scope.customer_id()))
            })?;
        if current.is_active == is_active {
            return Ok(current.into());
        }
        let mut row: customer::ActiveModel = current.into();
        row.is_active = Set(is_active);
        row.updated_at = Set(now());
        let updated = row.update(&transaction).await?;
        transaction.commit().await?;
        self.auth_cache.invalidate();
        Ok(updated.into())
    }
}
