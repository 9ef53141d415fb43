//! Log chunk text on PostgreSQL is stored out of line without compression (`STORAGE
//! EXTERNAL`): a chunk is up to 64 KiB of fresh output written once and read rarely, and
//! compressing each one (pglz) on insert cost more than the bytes it saved. Only rows written
//! afterwards are affected. SQLite has no such setting: nothing to do there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

async fn set_storage(manager: &SchemaManager<'_>, storage: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_unprepared(&format!(
            "ALTER TABLE log_chunks ALTER COLUMN text SET STORAGE {storage}"
        ))
        .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_storage(manager, "EXTERNAL").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_storage(manager, "EXTENDED").await
    }
}
