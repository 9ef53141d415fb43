//! Agents: registration tokens, agents and their labels, heartbeat samples, and the activity feed.
//!
//! References inside a tenant are composite `(customer_id, id)` foreign keys, so a label or a
//! sample can never point at another customer's agent, even through a bug.

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
enum RegistrationTokens {
    Table,
    Id,
    CustomerId,
    Description,
    TokenHash,
    TokenPrefix,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    MaxUses,
    UseCount,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Agents {
    Table,
    Id,
    CustomerId,
    Uuid,
    Name,
    Location,
    Hostname,
    Os,
    Arch,
    Version,
    MaxConcurrentJobs,
    Enabled,
    Status,
    CredentialHash,
    ConnectionId,
    RegisteredAt,
    UpdatedAt,
    LastSeenAt,
    DeletedAt,
    CpuPercent,
    MemoryPercent,
    MemoryUsedBytes,
    MemoryTotalBytes,
    DiskFreeBytes,
    LoadAverage,
    RunningJobs,
}

#[derive(DeriveIden)]
enum AgentLabels {
    Table,
    CustomerId,
    AgentId,
    Label,
}

#[derive(DeriveIden)]
enum AgentSamples {
    Table,
    Id,
    CustomerId,
    AgentId,
    SampledAt,
    CpuPercent,
    MemoryPercent,
    MemoryUsedBytes,
    MemoryTotalBytes,
    DiskFreeBytes,
    LoadAverage,
    RunningJobs,
}

#[derive(DeriveIden)]
enum ActivityEvents {
    Table,
    Id,
    CustomerId,
    Kind,
    SubjectType,
    SubjectId,
    Message,
    ActorUserId,
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

fn double_null<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).double().null().take()
}

fn text<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).text().not_null().take()
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

