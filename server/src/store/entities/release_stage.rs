use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "release_stages")]
pub struct Model {
    pub customer_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub release_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub stage_order: i32,
    pub environment_id: i64,
    pub pipeline_id: i64,
    pub selector_agent_id: Option<i64>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub selector_labels: Option<Json>,
    pub requires_approval: Option<bool>,
    #[sea_orm(column_type = "JsonBinary")]
    pub parameters: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
