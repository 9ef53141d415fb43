use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "step_executions")]
pub struct Model {
    pub customer_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub execution_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub step_index: i32,
    pub name: String,
    pub status: String,
    pub exit_code: Option<i32>,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub reason: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