fn agent_fk(name: &str, table: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, (Alias::new("customer_id"), Alias::new("agent_id")))
        .to(Agents::Table, (Agents::CustomerId, Agents::Id))
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
                    .table(RegistrationTokens::Table)
                    .col(id_column(RegistrationTokens::Id))
                    .col(big(RegistrationTokens::CustomerId))
                    .col(text(RegistrationTokens::Description))
                    .col(
                        ColumnDef::new(RegistrationTokens::TokenHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RegistrationTokens::TokenPrefix)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(big(RegistrationTokens::CreatedBy))
                    .col(timestamp(RegistrationTokens::CreatedAt))
                    .col(timestamp_null(RegistrationTokens::ExpiresAt))
                    .col(
                        ColumnDef::new(RegistrationTokens::MaxUses)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(RegistrationTokens::UseCount)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(timestamp_null(RegistrationTokens::RevokedAt))
                    .foreign_key(&mut customer_fk(
                        "fk_registration_tokens_customer",
                        RegistrationTokens::Table,
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_registration_tokens_created_by")
                            .from(RegistrationTokens::Table, RegistrationTokens::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_registration_tokens_hash",
                    RegistrationTokens::Table,
                    &["token_hash"],
                )
                .unique()
                .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_registration_tokens_customer",
                RegistrationTokens::Table,
                &["customer_id", "id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Agents::Table)
                    .col(id_column(Agents::Id))
                    .col(big(Agents::CustomerId))
                    .col(ColumnDef::new(Agents::Uuid).string_len(128).not_null())
                    .col(ColumnDef::new(Agents::Name).string_len(200).not_null())
                    .col(text(Agents::Location))
                    .col(text(Agents::Hostname))
                    .col(text(Agents::Os))
                    .col(text(Agents::Arch))
                    .col(text(Agents::Version))
                    .col(
                        ColumnDef::new(Agents::MaxConcurrentJobs)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Agents::Enabled)
                            .boolean()
                            .not_null()
                            .default(true),
                    )
                    .col(ColumnDef::new(Agents::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Agents::CredentialHash)
                            .string_len(64)
                            .not_null(),
                    )
                    // Identifies the stream that last marked the agent online, so a late
                    // "offline" from an older stream (or another replica) cannot clobber it.
                    .col(big_null(Agents::ConnectionId))
                    .col(timestamp(Agents::RegisteredAt))
                    .col(timestamp(Agents::UpdatedAt))
                    .col(timestamp_null(Agents::LastSeenAt))
                    .col(timestamp_null(Agents::DeletedAt))
                    .col(double_null(Agents::CpuPercent))
                    .col(double_null(Agents::MemoryPercent))
                    .col(big_null(Agents::MemoryUsedBytes))
                    .col(big_null(Agents::MemoryTotalBytes))
                    .col(big_null(Agents::DiskFreeBytes))
                    .col(double_null(Agents::LoadAverage))
                    .col(
                        ColumnDef::new(Agents::RunningJobs)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .foreign_key(&mut customer_fk("fk_agents_customer", Agents::Table))
                    .check(Expr::col(Agents::Status).is_in(["online", "offline"]))
                    .to_owned(),
            )
            .await?;
        // The uuid is global: one build host belongs to exactly one customer.
        manager
            .create_index(
                index("ux_agents_uuid", Agents::Table, &["uuid"])
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_index(
                index("ux_agents_credential", Agents::Table, &["credential_hash"])
                    .unique()
                    .take(),
            )
            .await?;
        // Target of the composite foreign keys, and the tenant index.
        manager
            .create_index(
                index(
                    "ux_agents_customer_id",
                    Agents::Table,
                    &["customer_id", "id"],
                )
                .unique()
                .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AgentLabels::Table)
                    .col(big(AgentLabels::CustomerId))
                    .col(big(AgentLabels::AgentId))
                    .col(ColumnDef::new(AgentLabels::Label).string_len(64).not_null())
                    .primary_key(
                        Index::create()
                            .col(AgentLabels::AgentId)
                            .col(AgentLabels::Label),
                    )
                    .foreign_key(&mut customer_fk(
                        "fk_agent_labels_customer",
                        AgentLabels::Table,
                    ))
                    .foreign_key(&mut agent_fk("fk_agent_labels_agent", AgentLabels::Table))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_agent_labels_customer_label",
                AgentLabels::Table,
                &["customer_id", "label", "agent_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AgentSamples::Table)
                    .col(id_column(AgentSamples::Id))
                    .col(big(AgentSamples::CustomerId))
                    .col(big(AgentSamples::AgentId))
                    .col(timestamp(AgentSamples::SampledAt))
                    .col(ColumnDef::new(AgentSamples::CpuPercent).double().not_null())
                    .col(
                        ColumnDef::new(AgentSamples::MemoryPercent)
                            .double()
                            .not_null(),
                    )
                    .col(big(AgentSamples::MemoryUsedBytes))
                    .col(big(AgentSamples::MemoryTotalBytes))
                    .col(big(AgentSamples::DiskFreeBytes))
                    .col(
                        ColumnDef::new(AgentSamples::LoadAverage)
                            .double()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AgentSamples::RunningJobs)
                            .integer()
                            .not_null(),
                    )
                    .foreign_key(&mut customer_fk(
                        "fk_agent_samples_customer",
                        AgentSamples::Table,
                    ))
                    .foreign_key(&mut agent_fk("fk_agent_samples_agent", AgentSamples::Table))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_agent_samples_agent_time",
                AgentSamples::Table,
                &["customer_id", "agent_id", "sampled_at"],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_agent_samples_time",
                AgentSamples::Table,
                &["sampled_at"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ActivityEvents::Table)
                    .col(id_column(ActivityEvents::Id))
                    .col(big(ActivityEvents::CustomerId))
                    .col(
                        ColumnDef::new(ActivityEvents::Kind)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ActivityEvents::SubjectType)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(big(ActivityEvents::SubjectId))
                    .col(text(ActivityEvents::Message))
                    .col(big_null(ActivityEvents::ActorUserId))
                    .col(timestamp(ActivityEvents::CreatedAt))
                    .foreign_key(&mut customer_fk(
                        "fk_activity_events_customer",
                        ActivityEvents::Table,
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_activity_events_actor")
                            .from(ActivityEvents::Table, ActivityEvents::ActorUserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_activity_events_customer",
                ActivityEvents::Table,
                &["customer_id", "id"],
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ActivityEvents::Table.into_iden(),
            AgentSamples::Table.into_iden(),
            AgentLabels::Table.into_iden(),
            Agents::Table.into_iden(),
            RegistrationTokens::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
