//! Running one step: its own process group, a scrubbed environment, output captured from both
//! pipes without deadlock, a deadline, and cancellation as SIGTERM to the group, then SIGKILL
//! after a grace period.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cygnet_proto::v1 as pb;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

use crate::step_groups::StepGroups;
use crate::step_user::StepUser;

/// Variables passed through from the agent's own environment; everything else (the agent's
/// secrets included) is not visible to steps.
const PASSED_THROUGH: [&str; 9] = [
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

/// How a step's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepEnd {
    Exited(i32),
    /// Killed by a signal it did not handle (e.g. OOM killer).
    Signalled(String),
    TimedOut,
    Cancelled(String),
    /// It could not start (shell missing, workspace gone, …).
    NotStarted(String),
}

/// What to run.
pub struct StepProcess<'a> {
    pub program: &'a Path,
    pub arguments: Vec<String>,
    pub workspace: &'a Path,
    pub environment: BTreeMap<String, String>,
    pub deadline: tokio::time::Instant,
    pub kill_grace: Duration,
    /// The user the step runs as (`RunStepsAs`); the agent's own user when none.
    pub run_as: Option<&'a StepUser>,
    /// Where the step's process group is recorded while it runs.
    pub groups: &'a StepGroups,
}

/// Finds an executable on the agent's PATH.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(name))
        .find(|candidate| {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                candidate.metadata().is_ok_and(|metadata| {
                    metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
                })
            }
            #[cfg(not(unix))]
            {
                candidate.is_file()
            }
        })
}

/// The agent variables a step inherits.
pub fn inherited_environment() -> BTreeMap<String, String> {
    PASSED_THROUGH
        .iter()
        .filter_map(|name| {
            std::env::var(name)
                .ok()
                .map(|value| (name.to_string(), value))
        })
        .collect()
}

fn signal_group(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        // ESRCH (the group is gone) is the normal outcome after the step ended.
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// Runs the process until it exits, its deadline passes or `cancel` carries a reason. Output
/// goes to `output` as it arrives. Every process of the group is gone when this returns.
pub async fn run(
    step: StepProcess<'_>,
    mut cancel: watch::Receiver<Option<String>>,
    output: mpsc::Sender<(pb::LogStream, Vec<u8>)>,
) -> StepEnd {
    // As the step user, the program is started through the `exec-step` helper, which takes
    // that user's identity and then becomes the program (same pid, same process group).
    let (program, arguments): (PathBuf, Vec<OsString>) = match step.run_as {
        Some(user) => user.wrap(step.program, &step.arguments),
        None => (
            step.program.to_path_buf(),
            step.arguments.iter().map(OsString::from).collect(),
        ),
    };
    let mut command = Command::new(&program);
    command
        .args(&arguments)
        .current_dir(step.workspace)
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // As the step user, the helper starts as root: the step's environment (which a member
    // writes: LD_PRELOAD, GCONV_PATH, …) must not reach the dynamic loader of a root process.
    // The helper gets none and reads it from its stdin, and applies it only to the program it
    // becomes once root is given up.
    let handed_over = match step.run_as {
        Some(user) => {
            let mut environment = step.environment.clone();
            environment.insert("HOME".into(), user.home.clone());
            environment.insert("USER".into(), user.name.clone());
            environment.insert("LOGNAME".into(), user.name.clone());
            command.stdin(Stdio::piped());
            Some(crate::step_exec::encode_environment(&environment))
        }
        None => {
            command.envs(&step.environment).stdin(Stdio::null());
            None
        }
    };
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return StepEnd::NotStarted(format!(
                "cannot start {}: {error}",
                step.program.display()
            ));
        }
    };
    if let (Some(encoded), Some(mut stdin)) = (handed_over, child.stdin.take()) {
        use tokio::io::AsyncWriteExt;
        // The helper reads it all before it runs anything; closing the pipe ends it.
        if let Err(error) = stdin.write_all(&encoded).await {
            let _ = child.start_kill();
            return StepEnd::NotStarted(format!("cannot hand the environment over: {error}"));
        }
        drop(stdin);
    }
    let Some(pid) = child.id() else {
        return StepEnd::NotStarted("the process exited before it could be tracked".into());
    };
    let group = i32::try_from(pid).unwrap_or_default();
    if let Err(error) = step.groups.record(group) {
        // Without the record a kill of the agent could leave this step running: do not run it.
        signal_group(pid, Signal::SIGKILL);
        let _ = child.wait().await;
        return StepEnd::NotStarted(format!("cannot record the step's process group: {error}"));
    }
    let readers = [
        child.stdout.take().map(|pipe| {
            (
                pb::LogStream::Stdout,
                Box::new(pipe) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            )
        }),
        child.stderr.take().map(|pipe| {
            (
                pb::LogStream::Stderr,
                Box::new(pipe) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            )
        }),
    ]
    .into_iter()
    .flatten()
    .map(|(stream, mut pipe)| {
        let output = output.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                match pipe.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => {
                        if output
                            .send((stream, buffer[..read].to_vec()))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        })
    })
    .collect::<Vec<_>>();
    drop(output);

    let outcome = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => match status.code() {
                Some(code) => StepEnd::Exited(code),
                None => {
                    #[cfg(unix)]
                    {
                        use std::os::unix::process::ExitStatusExt;
                        StepEnd::Signalled(format!("killed by signal {}", status.signal().unwrap_or_default()))
                    }
                    #[cfg(not(unix))]
                    {
                        StepEnd::Signalled("killed".into())
                    }
                }
            },
            Err(error) => StepEnd::NotStarted(format!("waiting for the process failed: {error}")),
        },
        _ = tokio::time::sleep_until(step.deadline) => StepEnd::TimedOut,
        reason = async {
            loop {
                if let Some(reason) = cancel.borrow_and_update().clone() {
                    return reason;
                }
                if cancel.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        } => StepEnd::Cancelled(reason),
    };
    if matches!(outcome, StepEnd::TimedOut | StepEnd::Cancelled(_)) {
        // Ask politely, then insist.
        signal_group(pid, Signal::SIGTERM);
        if tokio::time::timeout(step.kill_grace, child.wait())
            .await
            .is_err()
        {
            signal_group(pid, Signal::SIGKILL);
            let _ = child.wait().await;
        }
    }
    // Whatever the step left running in its group (background jobs) ends with it.
    signal_group(pid, Signal::SIGKILL);
    step.groups.forget(group);
    for reader in readers {
        // A process that left the group may still hold a pipe: do not wait for it forever.
        let abort = reader.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    outcome
}
