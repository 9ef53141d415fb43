//! What agents report about their jobs, and their artifact uploads.

use cygnet_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::agent_stream::client_certificate_cn;
use super::agents::AgentApi;
use super::pipeline_convert::job_event_from_pb;
use super::status;
use crate::artifacts::{ArtifactStore, MAX_ARTIFACT_BYTES};
use crate::auth::AuthenticatedAgent;
use crate::domain::{ExecutionId, ValidationError};

/// Bytes per FetchArtifact message.
const FETCH_CHUNK: usize = 256 * 1024;

fn acknowledge(
    commands: &mpsc::Sender<Result<pb::ConnectResponse, Status>>,
    execution_id: i64,
    sequence: i64,
) {
    // Acknowledgements are cumulative: if the buffer is full, a later one covers this one.
    let _ = commands.try_send(Ok(pb::ConnectResponse {
        command: Some(pb::connect_response::Command::EventAck(pb::EventAck {
            execution_id,
            sequence,
        })),
    }));
}

/// Stores job events the agent sent together (one transaction), acknowledges each, and acts on
/// the executions that finished.
pub(super) async fn apply_job_events(
    api: &AgentApi,
    agent: &AuthenticatedAgent,
    commands: &mpsc::Sender<Result<pb::ConnectResponse, Status>>,
    events: Vec<pb::JobEvent>,
) {
    let mut inputs = Vec::with_capacity(events.len());
    for event in events {
        match job_event_from_pb(event) {
            Ok(input) => inputs.push(input),
            Err(error) => {
                tracing::warn!(agent_id = agent.agent_id().get(), %error, "malformed job event ignored");
            }
        }
    }
    if inputs.is_empty() {
        return;
    }
    let execution_ids: Vec<ExecutionId> = inputs.iter().map(|input| input.execution_id).collect();
    let outcomes = match api.context.store.apply_job_events(agent, inputs).await {
        Ok(outcomes) => outcomes,
        Err(error) => {
            // Not acknowledged: the agent keeps the events. Ending the stream makes it reconnect
            // and send them again, instead of the job waiting for an acknowledgement forever.
            tracing::warn!(%error, events = execution_ids.len(), "could not store job events; asking the agent to resend");
            api.hub
                .disconnect(agent.agent_id(), status::job_events_not_stored());
            return;
        }
    };
    for (outcome, execution_id) in outcomes.into_iter().zip(execution_ids) {
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                // Not this agent's execution: nothing is stored; the acknowledgement lets the
                // agent drop it instead of sending it forever.
                tracing::warn!(agent_id = agent.agent_id().get(), execution_id = execution_id.get(), %error, "job event for a foreign execution refused");
                acknowledge(commands, execution_id.get(), i64::MAX);
                continue;
            }
        };
        acknowledge(commands, execution_id.get(), outcome.acknowledged);
        if let Some(status) = outcome.finished {
            tracing::info!(
                execution_id = execution_id.get(),
                agent_id = agent.agent_id().get(),
                status = status.as_str(),
                "execution finished"
            );
            api.operations
                .execution_ended(execution_id, Some(agent.agent_id()))
                .await;
        } else if outcome.stored {
            api.operations.execution_changed(execution_id);
        }
    }
}

fn validate_header(header: &pb::ArtifactHeader) -> Result<ExecutionId, ValidationError> {
    let execution_id = ExecutionId::parse(header.execution_id, "header.execution_id")?;
    if header.step_index < 0 {
        return Err(ValidationError::new(
            "header.step_index",
            "must not be negative",
        ));
    }
    let escapes = header.path.starts_with('/')
        || header
            .path
            .split(['/', '\\'])
            .any(|part| part == ".." || part.is_empty())
        || header.path.contains('\0');
    if header.path.is_empty() || header.path.len() > 1024 || escapes {
        return Err(ValidationError::new(
            "header.path",
            "must be a relative path inside the workspace, without '..'",
        ));
    }
    if !(0..=MAX_ARTIFACT_BYTES).contains(&header.size_bytes) {
        return Err(ValidationError::new(
            "header.size_bytes",
            format!("must be between 0 and {MAX_ARTIFACT_BYTES}"),
        ));
    }
    let hex = header.sha256.len() == 64
        && header
            .sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex {
        return Err(ValidationError::new(
            "header.sha256",
            "must be 64 lowercase hex digits",
        ));
    }
    Ok(execution_id)
}

/// Stores an artifact of a running execution of the uploading agent.
pub(super) async fn upload_artifact(
    api: &AgentApi,
    request: Request<Streaming<pb::UploadArtifactRequest>>,
) -> Result<Response<pb::UploadArtifactResponse>, Status> {
    let certificate_cn = client_certificate_cn(&request);
    let agent = api
        .context
        .agent_authenticator
        .authenticate(request.metadata(), certificate_cn.as_deref())
        .await?;
    let mut parts = request.into_inner();
    let header = match parts.message().await? {
        Some(pb::UploadArtifactRequest {
            part: Some(pb::upload_artifact_request::Part::Header(header)),
        }) => header,
        _ => return Err(ValidationError::new("header", "must be the first message").into()),
    };
    let execution_id = validate_header(&header)?;
    api.context
        .store
        .check_artifact_upload(&agent, execution_id)
        .await?;
    let key = ArtifactStore::new_key(agent.customer_id(), execution_id);
    let mut writer = api
        .artifacts
        .begin(&key, header.size_bytes, &header.sha256)
        .await?;
    while let Some(part) = parts.message().await? {
        match part.part {
            Some(pb::upload_artifact_request::Part::Data(data)) => writer.write(&data).await?,
            _ => return Err(ValidationError::new("header", "must be sent only once").into()),
        }
    }
    writer.finish().await?;
    let stored = api
        .context
        .store
        .create_artifact(&agent, execution_id, &header, &key)
        .await;
    match stored {
        Ok(artifact) => {
            tracing::info!(execution_id = execution_id.get(), path = %artifact.path, size = artifact.size_bytes, "artifact stored");
            Ok(Response::new(pb::UploadArtifactResponse {
                artifact: Some(artifact.into()),
            }))
        }
        Err(error) => {
            api.artifacts.remove(&key).await;
            Err(error.into())
        }
    }
}

/// Streams an artifact shipped by a release to the agent running the deploy.
pub(super) async fn fetch_artifact(
    api: &AgentApi,
    request: Request<pb::FetchArtifactRequest>,
) -> Result<Response<super::agents::FetchStream>, Status> {
    let certificate_cn = client_certificate_cn(&request);
    let agent = api
        .context
        .agent_authenticator
        .authenticate(request.metadata(), certificate_cn.as_deref())
        .await?;
    let body = request.get_ref();
    let execution_id = ExecutionId::parse(body.execution_id, "execution_id")?;
    if body.artifact_id <= 0 {
        return Err(ValidationError::new("artifact_id", "must be a positive id").into());
    }
    let artifact = api
        .context
        .store
        .artifact_for_deploy(&agent, execution_id, body.artifact_id)
        .await?;
    let file = api
        .artifacts
        .open(&artifact.storage_key)
        .await
        .map_err(|error| status::artifact_missing(artifact.id, error))?;
    let messages = super::artifact_stream::chunks(file, FETCH_CHUNK, |data| {
        data.map(|data| pb::FetchArtifactResponse { data })
    });
    Ok(Response::new(Box::pin(messages)))
}
