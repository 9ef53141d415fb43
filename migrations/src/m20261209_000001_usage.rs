//! Usage metering: one row per customer and day (UTC) with what it used, kept with the writes
//! that use it (`usage_daily`); and the mark retention leaves on an execution whose log it
//! removed (`executions.log_expired`).

use sea_orm_migration::prelude::*;

use crate::columns::{big, fk, string};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Customers {
    Table,
}

#[derive(DeriveIden)]
enum UsageDaily {
    Table,
    CustomerId,
    Day,
    BuildSeconds,
    ExecutionsSucceeded,
    ExecutionsFailed,
    ExecutionsCancelled,
    ExecutionsTimedOut,
    LogBytesAdded,
    ArtifactBytesAdded,
    LogBytesStored,
    ArtifactBytesStored,
    AgentOnlineSeconds,
    MonitorChecks,
}

#[derive(DeriveIden)]
enum Executions {
    Table,
    LogExpired,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let counter = |column: UsageDaily| big(column).default(0).take();
        manager
            .create_table(
                Table::create()
                    .table(UsageDaily::Table)
                    .col(big(UsageDaily::CustomerId))
                    // YYYY-MM-DD, UTC: sorts and compares as text on both backends.
                    .col(string(UsageDaily::Day, 10))
                    .col(counter(UsageDaily::BuildSeconds))
                    .col(counter(UsageDaily::ExecutionsSucceeded))
                    .col(counter(UsageDaily::ExecutionsFailed))
                    .col(counter(UsageDaily::ExecutionsCancelled))
                    .col(counter(UsageDaily::ExecutionsTimedOut))
                    .col(counter(UsageDaily::LogBytesAdded))
                    .col(counter(UsageDaily::ArtifactBytesAdded))
                    .col(counter(UsageDaily::LogBytesStored))
                    .col(counter(UsageDaily::ArtifactBytesStored))
                    .col(counter(UsageDaily::AgentOnlineSeconds))
                    .col(counter(UsageDaily::MonitorChecks))
                    .primary_key(
                        Index::create()
                            .col(UsageDaily::CustomerId)
                            .col(UsageDaily::Day),
                    )
                    .foreign_key(&mut fk(
                        "fk_usage_daily_customer",
                        UsageDaily::Table,
                        "customer_id",
                        Customers::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .add_column(
                        ColumnDef::new(Executions::LogExpired)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .drop_column(Executions::LogExpired)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(UsageDaily::Table).to_owned())
            .await
    }
}
