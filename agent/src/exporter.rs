//! The agent's Prometheus metrics, served on `AgentConfiguration:MetricsListen` when set.

use std::sync::Arc;

use cygnet_metrics::Render;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::jobs::Jobs;

/// Counters the session updates; gauges read from the jobs when scraped.
pub struct AgentMetrics {
    registry: Registry,
    connected: Gauge,
    reconnects: Counter,
    jobs_received: Counter,
    log_bytes_sent: Counter,
    monitor_reports: Counter,
    jobs_running: Gauge,
    outbox_bytes: Gauge,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cygnet_agent");
        let connected = Gauge::default();
        registry.register(
            "connected",
            "1 while the stream to the server is open",
            connected.clone(),
        );
        let reconnects = Counter::default();
        registry.register(
            "reconnects",
            "Times the agent connected again after losing (or failing to open) its stream",
            reconnects.clone(),
        );
        let jobs_received = Counter::default();
        registry.register(
            "jobs_received",
            "Jobs the server assigned to this agent",
            jobs_received.clone(),
        );
        let log_bytes_sent = Counter::default();
        registry.register(
            "log_bytes_sent",
            "Bytes of job output sent to the server (resent output counts again)",
            log_bytes_sent.clone(),
        );
        let monitor_reports = Counter::default();
        registry.register(
            "monitor_reports",
            "Service monitor check results sent to the server",
            monitor_reports.clone(),
        );
        let jobs_running = Gauge::default();
        registry.register("jobs_running", "Jobs running now", jobs_running.clone());
        let outbox_bytes = Gauge::default();
        registry.register(
            "outbox_bytes",
            "Job events held in memory until the server acknowledges them",
            outbox_bytes.clone(),
        );
        Self {
            registry,
            connected,
            reconnects,
            jobs_received,
            log_bytes_sent,
            monitor_reports,
            jobs_running,
            outbox_bytes,
        }
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.set(i64::from(connected));
    }

    pub fn reconnect(&self) {
        self.reconnects.inc();
    }

    pub fn job_received(&self) {
        self.jobs_received.inc();
    }

    pub fn log_sent(&self, bytes: usize) {
        self.log_bytes_sent
            .inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    pub fn monitor_report_sent(&self) {
        self.monitor_reports.inc();
    }

    /// What the metrics endpoint serves.
    pub fn render(self: &Arc<Self>, jobs: Arc<Jobs>) -> Render {
        let metrics = self.clone();
        Arc::new(move || {
            let metrics = metrics.clone();
            let jobs = jobs.clone();
            Box::pin(async move {
                metrics.jobs_running.set(i64::from(jobs.running_count()));
                metrics
                    .outbox_bytes
                    .set(i64::try_from(jobs.outbox().memory_bytes()).unwrap_or(i64::MAX));
                cygnet_metrics::encode(&metrics.registry)
            })
        })
    }
}
