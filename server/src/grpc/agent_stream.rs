//! The agent side of `AgentService`: RegisterAgent and the Connect stream.

use std::pin::Pin;

use cygnet_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::agent_jobs::apply_job_events;
use super::agents::AgentApi;
use super::convert;
use crate::agents::{SessionTicket, WorkSettings};
use crate::auth::{AGENT_CREDENTIAL_PREFIX, AuthenticatedAgent, certificate_common_name, token};
use crate::domain::agent::{host_fact, labels, max_concurrent_jobs, uuid};
use crate::domain::execution::ExecutionStatus;
use crate::domain::validate::optional_line;
use crate::domain::{AgentFigures, AgentRegistration, CustomerId, ExecutionId, ValidationError};
use crate::store::now;

/// The server → agent half of a Connect stream.
pub type ConnectStream = Pin<Box<dyn Stream<Item = Result<pb::ConnectResponse, Status>> + Send>>;

/// Commands (assignments, cancellations, acknowledgements) buffered per stream.
/// Job events applied in one transaction at most (64 KiB log chunks: 4 MiB).
const EVENT_BATCH: usize = 64;
const COMMAND_BUFFER: usize = 1024;

/// The CN of the client certificate the request came with, if any.
pub(super) fn client_certificate_cn<T>(request: &Request<T>) -> Option<String> {
    let certificates = request.peer_certs()?;
    certificates
        .first()
        .and_then(|leaf| certificate_common_name(leaf.as_ref()))
}

impl TryFrom<&pb::RegisterAgentRequest> for AgentRegistration {
    type Error = ValidationError;

    fn try_from(request: &pb::RegisterAgentRequest) -> Result<Self, ValidationError> {
        let uuid = uuid("uuid", &request.uuid)?;
        let name = if request.name.is_empty() {
            uuid.clone()
        } else {
            optional_line("name", &request.name, 200)?
        };
        Ok(AgentRegistration {
            customer_id: CustomerId::parse(request.customer_id, "customer_id")?,
            name,
            location: optional_line("location", &request.location, 200)?,
            labels: labels("labels", &request.labels)?,
            hostname: host_fact("hostname", &request.hostname)?,
            os: host_fact("os", &request.os)?,
            arch: host_fact("arch", &request.arch)?,
            version: host_fact("version", &request.version)?,
            max_concurrent_jobs: max_concurrent_jobs(
                "max_concurrent_jobs",
                request.max_concurrent_jobs,
                true,
            )?,
            uuid,
        })
    }
}

fn heartbeat_interval_seconds(api: &AgentApi) -> i32 {
    i32::try_from(api.context.agent_settings.heartbeat_interval.as_secs()).unwrap_or(i32::MAX)
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
        heartbeat_interval_seconds: heartbeat_interval_seconds(api),
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
    let inbound = request.into_inner();
    let (labels, enabled, max_concurrent_jobs) =
        api.context.store.agent_work_settings(&agent).await?;
    let on_agent = api.context.store.executions_on_agent(&agent).await?;
    let (commands, outbound) = mpsc::channel(COMMAND_BUFFER);
    let connected_at = now();
    // Welcome goes first, before the hub (dispatch, monitor rounds) can queue anything else.
    let welcome = pb::ConnectResponse {
        command: Some(pb::connect_response::Command::Welcome(pb::Welcome {
            agent_id: agent.agent_id().get(),
            customer_id: agent.customer_id().get(),
            heartbeat_interval_seconds: heartbeat_interval_seconds(api),
            server_time: convert::timestamp(connected_at),
        })),
    };
    // Cannot fail: the channel is new and empty.
    let _ = commands.try_send(Ok(welcome));
    let ticket = api.hub.attach(
        agent.clone(),
        commands.clone(),
        WorkSettings {
            labels,
            enabled,
            max_concurrent_jobs: usize::try_from(max_concurrent_jobs).unwrap_or(1),
        },
        on_agent
            .iter()
            .map(|(execution_id, ..)| *execution_id)
            .collect(),
    );
    if let Err(error) = api
        .context
        .store
        .mark_agent_online(
            &agent,
            ticket.connection_id,
            connected_at,
            api.context.online_cutoff(),
        )
        .await
    {
        api.hub.detach(agent.agent_id(), ticket.connection_id);
        return Err(error.into());
    }
    tracing::info!(
        agent_id = agent.agent_id().get(),
        customer_id = agent.customer_id().get(),
        jobs = on_agent.len(),
        "agent connected"
    );
    // A round sends it its monitors (and moves monitors its arrival should take).
    api.monitors.customer_changed(agent.customer_id());
    // Cancellations asked while the agent was away.
    for (execution_id, _, _, cancel_reason) in &on_agent {
        if !cancel_reason.is_empty() {
            let _ = commands.try_send(Ok(pb::ConnectResponse {
                command: Some(pb::connect_response::Command::CancelJob(pb::CancelJob {
                    execution_id: execution_id.get(),
                    reason: cancel_reason.clone(),
                })),
            }));
        }
    }
    // Assigned before this stream: the agent's first heartbeat says whether it has them.
    let unconfirmed: Vec<ExecutionId> = on_agent
        .iter()
        .filter(|(_, status, assigned_at, _)| {
            *status == ExecutionStatus::Assigned && assigned_at.is_some_and(|at| at < connected_at)
        })
        .map(|(execution_id, ..)| *execution_id)
        .collect();
    api.streams.spawn(read_agent_stream(
        api.clone(),
        agent,
        ticket,
        inbound,
        commands,
        unconfirmed,
    ));
    api.operations.wake_dispatch();
    Ok(Response::new(Box::pin(ReceiverStream::new(outbound))))
}

