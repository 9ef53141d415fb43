//! The test harness shared by the integration tests: start a real server on 127.0.0.1:0 with a
//! fresh database (SQLite, or a PostgreSQL database of its own), make clients, create fixtures.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use cygnet_proto::v1 as pb;
use cygnet_proto::v1::agent_service_client::AgentServiceClient;
use cygnet_proto::v1::customer_service_client::CustomerServiceClient;
use cygnet_proto::v1::monitor_service_client::MonitorServiceClient;
use cygnet_proto::v1::pipeline_service_client::PipelineServiceClient;
use cygnet_proto::v1::release_service_client::ReleaseServiceClient;
use cygnet_proto::v1::user_service_client::UserServiceClient;
use cygnet_proto::v1::variable_service_client::VariableServiceClient;
use cygnet_server::App;
use cygnet_server::config::{AgentSettings, LogFormat, ServerConfig};
use cygnet_server::store::DatabaseOptions;
use sea_orm::{ConnectionTrait, Database};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

/// The token every test server's platform administrator has.
pub const ADMIN_TOKEN: &str = "test-bootstrap-token-0123456789";

/// Which database a test server uses.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// Admin URL of a PostgreSQL server; each test creates its own database there.
    Postgres(String),
}

impl Backend {
    /// PostgreSQL, when `CYGNET_TEST_DATABASE_URL` is set.
    pub fn postgres() -> Option<Backend> {
        std::env::var("CYGNET_TEST_DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .map(Backend::Postgres)
    }
}

/// Generates one test per backend for each async fn `name(backend: Backend)` listed.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    match $crate::Backend::postgres() {
                        Some(backend) => super::$name(backend).await,
                        None => eprintln!("CYGNET_TEST_DATABASE_URL is not set: PostgreSQL run skipped"),
                    }
                }
            )*
        }
    };
}

/// A database created for one test and dropped after it.
struct PostgresDatabase {
    admin_url: String,
    name: String,
}

static DATABASE_COUNTER: AtomicU32 = AtomicU32::new(0);

impl PostgresDatabase {
    async fn create(admin_url: &str) -> (PostgresDatabase, String) {
        let name = format!(
            "cygnet_test_{}_{}_{}",
            std::process::id(),
            DATABASE_COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default()
        );
        let admin = Database::connect(admin_url)
            .await
            .expect("connect to PostgreSQL");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        admin.close().await.expect("close admin connection");
        let url = replace_database(admin_url, &name);
        (
            PostgresDatabase {
                admin_url: admin_url.to_owned(),
                name,
            },
            url,
        )
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a separate thread with its own runtime may block.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(admin) = Database::connect(&admin_url).await {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// `postgres://user@host:port/db?x` with the database replaced.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut result = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

/// Options for [`TestServer::start_with`].
#[derive(Default)]
pub struct TestOptions {
    /// Leave the bootstrap token unset, so the server generates one into its data directory.
    pub generated_admin_token: bool,
    /// Serve TLS with these files.
    pub tls: Option<cygnet_server::config::TlsFiles>,
    /// Heartbeat and metrics settings (tests that watch liveness use short intervals).
    pub agents: AgentSettings,
    /// How the harness's own clients reach a TLS server (`https://localhost:<port>`).
    pub client_tls: Option<ClientTlsConfig>,
    /// Serve Prometheus metrics on a port of its own (see `TestServer::metrics_address`).
    pub metrics: bool,
    /// Serve the web dashboard on a port of its own (see `TestServer::web_address`).
    pub web: bool,
}

/// A running server with its own database.
pub struct TestServer {
    pub address: SocketAddr,
    /// The Prometheus endpoint, with `TestOptions::metrics`.
    pub metrics_address: Option<SocketAddr>,
    /// The web dashboard, with `TestOptions::web`.
    pub web_address: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub database_url: String,
    config: ServerConfig,
    client_tls: Option<ClientTlsConfig>,
    channel: Option<Channel>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _temp_dir: tempfile::TempDir,
    _postgres: Option<PostgresDatabase>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, TestOptions::default()).await
    }

    pub async fn start_with(backend: Backend, options: TestOptions) -> TestServer {
        // `CYGNET_TEST_LOG=1` shows the server's log (filtered by RUST_LOG) when debugging a test.
        if std::env::var_os("CYGNET_TEST_LOG").is_some() {
            cygnet_server::telemetry::init(LogFormat::Plain);
        }
        let temp_dir = tempfile::tempdir().expect("temp dir");
        let data_dir = temp_dir.path().join("data");
        let (postgres, url) = match &backend {
            Backend::Sqlite => (
                None,
                format!("sqlite://{}?mode=rwc", data_dir.join("cygnet.db").display()),
            ),
            Backend::Postgres(admin_url) => {
                let (database, url) = PostgresDatabase::create(admin_url).await;
                (Some(database), url)
            }
        };
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: data_dir.clone(),
            database: DatabaseOptions {
                url: url.clone(),
                max_connections: 4,
            },
            bootstrap_token: (!options.generated_admin_token).then(|| ADMIN_TOKEN.to_owned()),
            log_format: LogFormat::Plain,
            tls: options.tls.clone(),
            shutdown_grace_seconds: 5,
            metrics_listen: options
                .metrics
                .then(|| "127.0.0.1:0".parse().expect("address")),
            web_listen: options.web.then(|| "127.0.0.1:0".parse().expect("address")),
            secret_key: None,
            secret_key_previous: None,
            agents: options.agents,
        };
        let mut server = TestServer {
            address: config.listen,
            metrics_address: None,
            web_address: None,
            data_dir,
            database_url: url,
            config,
            client_tls: options.client_tls,
            channel: None,
            shutdown: None,
            task: None,
            _temp_dir: temp_dir,
            _postgres: postgres,
        };
        server.launch().await;
        server
    }

