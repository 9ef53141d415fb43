//! The activity feed: what happened in a customer, for the dashboard.

use chrono::{DateTime, Utc};

use super::{CustomerId, UserId};

/// A stored activity event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityEvent {
    pub id: i64,
    pub customer_id: CustomerId,
    pub kind: String,
    pub subject_type: String,
    pub subject_id: i64,
    pub message: String,
    pub actor: Option<UserId>,
    pub created_at: DateTime<Utc>,
}

/// An event to record; the customer comes from the scope or record it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewActivity {
    /// Dotted kind, e.g. `agent.online`.
    pub kind: &'static str,
    pub subject_type: &'static str,
    pub subject_id: i64,
    pub message: String,
    pub actor: Option<UserId>,
}
