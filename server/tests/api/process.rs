//! The `cygnet-server` binary itself: configuration errors, `migrate`, signals.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tonic::transport::Endpoint;

const BINARY: &str = env!("CARGO_BIN_EXE_cygnet-server");

/// A command with no CYGNET_* variables inherited from the test environment.
fn server_command() -> Command {
    let mut command = Command::new(BINARY);
    for (key, _) in std::env::vars() {
        if key.starts_with("CYGNET_") {
            command.env_remove(key);
        }
    }
    command.env_remove("RUST_LOG");
    command
}

#[test]
fn bad_configuration_stops_start_up_with_one_line_naming_the_key() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    for (env, flag, key) in [
        (None, Some(["--listen", "everywhere"]), "CYGNET_LISTEN"),
        (Some(("CYGNET_LOG_FORMAT", "xml")), None, "log_format"),
        (
            Some(("CYGNET_DATABASE_MAX_CONNECTIONS", "lots")),
            None,
            "database_max_connections",
        ),
        (
            Some(("CYGNET_TLS__CERT", "/nonexistent/server.pem")),
            None,
            "tls.cert",
        ),
    ] {
        let mut command = server_command();
        command.arg("--data-dir").arg(data_dir.path());
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        if let Some(flag) = flag {
            command.args(flag);
        }
        let output = command.output().expect("run cygnet-server");
        assert_eq!(output.status.code(), Some(2), "{key}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{key}: one line expected, got {stderr:?}"
        );
        assert!(stderr.contains(key), "{key}: {stderr:?}");
    }
    let mut command = server_command();
    let missing = data_dir.path().join("missing.toml");
    let output = command.arg("--config").arg(&missing).output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.toml"));
}

#[test]
fn migrate_up_down_and_status() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str]| {
        let output = server_command()
            .arg("--data-dir")
            .arg(data_dir.path())
            .arg("migrate")
            .args(args)
            .output()
            .expect("run migrate");
        assert!(output.status.success(), "migrate {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let status = run(&["status"]);
    assert!(
        status.lines().all(|line| line.starts_with("pending ")),
        "{status}"
    );
    assert!(status.contains("m20261130_000001_tenancy"), "{status}");
    run(&["up"]);
    let status = run(&["status"]);
    assert!(
        status.lines().all(|line| line.starts_with("applied ")),
        "{status}"
    );
    run(&["down", "--steps", "1"]);
    let status = run(&["status"]);
    assert!(
        status
            .lines()
            .last()
            .is_some_and(|line| line.starts_with("pending ")),
        "{status}"
    );
    // Every migration reverts, and the schema builds again from nothing.
    let applied = status.lines().count().to_string();
    run(&["down", "--steps", &applied]);
    let status = run(&["status"]);
    assert!(
        status.lines().all(|line| line.starts_with("pending ")),
        "{status}"
    );
    run(&["up"]);
    let status = run(&["status"]);
    assert!(
        status.lines().all(|line| line.starts_with("applied ")),
        "{status}"
    );
}

#[test]
fn serves_then_stops_cleanly_on_sigterm() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut child = server_command()
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(data_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cygnet-server");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    // Wait for the "listening" log line; it carries the bound address.
    let address = loop {
        let line = lines
            .next()
            .expect("server exited early")
            .expect("read log");
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        if event["message"] == "cygnet-server listening" {
            break event["address"].as_str().expect("address field").to_owned();
        }
    };
    assert!(data_dir.path().join("admin.token").exists());

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let health = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: "cygnet.v1.CustomerService".into(),
            })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(
            health.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving
        );
    });

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    // Wait for the exit on a thread, so the test has a deadline without polling.
    let (exited, exit) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = exited.send(child.wait());
    });
    let status = exit
        .recv_timeout(Duration::from_secs(15))
        .expect("server did not stop within 15 s of SIGTERM")
        .expect("wait for server");
    assert!(status.success(), "clean exit expected, got {status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|line| line.contains("stopped")), "{rest:?}");
}

#[test]
fn backup_and_restore_from_the_command_line() {
    let original = tempfile::tempdir().expect("temp dir");
    let copy = tempfile::tempdir().expect("temp dir");
    let archive = original.path().join("backup.tar");
    let run = |data_dir: &std::path::Path, args: &[&std::ffi::OsStr]| {
        server_command()
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .output()
            .expect("run cygnet-server")
    };
    let migrated = run(original.path(), &["migrate".as_ref(), "up".as_ref()]);
    assert!(migrated.status.success(), "{migrated:?}");
    std::fs::create_dir_all(original.path().join("artifacts/1/2")).expect("artifact dir");
    std::fs::write(original.path().join("artifacts/1/2/00ff"), b"built").expect("artifact");
    std::fs::write(original.path().join("artifacts/1/2/0aaa.partial"), b"half").expect("upload");
    let backup = run(original.path(), &["backup".as_ref(), archive.as_os_str()]);
    assert!(backup.status.success(), "{backup:?}");
    assert!(
        String::from_utf8_lossy(&backup.stdout).contains("1 artifact file(s)"),
        "{backup:?}"
    );
    // Never over an existing file.
    let again = run(original.path(), &["backup".as_ref(), archive.as_os_str()]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists"),
        "{again:?}"
    );

    let restored = run(copy.path(), &["restore".as_ref(), archive.as_os_str()]);
    assert!(restored.status.success(), "{restored:?}");
    assert_eq!(
        std::fs::read(copy.path().join("artifacts/1/2/00ff")).expect("restored artifact"),
        b"built"
    );
    assert!(!copy.path().join("artifacts/1/2/0aaa.partial").exists());
    let status = run(copy.path(), &["migrate".as_ref(), "status".as_ref()]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        !status.is_empty() && status.lines().all(|line| line.starts_with("applied ")),
        "{status}"
    );
    // Never over an existing database.
    let twice = run(copy.path(), &["restore".as_ref(), archive.as_os_str()]);
    assert!(!twice.status.success());
    assert!(
        String::from_utf8_lossy(&twice.stderr).contains("exists"),
        "{twice:?}"
    );
    // PostgreSQL has its own tools.
    let postgres = server_command()
        .arg("--data-dir")
        .arg(original.path())
        .args(["--database-url", "postgres://nobody@127.0.0.1:1/none"])
        .arg("backup")
        .arg(original.path().join("pg.tar"))
        .output()
        .expect("run");
    assert!(!postgres.status.success());
    assert!(
        String::from_utf8_lossy(&postgres.stderr).contains("pg_dump"),
        "{postgres:?}"
    );
    assert!(!original.path().join("pg.tar").exists());
}
