//! Which database a test server uses: SQLite, or a PostgreSQL database created for the test and
//! dropped after it.

use std::sync::atomic::{AtomicU32, Ordering};

use sea_orm::{ConnectionTrait, Database};

/// Which database a test server uses.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// Admin URL of a PostgreSQL server; each test creates its own database there.
    Postgres(String),
}

impl Backend {
    /// PostgreSQL, when `CYGNET_TEST_DATABASE_URL` is set.
    pub fn postgres() -> Option<Backend> {
        std::env::var("CYGNET_TEST_DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .map(Backend::Postgres)
    }
}

/// Generates one test per backend for each async fn `name(backend: Backend)` listed.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    match $crate::Backend::postgres() {
                        Some(backend) => super::$name(backend).await,
                        None => eprintln!("CYGNET_TEST_DATABASE_URL is not set: PostgreSQL run skipped"),
                    }
                }
            )*
        }
    };
}

/// A database created for one test and dropped after it.
pub(crate) struct PostgresDatabase {
    admin_url: String,
    name: String,
}

static DATABASE_COUNTER: AtomicU32 = AtomicU32::new(0);

impl PostgresDatabase {
    pub(crate) async fn create(admin_url: &str) -> (PostgresDatabase, String) {
        let name = format!(
            "cygnet_test_{}_{}_{}",
            std::process::id(),
            DATABASE_COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default()
        );
        let admin = Database::connect(admin_url)
            .await
            .expect("connect to PostgreSQL");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        admin.close().await.expect("close admin connection");
        let url = replace_database(admin_url, &name);
        (
            PostgresDatabase {
                admin_url: admin_url.to_owned(),
                name,
            },
            url,
        )
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a separate thread with its own runtime may block.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(admin) = Database::connect(&admin_url).await {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// `postgres://user@host:port/db?x` with the database replaced.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut result = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

#[cfg(test)]
#[test]
fn database_names_are_replaced() {
    assert_eq!(
        replace_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        replace_database("postgres://postgres@localhost/test?sslmode=disable", "x"),
        "postgres://postgres@localhost/x?sslmode=disable"
    );
    assert_eq!(
        replace_database("postgres://localhost", "x"),
        "postgres://localhost/x"
    );
}

/// A database nobody has migrated yet, for tests that start servers on it themselves.
pub struct EmptyDatabase {
    /// Where to connect.
    pub url: String,
    _temp_dir: Option<tempfile::TempDir>,
    _postgres: Option<PostgresDatabase>,
}

impl EmptyDatabase {
    pub async fn create(backend: &Backend) -> EmptyDatabase {
        match backend {
            Backend::Sqlite => {
                let temp_dir = tempfile::tempdir().expect("temp dir");
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    temp_dir.path().join("cygnet.db").display()
                );
                EmptyDatabase {
                    url,
                    _temp_dir: Some(temp_dir),
                    _postgres: None,
                }
            }
            Backend::Postgres(admin_url) => {
                let (database, url) = PostgresDatabase::create(admin_url).await;
                EmptyDatabase {
                    url,
                    _temp_dir: None,
                    _postgres: Some(database),
                }
            }
        }
    }
}
