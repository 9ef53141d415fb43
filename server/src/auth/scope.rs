//! Proofs of authorization, constructible only inside `auth/`.

use crate::domain::{CustomerId, Role, UserId};

/// Proof that the caller may act inside one customer with a given role. Store methods over
/// tenant data take this and filter by [`TenantScope::customer_id`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope {
    customer_id: CustomerId,
    actor: UserId,
    role: Role,
    platform_admin: bool,
}

impl TenantScope {
    pub(super) fn new(
        customer_id: CustomerId,
        actor: UserId,
        role: Role,
        platform_admin: bool,
    ) -> Self {
        Self {
            customer_id,
            actor,
            role,
            platform_admin,
        }
    }

    /// The customer every query made with this scope is limited to.
    pub fn customer_id(&self) -> CustomerId {
        self.customer_id
    }

    /// The user acting.
    pub fn actor(&self) -> UserId {
        self.actor
    }

    /// The actor's effective role: their membership's, or `admin` for a platform administrator.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the scope was granted because the actor is a platform administrator.
    pub fn is_platform_admin(&self) -> bool {
        self.platform_admin
    }

    /// A scope for the test suite of the store, which has no server to authorize with.
    #[cfg(test)]
    pub fn for_tests(customer_id: CustomerId, actor: UserId, role: Role) -> Self {
        Self::new(customer_id, actor, role, false)
    }
}

/// Proof that the caller is a platform administrator; needed to create customers and users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformAdmin {
    actor: UserId,
}

impl PlatformAdmin {
    pub(super) fn new(actor: UserId) -> Self {
        Self { actor }
    }

    /// The administrator acting.
    pub fn actor(&self) -> UserId {
        self.actor
    }
}
