//! Whether the database answers, watched by a probe of its own.
//!
//! While PostgreSQL is away, a query waits for the pool's acquire timeout, retrying refused
//! connections. The probe notices a stopped database within two or three seconds (one that
//! stops answering without refusing, within 15 s); until the database answers again,
//! API calls are refused at once with UNAVAILABLE (`database_gate.rs`), agent streams stay
//! open, and lease expiry waits (see `reachable_for`). An embedded SQLite file cannot go away:
//! it is always reachable and has no probe.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sea_orm::sqlx::{Connection, PgConnection};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Store, SystemStore};

/// How often the probe asks.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long the probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Probes refused in a row (connection refused or broken: the database is stopped or
/// restarting) that make the database unreachable.
const REFUSALS_TO_DECLARE: u32 = 2;
/// Probes unanswered in a row (each for `PROBE_TIMEOUT`) that make it unreachable: a slow
/// answer from a loaded database is not an outage (a 2-second bound flagged one under a
/// benchmark's load, and every agent stream was asked to reconnect), a database silent for
/// 15 s is.
const TIMEOUTS_TO_DECLARE: u32 = 3;

/// What one probe found.
enum Probe {
    Answered,
    Refused,
    TimedOut,
}

/// The probe's latest verdict.
#[derive(Debug)]
pub struct DatabaseHealth {
    reachable: watch::Sender<bool>,
    /// When the database last became reachable (the start, until an outage).
    since: Mutex<Instant>,
}

impl Default for DatabaseHealth {
    fn default() -> Self {
        Self {
            reachable: watch::Sender::new(true),
            since: Mutex::new(Instant::now()),
        }
    }
}

impl DatabaseHealth {
    /// Whether the last probe was answered.
    pub fn is_reachable(&self) -> bool {
        *self.reachable.borrow()
    }

    /// Whether the database has answered every probe for at least `period`: after an outage,
    /// every replica has had that long to renew the leases of the agents still connected to it
    /// before any lease may be judged expired.
    pub fn reachable_for(&self, period: Duration) -> bool {
        self.is_reachable()
            && self
                .since
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .elapsed()
                >= period
    }

    /// Changes of reachability.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.reachable.subscribe()
    }

    /// Records a probe's verdict.
    pub fn set(&self, reachable: bool) {
        let changed = self.reachable.send_if_modified(|current| {
            let changed = *current != reachable;
            *current = reachable;
            changed
        });
        if changed {
            if reachable {
                *self
                    .since
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
                tracing::warn!("database reachable again");
            } else {
                tracing::error!(
                    "database unreachable: API calls answer UNAVAILABLE until it is back"
                );
            }
        }
    }
}

impl Store {
    /// The database's reachability, as the probe last saw it.
    pub fn health(&self) -> &std::sync::Arc<DatabaseHealth> {
        &self.health
    }

    /// Starts the probe (PostgreSQL only), until `stop` is cancelled: one connection of its
    /// own, a ping each second; two refusals in a row (or three pings unanswered for 5 s each)
    /// make the database unreachable, one answer reachable again.
    pub fn spawn_health_probe(
        &self,
        stop: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if self.backend() != sea_orm::DbBackend::Postgres {
            return None;
        }
        let url = self.url.clone();
        let store = self.clone();
        Some(tokio::spawn(async move {
            let mut connection: Option<PgConnection> = None;
            let (mut refusals, mut timeouts) = (0u32, 0u32);
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => break,
                }
                let found = tokio::time::timeout(PROBE_TIMEOUT, probe(&url, &mut connection))
                    .await
                    .unwrap_or(Probe::TimedOut);
                match found {
                    Probe::Answered => {
                        (refusals, timeouts) = (0, 0);
                        store.health.set(true);
                    }
                    Probe::Refused => {
                        connection = None;
                        refusals += 1;
                        if refusals >= REFUSALS_TO_DECLARE {
                            store.health.set(false);
                        }
                    }
                    Probe::TimedOut => {
                        connection = None;
                        timeouts += 1;
                        if timeouts >= TIMEOUTS_TO_DECLARE {
                            store.health.set(false);
                        }
                    }
                }
            }
            if let Some(connection) = connection {
                let _ = connection.close().await;
            }
        }))
    }
}

async fn probe(url: &str, connection: &mut Option<PgConnection>) -> Probe {
    if connection.is_none() {
        match PgConnection::connect(url).await {
            Ok(opened) => *connection = Some(opened),
            Err(_) => return Probe::Refused,
        }
    }
    let answered = match connection {
        Some(connection) => connection.ping().await.is_ok(),
        None => false,
    };
    if answered {
        Probe::Answered
    } else {
        Probe::Refused
    }
}

impl SystemStore {
    /// See [`Store::health`].
    pub(crate) fn health(&self) -> &DatabaseHealth {
        self.store().health()
    }
}
