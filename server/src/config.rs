//! Server configuration: defaults → `--config FILE` (TOML) → `CYGNET_*` environment → CLI flags,
//! validated once into [`ServerConfig`]. A bad value stops start-up with one line naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::{Quota, QuotaLimits};
pub use crate::retention::RetentionSettings;
use crate::store::DatabaseOptions;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Certificate files for serving TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
    /// PEM CA that client certificates must chain to (mTLS for agents); optional.
    pub client_ca: Option<PathBuf>,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database: DatabaseOptions,
    /// Used as the first platform administrator's token on an empty database.
    pub bootstrap_token: Option<String>,
    pub log_format: LogFormat,
    pub tls: Option<TlsFiles>,
    /// How long shutdown waits for open streams and in-flight requests.
    pub shutdown_grace_seconds: u64,
    /// Where Prometheus metrics are served (`GET /metrics`); off when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// The key secret variables are encrypted with; `<data_dir>/secret.key` when unset.
    pub secret_key: Option<crate::secrets::KeyBytes>,
    /// The key before a rotation: values sealed with it still open, and are re-sealed with
    /// `secret_key` at start-up.
    pub secret_key_previous: Option<crate::secrets::KeyBytes>,
    /// Where the web dashboard is served (HTTP, or HTTPS with the same certificate when `tls`
    /// is set); off when unset.
    pub web_listen: Option<SocketAddr>,
    /// Agent heartbeats, liveness and metrics history.
    pub agents: AgentSettings,
    /// The platform's quota limits; platform administrators override them per customer.
    pub quotas: QuotaLimits,
    /// Requests each caller may make.
    pub rate_limits: RateLimits,
    /// The housekeeping task: retention and usage readings.
    pub retention: RetentionSettings,
    /// Where artifacts are stored (`[artifacts]`).
    pub artifacts: crate::artifacts::ArtifactStorage,
}

/// How many requests a caller may make per minute, on one server (a burst of a tenth of that,
/// then an even rate). Over it: RESOURCE_EXHAUSTED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Per API token (a user's, or an agent's credential).
    pub requests_per_minute_per_token: u32,
    /// Per client address, for calls without a token.
    pub requests_per_minute_per_address: u32,
    /// Deliveries per webhook endpoint (signed ones; refused ones count apart).
    pub webhook_deliveries_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            requests_per_minute_per_token: 12_000,
            requests_per_minute_per_address: 600,
            webhook_deliveries_per_minute: 120,
        }
    }
}

/// Agent heartbeat and metrics settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentSettings {
    /// How often agents send heartbeats; three missed intervals make an agent offline.
    pub heartbeat_interval: Duration,
    /// How often an agent's figures are appended to its metrics history.
    pub sample_interval: Duration,
    /// How long metrics history is kept.
    pub retention: Duration,
    /// How long monitor check results are kept.
    pub monitor_retention: Duration,
    /// How long an agent may be gone before its jobs fail with `agent_lost`; an agent back within
    /// this time keeps its running jobs.
    pub grace: Duration,
}

impl AgentSettings {
    /// An agent silent for this long is offline.
    pub fn offline_after(&self) -> Duration {
        self.heartbeat_interval * 3
    }

    /// How long an agent whose connection broke has to reconnect before it is marked offline
    /// (agents retry after a quarter of a second at first): a reconnection within it is no
    /// change, with no offline or online mark.
    pub fn reconnect_window(&self) -> Duration {
        self.heartbeat_interval
    }

    /// After a database outage, how long every replica has to renew the leases and last-seen
    /// times of the agents still connected to it before silence is judged: a heartbeat
    /// interval (each replica saves within one, retrying each second after a failed save) and
    /// two probe rounds for the replica that notices the database last.
    pub fn renewal_window(&self) -> Duration {
        self.heartbeat_interval + Duration::from_secs(2)
    }
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(10),
            sample_interval: Duration::from_secs(60),
            retention: Duration::from_secs(7 * 24 * 3600),
            monitor_retention: Duration::from_secs(7 * 24 * 3600),
            grace: Duration::from_secs(60),
        }
    }
}

