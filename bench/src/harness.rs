//! A server of the bench's own (SQLite in a temporary directory, or a fresh PostgreSQL
//! database) and simulated agents speaking the real agent protocol, each over its own HTTP/2
//! connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::agent_service_client::AgentServiceClient;
use cygnet_proto::v1::customer_service_client::CustomerServiceClient;
use cygnet_proto::v1::pipeline_service_client::PipelineServiceClient;
use cygnet_proto::{AGENT_UUID_METADATA, Bearer};
use cygnet_server::App;
use cygnet_server::config::{AgentSettings, LogFormat, ServerConfig};
use cygnet_server::store::DatabaseOptions;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

pub const ADMIN_TOKEN: &str = "cygnet-bench-admin-token-0123456789";

/// The bench's platform administrator.
pub fn admin() -> Bearer {
    Bearer::new(ADMIN_TOKEN).expect("a valid header")
}

pub type Authed = InterceptedService<Channel, Bearer>;

/// The quotas and request rates a bench server runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limits {
    /// Every quota and rate as high as the server takes: the bench measures the server's work,
    /// not its limits (the checks still run).
    Unbounded,
    /// The defaults a production server has.
    Defaults,
}

impl Limits {
    fn quotas(self) -> cygnet_server::domain::QuotaLimits {
        let mut quotas = cygnet_server::domain::QuotaLimits::default();
        if self == Limits::Unbounded {
            for quota in cygnet_server::domain::Quota::ALL {
                quotas.set(quota, quota.ceiling());
            }
        }
        quotas
    }

    fn rate_limits(self) -> cygnet_server::config::RateLimits {
        match self {
            Limits::Unbounded => cygnet_server::config::RateLimits {
                requests_per_minute_per_token: 10_000_000,
                requests_per_minute_per_address: 10_000_000,
                ..Default::default()
            },
            Limits::Defaults => Default::default(),
        }
    }
}

/// A user's bearer token as an interceptor.
pub fn bearer(token: &str) -> Bearer {
    Bearer::new(token).expect("a valid header")
}

