//! The seed's three customers, live: a real server with SQLite, real agents running real steps,
//! real monitors, so the dashboard has something to show.
//!
//! ```text
//! cargo run -p cygnet-agent --example demo [-- --listen 127.0.0.1:50051 --web-listen 127.0.0.1:8080 --data-dir ./cygnet-demo]
//! ```
//!
//! It starts `cygnet-server` in this process, creates Acme Corporation, TechStart Inc and
//! GlobalCo through the public API (users, memberships, pipelines, releases, monitors), starts
//! their agents in this process (the same code as `cygnet-agent`), runs pipelines and deploys,
//! prints every customer's dashboard figures and the users' tokens, and keeps serving until
//! Ctrl-C, with the web dashboard on `--web-listen`. `--seed-only` stops after printing. The data directory is recreated on every run;
//! the demo refuses to touch a directory it did not create.
//!
//! The monitors check services this process serves on 127.0.0.1 (a healthy API, a slow cache
//! endpoint, a database port) and one port nobody listens on, so each status shows up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use cygnet_agent::config::AgentConfig;
use cygnet_agent::metrics::HostMetrics;
use cygnet_agent::session::Agent;
use cygnet_agent::workdir::prepare_customer_directory;
use cygnet_proto::Bearer;
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::agent_service_client::AgentServiceClient;
use cygnet_proto::v1::customer_service_client::CustomerServiceClient;
use cygnet_proto::v1::monitor_service_client::MonitorServiceClient;
use cygnet_proto::v1::pipeline_service_client::PipelineServiceClient;
use cygnet_proto::v1::release_service_client::ReleaseServiceClient;
use cygnet_proto::v1::user_service_client::UserServiceClient;
use cygnet_server::config::{AgentSettings, LogFormat, ServerConfig};
use cygnet_server::store::DatabaseOptions;
use cygnet_server::{App, auth::token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Marks a data directory as the demo's own, so a rerun may recreate it.
const MARKER: &str = ".cygnet-demo";
const WAIT: Duration = Duration::from_secs(60);

type Authed = InterceptedService<Channel, Bearer>;

/// Clients of every service, as one caller.
#[derive(Clone)]
struct Api {
    customers: CustomerServiceClient<Authed>,
    users: UserServiceClient<Authed>,
    agents: AgentServiceClient<Authed>,
    pipelines: PipelineServiceClient<Authed>,
    releases: ReleaseServiceClient<Authed>,
    monitors: MonitorServiceClient<Authed>,
}

impl Api {
    fn new(channel: Channel, token: &str) -> anyhow::Result<Api> {
        let bearer = Bearer::new(token)?;
        Ok(Api {
            customers: CustomerServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            users: UserServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            agents: AgentServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            pipelines: PipelineServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            releases: ReleaseServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            monitors: MonitorServiceClient::with_interceptor(channel, bearer),
        })
    }
}

struct Options {
    listen: SocketAddr,
    web_listen: SocketAddr,
    data_dir: PathBuf,
    seed_only: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        listen: "127.0.0.1:50051".parse()?,
        web_listen: "127.0.0.1:8080".parse()?,
        data_dir: PathBuf::from("cygnet-demo"),
        seed_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args.next().context("--listen needs an address")?;
                options.listen = value.parse().with_context(|| format!("--listen {value}"))?;
            }
            "--data-dir" => {
                options.data_dir = args.next().context("--data-dir needs a path")?.into();
            }
            "--web-listen" => {
                let value = args.next().context("--web-listen needs an address")?;
                options.web_listen = value
                    .parse()
                    .with_context(|| format!("--web-listen {value}"))?;
            }
            "--seed-only" => options.seed_only = true,
            other => {
                bail!(
                    "unknown argument {other:?} (use --listen ADDR, --web-listen ADDR, --data-dir DIR, --seed-only)"
                )
            }
        }
    }
    Ok(options)
}

