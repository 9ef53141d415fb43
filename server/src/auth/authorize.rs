//! [`Principal`] + customer id + [`Action`] → [`TenantScope`].

use super::{Action, AuthError, Principal, TenantScope};
use crate::domain::{CustomerId, Role, UserId};
use crate::store::Store;

/// Decides whether a principal may act on a customer.
#[derive(Clone)]
pub struct Authorizer {
    store: Store,
}

impl Authorizer {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Grants a scope for `action` on `customer_id`, or refuses with, in this order:
    /// NOT_FOUND (no such customer, or the caller is not a member — indistinguishable),
    /// PERMISSION_DENIED (member without the role), FAILED_PRECONDITION (the action changes
    /// something and the customer is deactivated).
    pub async fn scope(
        &self,
        principal: &Principal,
        customer_id: CustomerId,
        action: Action,
    ) -> Result<TenantScope, AuthError> {
        let not_found = || AuthError::NotFound(format!("customer {customer_id} not found"));
        let access = self
            .store
            .customer_access(customer_id, principal.user_id)
            .await?
            .ok_or_else(not_found)?;
        let role = match (access.role, principal.is_superuser) {
            (_, true) => Role::Admin,
            (Some(role), false) => role,
            (None, false) => return Err(not_found()),
        };
        crate::audit::note_customer(customer_id);
        if !principal.is_superuser && !action.allowed_roles().contains(&role) {
            return Err(AuthError::PermissionDenied(format!(
                "role {role} may not {} customer {customer_id}",
                action.describe()
            )));
        }
        if action.needs_active_customer() && !access.is_active {
            return Err(AuthError::FailedPrecondition(format!(
                "customer {customer_id} is deactivated"
            )));
        }
        Ok(TenantScope::new(
            customer_id,
            principal.user_id,
            role,
            principal.is_superuser,
        ))
    }

    /// Whether the principal may see `user_id`: themselves, a fellow member of one of their
    /// customers, or anyone for a platform administrator.
    pub async fn can_see_user(
        &self,
        principal: &Principal,
        user_id: UserId,
    ) -> Result<bool, AuthError> {
        if principal.is_superuser || principal.user_id == user_id {
            return Ok(true);
        }
        Ok(self
            .store
            .users_share_customer(principal.user_id, user_id)
            .await?)
    }
}
