//! Pipelines, their executions, step states, logs and artifacts.
//!
//! Every reference inside a tenant is a composite `(customer_id, …)` foreign key, so an
//! execution can never point at another customer's pipeline or agent. Pipeline definitions are
//! stored as JSON documents; an execution keeps a snapshot of the definition it runs.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Customers {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Agents {
    Table,
}

#[derive(DeriveIden)]
enum Pipelines {
    Table,
    Id,
    CustomerId,
    Name,
    Description,
    SelectorAgentId,
    SelectorLabels,
    Steps,
    Parameters,
    TimeoutSeconds,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Executions {
    Table,
    Id,
    CustomerId,
    PipelineId,
    PipelineName,
    Status,
    Parameters,
    Steps,
    SelectorAgentId,
    SelectorLabels,
    TimeoutSeconds,
    TriggeredBy,
    AgentId,
    QueueReason,
    FailureReason,
    CreatedAt,
    AssignedAt,
    StartedAt,
    FinishedAt,
    LeaseExpiresAt,
    CancelRequestedAt,
    CancelReason,
    RetryOf,
    LastSequence,
}

#[derive(DeriveIden)]
enum StepExecutions {
    Table,
    CustomerId,
    ExecutionId,
    StepIndex,
    Name,
    Status,
    ExitCode,
    StartedAt,
    FinishedAt,
    Reason,
}

#[derive(DeriveIden)]
enum LogChunks {
    Table,
    CustomerId,
    ExecutionId,
    Sequence,
    StepIndex,
    Stream,
    Text,
    LoggedAt,
}

#[derive(DeriveIden)]
enum Artifacts {
    Table,
    Id,
    CustomerId,
    ExecutionId,
    StepIndex,
    Path,
    SizeBytes,
    Sha256,
    StorageKey,
    CreatedAt,
}

fn id_column<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .take()
}

fn big<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().take()
}

fn big_null<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).big_integer().null().take()
}

fn int<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).integer().not_null().take()
}

fn text<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).text().not_null().take()
}

fn json<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).json_binary().not_null().take()
}

fn status<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).string_len(16).not_null().take()
}

fn timestamp<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .take()
}

fn timestamp_null<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .null()
        .take()
}

fn customer_fk(name: &str, table: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, Alias::new("customer_id"))
        .to(Customers::Table, Customers::Id)
        .on_delete(ForeignKeyAction::Restrict)
        .on_update(ForeignKeyAction::Restrict)
        .take()
}

/// `(customer_id, <column>)` → `<target>(customer_id, id)`.
fn tenant_fk(
    name: &str,
    table: impl IntoIden,
    column: &'static str,
    target: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, (Alias::new("customer_id"), Alias::new(column)))
        .to(target, (Alias::new("customer_id"), Alias::new("id")))
        .on_delete(ForeignKeyAction::Restrict)
        .on_update(ForeignKeyAction::Restrict)
        .take()
}

fn user_fk(name: &str, table: impl IntoIden, column: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, Alias::new(column))
        .to(Users::Table, Users::Id)
        .on_delete(ForeignKeyAction::Restrict)
        .on_update(ForeignKeyAction::Restrict)
        .take()
}

