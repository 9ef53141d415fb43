//! The one place where errors become gRPC statuses.

use sea_orm::DbErr;
use tonic::Status;

use crate::auth::AuthError;
use crate::domain::ValidationError;
use crate::store::StoreError;

impl From<ValidationError> for Status {
    fn from(error: ValidationError) -> Self {
        Status::invalid_argument(error.to_string())
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(message) => Status::not_found(message),
            StoreError::AlreadyExists(message) => Status::already_exists(message),
            StoreError::FailedPrecondition(message) => Status::failed_precondition(message),
            StoreError::Unauthenticated(message) => Status::unauthenticated(message),
            StoreError::InvalidArgument(message) => Status::invalid_argument(message),
            StoreError::PermissionDenied(message) => Status::permission_denied(message),
            StoreError::Database(error) => database_status(error),
        }
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthenticated(message) => Status::unauthenticated(message),
            AuthError::NotFound(message) => Status::not_found(message),
            AuthError::PermissionDenied(message) => Status::permission_denied(message),
            AuthError::FailedPrecondition(message) => Status::failed_precondition(message),
            AuthError::Store(error) => error.into(),
        }
    }
}

/// A database failure is the server's problem, not the caller's: the details go to the log, the
/// caller learns only whether retrying may help.
fn database_status(error: DbErr) -> Status {
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
            tracing::error!(%error, "database unavailable");
            Status::unavailable("database unavailable, retry later")
        }
        error => {
            tracing::error!(%error, "database error");
            Status::internal("internal database error")
        }
    }
}
