//! Registering and holding the stream: the agent's life cycle.
//!
//! ```text
//!   ┌──────────── no stored credential ───────────┐
//!   ▼                                             │
//! register ──▶ connect ──▶ heartbeat loop ──▶ stream ends ──▶ backoff ──┐
//!   ▲             ▲                                                      │
//!   │             └──────────────────────────────────────────────────────┘
//!   └── credential refused (UNAUTHENTICATED): forget it, register again
//! ```
//! Each change of state is logged once, not once per retry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cygnet_proto::AGENT_UUID_METADATA;
use cygnet_proto::v1::{self as pb, agent_service_client::AgentServiceClient};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::backoff::Backoff;
use crate::config::AgentConfig;
use crate::exporter::AgentMetrics;
use crate::jobs::{JobSettings, Jobs, Outbox, UploadTarget};
use crate::metrics::{HostFacts, HostMetrics};
use crate::monitors::{self, Monitors};
use crate::state::{AgentState, StateStore};
use crate::step_groups::StepGroups;
use crate::step_user::StepUser;
use crate::token_files::{read_secret, remove_used};

/// How long the server has to send Welcome after the stream opens.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a clean shutdown waits for the server to close its half of the stream.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// While stopping, how often the agent checks whether its jobs have ended.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// How long past the kill grace a stopping agent waits for its last events to be acknowledged.
const STOP_EXTRA: Duration = Duration::from_secs(10);

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Nothing the agent can do by retrying: fix the configuration.
    #[error("{0}")]
    Fatal(String),
}

/// How a stream ended.
enum StreamEnd {
    /// The agent is shutting down; the stream was closed cleanly.
    Shutdown,
    /// The server ended the stream (with a reason).
    Closed(Status),
}

/// Logs a state when it differs from the previous one; a warning that persists (a refused
/// registration, an unreachable server) is repeated every [`REPEAT_WARNING`] with the number of
/// tries since it began, so an agent that cannot work never falls silent.
#[derive(Default)]
struct StateLog {
    last: Option<String>,
    /// When the current warning was last logged, and the tries since it first was.
    repeated: Option<(Instant, u64)>,
}

/// How often a persisting warning is logged again.
const REPEAT_WARNING: Duration = Duration::from_secs(60);

impl StateLog {
    fn info(&mut self, state: String) {
        if self.last.as_deref() != Some(state.as_str()) {
            tracing::info!("{state}");
            self.last = Some(state);
            self.repeated = None;
        }
    }

    fn warn(&mut self, state: String) {
        if let Some(line) = self.warning_at(state, Instant::now()) {
            tracing::warn!("{line}");
        }
    }

    /// The line to log for warning `state` at `now`, if any.
    fn warning_at(&mut self, state: String, now: Instant) -> Option<String> {
        if self.last.as_deref() != Some(state.as_str()) {
            self.last = Some(state.clone());
            self.repeated = Some((now, 1));
            return Some(state);
        }
        let (logged, tries) = self.repeated.as_mut()?;
        *tries += 1;
        if now.duration_since(*logged) < REPEAT_WARNING {
            return None;
        }
        *logged = now;
        Some(format!("still failing after {tries} tries: {state}"))
    }
}

/// An error with its causes: tonic's "transport error" alone does not say whether the connection
/// was refused, the name did not resolve or TLS failed.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.ends_with(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

/// The running agent.
pub struct Agent {
    config: AgentConfig,
    /// One per address of `ServerUrl`, tried in turn.
    endpoints: Vec<(String, Endpoint)>,
    /// The one the next connection goes to.
    current: usize,
    states: StateStore,
    metrics: HostMetrics,
    log: StateLog,
    jobs: Arc<Jobs>,
    /// The service monitors the server assigned; their checks go on across reconnects.
    monitors: Monitors,
    /// Their reports, forwarded onto the stream while one is up.
    monitor_reports: mpsc::Receiver<pb::MonitorReport>,
    /// Set once SIGINT/SIGTERM arrived: running jobs are being stopped.
    stopping_since: Option<Instant>,
    /// Prometheus metrics (served only with `MetricsListen`).
    telemetry: Arc<AgentMetrics>,
}

