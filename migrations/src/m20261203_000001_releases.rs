//! Releases: environments, release definitions (associated build pipelines, ordered stages),
//! release executions with the builds they ship, and stage executions linked to the deploy
//! pipeline's execution by id. Every existing customer gets the four default environments.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

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
enum Pipelines {
    Table,
}

#[derive(DeriveIden)]
enum Agents {
    Table,
}

#[derive(DeriveIden)]
enum Executions {
    Table,
}

#[derive(DeriveIden)]
enum Environments {
    Table,
    Id,
    CustomerId,
    Name,
    Description,
    SortOrder,
    RequiresApproval,
    ApproverRoles,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Releases {
    Table,
    Id,
    CustomerId,
    Name,
    Description,
    Status,
    LastNumber,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ReleasePipelines {
    Table,
    CustomerId,
    ReleaseId,
    PipelineId,
}

#[derive(DeriveIden)]
enum ReleaseStages {
    Table,
    CustomerId,
    ReleaseId,
    StageOrder,
    EnvironmentId,
    PipelineId,
    SelectorAgentId,
    SelectorLabels,
    RequiresApproval,
    Parameters,
}

#[derive(DeriveIden)]
enum ReleaseExecutions {
    Table,
    Id,
    CustomerId,
    ReleaseId,
    ReleaseName,
    Number,
    Version,
    Status,
    Parameters,
    TriggeredBy,
    Reason,
    CreatedAt,
    FinishedAt,
    CancelRequestedAt,
}

#[derive(DeriveIden)]
enum ReleaseExecutionBuilds {
    Table,
    CustomerId,
    ReleaseExecutionId,
    PipelineId,
    ExecutionId,
}

#[derive(DeriveIden)]
enum StageExecutions {
    Table,
    Id,
    CustomerId,
    ReleaseExecutionId,
    StageOrder,
    EnvironmentId,
    EnvironmentName,
    PipelineId,
    SelectorAgentId,
    SelectorLabels,
    Parameters,
    RequiresApproval,
    Status,
    ExecutionId,
    ApprovedBy,
    ApprovedAt,
    RejectedBy,
    Comment,
    StartedAt,
    FinishedAt,
    Reason,
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

fn text<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).text().not_null().take()
}

fn json<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).json_binary().not_null().take()
}

fn status<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).string_len(24).not_null().take()
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

