//! Registration tokens: the secrets build hosts register with.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entities::registration_token;
use super::{Store, StoreError, now};
use crate::auth::TenantScope;
use crate::auth::token::GeneratedSecret;
use crate::domain::{
    CustomerId, NewRegistrationToken, Page, PageRequest, RegistrationToken, RegistrationTokenId,
    UserId,
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

impl Store {
    /// Stores a registration token for the scope's customer.
    pub async fn create_registration_token(
        &self,
        scope: &TenantScope,
        new: NewRegistrationToken,
        secret: &GeneratedSecret,
    ) -> Result<RegistrationToken, StoreError> {
        let row = registration_token::ActiveModel {
            customer_id: Set(scope.customer_id().get()),
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
        .insert(&self.writer)
        .await
        .map_err(|error| {
            StoreError::on_unique_violation(error, |_| "registration token already exists".into())
        })?;
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
