//! The activity feed.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::ExprTrait;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entities::activity_event;
use super::{Store, StoreError, SystemStore};
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
    record_many(db, customer_id, vec![(event, at)]).await
}

/// Appends several events of one customer in one statement, in order.
pub(super) async fn record_many(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    events: Vec<(NewActivity, DateTime<Utc>)>,
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let rows = events
        .into_iter()
        .map(|(event, at)| activity_event::ActiveModel {
            customer_id: Set(customer_id.get()),
            kind: Set(event.kind.to_owned()),
            subject_type: Set(event.subject_type.to_owned()),
            subject_id: Set(event.subject_id),
            message: Set(event.message),
            actor_user_id: Set(event.actor.map(UserId::get)),
            created_at: Set(at),
            ..Default::default()
        });
    activity_event::Entity::insert_many(rows)
        .exec_without_returning(db)
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

    /// The scope's events with an id above `after`, oldest first (a watcher's replay).
    pub async fn activity_since(
        &self,
        scope: &TenantScope,
        after: i64,
        limit: u64,
    ) -> Result<Vec<ActivityEvent>, StoreError> {
        self.events_oldest_first(
            activity_event::Column::CustomerId
                .eq(scope.customer_id().get())
                .and(activity_event::Column::Id.gt(after)),
            Some(limit),
        )
        .await
    }

    async fn events_oldest_first(
        &self,
        condition: sea_orm::sea_query::Expr,
        limit: Option<u64>,
    ) -> Result<Vec<ActivityEvent>, StoreError> {
        let mut query = activity_event::Entity::find()
            .filter(condition)
            .order_by_asc(activity_event::Column::Id);
        if let Some(limit) = limit {
            query = query.limit(limit);
        }
        Ok(query
            .all(&self.db)
            .await?
            .into_iter()
            .map(ActivityEvent::from)
            .collect())
    }
}

impl Store {
    /// The id of the scope's newest event (0 when it has none): a watch that starts now
    /// follows the events after it.
    pub async fn latest_activity_id_of(&self, scope: &TenantScope) -> Result<i64, StoreError> {
        Ok(activity_event::Entity::find()
            .select_only()
            .column(activity_event::Column::Id)
            .filter(activity_event::Column::CustomerId.eq(scope.customer_id().get()))
            .order_by_desc(activity_event::Column::Id)
            .into_tuple::<i64>()
            .one(&self.db)
            .await?
            .unwrap_or(0))
    }
}

impl SystemStore {
    /// The newest event id of all customers (0 when there is none).
    pub(crate) async fn latest_activity_id(&self) -> Result<i64, StoreError> {
        Ok(activity_event::Entity::find()
            .select_only()
            .column(activity_event::Column::Id)
            .order_by_desc(activity_event::Column::Id)
            .into_tuple::<i64>()
            .one(&self.db)
            .await?
            .unwrap_or(0))
    }

    /// Events of all customers with an id above `after`, oldest first (for the feed's tailer).
    pub(crate) async fn activity_after(
        &self,
        after: i64,
        limit: u64,
    ) -> Result<Vec<ActivityEvent>, StoreError> {
        self.store
            .events_oldest_first(activity_event::Column::Id.gt(after), Some(limit))
            .await
    }

    /// The events with these ids that exist now (ids the tailer saw skipped), oldest first.
    pub(crate) async fn activity_with_ids(
        &self,
        ids: &[i64],
    ) -> Result<Vec<ActivityEvent>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.store
            .events_oldest_first(activity_event::Column::Id.is_in(ids.iter().copied()), None)
            .await
    }
}