/// The seed's four environments: (name, order, requires approval, approver roles).
const DEFAULT_ENVIRONMENTS: [(&str, i32, bool, &str); 4] = [
    ("Development", 1, false, r#"["admin","devops","developer"]"#),
    ("QA", 2, false, r#"["admin","devops","qa"]"#),
    ("Staging", 3, true, r#"["admin","devops","qa"]"#),
    ("Production", 4, true, r#"["admin","devops"]"#),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Environments::Table)
                    .col(id_column(Environments::Id))
                    .col(big(Environments::CustomerId))
                    .col(
                        ColumnDef::new(Environments::Name)
                            .string_len(100)
                            .not_null(),
                    )
                    .col(text(Environments::Description))
                    .col(ColumnDef::new(Environments::SortOrder).integer().not_null())
                    .col(
                        ColumnDef::new(Environments::RequiresApproval)
                            .boolean()
                            .not_null(),
                    )
                    .col(json(Environments::ApproverRoles))
                    .col(timestamp(Environments::CreatedAt))
                    .col(timestamp(Environments::UpdatedAt))
                    .foreign_key(&mut customer_fk(
                        "fk_environments_customer",
                        Environments::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_environments_customer_id",
                    Environments::Table,
                    &["customer_id", "id"],
                )
                .unique()
                .take(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_environments_customer_name",
                    Environments::Table,
                    &["customer_id", "name"],
                )
                .unique()
                .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Releases::Table)
                    .col(id_column(Releases::Id))
                    .col(big(Releases::CustomerId))
                    .col(ColumnDef::new(Releases::Name).string_len(200).not_null())
                    .col(text(Releases::Description))
                    .col(status(Releases::Status))
                    .col(
                        ColumnDef::new(Releases::LastNumber)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(big(Releases::CreatedBy))
                    .col(timestamp(Releases::CreatedAt))
                    .col(timestamp(Releases::UpdatedAt))
                    .foreign_key(&mut customer_fk("fk_releases_customer", Releases::Table))
                    .foreign_key(&mut user_fk(
                        "fk_releases_created_by",
                        Releases::Table,
                        "created_by",
                    ))
                    .check(Expr::col(Releases::Status).is_in(["active", "disabled", "archived"]))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_releases_customer_id",
                    Releases::Table,
                    &["customer_id", "id"],
                )
                .unique()
                .take(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_releases_customer_name",
                    Releases::Table,
                    &["customer_id", "name"],
                )
                .unique()
                .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ReleasePipelines::Table)
                    .col(big(ReleasePipelines::CustomerId))
                    .col(big(ReleasePipelines::ReleaseId))
                    .col(big(ReleasePipelines::PipelineId))
                    .primary_key(
                        Index::create()
                            .col(ReleasePipelines::ReleaseId)
                            .col(ReleasePipelines::PipelineId),
                    )
                    .foreign_key(&mut customer_fk(
                        "fk_release_pipelines_customer",
                        ReleasePipelines::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_release_pipelines_release",
                        ReleasePipelines::Table,
                        "release_id",
                        Releases::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_release_pipelines_pipeline",
                        ReleasePipelines::Table,
                        "pipeline_id",
                        Pipelines::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_release_pipelines_customer",
                ReleasePipelines::Table,
                &["customer_id", "release_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ReleaseStages::Table)
                    .col(big(ReleaseStages::CustomerId))
                    .col(big(ReleaseStages::ReleaseId))
                    .col(
                        ColumnDef::new(ReleaseStages::StageOrder)
                            .integer()
                            .not_null(),
                    )
                    .col(big(ReleaseStages::EnvironmentId))
                    .col(big(ReleaseStages::PipelineId))
                    .col(big_null(ReleaseStages::SelectorAgentId))
                    .col(
                        ColumnDef::new(ReleaseStages::SelectorLabels)
                            .json_binary()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ReleaseStages::RequiresApproval)
                            .boolean()
                            .null(),
                    )
                    .col(json(ReleaseStages::Parameters))
                    .primary_key(
                        Index::create()
                            .col(ReleaseStages::ReleaseId)
                            .col(ReleaseStages::StageOrder),
                    )
                    .foreign_key(&mut customer_fk(
                        "fk_release_stages_customer",
                        ReleaseStages::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_release_stages_release",
                        ReleaseStages::Table,
                        "release_id",
                        Releases::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_release_stages_environment",
                        ReleaseStages::Table,
                        "environment_id",
                        Environments::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_release_stages_pipeline",
                        ReleaseStages::Table,
                        "pipeline_id",
                        Pipelines::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_release_stages_agent",
                        ReleaseStages::Table,
                        "selector_agent_id",
                        Agents::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_release_stages_customer",
                ReleaseStages::Table,
                &["customer_id", "release_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ReleaseExecutions::Table)
                    .col(id_column(ReleaseExecutions::Id))
                    .col(big(ReleaseExecutions::CustomerId))
                    .col(big(ReleaseExecutions::ReleaseId))
                    .col(
                        ColumnDef::new(ReleaseExecutions::ReleaseName)
                            .string_len(200)
                            .not_null(),
                    )
                    .col(big(ReleaseExecutions::Number))
                    .col(
                        ColumnDef::new(ReleaseExecutions::Version)
                            .string_len(100)
                            .not_null(),
                    )
                    .col(status(ReleaseExecutions::Status))
                    .col(json(ReleaseExecutions::Parameters))
                    .col(big(ReleaseExecutions::TriggeredBy))
                    .col(text(ReleaseExecutions::Reason))
                    .col(timestamp(ReleaseExecutions::CreatedAt))
                    .col(timestamp_null(ReleaseExecutions::FinishedAt))
                    .col(timestamp_null(ReleaseExecutions::CancelRequestedAt))
                    .foreign_key(&mut customer_fk(
                        "fk_release_executions_customer",
                        ReleaseExecutions::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_release_executions_release",
                        ReleaseExecutions::Table,
                        "release_id",
                        Releases::Table,
                    ))
                    .foreign_key(&mut user_fk(
                        "fk_release_executions_triggered_by",
                        ReleaseExecutions::Table,
                        "triggered_by",
                    ))
                    .check(Expr::col(ReleaseExecutions::Status).is_in([
                        "pending",
                        "in_progress",
                        "succeeded",
                        "failed",
                        "cancelled",
                        "rejected",
                    ]))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_release_executions_customer_id",
                    ReleaseExecutions::Table,
                    &["customer_id", "id"],
                )
                .unique()
                .take(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_release_executions_number",
                    ReleaseExecutions::Table,
                    &["release_id", "number"],
                )
                .unique()
                .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_release_executions_status",
                ReleaseExecutions::Table,
                &["status", "id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ReleaseExecutionBuilds::Table)
                    .col(big(ReleaseExecutionBuilds::CustomerId))
                    .col(big(ReleaseExecutionBuilds::ReleaseExecutionId))
                    .col(big(ReleaseExecutionBuilds::PipelineId))
                    .col(big(ReleaseExecutionBuilds::ExecutionId))
                    .primary_key(
                        Index::create()
                            .col(ReleaseExecutionBuilds::ReleaseExecutionId)
                            .col(ReleaseExecutionBuilds::PipelineId),
                    )
                    .foreign_key(&mut customer_fk(
                        "fk_release_execution_builds_customer",
                        ReleaseExecutionBuilds::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_release_execution_builds_release_execution",
                        ReleaseExecutionBuilds::Table,
                        "release_execution_id",
                        ReleaseExecutions::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_release_execution_builds_pipeline",
                        ReleaseExecutionBuilds::Table,
                        "pipeline_id",
                        Pipelines::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_release_execution_builds_execution",
                        ReleaseExecutionBuilds::Table,
                        "execution_id",
                        Executions::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_release_execution_builds_customer",
                ReleaseExecutionBuilds::Table,
                &["customer_id", "release_execution_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(StageExecutions::Table)
                    .col(id_column(StageExecutions::Id))
                    .col(big(StageExecutions::CustomerId))
                    .col(big(StageExecutions::ReleaseExecutionId))
                    .col(
                        ColumnDef::new(StageExecutions::StageOrder)
                            .integer()
                            .not_null(),
                    )
                    .col(big(StageExecutions::EnvironmentId))
                    .col(
                        ColumnDef::new(StageExecutions::EnvironmentName)
                            .string_len(100)
                            .not_null(),
                    )
                    .col(big(StageExecutions::PipelineId))
                    .col(big_null(StageExecutions::SelectorAgentId))
                    .col(
                        ColumnDef::new(StageExecutions::SelectorLabels)
                            .json_binary()
                            .null(),
                    )
                    .col(json(StageExecutions::Parameters))
                    .col(
                        ColumnDef::new(StageExecutions::RequiresApproval)
                            .boolean()
                            .not_null(),
                    )
                    .col(status(StageExecutions::Status))
                    .col(big_null(StageExecutions::ExecutionId))
                    .col(big_null(StageExecutions::ApprovedBy))
                    .col(timestamp_null(StageExecutions::ApprovedAt))
                    .col(big_null(StageExecutions::RejectedBy))
                    .col(text(StageExecutions::Comment))
                    .col(timestamp_null(StageExecutions::StartedAt))
                    .col(timestamp_null(StageExecutions::FinishedAt))
                    .col(text(StageExecutions::Reason))
                    .foreign_key(&mut customer_fk(
                        "fk_stage_executions_customer",
                        StageExecutions::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_stage_executions_release_execution",
                        StageExecutions::Table,
                        "release_execution_id",
                        ReleaseExecutions::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_stage_executions_environment",
                        StageExecutions::Table,
                        "environment_id",
                        Environments::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_stage_executions_pipeline",
                        StageExecutions::Table,
                        "pipeline_id",
                        Pipelines::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_stage_executions_execution",
                        StageExecutions::Table,
                        "execution_id",
                        Executions::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_stage_executions_agent",
                        StageExecutions::Table,
                        "selector_agent_id",
                        Agents::Table,
                    ))
                    .foreign_key(&mut user_fk(
                        "fk_stage_executions_approved_by",
                        StageExecutions::Table,
                        "approved_by",
                    ))
                    .foreign_key(&mut user_fk(
                        "fk_stage_executions_rejected_by",
                        StageExecutions::Table,
                        "rejected_by",
                    ))
                    .check(Expr::col(StageExecutions::Status).is_in([
                        "pending",
                        "awaiting_approval",
                        "in_progress",
                        "succeeded",
                        "failed",
                        "cancelled",
                        "skipped",
                    ]))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_stage_executions_customer_id",
                    StageExecutions::Table,
                    &["customer_id", "id"],
                )
                .unique()
                .take(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_stage_executions_order",
                    StageExecutions::Table,
                    &["release_execution_id", "stage_order"],
                )
                .unique()
                .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_stage_executions_execution",
                StageExecutions::Table,
                &["execution_id"],
            ))
            .await?;

        // The four default environments for every customer that exists already.
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        let customers = db
            .query_all_raw(Statement::from_string(backend, "SELECT id FROM customers"))
            .await?;
        let now = chrono::Utc::now();
        for row in customers {
            let customer_id: i64 = row.try_get("", "id")?;
            for (name, order, requires_approval, roles) in DEFAULT_ENVIRONMENTS {
                let roles: serde_json::Value = serde_json::from_str(roles)
                    .map_err(|error| DbErr::Custom(error.to_string()))?;
                let insert = Query::insert()
                    .into_table(Environments::Table)
                    .columns([
                        Environments::CustomerId,
                        Environments::Name,
                        Environments::Description,
                        Environments::SortOrder,
                        Environments::RequiresApproval,
                        Environments::ApproverRoles,
                        Environments::CreatedAt,
                        Environments::UpdatedAt,
                    ])
                    .values_panic([
                        customer_id.into(),
                        name.into(),
                        "".into(),
                        order.into(),
                        requires_approval.into(),
                        roles.into(),
                        now.into(),
                        now.into(),
                    ])
                    .to_owned();
                db.execute(&insert).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            StageExecutions::Table.into_iden(),
            ReleaseExecutionBuilds::Table.into_iden(),
            ReleaseExecutions::Table.into_iden(),
            ReleaseStages::Table.into_iden(),
            ReleasePipelines::Table.into_iden(),
            Releases::Table.into_iden(),
            Environments::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
