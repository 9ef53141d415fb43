//! Who may register an agent uuid that already has a record in the customer: the rule that stops
//! a registration token alone from taking over another build host's identity, and keeps a
//! deleted agent deleted until an administrator lets it back.

use chrono::{DateTime, Duration, Utc};

use super::Refusal;

/// How long a re-enrolment token works after an administrator issued it.
pub const REENROLMENT_TOKEN_LIFETIME: Duration = Duration::hours(24);

/// What a registration for an existing uuid presented, as checked against the stored hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedProof {
    /// The agent's current credential was presented and matches.
    pub current_credential_matches: bool,
    /// What became of the re-enrolment token, if one was presented.
    pub reenrolment: Reenrolment,
}

/// A presented re-enrolment token, compared with the one the agent carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reenrolment {
    NotPresented,
    Matches { expires_at: DateTime<Utc> },
    DoesNotMatch,
}

/// What registering an existing uuid does when the rule allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reregistration {
    /// A live agent gets a fresh credential.
    Refresh,
    /// A deleted agent comes back (an administrator's re-enrolment token allowed it).
    Restore,
}

/// Decides a registration of `uuid`, which already has a record in the customer. A re-enrolment
/// token is the only way back for a deleted agent; a live agent also accepts its own current
/// credential. A registration token alone never suffices.
pub fn check_reregistration(
    uuid: &str,
    deleted: bool,
    proof: PresentedProof,
    now: DateTime<Utc>,
) -> Result<Reregistration, Refusal> {
    match proof.reenrolment {
        Reenrolment::Matches { expires_at } if expires_at > now => {
            return Ok(if deleted {
                Reregistration::Restore
            } else {
                Reregistration::Refresh
            });
        }
        Reenrolment::Matches { .. } => {
            return Err(Refusal::NotAuthenticated(format!(
                "reenrolment_token for agent uuid {uuid:?} has expired"
            )));
        }
        Reenrolment::DoesNotMatch => {
            return Err(Refusal::NotAuthenticated(format!(
                "reenrolment_token is not valid for agent uuid {uuid:?}"
            )));
        }
        Reenrolment::NotPresented => {}
    }
    if deleted {
        return Err(Refusal::WrongState(format!(
            "agent uuid {uuid:?} was deleted: it can register again only with a reenrolment_token an administrator issues"
        )));
    }
    if proof.current_credential_matches {
        return Ok(Reregistration::Refresh);
    }
    Err(Refusal::NotPermitted(format!(
        "agent uuid {uuid:?} is already registered: registering it again needs its current_credential or a reenrolment_token"
    )))
}

/// The status a deleted agent's credential gets on Connect and the agent's other calls.
pub fn agent_was_deleted(uuid: &str) -> Refusal {
    Refusal::NotPermitted(format!(
        "agent uuid {uuid:?} was deleted: an administrator must issue a reenrolment_token to restore it"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof(current: bool, reenrolment: Reenrolment) -> PresentedProof {
        PresentedProof {
            current_credential_matches: current,
            reenrolment,
        }
    }

    #[test]
    fn a_registration_token_alone_takes_over_nothing() {
        let now = Utc::now();
        let refused =
            check_reregistration("a-1", false, proof(false, Reenrolment::NotPresented), now);
        assert!(matches!(refused, Err(Refusal::NotPermitted(_))));
        let refused =
            check_reregistration("a-1", true, proof(true, Reenrolment::NotPresented), now);
        assert!(
            matches!(refused, Err(Refusal::WrongState(message)) if message.contains("deleted"))
        );
    }

    #[test]
    fn the_current_credential_or_a_live_reenrolment_token_allows_it() {
        let now = Utc::now();
        let live = Reenrolment::Matches {
            expires_at: now + Duration::minutes(1),
        };
        let expired = Reenrolment::Matches {
            expires_at: now - Duration::minutes(1),
        };
        assert_eq!(
            check_reregistration("a-1", false, proof(true, Reenrolment::NotPresented), now),
            Ok(Reregistration::Refresh)
        );
        assert_eq!(
            check_reregistration("a-1", false, proof(false, live), now),
            Ok(Reregistration::Refresh)
        );
        assert_eq!(
            check_reregistration("a-1", true, proof(false, live), now),
            Ok(Reregistration::Restore)
        );
        assert!(matches!(
            check_reregistration("a-1", true, proof(false, expired), now),
            Err(Refusal::NotAuthenticated(message)) if message.contains("expired")
        ));
        assert!(matches!(
            check_reregistration("a-1", false, proof(true, Reenrolment::DoesNotMatch), now),
            Err(Refusal::NotAuthenticated(_))
        ));
    }
}
