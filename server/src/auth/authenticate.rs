//! Bearer token → [`Principal`].

use std::time::Duration;

use tonic::metadata::MetadataMap;

use super::{AuthError, PlatformAdmin, token};
use crate::domain::{TokenId, UserId};
use crate::store::{Store, now};

/// How stale `last_used_at` / `last_seen_at` may get before a request refreshes them; keeps
/// authentication free of a database write on almost every request.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub username: String,
    pub is_superuser: bool,
    /// The token the request came with (a token minted by it becomes its child).
    pub token_id: TokenId,
}

impl Principal {
    /// The proof needed for platform-wide changes, or PERMISSION_DENIED naming what was tried.
    pub fn require_platform_admin(&self, what: &str) -> Result<PlatformAdmin, AuthError> {
        if self.is_superuser {
            Ok(PlatformAdmin::new(self.user_id))
        } else {
            Err(AuthError::PermissionDenied(format!(
                "only platform administrators may {what}"
            )))
        }
    }
}

/// Turns the `authorization` metadata of a request into a [`Principal`].
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
}

impl Authenticator {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Authenticates `authorization: Bearer <token>`. Every failure is UNAUTHENTICATED.
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<Principal, AuthError> {
        let secret = bearer_secret(metadata)?;
        Ok(self.authenticate_secret(secret).await?.0)
    }

    /// Authenticates a token's secret, also returning the token's id (web sign-in makes its
    /// session a child of it).
    pub async fn authenticate_secret(
        &self,
        secret: &str,
    ) -> Result<(Principal, TokenId), AuthError> {
        let presented_hash = token::hash(secret);
        let found = self
            .store
            .find_token_by_hash(&presented_hash)
            .await?
            .ok_or_else(|| AuthError::Unauthenticated("token is not valid".into()))?;
        if !token::hashes_equal(&found.token_hash, &presented_hash) {
            return Err(AuthError::Unauthenticated("token is not valid".into()));
        }
        let now = now();
        if found.revoked_at.is_some() {
            return Err(AuthError::Unauthenticated("token has been revoked".into()));
        }
        if found.expires_at.is_some_and(|expires_at| expires_at <= now) {
            return Err(AuthError::Unauthenticated("token has expired".into()));
        }
        if !found.user.is_active {
            return Err(AuthError::Unauthenticated("user is deactivated".into()));
        }
        let stale = |at: Option<chrono::DateTime<chrono::Utc>>| {
            at.is_none_or(|at| (now - at).to_std().unwrap_or_default() >= TOUCH_INTERVAL)
        };
        if stale(found.last_used_at) || stale(found.user.last_seen_at) {
            let store = self.store.clone();
            let (token_id, user_id) = (found.token_id, found.user.id);
            // Bookkeeping only: the request does not wait for it, and a failure is just logged.
            tokio::spawn(async move {
                if let Err(error) = store.touch_token(token_id, user_id, now).await {
                    tracing::warn!(%error, token_id = token_id.get(), "could not record token use");
                }
            });
        }
        crate::audit::note_actor(found.user.id, &found.user.username);
        let principal = Principal {
            user_id: found.user.id,
            username: found.user.username,
            is_superuser: found.user.is_superuser,
            token_id: found.token_id,
        };
        Ok((principal, found.token_id))
    }
}

pub(super) fn bearer_secret(metadata: &MetadataMap) -> Result<&str, AuthError> {
    let value = metadata
        .get("authorization")
        .ok_or_else(|| {
            AuthError::Unauthenticated(
                "missing authorization metadata: send 'authorization: Bearer <token>'".into(),
            )
        })?
        .to_str()
        .map_err(|_| AuthError::Unauthenticated("authorization metadata is not ASCII".into()))?;
    let (scheme, secret) = value.trim().split_once(' ').ok_or_else(|| {
        AuthError::Unauthenticated("authorization must be 'Bearer <token>'".into())
    })?;
    let secret = secret.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || secret.is_empty() {
        return Err(AuthError::Unauthenticated(
            "authorization must be 'Bearer <token>'".into(),
        ));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert("authorization", value.parse().expect("ascii"));
        map
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_secret(&metadata("Bearer abc")).expect("ok"), "abc");
        assert_eq!(bearer_secret(&metadata("bearer  abc ")).expect("ok"), "abc");
        assert!(bearer_secret(&metadata("Basic abc")).is_err());
        assert!(bearer_secret(&metadata("Bearer")).is_err());
        assert!(bearer_secret(&MetadataMap::new()).is_err());
    }
}
