//! Assembling and running the server: database, bootstrap, gRPC services, graceful shutdown.

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use cygnet_proto::v1::{
    agent_service_server::AgentServiceServer, customer_service_server::CustomerServiceServer,
    monitor_service_server::MonitorServiceServer, pipeline_service_server::PipelineServiceServer,
    release_service_server::ReleaseServiceServer, user_service_server::UserServiceServer,
    variable_service_server::VariableServiceServer,
};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use tower_layer::Stack;

use crate::activity_feed::ActivityFeed;
use crate::agents::{AgentHub, AgentSessions, spawn_liveness_task};
use crate::artifacts::ArtifactStore;
use crate::audit::AuditLayer;
use crate::auth::{SystemActor, system_scope};
use crate::bootstrap::{Bootstrap, bootstrap_admin};
use crate::config::ServerConfig;
use crate::database_gate::DatabaseGateLayer;
use crate::dispatch::Dispatcher;
use crate::grpc::{
    AgentApi, ApiContext, CustomerApi, MonitorApi, PipelineApi, ReleaseApi, UserApi, VariableApi,
};
use crate::metrics::{MetricsLayer, ServerMetrics};
use crate::monitors::MonitorScheduler;
use crate::rate_limit::{RateLimitLayer, RateLimiter};
use crate::run_to_completion::RunToCompletionLayer;
use crate::secrets::SecretBox;
use crate::service::Operations;
use crate::store::Store;
use crate::store::{Notifier, spawn_listener};
use crate::tls;
use crate::web::{Web, WebInner};

/// A server whose database is migrated and bootstrapped, ready to serve.
pub struct App {
    config: ServerConfig,
    store: Store,
    /// Bound at start when `metrics_listen` is set, so a bad address fails start-up.
    metrics_listener: Option<TcpListener>,
    /// Bound at start when `web_listen` is set.
    web_listener: Option<TcpListener>,
    /// Seals and opens secret variable values.
    secrets: Arc<SecretBox>,
    /// Where artifact content is stored.
    artifacts: ArtifactStore,
}

impl App {
    /// Prepares the data directory, connects to the database, applies pending migrations and
    /// creates the first platform administrator on an empty database.
    pub async fn start(config: ServerConfig) -> anyhow::Result<App> {
        tls::install_crypto_provider();
        create_data_dir(&config.data_dir)?;
        let store = Store::connect(&config.database)
            .await
            .map_err(|error| anyhow::anyhow!("cannot open database: {error}"))?
            .with_quota_defaults(config.quotas.clone());
        store
            .migrate_up()
            .await
            .map_err(|error| anyhow::anyhow!("cannot apply migrations: {error}"))?;
        let startup = store.system(&system_scope(SystemActor::Startup));
        match bootstrap_admin(
            &startup,
            &config.data_dir,
            config.bootstrap_token.as_deref(),
        )
        .await?
        {
            Bootstrap::AlreadyDone => {}
            Bootstrap::CreatedWithConfiguredToken => {
                tracing::info!(
                    "created platform administrator 'admin' with CYGNET_BOOTSTRAP_TOKEN"
                );
            }
            Bootstrap::CreatedWithTokenFile(path) => tracing::info!(
                token_file = %path.display(),
                "created platform administrator 'admin'; its bearer token is in the token file"
            ),
        }
        let secrets = SecretBox::load(
            config.secret_key.map(|key| key.0),
            config.secret_key_previous.map(|key| key.0),
            &config.data_dir,
        )
        .map_err(|error| anyhow::anyhow!("secret key: {error}"))?;
        let resealed = startup
            .reseal_secrets(&secrets)
            .await
            .map_err(|error| anyhow::anyhow!("re-encrypting secrets: {error}"))?
            + startup
                .reseal_webhook_secrets(&secrets)
                .await
                .map_err(|error| anyhow::anyhow!("re-encrypting webhook secrets: {error}"))?;
        if resealed > 0 {
            tracing::info!(
                resealed,
                key_id = secrets.key_id(),
                "re-encrypted secret variables and webhook secrets with the current key"
            );
        }
        let artifacts = ArtifactStore::open_configured(&config.artifacts, &config.data_dir)?;
        let metrics_listener = match config.metrics_listen {
            Some(address) => Some(TcpListener::bind(address).await.map_err(|error| {
                anyhow::anyhow!("metrics_listen (CYGNET_METRICS_LISTEN) {address}: {error}")
            })?),
            None => None,
        };
        let web_listener = match config.web_listen {
            Some(address) => Some(TcpListener::bind(address).await.map_err(|error| {
                anyhow::anyhow!("web_listen (CYGNET_WEB_LISTEN) {address}: {error}")
            })?),
            None => None,
        };
        Ok(App {
            config,
            store,
            metrics_listener,
            web_listener,
            secrets: Arc::new(secrets),
            artifacts,
        })
    }

