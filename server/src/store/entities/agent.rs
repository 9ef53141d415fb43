use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "agents")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub customer_id: i64,
    pub uuid: String,
    pub name: String,
    pub location: String,
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub version: String,
    pub max_concurrent_jobs: i32,
    pub enabled: bool,
    pub status: String,
    pub credential_hash: String,
    pub connection_id: Option<i64>,
    pub registered_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub last_seen_at: Option<DateTimeUtc>,
    pub deleted_at: Option<DateTimeUtc>,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    pub memory_used_bytes: Option<i64>,
    pub memory_total_bytes: Option<i64>,
    pub disk_free_bytes: Option<i64>,
    pub load_average: Option<f64>,
    pub running_jobs: i32,
    pub reenrolment_token_hash: Option<String>,
    pub reenrolment_expires_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
