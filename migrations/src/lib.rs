//! Schema migrations for CygnetCI.
//!
//! Migrations are append-only and reversible: a released migration is never edited, a change to
//! the schema is a new file. Each runs on SQLite and PostgreSQL alike; backend branches exist only
//! where the two truly differ.

pub use sea_orm_migration::prelude::*;

mod columns;
mod m20261130_000001_tenancy;
mod m20261201_000001_agents;
mod m20261202_000001_pipelines;
mod m20261203_000001_releases;
mod m20261204_000001_monitors;
mod m20261205_000001_web_sessions;
mod m20261206_000001_variables;
mod m20261207_000001_pipeline_variable_groups;
mod m20261208_000001_quotas;
mod m20261209_000001_usage;
mod m20261210_000001_pipeline_versions;
mod m20261211_000001_agent_credentials;
mod m20261212_000001_release_snapshots;
mod m20261213_000001_invitations;
mod m20261214_000001_log_chunk_storage;
mod m20261215_000001_execution_rollups;
mod m20261216_000001_execution_triggers;
mod m20261217_000001_schedules;
mod m20261218_000001_webhooks;

/// Every migration, in the order they apply.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261130_000001_tenancy::Migration),
            Box::new(m20261201_000001_agents::Migration),
            Box::new(m20261202_000001_pipelines::Migration),
            Box::new(m20261203_000001_releases::Migration),
            Box::new(m20261204_000001_monitors::Migration),
            Box::new(m20261205_000001_web_sessions::Migration),
            Box::new(m20261206_000001_variables::Migration),
            Box::new(m20261207_000001_pipeline_variable_groups::Migration),
            Box::new(m20261208_000001_quotas::Migration),
            Box::new(m20261209_000001_usage::Migration),
            Box::new(m20261210_000001_pipeline_versions::Migration),
            Box::new(m20261211_000001_agent_credentials::Migration),
            Box::new(m20261212_000001_release_snapshots::Migration),
            Box::new(m20261213_000001_invitations::Migration),
            Box::new(m20261214_000001_log_chunk_storage::Migration),
            Box::new(m20261215_000001_execution_rollups::Migration),
            Box::new(m20261216_000001_execution_triggers::Migration),
            Box::new(m20261217_000001_schedules::Migration),
            Box::new(m20261218_000001_webhooks::Migration),
        ]
    }
}
