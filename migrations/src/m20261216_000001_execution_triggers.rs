//! Every execution records what started it: `trigger_kind` (`user`, `retry`, `release_stage`,
//! and the schedules and webhooks that come later) and, for a release stage, which deployment
//! and stage. Who and which retry were recorded already (`triggered_by`, `retry_of`); rows
//! written before are filled in from those and from the stages that point at them.

use sea_orm_migration::prelude::*;

use crate::columns::{big_null, index, string};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Executions {
    Table,
    TriggerKind,
    TriggerReleaseExecutionId,
    TriggerStageExecutionId,
}

const INDEX: &str = "executions_customer_trigger";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .add_column(string(Executions::TriggerKind, 20).default("user"))
                    .to_owned(),
            )
            .await?;
        for column in [
            Executions::TriggerReleaseExecutionId,
            Executions::TriggerStageExecutionId,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Executions::Table)
                        .add_column(big_null(column))
                        .to_owned(),
                )
                .await?;
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE executions SET trigger_kind = 'retry' WHERE retry_of IS NOT NULL",
        )
        .await?;
        db.execute_unprepared(
            "UPDATE executions SET trigger_kind = 'release_stage', \
             trigger_stage_execution_id = (SELECT s.id FROM stage_executions s \
                 WHERE s.execution_id = executions.id), \
             trigger_release_execution_id = (SELECT s.release_execution_id FROM stage_executions s \
                 WHERE s.execution_id = executions.id) \
             WHERE EXISTS (SELECT 1 FROM stage_executions s WHERE s.execution_id = executions.id)",
        )
        .await?;
        manager
            .create_index(index(
                INDEX,
                Executions::Table,
                &["customer_id", "trigger_kind", "id"],
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(Executions::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Executions::TriggerStageExecutionId,
            Executions::TriggerReleaseExecutionId,
            Executions::TriggerKind,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Executions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
