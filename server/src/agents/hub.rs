//! The agents connected to this server. Heartbeats land here, in memory; the liveness task
//! persists them in batches, so a heartbeat costs no database write of its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::RngExt;
use tokio::sync::oneshot;
use tonic::Status;

use crate::auth::AuthenticatedAgent;
use crate::domain::{AgentFigures, AgentId};
use crate::store::HeartbeatRecord;

struct Session {
    connection_id: i64,
    agent: AuthenticatedAgent,
    /// Ends the session's stream with the given status.
    kick: oneshot::Sender<Status>,
    last_heartbeat: Instant,
    latest: Option<(AgentFigures, DateTime<Utc>)>,
    /// Figures arrived since the last flush.
    unsaved: bool,
    last_sample: Option<Instant>,
}

/// What the stream handler keeps of its session.
pub struct SessionTicket {
    pub connection_id: i64,
    /// Completes when the hub ends the session (replaced, expired, deleted, shutdown).
    pub kicked: oneshot::Receiver<Status>,
}

/// Open agent streams of this server, keyed by agent.
pub struct AgentHub {
    sessions: Mutex<HashMap<AgentId, Session>>,
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
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<AgentId, Session>> {
        // A panic while holding the lock cannot leave the map inconsistent (every update is a
        // single insert/remove/field write), so a poisoned lock is still usable.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new stream for the agent. An older stream of the same agent is ended with
    /// ABORTED: the newest connection wins.
    pub fn attach(&self, agent: AuthenticatedAgent) -> SessionTicket {
        let connection_id = rand::rng().random_range(1..i64::MAX);
        let (kick, kicked) = oneshot::channel();
        let session = Session {
            connection_id,
            agent: agent.clone(),
            kick,
            last_heartbeat: Instant::now(),
            latest: None,
            unsaved: false,
            last_sample: None,
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
        at: DateTime<Utc>,
    ) -> bool {
        let mut sessions = self.sessions();
        match sessions.get_mut(&agent_id) {
            Some(session) if session.connection_id == connection_id => {
                session.last_heartbeat = Instant::now();
                session.latest = Some((figures, at));
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

    /// How many agents are connected here.
    pub fn connected_count(&self) -> usize {
        self.sessions().len()
    }

    /// Takes the figures that arrived since the last call, marking those due for the history.
    pub fn take_unsaved(&self, sample_interval: Duration) -> Vec<HeartbeatRecord> {
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
            });
        }
        records
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

    /// Ends the agent's stream, if any (the agent was deleted).
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CustomerId;

    fn agent(id: i64) -> AuthenticatedAgent {
        AuthenticatedAgent::new(
            AgentId::from_db(id),
            CustomerId::from_db(1),
            format!("agent-{id}"),
            format!("Agent {id}"),
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
        let mut first = hub.attach(agent(1));
        let second = hub.attach(agent(1));
        assert_eq!(
            first.kicked.try_recv().expect("kicked").code(),
            tonic::Code::Aborted
        );
        assert!(!hub.heartbeat(
            AgentId::from_db(1),
            first.connection_id,
            figures(),
            Utc::now()
        ));
        assert!(hub.heartbeat(
            AgentId::from_db(1),
            second.connection_id,
            figures(),
            Utc::now()
        ));
        assert!(!hub.detach(AgentId::from_db(1), first.connection_id));
        assert!(hub.is_connected(AgentId::from_db(1)));
        assert!(hub.detach(AgentId::from_db(1), second.connection_id));
        assert!(!hub.is_connected(AgentId::from_db(1)));
    }

    #[test]
    fn unsaved_figures_are_taken_once_and_sampled_by_interval() {
        let hub = AgentHub::new();
        let ticket = hub.attach(agent(7));
        assert!(hub.take_unsaved(Duration::from_secs(60)).is_empty());
        hub.heartbeat(
            AgentId::from_db(7),
            ticket.connection_id,
            figures(),
            Utc::now(),
        );
        let records = hub.take_unsaved(Duration::from_secs(60));
        assert_eq!(records.len(), 1);
        assert!(records[0].sample);
        assert!(hub.take_unsaved(Duration::from_secs(60)).is_empty());
        hub.heartbeat(
            AgentId::from_db(7),
            ticket.connection_id,
            figures(),
            Utc::now(),
        );
        let records = hub.take_unsaved(Duration::from_secs(60));
        assert!(
            !records[0].sample,
            "second sample within the interval is not kept"
        );
    }

    #[test]
    fn silent_streams_expire() {
        let hub = AgentHub::new();
        let mut ticket = hub.attach(agent(3));
        assert!(hub.expire_silent(Duration::from_secs(60)).is_empty());
        let expired = hub.expire_silent(Duration::ZERO);
        assert_eq!(expired.len(), 1);
        assert_eq!(
            ticket.kicked.try_recv().expect("kicked").code(),
            tonic::Code::DeadlineExceeded
        );
        assert!(!hub.is_connected(AgentId::from_db(3)));
    }
}
