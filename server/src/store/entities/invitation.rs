use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invitations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub customer_id: i64,
    pub username: String,
    pub role: String,
    pub invited_by: i64,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    /// Declined by its user: hidden from them, still listed to the customer until it lapses.
    pub declined_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
