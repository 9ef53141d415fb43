//! The agent side of `AgentService`: RegisterAgent and the Connect stream.

use std::pin::Pin;

use cygnet_proto::v1 as pb;
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::agents::AgentApi;
use crate::auth::{AGENT_CREDENTIAL_PREFIX, certificate_common_name, token};
use crate::domain::{AgentRegistration, ValidationError};
use crate::store::PresentedHashes;

/// The server → agent half of a Connect stream.
pub type ConnectStream = Pin<Box<dyn Stream<Item = Result<pb::ConnectResponse, Status>> + Send>>;

/// The CN of the client certificate the request came with, if any.
pub(super) fn client_certificate_cn<T>(request: &Request<T>) -> Option<String> {
    let certificates = request.peer_certs()?;
    certificates
        .first()
        .and_then(|leaf| certificate_common_name(leaf.as_ref()))
}

/// The hash of an optional secret field of RegisterAgent; empty means not presented.
fn optional_secret_hash(secret: &str, field: &str) -> Result<Option<String>, ValidationError> {
    if secret.is_empty() {
        return Ok(None);
    }
    if secret.len() > 256 {
        return Err(ValidationError::new(
            field,
            "must be at most 256 characters",
        ));
    }
    Ok(Some(token::hash(secret)))
}

#[tracing::instrument(skip_all, fields(customer_id = request.get_ref().customer_id, uuid = %request.get_ref().uuid))]
pub(super) async fn register_agent(
    api: &AgentApi,
    request: Request<pb::RegisterAgentRequest>,
) -> Result<Response<pb::RegisterAgentResponse>, Status> {
    let body = request.get_ref();
    let registration = AgentRegistration::try_from(body)?;
    if body.registration_token.is_empty() {
        return Err(ValidationError::new("registration_token", "is required").into());
    }
    if body.registration_token.len() > 256 {
        return Err(
            ValidationError::new("registration_token", "must be at most 256 characters").into(),
        );
    }
    let presented = PresentedHashes {
        current_credential_hash: optional_secret_hash(
            &body.current_credential,
            "current_credential",
        )?,
        reenrolment_token_hash: optional_secret_hash(&body.reenrolment_token, "reenrolment_token")?,
    };
    api.context.agent_authenticator.check_client_certificate(
        client_certificate_cn(&request).as_deref(),
        &registration.uuid,
    )?;
    let credential = token::generate(AGENT_CREDENTIAL_PREFIX);
    let customer_id = registration.customer_id;
    let registered = api
        .context
        .store
        .register_agent(
            registration,
            &token::hash(&body.registration_token),
            &presented,
            &credential.hash,
        )
        .await?;
    // The registration token proved the customer: its admins see the registration.
    crate::audit::note_customer(customer_id);
    crate::audit::note_resource("agent", registered.agent_id.get());
    // A re-registration replaced the credential: a stream still open with the old one ends.
    if !registered.created {
        api.hub
            .disconnect(registered.agent_id, super::status::agent_registered_again());
    }
    tracing::info!(
        agent_id = registered.agent_id.get(),
        created = registered.created,
        "agent registered"
    );
    Ok(Response::new(pb::RegisterAgentResponse {
        agent_id: registered.agent_id.get(),
        credential: credential.secret,
        heartbeat_interval_seconds: api.sessions.heartbeat_interval_seconds(),
    }))
}

#[tracing::instrument(skip_all)]
pub(super) async fn connect(
    api: &AgentApi,
    request: Request<Streaming<pb::ConnectRequest>>,
) -> Result<Response<ConnectStream>, Status> {
    let certificate_cn = client_certificate_cn(&request);
    let agent = api
        .context
        .agent_authenticator
        .authenticate(request.metadata(), certificate_cn.as_deref())
        .await?;
    let outbound = api.sessions.open(agent, request.into_inner()).await?;
    Ok(Response::new(Box::pin(ReceiverStream::new(outbound).map(
        |command| command.map(|message| *message).map_err(|status| *status),
    ))))
}
