//! A customer's history seeded in bulk: copies of one finished execution inserted by the
//! database itself (running a million executions through agents is not what the `dashboard`
//! scenario measures), then the time until the server has folded their counts.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DbBackend};

/// Every column of `executions` but its id.
const COLUMNS: &str = "customer_id, pipeline_id, pipeline_name, status, parameters, steps, \
    selector_agent_id, selector_labels, timeout_seconds, triggered_by, agent_id, queue_reason, \
    failure_reason, created_at, assigned_at, started_at, finished_at, lease_expires_at, \
    cancel_requested_at, cancel_reason, retry_of, last_sequence, log_bytes, log_truncated, \
    log_expired, pipeline_version_id, variable_group_ids";

/// Rows one statement inserts.
const CHUNK: u64 = 100_000;

/// Inserts `rows` finished executions of the customer's pipeline, one in ten failed, copied
/// from its newest succeeded one; the time it took.
pub async fn seed(
    database_url: &str,
    customer_id: i64,
    pipeline_id: i64,
    rows: u64,
) -> anyhow::Result<Duration> {
    let db = Database::connect(database_url).await?;
    let started = Instant::now();
    let copied = COLUMNS.replace(
        "status,",
        "CASE WHEN n.i % 10 = 0 THEN 'failed' ELSE 'succeeded' END,",
    );
    let mut done = 0;
    while done < rows {
        let count = CHUNK.min(rows - done);
        let numbers = match db.get_database_backend() {
            DbBackend::Postgres => format!("generate_series(1, {count}) AS n(i)"),
            _ => "n".to_owned(),
        };
        let prefix = match db.get_database_backend() {
            DbBackend::Postgres => String::new(),
            _ => format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) "
            ),
        };
        db.execute_unprepared(&format!(
            "{prefix}INSERT INTO executions ({COLUMNS}) SELECT {copied} FROM executions, {numbers} \
             WHERE executions.id = (SELECT MAX(id) FROM executions WHERE customer_id = {customer_id} \
             AND pipeline_id = {pipeline_id} AND status = 'succeeded')"
        ))
        .await?;
        done += count;
    }
    let took = started.elapsed();
    db.close().await?;
    Ok(took)
}

/// Waits (at most `within`) until the server has folded every count delta; the time it took.
pub async fn folded(database_url: &str, within: Duration) -> anyhow::Result<Duration> {
    let db = Database::connect(database_url).await?;
    let started = Instant::now();
    loop {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) FROM execution_rollup_deltas",
            ))
            .await?;
        let left: i64 = match row {
            Some(row) => row.try_get_by_index(0)?,
            None => 0,
        };
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < within,
            "{left} count deltas still unfolded after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    db.close().await?;
    Ok(took)
}
