//! Authentication (bearer token → [`Principal`]) and authorization ([`Principal`] + customer id +
//! [`Action`] → [`TenantScope`]).
//!
//! A [`TenantScope`] or [`PlatformAdmin`] can only be made here, after the checks; the store's
//! methods over tenant data take one, so every tenant query is filtered by construction.

mod agent;
mod authenticate;
mod authorize;
mod error;
mod permissions;
mod scope;
pub mod token;

pub use agent::{
    AGENT_CREDENTIAL_PREFIX, AGENT_UUID_METADATA, AgentAuthenticator, AuthenticatedAgent,
    certificate_common_name,
};
pub use authenticate::{Authenticator, Principal};
pub use authorize::Authorizer;
pub use error::AuthError;
pub use permissions::{Action, require, require_stage_approver};
pub use scope::{PlatformAdmin, SystemActor, SystemScope, TenantScope};

/// Mints the scope a background task of the server acts with. Called where the server wires its
/// tasks together (`app.rs`), never by a request handler: a request always acts for a caller.
pub(crate) fn system_scope(actor: SystemActor) -> SystemScope {
    SystemScope::new(actor)
}
