//! Service monitors: what a check is, how its target is validated, and what its result means.

use chrono::{DateTime, Utc};
use cygnet_proto::monitor_target::{HttpTarget, TcpTarget};

use super::pipeline::AgentSelector;
use super::validate::{ValidationError, required_line};
use super::{AgentId, CustomerId, MonitorId, UserId};

/// Shortest interval between two checks of one monitor.
pub const MIN_INTERVAL_SECONDS: i32 = 10;
/// Longest interval between two checks.
pub const MAX_INTERVAL_SECONDS: i32 = 86_400;
/// Interval when none is given.
pub const DEFAULT_INTERVAL_SECONDS: i32 = 60;
/// Shortest timeout of a check.
pub const MIN_TIMEOUT_MS: i32 = 100;
/// Longest timeout of a check.
pub const MAX_TIMEOUT_MS: i32 = 60_000;
/// Timeout when none is given.
pub const DEFAULT_TIMEOUT_MS: i32 = 5_000;
/// Warning threshold when none is given (or the timeout, when that is smaller).
pub const DEFAULT_WARNING_THRESHOLD_MS: i32 = 1_000;

/// How a monitor checks its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorKind {
    Http,
    Tcp,
}

impl MonitorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorKind::Http => "http",
            MonitorKind::Tcp => "tcp",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "http" => Some(MonitorKind::Http),
            "tcp" => Some(MonitorKind::Tcp),
            _ => None,
        }
    }
}

/// What a monitor's latest check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MonitorStatus {
    Unknown,
    Healthy,
    Warning,
    Down,
}

impl MonitorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorStatus::Unknown => "unknown",
            MonitorStatus::Healthy => "healthy",
            MonitorStatus::Warning => "warning",
            MonitorStatus::Down => "down",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "unknown" => Some(MonitorStatus::Unknown),
            "healthy" => Some(MonitorStatus::Healthy),
            "warning" => Some(MonitorStatus::Warning),
            "down" => Some(MonitorStatus::Down),
            _ => None,
        }
    }

    /// The status of a check: down when the target was not up, a warning when it answered
    /// slower than the threshold.
    pub fn of_check(up: bool, response_ms: i64, warning_threshold_ms: i32) -> Self {
        if !up {
            MonitorStatus::Down
        } else if response_ms > i64::from(warning_threshold_ms) {
            MonitorStatus::Warning
        } else {
            MonitorStatus::Healthy
        }
    }
}

/// A monitor's check settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSettings {
    pub name: String,
    pub kind: MonitorKind,
    pub target: String,
    pub interval_seconds: i32,
    pub timeout_ms: i32,
    pub warning_threshold_ms: i32,
    pub expected_status: i32,
    pub selector: AgentSelector,
}

/// Values given for a new monitor, before defaults (0 = not given).
#[derive(Debug, Clone)]
pub struct MonitorInput<'a> {
    pub name: &'a str,
    pub kind: Option<MonitorKind>,
    pub target: &'a str,
    pub interval_seconds: i32,
    pub timeout_ms: i32,
    pub warning_threshold_ms: i32,
    pub expected_status: i32,
    pub selector: AgentSelector,
}

impl MonitorSettings {
    /// Validates a new monitor, filling in defaults.
    pub fn new(input: MonitorInput<'_>) -> Result<Self, ValidationError> {
        let kind = input
            .kind
            .ok_or_else(|| ValidationError::new("kind", "is required (http or tcp)"))?;
        let timeout_ms = if input.timeout_ms == 0 {
            DEFAULT_TIMEOUT_MS
        } else {
            input.timeout_ms
        };
        let settings = MonitorSettings {
            name: required_line("name", input.name, 100)?,
            kind,
            target: target(kind, "target", input.target)?,
            interval_seconds: if input.interval_seconds == 0 {
                DEFAULT_INTERVAL_SECONDS
            } else {
                input.interval_seconds
            },
            timeout_ms,
            warning_threshold_ms: if input.warning_threshold_ms == 0 {
                DEFAULT_WARNING_THRESHOLD_MS.min(timeout_ms)
            } else {
                input.warning_threshold_ms
            },
            expected_status: input.expected_status,
            selector: input.selector,
        };
        settings.check()?;
        Ok(settings)
    }

