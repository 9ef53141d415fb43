//! Registration tokens: the secrets build hosts register with.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::entities::registration_token;
use super::{Store, StoreError, now};
use crate::auth::TenantScope;
use crate::auth::token::GeneratedSecret;
use crate::domain::{
    CustomerId, NewRegistrationToken, Page, PageRequest, Quota, RegistrationToken,
    RegistrationTokenId, UserId,
};

impl From<registration_token::Model> for RegistrationToken {
    fn from(row: registration_token::Model) -> Self {
        RegistrationToken {
            id: RegistrationTokenId::from_db(row.id),
            customer_id: CustomerId::from_db(row.customer_id),
            description: row.description,
            token_prefix: row.token_prefix,
            created_by: UserId::from_db(row.created_by),
            created_at: row.created_at,
            expires_at: row.expires_at,
            max_uses: row.max_uses,
            use_count: row.use_count,
            revoked_at: row.revoked_at,
        }
    }
}

/// Tokens that can no longer register (revoked, expired, used up) a customer keeps listed.
const KEPT_DEAD_TOKENS: u64 = 100;
/// Most dead tokens one creation deletes (each creation makes at most one more).
const PRUNED_AT_ONCE: u64 = 100;

/// The tokens that can still register an agent at `at`: not revoked, not expired, not used up.
pub(super) fn live(at: chrono::DateTime<chrono::Utc>) -> Condition {
    Condition::all()
        .add(registration_token::Column::RevokedAt.is_null())
        .add(
            Condition::any()
                .add(registration_token::Column::ExpiresAt.is_null())
                .add(registration_token::Column::ExpiresAt.gt(at)),
        )
        .add(
            Condition::any()
                .add(registration_token::Column::MaxUses.eq(0))
                .add(
                    Expr::col(registration_token::Column::UseCount)
                        .lt(Expr::col(registration_token::Column::MaxUses)),
                ),
        )
}

impl Store {
    /// Stores a registration token for the scope's customer, within its `registration_tokens`
    /// quota (live tokens).
    pub async fn create_registration_token(
        &self,
        scope: &TenantScope,
        new: NewRegistrationToken,
        secret: &GeneratedSecret,
    ) -> Result<RegistrationToken, StoreError> {
        let customer_id = scope.customer_id();
        self.precheck_one_more(customer_id, Quota::RegistrationTokens)
            .await?;
        let transaction = self.begin_write().await?;
        self.admit_one_more(&transaction, customer_id, Quota::RegistrationTokens)
            .await?;
        // Tokens that can no longer register stay listed as history, the newest
        // KEPT_DEAD_TOKENS of them: with the quota on live ones, a customer's rows stay bounded
        // however often it creates and revokes.
        let beyond: Vec<i64> = registration_token::Entity::find()
            .select_only()
            .column(registration_token::Column::Id)
            .filter(registration_token::Column::CustomerId.eq(customer_id.get()))
            .filter(Condition::not(live(now())))
            .order_by_desc(registration_token::Column::Id)
            .offset(KEPT_DEAD_TOKENS)
            .limit(PRUNED_AT_ONCE)
            .into_tuple()
            .all(&transaction)
            .await?;
        if !beyond.is_empty() {
            registration_token::Entity::delete_many()
                .filter(registration_token::Column::Id.is_in(beyond))
                .exec(&transaction)
                .await?;
        }
        let row = registration_token::ActiveModel {
            customer_id: Set(customer_id.get()),
            description: Set(new.description),
            token_hash: Set(secret.hash.clone()),
            token_prefix: Set(secret.display_prefix.clone()),
            created_by: Set(scope.actor().get()),
            created_at: Set(now()),
            expires_at: Set(new.expires_at),
            max_uses: Set(new.max_uses),
            use_count: Set(0),
            revoked_at: Set(None),
            ..Default::default()
        }
        .insert(&transaction)
        .await
        .map_err(|error| {
            StoreError::on_unique_violation(error, |_| "registration token already exists".into())
        })?;
        transaction.commit().await?;
        Ok(row.into())
    }

    /// The scope's registration tokens, newest first.
    pub async fn list_registration_tokens(
        &self,
        scope: &TenantScope,
        page: PageRequest,
    ) -> Result<Page<RegistrationToken>, StoreError> {
        let mut query = registration_token::Entity::find()
            .filter(registration_token::Column::CustomerId.eq(scope.customer_id().get()));
        if let Some(before) = page.after {
            query = query.filter(registration_token::Column::Id.lt(before));
        }
        let rows = query
            .order_by_desc(registration_token::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        Ok(Page::from_rows(rows, page, |row| row.id).map(RegistrationToken::from))
    }

    /// Revokes one of the scope's registration tokens; revoking twice changes nothing.
    pub async fn revoke_registration_token(
        &self,
        scope: &TenantScope,
        token_id: RegistrationTokenId,
    ) -> Result<RegistrationToken, StoreError> {
        let transaction = self.begin_write().await?;
        let current = registration_token::Entity::find_by_id(token_id.get())
            .filter(registration_token::Column::CustomerId.eq(scope.customer_id().get()))
            .one(&transaction)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("registration token {token_id} not found"))
            })?;
        if current.revoked_at.is_some() {
            return Ok(current.into());
        }
        let mut row: registration_token::ActiveModel = current.into();
        row.revoked_at = Set(Some(now()));
        let updated = row.update(&transaction).await?;
        transaction.commit().await?;
        Ok(updated.into())
    }
}
