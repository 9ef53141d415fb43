//! The lookups authorization is built on. These run before a scope exists, so they are the only
//! tenant-table reads that do not take one; each reads exactly one customer's row for one user.

use sea_orm::sea_query::{Condition, Expr, JoinType, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, ExprTrait, QueryFilter, QuerySelect, QueryTrait,
};

use super::entities::{customer, user_customer};
use super::{Store, StoreError, convert};
use crate::domain::{CustomerId, Role, UserId};

/// What authorization needs to know about a customer and the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerAccess {
    pub is_active: bool,
    /// The caller's role, if they are a member.
    pub role: Option<Role>,
}

impl Store {
    /// The customer's state and the user's role in it, in one query; `None` if the customer
    /// does not exist. Cached briefly (see `auth_cache`).
    pub(crate) async fn customer_access(
        &self,
        customer_id: CustomerId,
        user_id: UserId,
    ) -> Result<Option<CustomerAccess>, StoreError> {
        self.auth_cache
            .read_through(
                &self.auth_cache.access,
                (customer_id.get(), user_id.get()),
                |_| true,
                || self.read_customer_access(customer_id, user_id),
            )
            .await
    }

    async fn read_customer_access(
        &self,
        customer_id: CustomerId,
        user_id: UserId,
    ) -> Result<Option<CustomerAccess>, StoreError> {
        let query = Query::select()
            .column((customer::Entity, customer::Column::IsActive))
            .column((user_customer::Entity, user_customer::Column::Role))
            .from(customer::Entity)
            .join(
                JoinType::LeftJoin,
                user_customer::Entity,
                Condition::all()
                    .add(
                        Expr::col((user_customer::Entity, user_customer::Column::CustomerId))
                            .equals((customer::Entity, customer::Column::Id)),
                    )
                    .add(
                        Expr::col((user_customer::Entity, user_customer::Column::UserId))
                            .eq(user_id.get()),
                    ),
            )
            .and_where(Expr::col((customer::Entity, customer::Column::Id)).eq(customer_id.get()))
            .to_owned();
        let Some(row) = self.db.query_one(&query).await? else {
            return Ok(None);
        };
        let is_active: bool = row.try_get("", "is_active")?;
        let role: Option<String> = row.try_get("", "role")?;
        Ok(Some(CustomerAccess {
            is_active,
            role: role.as_deref().map(convert::role).transpose()?,
        }))
    }

    /// Whether two users are members of at least one common customer.
    pub(crate) async fn users_share_customer(
        &self,
        left: UserId,
        right: UserId,
    ) -> Result<bool, StoreError> {
        let left_customers = user_customer::Entity::find()
            .select_only()
            .column(user_customer::Column::CustomerId)
            .filter(user_customer::Column::UserId.eq(left.get()))
            .into_query();
        let shared = user_customer::Entity::find()
            .filter(user_customer::Column::UserId.eq(right.get()))
            .filter(user_customer::Column::CustomerId.in_subquery(left_customers))
            .one(&self.db)
            .await?;
        Ok(shared.is_some())
    }
}
