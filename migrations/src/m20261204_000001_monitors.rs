//! Service monitors and their check results; the audit log of API writes.

use sea_orm_migration::prelude::*;

use crate::columns::{
    big, big_null, fk, id_column, index, int, json, string, tenant_fk, text, timestamp,
    timestamp_null,
};

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
enum Agents {
    Table,
}

#[derive(DeriveIden)]
enum Monitors {
    Table,
    Id,
    CustomerId,
    Name,
    Kind,
    Target,
    IntervalSeconds,
    TimeoutMs,
    WarningThresholdMs,
    ExpectedStatus,
    SelectorAgentId,
    SelectorLabels,
    Status,
    LastResponseMs,
    LastCheckedAt,
    LastMessage,
    AssignedAgentId,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MonitorResults {
    Table,
    Id,
    CustomerId,
    MonitorId,
    AgentId,
    CheckedAt,
    Status,
    ResponseMs,
    HttpStatus,
    Message,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    CustomerId,
    ActorUserId,
    ActorUsername,
    Method,
    ResourceType,
    ResourceId,
    PeerAddress,
    Code,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Monitors::Table)
                    .col(id_column(Monitors::Id))
                    .col(big(Monitors::CustomerId))
                    .col(string(Monitors::Name, 100))
                    .col(string(Monitors::Kind, 16))
                    .col(text(Monitors::Target))
                    .col(int(Monitors::IntervalSeconds))
                    .col(int(Monitors::TimeoutMs))
                    .col(int(Monitors::WarningThresholdMs))
                    .col(int(Monitors::ExpectedStatus))
                    .col(big_null(Monitors::SelectorAgentId))
                    .col(json(Monitors::SelectorLabels))
                    .col(string(Monitors::Status, 24))
                    .col(big(Monitors::LastResponseMs))
                    .col(timestamp_null(Monitors::LastCheckedAt))
                    .col(text(Monitors::LastMessage))
                    .col(big_null(Monitors::AssignedAgentId))
                    .col(big(Monitors::CreatedBy))
                    .col(timestamp(Monitors::CreatedAt))
                    .col(timestamp(Monitors::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_monitors_customer",
                        Monitors::Table,
                        "customer_id",
                        Customers::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_monitors_selector_agent",
                        Monitors::Table,
                        "selector_agent_id",
                        Agents::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_monitors_assigned_agent",
                        Monitors::Table,
                        "assigned_agent_id",
                        Agents::Table,
                    ))
                    .foreign_key(&mut fk(
                        "fk_monitors_created_by",
                        Monitors::Table,
                        "created_by",
                        Users::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        for (name, columns, unique) in [
            ("ux_monitors_customer_id", &["customer_id", "id"][..], true),
            (
                "ux_monitors_customer_name",
                &["customer_id", "name"][..],
                true,
            ),
            (
                "ix_monitors_assigned_agent",
                &["assigned_agent_id"][..],
                false,
            ),
        ] {
            let mut statement = index(name, Monitors::Table, columns);
            if unique {
                statement.unique();
            }
            manager.create_index(statement).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(MonitorResults::Table)
                    .col(id_column(MonitorResults::Id))
                    .col(big(MonitorResults::CustomerId))
                    .col(big(MonitorResults::MonitorId))
                    .col(big_null(MonitorResults::AgentId))
                    .col(timestamp(MonitorResults::CheckedAt))
                    .col(string(MonitorResults::Status, 24))
                    .col(big(MonitorResults::ResponseMs))
                    .col(int(MonitorResults::HttpStatus))
                    .col(text(MonitorResults::Message))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_monitor_results_monitor")
                            .from(
                                MonitorResults::Table,
                                (MonitorResults::CustomerId, MonitorResults::MonitorId),
                            )
                            .to(Monitors::Table, (Monitors::CustomerId, Monitors::Id))
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_monitor_results_monitor_checked",
                MonitorResults::Table,
                &["monitor_id", "checked_at"],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_monitor_results_checked",
                MonitorResults::Table,
                &["checked_at"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(id_column(AuditLog::Id))
                    .col(big_null(AuditLog::CustomerId))
                    .col(big_null(AuditLog::ActorUserId))
                    .col(text(AuditLog::ActorUsername))
                    .col(string(AuditLog::Method, 200))
                    .col(string(AuditLog::ResourceType, 50))
                    .col(big_null(AuditLog::ResourceId))
                    .col(string(AuditLog::PeerAddress, 100))
                    .col(string(AuditLog::Code, 32))
                    .col(timestamp(AuditLog::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_audit_log_customer",
                        AuditLog::Table,
                        "customer_id",
                        Customers::Table,
                    ))
                    .foreign_key(&mut fk(
                        "fk_audit_log_actor",
                        AuditLog::Table,
                        "actor_user_id",
                        Users::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_audit_log_customer",
                AuditLog::Table,
                &["customer_id", "id"],
            ))
            .await?;
        manager
            .create_index(index(
                "ix_audit_log_actor",
                AuditLog::Table,
                &["actor_user_id", "id"],
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditLog::Table.into_iden(),
            MonitorResults::Table.into_iden(),
            Monitors::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
