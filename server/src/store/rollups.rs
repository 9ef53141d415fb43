//! Execution counts that do not grow with history (migration m20261215): a count is the
//! rollup of finished executions, plus the deltas not yet folded into it, plus the executions
//! still queued, assigned or running, read in one statement (one snapshot, so a fold running
//! at the same time is seen either wholly or not at all).

use std::collections::{BTreeMap, HashMap};

use sea_orm::sea_query::{
    Alias, Expr, ExprTrait, Func, OnConflict, Query, SelectStatement, UnionType,
};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, Statement};

use super::entities::execution;
use super::{StoreError, SystemStore};
use crate::domain::CustomerId;
use crate::domain::execution::ExecutionStatus;

/// The statuses an execution leaves again; rows in them are counted from the rows.
const LIVE: [ExecutionStatus; 3] = [
    ExecutionStatus::Queued,
    ExecutionStatus::Assigned,
    ExecutionStatus::Running,
];

const ROLLUPS: &str = "execution_rollups";
const DELTAS: &str = "execution_rollup_deltas";

/// Deltas one fold takes at most.
pub(crate) const FOLD_BATCH: u64 = 5_000;

/// Which executions a count covers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counted<'a> {
    /// Every customer's (the server's metrics).
    All,
    /// One customer's.
    Customer(CustomerId),
    /// These pipelines of one customer.
    Pipelines(CustomerId, &'a [i64]),
}

impl Counted<'_> {
    /// The customer only: unfinished rows are read by `(customer_id, status)`, bounded by the
    /// customer's quotas; a pipeline filter would lead the planners to the pipeline's index
    /// and through its whole history.
    fn customer_only(&self) -> Self {
        match self {
            Counted::Pipelines(customer_id, _) => Counted::Customer(*customer_id),
            other => *other,
        }
    }

    fn covers(&self, pipeline_id: i64) -> bool {
        match self {
            Counted::Pipelines(_, pipelines) => pipelines.contains(&pipeline_id),
            _ => true,
        }
    }

    fn filter(&self, select: &mut SelectStatement) {
        let customer = |id: CustomerId| Expr::col(Alias::new("customer_id")).eq(id.get());
        match self {
            Counted::All => {}
            Counted::Customer(customer_id) => {
                select.and_where(customer(*customer_id));
            }
            Counted::Pipelines(customer_id, pipelines) => {
                select.and_where(customer(*customer_id)).and_where(
                    Expr::col(Alias::new("pipeline_id")).is_in(pipelines.iter().copied()),
                );
            }
        }
    }
}

/// Executions by pipeline and status: `(pipeline_id, status) → count`, zero counts left out.
pub(crate) async fn execution_counts(
    db: &impl ConnectionTrait,
    counted: Counted<'_>,
) -> Result<HashMap<(i64, String), i64>, StoreError> {
    if let Counted::Pipelines(_, []) = counted {
        return Ok(HashMap::new());
    }
    let (pipeline, status, n) = (
        Alias::new("pipeline_id"),
        Alias::new("status"),
        Alias::new("n"),
    );
    let mut rollups = Query::select()
        .column(pipeline.clone())
        .column(status.clone())
        .expr_as(Expr::col(Alias::new("executions")), n.clone())
        .from(Alias::new(ROLLUPS))
        .to_owned();
    counted.filter(&mut rollups);
    let mut deltas = Query::select()
        .column(pipeline.clone())
        .column(status.clone())
        .expr_as(Expr::col(Alias::new("delta")), n.clone())
        .from(Alias::new(DELTAS))
        .to_owned();
    counted.filter(&mut deltas);
    let mut live = Query::select()
        .column(pipeline.clone())
        .column(status.clone())
        .expr_as(Expr::val(1i64), n.clone())
        .from(execution::Entity)
        .and_where(execution::Column::Status.is_in(LIVE.map(ExecutionStatus::as_str)))
        .to_owned();
    counted.customer_only().filter(&mut live);
    rollups
        .union(UnionType::All, deltas)
        .union(UnionType::All, live);
    let query = Query::select()
        .column(pipeline.clone())
        .column(status.clone())
        .expr_as(
            Func::cast_as(Func::sum(Expr::col(n)), Alias::new("BIGINT")),
            Alias::new("n"),
        )
        .from_subquery(rollups, Alias::new("counted"))
        .group_by_col(pipeline)
        .group_by_col(status)
        .to_owned();
    let mut counts = HashMap::new();
    for row in db.query_all(&query).await? {
        let count: i64 = row.try_get("", "n")?;
        let pipeline_id: i64 = row.try_get("", "pipeline_id")?;
        if count != 0 && counted.covers(pipeline_id) {
            counts.insert((pipeline_id, row.try_get("", "status")?), count);
        }
    }
    Ok(counts)
}

/// Executions by status over the pipelines a count covers.
pub(crate) async fn counts_by_status(
    db: &impl ConnectionTrait,
    counted: Counted<'_>,
) -> Result<HashMap<String, i64>, StoreError> {
    let mut by_status: HashMap<String, i64> = HashMap::new();
    for ((_, status), count) in execution_counts(db, counted).await? {
        *by_status.entry(status).or_default() += count;
    }
    Ok(by_status)
}

impl super::Store {
    /// See [`SystemStore::rebuild_execution_rollups`]; for the operator's command.
    pub async fn rebuild_execution_rollups(&self) -> Result<u64, StoreError> {
        self.system(&crate::auth::system_scope(
            crate::auth::SystemActor::Housekeeping,
        ))
        .rebuild_execution_rollups()
        .await
    }
}

