//! The unprivileged user steps run as (`RunStepsAs`): resolved once at start-up to its uid, gid
//! and supplementary groups, so a step cannot read the agent's configuration, credential or
//! state, all of which belong to the agent's own user with modes that shut others out.
//!
//! The switch happens in a helper, `cygnet-agent exec-step` (`step_exec.rs`): the standard
//! library can set a child's uid and gid but drops every supplementary group when it does, and
//! setting them between fork and exec needs unsafe code, which this workspace forbids. The
//! helper is this same binary, started as root in the step's process group; it switches
//! identity and then replaces itself with the step's program, so the step keeps its pid.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User, getgrouplist};

/// A resolved step user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups from the group database, the primary one included.
    pub groups: Vec<u32>,
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
        let c_name = std::ffi::CString::new(name)
            .map_err(|_| format!("user {name:?} contains a NUL byte"))?;
        let groups = getgrouplist(&c_name, user.gid)
            .map_err(|error| format!("groups of user {name:?} cannot be read: {error}"))?;
        Ok(StepUser {
            name: name.to_owned(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups: groups.into_iter().map(Gid::as_raw).collect(),
            home: user.dir.display().to_string(),
        })
    }

    /// Gives a directory the agent created for a job to the step user (mode stays 0700, so
    /// other users, other customers' steps included, still see nothing).
    pub fn take_ownership(&self, path: &Path) -> std::io::Result<()> {
        // lchown: a symlink in its place would be changed itself, never what it points at.
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
    }

    /// Ends every process of this user: what a step left running outside its process group
    /// (`setsid`, a double fork), which could otherwise watch a later job of the same user. It
    /// runs as the user itself (`kill -KILL -1` signals everything the caller may signal but
    /// itself), so nothing of anyone else is touched. Waits at most five seconds.
    pub async fn sweep(&self) {
        let (program, arguments) = self.wrap(
            Path::new("/bin/sh"),
            &["-c".into(), "kill -KILL -1 2>/dev/null; exit 0".into()],
        );
        let mut command = tokio::process::Command::new(program);
        command
            .args(arguments)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        match command.spawn() {
            Ok(mut child) => {
                let waited =
                    tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await;
                if !matches!(waited, Ok(Ok(status)) if status.success()) {
                    tracing::warn!(user = %self.name, ?waited, "could not end the step user's processes");
                }
            }
            Err(error) => {
                tracing::warn!(user = %self.name, %error, "could not end the step user's processes")
            }
        }
    }

    /// The helper invocation that runs `program arguments` as this user: the program to spawn
    /// (this binary) and its arguments.
    pub fn wrap(&self, program: &Path, arguments: &[String]) -> (PathBuf, Vec<OsString>) {
        // /proc/self/exe still works after the binary on disk was replaced by an upgrade.
        let helper = if Path::new("/proc/self/exe").exists() {
            PathBuf::from("/proc/self/exe")
        } else {
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("cygnet-agent"))
        };
        let groups = self
            .groups
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut wrapped: Vec<OsString> = vec![
            "exec-step".into(),
            "--uid".into(),
            self.uid.to_string().into(),
            "--gid".into(),
            self.gid.to_string().into(),
            "--groups".into(),
            groups.into(),
            "--".into(),
            program.as_os_str().to_owned(),
        ];
        wrapped.extend(arguments.iter().map(OsString::from));
        (helper, wrapped)
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
