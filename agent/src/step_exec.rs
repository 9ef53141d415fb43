//! `cygnet-agent exec-step`: the helper that becomes a step. Started by the agent (as root) in
//! the step's process group, with the step's environment and working directory, it takes the
//! step user's supplementary groups, gid and uid — in that order, since giving up root comes
//! last — and then replaces itself with the step's program. It never returns on success.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};

/// What the helper was asked to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecStep {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The program and its arguments.
    pub command: Vec<OsString>,
}

/// Switches identity and execs the program; returns only with the reason it could not.
pub fn exec_step(request: &ExecStep) -> String {
    let Some((program, arguments)) = request.command.split_first() else {
        return "no program to run".into();
    };
    if Uid::from_raw(request.uid).is_root() {
        return "refusing to run a step as root".into();
    }
    let groups: Vec<Gid> = request.groups.iter().copied().map(Gid::from_raw).collect();
    if let Err(error) = setgroups(&groups) {
        return format!("cannot set the step user's groups: {error}");
    }
    if let Err(error) = setgid(Gid::from_raw(request.gid)) {
        return format!("cannot switch to gid {}: {error}", request.gid);
    }
    if let Err(error) = setuid(Uid::from_raw(request.uid)) {
        return format!("cannot switch to uid {}: {error}", request.uid);
    }
    // Root cannot be regained: setuid from root sets the saved uid too.
    if Uid::effective().is_root() || setuid(Uid::from_raw(0)).is_ok() {
        return "the switch away from root did not hold".into();
    }
    let error = std::process::Command::new(program).args(arguments).exec();
    format!("cannot start {}: {error}", program.to_string_lossy())
}

/// Parses the comma-separated `--groups` value.
pub fn parse_groups(text: &str) -> Result<Vec<u32>, String> {
    text.split(',')
        .filter(|group| !group.is_empty())
        .map(|group| {
            group
                .parse()
                .map_err(|_| format!("--groups: {group:?} is not a group id"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_parse_and_root_is_refused() {
        assert_eq!(parse_groups("65534,27"), Ok(vec![65534, 27]));
        assert_eq!(parse_groups(""), Ok(vec![]));
        assert!(parse_groups("1,x").is_err());
        let refused = exec_step(&ExecStep {
            uid: 0,
            gid: 0,
            groups: vec![],
            command: vec!["true".into()],
        });
        assert!(refused.contains("as root"), "{refused}");
        let empty = exec_step(&ExecStep {
            uid: 65534,
            gid: 65534,
            groups: vec![],
            command: vec![],
        });
        assert!(empty.contains("no program"), "{empty}");
    }
}