impl Agent {
    /// Checks that the agent can start: with no stored credential for this identity it needs a
    /// registration token.
    pub fn new(config: AgentConfig, metrics: HostMetrics) -> Result<Self, AgentError> {
        let states = StateStore::open(&config.state_directory).map_err(|error| {
            AgentError::Fatal(format!(
                "AgentConfiguration:StateDirectory {}: {error}",
                config.state_directory.display()
            ))
        })?;
        let endpoints = crate::client::endpoints(&config)
            .map_err(|error| AgentError::Fatal(format!("{error:#}")))?;
        if endpoints.is_empty() {
            return Err(AgentError::Fatal(
                "AgentConfiguration:ServerUrl names no server".to_owned(),
            ));
        }
        let spool = config.state_directory.join("spool");
        crate::workdir::create_private_directory(&spool).map_err(|error| {
            AgentError::Fatal(format!(
                "AgentConfiguration:StateDirectory {}: {error}",
                spool.display()
            ))
        })?;
        let outbox = Arc::new(Outbox::new(&spool, config.event_buffer_bytes));
        let run_as = match &config.run_steps_as {
            Some(name) => Some(Arc::new(StepUser::resolve(name).map_err(|problem| {
                AgentError::Fatal(format!("AgentConfiguration:RunStepsAs {problem}"))
            })?)),
            None => None,
        };
        let step_groups = StepGroups::open(&config.state_directory).map_err(|error| {
            AgentError::Fatal(format!(
                "AgentConfiguration:StateDirectory {}: {error}",
                config.state_directory.display()
            ))
        })?;
        // Steps of an earlier run that was killed without ending them end now, before new work.
        let leftovers = step_groups.kill_leftovers();
        if !leftovers.is_empty() {
            tracing::warn!(
                groups = ?leftovers,
                "killed steps left running by an earlier run of the agent"
            );
        }
        // Absolute, so CYGNET_WORKSPACE means the same thing in every step.
        let work_directory = config
            .work_directory
            .canonicalize()
            .unwrap_or_else(|_| config.work_directory.clone());
        let jobs = Jobs::new(
            JobSettings {
                customer_id: config.customer_id,
                work_directory,
                kill_grace: Duration::from_secs(config.kill_grace_seconds),
                max_log_bytes: config.max_log_bytes_per_job,
                keep_workspaces: config.keep_workspaces,
                max_artifact_bytes: config.max_artifact_bytes,
                run_as,
                step_groups: Arc::new(step_groups),
            },
            outbox,
        );
        let (report_sender, monitor_reports) = mpsc::channel(monitors::REPORT_QUEUE);
        let agent = Self {
            config,
            endpoints,
            current: 0,
            states,
            metrics,
            log: StateLog::default(),
            jobs,
            monitors: Monitors::new(report_sender),
            monitor_reports,
            stopping_since: None,
            telemetry: Arc::new(AgentMetrics::new()),
        };
        if agent.stored_state().is_none() && !agent.can_register() {
            return Err(AgentError::Fatal(
                "AgentConfiguration:RegistrationToken is required (in the configuration, or in the file RegistrationTokenFile names): this agent has no stored credential yet".into(),
            ));
        }
        Ok(agent)
    }

    /// Whether a registration token is at hand (in the configuration or its file).
    fn can_register(&self) -> bool {
        self.config.registration_token.is_some()
            || self
                .config
                .registration_token_file
                .as_deref()
                .is_some_and(|path| matches!(read_secret(path), Ok(Some(_))))
    }

    /// The registration token: the configured one, else the content of its file.
    fn registration_token(&self) -> Result<String, Status> {
        if let Some(token) = &self.config.registration_token {
            return Ok(token.clone());
        }
        let Some(path) = &self.config.registration_token_file else {
            return Err(Status::unauthenticated("no registration token configured"));
        };
        read_secret(path)
            .map_err(|error| {
                Status::failed_precondition(format!(
                    "AgentConfiguration:RegistrationTokenFile {}: {error}",
                    path.display()
                ))
            })?
            .ok_or_else(|| {
                Status::unauthenticated(format!(
                    "no registration token: AgentConfiguration:RegistrationTokenFile {} does not exist (it is deleted after a registration)",
                    path.display()
                ))
            })
    }

    /// The re-enrolment token of `ReenrolmentTokenFile`, if that file exists.
    fn reenrolment_token(&self) -> Result<String, Status> {
        let Some(path) = &self.config.reenrolment_token_file else {
            return Ok(String::new());
        };
        read_secret(path)
            .map(Option::unwrap_or_default)
            .map_err(|error| {
                Status::failed_precondition(format!(
                    "AgentConfiguration:ReenrolmentTokenFile {}: {error}",
                    path.display()
                ))
            })
    }

    fn has_reenrolment_token(&self) -> bool {
        self.reenrolment_token()
            .is_ok_and(|token| !token.is_empty())
    }

