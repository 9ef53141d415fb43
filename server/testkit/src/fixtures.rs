//! Requests and data for tests: steps, heartbeats, development certificates.

use std::path::Path;

use cygnet_proto::v1 as pb;

/// A bash step.
pub fn step(name: &str, command: &str) -> pb::Step {
    pb::Step {
        name: name.into(),
        command: command.into(),
        ..Default::default()
    }
}

/// Plausible heartbeat figures.
pub fn heartbeat(cpu_percent: f64, memory_percent: f64) -> pb::Heartbeat {
    pb::Heartbeat {
        cpu_percent,
        memory_percent,
        memory_used_bytes: 2 << 30,
        memory_total_bytes: 8 << 30,
        disk_free_bytes: 100 << 30,
        load_average: 0.5,
        running_jobs: 0,
        running_execution_ids: Vec::new(),
    }
}

/// Runs `certs/gen-dev-certs.sh` into `dir` with the agent certificate's CN.
pub fn make_dev_certificates(dir: &Path, agent_uuid: &str) {
    let status = std::process::Command::new("bash")
        .arg(repository_root().join("certs/gen-dev-certs.sh"))
        .arg(dir)
        .arg(agent_uuid)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run certs/gen-dev-certs.sh");
    assert!(status.success(), "gen-dev-certs.sh failed");
}

/// The repository root, for scripts such as `certs/gen-dev-certs.sh`.
pub fn repository_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}