/// The stream's next message if it has already arrived (as `Streaming::message` would give it),
/// without waiting.
async fn already_received(
    inbound: &mut Streaming<pb::ConnectRequest>,
) -> Option<Result<Option<pb::ConnectRequest>, Status>> {
    use tokio_stream::Stream;
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match Pin::new(&mut *inbound).poll_next(cx) {
            std::task::Poll::Pending => None,
            std::task::Poll::Ready(None) => Some(Ok(None)),
            std::task::Poll::Ready(Some(Ok(message))) => Some(Ok(Some(message))),
            std::task::Poll::Ready(Some(Err(status))) => Some(Err(status)),
        })
    })
    .await
}

/// Reads what the agent sends until the stream ends or the hub ends the session, then marks the
/// agent offline if this stream was still its current one.
async fn read_agent_stream(
    api: AgentApi,
    agent: AuthenticatedAgent,
    ticket: SessionTicket,
    mut inbound: Streaming<pb::ConnectRequest>,
    commands: mpsc::Sender<Result<pb::ConnectResponse, Status>>,
    mut unconfirmed: Vec<ExecutionId>,
) {
    use pb::connect_request::Message;
    let connection_id = ticket.connection_id;
    let mut kicked = ticket.kicked;
    let mut warned_about_figures = false;
    // A message read while collecting job events, to be handled next.
    let mut read_ahead = None;
    let reason = loop {
        let message = match read_ahead.take() {
            Some(message) => message,
            None => tokio::select! {
                status = &mut kicked => {
                    // The hub already removed the session and records the outcome itself.
                    if let Ok(status) = status {
                        let _ = commands.try_send(Err(status));
                    }
                    break None;
                }
                message = inbound.message() => message,
            },
        };
        match message {
            Ok(Some(pb::ConnectRequest {
                message: Some(Message::Heartbeat(heartbeat)),
            })) => {
                api.context.metrics.heartbeat();
                let (figures, adjusted) =
                    AgentFigures::sanitized(convert::figures_from_heartbeat(&heartbeat));
                if adjusted && !warned_about_figures {
                    warned_about_figures = true;
                    tracing::warn!(
                        agent_id = agent.agent_id().get(),
                        "agent reported out-of-range figures; they were clamped"
                    );
                }
                let running: Vec<ExecutionId> = heartbeat
                    .running_execution_ids
                    .iter()
                    .filter(|id| **id > 0)
                    .map(|id| ExecutionId::from_db(*id))
                    .collect();
                // An assignment made before this stream that the agent does not have never
                // reached it: it goes back to the queue (it cannot run twice, the agent
                // does not know it).
                for execution_id in std::mem::take(&mut unconfirmed) {
                    if !running.contains(&execution_id) {
                        Box::pin(
                            api.operations
                                .requeue_unreceived(agent.agent_id(), execution_id),
                        )
                        .await;
                    }
                }
                api.hub
                    .heartbeat(agent.agent_id(), connection_id, figures, running, now());
            }
            Ok(Some(pb::ConnectRequest {
                message: Some(Message::JobEvent(event)),
            })) => {
                // The job events the agent has already sent go in the same transaction.
                let mut events = vec![event];
                while events.len() < EVENT_BATCH {
                    match already_received(&mut inbound).await {
                        Some(Ok(Some(pb::ConnectRequest {
                            message: Some(Message::JobEvent(event)),
                        }))) => events.push(event),
                        Some(other) => {
                            read_ahead = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                Box::pin(apply_job_events(&api, &agent, &commands, events)).await;
            }
            Ok(Some(pb::ConnectRequest {
                message: Some(Message::MonitorReport(report)),
            })) => {
                Box::pin(record_monitor_report(&api, &agent, &report)).await;
            }
            Ok(Some(pb::ConnectRequest { message: None })) => {}
            Ok(None) => break Some("stream closed by the agent"),
            Err(_) => break Some("connection lost"),
        }
    };
    if let Some(reason) = reason
        && api.hub.detach(agent.agent_id(), connection_id)
    {
        tracing::info!(
            agent_id = agent.agent_id().get(),
            customer_id = agent.customer_id().get(),
            reason,
            "agent disconnected"
        );
        let offline = api
            .context
            .store
            .mark_agent_offline(&agent, connection_id, now(), reason);
        if let Err(error) = Box::pin(offline).await {
            tracing::warn!(%error, agent_id = agent.agent_id().get(), "could not mark agent offline");
        }
        // Its monitors go to the customer's other agents.
        api.monitors.customer_changed(agent.customer_id());
    }
}

/// Stores a monitor check result (dropped with a warning if the store refuses: the next check
/// reports again).
async fn record_monitor_report(
    api: &AgentApi,
    agent: &AuthenticatedAgent,
    report: &pb::MonitorReport,
) {
    api.context.metrics.monitor_report();
    let Some(report) = super::monitor_convert::report_from_pb(report) else {
        return;
    };
    let monitor_id = report.monitor_id.get();
    match api.context.store.record_monitor_check(agent, report).await {
        Ok(Some(status)) => {
            tracing::debug!(monitor_id, status = status.as_str(), "monitor checked")
        }
        Ok(None) => tracing::debug!(
            monitor_id,
            "report about a monitor not assigned here ignored"
        ),
        Err(error) => tracing::warn!(%error, monitor_id, "could not store a monitor check"),
    }
}
