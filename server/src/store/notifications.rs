//! Cross-replica wake-ups on PostgreSQL (`LISTEN`/`NOTIFY`): new work, cancellations and
//! execution changes made through one replica reach the others at once. Each replica also sweeps
//! periodically, so a lost notification only delays, never loses, work. On SQLite (one replica)
//! this does nothing.

use std::collections::HashSet;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Store;
use crate::domain::{ExecutionId, ReleaseExecutionId};

const WORK_CHANNEL: &str = "cygnet_work";
const CANCEL_CHANNEL: &str = "cygnet_cancel";
const EXECUTION_CHANNEL: &str = "cygnet_execution";
const RELEASE_CHANNEL: &str = "cygnet_release";
/// Execution changes are coalesced for this long before they are published.
const COALESCE: Duration = Duration::from_millis(20);

enum Outgoing {
    Work,
    Cancel,
    Execution(ExecutionId),
    Release(ReleaseExecutionId),
}

/// Publishes notifications (no-op on SQLite); cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    outgoing: Option<mpsc::UnboundedSender<Outgoing>>,
}

impl Notifier {
    /// A notifier that publishes nothing (SQLite, tests of one replica).
    pub fn disabled() -> Self {
        Self { outgoing: None }
    }

    /// Starts publishing through the store's database when it is PostgreSQL.
    pub fn start(store: &Store) -> Self {
        if store.backend() != DbBackend::Postgres {
            return Self::disabled();
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(publish(store.db.clone(), receiver));
        Self {
            outgoing: Some(sender),
        }
    }

    fn send(&self, message: Outgoing) {
        if let Some(outgoing) = &self.outgoing {
            let _ = outgoing.send(message);
        }
    }

    pub fn work_queued(&self) {
        self.send(Outgoing::Work);
    }

    pub fn cancel_requested(&self) {
        self.send(Outgoing::Cancel);
    }

    pub fn execution_changed(&self, execution_id: ExecutionId) {
        self.send(Outgoing::Execution(execution_id));
    }

    pub fn release_changed(&self, release_execution_id: ReleaseExecutionId) {
        self.send(Outgoing::Release(release_execution_id));
    }
}

async fn notify(db: &DatabaseConnection, channel: &str, payload: &str) {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [channel.into(), payload.into()],
    );
    if let Err(error) = db.execute_raw(statement).await {
        tracing::debug!(%error, channel, "could not publish a notification");
    }
}

async fn publish(db: DatabaseConnection, mut receiver: mpsc::UnboundedReceiver<Outgoing>) {
    while let Some(first) = receiver.recv().await {
        let (mut work, mut cancel) = (false, false);
        let mut executions = HashSet::new();
        let mut releases = HashSet::new();
        let mut take = |message: Outgoing| match message {
            Outgoing::Work => work = true,
            Outgoing::Cancel => cancel = true,
            Outgoing::Execution(id) => {
                executions.insert(id);
            }
            Outgoing::Release(id) => {
                releases.insert(id);
            }
        };
        take(first);
        let deadline = tokio::time::sleep(COALESCE);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                message = receiver.recv() => match message {
                    Some(message) => take(message),
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        if work {
            notify(&db, WORK_CHANNEL, "").await;
        }
        if cancel {
            notify(&db, CANCEL_CHANNEL, "").await;
        }
        for execution_id in executions {
            notify(&db, EXECUTION_CHANNEL, &execution_id.to_string()).await;
        }
        for release_execution_id in releases {
            notify(&db, RELEASE_CHANNEL, &release_execution_id.to_string()).await;
        }
    }
}

/// What a listener does with other replicas' notifications.
pub trait NotificationHandler: Send + Sync + 'static {
    /// New work or a cancellation was published.
    fn work(&self);
    /// Something of an execution was stored.
    fn execution_changed(&self, execution_id: ExecutionId);
    /// A release execution moved.
    fn release_changed(&self, release_execution_id: ReleaseExecutionId);
}

/// Listens for other replicas' notifications and hands them to `handler`; reconnects after a
/// lost connection. Does nothing on SQLite.
pub fn spawn_listener(
    store: &Store,
    handler: impl NotificationHandler,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    if store.backend() != DbBackend::Postgres {
        return None;
    }
    let pool = store.db.get_postgres_connection_pool().clone();
    Some(tokio::spawn(async move {
        loop {
            let mut listener = match sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await
            {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for notifications; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            };
            if let Err(error) = listener
                .listen_all([
                    WORK_CHANNEL,
                    CANCEL_CHANNEL,
                    EXECUTION_CHANNEL,
                    RELEASE_CHANNEL,
                ])
                .await
            {
                tracing::warn!(%error, "cannot listen for notifications; retrying");
                continue;
            }
            loop {
                tokio::select! {
                    notification = listener.recv() => match notification {
                        Ok(notification) => match notification.channel() {
                            WORK_CHANNEL | CANCEL_CHANNEL => handler.work(),
                            channel => {
                                if let Ok(id) = notification.payload().parse::<i64>() {
                                    if channel == RELEASE_CHANNEL {
                                        handler.release_changed(ReleaseExecutionId::from_db(id));
                                    } else {
                                        handler.execution_changed(ExecutionId::from_db(id));
                                    }
                                }
                            }
                        },
                        Err(error) => {
                            tracing::warn!(%error, "notification listener lost its connection");
                            break;
                        }
                    },
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }))
}
