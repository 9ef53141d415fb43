//! Memberships: who belongs to which customer, with which role, and each user's default.

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use super::entities::{customer, user, user_customer};
use super::{Store, StoreError, activity, now};
use crate::auth::TenantScope;
use crate::domain::{
    Customer, CustomerId, Membership, NewActivity, Page, PageRequest, Role, User, UserId,
};

async fn find_membership(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    user_id: UserId,
) -> Result<Option<user_customer::Model>, StoreError> {
    Ok(user_customer::Entity::find()
        .filter(user_customer::Column::CustomerId.eq(customer_id.get()))
        .filter(user_customer::Column::UserId.eq(user_id.get()))
        .one(db)
        .await?)
}

fn not_a_member(customer_id: CustomerId, user_id: UserId) -> StoreError {
    StoreError::NotFound(format!(
        "user {user_id} is not a member of customer {customer_id}"
    ))
}

/// Refuses to take the admin role away from a customer's only admin.
async fn ensure_not_last_admin(
    db: &impl ConnectionTrait,
    membership: &user_customer::Model,
) -> Result<(), StoreError> {
    if membership.role != Role::Admin.as_str() {
        return Ok(());
    }
    let admins = user_customer::Entity::find()
        .filter(user_customer::Column::CustomerId.eq(membership.customer_id))
        .filter(user_customer::Column::Role.eq(Role::Admin.as_str()))
        .count(db)
        .await?;
    if admins <= 1 {
        return Err(StoreError::FailedPrecondition(format!(
            "user {} is the last admin of customer {}; make someone else admin first",
            membership.user_id, membership.customer_id
        )));
    }
    Ok(())
}

/// A membership change in the customer's activity feed, by the scope's caller.
async fn record_change(
    db: &impl ConnectionTrait,
    scope: &TenantScope,
    kind: &'static str,
    user_id: UserId,
    message: String,
) -> Result<(), StoreError> {
    activity::record(
        db,
        scope.customer_id(),
        NewActivity {
            kind,
            subject_type: "user",
            subject_id: user_id.get(),
            message,
            actor: Some(scope.actor()),
        },
        now(),
    )
    .await
}

async fn load_user(db: &impl ConnectionTrait, user_id: UserId) -> Result<User, StoreError> {
    user::Entity::find_by_id(user_id.get())
        .one(db)
        .await?
        .map(User::from)
        .ok_or_else(|| StoreError::NotFound(format!("user {user_id} not found")))
}

