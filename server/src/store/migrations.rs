//! Applying and reverting migrations, one server at a time.
//!
//! Several replicas started together on an empty database would otherwise each see every
//! migration pending and run them side by side. On PostgreSQL a session advisory lock, taken on
//! the connection that then runs the migrations, serializes them across processes and machines
//! (the database releases it if the process dies); on SQLite, a lock on a file beside the
//! database does the same for processes of one machine, the only ones that can share the file.
//! Under the lock, a database migrated by a newer server (a migration this build does not know)
//! is refused before anything is changed.

use std::path::PathBuf;

use cygnet_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, FromQueryResult, Statement,
};
use sea_orm_migration::SchemaManager;

use super::Store;
use super::connect::{MigrationCommand, connect_options, sqlite_path};

/// The PostgreSQL advisory lock key held while migrating ("cygnetmg" as an integer).
const MIGRATION_LOCK_KEY: i64 = 0x6379_676e_6574_6d67;

/// Who holds the right to migrate, until dropped (or `release`d).
enum MigrationLock {
    /// A connection of its own holding the advisory lock; migrations run on it.
    Postgres(DatabaseConnection),
    /// The locked file (none for an in-memory database, private to its process); migrations
    /// run on the store's writer.
    Sqlite(Option<std::fs::File>),
}

impl Store {
    /// Applies every pending migration.
    pub async fn migrate_up(&self) -> Result<(), DbErr> {
        self.migrate(MigrationCommand::Up).await
    }

    /// Runs a `migrate` command under the migration lock.
    pub async fn migrate(&self, command: MigrationCommand) -> Result<(), DbErr> {
        let lock = self.lock_migrations().await?;
        let connection = match &lock {
            MigrationLock::Postgres(connection) => connection,
            MigrationLock::Sqlite(_) => &self.writer,
        };
        let result = match refuse_unknown_migrations(connection).await {
            Ok(()) => match command {
                MigrationCommand::Up => Migrator::up(connection, None).await,
                MigrationCommand::Down { steps } => Migrator::down(connection, Some(steps)).await,
            },
            Err(error) => Err(error),
        };
        lock.release().await;
        result
    }

    /// Every known migration with whether it is applied, in order.
    pub async fn migration_status(&self) -> Result<Vec<(String, bool)>, DbErr> {
        refuse_unknown_migrations(&self.db).await?;
        let migrations = Migrator::get_migration_with_status(&self.db).await?;
        Ok(migrations
            .iter()
            .map(|migration| {
                (
                    migration.name().to_owned(),
                    matches!(
                        migration.status(),
                        sea_orm_migration::MigrationStatus::Applied
                    ),
                )
            })
            .collect())
    }

    async fn lock_migrations(&self) -> Result<MigrationLock, DbErr> {
        match self.backend() {
            DbBackend::Postgres => {
                let connection = Database::connect(connect_options(&self.url, 1)).await?;
                connection
                    .execute_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "SELECT pg_advisory_lock($1)",
                        [MIGRATION_LOCK_KEY.into()],
                    ))
                    .await?;
                Ok(MigrationLock::Postgres(connection))
            }
            _ => {
                let Some(path) = sqlite_path(&self.url) else {
                    return Ok(MigrationLock::Sqlite(None));
                };
                let file = lock_sqlite_file(path).await?;
                Ok(MigrationLock::Sqlite(Some(file)))
            }
        }
    }
}

/// Locks the file beside a SQLite database that serializes processes opening it for the
/// first time (switching a new file to WAL takes a lock SQLite's busy timeout cannot wait for)
/// and migrating it. Held until the file is dropped.
pub(super) async fn lock_sqlite_file(database_path: &str) -> Result<std::fs::File, DbErr> {
    let lock_path = PathBuf::from(format!("{database_path}.lock"));
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| {
                DbErr::Custom(format!("cannot open {}: {error}", lock_path.display()))
            })?;
        file.lock().map_err(|error| {
            DbErr::Custom(format!("cannot lock {}: {error}", lock_path.display()))
        })?;
        Ok::<_, DbErr>(file)
    })
    .await
    .map_err(|error| DbErr::Custom(format!("lock beside the database: {error}")))?
}

impl MigrationLock {
    async fn release(self) {
        match self {
            MigrationLock::Postgres(connection) => {
                // Closing the connection ends its session, which releases the lock either way.
                let _ = connection
                    .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                    .await;
                let _ = connection.close().await;
            }
            MigrationLock::Sqlite(file) => drop(file),
        }
    }
}

#[derive(FromQueryResult)]
struct AppliedMigration {
    version: String,
}

/// Fails when the database has a migration this build does not know: it was migrated by a
/// newer server, whose schema this one must not run against (nor revert).
async fn refuse_unknown_migrations(connection: &DatabaseConnection) -> Result<(), DbErr> {
    let manager = SchemaManager::new(connection);
    let table = Migrator::migration_table_name();
    if !manager.has_table(table.to_string()).await? {
        return Ok(());
    }
    let backend = connection.get_database_backend();
    let applied = AppliedMigration::find_by_statement(Statement::from_string(
        backend,
        format!("SELECT version FROM {table}"),
    ))
    .all(connection)
    .await?;
    let known: std::collections::HashSet<String> = Migrator::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    let mut unknown: Vec<String> = applied
        .into_iter()
        .map(|row| row.version)
        .filter(|version| !known.contains(version))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    Err(DbErr::Custom(format!(
        "the database was migrated by a newer cygnet-server: it has migration(s) {} that this \
         version ({}) does not know; run that version or a newer one against this database",
        unknown.join(", "),
        env!("CARGO_PKG_VERSION"),
    )))
}
