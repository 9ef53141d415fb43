//! Customers (tenants).

use chrono::{DateTime, Utc};

use super::{CustomerId, UserId};

/// A customer as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: CustomerId,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub logo_url: String,
    pub contact_email: String,
    pub contact_phone: String,
    pub address: String,
    pub is_active: bool,
    pub settings: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<UserId>,
}

/// A validated request to create a customer.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCustomer {
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub logo_url: String,
    pub contact_email: String,
    pub contact_phone: String,
    pub address: String,
    pub settings: serde_json::Value,
}

/// A validated partial update; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerPatch {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub logo_url: Option<String>,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
    pub address: Option<String>,
    pub settings: Option<serde_json::Value>,
}

impl CustomerPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