impl SystemStore {
    /// Folds up to [`FOLD_BATCH`] deltas, oldest first, into the rollups; how many it folded.
    /// Each delta is taken by exactly one fold: the rows are deleted and returned by one
    /// statement, and the rollups they change are written in key order, so folds of two
    /// replicas never deadlock.
    pub(crate) async fn fold_execution_deltas(&self) -> Result<u64, StoreError> {
        let any = Query::select()
            .column(Alias::new("id"))
            .from(Alias::new(DELTAS))
            .limit(1)
            .to_owned();
        if self.db.query_one(&any).await?.is_none() {
            return Ok(0);
        }
        let placeholder = match self.backend() {
            DbBackend::Postgres => "$1",
            _ => "?",
        };
        let transaction = self.begin_write().await?;
        let taken = transaction
            .query_all_raw(Statement::from_sql_and_values(
                self.backend(),
                format!(
                    "DELETE FROM {DELTAS} WHERE id IN \
                     (SELECT id FROM {DELTAS} ORDER BY id LIMIT {placeholder}) \
                     RETURNING customer_id, pipeline_id, status, delta"
                ),
                [(FOLD_BATCH as i64).into()],
            ))
            .await?;
        let mut sums: BTreeMap<(i64, String), (i64, i64)> = BTreeMap::new();
        for row in &taken {
            let customer_id: i64 = row.try_get("", "customer_id")?;
            let pipeline_id: i64 = row.try_get("", "pipeline_id")?;
            let status: String = row.try_get("", "status")?;
            let delta: i32 = row.try_get("", "delta")?;
            let entry = sums
                .entry((pipeline_id, status))
                .or_insert((customer_id, 0));
            entry.1 += i64::from(delta);
        }
        let sums: Vec<_> = sums.into_iter().filter(|(_, (_, sum))| *sum != 0).collect();
        for chunk in sums.chunks(1_000) {
            let mut insert = Query::insert()
                .into_table(Alias::new(ROLLUPS))
                .columns([
                    Alias::new("customer_id"),
                    Alias::new("pipeline_id"),
                    Alias::new("status"),
                    Alias::new("executions"),
                ])
                .on_conflict(
                    OnConflict::columns([Alias::new("pipeline_id"), Alias::new("status")])
                        .value(
                            Alias::new("executions"),
                            Expr::col((Alias::new(ROLLUPS), Alias::new("executions"))).add(
                                Expr::col((Alias::new("excluded"), Alias::new("executions"))),
                            ),
                        )
                        .to_owned(),
                )
                .to_owned();
            for ((pipeline_id, status), (customer_id, sum)) in chunk {
                insert.values_panic([
                    (*customer_id).into(),
                    (*pipeline_id).into(),
                    status.clone().into(),
                    (*sum).into(),
                ]);
            }
            transaction.execute(&insert).await?;
        }
        transaction.commit().await?;
        Ok(taken.len() as u64)
    }

    /// On PostgreSQL, reclaims the deltas folded so far (`VACUUM`, skipped when another
    /// replica's is running). A deleted row stays in the table and its index until vacuumed,
    /// and every count reads that index: after a burst of a million folded deltas, waiting for
    /// autovacuum made each read walk a million dead entries (29 ms instead of 2). SQLite frees
    /// deleted rows at once: nothing to do there.
    pub(crate) async fn reclaim_folded_deltas(&self) -> Result<(), StoreError> {
        if self.backend() == DbBackend::Postgres {
            self.db
                .execute_unprepared(&format!("VACUUM (ANALYZE, SKIP_LOCKED) {DELTAS}"))
                .await?;
        }
        Ok(())
    }

    /// Recounts the rollups from the execution rows (for an operator who doubts them; the
    /// migration filled them the same way). On PostgreSQL the deltas and rollups are locked
    /// against writers for the recount, so a change committed during it is counted once.
    pub(crate) async fn rebuild_execution_rollups(&self) -> Result<u64, StoreError> {
        let transaction = self.begin_write().await?;
        if self.backend() == DbBackend::Postgres {
            transaction
                .execute_unprepared(&format!(
                    "LOCK TABLE {DELTAS}, {ROLLUPS} IN SHARE ROW EXCLUSIVE MODE"
                ))
                .await?;
        }
        transaction
            .execute_unprepared(&format!("DELETE FROM {DELTAS}"))
            .await?;
        transaction
            .execute_unprepared(&format!("DELETE FROM {ROLLUPS}"))
            .await?;
        let finished: Vec<String> = ExecutionStatus::ALL
            .iter()
            .filter(|status| !LIVE.contains(status))
            .map(|status| format!("'{}'", status.as_str()))
            .collect();
        let filled = transaction
            .execute_unprepared(&format!(
                "INSERT INTO {ROLLUPS} (customer_id, pipeline_id, status, executions) \
                 SELECT customer_id, pipeline_id, status, COUNT(*) FROM executions \
                 WHERE status IN ({}) GROUP BY customer_id, pipeline_id, status",
                finished.join(", ")
            ))
            .await?
            .rows_affected();
        transaction.commit().await?;
        Ok(filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_finished_statuses_cover_every_status_once() {
        let finished = ExecutionStatus::ALL
            .iter()
            .filter(|status| !LIVE.contains(status))
            .count();
        assert_eq!(finished + LIVE.len(), ExecutionStatus::ALL.len());
        assert_eq!(
            finished, 4,
            "the migration's triggers name four finished statuses"
        );
    }
}