    /// Where the metrics endpoint listens, when it is on.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Where the web dashboard listens, when it is on.
    pub fn web_address(&self) -> Option<std::net::SocketAddr> {
        self.web_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// The database handle, for tests and tools that run beside the server.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves gRPC on `listener` until `shutdown` completes, then stops accepting, gives open
    /// requests and streams `shutdown_grace_seconds` to finish, and closes the database.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let address = listener.local_addr()?;
        let require_client_certificates = self
            .config
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_ca.is_some());
        let metrics = Arc::new(ServerMetrics::new());
        let context = ApiContext::new(
            self.store.clone(),
            self.config.agents,
            require_client_certificates,
            metrics.clone(),
        );
        let hub = Arc::new(AgentHub::new());
        let notifier = Notifier::start(&self.store);
        let dispatch_store = self.store.system(&system_scope(SystemActor::Dispatcher));
        let operations = Operations::new(
            self.store.clone(),
            dispatch_store.clone(),
            hub.clone(),
            notifier,
        );
        let dispatcher = Dispatcher::new(
            dispatch_store,
            hub.clone(),
            operations.clone(),
            self.config.agents,
            metrics.clone(),
            self.secrets.clone(),
        );
        let artifacts = self.artifacts.clone();
        // Request handlers and agent stream readers: shutdown waits for them before closing the
        // database.
        let tasks = tokio_util::task::TaskTracker::new();
        let background_stopped = tokio_util::sync::CancellationToken::new();
        // Background tasks stop however this function returns, not only on the shutdown signal.
        let _stop_background_on_return = background_stopped.clone().drop_guard();
        let liveness = spawn_liveness_task(
            hub.clone(),
            self.store.system(&system_scope(SystemActor::AgentLiveness)),
            self.config.agents,
            background_stopped.clone(),
        );
        let dispatch = dispatcher.spawn(background_stopped.clone());
        let monitors = MonitorScheduler::new(
            self.store.system(&system_scope(SystemActor::Monitors)),
            hub.clone(),
            self.config.agents,
        );
        let monitor_task = monitors.spawn(background_stopped.clone());
        let feed = ActivityFeed::new();
        let feed_task = feed.spawn(
            self.store.system(&system_scope(SystemActor::ActivityFeed)),
            background_stopped.clone(),
        );
        let metrics_task = self.metrics_listener.map(|listener| {
            if let Ok(address) = listener.local_addr() {
                tracing::info!(%address, "metrics at http://{address}/metrics");
            }
            cygnet_metrics::serve(
                listener,
                metrics.render(
                    hub.clone(),
                    self.store.system(&system_scope(SystemActor::Observability)),
                ),
                background_stopped.clone().cancelled_owned(),
            )
        });
        let listener_task =
            spawn_listener(&self.store, operations.clone(), background_stopped.clone());
        let housekeeping = crate::retention::spawn_housekeeping(
            self.store.system(&system_scope(SystemActor::Housekeeping)),
            artifacts.clone(),
            self.config.retention,
            background_stopped.clone(),
        );
        let probe = self.store.spawn_health_probe(background_stopped.clone());
        let scheduler = crate::scheduler::Scheduler::new(&self.store)
            .waking(operations.clone())
            .spawn(background_stopped.clone());
        let folding = crate::rollups::spawn_folding(
            self.store.system(&system_scope(SystemActor::Housekeeping)),
            background_stopped.clone(),
        );

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<CustomerServiceServer<CustomerApi>>()
            .await;
        health_reporter
            .set_serving::<UserServiceServer<UserApi>>()
            .await;
        health_reporter
            .set_serving::<AgentServiceServer<AgentApi>>()
            .await;
        health_reporter
            .set_serving::<PipelineServiceServer<PipelineApi>>()
            .await;
        health_reporter
            .set_serving::<ReleaseServiceServer<ReleaseApi>>()
            .await;
        health_reporter
            .set_serving::<MonitorServiceServer<MonitorApi>>()
            .await;
        health_reporter
            .set_serving::<VariableServiceServer<VariableApi>>()
            .await;
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(cygnet_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(cygnet_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;

        let mut builder = Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            // Handlers run to completion as tasks, each write leaving an audit entry.
            .layer(Stack::new(
                Stack::new(
                    Stack::new(
                        Stack::new(
                            AuditLayer::new(self.store.clone()),
                            RunToCompletionLayer::new(tasks.clone()),
                        ),
                        DatabaseGateLayer::new(self.store.health().clone()),
                    ),
                    RateLimitLayer::new(RateLimiter::new(self.config.rate_limits)),
                ),
                MetricsLayer::new(metrics.clone()),
            ))
            .trace_fn(move |request| {
                tracing::info_span!("grpc", server = %address, method = %request.uri().path())
            });
        if let Some(files) = &self.config.tls {
            builder = builder.tls_config(tls::server_tls_config(files)?)?;
        }
        let customer_api = CustomerApi::new(context.clone(), feed);
        let user_api = UserApi::new(context.clone());
        let release_api = ReleaseApi::new(context.clone(), operations.clone());
        let pipeline_api = PipelineApi::new(
            context.clone(),
            operations.clone(),
            artifacts.clone(),
            self.secrets.clone(),
        );
        let monitor_api = MonitorApi::new(context.clone(), monitors.clone());
        let variable_api = VariableApi::new(context.clone(), self.secrets.clone());
        let sessions = AgentSessions::new(
            self.store.clone(),
            hub.clone(),
            operations.clone(),
            monitors,
            metrics.clone(),
            self.config.agents,
            tasks.clone(),
        );
        let agent_api = AgentApi::new(
            context.clone(),
            hub,
            operations.clone(),
            artifacts,
            sessions,
        );
        let web_tls = match &self.config.tls {
            Some(files) => Some(crate::web::tls_acceptor(files)?),
            None => None,
        };
        let web_task = self.web_listener.map(|listener| {
            let scheme = if web_tls.is_some() { "https" } else { "http" };
            if let Ok(address) = listener.local_addr() {
                tracing::info!(%address, "web dashboard at {scheme}://{address}/");
            }
            let web = Web::new(WebInner {
                customers: customer_api.clone(),
                users: user_api.clone(),
                agents: agent_api.clone(),
                pipelines: pipeline_api.clone(),
                releases: release_api.clone(),
                monitors: monitor_api.clone(),
                variables: variable_api.clone(),
                authenticator: context.authenticator.clone(),
                store: self.store.clone(),
                tasks: tasks.clone(),
                secure_cookies: web_tls.is_some(),
                stopping: background_stopped.clone(),
                grpc_port: address.port(),
                grpc_tls: self.config.tls.is_some(),
                hooks: crate::webhooks::Intake::new(
                    &self.store,
                    self.secrets.clone(),
                    Some(operations.clone()),
                    metrics.clone(),
                    self.config.rate_limits.webhook_deliveries_per_minute,
                ),
            });
            tokio::spawn(crate::web::serve(
                listener,
                web_tls,
                web.router(),
                background_stopped.clone(),
            ))
        });
        let router = builder
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(CustomerServiceServer::new(customer_api))
            .add_service(UserServiceServer::new(user_api))
            .add_service(ReleaseServiceServer::new(release_api))
            .add_service(PipelineServiceServer::new(pipeline_api))
            .add_service(MonitorServiceServer::new(monitor_api))
            .add_service(VariableServiceServer::new(variable_api))
            .add_service(AgentServiceServer::new(agent_api));

        let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
        let grace = Duration::from_secs(self.config.shutdown_grace_seconds);
        let reporter = health_reporter.clone();
        let stop_background = background_stopped.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, draining open requests");
            reporter
                .set_not_serving::<CustomerServiceServer<CustomerApi>>()
                .await;
            reporter
                .set_not_serving::<UserServiceServer<UserApi>>()
                .await;
            reporter
                .set_not_serving::<AgentServiceServer<AgentApi>>()
                .await;
            reporter
                .set_not_serving::<PipelineServiceServer<PipelineApi>>()
                .await;
            reporter
                .set_not_serving::<ReleaseServiceServer<ReleaseApi>>()
                .await;
            reporter
                .set_not_serving::<MonitorServiceServer<MonitorApi>>()
                .await;
            reporter
                .set_not_serving::<VariableServiceServer<VariableApi>>()
                .await;
            // Agent streams never end by themselves: end them now so draining can finish.
            stop_background.cancel();
            let _ = stop_accepting.send(());
        };
        tracing::info!(
            %address,
            tls = self.config.tls.is_some(),
            "cygnet-server listening"
        );
        // Accepted connections get TCP_NODELAY here: the builder's own setting applies only to
        // listeners tonic binds itself, and without it small frames (job assignments, acks)
        // wait ~40 ms for delayed ACKs.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let serving = router.serve_with_incoming_shutdown(incoming, signal);
        tokio::pin!(serving);
        let result = tokio::select! {
            result = &mut serving => result,
            _ = async {
                let _ = stopped.await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_seconds = grace.as_secs(), "requests still open after the grace period; closing them");
                Ok(())
            }
        };
        if let Err(error) = liveness.await {
            tracing::warn!(%error, "agent liveness task failed");
        }
        // Handlers of requests whose clients left, and stream readers recording their agents
        // offline, finish before the database closes.
        tasks.close();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!("request tasks still running after the grace period");
        }
        if let Err(error) = feed_task.await {
            tracing::warn!(%error, "activity feed task failed");
        }
        if let Err(error) = monitor_task.await {
            tracing::warn!(%error, "monitor task failed");
        }
        if let Err(error) = dispatch.await {
            tracing::warn!(%error, "dispatch task failed");
        }
        if let Err(error) = scheduler.await {
            tracing::warn!(%error, "the scheduler task failed");
        }
        if let Err(error) = folding.await {
            tracing::warn!(%error, "the task folding execution counts failed");
        }
        if let Err(error) = housekeeping.await {
            tracing::warn!(%error, "housekeeping task failed");
        }
        if let Some(listener_task) = listener_task {
            let _ = listener_task.await;
        }
        if let Some(probe) = probe {
            let _ = probe.await;
        }
        if let Some(metrics_task) = metrics_task {
            let _ = metrics_task.await;
        }
        if let Some(web_task) = web_task {
            let _ = web_task.await;
        }
        self.store.close().await?;
        tracing::info!("stopped");
        result.map_err(Into::into)
    }
}

/// Creates the data directory (mode 0700: it holds the database and the admin token).
fn create_data_dir(path: &std::path::Path) -> anyhow::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path).map_err(|error| {
        anyhow::anyhow!("cannot create data directory {}: {error}", path.display())
    })
}
