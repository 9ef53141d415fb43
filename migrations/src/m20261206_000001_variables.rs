//! Variable groups and their variables. A secret variable's value is stored only as ciphertext
//! (`cipher`, written by the server under its key); `value` holds non-secret values only.

use sea_orm_migration::prelude::*;

use crate::columns::{big, fk, id_column, index, string, tenant_fk, text, timestamp};

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
enum VariableGroups {
    Table,
    Id,
    CustomerId,
    Name,
    Description,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Variables {
    Table,
    Id,
    CustomerId,
    GroupId,
    Key,
    EnvironmentId,
    IsSecret,
    Value,
    Cipher,
    Description,
    UpdatedBy,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(VariableGroups::Table)
                    .col(id_column(VariableGroups::Id))
                    .col(big(VariableGroups::CustomerId))
                    .col(string(VariableGroups::Name, 100))
                    .col(text(VariableGroups::Description))
                    .col(big(VariableGroups::CreatedBy))
                    .col(timestamp(VariableGroups::CreatedAt))
                    .col(timestamp(VariableGroups::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_variable_groups_customer",
                        VariableGroups::Table,
                        "customer_id",
                        Customers::Table,
                    ))
                    .foreign_key(&mut fk(
                        "fk_variable_groups_created_by",
                        VariableGroups::Table,
                        "created_by",
                        Users::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            ("ux_variable_groups_customer_id", &["customer_id", "id"][..]),
            (
                "ux_variable_groups_customer_name",
                &["customer_id", "name"][..],
            ),
        ] {
            manager
                .create_index(
                    index(name, VariableGroups::Table, columns)
                        .unique()
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Variables::Table)
                    .col(id_column(Variables::Id))
                    .col(big(Variables::CustomerId))
                    .col(big(Variables::GroupId))
                    .col(string(Variables::Key, 128))
                    // 0: every environment (a real id is checked against the customer's own
                    // environments when the value is set).
                    .col(big(Variables::EnvironmentId))
                    .col(ColumnDef::new(Variables::IsSecret).boolean().not_null())
                    .col(text(Variables::Value))
                    .col(ColumnDef::new(Variables::Cipher).text().null())
                    .col(text(Variables::Description))
                    .col(big(Variables::UpdatedBy))
                    .col(timestamp(Variables::UpdatedAt))
                    .foreign_key(&mut tenant_fk(
                        "fk_variables_group",
                        Variables::Table,
                        "group_id",
                        VariableGroups::Table,
                    ))
                    .foreign_key(&mut fk(
                        "fk_variables_updated_by",
                        Variables::Table,
                        "updated_by",
                        Users::Table,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_variables_group_key_environment",
                    Variables::Table,
                    &["group_id", "key", "environment_id"],
                )
                .unique()
                .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Variables::Table.into_iden(),
            VariableGroups::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
