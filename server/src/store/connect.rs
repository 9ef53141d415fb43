//! Opening the database and applying migrations.

use std::{path::Path, time::Duration};

use cygnet_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DbErr};

use super::Store;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DatabaseOptions {
    /// `sqlite://PATH?mode=rwc` or `postgres://…`.
    pub url: String,
    /// Upper bound of pooled connections.
    pub max_connections: u32,
}

/// What `cygnet-server migrate` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationCommand {
    /// Apply every pending migration.
    Up,
    /// Revert the last `steps` applied migrations.
    Down { steps: u32 },
}

impl Store {
    /// Connects to the database. A SQLite file (and its directory) is created when missing and
    /// runs in WAL mode, so readers never wait for the writer.
    pub async fn connect(options: &DatabaseOptions) -> Result<Store, DbErr> {
        if let Some(path) = sqlite_path(&options.url)
            && let Some(parent) = Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                DbErr::Custom(format!(
                    "cannot create database directory {}: {error}",
                    parent.display()
                ))
            })?;
        }
        let mut connect = ConnectOptions::new(options.url.clone());
        connect
            .max_connections(options.max_connections)
            .min_connections(1)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(10))
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|sqlite| {
                sqlite
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
            });
        let db = Database::connect(connect).await?;
        Ok(Store {
            db,
            auth_cache: Default::default(),
        })
    }

    /// Applies every pending migration.
    pub async fn migrate_up(&self) -> Result<(), DbErr> {
        Migrator::up(&self.db, None).await
    }

    /// Runs a `migrate` command.
    pub async fn migrate(&self, command: MigrationCommand) -> Result<(), DbErr> {
        match command {
            MigrationCommand::Up => Migrator::up(&self.db, None).await,
            MigrationCommand::Down { steps } => Migrator::down(&self.db, Some(steps)).await,
        }
    }

    /// Every known migration with whether it is applied, in order.
    pub async fn migration_status(&self) -> Result<Vec<(String, bool)>, DbErr> {
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
}

/// The file path of a `sqlite:` URL, if it names a file.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

#[cfg(test)]
mod tests {
    use super::sqlite_path;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/cygnet/db.sqlite?mode=rwc"),
            Some("/var/lib/cygnet/db.sqlite")
        );
        assert_eq!(
            sqlite_path("sqlite://data/cygnet.db"),
            Some("data/cygnet.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://localhost/test"), None);
    }
}
