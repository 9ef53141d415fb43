//! Thin gRPC handlers: authenticate → validate → authorize → store → convert.
//!
//! Handlers never touch sea-orm; errors of every layer become a `tonic::Status` in `status.rs`
//! only.

mod agent_jobs;
mod agent_stream;
mod agents;
mod artifact_stream;
mod customers;
mod execution_watch;
mod monitors;
mod pipelines;
mod quotas;
mod releases;
mod schedules;
pub(crate) mod status;
mod users;
mod variables;
mod watch;
mod webhooks;

pub use agents::AgentApi;
pub use customers::CustomerApi;
pub use monitors::MonitorApi;
pub use pipelines::PipelineApi;
pub use releases::ReleaseApi;
pub(crate) use status::rate_limited;
pub use users::UserApi;
pub use variables::VariableApi;

use crate::auth::{Action, AgentAuthenticator, Authenticator, Authorizer, Principal, TenantScope};
use crate::config::AgentSettings;
use crate::store::Store;

/// What every handler needs; cheap to clone.
#[derive(Clone)]
pub struct ApiContext {
    pub store: Store,
    pub authenticator: Authenticator,
    pub authorizer: Authorizer,
    pub agent_authenticator: AgentAuthenticator,
    pub agent_settings: AgentSettings,
    pub metrics: std::sync::Arc<crate::metrics::ServerMetrics>,
    /// Watch streams open on this server, counted against each caller's quota.
    watches: std::sync::Arc<watch::OpenWatches>,
    /// What the watchers of one execution read, shared among them.
    shared_reads: execution_watch::SharedReads,
}

impl ApiContext {
    /// `require_client_certificates`: the server verifies client certificates (mTLS), so agents
    /// must present one whose CN is their uuid.
    pub fn new(
        store: Store,
        agent_settings: AgentSettings,
        require_client_certificates: bool,
        metrics: std::sync::Arc<crate::metrics::ServerMetrics>,
    ) -> Self {
        Self {
            metrics,
            authenticator: Authenticator::new(store.clone()),
            authorizer: Authorizer::new(store.clone()),
            agent_authenticator: AgentAuthenticator::new(
                store.clone(),
                require_client_certificates,
            ),
            agent_settings,
            shared_reads: execution_watch::SharedReads::new(store.clone()),
            store,
            watches: Default::default(),
        }
    }

    /// Counts a new Watch stream of the scope's caller against the customer's
    /// `watch_streams_per_caller` quota (RESOURCE_EXHAUSTED past it); the ticket frees it.
    async fn open_watch(&self, scope: &TenantScope) -> Result<watch::WatchTicket, tonic::Status> {
        let limit = self
            .store
            .quota_limit(scope, crate::domain::Quota::WatchStreamsPerCaller)
            .await?;
        self.watches.admit(scope, limit).map_err(|exceeded| {
            let status = tonic::Status::from(exceeded.clone());
            let store = self.store.clone();
            tokio::spawn(async move { store.notice_quota(&exceeded).await });
            status
        })
    }
}

impl ApiContext {
    /// Authenticates the caller and authorizes `action` in the customer named by the request
    /// field `customer_id`.
    pub async fn scope(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        customer_id: i64,
        action: Action,
    ) -> Result<TenantScope, tonic::Status> {
        let principal = self.authenticator.authenticate(metadata).await?;
        self.authorize(&principal, customer_id, action).await
    }

    /// Authorizes `action` for a caller authenticated already: for handlers that check the
    /// request between the two, so that a caller without a valid token learns nothing from
    /// the request's fields (UNAUTHENTICATED comes first, whatever it sent).
    pub async fn authorize(
        &self,
        principal: &Principal,
        customer_id: i64,
        action: Action,
    ) -> Result<TenantScope, tonic::Status> {
        let customer_id = crate::domain::CustomerId::parse(customer_id, "customer_id")?;
        Ok(self
            .authorizer
            .scope(principal, customer_id, action)
            .await?)
    }
}