/// Creates the data directory afresh: an existing one must be an earlier demo's.
fn fresh_data_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        if !dir.join(MARKER).is_file() {
            bail!(
                "{} exists and was not made by the demo; remove it or pass --data-dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by the cygnet demo; rerunning it recreates this directory\n",
    )?;
    Ok(())
}

/// Local services for the monitors: `/health` answers at once, `/slow` after 600 ms.
async fn serve_demo_services() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                if request.starts_with(b"GET /slow") {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                }
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    Ok(address)
}

/// A port nobody listens on.
async fn closed_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?)
}

/// A port that accepts connections and closes them: the "database" of the TCP monitor.
async fn open_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    Ok(address)
}

/// An agent running in this process, stopped by its watch.
struct RunningAgent {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningAgent {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts an agent the way `cygnet-agent` does, configured like the seed's appsettings.json.
fn start_agent(
    server: SocketAddr,
    data_dir: &Path,
    customer_id: i64,
    uuid: &str,
    labels: &[&str],
    registration_token: &str,
) -> anyhow::Result<RunningAgent> {
    let home = data_dir.join("agents").join(uuid);
    let settings = [
        ("CustomerId", customer_id.to_string()),
        ("AgentUuid", uuid.to_owned()),
        ("ServerUrl", format!("http://{server}")),
        ("Name", uuid.to_owned()),
        ("Location", "demo host".to_owned()),
        ("RegistrationToken", registration_token.to_owned()),
        ("WorkDirectory", home.join("work").display().to_string()),
        ("StateDirectory", home.join("state").display().to_string()),
    ];
    let mut variables: Vec<(String, String)> = settings
        .into_iter()
        .map(|(key, value)| (format!("AgentConfiguration__{key}"), value))
        .collect();
    variables.push(("AgentConfiguration__Labels".into(), labels.join(",")));
    let config = AgentConfig::load(None, variables).context("agent configuration")?;
    let work = prepare_customer_directory(&config.work_directory, config.customer_id)?;
    let agent = Agent::new(config, HostMetrics::new(&work)?)?;
    let (stop, stopped) = watch::channel(false);
    let uuid = uuid.to_owned();
    let task = tokio::spawn(async move {
        if let Err(error) = agent.run(stopped).await {
            eprintln!("agent {uuid}: {error}");
        }
    });
    Ok(RunningAgent { stop, task })
}

fn step(name: &str, command: &str) -> pb::Step {
    pb::Step {
        name: name.into(),
        command: command.into(),
        ..Default::default()
    }
}

/// A seeded pipeline: name, steps as (name, command), the agent label it runs on, and its runs
/// (whether each one is made to fail).
type PipelineSeed = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static [bool],
);

/// What one customer of the seed looks like.
struct Seed {
    name: &'static str,
    display_name: &'static str,
    domain: &'static str,
    /// (username, role)
    users: &'static [(&'static str, pb::Role)],
    /// (uuid, labels, stays online)
    agents: &'static [(&'static str, &'static [&'static str], bool)],
    pipelines: &'static [PipelineSeed],
}

const BUILD: &[(&str, &str)] = &[
    ("Build", "echo compiling {{SERVICE}}; sleep 0.2"),
    ("Test", "echo running unit tests; test {{FAIL}} = no"),
    (
        "Package",
        "mkdir -p dist && echo {{SERVICE}} > dist/{{SERVICE}}.txt",
    ),
    ("Deploy", "echo deploying {{SERVICE}}"),
];
const WEB: &[(&str, &str)] = &[
    ("Install", "echo installing packages"),
    ("Build", "echo bundling {{SERVICE}}; test {{FAIL}} = no"),
    ("Deploy", "echo publishing {{SERVICE}}"),
];
const TESTS: &[(&str, &str)] = &[
    ("Setup", "echo starting fixtures"),
    ("Run Tests", "echo 42 tests; test {{FAIL}} = no"),
];

