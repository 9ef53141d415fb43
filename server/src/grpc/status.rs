//! The one place where errors become gRPC statuses.
//!
//! Every layer's error type is mapped here, and the few statuses that no error type carries
//! (an artifact whose content is gone) are built by the named functions below, so no handler
//! writes a status of its own. Only the statuses that end an agent's stream from inside
//! `agents/` (replaced, silent, shutting down, unstored events) are written where it ends. Server faults reach clients as a fixed sentence; their details
//! go to the log.

use tonic::Status;

use crate::domain::shorten;

/// Longest message a status carries: messages may quote a request, and they travel in a
/// header, which a client refuses (resetting the whole connection) past its size limit.
const MAX_STATUS_MESSAGE_BYTES: usize = 1024;

/// A status message bounded by [`MAX_STATUS_MESSAGE_BYTES`].
fn bounded(message: impl Into<String>) -> String {
    shorten(message.into(), MAX_STATUS_MESSAGE_BYTES)
}

use crate::artifacts::ArtifactError;
use crate::auth::AuthError;
use crate::domain::{QuotaExceeded, Refusal, ValidationError};
use crate::service::ServiceError;
use crate::store::StoreError;

impl From<ValidationError> for Status {
    fn from(error: ValidationError) -> Self {
        Status::invalid_argument(bounded(error.to_string()))
    }
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotPermitted(message) => Status::permission_denied(bounded(message)),
            Refusal::NotAuthenticated(message) => Status::unauthenticated(bounded(message)),
            Refusal::WrongState(message) => Status::failed_precondition(bounded(message)),
        }
    }
}

impl From<QuotaExceeded> for Status {
    fn from(exceeded: QuotaExceeded) -> Self {
        Status::resource_exhausted(bounded(exceeded.to_string()))
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(message) => Status::not_found(bounded(message)),
            StoreError::AlreadyExists(message) => Status::already_exists(bounded(message)),
            StoreError::FailedPrecondition(message) => {
                Status::failed_precondition(bounded(message))
            }
            StoreError::InvalidArgument(message) => Status::invalid_argument(bounded(message)),
            StoreError::QuotaExceeded(exceeded) => exceeded.into(),
            StoreError::LimitReached(message) => Status::resource_exhausted(bounded(message)),
            StoreError::Refused(refusal) => refusal.into(),
            StoreError::Unavailable(error) => {
                tracing::error!(%error, "database unavailable");
                Status::unavailable("database unavailable, retry later")
            }
            StoreError::Internal(error) => {
                tracing::error!(%error, "database error");
                Status::internal("internal database error")
            }
        }
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthenticated(message) => Status::unauthenticated(bounded(message)),
            AuthError::NotFound(message) => Status::not_found(bounded(message)),
            AuthError::PermissionDenied(message) => Status::permission_denied(bounded(message)),
            AuthError::FailedPrecondition(message) => Status::failed_precondition(bounded(message)),
            AuthError::Store(error) => error.into(),
        }
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Invalid(error) => error.into(),
            ServiceError::Store(error) => error.into(),
        }
    }
}

impl From<ArtifactError> for Status {
    fn from(error: ArtifactError) -> Self {
        match error {
            ArtifactError::Io(error) => {
                tracing::error!(%error, "artifact storage failed");
                Status::internal("artifact storage failed")
            }
            refused => Status::invalid_argument(bounded(format!("data: {refused}"))),
        }
    }
}

/// A request past its caller's rate (`per_minute` requests a minute, per API token or, without
/// one, per client address).
pub(crate) fn rate_limited(
    per_minute: u32,
    per_token: bool,
    next_allowed_in: std::time::Duration,
) -> Status {
    let caller = if per_token {
        "this token"
    } else {
        "this address"
    };
    Status::resource_exhausted(format!(
        "rate limit: more than {per_minute} requests a minute from {caller}; the next is allowed in {} ms",
        next_allowed_in.as_millis().max(1)
    ))
}

/// A recorded artifact whose content cannot be opened.
pub(super) fn artifact_missing(artifact_id: i64, error: std::io::Error) -> Status {
    tracing::error!(%error, artifact_id, "artifact file missing");
    Status::internal("artifact content is not available")
}

/// Reading an artifact's content failed halfway through a download.
pub(super) fn artifact_unreadable(error: std::io::Error) -> Status {
    tracing::error!(%error, "reading an artifact failed");
    Status::internal("artifact content could not be read")
}

/// Ends the stream of an agent that registered again (its old credential no longer works).
pub(crate) fn agent_registered_again() -> Status {
    Status::unauthenticated("agent registered again; its old credential was revoked")
}

/// Ends the stream of an agent that was deleted.
pub(crate) fn agent_deleted() -> Status {
    Status::permission_denied(
        "agent was deleted: an administrator must issue a reenrolment_token to restore it",
    )
}
