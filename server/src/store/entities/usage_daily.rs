use sea_orm::entity::prelude::*;

/// What one customer used on one day (UTC).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_daily")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub customer_id: i64,
    /// `YYYY-MM-DD`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: String,
    pub build_seconds: i64,
    pub executions_succeeded: i64,
    pub executions_failed: i64,
    pub executions_cancelled: i64,
    pub executions_timed_out: i64,
    pub log_bytes_added: i64,
    pub artifact_bytes_added: i64,
    pub log_bytes_stored: i64,
    pub artifact_bytes_stored: i64,
    pub agent_online_seconds: i64,
    pub monitor_checks: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
