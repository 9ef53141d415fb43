//! The scenarios with a real `cygnet-agent` process: `logs` (one job printing 200 MB) and
//! `agent-footprint` (an idle agent over a minute).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::agent_service_client::AgentServiceClient;
use cygnet_proto::v1::pipeline_service_client::PipelineServiceClient;
use tokio::process::Child;

use crate::harness::{BenchServer, Tenant, admin, create_pipeline, tenant};
use crate::procfs::{cpu_percent, mib, usage};
use crate::scenarios::{Options, run_pipeline};
use crate::stats::Figure;

/// The `cygnet-agent` binary to measure: in a release build of the bench, the agent as shipped
/// (profile `agent-release`, in `target/agent-release/`); in a debug build, the debug agent
/// beside the bench. Built with cargo first when it is not there (`cargo run --bin cygnet-bench`
/// builds only the bench).
fn agent_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let beside = exe.parent().context("the bench's directory")?;
    let (directory, profile) = if cfg!(debug_assertions) {
        (beside.to_path_buf(), "dev")
    } else {
        (
            beside
                .parent()
                .context("the target directory")?
                .join("agent-release"),
            "agent-release",
        )
    };
    let binary = directory.join("cygnet-agent");
    if !binary.is_file() {
        println!("building cygnet-agent (profile {profile}) for the agent scenarios…");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .args([
                "build",
                "-p",
                "cygnet-agent",
                "--bin",
                "cygnet-agent",
                "--profile",
                profile,
            ])
            .status()?;
        anyhow::ensure!(status.success(), "building cygnet-agent failed");
    }
    anyhow::ensure!(binary.is_file(), "no {}", binary.display());
    Ok(binary)
}

/// A real agent process of `tenant`, online.
struct RealAgent {
    child: Child,
    pid: u32,
    _dir: tempfile::TempDir,
}

