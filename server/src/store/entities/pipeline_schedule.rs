use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pipeline_schedules")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub customer_id: i64,
    pub pipeline_id: i64,
    pub cron: String,
    pub time_zone: String,
    /// Parameter values as a JSON object of strings.
    pub parameters: Json,
    pub enabled: bool,
    /// The tick to fire next; a replica claims it by moving it forward. Unset while disabled.
    pub next_run_at: Option<DateTimeUtc>,
    pub last_run_at: Option<DateTimeUtc>,
    pub last_execution_id: Option<i64>,
    /// Why the last tick queued nothing ("" when it did).
    pub last_error: String,
    pub created_by: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
