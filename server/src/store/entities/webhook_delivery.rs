use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub customer_id: i64,
    pub webhook_id: i64,
    /// The sender's delivery id, for deliveries that queued a run; unique per webhook.
    pub delivery_key: Option<String>,
    /// The digest of its signed content, for deliveries that queued a run; unique per webhook.
    pub fingerprint: Option<String>,
    pub event: String,
    pub branch: String,
    pub commit: String,
    pub author: String,
    /// `queued`, `ignored`, `refused` or `rejected`.
    pub outcome: String,
    pub reason: String,
    pub execution_id: Option<i64>,
    pub received_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
