//! API tokens.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, LockType},
};

use super::entities::{api_token, user};
use super::{Store, StoreError, SystemStore, now};
use crate::auth::token::GeneratedSecret;
use crate::domain::{ApiToken, NewApiToken, Page, PageRequest, TokenId, User, UserId};

/// Live API tokens (web sessions included) one user may hold: a bound on what a stolen token
/// can multiply itself into.
pub const MAX_LIVE_TOKENS_PER_USER: u64 = 1000;

/// A stored token with its user, as authentication needs it.
#[derive(Debug, Clone)]
pub struct AuthenticatedToken {
    pub token_id: TokenId,
    pub token_hash: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub user: User,
}

impl Store {
    /// Stores a token for `user_id`, minted with the caller's token `parent`: it expires when
    /// asked or with its parent, whichever is first, and is revoked with its parent (at any
    /// depth, see [`Store::revoke_token`]). The user must exist and be active; the parent must
    /// be live (it is locked, so a revocation racing the mint either comes first and refuses
    /// it, or comes after and revokes the new token too).
    pub(crate) async fn create_token(
        &self,
        user_id: UserId,
        new: NewApiToken,
        secret: &GeneratedSecret,
        parent: TokenId,
    ) -> Result<ApiToken, StoreError> {
        let transaction = self.begin_write().await?;
        let owner = user::Entity::find_by_id(user_id.get())
            .one(&transaction)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {user_id} not found")))?;
        if !owner.is_active {
            return Err(StoreError::FailedPrecondition(format!(
                "user {user_id} is deactivated"
            )));
        }
        let parent_row = live_parent(&transaction, parent).await?;
        let live = api_token::Entity::find()
            .filter(api_token::Column::UserId.eq(user_id.get()))
            .filter(api_token::Column::RevokedAt.is_null())
            .filter(
                sea_orm::Condition::any()
                    .add(api_token::Column::ExpiresAt.is_null())
                    .add(api_token::Column::ExpiresAt.gt(now())),
            )
            .count(&transaction)
            .await?;
        if live >= MAX_LIVE_TOKENS_PER_USER {
            return Err(StoreError::LimitReached(format!(
                "user {user_id} has {live} live API tokens, the most a user may have ({MAX_LIVE_TOKENS_PER_USER}); revoke some first"
            )));
        }
        let expires_at = match (new.expires_at, parent_row.expires_at) {
            (Some(asked), Some(limit)) => Some(asked.min(limit)),
            (asked, limit) => asked.or(limit),
        };
        let token = self
            .insert_token(&transaction, owner.id, new.name, secret, expires_at, parent)
            .await?;
        transaction.commit().await?;
        Ok(token)
    }

    /// Stores a web session token signed in with `parent`, its owner's token: it expires at
    /// `expires_at` or with its parent, whichever is first, and is revoked with its parent.
    pub(crate) async fn create_session_token(
        &self,
        parent: TokenId,
        expires_at: DateTime<Utc>,
        secret: &GeneratedSecret,
    ) -> Result<ApiToken, StoreError> {
        let transaction = self.begin_write().await?;
        let parent_row = live_parent(&transaction, parent).await?;
        let expires_at = parent_row
            .expires_at
            .map_or(expires_at, |parent_expires| parent_expires.min(expires_at));
        let token = self
            .insert_token(
                &transaction,
                parent_row.user_id,
                "web session".into(),
                secret,
                Some(expires_at),
                parent,
            )
            .await?;
        transaction.commit().await?;
        Ok(token)
    }

    async fn insert_token(
        &self,
        db: &DatabaseTransaction,
        user_id: i64,
        name: String,
        secret: &GeneratedSecret,
        expires_at: Option<DateTime<Utc>>,
        parent: TokenId,
    ) -> Result<ApiToken, StoreError> {
        let row = api_token::ActiveModel {
            user_id: Set(user_id),
            name: Set(name),
            token_hash: Set(secret.hash.clone()),
            token_prefix: Set(secret.display_prefix.clone()),
            created_at: Set(now()),
            expires_at: Set(expires_at),
            last_used_at: Set(None),
            revoked_at: Set(None),
            parent_token_id: Set(Some(parent.get())),
            ..Default::default()
        }
        .insert(db)
        .await
        .map_err(|error| {
            StoreError::on_unique_violation(error, |_| "token already exists".into())
        })?;
        Ok(row.into())
    }