/// A new user who is `customer_id`'s admin; their API token.
pub async fn customer_admin(
    channel: &Channel,
    customer_id: i64,
    username: &str,
) -> anyhow::Result<String> {
    use cygnet_proto::v1::user_service_client::UserServiceClient;
    let mut users = UserServiceClient::with_interceptor(channel.clone(), admin());
    let user = users
        .create_user(pb::CreateUserRequest {
            username: username.into(),
            email: format!("{username}@bench.example"),
            full_name: username.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .user
        .context("user")?;
    CustomerServiceClient::with_interceptor(channel.clone(), admin())
        .add_member(pb::AddMemberRequest {
            customer_id,
            user_id: user.id,
            role: pb::Role::Admin.into(),
        })
        .await?;
    Ok(users
        .create_api_token(pb::CreateApiTokenRequest {
            user_id: user.id,
            name: "bench".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .secret)
}

/// A running server with a database of its own.
pub struct BenchServer {
    pub address: SocketAddr,
    /// The web dashboard.
    pub web_address: SocketAddr,
    /// The server's database (for a scenario that seeds rows in bulk).
    pub database_url: String,
    limits: Limits,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl BenchServer {
    /// Starts a server on 127.0.0.1:0: SQLite when `database_url` is `None`, else a new
    /// database created on that PostgreSQL server.
    pub async fn start(database_url: Option<&str>) -> anyhow::Result<BenchServer> {
        Self::start_with(database_url, Limits::Unbounded).await
    }

    pub async fn start_with(
        database_url: Option<&str>,
        limits: Limits,
    ) -> anyhow::Result<BenchServer> {
        let url = match database_url {
            None => None,
            Some(admin_url) => Some(fresh_postgres_database(admin_url).await?),
        };
        Self::start_on(url, limits).await
    }

    /// A second server (a replica) on this one's PostgreSQL database, with its own data
    /// directory and address.
    pub async fn start_replica(&self) -> anyhow::Result<BenchServer> {
        anyhow::ensure!(
            self.database_url.starts_with("postgres"),
            "replicas share a PostgreSQL database"
        );
        Self::start_on(Some(self.database_url.clone()), self.limits).await
    }

    /// Starts a server on `url` (SQLite in its data directory when `None`).
    async fn start_on(url: Option<String>, limits: Limits) -> anyhow::Result<BenchServer> {
        let dir = tempfile::tempdir()?;
        let data_dir = dir.path().join("data");
        let postgres = url.is_some();
        let url = url.unwrap_or_else(|| {
            format!("sqlite://{}?mode=rwc", data_dir.join("cygnet.db").display())
        });
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            data_dir,
            database: DatabaseOptions {
                max_connections: if postgres { 16 } else { 8 },
                url: url.clone(),
            },
            bootstrap_token: Some(ADMIN_TOKEN.to_owned()),
            log_format: LogFormat::Plain,
            tls: None,
            shutdown_grace_seconds: 5,
            metrics_listen: None,
            web_listen: Some("127.0.0.1:0".parse()?),
            secret_key: None,
            secret_key_previous: None,
            agents: AgentSettings::default(),
            quotas: limits.quotas(),
            rate_limits: limits.rate_limits(),
            retention: Default::default(),
            artifacts: Default::default(),
        };
        let listener = TcpListener::bind(config.listen).await?;
        let address = listener.local_addr()?;
        let app = App::start(config).await?;
        let web_address = app.web_address().context("the dashboard's address")?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        Ok(BenchServer {
            address,
            web_address,
            database_url: url,
            limits,
            shutdown: Some(shutdown),
            task: Some(task),
            _dir: dir,
        })
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        connect(self.address).await
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

/// A database of its own on the PostgreSQL server at `admin_url`, dropped by nobody (named
/// `cygnet_bench_<millis>`, for inspection after a run).
async fn fresh_postgres_database(admin_url: &str) -> anyhow::Result<String> {
    use sea_orm::ConnectionTrait;
    let name = format!(
        "cygnet_bench_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let admin = sea_orm::Database::connect(admin_url).await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await?;
    admin.close().await?;
    // The query part (`?host=/var/run/postgresql` for a Unix socket, say) carries over.
    let (location, query) = match admin_url.split_once('?') {
        Some((location, query)) => (location, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let (base, _) = location
        .rsplit_once('/')
        .context("--database-url must name a database: postgres://host/<database>")?;
    Ok(format!("{base}/{name}{query}"))
}

/// A customer with one trivial pipeline and a registration token.
pub struct Tenant {
    pub customer_id: i64,
    pub pipeline_id: i64,
    pub registration_token: String,
}

pub async fn tenant(channel: &Channel, name: &str) -> anyhow::Result<Tenant> {
    let mut customers = CustomerServiceClient::with_interceptor(channel.clone(), admin());
    let customer = customers
        .create_customer(pb::CreateCustomerRequest {
            name: name.into(),
            display_name: name.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .customer
        .context("customer")?;
    let pipeline_id = create_pipeline(channel, customer.id, "trivial", "true").await?;
    let mut agents = AgentServiceClient::with_interceptor(channel.clone(), admin());
    let registration_token = agents
        .create_registration_token(pb::CreateRegistrationTokenRequest {
            customer_id: customer.id,
            description: "bench".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .secret;
    Ok(Tenant {
        customer_id: customer.id,
        pipeline_id,
        registration_token,
    })
}

/// A pipeline of `customer_id` with one step running `command`; its id.
pub async fn create_pipeline(
    channel: &Channel,
    customer_id: i64,
    name: &str,
    command: &str,
) -> anyhow::Result<i64> {
    Ok(
        PipelineServiceClient::with_interceptor(channel.clone(), admin())
            .create_pipeline(pb::CreatePipelineRequest {
                customer_id,
                name: name.into(),
                steps: vec![pb::Step {
                    name: name.into(),
                    command: command.into(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await?
            .into_inner()
            .pipeline
            .context("pipeline")?
            .id,
    )
}

/// What the simulated agents saw, shared by all of them.
pub struct Observed {
    /// Jobs received, in total.
    received: AtomicU64,
    /// Every execution id received (a repeated assignment would show up twice).
    ids: std::sync::Mutex<Vec<i64>>,
    /// Each arrival as it happens, for latency measurements.
    arrivals: mpsc::UnboundedSender<(i64, Instant)>,
}

impl Observed {
    pub fn new() -> (Arc<Observed>, mpsc::UnboundedReceiver<(i64, Instant)>) {
        let (arrivals, receiver) = mpsc::unbounded_channel();
        (
            Arc::new(Observed {
                received: AtomicU64::new(0),
                ids: std::sync::Mutex::new(Vec::new()),
                arrivals,
            }),
            receiver,
        )
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Execution ids received more than once.
    pub fn duplicates(&self) -> usize {
        let mut ids = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let all = ids.len();
        ids.sort_unstable();
        ids.dedup();
        all - ids.len()
    }

    fn arrived(&self, execution_id: i64, at: Instant) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(execution_id);
        let _ = self.arrivals.send((execution_id, at));
    }
}

/// A simulated agent: its stream's sender (for extra messages such as a marked heartbeat) and
/// the tasks behind it, stopped when it is dropped.
pub struct SimAgent {
    pub agent_id: i64,
    pub sender: mpsc::Sender<pb::ConnectRequest>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for SimAgent {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A heartbeat with these figures.
pub fn heartbeat(cpu_percent: f64) -> pb::ConnectRequest {
    pb::ConnectRequest {
        message: Some(pb::connect_request::Message::Heartbeat(pb::Heartbeat {
            cpu_percent,
            memory_percent: 10.0,
            memory_used_bytes: 1 << 30,
            memory_total_bytes: 8 << 30,
            ..Default::default()
        })),
    }
}

/// Requests in flight at once while registering and connecting agents.
const CONNECTING: usize = 32;

/// Runs `make(index)` for every index below `count`, [`CONNECTING`] at a time; the results in
/// completion order.
pub async fn bounded<T, F, Fut>(count: usize, make: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let mut joins = tokio::task::JoinSet::new();
    let mut results = Vec::with_capacity(count);
    for index in 0..count {
        if joins.len() >= CONNECTING
            && let Some(joined) = joins.join_next().await
        {
            results.push(joined??);
        }
        joins.spawn(make(index));
    }
    while let Some(joined) = joins.join_next().await {
        results.push(joined??);
    }
    Ok(results)
}

/// A registered agent: its id, credential and uuid.
pub struct Registered {
    agent_id: i64,
    credential: String,
    uuid: String,
}

/// Registers `count` agents (four job slots each) of `tenant` on the server at `address`.
pub async fn register_agents(
    address: SocketAddr,
    tenant: &Tenant,
    count: usize,
) -> anyhow::Result<Vec<Registered>> {
    let registrar = connect(address).await?;
    bounded(count, |index| {
        let uuid = format!("bench-{}-{index}", tenant.customer_id);
        let registrar = registrar.clone();
        let registration_token = tenant.registration_token.clone();
        let customer_id = tenant.customer_id;
        async move {
            let registered = AgentServiceClient::new(registrar)
                .register_agent(pb::RegisterAgentRequest {
                    customer_id,
                    uuid: uuid.clone(),
                    name: uuid.clone(),
                    labels: vec!["bench".into()],
                    hostname: "bench".into(),
                    os: "linux".into(),
                    arch: "x86_64".into(),
                    version: "bench".into(),
                    max_concurrent_jobs: 4,
                    registration_token,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("registering {uuid}"))?
                .into_inner();
            Ok(Registered {
                agent_id: registered.agent_id,
                credential: registered.credential,
                uuid,
            })
        }
    })
    .await
}

/// Connects each registered agent over its own HTTP/2 connection. Every agent heartbeats at
/// the interval the server asks for (spread over the interval so the fleet does not beat in
/// step), finishes each job at once (started, then succeeded) and records its arrival in
/// `observed`.
pub async fn connect_registered(
    address: SocketAddr,
    registered: Vec<Registered>,
    observed: Arc<Observed>,
) -> anyhow::Result<Vec<SimAgent>> {
    let count = registered.len();
    let registered: Vec<std::sync::Mutex<Option<Registered>>> = registered
        .into_iter()
        .map(|agent| std::sync::Mutex::new(Some(agent)))
        .collect();
    bounded(count, |index| {
        let taken = registered[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let observed = observed.clone();
        let phase = index as f64 / count as f64;
        async move {
            let registered = taken.context("each agent connects once")?;
            let credential = (registered.credential, registered.uuid);
            let mut agent = connect_agent(address, Some(credential), phase, observed).await?;
            agent.agent_id = registered.agent_id;
            Ok(agent)
        }
    })
    .await
}

/// Registers and connects `count` agents (see [`register_agents`], [`connect_registered`]).
pub async fn connect_agents(
    address: SocketAddr,
    tenant: &Tenant,
    count: usize,
    observed: Arc<Observed>,
) -> anyhow::Result<Vec<SimAgent>> {
    let registered = register_agents(address, tenant, count).await?;
    connect_registered(address, registered, observed).await
}

/// A new HTTP/2 connection to `address`.
pub async fn connect(address: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{address}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

/// Opens an agent stream over a connection of its own (with the agent's credential and uuid when
/// given; the bare stream server takes none), waits for Welcome, and starts heartbeating at
/// `phase` (0..1) of the interval and answering jobs.
pub async fn connect_agent(
    address: SocketAddr,
    credential: Option<(String, String)>,
    phase: f64,
    observed: Arc<Observed>,
) -> anyhow::Result<SimAgent> {
    let channel = connect(address).await?;
    let (sender, outgoing) = mpsc::channel(64);
    let mut request = tonic::Request::new(ReceiverStream::new(outgoing));
    if let Some((credential, uuid)) = &credential {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {credential}").parse()?);
        request
            .metadata_mut()
            .insert(AGENT_UUID_METADATA, uuid.parse()?);
    }
    let mut inbound = AgentServiceClient::new(channel)
        .connect(request)
        .await
        .context("connecting an agent stream")?
        .into_inner();
    let (agent_id, interval) = match inbound.message().await? {
        Some(pb::ConnectResponse {
            command: Some(pb::connect_response::Command::Welcome(welcome)),
        }) => (
            welcome.agent_id,
            std::time::Duration::from_secs(
                u64::try_from(welcome.heartbeat_interval_seconds.max(1)).unwrap_or(10),
            ),
        ),
        other => anyhow::bail!("expected Welcome, got {other:?}"),
    };
    // Heartbeats as a real agent sends them: silent agents are disconnected.
    let beats = sender.clone();
    let heartbeats = tokio::spawn(async move {
        let first = tokio::time::Instant::now() + interval.mul_f64(phase.clamp(0.0, 1.0));
        let mut ticker = tokio::time::interval_at(first, interval);
        loop {
            ticker.tick().await;
            if beats.send(heartbeat(5.0)).await.is_err() {
                return;
            }
        }
    });
    let events = sender.clone();
    let jobs = tokio::spawn(async move {
        while let Ok(Some(message)) = inbound.message().await {
            let Some(pb::connect_response::Command::AssignJob(job)) = message.command else {
                continue;
            };
            observed.arrived(job.execution_id, Instant::now());
            let finished = [
                pb::job_event::Event::Started(pb::JobStarted {
                    workspace: "/bench".into(),
                }),
                pb::job_event::Event::Finished(pb::JobFinished {
                    status: pb::ExecutionStatus::Succeeded.into(),
                    reason: String::new(),
                }),
            ];
            for (index, event) in finished.into_iter().enumerate() {
                let event = pb::JobEvent {
                    execution_id: job.execution_id,
                    sequence: index as i64 + 1,
                    occurred_at: None,
                    event: Some(event),
                };
                let message = pb::ConnectRequest {
                    message: Some(pb::connect_request::Message::JobEvent(event)),
                };
                if events.send(message).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(SimAgent {
        agent_id,
        sender,
        tasks: [heartbeats, jobs],
    })
}
