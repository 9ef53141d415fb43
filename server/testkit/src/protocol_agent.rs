//! An agent speaking the real stream protocol from inside a test.

use cygnet_proto::v1 as pb;
use cygnet_proto::v1::agent_service_client::AgentServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// An agent speaking the real stream protocol from inside a test.
pub struct ProtocolAgent {
    pub welcome: pb::Welcome,
    pub sender: mpsc::Sender<pb::ConnectRequest>,
    pub inbound: tonic::Streaming<pb::ConnectResponse>,
}

impl std::fmt::Debug for ProtocolAgent {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ProtocolAgent")
            .field("welcome", &self.welcome)
            .finish_non_exhaustive()
    }
}

impl ProtocolAgent {
    pub async fn connect(
        channel: Channel,
        uuid: &str,
        credential: &str,
    ) -> Result<ProtocolAgent, Status> {
        let (sender, outgoing) = mpsc::channel(16);
        let mut request = Request::new(ReceiverStream::new(outgoing));
        if let Ok(value) = format!("Bearer {credential}").parse() {
            request.metadata_mut().insert("authorization", value);
        }
        if let Ok(value) = uuid.parse() {
            request
                .metadata_mut()
                .insert(cygnet_proto::AGENT_UUID_METADATA, value);
        }
        let mut inbound = AgentServiceClient::new(channel)
            .connect(request)
            .await?
            .into_inner();
        match inbound.message().await? {
            Some(pb::ConnectResponse {
                command: Some(pb::connect_response::Command::Welcome(welcome)),
            }) => Ok(ProtocolAgent {
                welcome,
                sender,
                inbound,
            }),
            other => panic!("expected Welcome first, got {other:?}"),
        }
    }

    /// Sends one heartbeat.
    pub async fn heartbeat(&self, heartbeat: pb::Heartbeat) {
        self.sender
            .send(pb::ConnectRequest {
                message: Some(pb::connect_request::Message::Heartbeat(heartbeat)),
            })
            .await
            .expect("stream open");
    }

    /// Runs every job it is given at once, successfully, and records the execution ids it got
    /// (a repeated assignment would show up twice).
    pub fn work_instantly(
        self,
    ) -> (
        std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
        tokio::task::JoinHandle<()>,
    ) {
        self.work_instantly_ending(|_| (pb::ExecutionStatus::Succeeded, String::new()))
    }

    /// [`work_instantly`](Self::work_instantly), ending each job with the status (and reason)
    /// `ending` chooses for its execution id.
    pub fn work_instantly_ending(
        self,
        ending: impl Fn(i64) -> (pb::ExecutionStatus, String) + Send + 'static,
    ) -> (
        std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
        tokio::task::JoinHandle<()>,
    ) {
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = received.clone();
        let ProtocolAgent {
            sender,
            mut inbound,
            ..
        } = self;
        let task = tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                let Some(pb::connect_response::Command::AssignJob(job)) = message.command else {
                    continue;
                };
                record.lock().expect("record").push(job.execution_id);
                let (status, reason) = ending(job.execution_id);
                let events = [
                    pb::job_event::Event::Started(pb::JobStarted {
                        workspace: "/tmp/instant".into(),
                    }),
                    pb::job_event::Event::Finished(pb::JobFinished {
                        status: status.into(),
                        reason,
                    }),
                ];
                for (index, event) in events.into_iter().enumerate() {
                    let sent = sender
                        .send(pb::ConnectRequest {
                            message: Some(pb::connect_request::Message::JobEvent(pb::JobEvent {
                                execution_id: job.execution_id,
                                sequence: index as i64 + 1,
                                occurred_at: None,
                                event: Some(event),
                            })),
                        })
                        .await;
                    if sent.is_err() {
                        return;
                    }
                }
            }
        });
        (received, task)
    }

    /// The status the server ended the stream with (`None`: ended without error).
    pub async fn closed_with(mut self) -> Option<Status> {
        loop {
            match self.inbound.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    }
}