const SEEDS: &[Seed] = &[
    Seed {
        name: "acme",
        display_name: "Acme Corporation",
        domain: "acme.com",
        users: &[
            ("admin", pb::Role::Admin),
            ("dev1", pb::Role::Developer),
            ("dev2", pb::Role::Developer),
            ("qa", pb::Role::Qa),
            ("ops", pb::Role::Devops),
        ],
        agents: &[
            ("acme-prod-001", &["production", "linux"], true),
            ("acme-staging-001", &["staging", "linux"], true),
            ("acme-dev-001", &["development", "linux"], false),
        ],
        pipelines: &[
            (
                "Build API Service",
                BUILD,
                "production",
                &[false, false, true, false],
            ),
            ("Build Web Frontend", WEB, "production", &[false, false]),
            ("Integration Tests", TESTS, "staging", &[false, true, false]),
            ("Database Migrations", TESTS, "staging", &[false]),
            ("Nightly Security Scan", TESTS, "staging", &[false, true]),
        ],
    },
    Seed {
        name: "techstart",
        display_name: "TechStart Inc",
        domain: "techstart.com",
        users: &[("admin", pb::Role::Admin), ("dev", pb::Role::Developer)],
        agents: &[
            ("tech-001", &["production", "linux"], true),
            ("tech-002", &["development", "linux"], true),
        ],
        pipelines: &[
            ("Mobile App", WEB, "production", &[false, false]),
            ("Backend", BUILD, "production", &[false]),
            ("Smoke Tests", TESTS, "development", &[false]),
        ],
    },
    Seed {
        name: "globalco",
        display_name: "GlobalCo",
        domain: "globalco.com",
        users: &[("admin", pb::Role::Admin), ("viewer", pb::Role::Viewer)],
        agents: &[("global-001", &["production", "linux"], true)],
        pipelines: &[("Website", WEB, "production", &[false])],
    },
];

/// Asks `check` every 100 ms until it returns something (or fails), for up to [`WAIT`].
async fn poll<T, Fut>(what: &str, mut check: impl FnMut() -> Fut) -> anyhow::Result<T>
where
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what}: not within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the execution finished; returns its status.
async fn finish(api: &Api, customer_id: i64, execution_id: i64) -> anyhow::Result<i32> {
    poll(&format!("execution {execution_id} finished"), || {
        let mut api = api.clone();
        async move {
            let execution = api
                .pipelines
                .get_execution(pb::GetExecutionRequest {
                    customer_id,
                    execution_id,
                })
                .await?
                .into_inner()
                .execution
                .context("execution")?;
            Ok(execution.finished_at.is_some().then_some(execution.status))
        }
    })
    .await
}

/// Waits until a release execution satisfies `done`.
async fn release_until(
    api: &Api,
    customer_id: i64,
    release_execution_id: i64,
    done: impl Fn(&pb::ReleaseExecution) -> bool,
) -> anyhow::Result<pb::ReleaseExecution> {
    let done = &done;
    poll(&format!("release execution {release_execution_id}"), || {
        let mut api = api.clone();
        async move {
            let execution = api
                .releases
                .get_release_execution(pb::GetReleaseExecutionRequest {
                    customer_id,
                    release_execution_id,
                })
                .await?
                .into_inner()
                .release_execution
                .context("release execution")?;
            Ok(done(&execution).then_some(execution))
        }
    })
    .await
}

