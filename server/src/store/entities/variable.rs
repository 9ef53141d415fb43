use sea_orm::entity::prelude::*;

/// `value` holds non-secret values only; a secret's value is in `cipher` (see `secrets.rs`).
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "variables")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub customer_id: i64,
    pub group_id: i64,
    pub key: String,
    /// 0: every environment.
    pub environment_id: i64,
    pub is_secret: bool,
    pub value: String,
    pub cipher: Option<String>,
    pub description: String,
    pub updated_by: i64,
    pub updated_at: DateTimeUtc,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("variable::Model")
            .field("id", &self.id)
            .field("group_id", &self.group_id)
            .field("key", &self.key)
            .field("environment_id", &self.environment_id)
            .field("is_secret", &self.is_secret)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
