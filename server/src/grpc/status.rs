//! The one place where errors become gRPC statuses.
//!
//! Every layer's error type is mapped here, and the few statuses that no error type carries
//! (an artifact whose content is gone) are built by the named functions below, so no handler
//! writes a status of its own. Beside the human message, every refusal carries the standard
//! structured details (`google.rpc.Status` in the `grpc-status-details-bin` trailer), which
//! clients in any language read without parsing text: an `ErrorInfo` with a stable `reason`
//! (domain [`DOMAIN`]), a `BadRequest` naming the field for INVALID_ARGUMENT, a `QuotaFailure`
//! for a quota and a `RetryInfo` where waiting helps. `proto/cygnet/v1/tenancy.proto` documents them
//! for clients. Only the statuses that end an agent's stream from inside
//! `agents/` (replaced, silent, shutting down, unstored events) are written where it ends. Server faults reach clients as a fixed sentence; their details
//! go to the log.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::shorten;

/// Longest message a status carries: messages may quote a request, and they travel in a
/// header, which a client refuses (resetting the whole connection) past its size limit.
const MAX_STATUS_MESSAGE_BYTES: usize = 1024;

/// A status message bounded by [`MAX_STATUS_MESSAGE_BYTES`].
fn bounded(message: impl Into<String>) -> String {
    shorten(message.into(), MAX_STATUS_MESSAGE_BYTES)
}

/// The `ErrorInfo.domain` of every CygnetCI refusal.
pub const DOMAIN: &str = "cygnet.ci";

/// A status with an `ErrorInfo` of `reason` (and `metadata`) beside `message`.
fn refused(code: Code, reason: &str, message: String, metadata: &[(&str, String)]) -> Status {
    with_details(code, message, |details| {
        details.set_error_info(reason, DOMAIN, info(metadata));
    })
}

/// A status whose details `fill` sets.
fn with_details(code: Code, message: String, fill: impl FnOnce(&mut ErrorDetails)) -> Status {
    let mut details = ErrorDetails::new();
    fill(&mut details);
    Status::with_error_details(code, bounded(message), details)
}

fn info(metadata: &[(&str, String)]) -> HashMap<String, String> {
    metadata
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect()
}

/// INVALID_ARGUMENT for `field`, with a `BadRequest` naming it.
fn invalid(field: &str, problem: &str, message: String) -> Status {
    with_details(Code::InvalidArgument, message, |details| {
        details
            .add_bad_request_violation(shorten(field.to_owned(), 200), bounded(problem.to_owned()))
            .set_error_info(
                "INVALID_FIELD",
                DOMAIN,
                info(&[("field", shorten(field.to_owned(), 200))]),
            );
    })
}

/// The request field a store refusal's message starts with (`parameters[REGION] is …`,
/// `variable_group_ids: …`, `stages[0].pipeline_id …`): a leading path of lowercase names,
/// indices and dots, written as a field path (an `_`, `[` or `.` in it), then a space or colon.
/// Checks that only the database can make (a record that must exist, a parameter no stage
/// uses) are worded so; a message that names no field stays a request-wide refusal.
fn field_named_by(message: &str) -> Option<&str> {
    let end = message.find([' ', ':'])?;
    let path = &message[..end];
    let mut depth = 0_i32;
    for character in path.chars() {
        match character {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth > 0 => {}
            'a'..='z' | '0'..='9' | '_' | '.' => {}
            _ => return None,
        }
        if !(0..=1).contains(&depth) {
            return None;
        }
    }
    let shaped = path.contains(['_', '[', '.']);
    (depth == 0 && shaped && path.starts_with(|first: char| first.is_ascii_lowercase()))
        .then_some(path)
}

use crate::artifacts::ArtifactError;
use crate::auth::AuthError;
use crate::domain::{QuotaExceeded, Refusal, ValidationError};
use crate::service::ServiceError;
use crate::store::StoreError;

impl From<ValidationError> for Status {
    fn from(error: ValidationError) -> Self {
        invalid(error.field(), error.problem(), error.to_string())
    }
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotPermitted(message) => {
                refused(Code::PermissionDenied, "NOT_PERMITTED", message, &[])
            }
            Refusal::NotAuthenticated(message) => {
                refused(Code::Unauthenticated, "NOT_AUTHENTICATED", message, &[])
            }
            Refusal::WrongState(message) => {
                refused(Code::FailedPrecondition, "WRONG_STATE", message, &[])
            }
        }
    }
}

