//! The audit log of API writes.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::entities::audit_entry;
use super::{Store, StoreError, SystemStore, now};
use crate::domain::{CustomerId, Page, PageRequest, UserId};

/// What the audit layer records about one write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub customer_id: Option<CustomerId>,
    pub actor: Option<(UserId, String)>,
    /// `cygnet.v1.Service/Method`.
    pub method: String,
    pub resource: Option<(&'static str, i64)>,
    pub peer_address: String,
    /// The gRPC code name of the outcome.
    pub code: &'static str,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub customer_id: Option<CustomerId>,
    pub actor_user_id: Option<UserId>,
    pub actor_username: String,
    pub method: String,
    pub resource_type: String,
    pub resource_id: Option<i64>,
    pub peer_address: String,
    pub code: String,
    pub created_at: DateTime<Utc>,
}

/// Which entries to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFilter {
    /// One customer's entries (what its admins see).
    Customer(CustomerId),
    /// Every entry (platform administrators).
    All,
}

impl Store {
    /// Entries newest first; the page token is the id of the last entry seen.
    pub(crate) async fn list_audit(
        &self,
        filter: AuditFilter,
        actor: Option<UserId>,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let mut query = audit_entry::Entity::find();
        if let AuditFilter::Customer(customer_id) = filter {
            query = query.filter(audit_entry::Column::CustomerId.eq(customer_id.get()));
        }
        if let Some(actor) = actor {
            query = query.filter(audit_entry::Column::ActorUserId.eq(actor.get()));
        }
        if let Some(before) = page.after {
            query = query.filter(audit_entry::Column::Id.lt(before));
        }
        let rows = query
            .order_by_desc(audit_entry::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        Ok(
            Page::from_rows(rows, page, |row| row.id).map(|row| AuditEntry {
                id: row.id,
                customer_id: row.customer_id.map(CustomerId::from_db),
                actor_user_id: row.actor_user_id.map(UserId::from_db),
                actor_username: row.actor_username,
                method: row.method,
                resource_type: row.resource_type,
                resource_id: row.resource_id,
                peer_address: row.peer_address,
                code: row.code,
                created_at: row.created_at,
            }),
        )
    }
}

impl Store {
    /// Appends the entry of a request.
    pub(crate) async fn record_audit(&self, entry: NewAuditEntry) -> Result<(), StoreError> {
        insert_entry(&self.writer, entry, None).await
    }
}

impl SystemStore {
    /// Appends the entry of a change a background task made to a customer's work, with
    /// `system:<task>` as the actor.
    pub(crate) async fn record_system_audit(
        &self,
        customer_id: CustomerId,
        method: &str,
        resource: (&'static str, i64),
        code: &'static str,
    ) -> Result<(), StoreError> {
        insert_entry(
            &self.writer,
            NewAuditEntry {
                customer_id: Some(customer_id),
                actor: None,
                method: method.to_owned(),
                resource: Some(resource),
                peer_address: String::new(),
                code,
            },
            Some(self.scope().actor().name()),
        )
        .await
    }
}

/// Appends an entry; an entry without a user is a background task's, named by `system_actor`.
async fn insert_entry(
    db: &DatabaseConnection,
    entry: NewAuditEntry,
    system_actor: Option<&str>,
) -> Result<(), StoreError> {
    let (actor_user_id, actor_username) = match entry.actor {
        Some((user_id, username)) => (Some(user_id.get()), username),
        None => (None, system_actor.unwrap_or_default().to_owned()),
    };
    let (resource_type, resource_id) = match entry.resource {
        Some((kind, id)) => (kind.to_owned(), Some(id)),
        None => (String::new(), None),
    };
    audit_entry::ActiveModel {
        customer_id: Set(entry.customer_id.map(CustomerId::get)),
        actor_user_id: Set(actor_user_id),
        actor_username: Set(actor_username),
        method: Set(entry.method.chars().take(200).collect()),
        resource_type: Set(resource_type),
        resource_id: Set(resource_id),
        peer_address: Set(entry.peer_address.chars().take(100).collect()),
        code: Set(entry.code.to_owned()),
        created_at: Set(now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}
