//! Thin gRPC handlers: authenticate → validate → authorize → store → convert.
//!
//! Handlers never touch sea-orm; errors of every layer become a `tonic::Status` in `status.rs`
//! only.

mod convert;
mod customers;
mod status;
mod users;

pub use customers::CustomerApi;
pub use users::UserApi;

use crate::auth::{Authenticator, Authorizer};
use crate::store::Store;

/// What every handler needs; cheap to clone.
#[derive(Clone)]
pub struct ApiContext {
    pub store: Store,
    pub authenticator: Authenticator,
    pub authorizer: Authorizer,
}

impl ApiContext {
    pub fn new(store: Store) -> Self {
        Self {
            authenticator: Authenticator::new(store.clone()),
            authorizer: Authorizer::new(store.clone()),
            store,
        }
    }
}
