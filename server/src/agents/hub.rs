//! The agents connected to this server: their streams, what they may run, what they run, and
//! their latest figures. Heartbeats land here, in memory; the liveness task persists them in
//! batches, so a heartbeat costs no database write of its own.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cygnet_proto::v1 as pb;
use rand::RngExt;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::auth::AuthenticatedAgent;
use crate::domain::pipeline::AgentSelector;
use crate::domain::{AgentFigures, AgentId, CustomerId, ExecutionId};
use crate::store::HeartbeatRecord;

/// One message for an agent's stream, boxed: tokio allocates a channel's slots 32 at a time,
/// and a slot of the unboxed `Result<ConnectResponse, Status>` is 256 bytes, 8 KiB per agent
/// for a channel that is empty nearly always (BENCHMARKS.md).
pub type Command = Result<Box<pb::ConnectResponse>, Box<Status>>;

/// The server → agent half of a stream.
pub type CommandSender = mpsc::Sender<Command>;

/// How long an agent's stream may carry nothing from the server: proxies close streams idle
/// for their read timeout (nginx: 60 s) counting messages only, not HTTP/2 pings.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(15);

/// What an agent may be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkSettings {
    pub labels: Vec<String>,
    pub enabled: bool,
    pub max_concurrent_jobs: usize,
}

struct Session {
    connection_id: i64,
    agent: AuthenticatedAgent,
    /// Ends the session's stream with the given status.
    kick: oneshot::Sender<Status>,
    commands: CommandSender,
    settings: WorkSettings,
    /// Executions claimed for this agent and not finished.
    jobs: HashSet<ExecutionId>,
    last_heartbeat: Instant,
    latest: Option<(AgentFigures, DateTime<Utc>)>,
    /// Executions the agent said it runs, in its latest heartbeat.
    running: Vec<ExecutionId>,
    /// Figures arrived since the last flush.
    unsaved: bool,
    last_sample: Option<Instant>,
    /// A digest of the monitor set last sent on this stream.
    monitors: Option<u64>,
    /// When the stream is next sent a keepalive (see `send_keepalives`).
    keepalive_due: Instant,
}

/// A stream that broke without the agent closing it: the agent is marked offline only if it has
/// not come back by `due` (see `AgentHub::lose`).
struct LostStream {
    agent: AuthenticatedAgent,
    connection_id: i64,
    due: Instant,
}

/// What the stream handler keeps of its session.
pub struct SessionTicket {
    pub connection_id: i64,
    /// Completes when the hub ends the session (replaced, expired, deleted, shutdown).
    pub kicked: oneshot::Receiver<Status>,
}

/// Why no agent can take an execution now.
pub type NoAgent = String;

/// Open agent streams of this server, keyed by agent.
pub struct AgentHub {
    sessions: Mutex<HashMap<AgentId, Session>>,
    /// Broken streams whose agents may still come back.
    lost: Mutex<Vec<LostStream>>,
}

