//! The noisy neighbour: customer B's dispatch latency (RunPipeline → job received by B's idle
//! agent), measured without and then with customer A flooding the same server — a backlog of
//! work none of A's idle agents can take, and more of it submitted continuously — in one run.
//! The server runs with the default quotas and request rates, and each customer's admin calls
//! with their own token, as in production.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::pipeline_service_client::PipelineServiceClient;

use crate::harness::{
    Authed, BenchServer, Limits, Observed, Tenant, admin, bearer, connect_agents, customer_admin,
    tenant,
};
use crate::scenarios::{Options, run_pipeline};
use crate::stats::{Figure, ms, quantile};

/// B's runs, one at a time: the latency of each from RunPipeline to its arrival at B's agent.
async fn measure(
    pipelines: &mut PipelineServiceClient<Authed>,
    tenant: &Tenant,
    arrivals: &mut tokio::sync::mpsc::UnboundedReceiver<(i64, Instant)>,
    runs: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let execution_id = run_pipeline(pipelines, tenant.customer_id, tenant.pipeline_id).await?;
        let (arrived_id, arrived) = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
            .await
            .context("B's job did not arrive within 10 s")?
            .context("agents gone")?;
        anyhow::ensure!(arrived_id == execution_id, "a different job arrived");
        latencies.push(arrived.duration_since(started));
        // B's agent finishes at once; give it the moment to report before the next run.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(latencies)
}

pub async fn noisy_neighbour(options: &Options) -> anyhow::Result<Vec<Figure>> {
    let server = BenchServer::start_with(options.database_url.as_deref(), Limits::Defaults).await?;
    let channel = server.channel().await?;
    let quiet = tenant(&channel, "bystander").await?;
    let noisy = tenant(&channel, "noisy").await?;
    let quiet_token = customer_admin(&channel, quiet.customer_id, "b-admin").await?;
    let noisy_token = customer_admin(&channel, noisy.customer_id, "a-admin").await?;
    let (observed, mut arrivals) = Observed::new();
    let _b_agents = connect_agents(server.address, &quiet, 1, observed).await?;
    // A's agents are idle, with free slots, and can take none of A's work.
    let (a_observed, _a_arrivals) = Observed::new();
    let _a_agents = connect_agents(server.address, &noisy, 10, a_observed).await?;
    let unmatched = PipelineServiceClient::with_interceptor(channel.clone(), admin())
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: noisy.customer_id,
            name: "needs a gpu".into(),
            steps: vec![pb::Step {
                name: "train".into(),
                command: "true".into(),
                ..Default::default()
            }],
            agent_selector: Some(pb::AgentSelector {
                labels: vec!["gpu".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .pipeline
        .context("pipeline")?
        .id;
    let mut pipelines =
        PipelineServiceClient::with_interceptor(channel.clone(), bearer(&quiet_token));
    let runs = options.pick(200, 20);

    let quiet_latencies = measure(&mut pipelines, &quiet, &mut arrivals, runs).await?;

    // A's backlog (up to its queued_executions quota), then its flood: submitters asking for
    // more unmatched work all along, refused by the quota or the rate limit as it comes.
    let backlog = options.pick(500, 200);
    let mut flood = PipelineServiceClient::with_interceptor(channel.clone(), bearer(&noisy_token));
    for _ in 0..backlog {
        run_pipeline(&mut flood, noisy.customer_id, unmatched).await?;
    }
    let flooding = Arc::new(AtomicBool::new(true));
    let flooded = Arc::new(AtomicU64::new(0));
    let mut submitters = Vec::new();
    for _ in 0..8 {
        let mut client =
            PipelineServiceClient::with_interceptor(channel.clone(), bearer(&noisy_token));
        let (flooding, flooded, customer_id) =
            (flooding.clone(), flooded.clone(), noisy.customer_id);
        submitters.push(tokio::spawn(async move {
            while flooding.load(Ordering::Relaxed) {
                // Accepted or refused (quota, rate), each is a call the server answers.
                let _ = run_pipeline(&mut client, customer_id, unmatched).await;
                flooded.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let noisy_latencies = measure(&mut pipelines, &quiet, &mut arrivals, runs).await;
    flooding.store(false, Ordering::Relaxed);
    for submitter in submitters {
        let _ = submitter.await;
    }
    let noisy_latencies = noisy_latencies?;
    let (quiet_p50, quiet_p99) = (
        ms(quantile(&quiet_latencies, 0.5)),
        ms(quantile(&quiet_latencies, 0.99)),
    );
    let (noisy_p50, noisy_p99) = (
        ms(quantile(&noisy_latencies, 0.5)),
        ms(quantile(&noisy_latencies, 0.99)),
    );
    println!(
        "noisy neighbour: B's dispatch p50/p99 {quiet_p50:.2}/{quiet_p99:.2} ms alone, \
         {noisy_p50:.2}/{noisy_p99:.2} ms while A floods ({} queued before, {} more calls during)",
        backlog,
        flooded.load(Ordering::Relaxed)
    );
    server.stop().await?;
    Ok(vec![
        Figure::new("noisy neighbour, B alone: p50", quiet_p50, "ms"),
        Figure::new("noisy neighbour, B alone: p99", quiet_p99, "ms"),
        Figure::new("noisy neighbour, B with A's flood: p50", noisy_p50, "ms"),
        Figure::new("noisy neighbour, B with A's flood: p99", noisy_p99, "ms"),
        Figure::new(
            "noisy neighbour: p99 with flood / alone",
            noisy_p99 / quiet_p99.max(f64::EPSILON),
            "x",
        ),
    ])
}