    /// Checks the numbers against each other (also after a patch).
    pub fn check(&self) -> Result<(), ValidationError> {
        if !(MIN_INTERVAL_SECONDS..=MAX_INTERVAL_SECONDS).contains(&self.interval_seconds) {
            return Err(ValidationError::new(
                "interval_seconds",
                format!("must be {MIN_INTERVAL_SECONDS}-{MAX_INTERVAL_SECONDS} seconds"),
            ));
        }
        if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(ValidationError::new(
                "timeout_ms",
                format!("must be {MIN_TIMEOUT_MS}-{MAX_TIMEOUT_MS} ms"),
            ));
        }
        if i64::from(self.timeout_ms) > i64::from(self.interval_seconds) * 1000 {
            return Err(ValidationError::new(
                "timeout_ms",
                format!("must not exceed the interval ({} s)", self.interval_seconds),
            ));
        }
        if self.warning_threshold_ms < 1 || self.warning_threshold_ms > self.timeout_ms {
            return Err(ValidationError::new(
                "warning_threshold_ms",
                format!("must be 1 ms up to the timeout ({} ms)", self.timeout_ms),
            ));
        }
        match self.kind {
            MonitorKind::Http => {
                if self.expected_status != 0 && !(100..=599).contains(&self.expected_status) {
                    return Err(ValidationError::new(
                        "expected_status",
                        "must be an HTTP status (100-599), or 0 for any 2xx",
                    ));
                }
            }
            MonitorKind::Tcp => {
                if self.expected_status != 0 {
                    return Err(ValidationError::new(
                        "expected_status",
                        "applies to HTTP monitors only",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Applies a patch and checks the result.
    pub fn patched(&self, patch: MonitorPatch) -> Result<Self, ValidationError> {
        let mut next = self.clone();
        if let Some(name) = patch.name {
            next.name = required_line("name", &name, 100)?;
        }
        if let Some(value) = patch.target {
            next.target = target(next.kind, "target", &value)?;
        }
        if let Some(value) = patch.interval_seconds {
            next.interval_seconds = value;
        }
        if let Some(value) = patch.timeout_ms {
            next.timeout_ms = value;
        }
        if let Some(value) = patch.warning_threshold_ms {
            next.warning_threshold_ms = value;
        }
        if let Some(value) = patch.expected_status {
            next.expected_status = value;
        }
        if let Some(selector) = patch.selector {
            next.selector = selector;
        }
        next.check()?;
        Ok(next)
    }

    /// Whether an agent's copy of the check must change (the name does not matter to it).
    pub fn same_check(&self, other: &MonitorSettings) -> bool {
        self.kind == other.kind
            && self.target == other.target
            && self.interval_seconds == other.interval_seconds
            && self.timeout_ms == other.timeout_ms
            && self.expected_status == other.expected_status
    }
}

/// Fields of UpdateMonitor that were set.
#[derive(Debug, Clone, Default)]
pub struct MonitorPatch {
    pub name: Option<String>,
    pub target: Option<String>,
    pub interval_seconds: Option<i32>,
    pub timeout_ms: Option<i32>,
    pub warning_threshold_ms: Option<i32>,
    pub expected_status: Option<i32>,
    pub selector: Option<AgentSelector>,
}

/// A stored monitor with its latest status.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    pub id: MonitorId,
    pub customer_id: CustomerId,
    pub settings: MonitorSettings,
    pub status: MonitorStatus,
    pub last_response_ms: i64,
    pub last_checked_at: Option<DateTime<Utc>>,
    pub last_message: String,
    pub uptime_percent_24h: f64,
    pub assigned_agent_id: Option<AgentId>,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One stored check result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorCheckResult {
    pub id: i64,
    pub checked_at: DateTime<Utc>,
    pub status: MonitorStatus,
    pub response_ms: i64,
    pub http_status: i32,
    pub message: String,
    pub agent_id: Option<AgentId>,
}

/// What an agent reported about one check (sanitised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub monitor_id: MonitorId,
    pub checked_at: DateTime<Utc>,
    pub up: bool,
    pub response_ms: i64,
    pub http_status: i32,
    pub message: String,
}

/// Validates a target for `kind` and returns it trimmed.
pub fn target(kind: MonitorKind, field: &str, value: &str) -> Result<String, ValidationError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    if value.len() > 2048 || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ValidationError::new(
            field,
            "must be at most 2048 characters, without spaces or control characters",
        ));
    }
    match kind {
        MonitorKind::Http => {
            HttpTarget::validate(value)
                .map_err(|problem| ValidationError::new(field, problem.to_string()))?;
        }
        MonitorKind::Tcp => {
            tcp_address(value).map_err(|problem| ValidationError::new(field, problem))?;
        }
    }
    Ok(value.to_owned())
}

/// The host and port a TCP monitor connects to: `host:port`, `[v6]:port`, `tcp://host:port`, or
/// a service URL whose scheme gives the default port (`postgres://acme-db`).
pub fn tcp_address(value: &str) -> Result<(String, u16), String> {
    TcpTarget::parse(value)
        .map(|target| (target.host, target.port))
        .map_err(|problem| problem.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_targets() {
        let ok = [
            ("acme-db:5432", ("acme-db", 5432)),
            ("tcp://10.0.0.5:6379", ("10.0.0.5", 6379)),
            ("postgres://acme-db", ("acme-db", 5432)),
            (
                "postgresql://user:pw@acme-db:6432/app?sslmode=require",
                ("acme-db", 6432),
            ),
            ("redis://acme-cache", ("acme-cache", 6379)),
            ("mysql://db", ("db", 3306)),
            ("[::1]:5432", ("::1", 5432)),
            ("postgres://[fd00::5]", ("fd00::5", 5432)),
        ];
        for (value, (host, port)) in ok {
            assert_eq!(tcp_address(value), Ok((host.to_owned(), port)), "{value}");
        }
        for (value, problem) in [
            ("acme-db", "must name a port"),
            ("tcp://acme-db", "must name a port"),
            ("ftp://files:21", "scheme \"ftp\" is not supported"),
            ("http://x", "scheme \"http\" is not supported"),
            (":5432", "must name a host"),
            ("db:0", "not a port number"),
            ("db:70000", "not a port number"),
            ("db:x", "not a port number"),
            ("::1:5432", "need brackets"),
            ("[::1", "unclosed"),
        ] {
            let error = tcp_address(value).expect_err(value);
            assert!(error.contains(problem), "{value}: {error}");
        }
    }

    #[test]
    fn http_targets() {
        for value in ["https://api.acme.com/health", "http://127.0.0.1:8080/"] {
            assert!(
                target(MonitorKind::Http, "target", value).is_ok(),
                "{value}"
            );
        }
        for (value, problem) in [
            ("api.acme.com/health", "is not a URL"),
            ("ftp://acme.com", "not supported by HTTP monitors"),
            ("https://user:secret@acme.com", "credentials"),
            ("https://acme .com", "without spaces"),
            ("http:///health", "must name a host"),
            ("http:health", "must name a host"),
            ("", "is required"),
        ] {
            let error = target(MonitorKind::Http, "target", value).expect_err(value);
            assert!(error.to_string().contains(problem), "{value}: {error}");
        }
    }

    fn input(kind: MonitorKind) -> MonitorInput<'static> {
        MonitorInput {
            name: "API",
            kind: Some(kind),
            target: match kind {
                MonitorKind::Http => "https://api.acme.com/health",
                MonitorKind::Tcp => "postgres://acme-db",
            },
            interval_seconds: 0,
            timeout_ms: 0,
            warning_threshold_ms: 0,
            expected_status: 0,
            selector: AgentSelector::default(),
        }
    }

    #[test]
    fn defaults_and_limits() {
        let settings = MonitorSettings::new(input(MonitorKind::Http)).expect("valid");
        assert_eq!(
            (
                settings.interval_seconds,
                settings.timeout_ms,
                settings.warning_threshold_ms
            ),
            (60, 5000, 1000)
        );
        let small_timeout = MonitorSettings::new(MonitorInput {
            timeout_ms: 300,
            ..input(MonitorKind::Tcp)
        })
        .expect("valid");
        assert_eq!(small_timeout.warning_threshold_ms, 300);
        for (bad, field) in [
            (
                MonitorInput {
                    interval_seconds: 5,
                    ..input(MonitorKind::Http)
                },
                "interval_seconds",
            ),
            (
                MonitorInput {
                    timeout_ms: 50,
                    ..input(MonitorKind::Http)
                },
                "timeout_ms",
            ),
            (
                MonitorInput {
                    interval_seconds: 10,
                    timeout_ms: 20_000,
                    ..input(MonitorKind::Http)
                },
                "timeout_ms",
            ),
            (
                MonitorInput {
                    timeout_ms: 1000,
                    warning_threshold_ms: 2000,
                    ..input(MonitorKind::Http)
                },
                "warning_threshold_ms",
            ),
            (
                MonitorInput {
                    expected_status: 700,
                    ..input(MonitorKind::Http)
                },
                "expected_status",
            ),
            (
                MonitorInput {
                    expected_status: 200,
                    ..input(MonitorKind::Tcp)
                },
                "expected_status",
            ),
            (
                MonitorInput {
                    kind: None,
                    ..input(MonitorKind::Http)
                },
                "kind",
            ),
        ] {
            assert_eq!(MonitorSettings::new(bad).expect_err(field).field(), field);
        }
    }

    #[test]
    fn check_status() {
        assert_eq!(
            MonitorStatus::of_check(true, 40, 100),
            MonitorStatus::Healthy
        );
        assert_eq!(
            MonitorStatus::of_check(true, 100, 100),
            MonitorStatus::Healthy
        );
        assert_eq!(
            MonitorStatus::of_check(true, 101, 100),
            MonitorStatus::Warning
        );
        assert_eq!(MonitorStatus::of_check(false, 0, 100), MonitorStatus::Down);
    }
}
