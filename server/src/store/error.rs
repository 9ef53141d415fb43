use sea_orm::{DbErr, SqlErr};

/// What a store operation can fail with. Messages name the record, never another tenant's data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// A request field that can only be checked against stored data (e.g. a reference to a
    /// pipeline); the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The caller may see the record but not do this to it (e.g. approve without the role).
    #[error("{0}")]
    PermissionDenied(String),
    /// A credential checked inside a transaction (a registration token) did not authenticate.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("database error: {0}")]
    Database(#[from] DbErr),
}

impl StoreError {
    /// Maps a unique-constraint violation to ALREADY_EXISTS with a message chosen by the caller
    /// from the violated constraint's text; every other error passes through.
    pub(crate) fn on_unique_violation(error: DbErr, describe: impl FnOnce(&str) -> String) -> Self {
        match error.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(detail)) => {
                StoreError::AlreadyExists(describe(&detail))
            }
            _ => StoreError::Database(error),
        }
    }
}
