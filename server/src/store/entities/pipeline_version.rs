use sea_orm::entity::prelude::*;

/// One version of a pipeline's steps, stored once and shared by the runs of that version.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pipeline_versions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub customer_id: i64,
    pub pipeline_id: i64,
    pub number: i32,
    #[sea_orm(column_type = "JsonBinary")]
    pub steps: Json,
    pub created_by: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
