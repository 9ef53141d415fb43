//! The server's Prometheus metrics (served when `metrics_listen` is set).
//!
//! Events are counted where they happen (RPCs by a tower layer, heartbeats by the stream reader,
//! dispatches by the dispatcher); figures that are a state rather than an event (connected agents,
//! executions by status, queue depth and age, database pool) are read when scraped, so they are
//! exact on every replica.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use cygnet_metrics::{Render, latency_buckets};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::codegen::http;
use tower_layer::Layer;
use tower_service::Service;

use crate::agents::AgentHub;
use crate::audit::code_name;
use crate::store::SystemStore;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    pub state: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// Every metric of the server.
pub struct ServerMetrics {
    registry: Registry,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: Family<MethodLabel, Histogram, fn() -> Histogram>,
    heartbeats: Counter,
    monitor_reports: Counter,
    queue_wait: Histogram,
    dispatch: Histogram,
    agents_connected: Gauge,
    executions: Family<StatusLabel, Gauge>,
    queue_depth: Gauge,
    queue_oldest: Gauge<f64, std::sync::atomic::AtomicU64>,
    pool_connections: Family<PoolLabel, Gauge>,
    webhook_deliveries: Family<OutcomeLabel, Counter>,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cygnet");
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "rpc_requests",
            "gRPC requests answered, by method and status code",
            rpc_requests.clone(),
        );
        let rpc_duration =
            Family::<MethodLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "rpc_duration_seconds",
            "Time to answer a gRPC request (to the response headers for streams), by method",
            rpc_duration.clone(),
        );
        let heartbeats = Counter::default();
        registry.register(
            "agent_heartbeats",
            "Heartbeats received from agents",
            heartbeats.clone(),
        );
        let monitor_reports = Counter::default();
        registry.register(
            "monitor_reports",
            "Service monitor check results received from agents",
            monitor_reports.clone(),
        );
        let queue_wait = latency_histogram();
        registry.register(
            "queue_wait_seconds",
            "Time executions waited from RunPipeline (or a release stage) until handed to an agent",
            queue_wait.clone(),
        );
        let dispatch = latency_histogram();
        registry.register(
            "dispatch_seconds",
            "Time to dispatch one execution: claim it in the database and send it on the agent's stream",
            dispatch.clone(),
        );
        let agents_connected = Gauge::default();
        registry.register(
            "agents_connected",
            "Agent streams open on this server",
            agents_connected.clone(),
        );
        let executions = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "executions",
            "Executions in the database, by status (all customers)",
            executions.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Executions queued, waiting for an agent",
            queue_depth.clone(),
        );
        let queue_oldest = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "queue_oldest_wait_seconds",
            "How long the oldest queued execution has waited",
            queue_oldest.clone(),
        );
        let pool_connections = Family::<PoolLabel, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database pool connections, by state (idle, in_use, max)",
            pool_connections.clone(),
        );
        let webhook_deliveries = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries received, by outcome (queued, duplicate, ignored, refused, invalid, rejected, rate_limited, too_large, timeout, error)",
            webhook_deliveries.clone(),
        );
        Self {
            webhook_deliveries,
            registry,
            rpc_requests,
            rpc_duration,
            heartbeats,
            monitor_reports,
            queue_wait,
            dispatch,
            agents_connected,
            executions,
            queue_depth,
            queue_oldest,
            pool_connections,
        }
    }

    pub fn heartbeat(&self) {
        self.heartbeats.inc();
    }

    /// A webhook delivery was answered with `outcome` (a fixed word, never the sender's text).
    pub fn webhook_delivery(&self, outcome: &'static str) {
        self.webhook_deliveries
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    pub fn monitor_report(&self) {
        self.monitor_reports.inc();
    }

    /// An execution was handed to an agent after waiting `waited`, the dispatch taking `took`.
    pub fn dispatched(&self, waited: Duration, took: Duration) {
        self.queue_wait.observe(waited.as_secs_f64());
        self.dispatch.observe(took.as_secs_f64());
    }

    fn rpc(&self, method: &str, code: i32, took: Duration) {
        self.rpc_requests
            .get_or_create(&RpcLabels {
                method: method.to_owned(),
                code: code_name(code).to_owned(),
            })
            .inc();
        self.rpc_duration
            .get_or_create(&MethodLabel {
                method: method.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Reads the scrape-time figures and encodes everything.
    async fn scrape(&self, hub: &AgentHub, store: &SystemStore) -> String {
        self.agents_connected
            .set(i64::try_from(hub.connected_count()).unwrap_or(i64::MAX));
        match store.execution_counts().await {
            Ok(counts) => {
                self.executions.clear();
                for (status, count) in counts.by_status {
                    self.executions
                        .get_or_create(&StatusLabel { status })
                        .set(count);
                }
                self.queue_depth.set(counts.queued);
                self.queue_oldest.set(
                    counts
                        .oldest_queued_age
                        .map_or(0.0, |age| age.as_secs_f64()),
                );
            }
            Err(error) => tracing::warn!(%error, "metrics: cannot count executions"),
        }
        let pool = store.pool_usage();
        for (state, value) in [
            ("idle", pool.idle),
            ("in_use", pool.in_use),
            ("max", pool.max),
        ] {
            self.pool_connections
                .get_or_create(&PoolLabel { state })
                .set(i64::from(value));
        }
        cygnet_metrics::encode(&self.registry)
    }

    /// What the metrics endpoint serves.
    pub fn render(self: &Arc<Self>, hub: Arc<AgentHub>, store: SystemStore) -> Render {
        let metrics = self.clone();
        Arc::new(move || {
            let (metrics, hub, store) = (metrics.clone(), hub.clone(), store.clone());
            Box::pin(async move { metrics.scrape(&hub, &store).await })
        })
    }
}

/// Counts and times every gRPC request (a tower layer; see [`ServerMetrics`]).
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Arc<ServerMetrics>,
}

impl MetricsLayer {
    pub fn new(metrics: Arc<ServerMetrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Measured {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`MetricsLayer`].
#[derive(Clone)]
pub struct Measured<S> {
    inner: S,
    metrics: Arc<ServerMetrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for Measured<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResponseBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let method = request.uri().path().trim_start_matches('/').to_owned();
        let started = Instant::now();
        let call = self.inner.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let response = call.await?;
            // Errors answered at once carry their status in the headers; successes carry it
            // in the trailers (OK unless a stream fails later).
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<i32>().ok())
                .unwrap_or(0);
            // Unknown paths would make a label per path a client invents.
            let method = if code == 12 {
                "unknown"
            } else {
                method.as_str()
            };
            metrics.rpc(method, code, started.elapsed());
            Ok(response)
        })
    }
}