impl RealAgent {
    async fn start(server: &BenchServer, tenant: &Tenant) -> anyhow::Result<RealAgent> {
        let dir = tempfile::tempdir()?;
        let uuid = format!("bench-real-{}", tenant.customer_id);
        let settings = serde_json::json!({ "AgentConfiguration": {
            "CustomerId": tenant.customer_id,
            "AgentUuid": uuid,
            "ServerUrl": format!("http://{}", server.address),
            "RegistrationToken": tenant.registration_token,
            "Name": "bench",
            "WorkDirectory": dir.path().join("work"),
            "StateDirectory": dir.path().join("state"),
            "MaxLogBytesPerJob": 1u64 << 30,
        }});
        let config = dir.path().join("appsettings.json");
        std::fs::write(&config, settings.to_string())?;
        let mut command = tokio::process::Command::new(agent_binary()?);
        for (key, _) in std::env::vars() {
            let upper = key.to_ascii_uppercase();
            if upper.starts_with("AGENTCONFIGURATION__") || upper.starts_with("AGENT__") {
                command.env_remove(key);
            }
        }
        let child = command
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting cygnet-agent")?;
        let pid = child.id().context("cygnet-agent exited at once")?;
        let agent = RealAgent {
            child,
            pid,
            _dir: dir,
        };
        // Online once it has registered and its stream is open.
        let mut agents = AgentServiceClient::with_interceptor(server.channel().await?, admin());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let online = agents
                .list_agents(pb::ListAgentsRequest {
                    customer_id: tenant.customer_id,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .agents
                .iter()
                .any(|agent| agent.uuid == uuid && agent.status == pb::AgentStatus::Online as i32);
            if online {
                return Ok(agent);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "cygnet-agent not online within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }
}

/// A real idle agent: RSS and CPU over 60 s (3 s when quick), after it has been online for
/// one heartbeat interval.
pub async fn agent_footprint(options: &Options) -> anyhow::Result<Vec<Figure>> {
    let window = options.pick(Duration::from_secs(60), Duration::from_secs(3));
    let server = BenchServer::start(options.database_url.as_deref()).await?;
    let tenant = tenant(&server.channel().await?, "footprint").await?;
    let agent = RealAgent::start(&server, &tenant).await?;
    tokio::time::sleep(options.pick(Duration::from_secs(10), Duration::from_secs(1))).await;
    let before = usage(agent.pid)?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let after = usage(agent.pid)?;
    let cpu = cpu_percent(&before, &after, started.elapsed());
    agent.stop().await?;
    server.stop().await?;
    println!(
        "agent footprint, idle {:.0} s: RSS {:.1} MiB (peak {:.1} MiB), CPU {cpu:.3} %",
        window.as_secs_f64(),
        mib(after.rss_bytes),
        mib(after.peak_rss_bytes)
    );
    Ok(vec![
        Figure::new("agent footprint: idle RSS", mib(after.rss_bytes), "MiB"),
        Figure::new("agent footprint: idle CPU", cpu, "% of a core"),
    ])
}

/// The bytes `seq 1 last` prints.
fn seq_bytes(last: u64) -> u64 {
    let mut total = 0;
    let (mut low, mut digits) = (1u64, 1u64);
    while low <= last {
        let high = (low * 10 - 1).min(last);
        total += (high - low + 1) * (digits + 1);
        low *= 10;
        digits += 1;
    }
    total
}

/// One job printing `seq 1 25000000` (≈ 204 MB; 200,000 lines when quick) through a real
/// agent: MB/s from RunPipeline to the execution's end, the agent's peak RSS, and the stored log
/// read back whole (every number once, in order).
pub async fn logs(options: &Options) -> anyhow::Result<Vec<Figure>> {
    let last: u64 = options.pick(25_000_000, 200_000);
    let expected_bytes = seq_bytes(last);
    let server = BenchServer::start(options.database_url.as_deref()).await?;
    let channel = server.channel().await?;
    let tenant = tenant(&channel, "logs").await?;
    let pipeline_id = create_pipeline(
        &channel,
        tenant.customer_id,
        "logs",
        &format!("seq 1 {last}"),
    )
    .await?;
    let mut pipelines = PipelineServiceClient::with_interceptor(channel, admin());
    let agent = RealAgent::start(&server, &tenant).await?;
    let started = Instant::now();
    let execution_id = run_pipeline(&mut pipelines, tenant.customer_id, pipeline_id).await?;
    let deadline = started + Duration::from_secs(300);
    let status = loop {
        let execution = pipelines
            .get_execution(pb::GetExecutionRequest {
                customer_id: tenant.customer_id,
                execution_id,
            })
            .await?
            .into_inner()
            .execution
            .context("execution")?;
        let status = pb::ExecutionStatus::try_from(execution.status)?;
        if !matches!(
            status,
            pb::ExecutionStatus::Queued
                | pb::ExecutionStatus::Assigned
                | pb::ExecutionStatus::Running
        ) {
            break status;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the logs job took over 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let elapsed = started.elapsed();
    let agent_usage = usage(agent.pid)?;
    agent.stop().await?;
    anyhow::ensure!(
        status == pb::ExecutionStatus::Succeeded,
        "the logs job ended {status:?}"
    );

    // Read the log back and check it: byte count, and every number once, in order.
    let mut stored_bytes = 0u64;
    let mut next_number = 1u64;
    let mut partial = String::new();
    let mut after_sequence = 0;
    let mut chunks = 0u64;
    loop {
        let page = pipelines
            .get_execution_logs(pb::GetExecutionLogsRequest {
                customer_id: tenant.customer_id,
                execution_id,
                after_sequence,
                page_size: 1000,
                ..Default::default()
            })
            .await?
            .into_inner();
        if page.chunks.is_empty() {
            break;
        }
        for chunk in page.chunks {
            anyhow::ensure!(
                chunk.sequence == after_sequence + 1,
                "log chunk {} follows {after_sequence}",
                chunk.sequence
            );
            after_sequence = chunk.sequence;
            chunks += 1;
            if chunk.stream != pb::LogStream::Stdout as i32 {
                continue;
            }
            stored_bytes += chunk.text.len() as u64;
            partial.push_str(&chunk.text);
            let complete = partial.rfind('\n').map_or(0, |end| end + 1);
            for line in partial[..complete].lines() {
                anyhow::ensure!(
                    line == next_number.to_string(),
                    "line {next_number} of the stored log reads {line:?}"
                );
                next_number += 1;
            }
            partial.drain(..complete);
        }
    }
    server.stop().await?;
    anyhow::ensure!(
        stored_bytes == expected_bytes && next_number == last + 1 && partial.is_empty(),
        "stored {stored_bytes} of {expected_bytes} bytes, up to line {}",
        next_number - 1
    );
    let rate = stored_bytes as f64 / 1e6 / elapsed.as_secs_f64();
    println!(
        "logs: {:.0} MB in {chunks} chunks, {:.1} s = {rate:.1} MB/s stored, complete; agent peak RSS {:.1} MiB",
        stored_bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        mib(agent_usage.peak_rss_bytes)
    );
    Ok(vec![
        Figure::new("logs: stored", rate, "MB/s"),
        Figure::new(
            "logs: agent peak RSS",
            mib(agent_usage.peak_rss_bytes),
            "MiB",
        ),
        Figure::new("logs: bytes stored", stored_bytes as f64, "bytes"),
    ])
}

#[cfg(test)]
mod tests {
    #[test]
    fn seq_bytes_counts_digits_and_newlines() {
        assert_eq!(super::seq_bytes(9), 18);
        assert_eq!(super::seq_bytes(10), 21);
        assert_eq!(super::seq_bytes(100), 9 * 2 + 90 * 3 + 4);
        let printed: usize = (1..=12345).map(|n: u64| n.to_string().len() + 1).sum();
        assert_eq!(super::seq_bytes(12345), printed as u64);
    }
}
