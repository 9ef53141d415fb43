//! Migrations under concurrency: replicas starting together on an empty database, and a server
//! older than the schema it finds.

use cygnet_migrations::{Migrator, MigratorTrait};
use cygnet_server::store::{DatabaseOptions, Store};
use cygnet_testkit::{Backend, EmptyDatabase};
use sea_orm::{ConnectionTrait, Database};

async fn store(url: &str) -> Store {
    Store::connect(&DatabaseOptions {
        url: url.to_owned(),
        max_connections: 2,
    })
    .await
    .expect("connect")
}

async fn applied_versions(url: &str) -> Vec<String> {
    let db = Database::connect(url).await.expect("connect");
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT version FROM seaql_migrations ORDER BY version",
        ))
        .await
        .expect("read seaql_migrations");
    db.close().await.expect("close");
    rows.iter()
        .map(|row| row.try_get::<String>("", "version").expect("version"))
        .collect()
}

/// Four replicas starting at once on an empty database: every one starts, and every migration
/// is applied exactly once.
async fn replicas_starting_together_migrate_once(backend: Backend) {
    let database = EmptyDatabase::create(&backend).await;
    let mut starts = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = database.url.clone();
        starts.spawn(async move {
            let store = store(&url).await;
            let result = store.migrate_up().await;
            store.close().await.expect("close");
            result
        });
    }
    while let Some(result) = starts.join_next().await {
        result
            .expect("join")
            .expect("every replica migrates or finds it done");
    }
    let known: Vec<String> = Migrator::migrations()
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    let mut expected = known.clone();
    expected.sort();
    assert_eq!(applied_versions(&database.url).await, expected);
}

/// A database migrated by a newer server: an older one refuses to start (and to revert), naming
/// the migration it does not know, and changes nothing.
async fn an_older_server_refuses_a_newer_schema(backend: Backend) {
    let database = EmptyDatabase::create(&backend).await;
    let current = store(&database.url).await;
    current.migrate_up().await.expect("migrate");
    current.close().await.expect("close");
    let db = Database::connect(&database.url).await.expect("connect");
    db.execute_unprepared(
        "INSERT INTO seaql_migrations (version, applied_at) \
         VALUES ('m29990101_000001_from_the_future', 0)",
    )
    .await
    .expect("record a future migration");
    db.close().await.expect("close");
    let before = applied_versions(&database.url).await;

    let older = store(&database.url).await;
    for command in [
        cygnet_server::store::MigrationCommand::Up,
        cygnet_server::store::MigrationCommand::Down { steps: 1 },
    ] {
        let error = older
            .migrate(command)
            .await
            .expect_err("a newer schema is refused")
            .to_string();
        assert!(
            error.contains("m29990101_000001_from_the_future") && error.contains("newer"),
            "{command:?}: {error}"
        );
    }
    older.close().await.expect("close");
    assert_eq!(applied_versions(&database.url).await, before);
}

cygnet_testkit::backend_tests!(
    replicas_starting_together_migrate_once,
    an_older_server_refuses_a_newer_schema
);
