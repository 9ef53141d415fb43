//! A pipeline's steps are stored once per version (`pipeline_versions`), not copied into each
//! run: a pipeline points at its current version, an execution at the version it runs.
//! Executions queued before keep their own copy in `executions.steps`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

use crate::columns::{big, big_null, fk, id_column, index, int, json, tenant_fk, timestamp};

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
enum Pipelines {
    Table,
    VersionId,
    StepsVersion,
}

#[derive(DeriveIden)]
enum Executions {
    Table,
    PipelineVersionId,
}

#[derive(DeriveIden)]
enum PipelineVersions {
    Table,
    Id,
    CustomerId,
    PipelineId,
    Number,
    Steps,
    CreatedBy,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PipelineVersions::Table)
                    .col(id_column(PipelineVersions::Id))
                    .col(big(PipelineVersions::CustomerId))
                    .col(big(PipelineVersions::PipelineId))
                    .col(int(PipelineVersions::Number))
                    .col(json(PipelineVersions::Steps))
                    .col(big(PipelineVersions::CreatedBy))
                    .col(timestamp(PipelineVersions::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_pipeline_versions_customer",
                        PipelineVersions::Table,
                        "customer_id",
                        Customers::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_pipeline_versions_pipeline",
                        PipelineVersions::Table,
                        "pipeline_id",
                        Pipelines::Table,
                    ))
                    .foreign_key(&mut fk(
                        "fk_pipeline_versions_created_by",
                        PipelineVersions::Table,
                        "created_by",
                        Users::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_pipeline_versions_number",
                    PipelineVersions::Table,
                    &["pipeline_id", "number"],
                )
                .unique()
                .take(),
            )
            .await?;
        for (table, column) in [
            (
                Pipelines::Table.into_iden(),
                Pipelines::VersionId.into_iden(),
            ),
            (
                Executions::Table.into_iden(),
                Executions::PipelineVersionId.into_iden(),
            ),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(big_null(column))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Pipelines::Table)
                    .add_column(int(Pipelines::StepsVersion).default(1))
                    .to_owned(),
            )
            .await?;
        // Every pipeline's current steps become its version 1.
        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO pipeline_versions (customer_id, pipeline_id, number, steps, created_by, created_at) \
             SELECT customer_id, id, 1, steps, created_by, updated_at FROM pipelines",
        )
        .await?;
        db.execute_unprepared(
            "UPDATE pipelines SET version_id = \
             (SELECT id FROM pipeline_versions WHERE pipeline_versions.pipeline_id = pipelines.id)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Pipelines::Table)
                    .drop_column(Pipelines::StepsVersion)
                    .to_owned(),
            )
            .await?;
        for (table, column) in [
            (
                Pipelines::Table.into_iden(),
                Pipelines::VersionId.into_iden(),
            ),
            (
                Executions::Table.into_iden(),
                Executions::PipelineVersionId.into_iden(),
            ),
        ] {
            manager
                .alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        manager
            .drop_table(Table::drop().table(PipelineVersions::Table).to_owned())
            .await
    }
}