/// Waits until `count` agents of the customer are online.
async fn wait_online(api: &Api, customer_id: i64, count: usize) -> anyhow::Result<()> {
    poll(
        &format!("{count} agents of customer {customer_id} online"),
        || {
            let mut api = api.clone();
            async move {
                let agents = api
                    .agents
                    .list_agents(pb::ListAgentsRequest {
                        customer_id,
                        status: pb::AgentStatus::Online.into(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .agents;
                Ok((agents.len() >= count).then_some(()))
            }
        },
    )
    .await
}

/// A new API token of the user, made by the platform admin; the secret.
async fn token_for(admin: &mut Api, user_id: i64) -> anyhow::Result<String> {
    Ok(admin
        .users
        .create_api_token(pb::CreateApiTokenRequest {
            name: "demo".into(),
            user_id,
            expires_at: None,
        })
        .await?
        .into_inner()
        .secret)
}

/// One seeded customer: its id, its users' tokens, its pipelines by name, its agents.
struct Seeded {
    customer: pb::Customer,
    tokens: Vec<(String, pb::Role, String)>,
    pipelines: HashMap<&'static str, i64>,
    agents: Vec<RunningAgent>,
}

async fn seed_customer(
    admin: &mut Api,
    server: SocketAddr,
    data_dir: &Path,
    seed: &Seed,
    consultant: i64,
) -> anyhow::Result<Seeded> {
    let customer = admin
        .customers
        .create_customer(pb::CreateCustomerRequest {
            name: seed.name.into(),
            display_name: seed.display_name.into(),
            contact_email: format!("admin@{}", seed.domain),
            ..Default::default()
        })
        .await?
        .into_inner()
        .customer
        .context("customer")?;
    let mut tokens = Vec::new();
    for (username, role) in seed.users {
        let user = admin
            .users
            .create_user(pb::CreateUserRequest {
                username: format!("{username}.{}", seed.name),
                email: format!("{username}@{}", seed.domain),
                full_name: format!("{username} of {}", seed.display_name),
                is_superuser: false,
            })
            .await?
            .into_inner()
            .user
            .context("user")?;
        admin
            .customers
            .add_member(pb::AddMemberRequest {
                customer_id: customer.id,
                user_id: user.id,
                role: (*role).into(),
            })
            .await?;
        let secret = token_for(admin, user.id).await?;
        tokens.push((user.username, *role, secret));
    }
    // The consultant works for every customer: the customer switcher has something to switch.
    admin
        .customers
        .add_member(pb::AddMemberRequest {
            customer_id: customer.id,
            user_id: consultant,
            role: pb::Role::Developer.into(),
        })
        .await?;

    let registration = admin
        .agents
        .create_registration_token(pb::CreateRegistrationTokenRequest {
            customer_id: customer.id,
            description: "demo agents".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .secret;
    let mut agents = Vec::new();
    let mut leaving = Vec::new();
    for (uuid, labels, stays) in seed.agents {
        let agent = start_agent(server, data_dir, customer.id, uuid, labels, &registration)?;
        if *stays {
            agents.push(agent);
        } else {
            leaving.push(agent);
        }
    }
    wait_online(admin, customer.id, seed.agents.len()).await?;
    // The seed's offline agent: registered, seen, gone.
    for agent in leaving {
        agent.stop().await;
    }

    let mut pipelines = HashMap::new();
    for (name, steps, label, runs) in seed.pipelines {
        let pipeline = admin
            .pipelines
            .create_pipeline(pb::CreatePipelineRequest {
                customer_id: customer.id,
                name: (*name).into(),
                description: format!("{} pipeline of {}", name, seed.display_name),
                agent_selector: Some(pb::AgentSelector {
                    agent_id: 0,
                    labels: vec![(*label).into()],
                }),
                steps: steps
                    .iter()
                    .map(|(name, command)| step(name, command))
                    .collect(),
                parameters: vec![
                    pb::Parameter {
                        name: "SERVICE".into(),
                        default_value: name.to_lowercase().replace(' ', "-"),
                        ..Default::default()
                    },
                    pb::Parameter {
                        name: "FAIL".into(),
                        default_value: "no".into(),
                        ..Default::default()
                    },
                ],
                timeout_seconds: 300,
                variable_group_ids: vec![],
            })
            .await?
            .into_inner()
            .pipeline
            .context("pipeline")?;
        for fails in runs.iter() {
            let execution = admin
                .pipelines
                .run_pipeline(pb::RunPipelineRequest {
                    customer_id: customer.id,
                    pipeline_id: pipeline.id,
                    parameters: [(
                        "FAIL".to_owned(),
                        if *fails { "yes" } else { "no" }.to_owned(),
                    )]
                    .into(),
                    agent_id: 0,
                })
                .await?
                .into_inner()
                .execution
                .context("execution")?;
            finish(admin, customer.id, execution.id).await?;
        }
        pipelines.insert(*name, pipeline.id);
    }
    Ok(Seeded {
        customer,
        tokens,
        pipelines,
        agents,
    })
}

/// Acme's two releases: v2.0 through all four environments (waiting for a Staging approval),
/// and a v1.5 hotfix through QA to Production, deployed by the platform admin and approved by
/// ops (nobody approves their own production deploy).
async fn seed_acme_releases(admin: &mut Api, ops: &mut Api, acme: &Seeded) -> anyhow::Result<()> {
    let customer_id = acme.customer.id;
    let environments: HashMap<String, i64> = admin
        .releases
        .list_environments(pb::ListEnvironmentsRequest {
            customer_id,
            ..Default::default()
        })
        .await?
        .into_inner()
        .environments
        .into_iter()
        .map(|environment| (environment.name, environment.id))
        .collect();
    let api = acme.pipelines["Build API Service"];
    let web = acme.pipelines["Build Web Frontend"];
    let stage = |order: i32, environment: &str| pb::ReleaseStage {
        order,
        environment_id: environments[environment],
        pipeline_id: api,
        ..Default::default()
    };
    let mut created = Vec::new();
    for (name, stages) in [
        (
            "v2.0 Release Pipeline",
            vec![
                stage(1, "Development"),
                stage(2, "QA"),
                stage(3, "Staging"),
                stage(4, "Production"),
            ],
        ),
        ("v1.5 Hotfix", vec![stage(1, "QA"), stage(2, "Production")]),
    ] {
        let release = admin
            .releases
            .create_release(pb::CreateReleaseRequest {
                customer_id,
                name: name.into(),
                description: format!("{name} of the API and web frontend"),
                pipeline_ids: vec![api, web],
                stages,
            })
            .await?
            .into_inner()
            .release
            .context("release")?;
        created.push(release.id);
    }
    let mut deployed = Vec::new();
    for (release_id, version) in created.iter().zip(["2.0.0", "1.5.1"]) {
        let execution = admin
            .releases
            .deploy_release(pb::DeployReleaseRequest {
                customer_id,
                release_id: *release_id,
                version: version.into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .release_execution
            .context("release execution")?;
        deployed.push(execution.id);
    }
    let awaiting = |execution: &pb::ReleaseExecution| {
        execution
            .stages
            .iter()
            .any(|stage| stage.status == pb::StageStatus::AwaitingApproval as i32)
    };
    release_until(admin, customer_id, deployed[0], awaiting).await?;
    let hotfix = release_until(admin, customer_id, deployed[1], awaiting).await?;
    let waiting = hotfix
        .stages
        .iter()
        .find(|stage| stage.status == pb::StageStatus::AwaitingApproval as i32)
        .context("a stage awaiting approval")?;
    ops.releases
        .approve_stage(pb::ApproveStageRequest {
            customer_id,
            stage_execution_id: waiting.id,
            comment: "hotfix verified in QA".into(),
        })
        .await?;
    release_until(admin, customer_id, deployed[1], |execution| {
        execution.status == pb::ReleaseExecutionStatus::Succeeded as i32
    })
    .await?;
    Ok(())
}

/// A release of one pipeline through one environment without approval, deployed once.
async fn seed_single_stage_release(
    admin: &mut Api,
    seeded: &Seeded,
    name: &str,
    pipeline: &str,
    environment: &str,
) -> anyhow::Result<()> {
    let customer_id = seeded.customer.id;
    let environment_id = admin
        .releases
        .list_environments(pb::ListEnvironmentsRequest {
            customer_id,
            ..Default::default()
        })
        .await?
        .into_inner()
        .environments
        .into_iter()
        .find(|candidate| candidate.name == environment)
        .context("environment")?
        .id;
    let pipeline_id = seeded.pipelines[pipeline];
    let release = admin
        .releases
        .create_release(pb::CreateReleaseRequest {
            customer_id,
            name: name.into(),
            description: format!("{name} through {environment}"),
            pipeline_ids: vec![pipeline_id],
            stages: vec![pb::ReleaseStage {
                order: 1,
                environment_id,
                pipeline_id,
                ..Default::default()
            }],
        })
        .await?
        .into_inner()
        .release
        .context("release")?;
    let execution = admin
        .releases
        .deploy_release(pb::DeployReleaseRequest {
            customer_id,
            release_id: release.id,
            version: "3.0.0".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .release_execution
        .context("release execution")?;
    release_until(admin, customer_id, execution.id, |execution| {
        execution.finished_at.is_some()
    })
    .await?;
    Ok(())
}

/// Monitors on the local demo services: healthy, warning (slow), down; one per status.
async fn seed_monitors(
    admin: &mut Api,
    customer_id: i64,
    which: &[(&str, pb::MonitorKind, String)],
) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::new();
    for (name, kind, target) in which {
        let monitor = admin
            .monitors
            .create_monitor(pb::CreateMonitorRequest {
                customer_id,
                name: (*name).into(),
                kind: (*kind).into(),
                target: target.clone(),
                interval_seconds: 30,
                timeout_ms: 2000,
                warning_threshold_ms: 300,
                ..Default::default()
            })
            .await?
            .into_inner()
            .monitor
            .context("monitor")?;
        ids.push(monitor.id);
    }
    for monitor_id in &ids {
        let monitor_id = *monitor_id;
        poll(&format!("monitor {monitor_id} checked"), || {
            let mut api = admin.clone();
            async move {
                let monitor = api
                    .monitors
                    .get_monitor(pb::GetMonitorRequest {
                        customer_id,
                        monitor_id,
                    })
                    .await?
                    .into_inner()
                    .monitor
                    .context("monitor")?;
                Ok(monitor.last_checked_at.map(|_| ()))
            }
        })
        .await?;
    }
    Ok(ids)
}

async fn print_dashboard(admin: &mut Api, seeded: &Seeded) -> anyhow::Result<()> {
    let customer = &seeded.customer;
    let stats = admin
        .customers
        .get_customer_stats(pb::GetCustomerStatsRequest {
            customer_id: customer.id,
        })
        .await?
        .into_inner()
        .stats
        .context("stats")?;
    println!();
    println!("{} (customer {})", customer.display_name, customer.id);
    println!(
        "  agents     {:>4}  {} online      pipelines {:>4}  {} succeeding   releases   {:>4}  {} active, {} deploying",
        stats.agents_total,
        stats.agents_online,
        stats.pipelines_total,
        stats.pipelines_succeeding,
        stats.releases_total,
        stats.releases_active,
        stats.releases_in_progress
    );
    println!(
        "  services   {:>4}  {} warning     users     {:>4}  {} active       executions {:>4}  {:.0}% success",
        stats.services_total,
        stats.services_warning,
        stats.users_total,
        stats.users_active,
        stats.executions_total,
        stats.success_rate_percent
    );
    let events = admin
        .customers
        .list_activity(pb::ListActivityRequest {
            customer_id: customer.id,
            page_size: 5,
            ..Default::default()
        })
        .await?
        .into_inner()
        .events;
    println!("  recent activity:");
    for event in events {
        println!("    {}", event.message);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    fresh_data_dir(&options.data_dir)?;
    let admin_token = token::generate("cyg_").secret;
    let config = ServerConfig {
        listen: options.listen,
        data_dir: options.data_dir.clone(),
        database: DatabaseOptions {
            url: format!(
                "sqlite://{}?mode=rwc",
                options.data_dir.join("cygnet.db").display()
            ),
            max_connections: 8,
        },
        bootstrap_token: Some(admin_token.clone()),
        log_format: LogFormat::Plain,
        tls: None,
        shutdown_grace_seconds: 5,
        metrics_listen: None,
        web_listen: Some(options.web_listen),
        secret_key: None,
        secret_key_previous: None,
        agents: AgentSettings::default(),
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    let app = App::start(config).await?;
    let web_address = app.web_address().context("the dashboard's address")?;
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let mut admin = Api::new(channel.clone(), &admin_token)?;

    let services = serve_demo_services().await?;
    let closed = closed_port().await?;
    let database = open_port().await?;
    let consultant = admin
        .users
        .create_user(pb::CreateUserRequest {
            username: "consultant".into(),
            email: "consultant@cygnet.example".into(),
            full_name: "Consultant working for every customer".into(),
            is_superuser: false,
        })
        .await?
        .into_inner()
        .user
        .context("consultant")?;
    let consultant_token = token_for(&mut admin, consultant.id).await?;

    let mut seeded = Vec::new();
    for seed in SEEDS {
        println!("creating {} …", seed.display_name);
        seeded.push(
            seed_customer(&mut admin, address, &options.data_dir, seed, consultant.id).await?,
        );
    }
    let acme = &seeded[0];
    let ops_token = acme
        .tokens
        .iter()
        .find(|(_, role, _)| *role == pb::Role::Devops)
        .map(|(_, _, token)| token.clone())
        .context("acme's ops user")?;
    let mut ops = Api::new(channel.clone(), &ops_token)?;
    seed_acme_releases(&mut admin, &mut ops, acme).await?;
    seed_single_stage_release(&mut admin, &seeded[1], "Mobile 3.0", "Mobile App", "QA").await?;
    let health = format!("http://{services}/health");
    seed_monitors(
        &mut admin,
        acme.customer.id,
        &[
            ("API Health Check", pb::MonitorKind::Http, health.clone()),
            (
                "Database Monitor",
                pb::MonitorKind::Tcp,
                format!("postgres://{database}"),
            ),
            (
                "Redis Cache",
                pb::MonitorKind::Http,
                format!("http://{services}/slow"),
            ),
            (
                "External Partner API",
                pb::MonitorKind::Http,
                format!("http://{closed}/status"),
            ),
        ],
    )
    .await?;
    seed_monitors(
        &mut admin,
        seeded[1].customer.id,
        &[("Status Page", pb::MonitorKind::Http, health.clone())],
    )
    .await?;
    seed_monitors(
        &mut admin,
        seeded[2].customer.id,
        &[("Website", pb::MonitorKind::Http, health)],
    )
    .await?;

    for customer in &seeded {
        print_dashboard(&mut admin, customer).await?;
    }
    let mut lines = vec![
        format!("admin (platform administrator)\t{admin_token}"),
        format!("consultant (developer at every customer)\t{consultant_token}"),
    ];
    for customer in &seeded {
        for (username, role, secret) in &customer.tokens {
            let role = role
                .as_str_name()
                .trim_start_matches("ROLE_")
                .to_lowercase();
            lines.push(format!(
                "{username} ({role} at {})\t{secret}",
                customer.customer.name
            ));
        }
    }
    let tokens_file = options.data_dir.join("tokens.txt");
    std::fs::write(&tokens_file, lines.join("\n") + "\n")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tokens_file, std::fs::Permissions::from_mode(0o600))?;
    }
    println!();
    println!("Dashboard: http://{web_address}/ (sign in with a token from the file below)");
    println!("Users and their tokens: {}", tokens_file.display());
    println!("Try, with a token from that file:");
    println!(
        "  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"customer_id\": {}}}' {address} cygnet.v1.CustomerService/GetCustomerStats",
        acme.customer.id
    );
    println!(
        "  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"customer_id\": {}}}' {address} cygnet.v1.CustomerService/WatchActivity",
        acme.customer.id
    );

    if !options.seed_only {
        println!();
        println!("Serving on {address} with the demo agents; Ctrl-C stops.");
        tokio::signal::ctrl_c().await?;
    }
    for customer in seeded {
        for agent in customer.agents {
            agent.stop().await;
        }
    }
    let _ = shutdown.send(());
    server.await??;
    Ok(())
}
