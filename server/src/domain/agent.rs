//! Build agents, their registration and their heartbeat figures.

use chrono::{DateTime, Utc};

use super::validate::{ValidationError, optional_line};
use super::{AgentId, CustomerId, Refusal, RegistrationTokenId, UserId};

/// Most labels one agent may carry.
pub const MAX_LABELS: usize = 32;
/// Most jobs one agent may run at once.
pub const MAX_CONCURRENT_JOBS: i32 = 64;

/// Whether an agent is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    Online,
    Offline,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Online => "online",
            AgentStatus::Offline => "offline",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "online" => Some(AgentStatus::Online),
            "offline" => Some(AgentStatus::Offline),
            _ => None,
        }
    }
}

/// One heartbeat's figures, already made sane: percentages within 0-100, finite numbers only,
/// used memory never above total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentFigures {
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_free_bytes: u64,
    pub load_average: f64,
    pub running_jobs: u32,
}

impl AgentFigures {
    /// Clamps what an agent reported into the ranges that make sense. Absurd values (NaN,
    /// infinities, negative or above 100 %) are never stored as sent; the return value says
    /// whether anything had to be changed, so the caller can log it.
    pub fn sanitized(reported: AgentFigures) -> (AgentFigures, bool) {
        fn percent(value: f64) -> f64 {
            if value.is_finite() {
                value.clamp(0.0, 100.0)
            } else {
                0.0
            }
        }
        fn non_negative(value: f64) -> f64 {
            if value.is_finite() {
                value.max(0.0)
            } else {
                0.0
            }
        }
        let clean = AgentFigures {
            cpu_percent: percent(reported.cpu_percent),
            memory_percent: percent(reported.memory_percent),
            memory_used_bytes: reported.memory_used_bytes.min(reported.memory_total_bytes),
            memory_total_bytes: reported.memory_total_bytes,
            disk_free_bytes: reported.disk_free_bytes,
            load_average: non_negative(reported.load_average),
            running_jobs: reported.running_jobs,
        };
        let changed = clean.cpu_percent.to_bits() != reported.cpu_percent.to_bits()
            || clean.memory_percent.to_bits() != reported.memory_percent.to_bits()
            || clean.memory_used_bytes != reported.memory_used_bytes
            || clean.load_average.to_bits() != reported.load_average.to_bits();
        (clean, changed)
    }
}

/// A registered agent as stored, with its latest figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: AgentId,
    pub customer_id: CustomerId,
    pub uuid: String,
    pub name: String,
    pub location: String,
    pub labels: Vec<String>,
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub version: String,
    pub max_concurrent_jobs: i32,
    pub enabled: bool,
    pub status: AgentStatus,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Latest figures and when they were taken.
    pub latest: Option<(AgentFigures, DateTime<Utc>)>,
}

/// A validated registration request (without the token, which the store checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRegistration {
    pub customer_id: CustomerId,
    pub uuid: String,
    pub name: String,
    pub location: String,
    pub labels: Vec<String>,
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub version: String,
    pub max_concurrent_jobs: i32,
}

/// A validated partial update of an agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentPatch {
    pub name: Option<String>,
    pub location: Option<String>,
    pub labels: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub max_concurrent_jobs: Option<i32>,
}

/// Which agents a listing wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    pub status: Option<AgentStatus>,
    /// Every one of these labels.
    pub labels: Vec<String>,
}

/// A registration token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationToken {
    pub id: RegistrationTokenId,
    pub customer_id: CustomerId,
    pub description: String,
    pub token_prefix: String,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub max_uses: i64,
    pub use_count: i64,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl RegistrationToken {
    /// Whether the token may register an agent at `now`: not revoked, not expired. Its uses
    /// are counted apart, atomically, by the store ([`registration_token_used_up`] when none
    /// are left).
    pub fn check_usable(&self, now: DateTime<Utc>) -> Result<(), Refusal> {
        if self.revoked_at.is_some() {
            return Err(Refusal::NotAuthenticated(
                "registration token has been revoked".into(),
            ));
        }
        if self.expires_at.is_some_and(|expires_at| expires_at <= now) {
            return Err(Refusal::NotAuthenticated(
                "registration token has expired".into(),
            ));
        }
        Ok(())
    }
}

/// A registration token that is not one of the customer's (unknown, another customer's): the
/// same answer either way.
pub fn registration_token_invalid(customer_id: CustomerId) -> Refusal {
    Refusal::NotAuthenticated(format!(
        "registration token is not valid for customer {customer_id}"
    ))
}

