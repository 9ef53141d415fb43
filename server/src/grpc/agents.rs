//! `cygnet.v1.AgentService`, operator side: registration tokens and agents.

use std::sync::Arc;

use cygnet_proto::v1::{self as pb, agent_service_server::AgentService};
use tonic::{Request, Response, Status};

use super::ApiContext;
use crate::agents::{AgentHub, AgentSessions, WorkSettings};
use crate::artifacts::ArtifactStore;
use crate::audit;
use crate::auth::{Action, token};
use crate::domain::agent::labels;
use crate::domain::{
    Agent, AgentFilter, AgentId, AgentPatch, AgentStatus, CustomerId, NewRegistrationToken,
    PageRequest, RegistrationTokenId,
};
use crate::service::Operations;
use crate::store::now;
use crate::wire::agent::parse_status_filter;
use crate::wire::common as convert;

/// Prefix of registration token secrets.
pub const REGISTRATION_TOKEN_PREFIX: &str = "cygr_";
/// Prefix of re-enrolment token secrets.
pub const REENROLMENT_TOKEN_PREFIX: &str = "cyge_";
/// Most samples one GetAgentMetrics returns.
const MAX_METRIC_SAMPLES: u64 = 10_000;

/// Overlays what this server knows live about a connected agent: it is online, and its figures
/// are the ones just received (the database copy is up to one heartbeat interval older).
pub(super) fn overlay_live(hub: &AgentHub, agent: &mut Agent) {
    if !hub.is_connected(agent.id) {
        return;
    }
    agent.status = AgentStatus::Online;
    if let Some((figures, at)) = hub.latest(agent.id) {
        agent.latest = Some((figures, at));
        agent.last_seen_at = Some(agent.last_seen_at.map_or(at, |seen| seen.max(at)));
    }
}

/// Handler of `AgentService`. The agent side (RegisterAgent, Connect) is in `agent_stream.rs`.
#[derive(Clone)]
pub struct AgentApi {
    pub(super) context: ApiContext,
    pub(super) hub: Arc<AgentHub>,
    pub(super) operations: Operations,
    pub(super) artifacts: ArtifactStore,
    /// Agents' sessions on their Connect streams.
    pub(super) sessions: AgentSessions,
}

impl AgentApi {
    pub fn new(
        context: ApiContext,
        hub: Arc<AgentHub>,
        operations: Operations,
        artifacts: ArtifactStore,
        sessions: AgentSessions,
    ) -> Self {
        Self {
            context,
            hub,
            operations,
            artifacts,
            sessions,
        }
    }
}

/// The server → agent stream of FetchArtifact.
pub type FetchStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::FetchArtifactResponse, Status>> + Send>,
>;

#[tonic::async_trait]
impl AgentService for AgentApi {
    type ConnectStream = super::agent_stream::ConnectStream;
    type FetchArtifactStream = FetchStream;

    async fn fetch_artifact(
        &self,
        request: Request<pb::FetchArtifactRequest>,
    ) -> Result<Response<Self::FetchArtifactStream>, Status> {
        super::agent_jobs::fetch_artifact(self, request).await
    }

    async fn register_agent(
        &self,
        request: Request<pb::RegisterAgentRequest>,
    ) -> Result<Response<pb::RegisterAgentResponse>, Status> {
        super::agent_stream::register_agent(self, request).await
    }

    async fn connect(
        &self,
        request: Request<tonic::Streaming<pb::ConnectRequest>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        super::agent_stream::connect(self, request).await
    }

