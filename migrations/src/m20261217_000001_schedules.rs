//! Pipeline schedules: a cron expression in a time zone that runs a pipeline with given
//! parameters. `next_run_at` is the tick a replica claims by moving it forward in one
//! conditional update, so each tick runs once across replicas. Executions a schedule queued
//! name it (`executions.trigger_schedule_id`).

use sea_orm_migration::prelude::*;

use crate::columns::{
    big, big_null, fk, id_column, index, json, string, tenant_fk, text, timestamp, timestamp_null,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Customers {
    Table,
}

#[derive(DeriveIden)]
enum Pipelines {
    Table,
}

#[derive(DeriveIden)]
enum Users {
    Table,
}

#[derive(DeriveIden)]
enum Executions {
    Table,
    TriggerScheduleId,
}

#[derive(DeriveIden)]
enum PipelineSchedules {
    Table,
    Id,
    CustomerId,
    PipelineId,
    Cron,
    TimeZone,
    Parameters,
    Enabled,
    NextRunAt,
    LastRunAt,
    LastExecutionId,
    LastError,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PipelineSchedules::Table)
                    .col(id_column(PipelineSchedules::Id))
                    .col(big(PipelineSchedules::CustomerId))
                    .col(big(PipelineSchedules::PipelineId))
                    .col(string(PipelineSchedules::Cron, 200))
                    .col(string(PipelineSchedules::TimeZone, 64))
                    .col(json(PipelineSchedules::Parameters))
                    .col(
                        ColumnDef::new(PipelineSchedules::Enabled)
                            .boolean()
                            .not_null(),
                    )
                    .col(timestamp_null(PipelineSchedules::NextRunAt))
                    .col(timestamp_null(PipelineSchedules::LastRunAt))
                    .col(big_null(PipelineSchedules::LastExecutionId))
                    .col(text(PipelineSchedules::LastError))
                    .col(big(PipelineSchedules::CreatedBy))
                    .col(timestamp(PipelineSchedules::CreatedAt))
                    .col(timestamp(PipelineSchedules::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_pipeline_schedules_customer",
                        PipelineSchedules::Table,
                        "customer_id",
                        Customers::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_pipeline_schedules_pipeline",
                        PipelineSchedules::Table,
                        "pipeline_id",
                        Pipelines::Table,
                    ))
                    .foreign_key(&mut fk(
                        "fk_pipeline_schedules_created_by",
                        PipelineSchedules::Table,
                        "created_by",
                        Users::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_pipeline_schedules_customer_pipeline",
                PipelineSchedules::Table,
                &["customer_id", "pipeline_id"],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_pipeline_schedules_next_run",
                PipelineSchedules::Table,
                &["next_run_at"],
            ))
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .add_column(big_null(Executions::TriggerScheduleId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .drop_column(Executions::TriggerScheduleId)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(PipelineSchedules::Table).to_owned())
            .await
    }
}
