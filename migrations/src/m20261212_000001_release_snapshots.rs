//! What an approval binds. A release stage keeps the snapshot it deploys (the pipeline's steps
//! version, variable groups, timeout and selector, with a digest over them, the parameters and
//! the shipped artifacts), fixed when the release execution starts. An execution keeps the
//! variable groups it was queued with. Self-approval is a setting of each environment (off by
//! default), no longer a customer setting that applied to an environment named "Production":
//! a customer whose settings allowed it gets it on every environment it has.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

use crate::columns::{big_null, text};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Environments {
    Table,
    CustomerId,
    AllowSelfApproval,
}

#[derive(DeriveIden)]
enum StageExecutions {
    Table,
    PipelineVersionId,
    Snapshot,
    SnapshotDigest,
}

#[derive(DeriveIden)]
enum Executions {
    Table,
    VariableGroupIds,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Environments::Table)
                    .add_column(
                        ColumnDef::new(Environments::AllowSelfApproval)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        // Stages deployed before keep running the pipeline as it is when they start.
        for column in [
            big_null(StageExecutions::PipelineVersionId),
            ColumnDef::new(StageExecutions::Snapshot)
                .json_binary()
                .null()
                .take(),
            text(StageExecutions::SnapshotDigest).default("").take(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(StageExecutions::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        // NULL: queued before, reads its pipeline's groups at delivery as it did.
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .add_column(ColumnDef::new(Executions::VariableGroupIds).text().null())
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let backend = db.get_database_backend();
        let rows = db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT id, settings FROM customers",
            ))
            .await?;
        for row in rows {
            let id: i64 = row.try_get("", "id")?;
            let settings: serde_json::Value = row.try_get("", "settings")?;
            let allowed = settings
                .get("allow_self_approval")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            if allowed {
                let update = Query::update()
                    .table(Environments::Table)
                    .value(Environments::AllowSelfApproval, true)
                    .and_where(Expr::col(Environments::CustomerId).eq(id))
                    .to_owned();
                db.execute(&update).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .drop_column(Executions::VariableGroupIds)
                    .to_owned(),
            )
            .await?;
        for column in [
            StageExecutions::SnapshotDigest,
            StageExecutions::Snapshot,
            StageExecutions::PipelineVersionId,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(StageExecutions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Environments::Table)
                    .drop_column(Environments::AllowSelfApproval)
                    .to_owned(),
            )
            .await
    }
}
