//! An agent's session on this server: from its authenticated stream being attached to the hub
//! and marked online, through the read loop (heartbeats, job events, monitor reports), to the
//! offline mark when the stream ends. The gRPC handler only authenticates and hands the
//! stream over.

use std::pin::Pin;
use std::sync::Arc;

use cygnet_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tonic::{Status, Streaming};

use super::{AgentHub, SessionTicket, WorkSettings};
use crate::auth::AuthenticatedAgent;
use crate::config::AgentSettings;
use crate::domain::agent::MAX_CONCURRENT_JOBS;
use crate::domain::execution::ExecutionStatus;
use crate::domain::{AgentFigures, ExecutionId};
use crate::metrics::ServerMetrics;
use crate::monitors::MonitorScheduler;
use crate::service::Operations;
use crate::store::{Store, StoreError, now};
use crate::wire;

/// Commands (assignments, cancellations, acknowledgements) buffered per stream.
const COMMAND_BUFFER: usize = 1024;
/// Job events applied in one transaction at most (64 KiB log chunks: 4 MiB).
const EVENT_BATCH: usize = 64;
/// How often a stream holding back job events looks whether the database is back.
const RESEND_CHECK: std::time::Duration = std::time::Duration::from_secs(1);
/// How long after a failed store a stream waits before asking for a resend while the database
/// seems reachable: long enough for the database probe to declare a stopped database (two
/// refused rounds), with time to spare.
const RESEND_SETTLE: std::time::Duration = std::time::Duration::from_secs(5);

/// The server → agent half of a session.
pub type Outbound = mpsc::Receiver<super::hub::Command>;

/// Opens and runs agent sessions; cheap to clone.
#[derive(Clone)]
pub struct AgentSessions {
    store: Store,
    hub: Arc<AgentHub>,
    operations: Operations,
    monitors: MonitorScheduler,
    metrics: Arc<ServerMetrics>,
    settings: AgentSettings,
    /// Where stream readers run (the server's request tasks): shutdown waits for them, so the
    /// offline marks they write are not cut off by the database closing.
    streams: TaskTracker,
}

impl AgentSessions {
    pub(crate) fn new(
        store: Store,
        hub: Arc<AgentHub>,
        operations: Operations,
        monitors: MonitorScheduler,
        metrics: Arc<ServerMetrics>,
        settings: AgentSettings,
        streams: TaskTracker,
    ) -> Self {
        Self {
            store,
            hub,
            operations,
            monitors,
            metrics,
            settings,
            streams,
        }
    }

    /// The heartbeat interval agents are told.
    pub fn heartbeat_interval_seconds(&self) -> i32 {
        i32::try_from(self.settings.heartbeat_interval.as_secs()).unwrap_or(i32::MAX)
    }

    /// The moment before which a stored `online` counts as stale.
    pub fn online_cutoff(&self) -> chrono::DateTime<chrono::Utc> {
        let offline_after = chrono::Duration::from_std(self.settings.offline_after())
            .unwrap_or(chrono::Duration::seconds(30));
        now() - offline_after
    }