    /// Deletes the one-time secret files after a successful registration.
    fn remove_used_token_files(&self) {
        for path in [
            &self.config.registration_token_file,
            &self.config.reenrolment_token_file,
        ]
        .into_iter()
        .flatten()
        {
            if let Err(error) = remove_used(path) {
                tracing::warn!(%error, path = %path.display(), "could not delete a used token file");
            }
        }
    }

    fn stored_state(&self) -> Option<AgentState> {
        self.states.load().filter(|state| {
            state.matches(
                self.config.customer_id,
                &self.config.agent_uuid,
                &self.config.server_url,
            )
        })
    }

    /// Runs until `shutdown` turns true. Returns an error only for conditions retrying cannot
    /// fix.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
        // What steps of an earlier run left outside their groups ends before new work.
        self.jobs.sweep_step_user().await;
        let _exporter = match self.config.metrics_listen {
            Some(address) => {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|error| {
                        AgentError::Fatal(format!(
                            "AgentConfiguration:MetricsListen {address}: {error}"
                        ))
                    })?;
                tracing::info!(%address, "metrics at http://{address}/metrics");
                Some(cygnet_metrics::serve(
                    listener,
                    self.telemetry.render(self.jobs.clone()),
                    {
                        let mut shutdown = shutdown.clone();
                        async move {
                            let _ = shutdown.wait_for(|stop| *stop).await;
                        }
                    },
                ))
            }
            None => None,
        };
        let mut backoff = Backoff::default();
        let mut attempts = 0u64;
        loop {
            if attempts > 0 {
                self.telemetry.reconnect();
            }
            attempts += 1;
            if *shutdown.borrow() {
                return Ok(());
            }
            let outcome = self.attempt(&mut shutdown, &mut backoff).await;
            self.telemetry.set_connected(false);
            match outcome {
                Ok(StreamEnd::Shutdown) => {
                    tracing::info!("stream closed; agent stopping");
                    return Ok(());
                }
                Ok(StreamEnd::Closed(status)) => {
                    self.log
                        .warn(format!("disconnected by the server: {}", status.message()));
                }
                Err(status) if status.code() == Code::Unauthenticated => {
                    self.log
                        .warn(format!("credential refused: {}", status.message()));
                    if let Err(error) = self.states.clear() {
                        tracing::warn!(%error, "could not forget the refused credential");
                    }
                    if !self.can_register() {
                        return Err(AgentError::Fatal(format!(
                            "the server refused this agent's credential ({}) and no AgentConfiguration:RegistrationToken is configured to register again",
                            status.message()
                        )));
                    }
                }
                Err(status) => {
                    self.log.warn(describe_failure(&status));
                }
            }
            // The next try goes to the next address (replicas): one that failed or ended the
            // stream is likely down or stopping.
            self.current = (self.current + 1) % self.endpoints.len();
            let delay = backoff.next_delay();
            tracing::debug!(
                delay_ms = delay.as_millis() as u64,
                "reconnecting after backoff"
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    /// One try: register if needed, connect, run the stream.
    async fn attempt(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Result<StreamEnd, Status> {
        let (server_url, endpoint) = &self.endpoints[self.current];
        let channel = endpoint.connect().await.map_err(|error| {
            Status::unavailable(format!(
                "cannot reach {server_url}: {}",
                with_causes(&error)
            ))
        })?;
        // A re-enrolment token waiting in its file means an administrator wants this identity
        // (re)registered, e.g. restored after a deletion: register even with a stored state.
        let state = match self.stored_state() {
            Some(state) if !self.has_reenrolment_token() => state,
            _ => self.register(channel.clone()).await?,
        };
        self.stream(channel, &state, shutdown, backoff).await
    }

    async fn register(&mut self, channel: Channel) -> Result<AgentState, Status> {
        let registration_token = self.registration_token()?;
        let reenrolment_token = self.reenrolment_token()?;
        // The credential of this identity, if one is stored (e.g. for another server URL):
        // proof that this host is the uuid's owner.
        let current_credential = self
            .states
            .load()
            .filter(|state| {
                state.customer_id == self.config.customer_id
                    && state.agent_uuid == self.config.agent_uuid
            })
            .map(|state| state.credential)
            .unwrap_or_default();
        let facts = HostFacts::read();
        let response = AgentServiceClient::new(channel)
            .register_agent(pb::RegisterAgentRequest {
                customer_id: self.config.customer_id,
                uuid: self.config.agent_uuid.clone(),
                name: self.config.name.clone(),
                location: self.config.location.clone(),
                labels: self.config.labels.clone(),
                hostname: facts.hostname,
                os: facts.os,
                arch: facts.arch,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                max_concurrent_jobs: self.config.max_concurrent_jobs,
                registration_token,
                current_credential,
                reenrolment_token,
            })
            .await
            .map_err(|status| match status.code() {
                // A refused registration: retried with backoff (an operator may fix the token or
                // reactivate the customer) but reported clearly.
                Code::InvalidArgument
                | Code::FailedPrecondition
                | Code::AlreadyExists
                | Code::PermissionDenied
                | Code::Unauthenticated => Status::new(
                    Code::Aborted,
                    format!(
                        "registration refused ({:?}): {}",
                        status.code(),
                        status.message()
                    ),
                ),
                _ => status,
            })?
            .into_inner();
        let state = AgentState {
            agent_id: response.agent_id,
            customer_id: self.config.customer_id,
            agent_uuid: self.config.agent_uuid.clone(),
            server_url: self.config.server_url.clone(),
            credential: response.credential,
        };
        self.states
            .save(&state)
            .map_err(|error| Status::internal(format!("cannot store the credential: {error}")))?;
        self.remove_used_token_files();
        self.log.info(format!(
            "registered as agent {} of customer {}",
            state.agent_id, state.customer_id
        ));
        Ok(state)
    }

    async fn stream(
        &mut self,
        channel: Channel,
        state: &AgentState,
        shutdown: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Result<StreamEnd, Status> {
        let (outgoing, outgoing_stream) = mpsc::channel::<pb::ConnectRequest>(8);
        let mut request = Request::new(ReceiverStream::new(outgoing_stream));
        let bearer = format!("Bearer {}", state.credential)
            .parse()
            .map_err(|_| Status::unauthenticated("stored credential is not valid metadata"))?;
        request.metadata_mut().insert("authorization", bearer);
        let uuid = state
            .agent_uuid
            .parse()
            .map_err(|_| Status::invalid_argument("agent uuid is not valid metadata"))?;
        request.metadata_mut().insert(AGENT_UUID_METADATA, uuid);
        let mut inbound = AgentServiceClient::new(channel.clone())
            .connect(request)
            .await?
            .into_inner();

        let welcome = match tokio::time::timeout(WELCOME_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(pb::ConnectResponse {
                command: Some(pb::connect_response::Command::Welcome(welcome)),
            }))) => welcome,
            Ok(Ok(_)) => {
                return Err(Status::internal(
                    "server did not start the stream with Welcome",
                ));
            }
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no Welcome from the server")),
        };
        if welcome.customer_id == self.config.customer_id {
            self.telemetry.set_connected(true);
        } else {
            return Err(Status::unauthenticated(format!(
                "server says this agent belongs to customer {}, configured CustomerId is {}",
                welcome.customer_id, self.config.customer_id
            )));
        }
        let interval = Duration::from_secs(
            u64::try_from(welcome.heartbeat_interval_seconds.max(1)).unwrap_or(10),
        );
        self.log.info(format!(
            "connected to {} as agent {} (heartbeat every {} s)",
            self.endpoints[self.current].0,
            welcome.agent_id,
            interval.as_secs()
        ));
        let connected_at = Instant::now();
        self.jobs.set_upload_target(UploadTarget {
            channel: channel.clone(),
            credential: state.credential.clone(),
            agent_uuid: state.agent_uuid.clone(),
        });
        // Everything the server has not acknowledged goes again on this stream.
        let outbox = self.jobs.outbox().clone();
        outbox.rewind();
        // Checks that finished while no stream was up are superseded by the next ones.
        while self.monitor_reports.try_recv().is_ok() {}
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop_check = tokio::time::interval(STOP_CHECK);
        loop {
            for event in outbox.take_unsent() {
                if let Some(pb::job_event::Event::Log(output)) = &event.event {
                    self.telemetry.log_sent(output.text.len());
                }
                let message = pb::ConnectRequest {
                    message: Some(pb::connect_request::Message::JobEvent(event)),
                };
                if outgoing.send(message).await.is_err() {
                    return Err(Status::unavailable("stream closed while sending"));
                }
            }
            if let Some(since) = self.stopping_since {
                let drained =
                    self.jobs.running_count() == 0 && outbox.pending_executions().is_empty();
                let overdue = since.elapsed()
                    > Duration::from_secs(self.config.kill_grace_seconds) + STOP_EXTRA;
                if drained || overdue {
                    if !drained {
                        tracing::warn!("stopping with job events the server has not acknowledged");
                    }
                    // Close our half; the server marks the agent offline at once and ends its half.
                    drop(outgoing);
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                        while let Ok(Some(_)) = inbound.message().await {}
                    })
                    .await;
                    return Ok(StreamEnd::Shutdown);
                }
            }
            tokio::select! {
                _ = outbox.changed.notified() => {}
                _ = ticker.tick() => {
                    let heartbeat = self.metrics.heartbeat(self.jobs.running_count(), self.jobs.running_ids());
                    let message = pb::ConnectRequest {
                        message: Some(pb::connect_request::Message::Heartbeat(heartbeat)),
                    };
                    if outgoing.send(message).await.is_err() {
                        return Err(Status::unavailable("stream closed while sending"));
                    }
                    if connected_at.elapsed() >= interval {
                        backoff.reset();
                    }
                }
                message = inbound.message() => match message {
                    Ok(Some(pb::ConnectResponse { command: Some(command) })) => self.handle(command),
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(StreamEnd::Closed(Status::unavailable("server closed the stream"))),
                    Err(status) if matches!(status.code(), Code::Unauthenticated) => return Err(status),
                    Err(status) => return Ok(StreamEnd::Closed(status)),
                },
                Some(report) = self.monitor_reports.recv() => {
                    self.telemetry.monitor_report_sent();
                    let message = pb::ConnectRequest {
                        message: Some(pb::connect_request::Message::MonitorReport(report)),
                    };
                    if outgoing.send(message).await.is_err() {
                        return Err(Status::unavailable("stream closed while sending"));
                    }
                }
                _ = stop_check.tick(), if self.stopping_since.is_some() => {}
                _ = shutdown.changed(), if self.stopping_since.is_none() => {
                    self.stopping_since = Some(Instant::now());
                    self.monitors.stop_all();
                    if self.jobs.running_count() > 0 {
                        tracing::info!(jobs = self.jobs.running_count(), "stopping running jobs before exiting");
                        self.jobs.cancel_all("agent shutting down");
                    }
                }
            }
        }
    }

    /// Carries out one command from the server.
    fn handle(&mut self, command: pb::connect_response::Command) {
        use pb::connect_response::Command;
        match command {
            Command::AssignJob(assignment) => {
                self.telemetry.job_received();
                if self.stopping_since.is_some() {
                    // Not started: the server gives it to another agent once this one is gone.
                    tracing::info!(
                        execution_id = assignment.execution_id,
                        "assignment ignored: shutting down"
                    );
                    return;
                }
                tracing::info!(execution_id = assignment.execution_id, pipeline = %assignment.pipeline_name, "job assigned");
                self.jobs.start(assignment);
            }
            Command::CancelJob(cancel) => {
                tracing::info!(execution_id = cancel.execution_id, reason = %cancel.reason, "cancel requested");
                self.jobs.cancel(cancel.execution_id, cancel.reason);
            }
            Command::EventAck(ack) => self
                .jobs
                .outbox()
                .acknowledge(ack.execution_id, ack.sequence),
            Command::AssignMonitors(assignment) => {
                if self.stopping_since.is_some() {
                    tracing::debug!("monitor assignment ignored: shutting down");
                    return;
                }
                self.monitors.assign(assignment.monitors);
            }
            Command::Welcome(_) | Command::Keepalive(_) => {}
        }
    }
}

fn describe_failure(status: &Status) -> String {
    match status.code() {
        Code::Unavailable => format!("server unreachable: {}", status.message()),
        Code::Aborted => status.message().to_owned(),
        code => format!("connection failed ({code:?}): {}", status.message()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    #[test]
    fn a_persisting_warning_is_repeated_each_minute_with_its_tries() {
        let mut log = super::StateLog::default();
        let start = Instant::now();
        let refused = || "registration refused (PermissionDenied): wrong token".to_owned();
        assert_eq!(log.warning_at(refused(), start), Some(refused()));
        assert_eq!(
            log.warning_at(refused(), start + Duration::from_secs(10)),
            None
        );
        assert_eq!(
            log.warning_at(refused(), start + Duration::from_secs(61)),
            Some(format!("still failing after 3 tries: {}", refused()))
        );
        assert_eq!(
            log.warning_at(refused(), start + Duration::from_secs(62)),
            None
        );
        // Another state is logged at once, and a return to the first starts its count again.
        assert_eq!(
            log.warning_at("server unreachable".into(), start + Duration::from_secs(63)),
            Some("server unreachable".into())
        );
        assert_eq!(
            log.warning_at(refused(), start + Duration::from_secs(64)),
            Some(refused())
        );
    }
}
