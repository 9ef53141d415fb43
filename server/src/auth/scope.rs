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

/// Which of the server's own tasks acts with a [`SystemScope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemActor {
    /// Start-up work before serving (re-sealing secrets after a key rotation).
    Startup,
    /// The dispatch loop: the queue, claims, leases, deliveries, release moves.
    Dispatcher,
    /// Agent streams and the liveness task: heartbeats, online and offline.
    AgentLiveness,
    /// Monitor placement and check results.
    Monitors,
    /// The activity feed's tail of every customer's events.
    ActivityFeed,
    /// The metrics endpoint.
    Observability,
    /// Retention, usage readings and the folding of execution counts.
    Housekeeping,
    /// Pipeline schedules' ticks.
    Scheduler,
    /// Receives webhook deliveries and queues their runs.
    Webhooks,
}

impl SystemActor {
    /// How the actor appears in logs and the audit log (`system:<name>`).
    pub fn name(self) -> &'static str {
        match self {
            SystemActor::Startup => "system:startup",
            SystemActor::Dispatcher => "system:dispatcher",
            SystemActor::AgentLiveness => "system:agent-liveness",
            SystemActor::Monitors => "system:monitors",
            SystemActor::ActivityFeed => "system:activity-feed",
            SystemActor::Observability => "system:observability",
            SystemActor::Housekeeping => "system:housekeeping",
            SystemActor::Scheduler => "system:scheduler",
            SystemActor::Webhooks => "system:webhooks",
        }
    }
}

/// Proof that the caller is one of the server's own background tasks, which act across
/// customers (the queue of every customer, every agent's lease). Only `auth/` mints it, and only
/// for a named [`SystemActor`]; the store's cross-customer operations are reachable only
/// through [`Store::system`](crate::store::Store::system), which takes one. Changes a background
/// task makes to a customer's work are audited as `system`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemScope {
    actor: SystemActor,
}

impl SystemScope {
    pub(super) fn new(actor: SystemActor) -> Self {
        Self { actor }
    }

    /// The task acting.
    pub fn actor(&self) -> SystemActor {
        self.actor
    }
}
