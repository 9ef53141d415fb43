//! Users.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait,
};

use super::entities::{user, user_customer};
use super::{Store, StoreError, SystemStore, now};
use crate::auth::{PlatformAdmin, TenantScope};
use crate::domain::{NewUser, Page, PageRequest, User, UserId};

/// Which unique field a violated constraint names.
fn duplicate_user_message(detail: &str, new: &NewUser) -> String {
    if detail.contains("email") {
        format!("email {:?} is already taken", new.email)
    } else {
        format!("username {:?} is already taken", new.username)
    }
}

impl Store {
    /// Creates a user; ALREADY_EXISTS when the username or email is taken.
    pub async fn create_user(
        &self,
        _admin: &PlatformAdmin,
        new: NewUser,
    ) -> Result<User, StoreError> {
        let row = user::ActiveModel {
            username: Set(new.username.clone()),
            email: Set(new.email.clone()),
            full_name: Set(new.full_name.clone()),
            is_active: Set(true),
            is_superuser: Set(new.is_superuser),
            created_at: Set(now()),
            last_seen_at: Set(None),
            ..Default::default()
        }
        .insert(&self.writer)
        .await
        .map_err(|error| {
            StoreError::on_unique_violation(error, |detail| duplicate_user_message(detail, &new))
        })?;
        Ok(row.into())
    }

    /// A user by id. Visibility is the caller's business (`Authorizer::can_see_user`).
    pub(crate) async fn get_user(&self, user_id: UserId) -> Result<User, StoreError> {
        user::Entity::find_by_id(user_id.get())
            .one(&self.db)
            .await?
            .map(User::from)
            .ok_or_else(|| StoreError::NotFound(format!("user {user_id} not found")))
    }

    /// Every user, by id.
    pub async fn list_all_users(
        &self,
        _admin: &PlatformAdmin,
        page: PageRequest,
    ) -> Result<Page<User>, StoreError> {
        let mut query = user::Entity::find();
        if let Some(after) = page.after {
            query = query.filter(user::Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(user::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        Ok(Page::from_rows(rows, page, |row| row.id).map(User::from))
    }

    /// The users who are members of the scope's customer, by id.
    pub async fn list_customer_users(
        &self,
        scope: &TenantScope,
        page: PageRequest,
    ) -> Result<Page<User>, StoreError> {
        let members = user_customer::Entity::find()
            .select_only()
            .column(user_customer::Column::UserId)
            .filter(user_customer::Column::CustomerId.eq(scope.customer_id().get()))
            .into_query();
        let mut query = user::Entity::find().filter(user::Column::Id.in_subquery(members));
        if let Some(after) = page.after {
            query = query.filter(user::Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(user::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        Ok(Page::from_rows(rows, page, |row| row.id).map(User::from))
    }

    /// Deactivates a user; their tokens stop authenticating. Idempotent. An administrator cannot
    /// deactivate themselves (that could leave the platform without one).
    pub async fn deactivate_user(
        &self,
        admin: &PlatformAdmin,
        user_id: UserId,
    ) -> Result<User, StoreError> {
        if admin.actor() == user_id {
            return Err(StoreError::FailedPrecondition(
                "you cannot deactivate yourself".into(),
            ));
        }
        let transaction = self.begin_write().await?;
        let current = user::Entity::find_by_id(user_id.get())
            .one(&transaction)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {user_id} not found")))?;
        if !current.is_active {
            return Ok(current.into());
        }
        let mut row: user::ActiveModel = current.into();
        row.is_active = Set(false);
        let updated = row.update(&transaction).await?;
        transaction.commit().await?;
        self.auth_cache.invalidate();
        Ok(updated.into())
    }
}

impl SystemStore {
    /// How many users exist; zero means the database is fresh and needs bootstrapping.
    pub(crate) async fn count_users(&self) -> Result<u64, StoreError> {
        Ok(user::Entity::find().count(&self.db).await?)
    }
}
