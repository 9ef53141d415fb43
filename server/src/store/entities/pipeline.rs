use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "pipelines")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub customer_id: i64,
    pub name: String,
    pub description: String,
    pub selector_agent_id: Option<i64>,
    #[sea_orm(column_type = "JsonBinary")]
    pub selector_labels: Json,
    #[sea_orm(column_type = "JsonBinary")]
    pub steps: Json,
    #[sea_orm(column_type = "JsonBinary")]
    pub parameters: Json,
    pub timeout_seconds: i32,
    pub created_by: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub deleted_at: Option<DateTimeUtc>,
    /// JSON array of variable group ids, in order.
    pub variable_group_ids: String,
    /// The current version of its steps (`pipeline_versions`).
    pub version_id: Option<i64>,
    /// That version's number.
    pub steps_version: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
