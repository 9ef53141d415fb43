use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub customer_id: i64,
    pub pipeline_id: i64,
    /// The random token of its URL (`/hooks/<token>`), unique across customers.
    pub token: String,
    /// `generic`, `github` or `gitlab`.
    pub format: String,
    /// The secret, sealed like secret variables (`secrets.rs`).
    pub sealed_secret: String,
    /// Events that queue a run (JSON list of strings); empty means the format's defaults.
    pub events: Json,
    /// Branch globs that queue a run (JSON list); empty means every branch.
    pub branches: Json,
    /// Run parameters and where each comes from (JSON object of strings).
    pub parameters: Json,
    pub enabled: bool,
    pub last_delivery_at: Option<DateTimeUtc>,
    pub created_by: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
