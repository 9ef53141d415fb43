//! Web sessions: a session is an API token minted at sign-in from the token the user pasted,
//! which it names as its parent so that revoking the parent ends the session too.

use sea_orm_migration::prelude::*;

use crate::columns::{big_null, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    ParentTokenId,
}

const PARENT_INDEX: &str = "ix_api_tokens_parent_token_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ApiTokens::Table)
                    .add_column(big_null(ApiTokens::ParentTokenId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(PARENT_INDEX, ApiTokens::Table, &["parent_token_id"]))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(PARENT_INDEX)
                    .table(ApiTokens::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ApiTokens::Table)
                    .drop_column(ApiTokens::ParentTokenId)
                    .to_owned(),
            )
            .await
    }
}
