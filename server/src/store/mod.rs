//! The only code that touches sea-orm.
//!
//! Tenant data is reached only through methods that take a [`TenantScope`](crate::auth::TenantScope)
//! (or, for platform-wide records, a [`PlatformAdmin`](crate::auth::PlatformAdmin) proof), so a
//! query without a tenant filter cannot be written from outside this module. The few operations
//! that span customers (the dispatcher's queue, leases, the liveness task's heartbeats) belong to
//! the server's background tasks and are reached only through [`SystemStore`], which takes a
//! [`SystemScope`](crate::auth::SystemScope). Every method owns its transaction; nothing partial
//! is ever committed.

mod access;
mod activity;
mod agent_liveness;
mod agents;
mod audit;
mod auth_cache;
mod backup;
mod connect;
mod convert;
mod customers;
mod dispatch;
pub(crate) mod entities;
mod environments;
mod error;
mod executions;
mod health;
mod invitations;
mod job_events;
mod memberships;
mod migrations;
mod monitor_checks;
mod monitors;
#[cfg(target_os = "linux")]
mod nodelay;
mod notifications;
mod pipelines;
mod quotas;
mod registration_tokens;
mod release_executions;
mod releases;
mod retention;
mod rollups;
mod schedules;
mod stats;
mod tokens;
mod triggered;
mod usage;
mod users;
mod variables;
mod webhooks;

use chrono::{DateTime, SubsecRound, Utc};

use crate::auth::SystemScope;
use crate::domain::QuotaLimits;
use sea_orm::{
    AccessMode, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, IsolationLevel,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

pub use access::CustomerAccess;
pub use agent_liveness::HeartbeatRecord;
pub use agents::{FoundAgent, PresentedHashes};
pub use audit::{AuditEntry, AuditFilter, NewAuditEntry};
pub use connect::{DatabaseOptions, MigrationCommand, sqlite_path as sqlite_file};
pub use dispatch::LostExecution;
pub use error::StoreError;
pub use executions::Cancellation;
pub use health::DatabaseHealth;
pub use notifications::{NotificationHandler, Notifier, spawn_listener};
pub use release_executions::{ReleaseContext, ReleaseEffects};
pub(crate) use rollups::FOLD_BATCH;
pub use schedules::{Fired, SchedulePatch};
pub use stats::{CustomerStats, ExecutionCounts, PoolUsage};
pub use tokens::AuthenticatedToken;
pub use triggered::NotQueued;
pub use variables::{JobVariable, JobVariables, StageGate};
pub use webhooks::{KEPT_DELIVERIES, Queued, WebhookPatch};

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// How the database was reached (migrations take a connection of their own).
    url: std::sync::Arc<str>,
    db: DatabaseConnection,
    /// Where writes go: on SQLite a pool of one connection (see `connect`), on PostgreSQL the
    /// same pool as `db`.
    writer: DatabaseConnection,
    /// Tokens and customer access recently read, for authentication and authorization.
    auth_cache: std::sync::Arc<auth_cache::AuthCache>,
    /// The platform's quota limits (a customer's overrides are read with each check).
    quota_defaults: std::sync::Arc<QuotaLimits>,
    /// When customers were last told that a quota blocked their work.
    quota_notices: std::sync::Arc<quotas::QuotaNotices>,
    /// Pipeline step versions already parsed (they never change).
    steps_cache: std::sync::Arc<pipelines::StepsCache>,
    /// Audit entries waiting for their group's insert.
    audit_queue: std::sync::Arc<audit::AuditQueue>,
    /// Whether the database answers (see `health.rs`).
    health: std::sync::Arc<DatabaseHealth>,
}

impl Store {
    /// The same database with `limits` as the platform's quota defaults.
    pub fn with_quota_defaults(mut self, limits: QuotaLimits) -> Self {
        self.quota_defaults = std::sync::Arc::new(limits);
        self
    }

    /// Bumped after every change made through this server that may change who may do what
    /// (tokens, users, memberships, customers): long-lived streams re-check their caller then.
    pub fn access_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.auth_cache.changes()
    }

    /// The database backend in use.
    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Starts a transaction that will write (see [`begin_write`]).
    async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        begin_write(&self.writer).await
    }

    /// A read-only transaction whose reads all see one moment, for a record read in several
    /// queries (a release execution and its stages): on PostgreSQL `REPEATABLE READ`, on SQLite
    /// a deferred transaction (its first read fixes the snapshot). Without it a change committed
    /// between two of the reads showed half of itself.
    async fn read_snapshot(&self) -> Result<DatabaseTransaction, DbErr> {
        let (isolation_level, access_mode) = match self.backend() {
            DbBackend::Postgres => (
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            ),
            _ => (None, None),
        };
        self.db
            .begin_with_options(TransactionOptions {
                isolation_level,
                access_mode,
                sqlite_transaction_mode: None,
            })
            .await
    }

    /// The cross-customer operations, for a background task of the server.
    pub(crate) fn system(&self, scope: &SystemScope) -> SystemStore {
        SystemStore {
            db: self.db.clone(),
            writer: self.writer.clone(),
            store: self.clone(),
            scope: *scope,
        }
    }

    /// Closes the connection pools; in-flight queries finish first.
    pub async fn close(self) -> Result<(), DbErr> {
        if self.backend() == DbBackend::Sqlite {
            self.writer.close().await?;
        }
        self.db.close().await
    }
}

/// The store's operations that span customers (the queue of every customer, every agent's
/// lease, every customer's activity), for the server's own background tasks. Obtained only with
/// a [`SystemScope`] through [`Store::system`], so request handlers, which hold a
/// [`TenantScope`](crate::auth::TenantScope), cannot reach them by accident. Cheap to clone.
#[derive(Clone)]
pub struct SystemStore {
    db: DatabaseConnection,
    /// See [`Store`]'s.
    writer: DatabaseConnection,
    /// The scoped operations, for a task that also acts with a proof (an agent's own rows).
    store: Store,
    scope: SystemScope,
}

impl SystemStore {
    async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        begin_write(&self.writer).await
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// The operations that take a proof (a task acting for one agent, say).
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The task this view acts for.
    pub(crate) fn scope(&self) -> SystemScope {
        self.scope
    }
}

/// Starts a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`), so two writers queue on the busy timeout instead of failing when one
/// upgrades a read lock.
async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let sqlite_transaction_mode = match db.get_database_backend() {
        DbBackend::Sqlite => Some(SqliteTransactionMode::Immediate),
        _ => None,
    };
    db.begin_with_options(TransactionOptions {
        isolation_level: None,
        access_mode: None,
        sqlite_transaction_mode,
    })
    .await
}

/// The current time at the precision both backends store (microseconds), so a value written and
/// the value read back compare equal.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