    /// Binds (the same address again after a restart), starts the server and connects.
    async fn launch(&mut self) {
        let listener = TcpListener::bind(self.config.listen).await.expect("bind");
        self.address = listener.local_addr().expect("local address");
        // A restart must come back on the same port: agents are configured with it.
        self.config.listen = self.address;
        let app = App::start(self.config.clone())
            .await
            .expect("server starts");
        self.metrics_address = app.metrics_address();
        self.web_address = app.web_address();
        let (shutdown, stopped) = oneshot::channel::<()>();
        self.task = Some(tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        })));
        self.shutdown = Some(shutdown);
        self.channel = match (&self.config.tls, &self.client_tls) {
            (None, _) => Some(
                Endpoint::from_shared(format!("http://{}", self.address))
                    .expect("endpoint")
                    .connect()
                    .await
                    .expect("connect to test server"),
            ),
            (Some(_), Some(client_tls)) => Some(
                Endpoint::from_shared(format!("https://localhost:{}", self.address.port()))
                    .expect("endpoint")
                    .tls_config(client_tls.clone())
                    .expect("client TLS")
                    .connect()
                    .await
                    .expect("connect to test server over TLS"),
            ),
            (Some(_), None) => None,
        };
    }

    /// Stops the server gracefully and waits for it; the database is kept until drop.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    /// Starts a second server (a replica) on the same database, with its own address and data
    /// directory. Meaningful on PostgreSQL; SQLite is single-replica.
    pub async fn start_replica(&self) -> TestServer {
        let temp_dir = tempfile::tempdir().expect("temp dir");
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().expect("address");
        config.data_dir = temp_dir.path().join("data");
        let mut replica = TestServer {
            address: config.listen,
            metrics_address: None,
            web_address: None,
            data_dir: config.data_dir.clone(),
            database_url: config.database.url.clone(),
            config,
            client_tls: self.client_tls.clone(),
            channel: None,
            shutdown: None,
            task: None,
            _temp_dir: temp_dir,
            _postgres: None,
        };
        replica.launch().await;
        replica
    }

    /// Stops the server and starts it again on the same address, database and data directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Stops the server and checks whether it would start again with these secret keys,
    /// without starting it; `Err` carries the start-up error.
    pub async fn stop_and_try_secret_keys(
        &mut self,
        current: Option<cygnet_server::secrets::KeyBytes>,
        previous: Option<cygnet_server::secrets::KeyBytes>,
    ) -> Result<(), String> {
        self.stop().await;
        let mut config = self.config.clone();
        config.secret_key = current;
        config.secret_key_previous = previous;
        App::start(config)
            .await
            .map(drop)
            .map_err(|error| error.to_string())
    }

    /// Restarts the server with these secret keys.
    pub async fn restart_with_secret_keys(
        &mut self,
        current: Option<cygnet_server::secrets::KeyBytes>,
        previous: Option<cygnet_server::secrets::KeyBytes>,
    ) {
        self.stop().await;
        self.config.secret_key = current;
        self.config.secret_key_previous = previous;
        self.launch().await;
    }

    /// The harness's connection (plaintext, or TLS with `TestOptions::client_tls`).
    pub fn channel(&self) -> Channel {
        self.channel
            .clone()
            .expect("no harness connection: a TLS server needs TestOptions::client_tls")
    }

    pub fn customers(&self, token: &str) -> CustomerClient {
        CustomerServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn users(&self, token: &str) -> UserClient {
        UserServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn agents(&self, token: &str) -> AgentClient {
        AgentServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn pipelines(&self, token: &str) -> PipelineClient {
        PipelineServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn admin_pipelines(&self) -> PipelineClient {
        self.pipelines(ADMIN_TOKEN)
    }

    /// Creates a pipeline as the platform administrator.
    pub async fn create_pipeline(
        &self,
        customer_id: i64,
        name: &str,
        steps: Vec<pb::Step>,
        parameters: Vec<pb::Parameter>,
    ) -> pb::Pipeline {
        self.admin_pipelines()
            .create_pipeline(pb::CreatePipelineRequest {
                customer_id,
                name: name.into(),
                steps,
                parameters,
                ..Default::default()
            })
            .await
            .expect("create pipeline")
            .into_inner()
            .pipeline
            .expect("pipeline")
    }

    /// Runs a pipeline as the platform administrator.
    pub async fn run_pipeline(
        &self,
        customer_id: i64,
        pipeline_id: i64,
        parameters: &[(&str, &str)],
    ) -> pb::Execution {
        self.admin_pipelines()
            .run_pipeline(pb::RunPipelineRequest {
                customer_id,
                pipeline_id,
                parameters: parameters
                    .iter()
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect(),
                agent_id: 0,
            })
            .await
            .expect("run pipeline")
            .into_inner()
            .execution
            .expect("execution")
    }

    /// Follows an execution with WatchExecution until it ends; returns every update.
    pub async fn watch_to_end(
        &self,
        customer_id: i64,
        execution_id: i64,
        within: std::time::Duration,
    ) -> Vec<pb::watch_execution_response::Update> {
        let mut stream = self
            .admin_pipelines()
            .watch_execution(pb::WatchExecutionRequest {
                customer_id,
                execution_id,
                after_sequence: 0,
            })
            .await
            .expect("watch")
            .into_inner();
        let mut updates = Vec::new();
        let collect = async {
            while let Some(message) = stream.message().await.expect("watch stream") {
                if let Some(update) = message.update {
                    updates.push(update);
                }
            }
        };
        tokio::time::timeout(within, collect)
            .await
            .unwrap_or_else(|_| {
                panic!("execution {execution_id} did not finish within {within:?}")
            });
        updates
    }

    /// The execution with its steps.
    pub async fn execution(&self, customer_id: i64, execution_id: i64) -> pb::Execution {
        self.admin_pipelines()
            .get_execution(pb::GetExecutionRequest {
                customer_id,
                execution_id,
            })
            .await
            .expect("get execution")
            .into_inner()
            .execution
            .expect("execution")
    }

    /// Every log chunk of an execution, through GetExecutionLogs pages.
    pub async fn logs(&self, customer_id: i64, execution_id: i64) -> Vec<pb::LogChunk> {
        let mut chunks = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .admin_pipelines()
                .get_execution_logs(pb::GetExecutionLogsRequest {
                    customer_id,
                    execution_id,
                    page_size: 1000,
                    page_token: page_token.clone(),
                    ..Default::default()
                })
                .await
                .expect("logs")
                .into_inner();
            chunks.extend(page.chunks);
            if page.next_page_token.is_empty() {
                return chunks;
            }
            page_token = page.next_page_token;
        }
    }

    pub fn releases(&self, token: &str) -> ReleaseClient {
        ReleaseServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn admin_releases(&self) -> ReleaseClient {
        self.releases(ADMIN_TOKEN)
    }

    /// The customer's environments by name.
    pub async fn environments(
        &self,
        customer_id: i64,
    ) -> std::collections::HashMap<String, pb::Environment> {
        self.admin_releases()
            .list_environments(pb::ListEnvironmentsRequest {
                customer_id,
                ..Default::default()
            })
            .await
            .expect("environments")
            .into_inner()
            .environments
            .into_iter()
            .map(|environment| (environment.name.clone(), environment))
            .collect()
    }

    /// A release execution with its stages.
    pub async fn release_execution(
        &self,
        customer_id: i64,
        release_execution_id: i64,
    ) -> pb::ReleaseExecution {
        self.admin_releases()
            .get_release_execution(pb::GetReleaseExecutionRequest {
                customer_id,
                release_execution_id,
            })
            .await
            .expect("release execution")
            .into_inner()
            .release_execution
            .expect("release execution")
    }

    pub fn monitors(&self, token: &str) -> MonitorClient {
        MonitorServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn admin_monitors(&self) -> MonitorClient {
        self.monitors(ADMIN_TOKEN)
    }

    pub fn variables(&self, token: &str) -> VariableClient {
        VariableServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    /// Creates a monitor as the platform administrator.
    pub async fn create_monitor(&self, request: pb::CreateMonitorRequest) -> pb::Monitor {
        self.admin_monitors()
            .create_monitor(request)
            .await
            .expect("create monitor")
            .into_inner()
            .monitor
            .expect("monitor")
    }

    /// The monitor as the platform administrator sees it.
    pub async fn monitor(&self, customer_id: i64, monitor_id: i64) -> pb::Monitor {
        self.admin_monitors()
            .get_monitor(pb::GetMonitorRequest {
                customer_id,
                monitor_id,
            })
            .await
            .expect("get monitor")
            .into_inner()
            .monitor
            .expect("monitor")
    }

    /// Waits until the monitor's status is `status` (polling; panics after `within`).
    pub async fn wait_for_monitor_status(
        &self,
        customer_id: i64,
        monitor_id: i64,
        status: pb::MonitorStatus,
        within: std::time::Duration,
    ) -> pb::Monitor {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let monitor = self.monitor(customer_id, monitor_id).await;
            if monitor.status == status as i32 {
                return monitor;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "monitor {monitor_id} not {status:?} within {within:?}: {monitor:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// The customer's activity, newest first (one page of up to 1000 events).
    pub async fn activity(&self, customer_id: i64) -> Vec<pb::ActivityEvent> {
        self.admin_customers()
            .list_activity(pb::ListActivityRequest {
                customer_id,
                page_size: 1000,
                ..Default::default()
            })
            .await
            .expect("list activity")
            .into_inner()
            .events
    }

    pub fn admin_agents(&self) -> AgentClient {
        self.agents(ADMIN_TOKEN)
    }

    /// Creates a registration token for the customer as the platform administrator.
    pub async fn create_registration_token(&self, customer_id: i64) -> String {
        self.admin_agents()
            .create_registration_token(pb::CreateRegistrationTokenRequest {
                customer_id,
                description: "test".into(),
                ..Default::default()
            })
            .await
            .expect("create registration token")
            .into_inner()
            .secret
    }

    /// Registers an agent the way `cygnet-agent` does.
    pub async fn register_agent(
        &self,
        customer_id: i64,
        uuid: &str,
        registration_token: &str,
    ) -> Result<pb::RegisterAgentResponse, Status> {
        AgentServiceClient::new(self.channel())
            .register_agent(pb::RegisterAgentRequest {
                customer_id,
                uuid: uuid.into(),
                name: uuid.into(),
                labels: vec!["linux".into()],
                hostname: "test-host".into(),
                os: "linux".into(),
                arch: "x86_64".into(),
                version: "test".into(),
                max_concurrent_jobs: 2,
                registration_token: registration_token.into(),
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Opens an agent stream with a credential, speaking the real protocol.
    pub async fn connect_agent(
        &self,
        uuid: &str,
        credential: &str,
    ) -> Result<ProtocolAgent, Status> {
        ProtocolAgent::connect(self.channel(), uuid, credential).await
    }

    pub fn admin_customers(&self) -> CustomerClient {
        self.customers(ADMIN_TOKEN)
    }

    pub fn admin_users(&self) -> UserClient {
        self.users(ADMIN_TOKEN)
    }

    /// Creates a customer as the platform administrator.
    pub async fn create_customer(&self, name: &str) -> pb::Customer {
        self.admin_customers()
            .create_customer(pb::CreateCustomerRequest {
                name: name.into(),
                display_name: format!("{name} display"),
                ..Default::default()
            })
            .await
            .expect("create customer")
            .into_inner()
            .customer
            .expect("customer")
    }

    /// Creates a user with a token, as the platform administrator.
    pub async fn create_user(&self, username: &str) -> TestUser {
        let user = self
            .admin_users()
            .create_user(pb::CreateUserRequest {
                username: username.into(),
                email: format!("{username}@example.com"),
                full_name: format!("{username} full name"),
                is_superuser: false,
            })
            .await
            .expect("create user")
            .into_inner()
            .user
            .expect("user");
        let token = self
            .admin_users()
            .create_api_token(pb::CreateApiTokenRequest {
                name: "test".into(),
                user_id: user.id,
                expires_at: None,
            })
            .await
            .expect("create token")
            .into_inner();
        TestUser {
            id: user.id,
            username: user.username,
            token: token.secret,
            token_id: token.token.expect("token").id,
        }
    }

    /// Adds a user to a customer as the platform administrator.
    pub async fn add_member(&self, customer_id: i64, user_id: i64, role: pb::Role) -> pb::Member {
        self.admin_customers()
            .add_member(pb::AddMemberRequest {
                customer_id,
                user_id,
                role: role.into(),
            })
            .await
            .expect("add member")
            .into_inner()
            .member
            .expect("member")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A user created for a test, with a live token.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub username: String,
    pub token: String,
    pub token_id: i64,
}

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: &str) -> Self {
        Bearer(format!("Bearer {token}").parse().ok())
    }

    /// No authorization metadata at all.
    pub fn none() -> Self {
        Bearer(None)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type MonitorClient = MonitorServiceClient<InterceptedService<Channel, Bearer>>;
pub type VariableClient = VariableServiceClient<InterceptedService<Channel, Bearer>>;
pub type ReleaseClient = ReleaseServiceClient<InterceptedService<Channel, Bearer>>;
pub type PipelineClient = PipelineServiceClient<InterceptedService<Channel, Bearer>>;
pub type AgentClient = AgentServiceClient<InterceptedService<Channel, Bearer>>;
pub type CustomerClient = CustomerServiceClient<InterceptedService<Channel, Bearer>>;
pub type UserClient = UserServiceClient<InterceptedService<Channel, Bearer>>;

/// Asserts a call failed with `code` and a message containing `fragment`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, fragment: &str) {
    match result {
        Ok(value) => panic!("expected {code:?} containing {fragment:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "status {status:?}");
            assert!(
                status.message().contains(fragment),
                "message {:?} should contain {fragment:?}",
                status.message()
            );
        }
    }
}

/// Asserts `rpc` failed with INVALID_ARGUMENT and a message that starts with the field's name.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(rpc: &str, result: Result<T, Status>, field: &str) {
    match result {
        Ok(value) => panic!("{rpc}: expected INVALID_ARGUMENT naming {field}, got {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), Code::InvalidArgument, "{rpc}: {status:?}");
            assert!(
                status.message().starts_with(field),
                "{rpc}: message {:?} should name {field}",
                status.message()
            );
        }
    }
}

/// An agent speaking the real stream protocol from inside a test.
pub struct ProtocolAgent {
    pub welcome: pb::Welcome,
    pub sender: mpsc::Sender<pb::ConnectRequest>,
    pub inbound: tonic::Streaming<pb::ConnectResponse>,
}

impl std::fmt::Debug for ProtocolAgent {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ProtocolAgent")
            .field("welcome", &self.welcome)
            .finish_non_exhaustive()
    }
}

impl ProtocolAgent {
    pub async fn connect(
        channel: Channel,
        uuid: &str,
        credential: &str,
    ) -> Result<ProtocolAgent, Status> {
        let (sender, outgoing) = mpsc::channel(16);
        let mut request = Request::new(ReceiverStream::new(outgoing));
        if let Ok(value) = format!("Bearer {credential}").parse() {
            request.metadata_mut().insert("authorization", value);
        }
        if let Ok(value) = uuid.parse() {
            request.metadata_mut().insert("x-cygnet-agent-uuid", value);
        }
        let mut inbound = AgentServiceClient::new(channel)
            .connect(request)
            .await?
            .into_inner();
        match inbound.message().await? {
            Some(pb::ConnectResponse {
                command: Some(pb::connect_response::Command::Welcome(welcome)),
            }) => Ok(ProtocolAgent {
                welcome,
                sender,
                inbound,
            }),
            other => panic!("expected Welcome first, got {other:?}"),
        }
    }

    /// Sends one heartbeat.
    pub async fn heartbeat(&self, heartbeat: pb::Heartbeat) {
        self.sender
            .send(pb::ConnectRequest {
                message: Some(pb::connect_request::Message::Heartbeat(heartbeat)),
            })
            .await
            .expect("stream open");
    }

    /// Runs every job it is given at once, successfully, and records the execution ids it got
    /// (a repeated assignment would show up twice).
    pub fn work_instantly(
        self,
    ) -> (
        std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
        tokio::task::JoinHandle<()>,
    ) {
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = received.clone();
        let ProtocolAgent {
            sender,
            mut inbound,
            ..
        } = self;
        let task = tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                let Some(pb::connect_response::Command::AssignJob(job)) = message.command else {
                    continue;
                };
                record.lock().expect("record").push(job.execution_id);
                let events = [
                    pb::job_event::Event::Started(pb::JobStarted {
                        workspace: "/tmp/instant".into(),
                    }),
                    pb::job_event::Event::Finished(pb::JobFinished {
                        status: pb::ExecutionStatus::Succeeded.into(),
                        reason: String::new(),
                    }),
                ];
                for (index, event) in events.into_iter().enumerate() {
                    let sent = sender
                        .send(pb::ConnectRequest {
                            message: Some(pb::connect_request::Message::JobEvent(pb::JobEvent {
                                execution_id: job.execution_id,
                                sequence: index as i64 + 1,
                                occurred_at: None,
                                event: Some(event),
                            })),
                        })
                        .await;
                    if sent.is_err() {
                        return;
                    }
                }
            }
        });
        (received, task)
    }

    /// The status the server ended the stream with (`None`: ended without error).
    pub async fn closed_with(mut self) -> Option<Status> {
        loop {
            match self.inbound.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    }
}

/// A bash step.
pub fn step(name: &str, command: &str) -> pb::Step {
    pb::Step {
        name: name.into(),
        command: command.into(),
        ..Default::default()
    }
}

/// The text of every log update, in order.
pub fn log_text(updates: &[pb::watch_execution_response::Update]) -> String {
    updates
        .iter()
        .filter_map(|update| match update {
            pb::watch_execution_response::Update::Log(chunk) => Some(chunk.text.as_str()),
            _ => None,
        })
        .collect()
}

/// The final execution of a watch.
pub fn final_execution(updates: &[pb::watch_execution_response::Update]) -> pb::Execution {
    updates
        .iter()
        .rev()
        .find_map(|update| match update {
            pb::watch_execution_response::Update::Execution(execution) => Some(execution.clone()),
            _ => None,
        })
        .expect("an execution update")
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

/// Polls `check` until it holds or `within` passes (then panics naming `what`). For conditions
/// that become true on the server's own schedule (heartbeat intervals), which a test can only
/// observe.
pub async fn eventually<F, Fut>(what: &str, within: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
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

#[cfg(test)]
#[test]
fn database_names_are_replaced() {
    assert_eq!(
        replace_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        replace_database("postgres://postgres@localhost/test?sslmode=disable", "x"),
        "postgres://postgres@localhost/x?sslmode=disable"
    );
    assert_eq!(
        replace_database("postgres://localhost", "x"),
        "postgres://localhost/x"
    );
}
