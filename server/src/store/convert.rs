//! Row → domain conversions. Rows come from our own migrations, so a value outside the domain
//! (an unknown role name) means a corrupted database and is reported as a database error.

use sea_orm::DbErr;

use super::entities::{api_token, customer, user, user_customer};
use crate::domain::{ApiToken, Customer, CustomerId, Membership, Role, TokenId, User, UserId};

impl From<customer::Model> for Customer {
    fn from(row: customer::Model) -> Self {
        Customer {
            id: CustomerId::from_db(row.id),
            name: row.name,
            display_name: row.display_name,
            description: row.description,
            logo_url: row.logo_url,
            contact_email: row.contact_email,
            contact_phone: row.contact_phone,
            address: row.address,
            is_active: row.is_active,
            settings: row.settings,
            created_at: row.created_at,
            updated_at: row.updated_at,
            created_by: row.created_by.map(UserId::from_db),
        }
    }
}

impl From<user::Model> for User {
    fn from(row: user::Model) -> Self {
        User {
            id: UserId::from_db(row.id),
            username: row.username,
            email: row.email,
            full_name: row.full_name,
            is_active: row.is_active,
            is_superuser: row.is_superuser,
            created_at: row.created_at,
            last_seen_at: row.last_seen_at,
        }
    }
}

impl From<api_token::Model> for ApiToken {
    fn from(row: api_token::Model) -> Self {
        ApiToken {
            id: TokenId::from_db(row.id),
            user_id: UserId::from_db(row.user_id),
            name: row.name,
            token_prefix: row.token_prefix,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        }
    }
}

pub(super) fn role(value: &str) -> Result<Role, DbErr> {
    Role::from_db(value).ok_or_else(|| DbErr::Custom(format!("unknown role {value:?} in database")))
}

impl TryFrom<user_customer::Model> for Membership {
    type Error = DbErr;

    fn try_from(row: user_customer::Model) -> Result<Self, DbErr> {
        Ok(Membership {
            user_id: UserId::from_db(row.user_id),
            customer_id: CustomerId::from_db(row.customer_id),
            role: role(&row.role)?,
            is_default: row.is_default,
            assigned_at: row.assigned_at,
        })
    }
}

/// A stored non-negative count as unsigned; a negative value (impossible through the API) reads
/// as 0.
pub(super) fn unsigned<T: TryInto<u64>>(value: T) -> u64 {
    value.try_into().unwrap_or(0)
}

/// An unsigned figure as the signed 64-bit column it is stored in, saturating.
pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An unsigned count as a 32-bit column, saturating.
pub(super) fn to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}
