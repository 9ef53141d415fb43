//! The command line a build-host admin uses: `--version`, `check-config`, `run`.

use std::time::Duration;

use cygnet_testkit::{Backend, TestServer, eventually};

use crate::common::*;

#[test]
fn version_names_the_binary_and_its_version() {
    let output = agent_command().arg("--version").output().expect("run");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("cygnet-agent {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_prints_the_effective_settings_without_secrets() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("appsettings.json");
    std::fs::write(
        &file,
        r#"{"AgentConfiguration": {"CustomerId": 7, "AgentUuid": "acme-001",
            "ServerUrl": "https://ci.example.com", "RegistrationToken": "cygr_do-not-print-me",
            "Labels": ["linux", "docker"]}}"#,
    )
    .expect("write");
    let output = agent_command()
        .args(["check-config", "--config"])
        .arg(&file)
        .env("AgentConfiguration__MaxConcurrentJobs", "3")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    for line in [
        "CustomerId = 7",
        "AgentUuid = acme-001",
        "ServerUrl = https://ci.example.com",
        "RegistrationToken = (set, hidden)",
        "Labels = linux, docker",
        "MaxConcurrentJobs = 3",
        "MetricsListen = (off)",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("do-not-print-me"));

    // An invalid value: exit 2 and one line naming the key.
    let output = agent_command()
        .args(["check-config", "--config"])
        .arg(&file)
        .env("AgentConfiguration__MetricsListen", "everywhere")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("AgentConfiguration:MetricsListen"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

async fn the_run_subcommand_runs_the_agent(backend: Backend) {
    let server = TestServer::start_with(backend, one_second_heartbeats()).await;
    let customer = server.create_customer("acme").await;
    let token = server.create_registration_token(customer.id).await;
    let host = Host::new(&server, customer.id, "acme-run", Some(&token));
    let child = agent_command()
        .arg("run")
        .arg("--config")
        .arg(host.path("appsettings.json"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    eventually("agent online", Duration::from_secs(10), || {
        is_online_with_figures(&server, customer.id, "acme-run")
    })
    .await;
    signal(&child, "TERM");
    assert!(wait_exit(child, Duration::from_secs(10)).success());
}

cygnet_testkit::backend_tests!(the_run_subcommand_runs_the_agent);
