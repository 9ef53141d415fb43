use sea_orm::{DbErr, RuntimeErr, SqlErr};

use crate::domain::{QuotaExceeded, Refusal};

/// What a store operation can fail with. Messages name the record, never another tenant's data.
///
/// Database failures are classified here, where the driver's errors are known: whether retrying
/// may help ([`StoreError::Unavailable`]) or not ([`StoreError::Internal`]). Their text is for
/// the server's log only.
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
    /// A quota would be exceeded; nothing was written.
    #[error("{0}")]
    QuotaExceeded(#[from] QuotaExceeded),
    /// A fixed limit of the platform (not a customer's quota) would be exceeded; the message
    /// names it. Nothing was written.
    #[error("{0}")]
    LimitReached(String),
    /// A domain rule refused the change; the store only applied its verdict.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The database cannot be reached now; retrying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(DbErr),
    /// A failed query or a stored value that does not read back: the server's fault.
    #[error("database error: {0}")]
    Internal(DbErr),
}

impl From<DbErr> for StoreError {
    fn from(error: DbErr) -> Self {
        match &error {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => StoreError::Unavailable(error),
            DbErr::Exec(RuntimeErr::SqlxError(cause))
            | DbErr::Query(RuntimeErr::SqlxError(cause))
                if connection_lost(cause) =>
            {
                StoreError::Unavailable(error)
            }
            _ => StoreError::Internal(error),
        }
    }
}

/// Whether a driver error says the database went away (a connection broken or refused, the
/// server shutting down or not accepting connections yet), not that a query was wrong.
fn connection_lost(error: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match error {
        Error::Io(_) | Error::PoolTimedOut | Error::PoolClosed | Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception) and 57P01–57P03 (admin or crash shutdown,
        // cannot connect now).
        Error::Database(database) => database.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

impl StoreError {
    /// Maps a unique-constraint violation to ALREADY_EXISTS with a message chosen by the caller
    /// from the violated constraint's text; every other error passes through.
    pub(crate) fn on_unique_violation(error: DbErr, describe: impl FnOnce(&str) -> String) -> Self {
        match error.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(detail)) => {
                StoreError::AlreadyExists(describe(&detail))
            }
            _ => error.into(),
        }
    }
}

/// A stored value that cannot be read back (unknown enum text, unparsable JSON, a dangling
/// reference): a server fault, reported without the value to callers.
pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(DbErr::Custom(format!(
        "stored {what} is not readable: {detail}"
    )))
}