fn index(name: &str, table: impl IntoIden, columns: &[&'static str]) -> IndexCreateStatement {
    let mut statement = Index::create();
    statement.name(name).table(table);
    for column in columns {
        statement.col(Alias::new(*column));
    }
    statement.take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Pipelines::Table)
                    .col(id_column(Pipelines::Id))
                    .col(big(Pipelines::CustomerId))
                    .col(ColumnDef::new(Pipelines::Name).string_len(200).not_null())
                    .col(text(Pipelines::Description))
                    .col(big_null(Pipelines::SelectorAgentId))
                    .col(json(Pipelines::SelectorLabels))
                    .col(json(Pipelines::Steps))
                    .col(json(Pipelines::Parameters))
                    .col(int(Pipelines::TimeoutSeconds))
                    .col(big(Pipelines::CreatedBy))
                    .col(timestamp(Pipelines::CreatedAt))
                    .col(timestamp(Pipelines::UpdatedAt))
                    .col(timestamp_null(Pipelines::DeletedAt))
                    .foreign_key(&mut customer_fk("fk_pipelines_customer", Pipelines::Table))
                    .foreign_key(&mut tenant_fk(
                        "fk_pipelines_selector_agent",
                        Pipelines::Table,
                        "selector_agent_id",
                        Agents::Table,
                    ))
                    .foreign_key(&mut user_fk(
                        "fk_pipelines_created_by",
                        Pipelines::Table,
                        "created_by",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_pipelines_customer_id",
                    Pipelines::Table,
                    &["customer_id", "id"],
                )
                .unique()
                .take(),
            )
            .await?;
        // Names are unique among a customer's live pipelines; a deleted one frees its name.
        manager
            .create_index(
                index(
                    "ux_pipelines_customer_name",
                    Pipelines::Table,
                    &["customer_id", "name"],
                )
                .unique()
                .and_where(Expr::col(Pipelines::DeletedAt).is_null())
                .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Executions::Table)
                    .col(id_column(Executions::Id))
                    .col(big(Executions::CustomerId))
                    .col(big(Executions::PipelineId))
                    .col(
                        ColumnDef::new(Executions::PipelineName)
                            .string_len(200)
                            .not_null(),
                    )
                    .col(status(Executions::Status))
                    .col(json(Executions::Parameters))
                    .col(json(Executions::Steps))
                    .col(big_null(Executions::SelectorAgentId))
                    .col(json(Executions::SelectorLabels))
                    .col(int(Executions::TimeoutSeconds))
                    .col(big(Executions::TriggeredBy))
                    .col(big_null(Executions::AgentId))
                    .col(text(Executions::QueueReason))
                    .col(text(Executions::FailureReason))
                    .col(timestamp(Executions::CreatedAt))
                    .col(timestamp_null(Executions::AssignedAt))
                    .col(timestamp_null(Executions::StartedAt))
                    .col(timestamp_null(Executions::FinishedAt))
                    .col(timestamp_null(Executions::LeaseExpiresAt))
                    .col(timestamp_null(Executions::CancelRequestedAt))
                    .col(text(Executions::CancelReason))
                    .col(big_null(Executions::RetryOf))
                    .col(
                        ColumnDef::new(Executions::LastSequence)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .foreign_key(&mut customer_fk(
                        "fk_executions_customer",
                        Executions::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_executions_pipeline",
                        Executions::Table,
                        "pipeline_id",
                        Pipelines::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_executions_agent",
                        Executions::Table,
                        "agent_id",
                        Agents::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_executions_selector_agent",
                        Executions::Table,
                        "selector_agent_id",
                        Agents::Table,
                    ))
                    .foreign_key(&mut user_fk(
                        "fk_executions_triggered_by",
                        Executions::Table,
                        "triggered_by",
                    ))
                    .check(Expr::col(Executions::Status).is_in([
                        "queued",
                        "assigned",
                        "running",
                        "succeeded",
                        "failed",
                        "cancelled",
                        "timed_out",
                    ]))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_executions_customer_id",
                    Executions::Table,
                    &["customer_id", "id"],
                )
                .unique()
                .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_executions_customer_pipeline",
                Executions::Table,
                &["customer_id", "pipeline_id", "id"],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_executions_status",
                Executions::Table,
                &["status", "id"],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_executions_agent_status",
                Executions::Table,
                &["agent_id", "status"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(StepExecutions::Table)
                    .col(big(StepExecutions::CustomerId))
                    .col(big(StepExecutions::ExecutionId))
                    .col(int(StepExecutions::StepIndex))
                    .col(
                        ColumnDef::new(StepExecutions::Name)
                            .string_len(100)
                            .not_null(),
                    )
                    .col(status(StepExecutions::Status))
                    .col(ColumnDef::new(StepExecutions::ExitCode).integer().null())
                    .col(timestamp_null(StepExecutions::StartedAt))
                    .col(timestamp_null(StepExecutions::FinishedAt))
                    .col(text(StepExecutions::Reason))
                    .primary_key(
                        Index::create()
                            .col(StepExecutions::ExecutionId)
                            .col(StepExecutions::StepIndex),
                    )
                    .foreign_key(&mut customer_fk(
                        "fk_step_executions_customer",
                        StepExecutions::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_step_executions_execution",
                        StepExecutions::Table,
                        "execution_id",
                        Executions::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_step_executions_customer",
                StepExecutions::Table,
                &["customer_id", "execution_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LogChunks::Table)
                    .col(big(LogChunks::CustomerId))
                    .col(big(LogChunks::ExecutionId))
                    .col(big(LogChunks::Sequence))
                    .col(int(LogChunks::StepIndex))
                    .col(ColumnDef::new(LogChunks::Stream).string_len(8).not_null())
                    .col(text(LogChunks::Text))
                    .col(timestamp(LogChunks::LoggedAt))
                    .primary_key(
                        Index::create()
                            .col(LogChunks::ExecutionId)
                            .col(LogChunks::Sequence),
                    )
                    .foreign_key(&mut customer_fk("fk_log_chunks_customer", LogChunks::Table))
                    .foreign_key(&mut tenant_fk(
                        "fk_log_chunks_execution",
                        LogChunks::Table,
                        "execution_id",
                        Executions::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_log_chunks_customer",
                LogChunks::Table,
                &["customer_id", "execution_id", "sequence"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Artifacts::Table)
                    .col(id_column(Artifacts::Id))
                    .col(big(Artifacts::CustomerId))
                    .col(big(Artifacts::ExecutionId))
                    .col(int(Artifacts::StepIndex))
                    .col(ColumnDef::new(Artifacts::Path).string_len(1024).not_null())
                    .col(big(Artifacts::SizeBytes))
                    .col(ColumnDef::new(Artifacts::Sha256).string_len(64).not_null())
                    .col(
                        ColumnDef::new(Artifacts::StorageKey)
                            .string_len(256)
                            .not_null(),
                    )
                    .col(timestamp(Artifacts::CreatedAt))
                    .foreign_key(&mut customer_fk("fk_artifacts_customer", Artifacts::Table))
                    .foreign_key(&mut tenant_fk(
                        "fk_artifacts_execution",
                        Artifacts::Table,
                        "execution_id",
                        Executions::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_artifacts_execution_path",
                    Artifacts::Table,
                    &["execution_id", "step_index", "path"],
                )
                .unique()
                .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_artifacts_customer",
                Artifacts::Table,
                &["customer_id", "execution_id"],
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Artifacts::Table.into_iden(),
            LogChunks::Table.into_iden(),
            StepExecutions::Table.into_iden(),
            Executions::Table.into_iden(),
            Pipelines::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
