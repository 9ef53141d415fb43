//! Invitations: a customer admin offers a role to a username; the user becomes a member by
//! accepting. Nothing here tells the inviting admin whether the username exists.

use chrono::Duration;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};

use super::entities::{customer, invitation, user, user_customer};
use super::memberships::insert_membership;
use super::{Store, StoreError, activity, now};
use crate::auth::TenantScope;
use crate::domain::{
    Customer, CustomerId, Invitation, InvitationId, Membership, NewActivity, Quota, Role, User,
    UserId,
};

/// How long an invitation stays open.
pub const INVITATION_LIFETIME: Duration = Duration::days(7);

/// At most this many open invitations are listed (the `open_invitations` quota's ceiling).
const LISTED: u64 = 1000;

fn invitation_from_row(
    row: invitation::Model,
    customer_display_name: String,
) -> Result<Invitation, StoreError> {
    Ok(Invitation {
        id: InvitationId::from_db(row.id),
        customer_id: CustomerId::from_db(row.customer_id),
        customer_display_name,
        role: super::convert::role(&row.role)?,
        username: row.username,
        invited_by: UserId::from_db(row.invited_by),
        created_at: row.created_at,
        expires_at: row.expires_at,
    })
}

async fn display_name(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
) -> Result<String, StoreError> {
    Ok(customer::Entity::find_by_id(customer_id.get())
        .one(db)
        .await?
        .map(|row| row.display_name)
        .unwrap_or_default())
}

/// An open invitation addressed to `user`, or NOT_FOUND (whoever else it is addressed to).
async fn find_addressed(
    db: &impl ConnectionTrait,
    user: &User,
    invitation_id: InvitationId,
) -> Result<invitation::Model, StoreError> {
    invitation::Entity::find_by_id(invitation_id.get())
        .filter(invitation::Column::Username.eq(user.username.as_str()))
        .filter(invitation::Column::ExpiresAt.gt(now()))
        .filter(invitation::Column::DeclinedAt.is_null())
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("invitation {invitation_id} not found")))
}