/// Stores a membership; the user's first becomes their default. ALREADY_EXISTS when the user
/// is a member already.
pub(super) async fn insert_membership(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    user_id: UserId,
    role: Role,
) -> Result<user_customer::Model, StoreError> {
    if find_membership(db, customer_id, user_id).await?.is_some() {
        return Err(StoreError::AlreadyExists(format!(
            "user {user_id} is already a member of customer {customer_id}"
        )));
    }
    let has_default = user_customer::Entity::find()
        .filter(user_customer::Column::UserId.eq(user_id.get()))
        .filter(user_customer::Column::IsDefault.eq(true))
        .count(db)
        .await?
        > 0;
    user_customer::ActiveModel {
        user_id: Set(user_id.get()),
        customer_id: Set(customer_id.get()),
        role: Set(role.as_str().to_owned()),
        is_default: Set(!has_default),
        assigned_at: Set(now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .map_err(|error| {
        StoreError::on_unique_violation(error, |_| {
            format!("user {user_id} is already a member of customer {customer_id}")
        })
    })
}

impl Store {
    /// Adds a user to the scope's customer. The user's first membership becomes their default.
    pub async fn add_member(
        &self,
        scope: &TenantScope,
        user_id: UserId,
        role: Role,
    ) -> Result<(Membership, User), StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let member = load_user(&transaction, user_id).await?;
        if !member.is_active {
            return Err(StoreError::FailedPrecondition(format!(
                "user {user_id} is deactivated"
            )));
        }
        let row = insert_membership(&transaction, customer_id, user_id, role).await?;
        record_change(
            &transaction,
            scope,
            "member.added",
            user_id,
            format!("{} joined as {}", member.username, role.as_str()),
        )
        .await?;
        transaction.commit().await?;
        self.auth_cache.invalidate();
        Ok((row.try_into()?, member))
    }

    /// Changes a member's role. The last admin cannot be demoted.
    pub async fn update_member(
        &self,
        scope: &TenantScope,
        user_id: UserId,
        role: Role,
    ) -> Result<(Membership, User), StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let current = find_membership(&transaction, customer_id, user_id)
            .await?
            .ok_or_else(|| not_a_member(customer_id, user_id))?;
        if current.role == role.as_str() {
            let member = load_user(&transaction, user_id).await?;
            return Ok((current.try_into()?, member));
        }
        ensure_not_last_admin(&transaction, &current).await?;
        let previous = current.role.clone();
        let mut row: user_customer::ActiveModel = current.into();
        row.role = Set(role.as_str().to_owned());
        let updated = row.update(&transaction).await?;
        let member = load_user(&transaction, user_id).await?;
        record_change(
            &transaction,
            scope,
            "member.role_changed",
            user_id,
            format!(
                "{} is now {} (was {previous})",
                member.username,
                role.as_str()
            ),
        )
        .await?;
        transaction.commit().await?;
        self.auth_cache.invalidate();
        Ok((updated.try_into()?, member))
    }

    /// Removes a member. The last admin cannot be removed. When the membership was the user's
    /// default, their membership with the lowest customer id becomes the default.
    pub async fn remove_member(
        &self,
        scope: &TenantScope,
        user_id: UserId,
    ) -> Result<(), StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let current = find_membership(&transaction, customer_id, user_id)
            .await?
            .ok_or_else(|| not_a_member(customer_id, user_id))?;
        ensure_not_last_admin(&transaction, &current).await?;
        let member = load_user(&transaction, user_id).await?;
        record_change(
            &transaction,
            scope,
            "member.removed",
            user_id,
            format!("{} was removed", member.username),
        )
        .await?;
        let was_default = current.is_default;
        user_customer::Entity::delete_by_id(current.id)
            .exec(&transaction)
            .await?;
        if was_default
            && let Some(next) = user_customer::Entity::find()
                .filter(user_customer::Column::UserId.eq(user_id.get()))
                .order_by_asc(user_customer::Column::CustomerId)
                .one(&transaction)
                .await?
        {
            let mut next: user_customer::ActiveModel = next.into();
            next.is_default = Set(true);
            next.update(&transaction).await?;
        }
        transaction.commit().await?;
        self.auth_cache.invalidate();
        Ok(())
    }

    /// The scope's members with their users, by user id.
    pub async fn list_members(
        &self,
        scope: &TenantScope,
        page: PageRequest,
    ) -> Result<Page<(Membership, User)>, StoreError> {
        let mut query = user_customer::Entity::find()
            .filter(user_customer::Column::CustomerId.eq(scope.customer_id().get()));
        if let Some(after) = page.after {
            query = query.filter(user_customer::Column::UserId.gt(after));
        }
        let rows = query
            .order_by_asc(user_customer::Column::UserId)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        let page = Page::from_rows(rows, page, |row| row.user_id);
        let user_ids: Vec<i64> = page.items.iter().map(|row| row.user_id).collect();
        let mut users: HashMap<i64, user::Model> = user::Entity::find()
            .filter(user::Column::Id.is_in(user_ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| (row.id, row))
            .collect();
        let mut items = Vec::with_capacity(page.items.len());
        for row in page.items {
            let member = users.remove(&row.user_id).ok_or_else(|| {
                super::error::corrupt("membership", format!("user {} is missing", row.user_id))
            })?;
            items.push((Membership::try_from(row)?, User::from(member)));
        }
        Ok(Page {
            items,
            next_page_token: page.next_page_token,
        })
    }

    /// Every membership of one user with its customer, by customer id: the user's own view.
    pub(crate) async fn list_user_memberships(
        &self,
        user_id: UserId,
    ) -> Result<Vec<(Membership, Customer)>, StoreError> {
        let rows = user_customer::Entity::find()
            .filter(user_customer::Column::UserId.eq(user_id.get()))
            .order_by_asc(user_customer::Column::CustomerId)
            .all(&self.db)
            .await?;
        let customer_ids: Vec<i64> = rows.iter().map(|row| row.customer_id).collect();
        let mut customers: HashMap<i64, customer::Model> = customer::Entity::find()
            .filter(customer::Column::Id.is_in(customer_ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| (row.id, row))
            .collect();
        rows.into_iter()
            .map(|row| {
                let customer = customers.remove(&row.customer_id).ok_or_else(|| {
                    sea_orm::DbErr::RecordNotFound(format!(
                        "customer {} of a membership",
                        row.customer_id
                    ))
                })?;
                Ok((Membership::try_from(row)?, Customer::from(customer)))
            })
            .collect()
    }

    /// Makes the user's membership in `customer_id` their default. NOT_FOUND when the user is not
    /// a member, whether or not the customer exists.
    pub(crate) async fn set_default_membership(
        &self,
        user_id: UserId,
        customer_id: CustomerId,
    ) -> Result<(Membership, Customer), StoreError> {
        let transaction = self.begin_write().await?;
        let target = find_membership(&transaction, customer_id, user_id)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "customer {customer_id} not found among your memberships"
                ))
            })?;
        let customer = customer::Entity::find_by_id(customer_id.get())
            .one(&transaction)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("customer {customer_id} not found")))?;
        if target.is_default {
            return Ok((target.try_into()?, customer.into()));
        }
        // Clear the old default first: the database allows at most one per user.
        user_customer::Entity::update_many()
            .col_expr(
                user_customer::Column::IsDefault,
                sea_orm::sea_query::Expr::value(false),
            )
            .filter(user_customer::Column::UserId.eq(user_id.get()))
            .filter(user_customer::Column::IsDefault.eq(true))
            .exec(&transaction)
            .await?;
        let mut row: user_customer::ActiveModel = target.into();
        row.is_default = Set(true);
        let updated = row.update(&transaction).await?;
        transaction.commit().await?;
        // Which customer is the default changes no answer the cache holds (access is per
        // customer), so nothing is invalidated and no open stream re-checks for it.
        Ok((updated.try_into()?, customer.into()))
    }
}