impl Default for AgentHub {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentHub {
    pub fn new() -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            lost: Mutex::new(Vec::new()),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<AgentId, Session>> {
        // Every update under the lock is a single insert, remove or field write, so a panic
        // cannot leave the map inconsistent: a poisoned lock is still usable.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new stream for the agent, with what it may run and the jobs it already has.
    /// An older stream of the same agent is ended with ABORTED: the newest connection wins.
    pub fn attach(
        &self,
        agent: AuthenticatedAgent,
        commands: CommandSender,
        settings: WorkSettings,
        jobs: HashSet<ExecutionId>,
    ) -> SessionTicket {
        let connection_id = rand::rng().random_range(1..i64::MAX);
        let (kick, kicked) = oneshot::channel();
        let session = Session {
            connection_id,
            agent: agent.clone(),
            kick,
            commands,
            settings,
            jobs,
            last_heartbeat: Instant::now(),
            latest: None,
            running: Vec::new(),
            unsaved: false,
            last_sample: None,
            monitors: None,
            keepalive_due: Instant::now() + KEEPALIVE_EVERY,
        };
        if let Some(previous) = self.sessions().insert(agent.agent_id(), session) {
            let _ = previous.kick.send(Status::aborted(
                "replaced by a newer connection of the same agent",
            ));
        }
        SessionTicket {
            connection_id,
            kicked,
        }
    }

    /// Records a heartbeat of the current stream; heartbeats of a replaced stream are ignored.
    pub fn heartbeat(
        &self,
        agent_id: AgentId,
        connection_id: i64,
        figures: AgentFigures,
        running: Vec<ExecutionId>,
        at: DateTime<Utc>,
    ) -> bool {
        let mut sessions = self.sessions();
        match sessions.get_mut(&agent_id) {
            Some(session) if session.connection_id == connection_id => {
                session.last_heartbeat = Instant::now();
                session.latest = Some((figures, at));
                // Only executions claimed for this agent count, each once: whatever else it
                // reports cannot make the shared liveness batch grow.
                let mut kept: Vec<ExecutionId> = Vec::with_capacity(session.jobs.len());
                for execution_id in running {
                    if session.jobs.contains(&execution_id) && !kept.contains(&execution_id) {
                        kept.push(execution_id);
                        if kept.len() == session.jobs.len() {
                            break;
                        }
                    }
                }
                session.running = kept;
                session.unsaved = true;
                true
            }
            _ => false,
        }
    }

    /// Removes the stream if it is still the agent's current one; returns whether it was.
    pub fn detach(&self, agent_id: AgentId, connection_id: i64) -> bool {
        let mut sessions = self.sessions();
        if sessions
            .get(&agent_id)
            .is_some_and(|session| session.connection_id == connection_id)
        {
            sessions.remove(&agent_id);
            true
        } else {
            false
        }
    }

    /// Records that the agent's stream `connection_id` broke (it was detached): if the agent has
    /// not reconnected by `after` from now, `take_lost` hands it over to be marked offline. A
    /// reconnection in between — here or on another replica — replaces the stored connection,
    /// so the later offline mark changes nothing and the agent shows no offline/online flap.
    pub fn lose(&self, agent: AuthenticatedAgent, connection_id: i64, after: Duration) {
        self.lost
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(LostStream {
                agent,
                connection_id,
                due: Instant::now() + after,
            });
    }

    /// The broken streams whose agents had until now to come back (all of them with
    /// `everything`, at shutdown).
    pub fn take_lost(&self, everything: bool) -> Vec<(AuthenticatedAgent, i64)> {
        let now = Instant::now();
        let mut lost = self
            .lost
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (due, waiting): (Vec<LostStream>, Vec<LostStream>) = std::mem::take(&mut *lost)
            .into_iter()
            .partition(|stream| everything || stream.due <= now);
        *lost = waiting;
        due.into_iter()
            .map(|stream| (stream.agent, stream.connection_id))
            .collect()
    }

    /// Sends a keepalive on every stream whose last one is `KEEPALIVE_EVERY` old (a full
    /// channel is skipped: that stream is anything but idle). Returns how many were sent.
    pub fn send_keepalives(&self) -> usize {
        let now = Instant::now();
        let mut sent = 0;
        for session in self.sessions().values_mut() {
            if session.keepalive_due > now {
                continue;
            }
            session.keepalive_due = now + KEEPALIVE_EVERY;
            let keepalive = pb::ConnectResponse {
                command: Some(pb::connect_response::Command::Keepalive(pb::Keepalive {})),
            };
            if session.commands.try_send(Ok(Box::new(keepalive))).is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// Whether the agent has a stream open here.
    pub fn is_connected(&self, agent_id: AgentId) -> bool {
        self.sessions().contains_key(&agent_id)
    }

    /// The latest figures received on this server.
    pub fn latest(&self, agent_id: AgentId) -> Option<(AgentFigures, DateTime<Utc>)> {
        self.sessions()
            .get(&agent_id)
            .and_then(|session| session.latest)
    }

    /// Free job slots of the enabled agents connected here, per customer (customers without a
    /// free slot are left out).
    pub fn free_slots_by_customer(&self) -> std::collections::HashMap<CustomerId, usize> {
        let mut free = std::collections::HashMap::new();
        for session in self.sessions().values() {
            let slots = session
                .settings
                .max_concurrent_jobs
                .saturating_sub(session.jobs.len());
            if session.settings.enabled && slots > 0 {
                *free.entry(session.agent.customer_id()).or_insert(0) += slots;
            }
        }
        free
    }

    /// How many agents are connected here.
    pub fn connected_count(&self) -> usize {
        self.sessions().len()
    }

    /// Changes what a connected agent may run (after UpdateAgent).
    pub fn update_settings(&self, agent_id: AgentId, settings: WorkSettings) {
        if let Some(session) = self.sessions().get_mut(&agent_id) {
            session.settings = settings;
        }
    }

    /// Picks the connected agent of `customer_id` that the selector allows, that is enabled and
    /// has a free slot, preferring the least busy; or says why there is none.
    pub fn pick(
        &self,
        customer_id: CustomerId,
        selector: &AgentSelector,
    ) -> Result<AgentId, NoAgent> {
        let sessions = self.sessions();
        let mut matching = 0;
        let mut enabled = 0;
        let mut best: Option<(usize, AgentId)> = None;
        for (agent_id, session) in sessions.iter() {
            if session.agent.customer_id() != customer_id {
                continue;
            }
            if selector.agent_id.is_some_and(|wanted| wanted != *agent_id) {
                continue;
            }
            if !selector
                .labels
                .iter()
                .all(|label| session.settings.labels.contains(label))
            {
                continue;
            }
            matching += 1;
            if !session.settings.enabled {
                continue;
            }
            enabled += 1;
            let busy = session.jobs.len();
            if busy >= session.settings.max_concurrent_jobs {
                continue;
            }
            if best.is_none_or(|(least, _)| busy < least) {
                best = Some((busy, *agent_id));
            }
        }
        match best {
            Some((_, agent_id)) => Ok(agent_id),
            None if matching == 0 => {
                Err(format!("no online agent matches {}", selector.describe()))
            }
            None if enabled == 0 => Err(format!(
                "every agent matching {} is disabled",
                selector.describe()
            )),
            None => Err(format!(
                "every agent matching {} is busy",
                selector.describe()
            )),
        }
    }

    /// Takes a slot of the agent for the execution; false when it has none left (or left).
    pub fn reserve(&self, agent_id: AgentId, execution_id: ExecutionId) -> bool {
        match self.sessions().get_mut(&agent_id) {
            Some(session) if session.jobs.len() < session.settings.max_concurrent_jobs => {
                session.jobs.insert(execution_id);
                true
            }
            _ => false,
        }
    }

    /// Frees the execution's slot on the agent.
    pub fn release(&self, agent_id: AgentId, execution_id: ExecutionId) {
        if let Some(session) = self.sessions().get_mut(&agent_id) {
            session.jobs.remove(&execution_id);
        }
    }

    /// Queues a command on the agent's stream; false when the agent is not connected here or its
    /// stream is not keeping up.
    pub fn send(&self, agent_id: AgentId, command: pb::connect_response::Command) -> bool {
        let sessions = self.sessions();
        let Some(session) = sessions.get(&agent_id) else {
            return false;
        };
        session
            .commands
            .try_send(Ok(Box::new(pb::ConnectResponse {
                command: Some(command),
            })))
            .is_ok()
    }

    /// Takes the figures that arrived since the last call, marking those due for the history.
    pub fn take_unsaved(
        &self,
        sample_interval: Duration,
        lease_until: DateTime<Utc>,
        online_seconds: i64,
    ) -> Vec<HeartbeatRecord> {
        let now = Instant::now();
        let mut records = Vec::new();
        for (agent_id, session) in self.sessions().iter_mut() {
            let Some((figures, at)) = session.latest else {
                continue;
            };
            if !session.unsaved {
                continue;
            }
            session.unsaved = false;
            let sample = session
                .last_sample
                .is_none_or(|last| now.duration_since(last) >= sample_interval);
            if sample {
                session.last_sample = Some(now);
            }
            records.push(HeartbeatRecord {
                agent_id: *agent_id,
                customer_id: session.agent.customer_id(),
                connection_id: session.connection_id,
                figures,
                at,
                sample,
                running: session.running.clone(),
                lease_until,
                online_seconds,
            });
        }
        records
    }

    /// Puts back figures whose save failed, so the next save takes them (and renews the
    /// leases they carry), unless newer ones arrived or the agent's stream changed.
    pub fn mark_unsaved(&self, records: &[HeartbeatRecord]) {
        let mut sessions = self.sessions();
        for record in records {
            if let Some(session) = sessions.get_mut(&record.agent_id)
                && session.connection_id == record.connection_id
            {
                session.unsaved = true;
            }
        }
    }

    /// Ends and removes every stream silent for `offline_after`; returns them so they can be
    /// marked offline.
    pub fn expire_silent(&self, offline_after: Duration) -> Vec<(AuthenticatedAgent, i64)> {
        let now = Instant::now();
        let mut sessions = self.sessions();
        let silent: Vec<AgentId> = sessions
            .iter()
            .filter(|(_, session)| now.duration_since(session.last_heartbeat) >= offline_after)
            .map(|(agent_id, _)| *agent_id)
            .collect();
        silent
            .into_iter()
            .filter_map(|agent_id| sessions.remove(&agent_id))
            .map(|session| {
                let _ = session.kick.send(Status::deadline_exceeded(format!(
                    "no heartbeat for {} s",
                    offline_after.as_secs()
                )));
                (session.agent, session.connection_id)
            })
            .collect()
    }

    /// Ends the agent's stream, if any (the agent was deleted or registered again).
    pub fn disconnect(&self, agent_id: AgentId, status: Status) {
        if let Some(session) = self.sessions().remove(&agent_id) {
            let _ = session.kick.send(status);
        }
    }

    /// Ends every stream (shutdown); returns them so they can be marked offline.
    pub fn disconnect_all(&self, status: &Status) -> Vec<(AuthenticatedAgent, i64)> {
        self.sessions()
            .drain()
            .map(|(_, session)| {
                let _ = session.kick.send(status.clone());
                (session.agent, session.connection_id)
            })
            .collect()
    }

    /// The agents connected here.
    pub fn connected_agents(&self) -> Vec<AgentId> {
        self.sessions().keys().copied().collect()
    }

    /// Sends the agent its complete monitor set, unless this stream already has exactly this
    /// set. Returns whether it was sent.
    pub fn assign_monitors(&self, agent_id: AgentId, set: pb::AssignMonitors) -> bool {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        prost::Message::encode_to_vec(&set).hash(&mut hasher);
        let digest = hasher.finish();
        let mut sessions = self.sessions();
        let Some(session) = sessions.get_mut(&agent_id) else {
            return false;
        };
        if session.monitors == Some(digest) {
            return false;
        }
        let sent = session
            .commands
            .try_send(Ok(Box::new(pb::ConnectResponse {
                command: Some(pb::connect_response::Command::AssignMonitors(set)),
            })))
            .is_ok();
        if sent {
            session.monitors = Some(digest);
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: i64, customer: i64) -> AuthenticatedAgent {
        AuthenticatedAgent::new(
            AgentId::from_db(id),
            CustomerId::from_db(customer),
            format!("agent-{id}"),
            format!("Agent {id}"),
        )
    }

    fn settings(labels: &[&str], max: usize) -> WorkSettings {
        WorkSettings {
            labels: labels.iter().map(|label| label.to_string()).collect(),
            enabled: true,
            max_concurrent_jobs: max,
        }
    }

    fn attach(
        hub: &AgentHub,
        id: i64,
        customer: i64,
        work: WorkSettings,
    ) -> (SessionTicket, mpsc::Receiver<Command>) {
        let (sender, receiver) = mpsc::channel(8);
        (
            hub.attach(agent(id, customer), sender, work, HashSet::new()),
            receiver,
        )
    }

    fn figures() -> AgentFigures {
        AgentFigures {
            cpu_percent: 1.0,
            memory_percent: 2.0,
            memory_used_bytes: 3,
            memory_total_bytes: 4,
            disk_free_bytes: 5,
            load_average: 0.1,
            running_jobs: 0,
        }
    }

    #[test]
    fn a_newer_stream_replaces_the_older() {
        let hub = AgentHub::new();
        let (mut first, _one) = attach(&hub, 1, 1, settings(&[], 1));
        let (second, _two) = attach(&hub, 1, 1, settings(&[], 1));
        assert_eq!(
            first.kicked.try_recv().expect("kicked").code(),
            tonic::Code::Aborted
        );
        assert!(!hub.heartbeat(
            AgentId::from_db(1),
            first.connection_id,
            figures(),
            vec![],
            Utc::now()
        ));
        assert!(hub.heartbeat(
            AgentId::from_db(1),
            second.connection_id,
            figures(),
            vec![],
            Utc::now()
        ));
        assert!(!hub.detach(AgentId::from_db(1), first.connection_id));
        assert!(hub.detach(AgentId::from_db(1), second.connection_id));
        assert!(!hub.is_connected(AgentId::from_db(1)));
    }

    #[test]
    fn free_slots_are_counted_per_customer_over_enabled_agents() {
        let hub = AgentHub::new();
        assert!(hub.free_slots_by_customer().is_empty());
        let _a = attach(&hub, 1, 1, settings(&[], 2));
        let _b = attach(&hub, 2, 1, settings(&[], 3));
        let _c = attach(&hub, 3, 2, settings(&[], 1));
        let _d = attach(
            &hub,
            4,
            3,
            WorkSettings {
                enabled: false,
                ..settings(&[], 4)
            },
        );
        assert!(hub.reserve(AgentId::from_db(3), ExecutionId::from_db(30)));
        assert!(hub.reserve(AgentId::from_db(1), ExecutionId::from_db(10)));
        let free = hub.free_slots_by_customer();
        assert_eq!(free.get(&CustomerId::from_db(1)), Some(&4));
        // Customer 2's only agent is busy, customer 3's is disabled.
        assert_eq!(free.len(), 1);
    }

    #[test]
    fn picking_respects_customer_selector_enabled_and_capacity() {
        let hub = AgentHub::new();
        let _a = attach(&hub, 1, 1, settings(&["linux"], 1));
        let _b = attach(&hub, 2, 1, settings(&["linux", "docker"], 2));
        let _c = attach(&hub, 3, 2, settings(&["linux", "docker"], 5));
        let docker = AgentSelector {
            agent_id: None,
            labels: vec!["docker".into()],
        };
        let customer = CustomerId::from_db(1);
        assert_eq!(hub.pick(customer, &docker), Ok(AgentId::from_db(2)));
        assert!(hub.reserve(AgentId::from_db(2), ExecutionId::from_db(10)));
        assert!(hub.reserve(AgentId::from_db(2), ExecutionId::from_db(11)));
        assert!(!hub.reserve(AgentId::from_db(2), ExecutionId::from_db(12)));
        assert_eq!(
            hub.pick(customer, &docker),
            Err("every agent matching labels [docker] is busy".into())
        );
        hub.release(AgentId::from_db(2), ExecutionId::from_db(10));
        assert_eq!(hub.pick(customer, &docker), Ok(AgentId::from_db(2)));
        let gpu = AgentSelector {
            agent_id: None,
            labels: vec!["gpu".into()],
        };
        assert_eq!(
            hub.pick(customer, &gpu),
            Err("no online agent matches labels [gpu]".into())
        );
        let mut disabled = settings(&["linux"], 1);
        disabled.enabled = false;
        hub.update_settings(AgentId::from_db(1), disabled);
        let one = AgentSelector {
            agent_id: Some(AgentId::from_db(1)),
            labels: vec![],
        };
        assert_eq!(
            hub.pick(customer, &one),
            Err("every agent matching agent 1 is disabled".into())
        );
        // Another customer's agent is never picked, whatever the selector says.
        let theirs = AgentSelector {
            agent_id: Some(AgentId::from_db(3)),
            labels: vec![],
        };
        assert!(hub.pick(customer, &theirs).is_err());
    }

    #[test]
    fn unsaved_figures_are_taken_once_with_leases() {
        let hub = AgentHub::new();
        let (ticket, _rx) = attach(&hub, 7, 1, settings(&[], 1));
        let until = Utc::now();
        assert!(
            hub.take_unsaved(Duration::from_secs(60), until, 10)
                .is_empty()
        );
        assert!(hub.reserve(AgentId::from_db(7), ExecutionId::from_db(5)));
        // Only its own claimed executions count, each once, whatever else it lists.
        hub.heartbeat(
            AgentId::from_db(7),
            ticket.connection_id,
            figures(),
            vec![
                ExecutionId::from_db(5),
                ExecutionId::from_db(5),
                ExecutionId::from_db(99),
            ],
            Utc::now(),
        );
        let records = hub.take_unsaved(Duration::from_secs(60), until, 10);
        assert_eq!(records.len(), 1);
        assert!(records[0].sample);
        assert_eq!(records[0].running, [ExecutionId::from_db(5)]);
        assert_eq!(records[0].online_seconds, 10);
        assert!(
            hub.take_unsaved(Duration::from_secs(60), until, 10)
                .is_empty()
        );
        hub.heartbeat(
            AgentId::from_db(7),
            ticket.connection_id,
            figures(),
            vec![],
            Utc::now(),
        );
        assert!(!hub.take_unsaved(Duration::from_secs(60), until, 10)[0].sample);
    }

    #[test]
    fn silent_streams_expire() {
        let hub = AgentHub::new();
        let (mut ticket, _rx) = attach(&hub, 3, 1, settings(&[], 1));
        assert!(hub.expire_silent(Duration::from_secs(60)).is_empty());
        assert_eq!(hub.expire_silent(Duration::ZERO).len(), 1);
        assert_eq!(
            ticket.kicked.try_recv().expect("kicked").code(),
            tonic::Code::DeadlineExceeded
        );
        assert!(!hub.is_connected(AgentId::from_db(3)));
    }
}
