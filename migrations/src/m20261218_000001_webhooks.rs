//! Webhook endpoints and their deliveries. An endpoint is addressed by a random token (the
//! URL reveals nothing of its customer or pipeline) and checks each delivery with its secret,
//! sealed like secret variables. A delivery that queued a run holds its sender's delivery id
//! in `delivery_key` and the digest of its signed content in `fingerprint`, each unique per
//! endpoint, so a repeated delivery queues nothing, under its own id or another; deliveries
//! that queued nothing keep neither, so a forged or refused one cannot take the id of a real
//! one. Executions a delivery queued name the endpoint and the delivery, and keep its event,
//! branch and commit.

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
    TriggerWebhookId,
    TriggerWebhookDeliveryId,
    TriggerEvent,
    TriggerBranch,
    TriggerCommit,
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    CustomerId,
    PipelineId,
    Token,
    Format,
    SealedSecret,
    Events,
    Branches,
    Parameters,
    Enabled,
    LastDeliveryAt,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    CustomerId,
    WebhookId,
    DeliveryKey,
    Fingerprint,
    Event,
    Branch,
    Commit,
    Author,
    Outcome,
    Reason,
    ExecutionId,
    ReceivedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Webhooks::Table)
                    .col(id_column(Webhooks::Id))
                    .col(big(Webhooks::CustomerId))
                    .col(big(Webhooks::PipelineId))
                    .col(string(Webhooks::Token, 64))
                    .col(string(Webhooks::Format, 16))
                    .col(text(Webhooks::SealedSecret))
                    .col(json(Webhooks::Events))
                    .col(json(Webhooks::Branches))
                    .col(json(Webhooks::Parameters))
                    .col(ColumnDef::new(Webhooks::Enabled).boolean().not_null())
                    .col(timestamp_null(Webhooks::LastDeliveryAt))
                    .col(big(Webhooks::CreatedBy))
                    .col(timestamp(Webhooks::CreatedAt))
                    .col(timestamp(Webhooks::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_webhooks_customer",
                        Webhooks::Table,
                        "customer_id",
                        Customers::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_webhooks_pipeline",
                        Webhooks::Table,
                        "pipeline_id",
                        Pipelines::Table,
                    ))
                    .foreign_key(&mut fk(
                        "fk_webhooks_created_by",
                        Webhooks::Table,
                        "created_by",
                        Users::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ux_webhooks_token", Webhooks::Table, &["token"])
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The target of the deliveries' tenant key.
        manager
            .create_index(
                index(
                    "ux_webhooks_customer_id",
                    Webhooks::Table,
                    &["customer_id", "id"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_webhooks_customer_pipeline",
                Webhooks::Table,
                &["customer_id", "pipeline_id"],
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(id_column(WebhookDeliveries::Id))
                    .col(big(WebhookDeliveries::CustomerId))
                    .col(big(WebhookDeliveries::WebhookId))
                    .col(
                        ColumnDef::new(WebhookDeliveries::DeliveryKey)
                            .string_len(200)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(WebhookDeliveries::Fingerprint)
                            .string_len(64)
                            .null(),
                    )
                    .col(string(WebhookDeliveries::Event, 100))
                    .col(string(WebhookDeliveries::Branch, 255))
                    .col(string(WebhookDeliveries::Commit, 100))
                    .col(string(WebhookDeliveries::Author, 255))
                    .col(string(WebhookDeliveries::Outcome, 16))
                    .col(text(WebhookDeliveries::Reason))
                    .col(big_null(WebhookDeliveries::ExecutionId))
                    .col(timestamp(WebhookDeliveries::ReceivedAt))
                    .foreign_key(&mut fk(
                        "fk_webhook_deliveries_customer",
                        WebhookDeliveries::Table,
                        "customer_id",
                        Customers::Table,
                    ))
                    .foreign_key(&mut tenant_fk(
                        "fk_webhook_deliveries_webhook",
                        WebhookDeliveries::Table,
                        "webhook_id",
                        Webhooks::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_webhook_deliveries_key",
                    WebhookDeliveries::Table,
                    &["webhook_id", "delivery_key"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_webhook_deliveries_fingerprint",
                    WebhookDeliveries::Table,
                    &["webhook_id", "fingerprint"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_webhook_deliveries_customer_webhook",
                WebhookDeliveries::Table,
                &["customer_id", "webhook_id", "id"],
            ))
            .await?;
        // One column per statement: SQLite alters one at a time.
        let columns = [
            big_null(Executions::TriggerWebhookId),
            big_null(Executions::TriggerWebhookDeliveryId),
            string(Executions::TriggerEvent, 100).default("").to_owned(),
            string(Executions::TriggerBranch, 255)
                .default("")
                .to_owned(),
            string(Executions::TriggerCommit, 100)
                .default("")
                .to_owned(),
        ];
        for column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Executions::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Executions::TriggerWebhookId,
            Executions::TriggerWebhookDeliveryId,
            Executions::TriggerEvent,
            Executions::TriggerBranch,
            Executions::TriggerCommit,
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
        manager
            .drop_table(Table::drop().table(WebhookDeliveries::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Webhooks::Table).to_owned())
            .await
    }
}
