//! A real server on 127.0.0.1:0 with a fresh database: start, stop, restart, replicas.

use std::net::SocketAddr;
use std::path::PathBuf;

use cygnet_server::App;
use cygnet_server::config::{AgentSettings, LogFormat, ServerConfig};
use cygnet_server::store::DatabaseOptions;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::ADMIN_TOKEN;
use crate::backend::{Backend, PostgresDatabase};

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
    /// The platform's quota limits.
    pub quotas: cygnet_server::domain::QuotaLimits,
    /// Requests per minute per caller.
    pub rate_limits: cygnet_server::config::RateLimits,
    /// The housekeeping task's round.
    pub retention: cygnet_server::config::RetentionSettings,
    /// Where artifacts are stored.
    pub artifacts: cygnet_server::artifacts::ArtifactStorage,
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
            quotas: options.quotas.clone(),
            rate_limits: options.rate_limits,
            retention: options.retention,
            artifacts: options.artifacts.clone(),
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
    /// directory, and the first one's secret key (as replicas are configured with one
    /// `secret_key`). Meaningful on PostgreSQL; SQLite is single-replica.
    pub async fn start_replica(&self) -> TestServer {
        let (temp_dir, config) = self.sibling_config();
        let key = self.data_dir.join(cygnet_server::secrets::KEY_FILE);
        if key.exists() {
            std::fs::create_dir_all(&config.data_dir).expect("replica data directory");
            std::fs::copy(&key, config.data_dir.join(cygnet_server::secrets::KEY_FILE))
                .expect("share the secret key");
        }
        self.launch_sibling(temp_dir, config).await
    }

    /// The server's configuration (for tools that run beside it, such as a backup).
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Starts a new server (SQLite, its own data directory and address, this server's other
    /// settings) from a backup archive, restored with `cygnet_server::backup::restore`.
    pub async fn start_from_backup(&self, archive: &std::path::Path) -> TestServer {
        let (temp_dir, mut config) = self.sibling_config();
        config.database.url = format!(
            "sqlite://{}?mode=rwc",
            config.data_dir.join("cygnet.db").display()
        );
        cygnet_server::backup::restore(&config, archive)
            .await
            .expect("restore the backup");
        self.launch_sibling(temp_dir, config).await
    }

    /// This server's configuration with a free address and a data directory of its own (in the
    /// returned temporary directory).
    pub(crate) fn sibling_config(&self) -> (tempfile::TempDir, ServerConfig) {
        let temp_dir = tempfile::tempdir().expect("temp dir");
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().expect("address");
        config.data_dir = temp_dir.path().join("data");
        (temp_dir, config)
    }

    /// Starts a server with `config` beside this one (same client TLS; no database of its own
    /// to drop).
    async fn launch_sibling(
        &self,
        temp_dir: tempfile::TempDir,
        config: ServerConfig,
    ) -> TestServer {
        let mut sibling = TestServer {
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
        sibling.launch().await;
        sibling
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
