//! Finished executions counted as they finish, so the figures a dashboard shows cost the same
//! with a million executions as with ten thousand.
//!
//! `execution_rollups` holds, per pipeline and finished status, how many executions ended so.
//! The database keeps it true by itself: a trigger on `executions` appends a `+1` or `-1` row to
//! `execution_rollup_deltas` in the same transaction as every insert, status change or delete
//! that moves a row into or out of a finished status (so no code path can forget it, and a
//! rolled-back change leaves no delta). Appending never waits on another writer; the server
//! folds the deltas into the rollups in batches. A count is the rollup plus its pending deltas,
//! read in one statement. Executions still queued, assigned or running are few (the queue and
//! concurrency quotas bound them) and are counted from their rows.
//!
//! The rollups are filled from the rows here, and the server can rebuild them the same way.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

use crate::columns::{big, id_column, index, int, string};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ExecutionRollups {
    Table,
    CustomerId,
    PipelineId,
    Status,
    Executions,
}

#[derive(DeriveIden)]
enum ExecutionRollupDeltas {
    Table,
    Id,
    CustomerId,
    PipelineId,
    Status,
    Delta,
}

const FINISHED: &str = "('succeeded', 'failed', 'cancelled', 'timed_out')";

fn postgres_triggers() -> Vec<String> {
    vec![
        format!(
            "CREATE FUNCTION cygnet_execution_rollup_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status IN {FINISHED} THEN
        INSERT INTO execution_rollup_deltas (customer_id, pipeline_id, status, delta)
        VALUES (OLD.customer_id, OLD.pipeline_id, OLD.status, -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status IN {FINISHED} THEN
        INSERT INTO execution_rollup_deltas (customer_id, pipeline_id, status, delta)
        VALUES (NEW.customer_id, NEW.pipeline_id, NEW.status, 1);
    END IF;
    RETURN NULL;
END
$$"
        ),
        format!(
            "CREATE TRIGGER executions_rollup_insert AFTER INSERT ON executions FOR EACH ROW \
             WHEN (NEW.status IN {FINISHED}) EXECUTE FUNCTION cygnet_execution_rollup_delta()"
        ),
        "CREATE TRIGGER executions_rollup_update AFTER UPDATE OF status ON executions FOR EACH ROW \
         WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION cygnet_execution_rollup_delta()"
            .to_owned(),
        format!(
            "CREATE TRIGGER executions_rollup_delete AFTER DELETE ON executions FOR EACH ROW \
             WHEN (OLD.status IN {FINISHED}) EXECUTE FUNCTION cygnet_execution_rollup_delta()"
        ),
    ]
}

fn sqlite_triggers() -> Vec<String> {
    let insert = |row: &str, delta: i32| {
        format!(
            "INSERT INTO execution_rollup_deltas (customer_id, pipeline_id, status, delta) \
             SELECT {row}.customer_id, {row}.pipeline_id, {row}.status, {delta} \
             WHERE {row}.status IN {FINISHED};"
        )
    };
    vec![
        format!(
            "CREATE TRIGGER executions_rollup_insert AFTER INSERT ON executions BEGIN {} END",
            insert("NEW", 1)
        ),
        format!(
            "CREATE TRIGGER executions_rollup_update AFTER UPDATE OF status ON executions \
             WHEN OLD.status IS NOT NEW.status BEGIN {} {} END",
            insert("OLD", -1),
            insert("NEW", 1)
        ),
        format!(
            "CREATE TRIGGER executions_rollup_delete AFTER DELETE ON executions BEGIN {} END",
            insert("OLD", -1)
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ExecutionRollups::Table)
                    .col(big(ExecutionRollups::CustomerId))
                    .col(big(ExecutionRollups::PipelineId))
                    .col(string(ExecutionRollups::Status, 20))
                    .col(big(ExecutionRollups::Executions))
                    .primary_key(
                        Index::create()
                            .col(ExecutionRollups::PipelineId)
                            .col(ExecutionRollups::Status),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_execution_rollups_customer",
                ExecutionRollups::Table,
                &["customer_id", "pipeline_id"],
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ExecutionRollupDeltas::Table)
                    .col(id_column(ExecutionRollupDeltas::Id))
                    .col(big(ExecutionRollupDeltas::CustomerId))
                    .col(big(ExecutionRollupDeltas::PipelineId))
                    .col(string(ExecutionRollupDeltas::Status, 20))
                    .col(int(ExecutionRollupDeltas::Delta))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_execution_rollup_deltas_customer",
                ExecutionRollupDeltas::Table,
                &["customer_id", "pipeline_id"],
            ))
            .await?;
        let db = manager.get_connection();
        let triggers = match db.get_database_backend() {
            DatabaseBackend::Postgres => postgres_triggers(),
            _ => sqlite_triggers(),
        };
        for statement in triggers {
            db.execute_unprepared(&statement).await?;
        }
        // What has finished already counts.
        db.execute_unprepared(&format!(
            "INSERT INTO execution_rollups (customer_id, pipeline_id, status, executions) \
             SELECT customer_id, pipeline_id, status, COUNT(*) FROM executions \
             WHERE status IN {FINISHED} GROUP BY customer_id, pipeline_id, status"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for trigger in [
            "executions_rollup_insert",
            "executions_rollup_update",
            "executions_rollup_delete",
        ] {
            let statement = match db.get_database_backend() {
                DatabaseBackend::Postgres => format!("DROP TRIGGER {trigger} ON executions"),
                _ => format!("DROP TRIGGER {trigger}"),
            };
            db.execute_unprepared(&statement).await?;
        }
        if db.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared("DROP FUNCTION cygnet_execution_rollup_delta()")
                .await?;
        }
        manager
            .drop_table(Table::drop().table(ExecutionRollupDeltas::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ExecutionRollups::Table).to_owned())
            .await
    }
}
