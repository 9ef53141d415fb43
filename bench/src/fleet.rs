//! The `fleet` scenario: many connected, heartbeating agents on one server (in a process of its
//! own), against the bare stream server holding as many streams in the same run.

use std::time::{Duration, Instant};

use anyhow::Context;
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::agent_service_client::AgentServiceClient;

use crate::child::{ChildServer, Mode};
use crate::harness::{
    Observed, SimAgent, admin, bounded, connect, connect_agent, connect_registered, heartbeat,
    register_agents,
};
use crate::procfs::{Usage, cpu_percent, mib, usage};
use crate::scenarios::Options;
use crate::stats::{Figure, ms, quantile};

/// The default heartbeat interval: the load is the real one, not a scaled one.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// A server's cost with a fleet connected.
struct Cost {
    cpu_percent: f64,
    rss_bytes: u64,
    per_agent_bytes: f64,
}

/// Waits `settle` (one heartbeat interval: every agent has beaten at least once), then reads the
/// server's CPU over `window`; RSS is the growth over `idle`, the reading before any agent
/// connected.
async fn measure(
    pid: u32,
    idle: &Usage,
    agents: usize,
    (settle, window): (Duration, Duration),
) -> anyhow::Result<Cost> {
    tokio::time::sleep(settle).await;
    let before = usage(pid)?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let after = usage(pid)?;
    let per_agent_bytes =
        after.rss_bytes.saturating_sub(idle.rss_bytes) as f64 / agents.max(1) as f64;
    Ok(Cost {
        cpu_percent: cpu_percent(&before, &after, started.elapsed()),
        rss_bytes: after.rss_bytes,
        per_agent_bytes,
    })
}

/// 1,000 and 10,000 agents (50 and 200 when quick): the bare stream server's cost, then the
/// server's, and how soon a heartbeat's figures are visible through GetAgent.
pub async fn fleet(options: &Options) -> anyhow::Result<Vec<Figure>> {
    let window = (
        options.pick(HEARTBEAT_INTERVAL, Duration::from_secs(1)),
        options.pick(Duration::from_secs(20), Duration::from_secs(1)),
    );
    let mut figures = Vec::new();
    for count in options.pick(vec![1000, 10_000], vec![50, 200]) {
        // The baseline: bare streams.
        let bare = ChildServer::spawn(Mode::BareStreams, None).await?;
        let idle = usage(bare.pid)?;
        let (observed, _) = Observed::new();
        let streams = bounded(count, |index| {
            let phase = index as f64 / count as f64;
            connect_agent(bare.address, None, phase, observed.clone())
        })
        .await?;
        let baseline = measure(bare.pid, &idle, count, window).await?;
        drop(streams);
        bare.stop().await?;

        // The server.
        let server = ChildServer::spawn(Mode::Serve, options.database_url.as_deref()).await?;
        let channel = connect(server.address).await?;
        let tenant = crate::harness::tenant(&channel, "fleet").await?;
        let idle = usage(server.pid)?;
        let connecting = Instant::now();
        let registered = register_agents(server.address, &tenant, count).await?;
        let after_registration = usage(server.pid)?;
        let fleet = connect_registered(server.address, registered, observed.clone()).await?;
        let connect_time = connecting.elapsed();
        let cost = measure(server.pid, &idle, count, window).await?;
        // What the open streams cost alone, registration's share left out.
        let per_stream_bytes =
            cost.rss_bytes.saturating_sub(after_registration.rss_bytes) as f64 / count as f64;
        let visible = heartbeat_to_visible(&channel, tenant.customer_id, &fleet).await?;
        drop(fleet);
        server.stop().await?;

        let ratio = cost.per_agent_bytes / baseline.per_agent_bytes.max(1.0);
        println!(
            "fleet, {count} agents (registered and connected in {:.1} s): server CPU {:.1} %, RSS {:.0} MiB, {:.1} KiB per agent ({:.1} KiB of it the stream) = {ratio:.2} × bare ({:.1} KiB, CPU {:.1} %); heartbeat visible p50 {:.2} ms, p99 {:.2} ms",
            connect_time.as_secs_f64(),
            cost.cpu_percent,
            mib(cost.rss_bytes),
            cost.per_agent_bytes / 1024.0,
            per_stream_bytes / 1024.0,
            baseline.per_agent_bytes / 1024.0,
            baseline.cpu_percent,
            ms(quantile(&visible, 0.5)),
            ms(quantile(&visible, 0.99)),
        );
        let prefix = format!("fleet, {count} agents");
        figures.extend([
            Figure::new(
                format!("{prefix}: server CPU"),
                cost.cpu_percent,
                "% of a core",
            ),
            Figure::new(format!("{prefix}: server RSS"), mib(cost.rss_bytes), "MiB"),
            Figure::new(
                format!("{prefix}: RSS per agent"),
                cost.per_agent_bytes / 1024.0,
                "KiB",
            ),
            Figure::new(
                format!("{prefix}: RSS per agent stream"),
                per_stream_bytes / 1024.0,
                "KiB",
            ),
            Figure::new(
                format!("{prefix}: bare stream CPU"),
                baseline.cpu_percent,
                "% of a core",
            ),
            Figure::new(
                format!("{prefix}: bare RSS per stream"),
                baseline.per_agent_bytes / 1024.0,
                "KiB",
            ),
            Figure::new(format!("{prefix}: RSS per agent / bare"), ratio, "ratio"),
            Figure::new(
                format!("{prefix}: heartbeat visible p50"),
                ms(quantile(&visible, 0.5)),
                "ms",
            ),
            Figure::new(
                format!("{prefix}: heartbeat visible p99"),
                ms(quantile(&visible, 0.99)),
                "ms",
            ),
        ]);
    }
    Ok(figures)
}

/// For 50 agents spread over the fleet: a heartbeat with figures of its own, then GetAgent
/// until they show; the time between.
async fn heartbeat_to_visible(
    channel: &tonic::transport::Channel,
    customer_id: i64,
    fleet: &[SimAgent],
) -> anyhow::Result<Vec<Duration>> {
    let mut agents = AgentServiceClient::with_interceptor(channel.clone(), admin());
    let step = (fleet.len() / 50).max(1);
    let mut latencies = Vec::new();
    for (sample, agent) in fleet.iter().step_by(step).enumerate() {
        let marker = 50.0 + sample as f64 / 4.0;
        let sent = Instant::now();
        agent
            .sender
            .send(heartbeat(marker))
            .await
            .context("agent stream closed")?;
        loop {
            let shown = agents
                .get_agent(pb::GetAgentRequest {
                    customer_id,
                    agent_id: agent.agent_id,
                })
                .await?
                .into_inner()
                .agent
                .and_then(|agent| agent.latest)
                .map(|latest| latest.cpu_percent);
            if shown == Some(marker) {
                break;
            }
            anyhow::ensure!(
                sent.elapsed() < Duration::from_secs(10),
                "a heartbeat was not visible within 10 s"
            );
        }
        latencies.push(sent.elapsed());
    }
    Ok(latencies)
}