    /// Opens the session of an authenticated agent on its new stream: the welcome is queued
    /// first, the stream attached to the hub (ending an older one of the same agent), the agent
    /// marked online, cancellations asked while it was away re-sent, and its read loop started.
    /// Returns what the server sends on the stream.
    pub async fn open(
        &self,
        agent: AuthenticatedAgent,
        inbound: Streaming<pb::ConnectRequest>,
    ) -> Result<Outbound, StoreError> {
        let (labels, enabled, max_concurrent_jobs) = self.store.agent_work_settings(&agent).await?;
        let on_agent = self.store.executions_on_agent(&agent).await?;
        let (commands, outbound) = mpsc::channel(COMMAND_BUFFER);
        let connected_at = now();
        // Welcome goes first, before the hub (dispatch, monitor rounds) can queue anything else.
        let welcome = pb::ConnectResponse {
            command: Some(pb::connect_response::Command::Welcome(pb::Welcome {
                agent_id: agent.agent_id().get(),
                customer_id: agent.customer_id().get(),
                heartbeat_interval_seconds: self.heartbeat_interval_seconds(),
                server_time: wire::common::timestamp(connected_at),
            })),
        };
        // Cannot fail: the channel is new and empty.
        let _ = commands.try_send(Ok(Box::new(welcome)));
        let ticket = self.hub.attach(
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
        if let Err(error) = self
            .store
            .mark_agent_online(
                &agent,
                ticket.connection_id,
                connected_at,
                self.online_cutoff(),
            )
            .await
        {
            self.hub.detach(agent.agent_id(), ticket.connection_id);
            return Err(error);
        }
        tracing::info!(
            agent_id = agent.agent_id().get(),
            customer_id = agent.customer_id().get(),
            jobs = on_agent.len(),
            "agent connected"
        );
        // A round sends it its monitors (and moves monitors its arrival should take).
        self.monitors.customer_changed(agent.customer_id());
        // Cancellations asked while the agent was away.
        for (execution_id, _, _, cancel_reason) in &on_agent {
            if !cancel_reason.is_empty() {
                let _ = commands.try_send(Ok(Box::new(pb::ConnectResponse {
                    command: Some(pb::connect_response::Command::CancelJob(pb::CancelJob {
                        execution_id: execution_id.get(),
                        reason: cancel_reason.clone(),
                    })),
                })));
            }
        }
        // Assigned before this stream: the agent's first heartbeat says whether it has them.
        let unconfirmed: Vec<ExecutionId> = on_agent
            .iter()
            .filter(|(_, status, assigned_at, _)| {
                *status == ExecutionStatus::Assigned
                    && assigned_at.is_some_and(|at| at < connected_at)
            })
            .map(|(execution_id, ..)| *execution_id)
            .collect();
        self.streams.spawn(read_stream(
            self.clone(),
            agent,
            ticket,
            inbound,
            commands,
            unconfirmed,
        ));
        self.operations.wake_dispatch();
        Ok(outbound)
    }
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

/// How an agent's stream ended on its side.
enum StreamEnd {
    /// The agent closed it (it is stopping): offline at once.
    Closed,
    /// The connection broke: offline unless the agent is back within its reconnect window.
    Broken,
}

/// Reads what the agent sends until the stream ends or the hub ends the session, then marks the
/// agent offline if this stream was still its current one.
async fn read_stream(
    sessions: AgentSessions,
    agent: AuthenticatedAgent,
    ticket: SessionTicket,
    mut inbound: Streaming<pb::ConnectRequest>,
    commands: super::hub::CommandSender,
    mut unconfirmed: Vec<ExecutionId>,
) {
    use pb::connect_request::Message;
    let connection_id = ticket.connection_id;
    let mut kicked = ticket.kicked;
    let mut warned_about_figures = false;
    // Since when job events are dropped unacknowledged because the database is unreachable
    // (the agent keeps them); see `ask_for_resend`.
    let mut dropping_since: Option<std::time::Instant> = None;
    let mut resend_check = tokio::time::interval(RESEND_CHECK);
    resend_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A message read while collecting job events, to be handled next.
    let mut read_ahead = None;
    let reason = loop {
        let message = match read_ahead.take() {
            Some(message) => message,
            None => tokio::select! {
                status = &mut kicked => {
                    // The hub already removed the session and records the outcome itself.
                    if let Ok(status) = status {
                        let _ = commands.try_send(Err(Box::new(status)));
                    }
                    break None;
                }
                _ = resend_check.tick(), if dropping_since.is_some() => {
                    if dropping_since.is_some_and(|since| ask_for_resend(&sessions, since)) {
                        let _ = commands.try_send(Err(Box::new(job_events_not_stored())));
                        // Not detached: the agent reconnects at once and its new stream takes
                        // the session over (no offline and online marks for the agent).
                        break None;
                    }
                    continue;
                }
                message = inbound.message() => message,
            },
        };
        match message {
            Ok(Some(pb::ConnectRequest {
                message: Some(Message::Heartbeat(heartbeat)),
            })) => {
                sessions.metrics.heartbeat();
                let (figures, adjusted) =
                    AgentFigures::sanitized(wire::common::figures_from_heartbeat(&heartbeat));
                if adjusted && !warned_about_figures {
                    warned_about_figures = true;
                    tracing::warn!(
                        agent_id = agent.agent_id().get(),
                        "agent reported out-of-range figures; they were clamped"
                    );
                }
                // An agent runs at most MAX_CONCURRENT_JOBS; anything past that is not read.
                let running: Vec<ExecutionId> = heartbeat
                    .running_execution_ids
                    .iter()
                    .take(MAX_CONCURRENT_JOBS as usize)
                    .filter(|id| **id > 0)
                    .map(|id| ExecutionId::from_db(*id))
                    .collect();
                // An assignment made before this stream that the agent does not have never
                // reached it: it goes back to the queue (it cannot run twice, the agent
                // does not know it).
                for execution_id in std::mem::take(&mut unconfirmed) {
                    if !running.contains(&execution_id) {
                        Box::pin(sessions.operations.requeue_unreceived(&agent, execution_id))
                            .await;
                    }
                }
                sessions
                    .hub
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
                if dropping_since.is_none()
                    && (!sessions.store.health().is_reachable()
                        || !Box::pin(apply_job_events(&sessions, &agent, &commands, events)).await)
                {
                    dropping_since = Some(std::time::Instant::now());
                }
            }
            Ok(Some(pb::ConnectRequest {
                message: Some(Message::MonitorReport(report)),
            })) => {
                Box::pin(record_monitor_report(&sessions, &agent, &report)).await;
            }
            Ok(Some(pb::ConnectRequest { message: None })) => {}
            Ok(None) => break Some(StreamEnd::Closed),
            Err(_) => break Some(StreamEnd::Broken),
        }
    };
    if let Some(StreamEnd::Broken) = reason
        && sessions.hub.detach(agent.agent_id(), connection_id)
    {
        // The connection broke (a proxy's timeout, a network blip, a killed agent): an agent
        // that reconnects within the window is no change; one that does not is marked offline
        // by the liveness task.
        tracing::info!(
            agent_id = agent.agent_id().get(),
            customer_id = agent.customer_id().get(),
            "agent connection lost"
        );
        sessions.hub.lose(
            agent.clone(),
            connection_id,
            sessions.settings.reconnect_window(),
        );
        sessions.monitors.customer_changed(agent.customer_id());
    } else if let Some(StreamEnd::Closed) = reason
        && sessions.hub.detach(agent.agent_id(), connection_id)
    {
        let reason = "stream closed by the agent";
        tracing::info!(
            agent_id = agent.agent_id().get(),
            customer_id = agent.customer_id().get(),
            reason,
            "agent disconnected"
        );
        let offline = sessions
            .store
            .mark_agent_offline(&agent, connection_id, now(), reason);
        if let Err(error) = Box::pin(offline).await {
            tracing::warn!(%error, agent_id = agent.agent_id().get(), "could not mark agent offline");
        }
        // Its monitors go to the customer's other agents.
        sessions.monitors.customer_changed(agent.customer_id());
    }
}

/// Stores a monitor check result (dropped with a warning if the store refuses: the next check
/// reports again).
async fn record_monitor_report(
    sessions: &AgentSessions,
    agent: &AuthenticatedAgent,
    report: &pb::MonitorReport,
) {
    sessions.metrics.monitor_report();
    let Some(report) = wire::monitor::report_from_pb(report) else {
        return;
    };
    let monitor_id = report.monitor_id.get();
    match sessions.store.record_monitor_check(agent, report).await {
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

fn acknowledge(commands: &super::hub::CommandSender, execution_id: i64, sequence: i64) {
    // Acknowledgements are cumulative: if the buffer is full, a later one covers this one.
    let _ = commands.try_send(Ok(Box::new(pb::ConnectResponse {
        command: Some(pb::connect_response::Command::EventAck(pb::EventAck {
            execution_id,
            sequence,
        })),
    })));
}

/// Stores job events the agent sent together (one transaction), acknowledges each, and acts on
/// the executions that finished. Returns false when the database was unreachable: nothing was
/// stored or acknowledged, and the stream stays open.
async fn apply_job_events(
    sessions: &AgentSessions,
    agent: &AuthenticatedAgent,
    commands: &super::hub::CommandSender,
    events: Vec<pb::JobEvent>,
) -> bool {
    let mut inputs = Vec::with_capacity(events.len());
    for event in events {
        match wire::pipeline::job_event_from_pb(event) {
            Ok(input) => inputs.push(input),
            Err(error) => {
                tracing::warn!(agent_id = agent.agent_id().get(), %error, "malformed job event ignored");
            }
        }
    }
    if inputs.is_empty() {
        return true;
    }
    let execution_ids: Vec<ExecutionId> = inputs.iter().map(|input| input.execution_id).collect();
    let outcomes = match sessions.store.apply_job_events(agent, inputs).await {
        Ok(outcomes) => outcomes,
        Err(StoreError::Unavailable(error)) => {
            // The database is away: the stream stays open (heartbeats keep the agent and its
            // leases alive here); the agent keeps the events until asked to send them again.
            tracing::warn!(%error, events = execution_ids.len(), "database unavailable; job events left with the agent");
            return false;
        }
        Err(error) => {
            // Not acknowledged: the agent keeps the events. Ending the stream makes it reconnect
            // and send them again, instead of the job waiting for an acknowledgement forever.
            tracing::warn!(%error, events = execution_ids.len(), "could not store job events; asking the agent to resend");
            sessions
                .hub
                .disconnect(agent.agent_id(), job_events_not_stored());
            return true;
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
            sessions
                .operations
                .execution_ended(agent.customer_id(), execution_id, Some(agent.agent_id()))
                .await;
        } else if outcome.stored {
            sessions.operations.execution_changed(execution_id);
        }
    }
    true
}

/// Whether a stream that has dropped job events since `since` should ask the agent to send
/// them again now: once the database answers, and not before the probe has had time to notice
/// an outage (asking sooner would send the agent into its reconnection backoff against a
/// database that is away).
fn ask_for_resend(sessions: &AgentSessions, since: std::time::Instant) -> bool {
    sessions.store.health().is_reachable() && since.elapsed() >= RESEND_SETTLE
}

/// Ends a stream whose job events could not be stored: the agent reconnects and sends them
/// again.
fn job_events_not_stored() -> Status {
    Status::unavailable("the server could not store a job event; reconnect and send it again")
}
