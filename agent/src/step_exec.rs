//! `cygnet-agent exec-step`: the helper that becomes a step. Started by the agent (as root) in
//! the step's process group, with the step's environment and working directory, it takes the
//! step user's supplementary groups, gid and uid — in that order, since giving up root comes
//! last — and then replaces itself with the step's program. It never returns on success.

use std::collections::BTreeMap;
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

/// The step's environment as the agent writes it to the helper's stdin: `KEY=VALUE` entries,
/// each ended by a NUL byte (neither can contain one).
pub fn encode_environment(environment: &BTreeMap<String, String>) -> Vec<u8> {
    let mut encoded = Vec::new();
    for (key, value) in environment {
        encoded.extend_from_slice(key.as_bytes());
        encoded.push(b'=');
        encoded.extend_from_slice(value.as_bytes());
        encoded.push(0);
    }
    encoded
}

/// Reads back what [`encode_environment`] wrote.
pub fn decode_environment(encoded: &[u8]) -> Result<Vec<(OsString, OsString)>, String> {
    use std::os::unix::ffi::OsStrExt;
    encoded
        .split(|byte| *byte == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let split = entry
                .iter()
                .position(|byte| *byte == b'=')
                .ok_or("an environment entry without '='")?;
            Ok((
                std::ffi::OsStr::from_bytes(&entry[..split]).to_owned(),
                std::ffi::OsStr::from_bytes(&entry[split + 1..]).to_owned(),
            ))
        })
        .collect()
}

/// The environment on stdin (until the agent closes it), then stdin becomes /dev/null.
fn take_environment() -> Result<Vec<(OsString, OsString)>, String> {
    use std::io::Read;
    let mut encoded = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut encoded)
        .map_err(|error| format!("cannot read the step's environment: {error}"))?;
    let null = std::fs::File::open("/dev/null")
        .map_err(|error| format!("cannot open /dev/null: {error}"))?;
    nix::unistd::dup2_stdin(null).map_err(|error| format!("cannot reset stdin: {error}"))?;
    decode_environment(&encoded)
}

/// Switches identity and execs the program with the environment read from stdin; returns only
/// with the reason it could not. The helper itself runs with an empty environment (see
/// `jobs::process::run`), so nothing a member wrote reaches it while it is root.
pub fn exec_step(request: &ExecStep) -> String {
    let Some((program, arguments)) = request.command.split_first() else {
        return "no program to run".into();
    };
    if Uid::from_raw(request.uid).is_root() {
        return "refusing to run a step as root".into();
    }
    let environment = match take_environment() {
        Ok(environment) => environment,
        Err(problem) => return problem,
    };
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
    let error = std::process::Command::new(program)
        .args(arguments)
        .env_clear()
        .envs(environment)
        .exec();
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
