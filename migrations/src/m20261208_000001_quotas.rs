//! Quotas: per-customer overrides of the platform's limits (`customer_quotas`), the bytes each
//! customer stores (`customer_storage`, kept with the writes that change them), the log bytes of
//! each execution (`executions.log_bytes`, `log_truncated`), and an index that counts a
//! customer's executions by status without reading the others'.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::columns::{big, fk, index, string, timestamp};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Customers {
    Table,
}

#[derive(DeriveIden)]
enum Users {
    Table,
}

#[derive(DeriveIden)]
enum CustomerQuotas {
    Table,
    CustomerId,
    Quota,
    LimitValue,
    UpdatedBy,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CustomerStorage {
    Table,
    CustomerId,
    LogBytes,
    ArtifactBytes,
}

#[derive(DeriveIden)]
enum Executions {
    Table,
    LogBytes,
    LogTruncated,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CustomerQuotas::Table)
                    .col(big(CustomerQuotas::CustomerId))
                    .col(string(CustomerQuotas::Quota, 64))
                    .col(big(CustomerQuotas::LimitValue))
                    .col(big(CustomerQuotas::UpdatedBy))
                    .col(timestamp(CustomerQuotas::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(CustomerQuotas::CustomerId)
                            .col(CustomerQuotas::Quota),
                    )
                    .foreign_key(&mut fk(
                        "fk_customer_quotas_customer",
                        CustomerQuotas::Table,
                        "customer_id",
                        Customers::Table,
                    ))
                    .foreign_key(&mut fk(
                        "fk_customer_quotas_updated_by",
                        CustomerQuotas::Table,
                        "updated_by",
                        Users::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CustomerStorage::Table)
                    .col(big(CustomerStorage::CustomerId).primary_key())
                    .col(big(CustomerStorage::LogBytes).default(0))
                    .col(big(CustomerStorage::ArtifactBytes).default(0))
                    .foreign_key(&mut fk(
                        "fk_customer_storage_customer",
                        CustomerStorage::Table,
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
                    .add_column(big(Executions::LogBytes).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .add_column(
                        ColumnDef::new(Executions::LogTruncated)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_executions_customer_status",
                Executions::Table,
                &["customer_id", "status", "id"],
            ))
            .await?;
        // What is stored already counts.
        let text_bytes = match manager.get_database_backend() {
            DbBackend::Postgres => "OCTET_LENGTH(text)",
            _ => "LENGTH(CAST(text AS BLOB))",
        };
        let db = manager.get_connection();
        db.execute_unprepared(&format!(
            "UPDATE executions SET log_bytes = (SELECT COALESCE(SUM({text_bytes}), 0) \
             FROM log_chunks WHERE log_chunks.execution_id = executions.id)"
        ))
        .await?;
        db.execute_unprepared(
            "INSERT INTO customer_storage (customer_id, log_bytes, artifact_bytes) \
             SELECT customers.id, \
             (SELECT COALESCE(SUM(log_bytes), 0) FROM executions \
              WHERE executions.customer_id = customers.id), \
             (SELECT COALESCE(SUM(size_bytes), 0) FROM artifacts \
              WHERE artifacts.customer_id = customers.id) \
             FROM customers",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_executions_customer_status")
                    .table(Executions::Table)
                    .to_owned(),
            )
            .await?;
        for column in [Executions::LogTruncated, Executions::LogBytes] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Executions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(CustomerStorage::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(CustomerQuotas::Table).to_owned())
            .await
    }
}
