//! Artifacts over AgentService: an agent uploading one of its running execution's artifacts, and
//! fetching the artifacts a deploy it runs ships.

use cygnet_proto::v1 as pb;
use tonic::{Request, Response, Status, Streaming};

use super::agent_stream::client_certificate_cn;
use super::agents::AgentApi;
use super::status;
use crate::artifacts::ArtifactStore;
use crate::domain::execution::NewArtifact;
use crate::domain::{ExecutionId, ValidationError};

/// Bytes per FetchArtifact message.
const FETCH_CHUNK: usize = 256 * 1024;

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
    let header = NewArtifact::try_from(&header)?;
    let execution_id = header.execution_id;
    api.context
        .store
        .check_artifact_upload(&agent, &header)
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
        .create_artifact(&agent, &header, &key)
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
