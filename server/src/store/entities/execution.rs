use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "executions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub customer_id: i64,
    pub pipeline_id: i64,
    pub pipeline_name: String,
    pub status: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub parameters: Json,
    #[sea_orm(column_type = "JsonBinary")]
    pub steps: Json,
    pub selector_agent_id: Option<i64>,
    #[sea_orm(column_type = "JsonBinary")]
    pub selector_labels: Json,
    pub timeout_seconds: i32,
    pub triggered_by: i64,
    pub agent_id: Option<i64>,
    pub queue_reason: String,
    pub failure_reason: String,
    pub created_at: DateTimeUtc,
    pub assigned_at: Option<DateTimeUtc>,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub lease_expires_at: Option<DateTimeUtc>,
    pub cancel_requested_at: Option<DateTimeUtc>,
    pub cancel_reason: String,
    pub retry_of: Option<i64>,
    pub last_sequence: i64,
    /// Bytes of log text stored for it (its quota counts these).
    pub log_bytes: i64,
    /// Its output reached the per-execution cap: the rest is not stored.
    pub log_truncated: bool,
    /// Retention removed its log.
    pub log_expired: bool,
    /// The version of its pipeline's steps it runs; unset for runs that carry a copy in `steps`.
    pub pipeline_version_id: Option<i64>,
    /// The variable groups it was queued with (JSON list of ids); unset for runs queued before
    /// migration m20261212, which read their pipeline's at delivery.
    pub variable_group_ids: Option<String>,
    /// What started it: `user`, `retry` or `release_stage` (migration m20261216).
    pub trigger_kind: String,
    /// For a release stage, its deployment and stage.
    pub trigger_release_execution_id: Option<i64>,
    pub trigger_stage_execution_id: Option<i64>,
    /// For a schedule's run, the schedule (migration m20261217).
    pub trigger_schedule_id: Option<i64>,
    /// For a webhook's run, the webhook and the delivery (migration m20261218).
    pub trigger_webhook_id: Option<i64>,
    pub trigger_webhook_delivery_id: Option<i64>,
    /// For a webhook's run, the delivery's event, branch and commit ("" otherwise).
    pub trigger_event: String,
    pub trigger_branch: String,
    pub trigger_commit: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