impl Store {
    /// Offers `role` in the scope's customer to `username`, replacing an open invitation to the
    /// same username. The same answer whether or not the username exists; ALREADY_EXISTS only
    /// for a username that is a member already (members are visible to the caller anyway).
    pub async fn invite_member(
        &self,
        scope: &TenantScope,
        username: &str,
        role: Role,
    ) -> Result<Invitation, StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let users = user::Entity::find()
            .select_only()
            .column(user::Column::Id)
            .filter(user::Column::Username.eq(username))
            .into_query();
        let member = user_customer::Entity::find()
            .filter(user_customer::Column::CustomerId.eq(customer_id.get()))
            .filter(user_customer::Column::UserId.in_subquery(users))
            .count(&transaction)
            .await?;
        if member > 0 {
            return Err(StoreError::AlreadyExists(format!(
                "{username} is already a member of customer {customer_id}"
            )));
        }
        let at = now();
        invitation::Entity::delete_many()
            .filter(invitation::Column::CustomerId.eq(customer_id.get()))
            .filter(
                sea_orm::Condition::any()
                    .add(invitation::Column::Username.eq(username))
                    .add(invitation::Column::ExpiresAt.lte(at)),
            )
            .exec(&transaction)
            .await?;
        let open = invitation::Entity::find()
            .filter(invitation::Column::CustomerId.eq(customer_id.get()))
            .count(&transaction)
            .await?;
        let open = i64::try_from(open).unwrap_or(i64::MAX);
        let limits = self.quota_limits(&transaction, customer_id).await?;
        limits
            .check(customer_id, Quota::OpenInvitations, open, 1)
            .map_err(|exceeded| self.over_quota(exceeded))?;
        let row = invitation::ActiveModel {
            customer_id: Set(customer_id.get()),
            username: Set(username.to_owned()),
            role: Set(role.as_str().to_owned()),
            invited_by: Set(scope.actor().get()),
            created_at: Set(at),
            expires_at: Set(at + INVITATION_LIFETIME),
            declined_at: Set(None),
            ..Default::default()
        }
        .insert(&transaction)
        .await
        .map_err(|error| {
            StoreError::on_unique_violation(error, |_| {
                format!("{username} was invited to customer {customer_id} at this moment; list the invitations")
            })
        })?;
        let name = display_name(&transaction, customer_id).await?;
        transaction.commit().await?;
        invitation_from_row(row, name)
    }

    /// The scope's open invitations, oldest first.
    pub async fn list_invitations(
        &self,
        scope: &TenantScope,
    ) -> Result<Vec<Invitation>, StoreError> {
        let customer_id = scope.customer_id();
        let rows = invitation::Entity::find()
            .filter(invitation::Column::CustomerId.eq(customer_id.get()))
            .filter(invitation::Column::ExpiresAt.gt(now()))
            .order_by_asc(invitation::Column::Id)
            .limit(LISTED)
            .all(&self.db)
            .await?;
        let name = display_name(&self.db, customer_id).await?;
        rows.into_iter()
            .map(|row| invitation_from_row(row, name.clone()))
            .collect()
    }

    /// Withdraws one of the scope's invitations.
    pub async fn revoke_invitation(
        &self,
        scope: &TenantScope,
        invitation_id: InvitationId,
    ) -> Result<(), StoreError> {
        let deleted = invitation::Entity::delete_many()
            .filter(invitation::Column::Id.eq(invitation_id.get()))
            .filter(invitation::Column::CustomerId.eq(scope.customer_id().get()))
            .exec(&self.writer)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(StoreError::NotFound(format!(
                "invitation {invitation_id} not found"
            )));
        }
        Ok(())
    }

    /// The open invitations addressed to `user`, oldest first.
    pub(crate) async fn list_my_invitations(
        &self,
        user: &User,
    ) -> Result<Vec<Invitation>, StoreError> {
        let rows = invitation::Entity::find()
            .filter(invitation::Column::Username.eq(user.username.as_str()))
            .filter(invitation::Column::ExpiresAt.gt(now()))
            .filter(invitation::Column::DeclinedAt.is_null())
            .order_by_asc(invitation::Column::Id)
            .limit(LISTED)
            .all(&self.db)
            .await?;
        // The customers' names in one read, however many customers invited this username.
        let names: std::collections::HashMap<i64, String> = customer::Entity::find()
            .select_only()
            .column(customer::Column::Id)
            .column(customer::Column::DisplayName)
            .filter(customer::Column::Id.is_in(rows.iter().map(|row| row.customer_id)))
            .into_tuple::<(i64, String)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        rows.into_iter()
            .map(|row| {
                let name = names.get(&row.customer_id).cloned().unwrap_or_default();
                invitation_from_row(row, name)
            })
            .collect()
    }

    /// Accepts an invitation addressed to `user`: the membership is created (the user's default
    /// when it is their first) and the invitation consumed, together.
    pub(crate) async fn accept_invitation(
        &self,
        user: &User,
        invitation_id: InvitationId,
    ) -> Result<(Membership, Customer), StoreError> {
        let transaction = self.begin_write().await?;
        let row = find_addressed(&transaction, user, invitation_id).await?;
        let customer_id = CustomerId::from_db(row.customer_id);
        let customer = customer::Entity::find_by_id(row.customer_id)
            .one(&transaction)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("invitation {invitation_id} not found")))?;
        if !customer.is_active {
            return Err(StoreError::FailedPrecondition(format!(
                "customer {customer_id} is deactivated"
            )));
        }
        let role = super::convert::role(&row.role)?;
        // Consumed first: a revocation or a new invitation racing this accept either came
        // before (and this finds nothing) or finds nothing itself.
        let consumed = invitation::Entity::delete_many()
            .filter(invitation::Column::Id.eq(row.id))
            .filter(invitation::Column::Role.eq(row.role.as_str()))
            .filter(invitation::Column::DeclinedAt.is_null())
            .exec(&transaction)
            .await?;
        if consumed.rows_affected != 1 {
            return Err(StoreError::NotFound(format!(
                "invitation {invitation_id} not found"
            )));
        }
        let membership = insert_membership(&transaction, customer_id, user.id, role).await?;
        activity::record(
            &transaction,
            customer_id,
            NewActivity {
                kind: "member.added",
                subject_type: "user",
                subject_id: user.id.get(),
                message: format!("{} joined as {}", user.username, role.as_str()),
                actor: Some(user.id),
            },
            now(),
        )
        .await?;
        transaction.commit().await?;
        self.auth_cache.invalidate();
        Ok((membership.try_into()?, customer.into()))
    }

    /// Declines an invitation addressed to `user`: it is gone for them; the customer still sees
    /// it open until it lapses.
    pub(crate) async fn decline_invitation(
        &self,
        user: &User,
        invitation_id: InvitationId,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_write().await?;
        let row = find_addressed(&transaction, user, invitation_id).await?;
        // Kept until it lapses, so the inviting admin cannot tell a decline from silence (or
        // from a username nobody has).
        invitation::Entity::update_many()
            .col_expr(
                invitation::Column::DeclinedAt,
                sea_orm::sea_query::Expr::value(now()),
            )
            .filter(invitation::Column::Id.eq(row.id))
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }
}
