use crate::store::StoreError;

/// Why a request was refused before reaching the domain.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or credentials that do not authenticate anyone.
    #[error("{0}")]
    Unauthenticated(String),
    /// The customer does not exist or the caller cannot see it; the two are indistinguishable.
    #[error("{0}")]
    NotFound(String),
    /// The caller can see the customer but their role does not allow the action.
    #[error("{0}")]
    PermissionDenied(String),
    /// The action is not possible in the customer's current state (deactivated).
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
