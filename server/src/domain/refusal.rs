//! What a domain rule answers when it says no. Rules (who may approve a stage, whether a
//! registration token still works, …) are pure functions in `domain/` that return this; the
//! store applies their verdict inside its transaction and passes the refusal on unchanged, and
//! `grpc/status.rs` turns it into a status.

use std::fmt;

/// A refused change, with a message that names the record and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The actor may see the record but their role or relation to it does not allow this.
    NotPermitted(String),
    /// A credential checked by the rule does not authenticate (a spent registration token).
    NotAuthenticated(String),
    /// The record is not in a state that allows this.
    WrongState(String),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::NotPermitted(message)
            | Refusal::NotAuthenticated(message)
            | Refusal::WrongState(message) => message,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.message())
    }
}

impl std::error::Error for Refusal {}
