//! The unprivileged user steps run as (`RunStepsAs`): resolved once at start-up to its uid and
//! primary gid, so a step cannot read the agent's configuration, credential or state, all of
//! which belong to the agent's own user with modes that shut others out.
//!
//! Steps get the user's primary group only: the standard library drops every supplementary
//! group when it switches a child to another uid, and setting them needs either an unstable
//! API or unsafe code between fork and exec, which this workspace forbids. Fewer groups is the
//! safer side to err on.

use std::path::Path;

use nix::unistd::{Gid, Uid, User};

/// A resolved step user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The user's home directory, the steps' `HOME`.
    pub home: String,
}

impl StepUser {
    /// Looks the user up in the system's user database. Switching to it needs the agent to run
    /// as root, and switching to root itself would protect nothing: both are refused.
    pub fn resolve(name: &str) -> Result<StepUser, String> {
        let user = User::from_name(name)
            .map_err(|error| format!("user {name:?} cannot be looked up: {error}"))?
            .ok_or_else(|| format!("user {name:?} does not exist"))?;
        if user.uid.is_root() {
            return Err(format!(
                "user {name:?} is root: steps would be as privileged as the agent"
            ));
        }
        if !Uid::effective().is_root() {
            return Err(
                "needs the agent to run as root (it switches each step to that user)".into(),
            );
        }
        Ok(StepUser {
            name: name.to_owned(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir.display().to_string(),
        })
    }

    /// Gives a directory the agent created for a job to the step user (mode stays 0700, so
    /// other users, other customers' steps included, still see nothing).
    pub fn take_ownership(&self, path: &Path) -> std::io::Result<()> {
        nix::unistd::chown(
            path,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
        )
        .map_err(std::io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_users_and_root_are_refused() {
        let unknown = StepUser::resolve("no-such-user-cygnet").expect_err("unknown");
        assert!(unknown.contains("does not exist"), "{unknown}");
        let root = StepUser::resolve("root").expect_err("root");
        assert!(root.contains("is root"), "{root}");
    }
}
