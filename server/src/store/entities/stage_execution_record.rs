use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "stage_executions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub customer_id: i64,
    pub release_execution_id: i64,
    pub stage_order: i32,
    pub environment_id: i64,
    pub environment_name: String,
    pub pipeline_id: i64,
    pub selector_agent_id: Option<i64>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub selector_labels: Option<Json>,
    #[sea_orm(column_type = "JsonBinary")]
    pub parameters: Json,
    pub requires_approval: bool,
    pub status: String,
    pub execution_id: Option<i64>,
    pub approved_by: Option<i64>,
    pub approved_at: Option<DateTimeUtc>,
    pub rejected_by: Option<i64>,
    pub comment: String,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub reason: String,
    /// The pipeline steps version the stage deploys, fixed at deploy (unset: deployed before
    /// migration m20261212, runs the pipeline as it is when the stage starts).
    pub pipeline_version_id: Option<i64>,
    /// The rest of what the stage deploys (see `domain::snapshot::StageSnapshot`).
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub snapshot: Option<Json>,
    pub snapshot_digest: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