    async fn upload_artifact(
        &self,
        request: Request<tonic::Streaming<pb::UploadArtifactRequest>>,
    ) -> Result<Response<pb::UploadArtifactResponse>, Status> {
        super::agent_jobs::upload_artifact(self, request).await
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn create_registration_token(
        &self,
        request: Request<pb::CreateRegistrationTokenRequest>,
    ) -> Result<Response<pb::CreateRegistrationTokenResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let customer_id = CustomerId::parse(body.customer_id, "customer_id")?;
        let new = NewRegistrationToken::try_from(body)?;
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::ManageAgents)
            .await?;
        let secret = token::generate(REGISTRATION_TOKEN_PREFIX);
        let created = self
            .context
            .store
            .create_registration_token(&scope, new, &secret)
            .await?;
        audit::note_resource("registration_token", created.id.get());
        tracing::info!(token_id = created.id.get(), "registration token created");
        Ok(Response::new(pb::CreateRegistrationTokenResponse {
            token: Some(created.into()),
            secret: secret.secret,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_registration_tokens(
        &self,
        request: Request<pb::ListRegistrationTokensRequest>,
    ) -> Result<Response<pb::ListRegistrationTokensResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let customer_id = CustomerId::parse(body.customer_id, "customer_id")?;
        let page = PageRequest::parse(body.page_size, &body.page_token)?;
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::ReadAgents)
            .await?;
        let page = self
            .context
            .store
            .list_registration_tokens(&scope, page)
            .await?;
        Ok(Response::new(pb::ListRegistrationTokensResponse {
            tokens: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn revoke_registration_token(
        &self,
        request: Request<pb::RevokeRegistrationTokenRequest>,
    ) -> Result<Response<pb::RevokeRegistrationTokenResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let customer_id = CustomerId::parse(body.customer_id, "customer_id")?;
        let token_id = RegistrationTokenId::parse(body.token_id, "token_id")?;
        audit::note_resource("registration_token", token_id.get());
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::RetireAgents)
            .await?;
        let revoked = self
            .context
            .store
            .revoke_registration_token(&scope, token_id)
            .await?;
        tracing::info!(token_id = token_id.get(), "registration token revoked");
        Ok(Response::new(pb::RevokeRegistrationTokenResponse {
            token: Some(revoked.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let customer_id = CustomerId::parse(body.customer_id, "customer_id")?;
        let page = PageRequest::parse(body.page_size, &body.page_token)?;
        let filter = AgentFilter {
            status: parse_status_filter(body.status)?,
            labels: labels("labels", &body.labels)?,
        };
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::ReadAgents)
            .await?;
        let page = self
            .context
            .store
            .list_agents(&scope, &filter, page, self.sessions.online_cutoff())
            .await?;
        Ok(Response::new(pb::ListAgentsResponse {
            agents: page
                .items
                .into_iter()
                .map(|mut agent| {
                    overlay_live(&self.hub, &mut agent);
                    agent.into()
                })
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::GetAgentResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let customer_id = CustomerId::parse(body.customer_id, "customer_id")?;
        let agent_id = AgentId::parse(body.agent_id, "agent_id")?;
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::ReadAgents)
            .await?;
        let mut agent = self
            .context
            .store
            .get_agent(&scope, agent_id, self.sessions.online_cutoff())
            .await?;
        overlay_live(&self.hub, &mut agent);
        Ok(Response::new(pb::GetAgentResponse {
            agent: Some(agent.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn update_agent(
        &self,
        request: Request<pb::UpdateAgentRequest>,
    ) -> Result<Response<pb::UpdateAgentResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let customer_id = CustomerId::parse(body.customer_id, "customer_id")?;
        let agent_id = AgentId::parse(body.agent_id, "agent_id")?;
        audit::note_resource("agent", agent_id.get());
        let patch = AgentPatch::try_from(body)?;
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::ManageAgents)
            .await?;
        let mut agent = self
            .context
            .store
            .update_agent(&scope, agent_id, patch, self.sessions.online_cutoff())
            .await?;
        self.hub.update_settings(
            agent_id,
            WorkSettings {
                labels: agent.labels.clone(),
                enabled: agent.enabled,
                max_concurrent_jobs: usize::try_from(agent.max_concurrent_jobs).unwrap_or(1),
            },
        );
        // A re-enabled or larger agent may take queued work now.
        self.operations.wake_dispatch();
        overlay_live(&self.hub, &mut agent);
        Ok(Response::new(pb::UpdateAgentResponse {
            agent: Some(agent.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn delete_agent(
        &self,
        request: Request<pb::DeleteAgentRequest>,
    ) -> Result<Response<pb::DeleteAgentResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let customer_id = CustomerId::parse(body.customer_id, "customer_id")?;
        let agent_id = AgentId::parse(body.agent_id, "agent_id")?;
        audit::note_resource("agent", agent_id.get());
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::RetireAgents)
            .await?;
        self.context.store.delete_agent(&scope, agent_id).await?;
        self.hub
            .disconnect(agent_id, super::status::agent_deleted());
        tracing::info!(agent_id = agent_id.get(), "agent deleted");
        Ok(Response::new(pb::DeleteAgentResponse {}))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn issue_reenrolment_token(
        &self,
        request: Request<pb::IssueReenrolmentTokenRequest>,
    ) -> Result<Response<pb::IssueReenrolmentTokenResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let agent_id = AgentId::parse(body.agent_id, "agent_id")?;
        audit::note_resource("agent", agent_id.get());
        let scope = self
            .context
            .authorize(&principal, body.customer_id, Action::ManageAgents)
            .await?;
        let secret = token::generate(REENROLMENT_TOKEN_PREFIX);
        let expires_at = self
            .context
            .store
            .issue_reenrolment_token(&scope, agent_id, &secret.hash)
            .await?;
        tracing::info!(agent_id = agent_id.get(), "re-enrolment token issued");
        Ok(Response::new(pb::IssueReenrolmentTokenResponse {
            secret: secret.secret,
            expires_at: convert::timestamp(expires_at),
        }))
    }

    #[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id))]
    async fn get_agent_metrics(
        &self,
        request: Request<pb::GetAgentMetricsRequest>,
    ) -> Result<Response<pb::GetAgentMetricsResponse>, Status> {
        let principal = self
            .context
            .authenticator
            .authenticate(request.metadata())
            .await?;
        let body = request.get_ref();
        let customer_id = CustomerId::parse(body.customer_id, "customer_id")?;
        let agent_id = AgentId::parse(body.agent_id, "agent_id")?;
        let (start, end) = convert::time_range(
            body.start_time.as_ref(),
            body.end_time.as_ref(),
            now(),
            chrono::Duration::hours(1),
        )?;
        let scope = self
            .context
            .authorizer
            .scope(&principal, customer_id, Action::ReadAgents)
            .await?;
        let (samples, truncated) = self
            .context
            .store
            .agent_samples(&scope, agent_id, start, end, MAX_METRIC_SAMPLES)
            .await?;
        Ok(Response::new(pb::GetAgentMetricsResponse {
            samples: samples
                .into_iter()
                .map(|(figures, at)| convert::sample(figures, at))
                .collect(),
            truncated,
            sample_interval_seconds: i32::try_from(
                self.context.agent_settings.sample_interval.as_secs(),
            )
            .unwrap_or(i32::MAX),
        }))
    }
}
