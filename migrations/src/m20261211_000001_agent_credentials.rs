//! Agent credentials: an agent uuid is unique within its customer only (two customers may both
//! have an `agent-01`, and neither learns of the other), and an agent may carry a re-enrolment
//! token an administrator issued (stored as a hash, with its expiry) that lets the build host
//! register the same uuid again without its current credential, and restores a deleted agent.

use sea_orm_migration::prelude::*;

use crate::columns::{index, timestamp_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Agents {
    Table,
    ReenrolmentTokenHash,
    ReenrolmentExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ux_agents_uuid")
                    .table(Agents::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_agents_customer_uuid",
                    Agents::Table,
                    &["customer_id", "uuid"],
                )
                .unique()
                .take(),
            )
            .await?;
        // SQLite alters one column per statement.
        manager
            .alter_table(
                Table::alter()
                    .table(Agents::Table)
                    .add_column(
                        ColumnDef::new(Agents::ReenrolmentTokenHash)
                            .string_len(128)
                            .null()
                            .take(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Agents::Table)
                    .add_column(timestamp_null(Agents::ReenrolmentExpiresAt))
                    .to_owned(),
            )
            .await
    }

    /// Going back fails while two customers share a uuid: the global index cannot hold then.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Agents::Table)
                    .drop_column(Agents::ReenrolmentExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Agents::Table)
                    .drop_column(Agents::ReenrolmentTokenHash)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ux_agents_customer_uuid")
                    .table(Agents::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ux_agents_uuid", Agents::Table, &["uuid"])
                    .unique()
                    .take(),
            )
            .await
    }
}
