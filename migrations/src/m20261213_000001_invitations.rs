//! Memberships by invitation: a customer admin offers a role to a username; the user becomes a
//! member by accepting. At most one open invitation per customer and username. A declined one
//! stays (marked for its user only) until it lapses, so declining tells the admin nothing.

use sea_orm_migration::prelude::*;

use crate::columns::{big, fk, id_column, index, string, timestamp, timestamp_null};

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
enum Invitations {
    Table,
    Id,
    CustomerId,
    Username,
    Role,
    InvitedBy,
    CreatedAt,
    ExpiresAt,
    DeclinedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Invitations::Table)
                    .col(id_column(Invitations::Id))
                    .col(big(Invitations::CustomerId))
                    .col(string(Invitations::Username, 64))
                    .col(string(Invitations::Role, 20))
                    .col(big(Invitations::InvitedBy))
                    .col(timestamp(Invitations::CreatedAt))
                    .col(timestamp(Invitations::ExpiresAt))
                    .col(timestamp_null(Invitations::DeclinedAt))
                    .foreign_key(&mut fk(
                        "fk_invitations_customer",
                        Invitations::Table,
                        "customer_id",
                        Customers::Table,
                    ))
                    .foreign_key(&mut fk(
                        "fk_invitations_invited_by",
                        Invitations::Table,
                        "invited_by",
                        Users::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_invitations_customer_username",
                    Invitations::Table,
                    &["customer_id", "username"],
                )
                .unique()
                .take(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_invitations_username",
                Invitations::Table,
                &["username"],
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Invitations::Table).to_owned())
            .await
    }
}
