//! The activity feed.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::entities::activity_event;
use super::{Store, StoreError};
use crate::auth::TenantScope;
use crate::domain::{ActivityEvent, CustomerId, NewActivity, Page, PageRequest, UserId};

/// Records an event inside the caller's transaction, so the event and the change it describes
/// are written together or not at all.
pub(super) async fn record(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    event: NewActivity,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    activity_event::ActiveModel {
        customer_id: Set(customer_id.get()),
        kind: Set(event.kind.to_owned()),
        subject_type: Set(event.subject_type.to_owned()),
        subject_id: Set(event.subject_id),
        message: Set(event.message),
        actor_user_id: Set(event.actor.map(UserId::get)),
        created_at: Set(at),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

impl From<activity_event::Model> for ActivityEvent {
    fn from(row: activity_event::Model) -> Self {
        ActivityEvent {
            id: row.id,
            customer_id: CustomerId::from_db(row.customer_id),
            kind: row.kind,
            subject_type: row.subject_type,
            subject_id: row.subject_id,
            message: row.message,
            actor: row.actor_user_id.map(UserId::from_db),
            created_at: row.created_at,
        }
    }
}

impl Store {
    /// The scope's activity, newest first; the page token marks the oldest event already seen.
    pub async fn list_activity(
        &self,
        scope: &TenantScope,
        page: PageRequest,
    ) -> Result<Page<ActivityEvent>, StoreError> {
        let mut query = activity_event::Entity::find()
            .filter(activity_event::Column::CustomerId.eq(scope.customer_id().get()));
        if let Some(before) = page.after {
            query = query.filter(activity_event::Column::Id.lt(before));
        }
        let rows = query
            .order_by_desc(activity_event::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        Ok(Page::from_rows(rows, page, |row| row.id).map(ActivityEvent::from))
    }
}