/// A registration token whose uses are all spent.
pub fn registration_token_used_up() -> Refusal {
    Refusal::NotAuthenticated("registration token has been used up".into())
}

/// A validated request to create a registration token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRegistrationToken {
    pub description: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub max_uses: i64,
}

/// An agent uuid: 1-128 characters of letters, digits, `.`, `_`, `:` and `-`.
pub fn uuid(field: &str, value: &str) -> Result<String, ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    let valid = value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if !valid {
        return Err(ValidationError::new(
            field,
            "must be 1-128 characters of letters, digits, '.', '_', ':' and '-'",
        ));
    }
    Ok(value.to_owned())
}

/// Labels: each 1-64 characters of letters, digits and `. _ - : = /`; at most 32; duplicates
/// removed, order kept.
pub fn labels(field: &str, values: &[String]) -> Result<Vec<String>, ValidationError> {
    if values.len() > MAX_LABELS {
        return Err(ValidationError::new(
            field,
            format!("must have at most {MAX_LABELS} labels"),
        ));
    }
    let mut clean: Vec<String> = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        let valid = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-:=/".contains(&b));
        if !valid {
            return Err(ValidationError::new(
                format!("{field}[{index}]"),
                "must be 1-64 characters of letters, digits, '.', '_', '-', ':', '=' and '/'",
            ));
        }
        if !clean.contains(value) {
            clean.push(value.clone());
        }
    }
    Ok(clean)
}

/// Jobs at once: 1-64, with 0 meaning 1 when `zero_means_one`.
pub fn max_concurrent_jobs(
    field: &str,
    value: i32,
    zero_means_one: bool,
) -> Result<i32, ValidationError> {
    match value {
        0 if zero_means_one => Ok(1),
        1..=MAX_CONCURRENT_JOBS => Ok(value),
        _ => Err(ValidationError::new(
            field,
            format!("must be between 1 and {MAX_CONCURRENT_JOBS}"),
        )),
    }
}

/// A short descriptive field reported by the agent (hostname, os, arch, version).
pub fn host_fact(field: &str, value: &str) -> Result<String, ValidationError> {
    optional_line(field, value, 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(cpu: f64, memory: f64, used: u64, total: u64, load: f64) -> AgentFigures {
        AgentFigures {
            cpu_percent: cpu,
            memory_percent: memory,
            memory_used_bytes: used,
            memory_total_bytes: total,
            disk_free_bytes: 1,
            load_average: load,
            running_jobs: 0,
        }
    }

    #[test]
    fn absurd_figures_are_clamped_and_reported() {
        let (clean, changed) = AgentFigures::sanitized(figures(f64::NAN, 150.0, 9, 4, -1.0));
        assert!(changed);
        assert_eq!(clean.cpu_percent, 0.0);
        assert_eq!(clean.memory_percent, 100.0);
        assert_eq!(clean.memory_used_bytes, 4);
        assert_eq!(clean.load_average, 0.0);
        let (clean, changed) = AgentFigures::sanitized(figures(-5.0, f64::INFINITY, 1, 4, 0.5));
        assert!(changed);
        assert_eq!((clean.cpu_percent, clean.memory_percent), (0.0, 0.0));
        let sane = figures(12.5, 40.0, 1, 4, 0.5);
        assert_eq!(AgentFigures::sanitized(sane), (sane, false));
    }

    #[test]
    fn uuids_and_labels() {
        assert!(uuid("uuid", "acme-001").is_ok());
        assert!(uuid("uuid", "").is_err());
        assert!(uuid("uuid", "has space").is_err());
        assert!(uuid("uuid", &"u".repeat(129)).is_err());
        assert_eq!(
            labels(
                "labels",
                &["linux".into(), "os=linux".into(), "linux".into()]
            )
            .expect("valid"),
            ["linux", "os=linux"]
        );
        assert_eq!(
            labels("labels", &["ok".into(), "not ok".into()])
                .expect_err("space")
                .field(),
            "labels[1]"
        );
        assert!(labels("labels", &vec!["l".to_owned(); 33]).is_err());
        assert_eq!(
            max_concurrent_jobs("max_concurrent_jobs", 0, true).expect("zero"),
            1
        );
        assert!(max_concurrent_jobs("max_concurrent_jobs", 0, false).is_err());
        assert!(max_concurrent_jobs("max_concurrent_jobs", 65, true).is_err());
    }
}
