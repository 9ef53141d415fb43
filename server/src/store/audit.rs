//! The audit log of API writes.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
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

/// Tells one caller whether its entry's group was stored.
type Stored = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Entries of requests waiting to be written, group-committed: requests that finish while an
/// insert is under way are written together by the next one, in one statement. Each caller
/// still returns only once its own entry is stored, so an answer never goes out before its
/// entry (a crash loses no entry of an answered request); under load, fewer commits queue for
/// the database's write lock.
#[derive(Default)]
pub(crate) struct AuditQueue {
    pending: std::sync::Mutex<Vec<(NewAuditEntry, Stored)>>,
    /// Held by the caller writing a group.
    writing: tokio::sync::Mutex<()>,
}

/// Entries one insert carries at most.
const AUDIT_GROUP: usize = 200;

impl Store {
    /// Appends the entry of a request; returns once it is stored (see [`AuditQueue`]).
    pub(crate) async fn record_audit(&self, entry: NewAuditEntry) -> Result<(), StoreError> {
        let (stored, outcome) = tokio::sync::oneshot::channel();
        self.audit_queue
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((entry, stored));
        {
            // Whoever holds the turn writes everything queued by then: this caller's entry,
            // unless the previous holder's group already took it.
            let _turn = self.audit_queue.writing.lock().await;
            let group = std::mem::take(
                &mut *self
                    .audit_queue
                    .pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            if !group.is_empty() {
                // A task of its own: the group is written and its callers told even if this
                // caller is dropped meanwhile.
                let writer = self.writer.clone();
                let write = tokio::spawn(async move {
                    let (entries, waiting): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                    let result = insert_entries(&writer, entries, None)
                        .await
                        .map_err(|error| error.to_string());
                    for waiter in waiting {
                        let _ = waiter.send(result.clone());
                    }
                });
                let _ = write.await;
            }
        }
        match outcome.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::Internal(DbErr::Custom(message))),
            Err(_) => Err(StoreError::Internal(DbErr::Custom(
                "the audit entry was not written".into(),
            ))),
        }
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
        insert_entries(
            &self.writer,
            vec![NewAuditEntry {
                customer_id: Some(customer_id),
                actor: None,
                method: method.to_owned(),
                resource: Some(resource),
                peer_address: String::new(),
                code,
            }],
            Some(self.scope().actor().name()),
        )
        .await
    }
}

/// Appends entries in order, [`AUDIT_GROUP`] per statement; an entry without a user is a
/// background task's, named by `system_actor`.
async fn insert_entries(
    db: &DatabaseConnection,
    entries: Vec<NewAuditEntry>,
    system_actor: Option<&str>,
) -> Result<(), StoreError> {
    let at = now();
    let rows: Vec<audit_entry::ActiveModel> = entries
        .into_iter()
        .map(|entry| {
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
                created_at: Set(at),
                ..Default::default()
            }
        })
        .collect();
    for group in rows.chunks(AUDIT_GROUP) {
        audit_entry::Entity::insert_many(group.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}
