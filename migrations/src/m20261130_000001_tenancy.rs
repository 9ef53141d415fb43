//! Tenancy: customers, users, memberships (the original system's `user_customers`) and API tokens.
//!
//! Database-level guarantees: every foreign key restricts deletion (tenant data is never
//! cascaded away; customers are soft-deleted), `customer_id` is NOT NULL and indexed wherever it
//! appears, names and emails are unique, and a user has at most one default membership.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    Email,
    FullName,
    IsActive,
    IsSuperuser,
    CreatedAt,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum Customers {
    Table,
    Id,
    Name,
    DisplayName,
    Description,
    LogoUrl,
    ContactEmail,
    ContactPhone,
    Address,
    IsActive,
    Settings,
    CreatedAt,
    UpdatedAt,
    CreatedBy,
}

#[derive(DeriveIden)]
enum UserCustomers {
    Table,
    Id,
    UserId,
    CustomerId,
    Role,
    IsDefault,
    AssignedAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    UserId,
    Name,
    TokenHash,
    TokenPrefix,
    CreatedAt,
    ExpiresAt,
    LastUsedAt,
    RevokedAt,
}

fn id_column<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .take()
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

fn text<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).text().not_null().take()
}

fn flag<T: IntoIden>(name: T, default: bool) -> ColumnDef {
    ColumnDef::new(name)
        .boolean()
        .not_null()
        .default(default)
        .take()
}

fn restrict_fk(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Restrict)
        .on_update(ForeignKeyAction::Restrict)
        .take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(id_column(Users::Id))
                    .col(ColumnDef::new(Users::Username).string_len(64).not_null())
                    .col(ColumnDef::new(Users::Email).string_len(254).not_null())
                    .col(text(Users::FullName))
                    .col(flag(Users::IsActive, true))
                    .col(flag(Users::IsSuperuser, false))
                    .col(timestamp(Users::CreatedAt))
                    .col(timestamp_null(Users::LastSeenAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_users_username")
                    .table(Users::Table)
                    .col(Users::Username)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_users_email")
                    .table(Users::Table)
                    .col(Users::Email)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Customers::Table)
                    .col(id_column(Customers::Id))
                    .col(ColumnDef::new(Customers::Name).string_len(63).not_null())
                    .col(
                        ColumnDef::new(Customers::DisplayName)
                            .string_len(200)
                            .not_null(),
                    )
                    .col(text(Customers::Description))
                    .col(text(Customers::LogoUrl))
                    .col(
                        ColumnDef::new(Customers::ContactEmail)
                            .string_len(254)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Customers::ContactPhone)
                            .string_len(50)
                            .not_null(),
                    )
                    .col(text(Customers::Address))
                    .col(flag(Customers::IsActive, true))
                    .col(ColumnDef::new(Customers::Settings).json_binary().not_null())
                    .col(timestamp(Customers::CreatedAt))
                    .col(timestamp(Customers::UpdatedAt))
                    .col(ColumnDef::new(Customers::CreatedBy).big_integer().null())
                    .foreign_key(&mut restrict_fk(
                        "fk_customers_created_by",
                        (Customers::Table, Customers::CreatedBy),
                        (Users::Table, Users::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_customers_name")
                    .table(Customers::Table)
                    .col(Customers::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserCustomers::Table)
                    .col(id_column(UserCustomers::Id))
                    .col(
                        ColumnDef::new(UserCustomers::UserId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(UserCustomers::CustomerId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(UserCustomers::Role)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(flag(UserCustomers::IsDefault, false))
                    .col(timestamp(UserCustomers::AssignedAt))
                    .foreign_key(&mut restrict_fk(
                        "fk_user_customers_user",
                        (UserCustomers::Table, UserCustomers::UserId),
                        (Users::Table, Users::Id),
                    ))
                    .foreign_key(&mut restrict_fk(
                        "fk_user_customers_customer",
                        (UserCustomers::Table, UserCustomers::CustomerId),
                        (Customers::Table, Customers::Id),
                    ))
                    .check(Expr::col(UserCustomers::Role).is_in([
                        "admin",
                        "devops",
                        "developer",
                        "qa",
                        "viewer",
                    ]))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_user_customers_user_customer")
                    .table(UserCustomers::Table)
                    .col(UserCustomers::UserId)
                    .col(UserCustomers::CustomerId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_user_customers_customer")
                    .table(UserCustomers::Table)
                    .col(UserCustomers::CustomerId)
                    .col(UserCustomers::UserId)
                    .to_owned(),
            )
            .await?;
        // At most one default membership per user, enforced by the database.
        manager
            .create_index(
                Index::create()
                    .name("ux_user_customers_one_default")
                    .table(UserCustomers::Table)
                    .col(UserCustomers::UserId)
                    .unique()
                    .and_where(Expr::col(UserCustomers::IsDefault).eq(true))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .col(id_column(ApiTokens::Id))
                    .col(ColumnDef::new(ApiTokens::UserId).big_integer().not_null())
                    .col(ColumnDef::new(ApiTokens::Name).string_len(100).not_null())
                    .col(
                        ColumnDef::new(ApiTokens::TokenHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ApiTokens::TokenPrefix)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(timestamp(ApiTokens::CreatedAt))
                    .col(timestamp_null(ApiTokens::ExpiresAt))
                    .col(timestamp_null(ApiTokens::LastUsedAt))
                    .col(timestamp_null(ApiTokens::RevokedAt))
                    .foreign_key(&mut restrict_fk(
                        "fk_api_tokens_user",
                        (ApiTokens::Table, ApiTokens::UserId),
                        (Users::Table, Users::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_api_tokens_hash")
                    .table(ApiTokens::Table)
                    .col(ApiTokens::TokenHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_api_tokens_user")
                    .table(ApiTokens::Table)
                    .col(ApiTokens::UserId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ApiTokens::Table.into_iden(),
            UserCustomers::Table.into_iden(),
            Customers::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