/// Values given on the command line; they override every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub log_format: Option<String>,
}

/// A configuration problem, printed as one line.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub(crate) fn key(key: &str, env: &str, problem: impl std::fmt::Display) -> Self {
        ConfigError(format!("{key} ({env}): {problem}"))
    }
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    listen: String,
    data_dir: PathBuf,
    database_url: Option<String>,
    database_max_connections: Option<u32>,
    bootstrap_token: Option<String>,
    log_format: String,
    shutdown_grace_seconds: u64,
    metrics_listen: Option<String>,
    web_listen: String,
    secret_key: Option<String>,
    secret_key_previous: Option<String>,
    heartbeat_interval_seconds: u64,
    metrics_sample_seconds: u64,
    metrics_retention_hours: u64,
    monitor_retention_hours: u64,
    agent_grace_seconds: u64,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    quotas: std::collections::HashMap<String, i64>,
    #[serde(default)]
    rate_limits: RawRateLimits,
    #[serde(default)]
    artifacts: crate::artifacts::settings::RawArtifacts,
    retention_interval_seconds: u64,
    anonymous_audit_kept: u64,
}

#[derive(Debug, Default, Deserialize)]
struct RawRateLimits {
    requests_per_minute_per_token: Option<u64>,
    requests_per_minute_per_address: Option<u64>,
    webhook_deliveries_per_minute: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct RawTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
}

/// Default address: loopback only, so a first start exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Where the web dashboard listens unless configured.
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:8080";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./cygnet-data";

impl ServerConfig {
    /// Loads and validates the configuration from every layer.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<ServerConfig, ConfigError> {
        Self::load_from(file, overrides, config::Environment::with_prefix("CYGNET"))
    }

    /// As [`ServerConfig::load`], with the environment given explicitly (tests pass a map).
    pub fn load_from(
        file: Option<&Path>,
        overrides: &Overrides,
        environment: config::Environment,
    ) -> Result<ServerConfig, ConfigError> {
        let mut builder = config::Config::builder()
            .set_default("listen", DEFAULT_LISTEN)
            .and_then(|b| b.set_default("data_dir", DEFAULT_DATA_DIR))
            .and_then(|b| b.set_default("log_format", "plain"))
            .and_then(|b| b.set_default("web_listen", DEFAULT_WEB_LISTEN))
            .and_then(|b| b.set_default("shutdown_grace_seconds", 10))
            .and_then(|b| b.set_default("heartbeat_interval_seconds", 10))
            .and_then(|b| b.set_default("metrics_sample_seconds", 60))
            .and_then(|b| b.set_default("metrics_retention_hours", 168))
            .and_then(|b| b.set_default("monitor_retention_hours", 168))
            .and_then(|b| b.set_default("agent_grace_seconds", 60))
            .and_then(|b| b.set_default("retention_interval_seconds", 600))
            .and_then(|b| b.set_default("anonymous_audit_kept", 100_000))
            .map_err(|error| ConfigError(error.to_string()))?;
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError(format!(
                    "--config {}: file not found",
                    file.display()
                )));
            }
            builder = builder.add_source(
                config::File::from(file)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        builder = builder.add_source(environment.prefix_separator("_").separator("__"));
        let set = |builder: config::ConfigBuilder<config::builder::DefaultState>,
                   key: &str,
                   value: Option<String>| {
            builder
                .set_override_option(key, value)
                .map_err(|error| ConfigError(error.to_string()))
        };
        builder = set(builder, "listen", overrides.listen.clone())?;
        builder = set(
            builder,
            "data_dir",
            overrides
                .data_dir
                .as_ref()
                .map(|dir| dir.display().to_string()),
        )?;
        builder = set(builder, "database_url", overrides.database_url.clone())?;
        builder = set(builder, "log_format", overrides.log_format.clone())?;
        let raw: RawConfig = builder
            .build()
            .and_then(|config| config.try_deserialize())
            .map_err(|error| ConfigError(error.to_string()))?;
        raw.validate()
    }
}

