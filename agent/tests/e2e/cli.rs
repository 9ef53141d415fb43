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

#[test]
fn configuration_mistakes_are_named() {
    let dir = tempfile::tempdir().expect("dir");
    // A misspelt key is not ignored: check-config fails and names the key it resembles.
    let file = dir.path().join("appsettings.json");
    std::fs::write(
        &file,
        r#"{"AgentConfiguration": {"CustomerId": 7, "AgentUuid": "acme-001",
            "ServerUrl": "http://127.0.0.1:1", "Lables": ["linux"]}}"#,
    )
    .expect("write");
    let output = agent_command()
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("did you mean Labels?"), "{stderr}");

    // No file at all: the error says where one was looked for.
    let empty = tempfile::tempdir().expect("dir");
    let output = agent_command()
        .arg("check-config")
        .current_dir(empty.path())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let looked_for = empty
        .path()
        .canonicalize()
        .expect("path")
        .join("appsettings.json");
    assert!(
        stderr.contains(&format!("{} does not exist", looked_for.display())),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_server_is_reported_with_its_cause() {
    let dir = tempfile::tempdir().expect("dir");
    // A port nothing listens on: the connection is refused, and the log says so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address");
    let file = dir.path().join("appsettings.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"AgentConfiguration": {{"CustomerId": 7, "AgentUuid": "acme-001",
                "ServerUrl": "http://{closed}", "RegistrationToken": "cygr_x",
                "WorkDirectory": "{work}", "StateDirectory": "{state}"}}}}"#,
            work = dir.path().join("work").display(),
            state = dir.path().join("state").display(),
        ),
    )
    .expect("write");
    let mut child = agent_command()
        .args(["run", "--config"])
        .arg(&file)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let stderr = child.stderr.take().expect("stderr");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match received.recv_timeout(left) {
            Ok(line) if line.contains("server unreachable") => break Some(line),
            Ok(line) => seen.push(line),
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let line = found.unwrap_or_else(|| panic!("no 'server unreachable' line in {seen:?}"));
    assert!(
        line.to_ascii_lowercase().contains("connection refused"),
        "the cause is named: {line}"
    );
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
