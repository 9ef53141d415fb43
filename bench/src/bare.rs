//! The baselines: what tonic alone costs on this machine, measured in the same run as the server.
//! A bare stream server holds agent streams (Welcome, then it reads and drops every message) and
//! answers nothing else; a bare unary server answers health checks.

use std::net::SocketAddr;

use cygnet_proto::v1 as pb;
use cygnet_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// Serves the bare stream service on `listener` until `shutdown` completes.
pub async fn serve_streams(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .add_service(AgentServiceServer::new(BareStreams))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// A bare tonic server answering health checks (the framework's unary ceiling), on 127.0.0.1:0;
/// returns a connection to it and its task.
pub async fn unary() -> anyhow::Result<(Channel, tokio::task::JoinHandle<()>)> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address: SocketAddr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    Ok((crate::harness::connect(address).await?, task))
}

struct BareStreams;

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented(
        "the bare stream server only holds streams",
    ))
}

#[tonic::async_trait]
impl AgentService for BareStreams {
    type ConnectStream = ReceiverStream<Result<pb::ConnectResponse, Status>>;
    type FetchArtifactStream = ReceiverStream<Result<pb::FetchArtifactResponse, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<pb::ConnectRequest>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let (sender, receiver) = mpsc::channel(4);
        let welcome = pb::ConnectResponse {
            command: Some(pb::connect_response::Command::Welcome(pb::Welcome {
                agent_id: 1,
                customer_id: 1,
                heartbeat_interval_seconds: 10,
                server_time: None,
            })),
        };
        sender
            .send(Ok(welcome))
            .await
            .map_err(|_| Status::cancelled("gone"))?;
        let mut inbound = request.into_inner();
        tokio::spawn(async move {
            // The stream stays open while the agent's does.
            while let Ok(Some(_)) = inbound.message().await {}
            drop(sender);
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn create_registration_token(
        &self,
        _: Request<pb::CreateRegistrationTokenRequest>,
    ) -> Result<Response<pb::CreateRegistrationTokenResponse>, Status> {
        unimplemented()
    }

    async fn list_registration_tokens(
        &self,
        _: Request<pb::ListRegistrationTokensRequest>,
    ) -> Result<Response<pb::ListRegistrationTokensResponse>, Status> {
        unimplemented()
    }

    async fn revoke_registration_token(
        &self,
        _: Request<pb::RevokeRegistrationTokenRequest>,
    ) -> Result<Response<pb::RevokeRegistrationTokenResponse>, Status> {
        unimplemented()
    }

    async fn list_agents(
        &self,
        _: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        unimplemented()
    }

    async fn get_agent(
        &self,
        _: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::GetAgentResponse>, Status> {
        unimplemented()
    }

    async fn update_agent(
        &self,
        _: Request<pb::UpdateAgentRequest>,
    ) -> Result<Response<pb::UpdateAgentResponse>, Status> {
        unimplemented()
    }

    async fn delete_agent(
        &self,
        _: Request<pb::DeleteAgentRequest>,
    ) -> Result<Response<pb::DeleteAgentResponse>, Status> {
        unimplemented()
    }

    async fn issue_reenrolment_token(
        &self,
        _: Request<pb::IssueReenrolmentTokenRequest>,
    ) -> Result<Response<pb::IssueReenrolmentTokenResponse>, Status> {
        unimplemented()
    }

    async fn get_agent_metrics(
        &self,
        _: Request<pb::GetAgentMetricsRequest>,
    ) -> Result<Response<pb::GetAgentMetricsResponse>, Status> {
        unimplemented()
    }

    async fn register_agent(
        &self,
        _: Request<pb::RegisterAgentRequest>,
    ) -> Result<Response<pb::RegisterAgentResponse>, Status> {
        unimplemented()
    }

    async fn upload_artifact(
        &self,
        _: Request<Streaming<pb::UploadArtifactRequest>>,
    ) -> Result<Response<pb::UploadArtifactResponse>, Status> {
        unimplemented()
    }

    async fn fetch_artifact(
        &self,
        _: Request<pb::FetchArtifactRequest>,
    ) -> Result<Response<Self::FetchArtifactStream>, Status> {
        unimplemented()
    }
}
