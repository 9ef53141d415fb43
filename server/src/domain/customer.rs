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

/// The settings the server acts on, read once from a customer's settings document. The document
/// stays free-form (customer admins keep their own keys in it); a known key holding a value of
/// the wrong type counts as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerSettings {
    /// The one who deployed a release may approve its production stage themselves.
    pub allow_self_approval: bool,
}

impl CustomerSettings {
    pub fn from_document(document: &serde_json::Value) -> Self {
        Self {
            allow_self_approval: document
                .get("allow_self_approval")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_known_keys_of_the_right_type_only() {
        let read = |text: &str| {
            CustomerSettings::from_document(&serde_json::from_str(text).expect("json"))
        };
        assert!(read(r#"{"allow_self_approval": true, "theme": "dark"}"#).allow_self_approval);
        assert!(!read(r#"{"allow_self_approval": "true"}"#).allow_self_approval);
        assert!(!read(r#"{}"#).allow_self_approval);
        assert!(!read(r#"[]"#).allow_self_approval);
    }
}
