//! Opening the database and applying migrations.

use std::{net::SocketAddr, path::Path, str::FromStr, time::Duration};

use sea_orm::sqlx::postgres::PgConnectOptions;
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
        // Processes opening a new SQLite file together take turns (see `lock_sqlite_file`).
        let opening = match sqlite_path(&options.url) {
            Some(path) => Some(super::migrations::lock_sqlite_file(path).await?),
            None => None,
        };
        let db = Database::connect(connect_options(&options.url, options.max_connections)).await?;
        // SQLite has one writer at a time. Writers on several connections wait for its lock in
        // SQLite's busy handler, which sleeps 1, 2, 5, 10… ms between tries and leaves the lock
        // idle meanwhile (under load, a third of the time); one pooled connection for every
        // write queues them in the pool instead, each taking the lock the moment it is free.
        // Readers keep their own connections (WAL: they never wait for the writer).
        let writer = match db.get_database_backend() {
            sea_orm::DbBackend::Sqlite => {
                Database::connect(connect_options(&options.url, 1)).await?
            }
            _ => db.clone(),
        };
        drop(opening);
        Ok(Store {
            url: options.url.as_str().into(),
            db,
            writer,
            auth_cache: Default::default(),
            quota_defaults: Default::default(),
            quota_notices: Default::default(),
            steps_cache: Default::default(),
            audit_queue: Default::default(),
            health: Default::default(),
        })
    }
}

pub(super) fn connect_options(url: &str, max_connections: u32) -> ConnectOptions {
    let mut connect = ConnectOptions::new(url.to_owned());
    connect
        .max_connections(max_connections)
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
    // The option is set through Linux-only calls; elsewhere the pool's sockets keep sqlx's
    // defaults.
    #[cfg(target_os = "linux")]
    if let Some(server) = postgres_tcp_server(url) {
        connect.map_sqlx_postgres_pool_opts(move |pool| {
            let server = server.clone();
            pool.after_connect(move |_, _| {
                let server = server.clone();
                Box::pin(async move {
                    set_nodelay_towards(server).await;
                    Ok(())
                })
            })
        });
    }
    connect
}

/// Host and port of a `postgres:` URL that reaches its server over TCP (not a Unix socket).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn postgres_tcp_server(url: &str) -> Option<(String, u16)> {
    if !(url.starts_with("postgres:") || url.starts_with("postgresql:")) {
        return None;
    }
    let options = PgConnectOptions::from_str(url).ok()?;
    let host = options.get_host();
    let over_tcp = options.get_socket().is_none() && !host.starts_with('/');
    over_tcp.then(|| (host.to_owned(), options.get_port()))
}

/// Gives the pool's sockets to `server` `TCP_NODELAY` (see `nodelay`). A failure costs
/// latency, not correctness, so it is logged and the connection is used as it is.
#[cfg(target_os = "linux")]
async fn set_nodelay_towards((host, port): (String, u16)) {
    let peers: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(addresses) => addresses.collect(),
        Err(error) => {
            tracing::warn!(%host, %error, "cannot resolve the database host to set TCP_NODELAY");
            return;
        }
    };
    match tokio::task::spawn_blocking(move || super::nodelay::set_on_connections_to(&peers)).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot set TCP_NODELAY on database connections");
        }
        Err(error) => tracing::warn!(%error, "setting TCP_NODELAY stopped"),
    }
}

/// The file path of a `sqlite:` URL, if it names a file.
pub fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

#[cfg(test)]
mod tests {
    use super::{postgres_tcp_server, sqlite_path};

    #[test]
    fn postgres_servers_reached_over_tcp() {
        assert_eq!(
            postgres_tcp_server("postgres://postgres@127.0.0.1:5432/test"),
            Some(("127.0.0.1".to_owned(), 5432))
        );
        assert_eq!(
            postgres_tcp_server("postgresql://db.example:6543/cygnet"),
            Some(("db.example".to_owned(), 6543))
        );
        assert_eq!(
            postgres_tcp_server("postgres://postgres@localhost/test?host=/var/run/postgresql"),
            None
        );
        assert_eq!(postgres_tcp_server("sqlite://data/cygnet.db"), None);
    }

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
