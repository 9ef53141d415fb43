//! The only code that touches sea-orm.
//!
//! Tenant data is reached only through methods that take a [`TenantScope`](crate::auth::TenantScope)
//! (or, for platform-wide records, a [`PlatformAdmin`](crate::auth::PlatformAdmin) proof), so a
//! query without a tenant filter cannot be written from outside this module. Every method owns its
//! transaction; nothing partial is ever committed.

mod access;
mod activity;
mod agent_liveness;
mod agents;
mod audit;
mod auth_cache;
mod connect;
mod convert;
mod customers;
mod dispatch;
pub(crate) mod entities;
mod environments;
mod error;
mod executions;
mod job_events;
mod memberships;
mod monitor_checks;
mod monitors;
mod nodelay;
mod notifications;
mod pipelines;
mod registration_tokens;
mod release_executions;
mod releases;
mod stats;
mod tokens;
mod users;
mod variables;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};

pub use access::CustomerAccess;
pub use agent_liveness::HeartbeatRecord;
pub use agents::FoundAgent;
pub use audit::{AuditEntry, AuditFilter, NewAuditEntry};
pub use connect::{DatabaseOptions, MigrationCommand};
pub use dispatch::LostExecution;
pub use error::StoreError;
pub use executions::Cancellation;
pub use notifications::{NotificationHandler, Notifier, spawn_listener};
pub use release_executions::{ReleaseContext, ReleaseEffects};
pub use stats::{CustomerStats, ExecutionCounts, PoolUsage};
pub use tokens::AuthenticatedToken;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Tokens and customer access recently read, for authentication and authorization.
    auth_cache: std::sync::Arc<auth_cache::AuthCache>,
}

impl Store {
    /// The database backend in use.
    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so two writers queue on the busy timeout instead of failing when one
    /// upgrades a read lock.
    async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        let sqlite_transaction_mode = match self.backend() {
            DbBackend::Sqlite => Some(SqliteTransactionMode::Immediate),
            _ => None,
        };
        self.db
            .begin_with_options(TransactionOptions {
                isolation_level: None,
                access_mode: None,
                sqlite_transaction_mode,
            })
            .await
    }

    /// Closes the connection pool; in-flight queries finish first.
    pub async fn close(self) -> Result<(), DbErr> {
        self.db.close().await
    }
}

/// The current time at the precision both backends store (microseconds), so a value written and
/// the value read back compare equal.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
