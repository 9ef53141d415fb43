//! Execution figures from rollups (migration m20261215): whatever path a change takes (an
//! agent ending a job, a cancellation, a row deleted, two replicas folding at once), the counts
//! `ListPipelines` and `GetCustomerStats` answer equal a recount of the execution rows, before
//! the deltas are folded, after, and after an operator's rebuild.

use std::collections::HashMap;
use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_server::store::{DatabaseOptions, Store};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

use crate::common::{Backend, TestServer, eventually, step};

const WITHIN: Duration = Duration::from_secs(60);

/// `(pipeline_id, status) → count` for one customer, straight from the rows.
async fn recount(db: &DatabaseConnection, customer_id: i64) -> HashMap<(i64, String), i64> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT pipeline_id, status, COUNT(*) AS n FROM executions \
                 WHERE customer_id = {customer_id} GROUP BY pipeline_id, status"
            ),
        ))
        .await
        .expect("recount");
    rows.iter()
        .map(|row| {
            (
                (
                    row.try_get("", "pipeline_id").expect("pipeline_id"),
                    row.try_get("", "status").expect("status"),
                ),
                row.try_get("", "n").expect("n"),
            )
        })
        .collect()
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("a row");
    row.try_get_by_index(0).expect("a number")
}

/// The API's figures for the customer equal the recount, pipeline by pipeline and in all.
async fn assert_figures_match_rows(
    server: &TestServer,
    db: &DatabaseConnection,
    customer_id: i64,
    when: &str,
) -> HashMap<String, i64> {
    let rows = recount(db, customer_id).await;
    let status_of = |count: &HashMap<(i64, String), i64>, pipeline: i64, statuses: &[&str]| {
        count
            .iter()
            .filter(|((id, status), _)| *id == pipeline && statuses.contains(&status.as_str()))
            .map(|(_, n)| *n)
            .sum::<i64>()
    };
    let pipelines = server
        .admin_pipelines()
        .list_pipelines(pb::ListPipelinesRequest {
            customer_id,
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .expect("list pipelines")
        .into_inner()
        .pipelines;
    for pipeline in &pipelines {
        let stats = pipeline.stats.expect("stats");
        let total = rows
            .iter()
            .filter(|((id, _), _)| *id == pipeline.id)
            .map(|(_, n)| *n)
            .sum::<i64>();
        assert_eq!(
            (
                stats.executions_total,
                stats.executions_succeeded,
                stats.executions_failed
            ),
            (
                total,
                status_of(&rows, pipeline.id, &["succeeded"]),
                status_of(&rows, pipeline.id, &["failed", "timed_out"]),
            ),
            "{when}: pipeline {} counters",
            pipeline.name
        );
    }
    let stats = server
        .customers(crate::common::ADMIN_TOKEN)
        .get_customer_stats(pb::GetCustomerStatsRequest { customer_id })
        .await
        .expect("stats")
        .into_inner()
        .stats
        .expect("stats");
    let mut by_status: HashMap<String, i64> = HashMap::new();
    for ((_, status), n) in &rows {
        *by_status.entry(status.clone()).or_default() += n;
    }
    let get = |status: &str| by_status.get(status).copied().unwrap_or(0);
    assert_eq!(
        (
            stats.executions_total,
            stats.executions_succeeded,
            stats.executions_failed
        ),
        (
            by_status.values().sum::<i64>(),
            get("succeeded"),
            get("failed") + get("timed_out"),
        ),
        "{when}: the customer's figures"
    );
    by_status
}

async fn figures_equal_a_recount_through_every_change(backend: Backend) {
    let server = TestServer::start(backend.clone()).await;
    // On PostgreSQL a second replica folds deltas too, at the same time as the first.
    let replica = match backend {
        Backend::Postgres(_) => Some(server.start_replica().await),
        Backend::Sqlite => None,
    };
    let db = Database::connect(&server.database_url)
        .await
        .expect("connect");
    let acme = server.create_customer("acme").await;
    let globex = server.create_customer("globex").await;
    let build = server
        .create_pipeline(acme.id, "build", vec![step("build", "make")], vec![])
        .await;
    let test = server
        .create_pipeline(acme.id, "test", vec![step("test", "make test")], vec![])
        .await;
    let theirs = server
        .create_pipeline(globex.id, "theirs", vec![step("x", "true")], vec![])
        .await;
    // A pipeline no agent matches: its runs stay queued until cancelled.
    let stuck = server
        .create_pipeline_needing(acme.id, "stuck", &["gpu"])
        .await;

    // Agents on both replicas end jobs by execution id: succeeded, failed or timed out.
    let mut workers = Vec::new();
    for (index, customer_id) in [acme.id, acme.id, globex.id].into_iter().enumerate() {
        let target = match (&replica, index) {
            (Some(replica), 1) => replica,
            _ => &server,
        };
        let uuid = format!("agent-{index}");
        let token = target.create_registration_token(customer_id).await;
        let registered = target
            .register_agent(customer_id, &uuid, &token)
            .await
            .expect("register");
        let agent = target
            .connect_agent(&uuid, &registered.credential)
            .await
            .expect("connect");
        workers.push(agent.work_instantly_ending(|id| match id % 3 {
            0 => (pb::ExecutionStatus::Succeeded, String::new()),
            1 => (pb::ExecutionStatus::Failed, "exit 1".into()),
            _ => (pb::ExecutionStatus::TimedOut, "too slow".into()),
        }));
    }

    // Runs queued through both replicas at once.
    let mut submitters = Vec::new();
    for (index, target) in std::iter::once(&server).chain(replica.iter()).enumerate() {
        let mut client = target.admin_pipelines();
        let (acme_id, globex_id) = (acme.id, globex.id);
        let pipelines = [build.id, test.id];
        let their_pipeline = theirs.id;
        submitters.push(tokio::spawn(async move {
            for round in 0..30 {
                let (customer_id, pipeline_id) = if round % 5 == 4 {
                    (globex_id, their_pipeline)
                } else {
                    (acme_id, pipelines[(round + index) % 2])
                };
                client
                    .run_pipeline(pb::RunPipelineRequest {
                        customer_id,
                        pipeline_id,
                        ..Default::default()
                    })
                    .await
                    .expect("run");
            }
        }));
    }
    for submitter in submitters {
        submitter.await.expect("submitter");
    }
    let mut queued = Vec::new();
    for _ in 0..4 {
        queued.push(server.run_pipeline(acme.id, stuck.id, &[]).await.id);
    }
    for execution_id in &queued[..3] {
        server
            .admin_pipelines()
            .cancel_execution(pb::CancelExecutionRequest {
                customer_id: acme.id,
                execution_id: *execution_id,
            })
            .await
            .expect("cancel");
    }
    let submitted: i64 = if replica.is_some() { 60 } else { 30 };
    let theirs_count = submitted / 5;
    eventually("every run that an agent can take ended", WITHIN, || async {
        // Only the stuck run is left unfinished.
        scalar(
            &db,
            "SELECT COUNT(*) FROM executions WHERE status IN ('queued', 'assigned', 'running')",
        )
        .await
            == 1
    })
    .await;

    // Whatever has or has not been folded yet, the figures are the rows'.
    let first = assert_figures_match_rows(&server, &db, acme.id, "just after").await;
    assert_eq!(first.get("cancelled"), Some(&3));
    assert_eq!(first.get("queued"), Some(&1));
    assert_eq!(
        first.values().sum::<i64>(),
        submitted - theirs_count + 4,
        "{first:?}"
    );
    let globex_figures = assert_figures_match_rows(&server, &db, globex.id, "globex").await;
    assert_eq!(globex_figures.values().sum::<i64>(), theirs_count);

    // Folded: no delta left, and the rollups alone carry the finished counts.
    eventually("the deltas are folded", WITHIN, || async {
        scalar(&db, "SELECT COUNT(*) FROM execution_rollup_deltas").await == 0
    })
    .await;
    let finished_in_rollups = scalar(
        &db,
        "SELECT CAST(COALESCE(SUM(executions), 0) AS BIGINT) FROM execution_rollups",
    )
    .await;
    let finished_in_rows = scalar(
        &db,
        "SELECT COUNT(*) FROM executions WHERE status IN \
         ('succeeded', 'failed', 'cancelled', 'timed_out')",
    )
    .await;
    assert_eq!(finished_in_rollups, finished_in_rows);
    assert_figures_match_rows(&server, &db, acme.id, "folded").await;

    // Rows deleted (as retention does) leave the counts with them.
    for table in ["step_executions", "executions"] {
        let column = if table == "executions" {
            "id"
        } else {
            "execution_id"
        };
        db.execute_unprepared(&format!(
            "DELETE FROM {table} WHERE {column} IN ({}, {})",
            queued[0], queued[1]
        ))
        .await
        .expect("delete two cancelled runs");
    }
    let after_delete = assert_figures_match_rows(&server, &db, acme.id, "after a delete").await;
    assert_eq!(after_delete.get("cancelled"), Some(&1));

    // An operator's rebuild, with a wrong rollup planted first, recounts from the rows.
    db.execute_unprepared("UPDATE execution_rollups SET executions = executions + 1000")
        .await
        .expect("spoil the rollups");
    let store = Store::connect(&DatabaseOptions {
        url: server.database_url.clone(),
        max_connections: 2,
    })
    .await
    .expect("store");
    store.rebuild_execution_rollups().await.expect("rebuild");
    store.close().await.expect("close");
    let rebuilt = assert_figures_match_rows(&server, &db, acme.id, "rebuilt").await;
    assert_eq!(rebuilt, after_delete);
    for (received, _) in &workers {
        let received = received.lock().expect("received");
        let mut unique = received.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), received.len(), "no job given twice");
    }
    db.close().await.expect("close");
}

cygnet_testkit::backend_tests!(figures_equal_a_recount_through_every_change);
