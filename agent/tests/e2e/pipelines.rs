//! Pipelines run by the real `cygnet-agent`: parameters and environment, logs while they are
//! written, failures, cancellation, timeouts, a lost agent, a server restart mid-job, dispatch
//! that never crosses customers, and artifacts.

use std::time::{Duration, Instant};

use cygnet_proto::v1 as pb;
use cygnet_testkit::{
    Backend, TestOptions, TestServer, eventually, final_execution, log_text, step,
};
use pb::watch_execution_response::Update;
use sha2::Digest;

use crate::common::*;

fn options(grace: Duration) -> TestOptions {
    let mut options = one_second_heartbeats();
    options.agents.grace = grace;
    options
}

fn steps_of(execution: &pb::Execution) -> Vec<(String, pb::StepStatus, Option<i32>)> {
    execution
        .steps
        .iter()
        .map(|step| (step.name.clone(), step.status(), step.exit_code))
        .collect()
}

async fn three_steps_with_parameters_logs_and_an_artifact(backend: Backend) {
    let server = TestServer::start_with(backend, options(Duration::from_secs(60))).await;
    let (acme, _host, agent) = customer_with_agent(&server, "acme", serde_json::json!({})).await;
    let mut build = step(
        "build",
        "for i in 1 2 3 4 5; do echo \"line $i\"; sleep 0.2; done; mkdir -p dist; printf 'artifact-content' > dist/app.bin",
    );
    build.artifacts = vec!["dist/*.bin".into()];
    let pipeline = server
        .create_pipeline(
            acme.id,
            "Build API",
            vec![
                step(
                    "prepare",
                    "echo \"version {{version}} for $PARAM_ENVIRONMENT\"; echo \"ids $CYGNET_CUSTOMER_ID $PIPELINE_NAME $STEP_NAME\"; test -z \"${AGENT_SECRET:-}\" && echo 'no agent secret'; test \"$PWD\" = \"$CYGNET_WORKSPACE\" && echo 'in workspace'",
                ),
                build,
                step("test", "echo 'to stderr' >&2"),
            ],
            vec![
                pb::Parameter {
                    name: "VERSION".into(),
                    required: true,
                    ..Default::default()
                },
                pb::Parameter {
                    name: "ENVIRONMENT".into(),
                    r#type: pb::ParameterType::Choice.into(),
                    choices: vec!["dev".into(), "prod".into()],
                    default_value: "dev".into(),
                    ..Default::default()
                },
            ],
        )
        .await;
    let queued = server
        .run_pipeline(acme.id, pipeline.id, &[("version", "2.0")])
        .await;
    assert_eq!(
        queued.parameters.get("VERSION").map(String::as_str),
        Some("2.0")
    );
    assert_eq!(
        queued.parameters.get("ENVIRONMENT").map(String::as_str),
        Some("dev")
    );
    let updates = server
        .watch_to_end(acme.id, queued.id, Duration::from_secs(30))
        .await;

    let finished = final_execution(&updates);
    assert_eq!(
        finished.status(),
        pb::ExecutionStatus::Succeeded,
        "{finished:?}"
    );
    // Output arrived while the build step ran: its first line comes before the step's end.
    let position = |predicate: &dyn Fn(&Update) -> bool| {
        updates.iter().position(predicate).expect("update present")
    };
    let first_line =
        position(&|update| matches!(update, Update::Log(chunk) if chunk.text.contains("line 1")));
    let build_done = position(
        &|update| matches!(update, Update::Step(step) if step.name == "build" && step.status() == pb::StepStatus::Succeeded),
    );
    assert!(first_line < build_done, "logs stream while the step runs");
    let sequences: Vec<i64> = updates
        .iter()
        .filter_map(|update| match update {
            Update::Log(chunk) => Some(chunk.sequence),
            _ => None,
        })
        .collect();
    assert_eq!(
        sequences,
        (1..=sequences.len() as i64).collect::<Vec<_>>(),
        "in order, no gap, no repeat"
    );

    let text = log_text(&updates);
    for expected in [
        "version 2.0 for dev",
        &format!("ids {} Build API prepare", acme.id),
        "no agent secret",
        "in workspace",
        "line 1\n",
        "line 5\n",
        "to stderr",
        "uploaded artifact dist/app.bin",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    // GetExecutionLogs returns the very same chunks afterwards.
    let stored = server.logs(acme.id, queued.id).await;
    let watched: Vec<pb::LogChunk> = updates
        .iter()
        .filter_map(|update| match update {
            Update::Log(chunk) => Some(chunk.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(stored, watched);
    let stderr: Vec<_> = stored
        .iter()
        .filter(|chunk| chunk.stream() == pb::LogStream::Stderr)
        .collect();
    assert_eq!(stderr.len(), 1);
    assert_eq!(stderr[0].step_index, 2);

    let execution = server.execution(acme.id, queued.id).await;
    assert_eq!(
        steps_of(&execution),
        [
            ("prepare".to_owned(), pb::StepStatus::Succeeded, Some(0)),
            ("build".to_owned(), pb::StepStatus::Succeeded, Some(0)),
            ("test".to_owned(), pb::StepStatus::Succeeded, Some(0)),
        ]
    );
    assert!(
        execution.agent_id > 0 && execution.started_at.is_some() && execution.finished_at.is_some()
    );
    assert_eq!(execution.triggered_by_username, "admin");

    // The artifact round-trips with the right sha256.
    let artifacts = server
        .admin_pipelines()
        .list_artifacts(pb::ListArtifactsRequest {
            customer_id: acme.id,
            execution_id: queued.id,
        })
        .await
        .expect("artifacts")
        .into_inner()
        .artifacts;
    assert_eq!(artifacts.len(), 1);
    let expected_digest = hex::encode(sha2::Sha256::digest(b"artifact-content"));
    assert_eq!(
        (artifacts[0].path.as_str(), artifacts[0].size_bytes),
        ("dist/app.bin", 16)
    );
    assert_eq!(artifacts[0].sha256, expected_digest);
    let mut download = server
        .admin_pipelines()
        .download_artifact(pb::DownloadArtifactRequest {
            customer_id: acme.id,
            artifact_id: artifacts[0].id,
        })
        .await
        .expect("download")
        .into_inner();
    let mut content = Vec::new();
    let mut described = None;
    while let Some(message) = download.message().await.expect("chunk") {
        if message.artifact.is_some() {
            described = message.artifact;
        }
        content.extend(message.data);
    }
    assert_eq!(content, b"artifact-content");
    assert_eq!(
        described.expect("first message describes it").sha256,
        expected_digest
    );

    let pipeline = server
        .admin_pipelines()
        .get_pipeline(pb::GetPipelineRequest {
            customer_id: acme.id,
            pipeline_id: pipeline.id,
        })
        .await
        .expect("pipeline")
        .into_inner()
        .pipeline
        .expect("pipeline");
    let stats = pipeline.stats.expect("stats");
    assert_eq!(
        (
            stats.executions_total,
            stats.executions_succeeded,
            stats.executions_failed
        ),
        (1, 1, 0)
    );
    assert_eq!(stats.last_status(), pb::ExecutionStatus::Succeeded);
    stop(agent);
}

async fn failing_steps_fail_unless_they_may(backend: Backend) {
    let server = TestServer::start_with(backend, options(Duration::from_secs(60))).await;
    let (acme, _host, agent) = customer_with_agent(&server, "acme", serde_json::json!({})).await;

    let failing = server
        .create_pipeline(
            acme.id,
            "failing",
            vec![
                step("compile", "echo boom; exit 2"),
                step("after", "echo never"),
            ],
            vec![],
        )
        .await;
    let execution = server.run_pipeline(acme.id, failing.id, &[]).await;
    let finished = final_execution(
        &server
            .watch_to_end(acme.id, execution.id, Duration::from_secs(30))
            .await,
    );
    assert_eq!(finished.status(), pb::ExecutionStatus::Failed);
    assert_eq!(finished.failure_reason, "exit code 2 in step \"compile\"");
    let steps = steps_of(&server.execution(acme.id, execution.id).await);
    assert_eq!(
        steps[0],
        ("compile".to_owned(), pb::StepStatus::Failed, Some(2))
    );
    assert_eq!(steps[1].1, pb::StepStatus::Skipped);

    let mut soft = step("lint", "exit 3");
    soft.continue_on_error = true;
    let tolerant = server
        .create_pipeline(
            acme.id,
            "tolerant",
            vec![soft, step("after", "echo ran")],
            vec![],
        )
        .await;
    let execution = server.run_pipeline(acme.id, tolerant.id, &[]).await;
    let updates = server
        .watch_to_end(acme.id, execution.id, Duration::from_secs(30))
        .await;
    assert_eq!(
        final_execution(&updates).status(),
        pb::ExecutionStatus::Succeeded
    );
    assert!(log_text(&updates).contains("ran"));
    let steps = steps_of(&server.execution(acme.id, execution.id).await);
    assert_eq!(
        steps[0],
        ("lint".to_owned(), pb::StepStatus::Failed, Some(3))
    );
    assert_eq!(
        steps[1],
        ("after".to_owned(), pb::StepStatus::Succeeded, Some(0))
    );

    // A shell the agent lacks fails the step with a clear reason (pwsh is not on this machine).
    let mut powershell = step("ps", "Write-Output hi");
    powershell.shell = pb::Shell::Pwsh.into();
    if cygnet_agent::jobs::process::find_program("pwsh").is_none() {
        let pipeline = server
            .create_pipeline(acme.id, "windowsy", vec![powershell], vec![])
            .await;
        let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;
        let finished = final_execution(
            &server
                .watch_to_end(acme.id, execution.id, Duration::from_secs(30))
                .await,
        );
        assert_eq!(finished.status(), pb::ExecutionStatus::Failed);
        assert!(
            finished
                .failure_reason
                .contains("shell pwsh is not available on this agent"),
            "{}",
            finished.failure_reason
        );
    }
    stop(agent);
}

/// The process id the step printed as `pid <n>`.
async fn printed_pid(server: &TestServer, customer_id: i64, execution_id: i64) -> i32 {
    let pid_in = |text: &str| {
        text.lines().find_map(|line| {
            line.strip_prefix("pid ")
                .and_then(|pid| pid.trim().parse::<i32>().ok())
        })
    };
    let logged = || async {
        let text: String = server
            .logs(customer_id, execution_id)
            .await
            .into_iter()
            .map(|chunk| chunk.text)
            .collect();
        pid_in(&text)
    };
    eventually("step printed its pid", Duration::from_secs(10), || async {
        logged().await.is_some()
    })
    .await;
    logged().await.expect("pid")
}

/// Whether no live process is left in the process group (zombies, already dead and waiting to
/// be reaped by whoever inherited them, do not count).
fn group_is_gone(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let Some((_, fields)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = fields.split_whitespace().collect();
        // fields[0] = state, fields[2] = process group.
        if fields.get(2).and_then(|group| group.parse::<i32>().ok()) == Some(pgid)
            && fields.first() != Some(&"Z")
        {
            return false;
        }
    }
    true
}

async fn cancel_and_timeouts_stop_the_process_group(backend: Backend) {
    let server = TestServer::start_with(backend, options(Duration::from_secs(60))).await;
    let (acme, _host, agent) =
        customer_with_agent(&server, "acme", serde_json::json!({"MaxConcurrentJobs": 3})).await;

    let sleeper = server
        .create_pipeline(
            acme.id,
            "sleeper",
            vec![step("wait", "echo \"pid $$\"; sleep 600 & sleep 600")],
            vec![],
        )
        .await;
    let execution = server.run_pipeline(acme.id, sleeper.id, &[]).await;
    let pid = printed_pid(&server, acme.id, execution.id).await;
    let cancelled_at = Instant::now();
    let response = server
        .admin_pipelines()
        .cancel_execution(pb::CancelExecutionRequest {
            customer_id: acme.id,
            execution_id: execution.id,
        })
        .await
        .expect("cancel")
        .into_inner()
        .execution
        .expect("execution");
    assert_eq!(
        response.status(),
        pb::ExecutionStatus::Running,
        "stops on the agent, not here"
    );
    let finished = final_execution(
        &server
            .watch_to_end(acme.id, execution.id, Duration::from_secs(10))
            .await,
    );
    let took = cancelled_at.elapsed();
    assert_eq!(finished.status(), pb::ExecutionStatus::Cancelled);
    assert_eq!(finished.failure_reason, "cancelled by admin");
    assert!(took < Duration::from_secs(2), "cancelled in {took:?}");
    assert!(group_is_gone(pid), "process group {pid} must be gone");
    assert_eq!(
        server.execution(acme.id, execution.id).await.steps[0].status(),
        pb::StepStatus::Cancelled
    );

    let mut slow = step("slow", "echo \"pid $$\"; sleep 30");
    slow.timeout_seconds = 1;
    let timing_out = server
        .create_pipeline(
            acme.id,
            "step timeout",
            vec![slow, step("after", "echo no")],
            vec![],
        )
        .await;
    let execution = server.run_pipeline(acme.id, timing_out.id, &[]).await;
    let finished = final_execution(
        &server
            .watch_to_end(acme.id, execution.id, Duration::from_secs(20))
            .await,
    );
    assert_eq!(finished.status(), pb::ExecutionStatus::TimedOut);
    assert_eq!(
        finished.failure_reason,
        "timed out after 1 s in step \"slow\""
    );
    let pid = printed_pid(&server, acme.id, execution.id).await;
    assert!(group_is_gone(pid));

    let whole = server
        .admin_pipelines()
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: acme.id,
            name: "pipeline timeout".into(),
            steps: vec![step("first", "sleep 0.2"), step("second", "sleep 30")],
            timeout_seconds: 1,
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
        .pipeline
        .expect("pipeline");
    let execution = server.run_pipeline(acme.id, whole.id, &[]).await;
    let finished = final_execution(
        &server
            .watch_to_end(acme.id, execution.id, Duration::from_secs(20))
            .await,
    );
    assert_eq!(finished.status(), pb::ExecutionStatus::TimedOut);
    assert!(
        finished.failure_reason.contains("(pipeline timeout)"),
        "{}",
        finished.failure_reason
    );
    stop(agent);
}

async fn a_killed_agent_fails_its_job_after_the_grace_period(backend: Backend) {
    let server = TestServer::start_with(backend, options(Duration::from_secs(2))).await;
    let (acme, _host, agent) = customer_with_agent(&server, "acme", serde_json::json!({})).await;
    let pipeline = server
        .create_pipeline(
            acme.id,
            "long",
            vec![step("wait", "echo \"pid $$\"; sleep 600")],
            vec![],
        )
        .await;
    let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    let pid = printed_pid(&server, acme.id, execution.id).await;
    stop(agent);
    let killed_at = Instant::now();
    let finished = final_execution(
        &server
            .watch_to_end(acme.id, execution.id, Duration::from_secs(15))
            .await,
    );
    assert_eq!(finished.status(), pb::ExecutionStatus::Failed);
    assert_eq!(finished.failure_reason, "agent_lost");
    assert!(
        killed_at.elapsed() >= Duration::from_secs(1),
        "not before the grace period"
    );
    // The orphaned step of the killed agent is this test's to clean up.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let steps = server.execution(acme.id, execution.id).await.steps;
    assert_eq!(steps[0].status(), pb::StepStatus::Failed);
    assert_eq!(steps[0].reason, "agent_lost");
    // The dispatcher ended it, and says so in the customer's audit log as the system.
    let entries = server
        .admin_customers()
        .list_audit_log(pb::ListAuditLogRequest {
            customer_id: acme.id,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("audit log")
        .into_inner()
        .entries;
    let ended: Vec<_> = entries
        .iter()
        .filter(|entry| entry.method == "system/ExpireLease")
        .collect();
    assert_eq!(ended.len(), 1, "{entries:?}");
    assert_eq!(ended[0].actor_username, "system:dispatcher");
    assert_eq!(ended[0].actor_user_id, 0);
    assert_eq!(ended[0].resource_type, "execution");
    assert_eq!(ended[0].resource_id, execution.id);
    assert_eq!(ended[0].customer_id, acme.id);
}

async fn a_server_restart_mid_job_loses_and_doubles_nothing(backend: Backend) {
    let mut server = TestServer::start_with(backend, options(Duration::from_secs(60))).await;
    let (acme, _host, agent) = customer_with_agent(&server, "acme", serde_json::json!({})).await;
    let pipeline = server
        .create_pipeline(
            acme.id,
            "counter",
            vec![step(
                "count",
                "for i in $(seq 1 60); do echo \"n=$i\"; sleep 0.05; done",
            )],
            vec![],
        )
        .await;
    let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    eventually("output started", Duration::from_secs(10), || async {
        server
            .logs(acme.id, execution.id)
            .await
            .iter()
            .any(|chunk| chunk.text.contains("n=1\n"))
    })
    .await;
    server.restart().await;
    let finished = final_execution(
        &server
            .watch_to_end(acme.id, execution.id, Duration::from_secs(30))
            .await,
    );
    assert_eq!(
        finished.status(),
        pb::ExecutionStatus::Succeeded,
        "{finished:?}"
    );
    assert_every_line_once(&server, acme.id, execution.id, 60).await;
    stop(agent);
}

async fn work_never_crosses_customers(backend: Backend) {
    let server = TestServer::start_with(backend, options(Duration::from_secs(60))).await;
    let (techstart, _their_host, their_agent) =
        customer_with_agent(&server, "techstart", serde_json::json!({})).await;
    let acme = server.create_customer("acme").await;
    let pipeline = server
        .create_pipeline(
            acme.id,
            "acme build",
            vec![step("build", "echo acme")],
            vec![],
        )
        .await;
    let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    eventually("queue reason recorded", Duration::from_secs(5), || async {
        let current = server.execution(acme.id, execution.id).await;
        current.queue_reason == "no online agent matches any agent"
    })
    .await;
    let current = server.execution(acme.id, execution.id).await;
    assert_eq!(current.status(), pb::ExecutionStatus::Queued);
    assert_eq!(
        current.agent_id, 0,
        "TechStart's idle agent never gets Acme's job"
    );

    // Acme's own agent connects: the job is dispatched to it at once.
    let token = server.create_registration_token(acme.id).await;
    let host = Host::new(&server, acme.id, "acme-agent", Some(&token));
    let agent = host.spawn();
    let finished = final_execution(
        &server
            .watch_to_end(acme.id, execution.id, Duration::from_secs(30))
            .await,
    );
    assert_eq!(finished.status(), pb::ExecutionStatus::Succeeded);
    let acme_agent = find_agent(&server, acme.id, "acme-agent")
        .await
        .expect("acme agent");
    assert_eq!(finished.agent_id, acme_agent.id);
    let techstart_runs = server
        .admin_pipelines()
        .list_executions(pb::ListExecutionsRequest {
            customer_id: techstart.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .executions;
    assert!(techstart_runs.is_empty());
    stop(agent);
    stop(their_agent);
}

/// A job printing 3 MB: every GetExecutionLogs page stays within 1 MiB of text (clients accept
/// 4 MiB by default), and the pages together hold the whole output, in order.
async fn large_logs_come_back_in_pages_of_at_most_one_mebibyte(backend: Backend) {
    let server = TestServer::start_with(backend, options(Duration::from_secs(60))).await;
    let (acme, _host, agent) = customer_with_agent(&server, "acme", serde_json::json!({})).await;
    let pipeline = server
        .create_pipeline(
            acme.id,
            "chatty",
            vec![step("print", "seq 1 400000")],
            vec![],
        )
        .await;
    let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    let finished = final_execution(
        &server
            .watch_to_end(acme.id, execution.id, Duration::from_secs(60))
            .await,
    );
    assert_eq!(finished.status(), pb::ExecutionStatus::Succeeded);

    let mut stdout = String::new();
    let (mut pages, mut page_token) = (0, String::new());
    loop {
        let page = server
            .admin_pipelines()
            .get_execution_logs(pb::GetExecutionLogsRequest {
                customer_id: acme.id,
                execution_id: execution.id,
                page_size: 1000,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("a page of logs")
            .into_inner();
        pages += 1;
        let text: usize = page.chunks.iter().map(|chunk| chunk.text.len()).sum();
        assert!(text <= 1 << 20, "a page of {text} bytes");
        for chunk in &page.chunks {
            if chunk.stream() == pb::LogStream::Stdout {
                stdout.push_str(&chunk.text);
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let expected: String = (1..=400_000).map(|n| format!("{n}\n")).collect();
    assert_eq!(stdout.len(), expected.len());
    assert!(stdout == expected, "the paged log differs from the output");
    assert!(pages >= 3, "{} bytes came in {pages} pages", expected.len());
    stop(agent);
}

cygnet_testkit::backend_tests!(
    three_steps_with_parameters_logs_and_an_artifact,
    failing_steps_fail_unless_they_may,
    cancel_and_timeouts_stop_the_process_group,
    a_killed_agent_fails_its_job_after_the_grace_period,
    a_server_restart_mid_job_loses_and_doubles_nothing,
    work_never_crosses_customers,
    large_logs_come_back_in_pages_of_at_most_one_mebibyte,
);
