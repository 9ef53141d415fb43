//! What a malicious step can reach on its agent, performed by real steps on the real
//! `cygnet-agent`: the agent's credential and configuration (unreadable to steps run as
//! `RunStepsAs`), the registration token (deleted from its file once used, warned about when it
//! stays in the configuration), and the agent's lifetime (a step does not survive an agent killed
//! with SIGKILL once the agent is back).

use std::path::Path;
use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_testkit::{Backend, TestServer, eventually, final_execution, log_text, step};

use crate::common::*;

/// Adds keys to the host's `AgentConfiguration` section.
fn add_settings(host: &Host, extra: serde_json::Value) {
    let path = host.path("appsettings.json");
    let mut settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read settings"))
            .expect("settings are JSON");
    if let (Some(section), Some(extra)) = (
        settings["AgentConfiguration"].as_object_mut(),
        extra.as_object(),
    ) {
        for (key, value) in extra {
            section.insert(key.clone(), value.clone());
        }
    }
    std::fs::write(&path, settings.to_string()).expect("write settings");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn running_as_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Whether the process exists and is not a zombie waiting for a parent to reap it.
fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the parenthesised command name.
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

async fn run_to_end(
    server: &TestServer,
    customer_id: i64,
    name: &str,
    command: &str,
) -> (pb::Execution, String) {
    let pipeline = server
        .create_pipeline(customer_id, name, vec![step(name, command)], vec![])
        .await;
    let execution = server.run_pipeline(customer_id, pipeline.id, &[]).await;
    let updates = server
        .watch_to_end(customer_id, execution.id, Duration::from_secs(30))
        .await;
    (final_execution(&updates), log_text(&updates))
}

async fn steps_run_as_the_step_user_cannot_read_the_agent_credentials(backend: Backend) {
    if !running_as_root() {
        eprintln!("skipped: switching steps to another user needs root");
        return;
    }
    let server = TestServer::start_with(backend, one_second_heartbeats()).await;
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;
    let host = Host::new(&server, acme.id, "acme-001", None);
    std::fs::write(host.path("registration-token"), &token).expect("token file");
    add_settings(
        &host,
        serde_json::json!({
            "RunStepsAs": "nobody",
            "RegistrationTokenFile": host.path("registration-token"),
        }),
    );
    // The layout the docs ask for: the host directory traversable, the configuration private.
    set_mode(host.dir.path(), 0o711);
    set_mode(&host.path("appsettings.json"), 0o600);
    let _agent = host.spawn();
    eventually("agent online", Duration::from_secs(10), || {
        is_online_with_figures(&server, acme.id, "acme-001")
    })
    .await;
    assert!(
        !host.path("registration-token").exists(),
        "the registration token file is deleted once the agent registered"
    );
    let state_file = host.path("state/agent.json");
    assert_eq!(mode(&state_file), 0o600);
    assert_eq!(mode(&host.path("state")), 0o700);

    // The step runs as nobody, in a workspace it may write.
    let (execution, log) = run_to_end(
        &server,
        acme.id,
        "whoami",
        "id -un > me.txt && cat me.txt && echo \"groups $(id -G)\"",
    )
    .await;
    assert_eq!(execution.status(), pb::ExecutionStatus::Succeeded, "{log}");
    assert!(log.contains("nobody"), "{log}");
    // With the user's groups from the group database, as `id` computes them.
    let expected_groups = std::process::Command::new("id")
        .args(["-G", "nobody"])
        .output()
        .expect("id -G nobody");
    let expected_groups = String::from_utf8_lossy(&expected_groups.stdout);
    assert!(
        log.contains(&format!("groups {}", expected_groups.trim())),
        "{log}"
    );

    // Reading the credential or the configuration fails with permission denied.
    for (name, target) in [
        ("steal-credential", state_file.clone()),
        ("steal-configuration", host.path("appsettings.json")),
    ] {
        let (execution, log) = run_to_end(
            &server,
            acme.id,
            name,
            &format!("cat '{}'", target.display()),
        )
        .await;
        assert_eq!(
            execution.status(),
            pb::ExecutionStatus::Failed,
            "{name}: {log}"
        );
        assert!(log.contains("Permission denied"), "{name}: {log}");
        assert!(
            !log.contains("cyga_"),
            "{name} leaked the credential: {log}"
        );
        assert!(
            !log.contains(&token),
            "{name} leaked the registration token: {log}"
        );
    }

    // The step's environment never reaches the root helper's dynamic loader: with LD_PRELOAD
    // naming a missing library, only the step's own shell (as nobody) complains about it.
    let pipeline = server
        .create_pipeline(
            acme.id,
            "preload",
            vec![pb::Step {
                env: [(
                    "LD_PRELOAD".to_owned(),
                    "/nonexistent/cygnet-preload.so".to_owned(),
                )]
                .into(),
                ..step("preload", "true")
            }],
            vec![],
        )
        .await;
    let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    let updates = server
        .watch_to_end(acme.id, execution.id, Duration::from_secs(30))
        .await;
    let log = log_text(&updates);
    assert_eq!(
        final_execution(&updates).status(),
        pb::ExecutionStatus::Succeeded,
        "{log}"
    );
    assert_eq!(
        log.matches("cygnet-preload.so").count(),
        1,
        "only the step's shell may see the step's LD_PRELOAD: {log}"
    );

    // A symlink a step leaves where the agent (as root) prepares the next job's directories is
    // neither followed nor kept: the directories above a workspace are the agent's.
    let target = host.path("symlink-target");
    std::fs::create_dir(&target).expect("target");
    set_mode(&target, 0o755);
    let (execution, log) = run_to_end(
        &server,
        acme.id,
        "plant",
        &format!(
            "ln -s '{}' ../../9999 2>&1 || echo 'cannot plant'; ln -s '{}' ../next 2>&1 || echo 'cannot plant'",
            target.display(),
            target.display()
        ),
    )
    .await;
    assert_eq!(execution.status(), pb::ExecutionStatus::Succeeded, "{log}");
    assert_eq!(log.matches("cannot plant").count(), 2, "{log}");
    assert_eq!(mode(&target), 0o755, "the target was not touched");

    // A process a step starts outside its process group (to watch later jobs of the same user)
    // ends when the last job does.
    let (execution, log) = run_to_end(
        &server,
        acme.id,
        "escape",
        "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo \"escaped $!\"",
    )
    .await;
    assert_eq!(execution.status(), pb::ExecutionStatus::Succeeded, "{log}");
    let pid: i32 = log
        .lines()
        .find_map(|line| line.trim().strip_prefix("escaped "))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {log}"));
    eventually(
        "the escaped process ends",
        Duration::from_secs(10),
        || async { !is_alive(pid) },
    )
    .await;
}

async fn a_step_does_not_outlive_an_agent_killed_with_sigkill(backend: Backend) {
    let server = TestServer::start_with(backend, one_second_heartbeats()).await;
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;
    let host = Host::new(&server, acme.id, "acme-001", Some(&token));
    let agent = host.spawn();
    eventually("agent online", Duration::from_secs(10), || {
        is_online_with_figures(&server, acme.id, "acme-001")
    })
    .await;
    let pid_file = host.path("sleep.pid");
    let marker = host.path("started-once");
    // Runs the sleep once only, should the server hand the execution out again.
    let command = format!(
        "test -e '{marker}' && exit 0; touch '{marker}'; sleep 300 & echo $! > '{pid_file}.tmp' && mv '{pid_file}.tmp' '{pid_file}'; wait",
        marker = marker.display(),
        pid_file = pid_file.display(),
    );
    let pipeline = server
        .create_pipeline(acme.id, "sleeper", vec![step("sleep", &command)], vec![])
        .await;
    server.run_pipeline(acme.id, pipeline.id, &[]).await;
    eventually("the step's sleep started", Duration::from_secs(20), || {
        let exists = pid_file.exists();
        async move { exists }
    })
    .await;
    let sleep_pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    assert!(is_alive(sleep_pid));

    signal(&agent, "KILL");
    wait_exit(agent.into_child(), Duration::from_secs(10));
    // Nothing ended the step yet: only the agent died.
    assert!(
        is_alive(sleep_pid),
        "the sleep outlived the agent until its restart"
    );

    let _restarted = host.spawn();
    eventually(
        "the leftover sleep is gone",
        Duration::from_secs(10),
        || {
            let alive = is_alive(sleep_pid);
            async move { !alive }
        },
    )
    .await;
    assert_eq!(
        std::fs::read_dir(host.path("state/steps"))
            .expect("steps directory")
            .count(),
        0,
        "the leftover record is forgotten"
    );
}

async fn a_deleted_agent_stays_deleted_until_an_admin_reenrols_it(backend: Backend) {
    let server = TestServer::start_with(backend, one_second_heartbeats()).await;
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    // The registration token stays configured: the old agent used it to come straight back.
    let host = Host::with_settings(
        &server,
        acme.id,
        "acme-001",
        Some(&token),
        serde_json::json!({ "MetricsListen": address.to_string() }),
    );
    add_settings(
        &host,
        serde_json::json!({ "ReenrolmentTokenFile": host.path("reenrolment-token") }),
    );
    let _agent = host.spawn();
    eventually("agent online", Duration::from_secs(10), || {
        is_online_with_figures(&server, acme.id, "acme-001")
    })
    .await;
    let agent_id = find_agent(&server, acme.id, "acme-001")
        .await
        .expect("registered")
        .id;
    let before = value(
        &scrape_until(address, "connected", |text| {
            value(text, "cygnet_agent_connected") == Some(1.0)
        })
        .await,
        "cygnet_agent_reconnects_total",
    )
    .unwrap_or_default();
    server
        .admin_agents()
        .delete_agent(pb::DeleteAgentRequest {
            customer_id: acme.id,
            agent_id,
        })
        .await
        .expect("delete");

    // The agent tries again (twice: the end of its stream, then a refused Connect) and stays
    // deleted.
    scrape_until(address, "attempts after the deletion", |text| {
        value(text, "cygnet_agent_reconnects_total").is_some_and(|count| count >= before + 2.0)
    })
    .await;
    assert!(find_agent(&server, acme.id, "acme-001").await.is_none());
    let refused = server
        .admin_agents()
        .get_agent(pb::GetAgentRequest {
            customer_id: acme.id,
            agent_id,
        })
        .await
        .expect_err("deleted");
    assert_eq!(refused.code(), tonic::Code::NotFound);

    // An admin's re-enrolment token, dropped into the agent's file, brings it back under its id.
    let issued = server
        .admin_agents()
        .issue_reenrolment_token(pb::IssueReenrolmentTokenRequest {
            customer_id: acme.id,
            agent_id,
        })
        .await
        .expect("issue")
        .into_inner();
    std::fs::write(host.path("reenrolment-token"), &issued.secret).expect("token file");
    eventually("agent restored and online", Duration::from_secs(40), || {
        is_online_with_figures(&server, acme.id, "acme-001")
    })
    .await;
    assert_eq!(
        find_agent(&server, acme.id, "acme-001")
            .await
            .expect("restored")
            .id,
        agent_id
    );
    assert!(
        !host.path("reenrolment-token").exists(),
        "used up and deleted"
    );
}

#[test]
fn check_config_warns_about_a_registration_token_left_in_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let with_token = dir.path().join("with-token.json");
    std::fs::write(
        &with_token,
        r#"{"AgentConfiguration": {"CustomerId": 7, "AgentUuid": "acme-001",
            "ServerUrl": "https://ci.example.com", "RegistrationToken": "cygr_in-the-file"}}"#,
    )
    .expect("write");
    set_mode(&with_token, 0o600);
    let output = agent_command()
        .args(["check-config", "--config"])
        .arg(&with_token)
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "warning: AgentConfiguration:RegistrationToken stays in the configuration file"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("cygr_in-the-file"), "{stderr}");

    // The token in a file of its own, the steps as another user, the file private: no warning.
    let clean = dir.path().join("clean.json");
    std::fs::write(
        &clean,
        format!(
            r#"{{"AgentConfiguration": {{"CustomerId": 7, "AgentUuid": "acme-001",
                "ServerUrl": "https://ci.example.com", "RunStepsAs": "nobody",
                "RegistrationTokenFile": "{}"}}}}"#,
            dir.path().join("token").display()
        ),
    )
    .expect("write");
    set_mode(&clean, 0o600);
    let output = agent_command()
        .args(["check-config", "--config"])
        .arg(&clean)
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.lines().any(|line| line == "RunStepsAs = nobody"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    if running_as_root() {
        assert_eq!(stderr, "");
    } else {
        assert!(
            stderr.contains("needs the agent to run as root"),
            "{stderr}"
        );
    }

    // A step user that does not exist is named before start-up refuses it.
    let output = agent_command()
        .args(["check-config", "--config"])
        .arg(&clean)
        .env("AgentConfiguration__RunStepsAs", "no-such-user-cygnet")
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("RunStepsAs user \"no-such-user-cygnet\" does not exist"),
        "{stderr}"
    );
}

cygnet_testkit::backend_tests!(
    steps_run_as_the_step_user_cannot_read_the_agent_credentials,
    a_step_does_not_outlive_an_agent_killed_with_sigkill,
    a_deleted_agent_stays_deleted_until_an_admin_reenrols_it,
);
