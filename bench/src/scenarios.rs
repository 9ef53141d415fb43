//! The scenarios: each starts its own server, measures, and returns its figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::agent_service_client::AgentServiceClient;
use cygnet_proto::v1::customer_service_client::CustomerServiceClient;
use cygnet_proto::v1::pipeline_service_client::PipelineServiceClient;

use crate::harness::{
    BenchServer, Observed, Registered, admin, connect_agents, connect_registered, register_agents,
    tenant,
};
use crate::stats::{Figure, ms, quantile};

pub struct Options {
    pub quick: bool,
    pub database_url: Option<String>,
}

impl Options {
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

pub async fn run_pipeline(
    pipelines: &mut PipelineServiceClient<crate::harness::Authed>,
    customer_id: i64,
    pipeline_id: i64,
) -> anyhow::Result<i64> {
    Ok(pipelines
        .run_pipeline(pb::RunPipelineRequest {
            customer_id,
            pipeline_id,
            ..Default::default()
        })
        .await?
        .into_inner()
        .execution
        .context("execution")?
        .id)
}

async fn execution_status(
    pipelines: &mut PipelineServiceClient<crate::harness::Authed>,
    customer_id: i64,
    execution_id: i64,
) -> anyhow::Result<i32> {
    Ok(pipelines
        .get_execution(pb::GetExecutionRequest {
            customer_id,
            execution_id,
        })
        .await?
        .into_inner()
        .execution
        .context("execution")?
        .status)
}

/// RunPipeline → the job arriving at an agent, one run at a time, with 1, 100 and 1,000 agents.
pub async fn dispatch(options: &Options) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for agents in options.pick(vec![1, 100, 1000], vec![1, 10, 50]) {
        let server = BenchServer::start(options.database_url.as_deref()).await?;
        let channel = server.channel().await?;
        let tenant = tenant(&channel, "dispatch").await?;
        let (observed, mut arrivals) = Observed::new();
        let connected = Instant::now();
        let fleet = connect_agents(server.address, &tenant, agents, observed.clone()).await?;
        let connect_time = connected.elapsed();
        let mut pipelines = PipelineServiceClient::with_interceptor(channel, admin());
        let runs = options.pick(300, 30);
        let mut latencies = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let execution_id =
                run_pipeline(&mut pipelines, tenant.customer_id, tenant.pipeline_id).await?;
            let (arrived_id, arrived) =
                tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
                    .await
                    .context("no job arrived within 10 s")?
                    .context("agents gone")?;
            anyhow::ensure!(arrived_id == execution_id, "a different job arrived");
            latencies.push(arrived.duration_since(started));
            // The next run starts when this one is over (outside the measurement).
            let deadline = Instant::now() + Duration::from_secs(10);
            while execution_status(&mut pipelines, tenant.customer_id, execution_id).await?
                != pb::ExecutionStatus::Succeeded as i32
            {
                anyhow::ensure!(Instant::now() < deadline, "execution {execution_id} stuck");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let prefix = format!("dispatch, {agents} agents");
        println!(
            "{prefix}: {} runs, p50 {:.2} ms, p99 {:.2} ms (agents connected in {:.1} s)",
            runs,
            ms(quantile(&latencies, 0.5)),
            ms(quantile(&latencies, 0.99)),
            connect_time.as_secs_f64()
        );
        figures.push(Figure::new(
            format!("{prefix}: p50"),
            ms(quantile(&latencies, 0.5)),
            "ms",
        ));
        figures.push(Figure::new(
            format!("{prefix}: p99"),
            ms(quantile(&latencies, 0.99)),
            "ms",
        ));
        figures.push(Figure::new(
            format!("{prefix}: max"),
            ms(quantile(&latencies, 1.0)),
            "ms",
        ));
        drop(fleet);
        server.stop().await?;
    }
    Ok(figures)
}

/// Trivial executions end to end with 100 agents: submitted by 64 concurrent callers for the
/// duration, then counted until every one succeeded. On PostgreSQL, then the same with two
/// replicas on one new database (agents and callers split evenly between them), and the ratio.
pub async fn throughput(options: &Options) -> anyhow::Result<Vec<Figure>> {
    let agents = options.pick(100, 10);
    let duration = options.pick(Duration::from_secs(30), Duration::from_secs(3));
    let server = BenchServer::start(options.database_url.as_deref()).await?;
    let one = throughput_run(&[&server], agents, duration, "throughput").await?;
    server.stop().await?;
    let mut figures = vec![
        Figure::new(
            format!("throughput, {agents} agents"),
            one.rate,
            "executions/s",
        ),
        Figure::new("throughput: lost", one.lost as f64, "executions"),
        Figure::new(
            "throughput: duplicated",
            one.duplicated as f64,
            "executions",
        ),
    ];
    if options.database_url.is_none() {
        println!("throughput, 2 replicas: PostgreSQL only (replicas share its database)");
        return Ok(figures);
    }
    let first = BenchServer::start(options.database_url.as_deref()).await?;
    let second = first.start_replica().await?;
    let two = throughput_run(&[&first, &second], agents, duration, "throughput-replicas").await?;
    second.stop().await?;
    first.stop().await?;
    println!(
        "throughput, 2 replicas / 1 replica: {:.2} x",
        two.rate / one.rate.max(f64::EPSILON)
    );
    figures.extend([
        Figure::new(
            format!("throughput, 2 replicas, {agents} agents"),
            two.rate,
            "executions/s",
        ),
        Figure::new(
            "throughput, 2 replicas: lost",
            two.lost as f64,
            "executions",
        ),
        Figure::new(
            "throughput, 2 replicas: duplicated",
            two.duplicated as f64,
            "executions",
        ),
        Figure::new(
            "throughput: 2 replicas / 1 replica",
            two.rate / one.rate.max(f64::EPSILON),
            "x",
        ),
    ]);
    Ok(figures)
}

/// What one throughput run measured.
struct Throughput {
    rate: f64,
    lost: u64,
    duplicated: usize,
}

/// One throughput run against `servers` (replicas of one database): agents and callers are
/// split evenly between them; fails if any execution is lost or run twice.
async fn throughput_run(
    servers: &[&BenchServer],
    agents: usize,
    duration: Duration,
    name: &str,
) -> anyhow::Result<Throughput> {
    let mut channels = Vec::new();
    for server in servers {
        channels.push(server.channel().await?);
    }
    let tenant = Arc::new(tenant(&channels[0], name).await?);
    let (observed, _arrivals) = Observed::new();
    // Registered once, then dealt out: agent i streams to replica i mod n.
    let mut shares: Vec<Vec<Registered>> = servers.iter().map(|_| Vec::new()).collect();
    for (index, agent) in register_agents(servers[0].address, &tenant, agents)
        .await?
        .into_iter()
        .enumerate()
    {
        shares[index % servers.len()].push(agent);
    }
    let mut fleets = Vec::new();
    for (server, share) in servers.iter().zip(shares) {
        fleets.push(connect_registered(server.address, share, observed.clone()).await?);
    }

    let submitted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut submitters = Vec::new();
    for caller in 0..64 {
        let channel = channels[caller % channels.len()].clone();
        let mut pipelines = PipelineServiceClient::with_interceptor(channel, admin());
        let (submitted, tenant) = (submitted.clone(), tenant.clone());
        submitters.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if run_pipeline(&mut pipelines, tenant.customer_id, tenant.pipeline_id)
                    .await
                    .is_ok()
                {
                    submitted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for submitter in submitters {
        submitter.await?;
    }
    let submitted = submitted.load(Ordering::Relaxed);
    let mut customers = CustomerServiceClient::with_interceptor(channels[0].clone(), admin());
    let mut succeeded = 0;
    let drain = Instant::now() + Duration::from_secs(120);
    while succeeded < submitted {
        anyhow::ensure!(
            Instant::now() < drain,
            "only {succeeded} of {submitted} executions succeeded within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        succeeded = customers
            .get_customer_stats(pb::GetCustomerStatsRequest {
                customer_id: tenant.customer_id,
            })
            .await?
            .into_inner()
            .stats
            .context("stats")?
            .executions_succeeded as u64;
    }
    let elapsed = started.elapsed();
    let rate = succeeded as f64 / elapsed.as_secs_f64();
    let lost = submitted.saturating_sub(observed.received() - observed.duplicates() as u64);
    let duplicated = observed.duplicates();
    println!(
        "throughput, {} replica(s), {agents} agents: {succeeded} executions in {:.1} s = {rate:.0}/s; lost {lost}, duplicated {duplicated}",
        servers.len(),
        elapsed.as_secs_f64()
    );
    anyhow::ensure!(lost == 0 && duplicated == 0, "executions lost or run twice");
    drop(fleets);
    Ok(Throughput {
        rate,
        lost,
        duplicated,
    })
}

/// Requests per second of `call` from 64 concurrent tasks on one connection, for `duration`.
async fn rate<F, Fut>(duration: Duration, call: F) -> anyhow::Result<f64>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (call, done) = (call.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if call().await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Tenant-scoped reads (GetAgent, ListAgents of 50) at concurrency 64, and the bare tonic
/// health check the same way in the same run.
pub async fn api(options: &Options) -> anyhow::Result<Vec<Figure>> {
    let duration = options.pick(Duration::from_secs(10), Duration::from_secs(1));
    let (bare, bare_task) = crate::bare::unary().await?;
    let health = tonic_health::pb::health_client::HealthClient::new(bare);
    let baseline = rate(duration, move || {
        let mut health = health.clone();
        async move {
            health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .map(|_| ())
        }
    })
    .await?;
    bare_task.abort();

    let server = BenchServer::start(options.database_url.as_deref()).await?;
    let channel = server.channel().await?;
    let tenant = tenant(&channel, "api").await?;
    let registrar = AgentServiceClient::new(channel.clone());
    let mut agent_id = 0;
    for index in 0..50 {
        let uuid = format!("api-{index}");
        agent_id = registrar
            .clone()
            .register_agent(pb::RegisterAgentRequest {
                customer_id: tenant.customer_id,
                uuid: uuid.clone(),
                name: uuid,
                max_concurrent_jobs: 1,
                registration_token: tenant.registration_token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .agent_id;
    }
    let agents = AgentServiceClient::with_interceptor(channel, admin());
    let customer_id = tenant.customer_id;
    let get_client = agents.clone();
    let get_agent = rate(duration, move || {
        let mut agents = get_client.clone();
        async move {
            agents
                .get_agent(pb::GetAgentRequest {
                    customer_id,
                    agent_id,
                })
                .await
                .map(|_| ())
        }
    })
    .await?;
    let list_agents = rate(duration, move || {
        let mut agents = agents.clone();
        async move {
            agents
                .list_agents(pb::ListAgentsRequest {
                    customer_id,
                    page_size: 50,
                    ..Default::default()
                })
                .await
                .map(|response| debug_assert_eq!(response.into_inner().agents.len(), 50))
        }
    })
    .await?;
    server.stop().await?;
    println!(
        "api, concurrency 64: bare tonic {baseline:.0}/s, GetAgent {get_agent:.0}/s ({:.2}×), ListAgents(50) {list_agents:.0}/s ({:.2}×)",
        get_agent / baseline,
        list_agents / baseline
    );
    Ok(vec![
        Figure::new("api: bare tonic health check", baseline, "requests/s"),
        Figure::new("api: GetAgent", get_agent, "requests/s"),
        Figure::new("api: GetAgent / bare", get_agent / baseline, "ratio"),
        Figure::new("api: ListAgents of 50", list_agents, "requests/s"),
        Figure::new("api: ListAgents / bare", list_agents / baseline, "ratio"),
    ])
}
