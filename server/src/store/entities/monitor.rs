use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "monitors")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub customer_id: i64,
    pub name: String,
    pub kind: String,
    pub target: String,
    pub interval_seconds: i32,
    pub timeout_ms: i32,
    pub warning_threshold_ms: i32,
    pub expected_status: i32,
    pub selector_agent_id: Option<i64>,
    pub selector_labels: Json,
    pub status: String,
    pub last_response_ms: i64,
    pub last_checked_at: Option<DateTimeUtc>,
    pub last_message: String,
    pub assigned_agent_id: Option<i64>,
    pub created_by: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