    /// A user's tokens, by id, revoked ones included.
    pub(crate) async fn list_tokens(
        &self,
        user_id: UserId,
        page: PageRequest,
    ) -> Result<Page<ApiToken>, StoreError> {
        let mut query =
            api_token::Entity::find().filter(api_token::Column::UserId.eq(user_id.get()));
        if let Some(after) = page.after {
            query = query.filter(api_token::Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(api_token::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        Ok(Page::from_rows(rows, page, |row| row.id).map(ApiToken::from))
    }

    /// Revokes a token. With `owner`, only that user's token is found (another user's is
    /// NOT_FOUND). Revoking a revoked token changes nothing.
    pub(crate) async fn revoke_token(
        &self,
        token_id: TokenId,
        owner: Option<UserId>,
    ) -> Result<ApiToken, StoreError> {
        let not_found = || StoreError::NotFound(format!("token {token_id} not found"));
        let transaction = self.begin_write().await?;
        let current = api_token::Entity::find_by_id(token_id.get())
            .one(&transaction)
            .await?
            .ok_or_else(not_found)?;
        if owner.is_some_and(|owner| owner.get() != current.user_id) {
            return Err(not_found());
        }
        if current.revoked_at.is_some() {
            return Ok(current.into());
        }
        let revoked_at = now();
        let mut row: api_token::ActiveModel = current.into();
        row.revoked_at = Set(Some(revoked_at));
        let updated = row.update(&transaction).await?;
        // Everything minted from it (web sessions, tokens, theirs in turn) ends with it, in
        // one statement however wide or deep the tree (ids only grow down it, so it ends).
        let backend = transaction.get_database_backend();
        let placeholders = match backend {
            DbBackend::Postgres => ("$1", "$2"),
            _ => ("?", "?"),
        };
        let cascade = format!(
            "WITH RECURSIVE minted(id) AS ( \
               SELECT id FROM api_tokens WHERE parent_token_id = {} \
               UNION ALL \
               SELECT api_tokens.id FROM api_tokens JOIN minted ON api_tokens.parent_token_id = minted.id \
             ) \
             UPDATE api_tokens SET revoked_at = {} \
             WHERE revoked_at IS NULL AND id IN (SELECT id FROM minted)",
            placeholders.0, placeholders.1
        );
        transaction
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                backend,
                cascade,
                [token_id.get().into(), revoked_at.into()],
            ))
            .await?;
        transaction.commit().await?;
        self.auth_cache.invalidate();
        Ok(updated.into())
    }

    /// The token with this hash and its user, for authentication (cached briefly, see
    /// `auth_cache`).
    pub(crate) async fn find_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<AuthenticatedToken>, StoreError> {
        self.auth_cache
            .read_through(
                &self.auth_cache.tokens,
                token_hash.to_owned(),
                Option::is_some,
                || self.read_token_by_hash(token_hash),
            )
            .await
    }

    async fn read_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<AuthenticatedToken>, StoreError> {
        let Some(token) = api_token::Entity::find()
            .filter(api_token::Column::TokenHash.eq(token_hash))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let Some(owner) = user::Entity::find_by_id(token.user_id)
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(AuthenticatedToken {
            token_id: TokenId::from_db(token.id),
            token_hash: token.token_hash,
            expires_at: token.expires_at,
            revoked_at: token.revoked_at,
            last_used_at: token.last_used_at,
            user: owner.into(),
        }))
    }

    /// Records that a token was used (and its user seen) at `at`.
    pub(crate) async fn touch_token(
        &self,
        token_id: TokenId,
        user_id: UserId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        api_token::Entity::update_many()
            .col_expr(api_token::Column::LastUsedAt, Expr::value(at))
            .filter(api_token::Column::Id.eq(token_id.get()))
            .exec(&self.writer)
            .await?;
        user::Entity::update_many()
            .col_expr(user::Column::LastSeenAt, Expr::value(at))
            .filter(user::Column::Id.eq(user_id.get()))
            .exec(&self.writer)
            .await?;
        // Bookkeeping only: the cached copy is refreshed, not every entry invalidated.
        self.auth_cache.tokens.forget(|token| {
            token
                .as_ref()
                .is_some_and(|token| token.token_id == token_id)
        });
        Ok(())
    }
}

/// The token a new one is minted with, locked (PostgreSQL) against a concurrent revocation;
/// FAILED_PRECONDITION when it is revoked or expired.
async fn live_parent(
    db: &DatabaseTransaction,
    parent: TokenId,
) -> Result<api_token::Model, StoreError> {
    let mut query = api_token::Entity::find_by_id(parent.get());
    if db.get_database_backend() == DbBackend::Postgres {
        query = query.lock(LockType::Update);
    }
    let row = query
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("token {parent} not found")))?;
    if row.revoked_at.is_some() {
        return Err(StoreError::FailedPrecondition(format!(
            "token {parent} has been revoked"
        )));
    }
    if row.expires_at.is_some_and(|expires_at| expires_at <= now()) {
        return Err(StoreError::FailedPrecondition(format!(
            "token {parent} has expired"
        )));
    }
    Ok(row)
}

impl SystemStore {
    /// Creates the first platform administrator and their token, both or neither. Returns `None`
    /// when any user exists already (another replica may have won the race).
    pub(crate) async fn bootstrap_admin(
        &self,
        secret: &GeneratedSecret,
    ) -> Result<Option<User>, StoreError> {
        let transaction = self.begin_write().await?;
        let existing = user::Entity::find().limit(1).one(&transaction).await?;
        if existing.is_some() {
            return Ok(None);
        }
        let now = now();
        let admin = user::ActiveModel {
            username: Set("admin".into()),
            email: Set("admin@localhost.localdomain".into()),
            full_name: Set("Platform administrator".into()),
            is_active: Set(true),
            is_superuser: Set(true),
            created_at: Set(now),
            last_seen_at: Set(None),
            ..Default::default()
        }
        .insert(&transaction)
        .await;
        let admin = match admin {
            Ok(admin) => admin,
            Err(error) => {
                return match StoreError::on_unique_violation(error, |_| String::new()) {
                    StoreError::AlreadyExists(_) => Ok(None),
                    other => Err(other),
                };
            }
        };
        api_token::ActiveModel {
            user_id: Set(admin.id),
            name: Set("bootstrap".into()),
            token_hash: Set(secret.hash.clone()),
            token_prefix: Set(secret.display_prefix.clone()),
            created_at: Set(now),
            expires_at: Set(None),
            last_used_at: Set(None),
            revoked_at: Set(None),
            ..Default::default()
        }
        .insert(&transaction)
        .await?;
        transaction.commit().await?;
        Ok(Some(admin.into()))
    }
}