impl From<QuotaExceeded> for Status {
    fn from(exceeded: QuotaExceeded) -> Self {
        let quota = exceeded.quota.name();
        with_details(Code::ResourceExhausted, exceeded.to_string(), |details| {
            details
                .add_quota_failure_violation(
                    format!("customer:{}", exceeded.customer_id),
                    format!(
                        "quota {quota}: limit {}, in use {}, asked for {} more",
                        exceeded.limit, exceeded.used, exceeded.wanted
                    ),
                )
                .set_error_info(
                    "QUOTA_EXCEEDED",
                    DOMAIN,
                    info(&[
                        ("quota", quota.to_owned()),
                        ("customer_id", exceeded.customer_id.to_string()),
                        ("limit", exceeded.limit.to_string()),
                        ("used", exceeded.used.to_string()),
                        ("wanted", exceeded.wanted.to_string()),
                    ]),
                );
        })
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(message) => refused(Code::NotFound, "NOT_FOUND", message, &[]),
            StoreError::AlreadyExists(message) => {
                refused(Code::AlreadyExists, "ALREADY_EXISTS", message, &[])
            }
            StoreError::FailedPrecondition(message) => {
                refused(Code::FailedPrecondition, "WRONG_STATE", message, &[])
            }
            StoreError::InvalidArgument(message) => match field_named_by(&message) {
                Some(field) => {
                    let problem = message[field.len()..]
                        .trim_start_matches([':', ' '])
                        .to_owned();
                    invalid(field, &problem, message.clone())
                }
                None => refused(Code::InvalidArgument, "INVALID_REQUEST", message, &[]),
            },
            StoreError::QuotaExceeded(exceeded) => exceeded.into(),
            StoreError::LimitReached(message) => {
                refused(Code::ResourceExhausted, "LIMIT_REACHED", message, &[])
            }
            StoreError::Refused(refusal) => refusal.into(),
            StoreError::Unavailable(error) => {
                tracing::error!(%error, "database unavailable");
                database_unavailable()
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
            AuthError::Unauthenticated(message) => {
                refused(Code::Unauthenticated, "NOT_AUTHENTICATED", message, &[])
            }
            AuthError::NotFound(message) => refused(Code::NotFound, "NOT_FOUND", message, &[]),
            AuthError::PermissionDenied(message) => {
                refused(Code::PermissionDenied, "NOT_PERMITTED", message, &[])
            }
            AuthError::FailedPrecondition(message) => {
                refused(Code::FailedPrecondition, "WRONG_STATE", message, &[])
            }
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
            problem => {
                let problem = problem.to_string();
                invalid("data", &problem, format!("data: {problem}"))
            }
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
    with_details(
        Code::ResourceExhausted,
        format!(
            "rate limit: more than {per_minute} requests a minute from {caller}; the next is allowed in {} ms",
            next_allowed_in.as_millis().max(1)
        ),
        |details| {
            details
                .set_retry_info(Some(next_allowed_in))
                .set_error_info(
                    "RATE_LIMITED",
                    DOMAIN,
                    info(&[
                        ("per_minute", per_minute.to_string()),
                        (
                            "caller",
                            if per_token { "token" } else { "address" }.to_owned(),
                        ),
                    ]),
                );
        },
    )
}

/// The database cannot be reached (store errors, and every call while the probe says so):
/// retry in a second.
pub(crate) fn database_unavailable() -> Status {
    with_details(
        Code::Unavailable,
        "database unavailable, retry later".to_owned(),
        |details| {
            details
                .set_retry_info(Some(std::time::Duration::from_secs(1)))
                .set_error_info("DATABASE_UNAVAILABLE", DOMAIN, HashMap::new());
        },
    )
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

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    #[test]
    fn store_refusals_name_the_field_their_message_starts_with() {
        for (message, field) in [
            (
                "parameters[REGION] is not a parameter of any stage's deploy pipeline",
                Some("parameters[REGION]"),
            ),
            (
                "variable_group_ids: 7 is not a variable group of customer 1",
                Some("variable_group_ids"),
            ),
            (
                "stages[0].pipeline_id is unknown",
                Some("stages[0].pipeline_id"),
            ),
            ("approver_roles must name a role", Some("approver_roles")),
            ("backup path /x is not valid UTF-8", None),
            ("Name is wrong", None),
            ("parameters[A B] is odd", None),
            ("no_space_at_all", None),
        ] {
            assert_eq!(field_named_by(message), field, "{message}");
            let status = Status::from(StoreError::InvalidArgument(message.to_owned()));
            assert_eq!(status.code(), Code::InvalidArgument);
            assert_eq!(status.message(), message);
            let named = status
                .get_error_details()
                .bad_request()
                .and_then(|request| request.field_violations.first())
                .map(|violation| violation.field.clone());
            assert_eq!(named.as_deref(), field, "{message}");
        }
    }
}