impl RawConfig {
    fn validate(self) -> Result<ServerConfig, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            ConfigError::key(
                "listen",
                "CYGNET_LISTEN",
                format!("{:?} is not an address like 127.0.0.1:50051", self.listen),
            )
        })?;
        let metrics_listen = match self.metrics_listen.filter(|value| !value.trim().is_empty()) {
            None => None,
            Some(value) => Some(value.parse::<SocketAddr>().map_err(|_| {
                ConfigError::key(
                    "metrics_listen",
                    "CYGNET_METRICS_LISTEN",
                    format!("{value:?} is not an address like 127.0.0.1:9464"),
                )
            })?),
        };
        let web_listen = match self.web_listen.trim() {
            "" => None,
            value => Some(value.parse::<SocketAddr>().map_err(|_| {
                ConfigError::key(
                    "web_listen",
                    "CYGNET_WEB_LISTEN",
                    format!("{value:?} is not an address like 127.0.0.1:8080 (empty turns the dashboard off)"),
                )
            })?),
        };
        let key = |value: Option<String>, name: &str, env: &str| {
            value
                .filter(|value| !value.trim().is_empty())
                .map(|value| {
                    crate::secrets::parse_key(&value)
                        .map(crate::secrets::KeyBytes)
                        .map_err(|problem| ConfigError::key(name, env, problem))
                })
                .transpose()
        };
        let secret_key = key(self.secret_key, "secret_key", "CYGNET_SECRET_KEY")?;
        let secret_key_previous = key(
            self.secret_key_previous,
            "secret_key_previous",
            "CYGNET_SECRET_KEY_PREVIOUS",
        )?;
        if secret_key_previous.is_some() && secret_key.is_none() {
            return Err(ConfigError::key(
                "secret_key_previous",
                "CYGNET_SECRET_KEY_PREVIOUS",
                "needs secret_key (CYGNET_SECRET_KEY), the key to re-encrypt with",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::key(
                "data_dir",
                "CYGNET_DATA_DIR",
                "must not be empty",
            ));
        }
        let url = match self.database_url.filter(|url| !url.trim().is_empty()) {
            Some(url) => {
                let known = ["sqlite:", "postgres://", "postgresql://"]
                    .iter()
                    .any(|scheme| url.starts_with(scheme));
                if !known {
                    return Err(ConfigError::key(
                        "database_url",
                        "CYGNET_DATABASE_URL",
                        "must start with sqlite:, postgres:// or postgresql://",
                    ));
                }
                url
            }
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("cygnet.db").display()
            ),
        };
        let is_sqlite = url.starts_with("sqlite:");
        let max_connections = match self.database_max_connections {
            Some(0) => {
                return Err(ConfigError::key(
                    "database_max_connections",
                    "CYGNET_DATABASE_MAX_CONNECTIONS",
                    "must be at least 1",
                ));
            }
            Some(max) => max,
            None if is_sqlite => 8,
            None => 16,
        };
        let bootstrap_token = match self.bootstrap_token.filter(|token| !token.is_empty()) {
            Some(token)
                if token.len() < 16
                    || token.len() > 256
                    || !token.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                return Err(ConfigError::key(
                    "bootstrap_token",
                    "CYGNET_BOOTSTRAP_TOKEN",
                    "must be 16-256 printable ASCII characters without spaces",
                ));
            }
            token => token,
        };
        let log_format = match self.log_format.to_ascii_lowercase().as_str() {
            "plain" | "text" => LogFormat::Plain,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::key(
                    "log_format",
                    "CYGNET_LOG_FORMAT",
                    format!("{other:?} is not one of plain, json"),
                ));
            }
        };
        let tls = match (self.tls.cert, self.tls.key) {
            (None, None) if self.tls.client_ca.is_none() => None,
            (Some(cert), Some(key)) => {
                for (name, env, path) in [
                    ("tls.cert", "CYGNET_TLS__CERT", Some(&cert)),
                    ("tls.key", "CYGNET_TLS__KEY", Some(&key)),
                    (
                        "tls.client_ca",
                        "CYGNET_TLS__CLIENT_CA",
                        self.tls.client_ca.as_ref(),
                    ),
                ] {
                    if let Some(path) = path
                        && !path.is_file()
                    {
                        return Err(ConfigError::key(
                            name,
                            env,
                            format!("file {} not found", path.display()),
                        ));
                    }
                }
                Some(TlsFiles {
                    cert,
                    key,
                    client_ca: self.tls.client_ca,
                })
            }
            _ => {
                return Err(ConfigError::key(
                    "tls.cert/tls.key",
                    "CYGNET_TLS__CERT/CYGNET_TLS__KEY",
                    "set both to serve TLS (tls.client_ca needs them too)",
                ));
            }
        };
        let ranged = |key: &str, env: &str, value: u64, range: std::ops::RangeInclusive<u64>| {
            if range.contains(&value) {
                Ok(value)
            } else {
                Err(ConfigError::key(
                    key,
                    env,
                    format!("must be between {} and {}", range.start(), range.end()),
                ))
            }
        };
        let agents = AgentSettings {
            heartbeat_interval: Duration::from_secs(ranged(
                "heartbeat_interval_seconds",
                "CYGNET_HEARTBEAT_INTERVAL_SECONDS",
                self.heartbeat_interval_seconds,
                1..=3600,
            )?),
            sample_interval: Duration::from_secs(ranged(
                "metrics_sample_seconds",
                "CYGNET_METRICS_SAMPLE_SECONDS",
                self.metrics_sample_seconds,
                1..=86_400,
            )?),
            retention: Duration::from_secs(
                3600 * ranged(
                    "metrics_retention_hours",
                    "CYGNET_METRICS_RETENTION_HOURS",
                    self.metrics_retention_hours,
                    1..=87_600,
                )?,
            ),
            monitor_retention: Duration::from_secs(
                3600 * ranged(
                    "monitor_retention_hours",
                    "CYGNET_MONITOR_RETENTION_HOURS",
                    self.monitor_retention_hours,
                    1..=87_600,
                )?,
            ),
            grace: Duration::from_secs(ranged(
                "agent_grace_seconds",
                "CYGNET_AGENT_GRACE_SECONDS",
                self.agent_grace_seconds,
                1..=86_400,
            )?),
        };
        let mut quotas = QuotaLimits::default();
        for (name, limit) in &self.quotas {
            let key = format!("quotas.{name}");
            let env = format!("CYGNET_QUOTAS__{}", name.to_ascii_uppercase());
            let Some(quota) = Quota::from_name(name) else {
                let known: Vec<&str> = Quota::ALL.iter().map(|quota| quota.name()).collect();
                return Err(ConfigError::key(
                    &key,
                    &env,
                    format!("is not a quota (known: {})", known.join(", ")),
                ));
            };
            if !(1..=quota.ceiling()).contains(limit) {
                return Err(ConfigError::key(
                    &key,
                    &env,
                    format!("must be between 1 and {}", quota.ceiling()),
                ));
            }
            quotas.set(quota, *limit);
        }
        let defaults = RateLimits::default();
        let rate = |key: &str, env: &str, value: Option<u64>, default: u32| match value {
            None => Ok(default),
            Some(value) => ranged(key, env, value, 1..=10_000_000)
                .map(|value| u32::try_from(value).unwrap_or(u32::MAX)),
        };
        let rate_limits = RateLimits {
            requests_per_minute_per_token: rate(
                "rate_limits.requests_per_minute_per_token",
                "CYGNET_RATE_LIMITS__REQUESTS_PER_MINUTE_PER_TOKEN",
                self.rate_limits.requests_per_minute_per_token,
                defaults.requests_per_minute_per_token,
            )?,
            requests_per_minute_per_address: rate(
                "rate_limits.requests_per_minute_per_address",
                "CYGNET_RATE_LIMITS__REQUESTS_PER_MINUTE_PER_ADDRESS",
                self.rate_limits.requests_per_minute_per_address,
                defaults.requests_per_minute_per_address,
            )?,
            webhook_deliveries_per_minute: rate(
                "rate_limits.webhook_deliveries_per_minute",
                "CYGNET_RATE_LIMITS__WEBHOOK_DELIVERIES_PER_MINUTE",
                self.rate_limits.webhook_deliveries_per_minute,
                defaults.webhook_deliveries_per_minute,
            )?,
        };
        let retention = RetentionSettings {
            interval: Duration::from_secs(ranged(
                "retention_interval_seconds",
                "CYGNET_RETENTION_INTERVAL_SECONDS",
                self.retention_interval_seconds,
                1..=86_400,
            )?),
            anonymous_audit_kept: ranged(
                "anonymous_audit_kept",
                "CYGNET_ANONYMOUS_AUDIT_KEPT",
                self.anonymous_audit_kept,
                1..=100_000_000,
            )?,
        };
        Ok(ServerConfig {
            listen,
            data_dir: self.data_dir,
            database: DatabaseOptions {
                url,
                max_connections,
            },
            bootstrap_token,
            log_format,
            tls,
            shutdown_grace_seconds: self.shutdown_grace_seconds,
            metrics_listen,
            web_listen,
            secret_key,
            secret_key_previous,
            agents,
            quotas,
            rate_limits,
            retention,
            artifacts: self.artifacts.validate()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(env: &[(&str, &str)], overrides: &Overrides) -> Result<ServerConfig, ConfigError> {
        let map: HashMap<String, String> = env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        ServerConfig::load_from(
            None,
            overrides,
            config::Environment::with_prefix("CYGNET").source(Some(map)),
        )
    }

    #[test]
    fn defaults_use_sqlite_in_the_data_directory() {
        let config = load(&[], &Overrides::default()).expect("defaults");
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            config.database.url,
            "sqlite://./cygnet-data/cygnet.db?mode=rwc"
        );
        assert_eq!(config.log_format, LogFormat::Plain);
        assert!(config.tls.is_none());
        assert_eq!(
            config.web_listen.map(|address| address.to_string()),
            Some(DEFAULT_WEB_LISTEN.to_owned())
        );
    }

    #[test]
    fn secret_keys_are_32_bytes_of_base64() {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let config = load(
            &[("CYGNET_SECRET_KEY", key.as_str())],
            &Overrides::default(),
        )
        .expect("key");
        assert_eq!(config.secret_key, Some(crate::secrets::KeyBytes([9; 32])));
        assert!(!format!("{config:?}").contains(&key), "Debug shows no key");
        let error = load(&[("CYGNET_SECRET_KEY", "c2hvcnQ=")], &Overrides::default())
            .expect_err("short key")
            .to_string();
        assert!(
            error.contains("CYGNET_SECRET_KEY") && error.contains("32 bytes"),
            "{error}"
        );
        let error = load(
            &[("CYGNET_SECRET_KEY_PREVIOUS", key.as_str())],
            &Overrides::default(),
        )
        .expect_err("previous alone")
        .to_string();
        assert!(error.contains("CYGNET_SECRET_KEY_PREVIOUS"), "{error}");
    }

    #[test]
    fn the_dashboard_listens_where_told_or_not_at_all() {
        let config = load(
            &[("CYGNET_WEB_LISTEN", "0.0.0.0:8443")],
            &Overrides::default(),
        )
        .expect("web address");
        assert_eq!(
            config.web_listen,
            Some("0.0.0.0:8443".parse().expect("address"))
        );
        let config = load(&[("CYGNET_WEB_LISTEN", "")], &Overrides::default()).expect("off");
        assert_eq!(config.web_listen, None);
        let error = load(&[("CYGNET_WEB_LISTEN", "port 80")], &Overrides::default())
            .expect_err("bad web address")
            .to_string();
        assert!(error.contains("CYGNET_WEB_LISTEN"), "{error}");
    }

    #[test]
    fn quotas_and_rate_limits_are_set_by_name_and_checked() {
        let config = load(
            &[
                ("CYGNET_QUOTAS__QUEUED_EXECUTIONS", "25"),
                ("CYGNET_QUOTAS__LOG_BYTES_STORED", "1048576"),
                ("CYGNET_RATE_LIMITS__REQUESTS_PER_MINUTE_PER_TOKEN", "120"),
            ],
            &Overrides::default(),
        )
        .expect("quotas");
        assert_eq!(config.quotas.get(Quota::QueuedExecutions), 25);
        assert_eq!(config.quotas.get(Quota::LogBytesStored), 1 << 20);
        assert_eq!(
            config.quotas.get(Quota::Pipelines),
            Quota::Pipelines.default_limit()
        );
        assert_eq!(config.rate_limits.requests_per_minute_per_token, 120);
        assert_eq!(
            config.rate_limits.requests_per_minute_per_address,
            RateLimits::default().requests_per_minute_per_address
        );
        for (key, value, named) in [
            ("CYGNET_QUOTAS__BOGUS", "5", "CYGNET_QUOTAS__BOGUS"),
            ("CYGNET_QUOTAS__AGENTS", "0", "CYGNET_QUOTAS__AGENTS"),
            (
                "CYGNET_QUOTAS__STEPS_PER_PIPELINE",
                "1000",
                "CYGNET_QUOTAS__STEPS_PER_PIPELINE",
            ),
            (
                "CYGNET_RATE_LIMITS__REQUESTS_PER_MINUTE_PER_ADDRESS",
                "0",
                "CYGNET_RATE_LIMITS__REQUESTS_PER_MINUTE_PER_ADDRESS",
            ),
        ] {
            let error = load(&[(key, value)], &Overrides::default())
                .expect_err(key)
                .to_string();
            assert!(error.contains(named), "{error}");
        }
    }

    #[test]
    fn environment_then_flags_override() {
        let config = load(
            &[
                ("CYGNET_LISTEN", "127.0.0.1:1"),
                ("CYGNET_DATA_DIR", "/tmp/x"),
            ],
            &Overrides {
                listen: Some("127.0.0.1:2".into()),
                ..Overrides::default()
            },
        )
        .expect("valid");
        assert_eq!(config.listen.port(), 2);
        assert_eq!(config.database.url, "sqlite:///tmp/x/cygnet.db?mode=rwc");
    }

    #[test]
    fn bad_values_name_their_key() {
        let error = load(&[("CYGNET_LISTEN", "nowhere")], &Overrides::default())
            .expect_err("bad listen")
            .to_string();
        assert!(error.contains("CYGNET_LISTEN"), "{error}");
        let error = load(&[("CYGNET_LOG_FORMAT", "xml")], &Overrides::default())
            .expect_err("bad format")
            .to_string();
        assert!(error.contains("log_format"), "{error}");
        let error = load(
            &[("CYGNET_METRICS_LISTEN", "everywhere")],
            &Overrides::default(),
        )
        .expect_err("bad metrics address")
        .to_string();
        assert!(error.contains("CYGNET_METRICS_LISTEN"), "{error}");
        let config = load(
            &[("CYGNET_METRICS_LISTEN", "127.0.0.1:9464")],
            &Overrides::default(),
        )
        .expect("metrics address");
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9464".parse().expect("address"))
        );
        let config = load(&[], &Overrides::default()).expect("defaults");
        assert_eq!(config.metrics_listen, None);
        let error = load(
            &[("CYGNET_BOOTSTRAP_TOKEN", "short")],
            &Overrides::default(),
        )
        .expect_err("short token")
        .to_string();
        assert!(error.contains("CYGNET_BOOTSTRAP_TOKEN"), "{error}");
        let error = load(
            &[("CYGNET_TLS__CERT", "/nonexistent.pem")],
            &Overrides::default(),
        )
        .expect_err("cert without key")
        .to_string();
        assert!(error.contains("tls.cert"), "{error}");
        let error = load(
            &[("CYGNET_DATABASE_MAX_CONNECTIONS", "many")],
            &Overrides::default(),
        )
        .expect_err("not a number")
        .to_string();
        assert!(error.contains("database_max_connections"), "{error}");
        let error = load(
            &[("CYGNET_DATABASE_URL", "mysql://x")],
            &Overrides::default(),
        )
        .expect_err("unknown database")
        .to_string();
        assert!(error.contains("CYGNET_DATABASE_URL"), "{error}");
    }

    #[test]
    fn the_example_file_loads() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/server.toml");
        let config = ServerConfig::load_from(
            Some(&example),
            &Overrides::default(),
            config::Environment::with_prefix("CYGNET").source(Some(HashMap::new())),
        )
        .expect("examples/server.toml is valid");
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.shutdown_grace_seconds, 10);
        assert_eq!(config.metrics_listen, None);
    }

    #[test]
    fn the_production_example_loads() {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/server.production.toml");
        // Only the files' existence is checked here: stand-ins that exist replace the paths.
        let present = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("Cargo.toml")
            .display()
            .to_string();
        let files: HashMap<String, String> = [
            "CYGNET_TLS__CERT",
            "CYGNET_TLS__KEY",
            "CYGNET_TLS__CLIENT_CA",
        ]
        .into_iter()
        .map(|name| (name.to_owned(), present.clone()))
        .collect();
        let config = ServerConfig::load_from(
            Some(&example),
            &Overrides::default(),
            config::Environment::with_prefix("CYGNET")
                .separator("__")
                .source(Some(files)),
        )
        .expect("examples/server.production.toml is valid");
        assert!(config.database.url.starts_with("postgres://"));
        assert_eq!(config.database.max_connections, 32);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.metrics_listen,
            Some("10.0.0.5:9464".parse().expect("address"))
        );
        assert_eq!(
            config.web_listen,
            Some("0.0.0.0:8443".parse().expect("address"))
        );
        let tls = config.tls.expect("TLS on");
        assert!(tls.client_ca.is_some(), "mTLS for agents");
    }

    #[test]
    fn the_replica_example_loads() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy/replica.toml");
        // The credentials file it names is replaced by one that exists.
        let credentials = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(
            credentials.path(),
            "[default]\naws_access_key_id = replica-key\naws_secret_access_key = replica-secret\n",
        )
        .expect("credentials");
        let config = ServerConfig::load_from(
            Some(&example),
            &Overrides::default(),
            config::Environment::with_prefix("CYGNET")
                .separator("__")
                .source(Some(HashMap::from([(
                    "CYGNET_ARTIFACTS__CREDENTIALS_FILE".to_owned(),
                    credentials.path().display().to_string(),
                )]))),
        )
        .expect("examples/deploy/replica.toml is valid");
        assert!(config.database.url.starts_with("postgres://"));
        assert_eq!(config.listen.to_string(), "0.0.0.0:50051");
        assert!(config.tls.is_none(), "TLS ends at the balancer");
        assert_eq!(
            config.secret_key, None,
            "the key comes from the environment"
        );
        let crate::artifacts::ArtifactStorage::S3(s3) = config.artifacts else {
            panic!("artifacts in the shared bucket: {:?}", config.artifacts);
        };
        assert_eq!(s3.bucket, "cygnet-artifacts");
        assert!(!s3.virtual_hosted_style);
        assert_eq!(s3.access_key_id, "replica-key");
    }
}
