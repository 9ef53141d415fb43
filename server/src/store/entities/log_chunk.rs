use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "log_chunks")]
pub struct Model {
    pub customer_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub execution_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub sequence: i64,
    pub step_index: i32,
    pub stream: String,
    pub text: String,
    pub logged_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
