//! Protobuf ↔ domain for MonitorService and monitor reports.

use cygnet_proto::v1 as pb;

use super::common::{parse_timestamp, timestamp};
use super::pipeline::selector_from_pb;
use crate::domain::monitor::{
    CheckReport, Monitor, MonitorCheckResult, MonitorInput, MonitorKind, MonitorPatch,
    MonitorSettings, MonitorStatus,
};
use crate::domain::validate::ValidationError;
use crate::domain::{AgentId, MonitorId};
use crate::store::now;

pub fn kind_from_pb(value: i32) -> Result<Option<MonitorKind>, ValidationError> {
    match pb::MonitorKind::try_from(value) {
        Ok(pb::MonitorKind::Unspecified) => Ok(None),
        Ok(pb::MonitorKind::Http) => Ok(Some(MonitorKind::Http)),
        Ok(pb::MonitorKind::Tcp) => Ok(Some(MonitorKind::Tcp)),
        Err(_) => Err(ValidationError::new(
            "kind",
            format!("has unknown value {value}"),
        )),
    }
}

fn kind_to_pb(kind: MonitorKind) -> pb::MonitorKind {
    match kind {
        MonitorKind::Http => pb::MonitorKind::Http,
        MonitorKind::Tcp => pb::MonitorKind::Tcp,
    }
}

pub fn status_to_pb(status: MonitorStatus) -> pb::MonitorStatus {
    match status {
        MonitorStatus::Unknown => pb::MonitorStatus::Unknown,
        MonitorStatus::Healthy => pb::MonitorStatus::Healthy,
        MonitorStatus::Warning => pb::MonitorStatus::Warning,
        MonitorStatus::Down => pb::MonitorStatus::Down,
    }
}

/// A status filter from a request: unspecified means "any".
pub fn status_filter(value: i32) -> Result<Option<MonitorStatus>, ValidationError> {
    match pb::MonitorStatus::try_from(value) {
        Ok(pb::MonitorStatus::Unspecified) => Ok(None),
        Ok(pb::MonitorStatus::Unknown) => Ok(Some(MonitorStatus::Unknown)),
        Ok(pb::MonitorStatus::Healthy) => Ok(Some(MonitorStatus::Healthy)),
        Ok(pb::MonitorStatus::Warning) => Ok(Some(MonitorStatus::Warning)),
        Ok(pb::MonitorStatus::Down) => Ok(Some(MonitorStatus::Down)),
        Err(_) => Err(ValidationError::new(
            "status",
            format!("has unknown value {value}"),
        )),
    }
}

impl TryFrom<&pb::CreateMonitorRequest> for MonitorSettings {
    type Error = ValidationError;

    fn try_from(request: &pb::CreateMonitorRequest) -> Result<Self, ValidationError> {
        MonitorSettings::new(MonitorInput {
            name: &request.name,
            kind: kind_from_pb(request.kind)?,
            target: &request.target,
            interval_seconds: request.interval_seconds,
            timeout_ms: request.timeout_ms,
            warning_threshold_ms: request.warning_threshold_ms,
            expected_status: request.expected_status,
            selector: selector_from_pb(request.agent_selector.as_ref())?,
        })
    }
}

impl TryFrom<&pb::UpdateMonitorRequest> for MonitorPatch {
    type Error = ValidationError;

    fn try_from(request: &pb::UpdateMonitorRequest) -> Result<Self, ValidationError> {
        Ok(MonitorPatch {
            name: request.name.clone(),
            target: request.target.clone(),
            interval_seconds: request.interval_seconds,
            timeout_ms: request.timeout_ms,
            warning_threshold_ms: request.warning_threshold_ms,
            expected_status: request.expected_status,
            selector: request
                .set_agent_selector
                .then(|| selector_from_pb(request.agent_selector.as_ref()))
                .transpose()?,
        })
    }
}

impl From<Monitor> for pb::Monitor {
    fn from(monitor: Monitor) -> Self {
        let settings = monitor.settings;
        pb::Monitor {
            id: monitor.id.get(),
            customer_id: monitor.customer_id.get(),
            name: settings.name,
            kind: kind_to_pb(settings.kind).into(),
            target: settings.target,
            interval_seconds: settings.interval_seconds,
            timeout_ms: settings.timeout_ms,
            warning_threshold_ms: settings.warning_threshold_ms,
            expected_status: settings.expected_status,
            agent_selector: Some(pb::AgentSelector {
                agent_id: settings.selector.agent_id.map_or(0, AgentId::get),
                labels: settings.selector.labels,
            }),
            status: status_to_pb(monitor.status).into(),
            last_response_ms: monitor.last_response_ms,
            last_checked_at: monitor.last_checked_at.and_then(timestamp),
            last_message: monitor.last_message,
            uptime_percent_24h: monitor.uptime_percent_24h,
            assigned_agent_id: monitor.assigned_agent_id.map_or(0, AgentId::get),
            created_at: timestamp(monitor.created_at),
            updated_at: timestamp(monitor.updated_at),
            created_by: monitor.created_by.get(),
        }
    }
}

impl From<MonitorCheckResult> for pb::MonitorCheckResult {
    fn from(result: MonitorCheckResult) -> Self {
        pb::MonitorCheckResult {
            id: result.id,
            checked_at: timestamp(result.checked_at),
            status: status_to_pb(result.status).into(),
            response_ms: result.response_ms,
            http_status: result.http_status,
            message: result.message,
            agent_id: result.agent_id.map_or(0, AgentId::get),
        }
    }
}

/// An agent's report, made safe to store: a time in the future or missing becomes now, figures
/// are clamped, the message is cut to 500 characters. `None` for a report naming no monitor.
pub fn report_from_pb(report: &pb::MonitorReport) -> Option<CheckReport> {
    let monitor_id = MonitorId::parse(report.monitor_id, "monitor_id").ok()?;
    let received = now();
    let checked_at = report
        .checked_at
        .as_ref()
        .and_then(|at| parse_timestamp("checked_at", at).ok())
        .filter(|at| *at <= received)
        .unwrap_or(received);
    Some(CheckReport {
        monitor_id,
        checked_at,
        up: report.up,
        response_ms: report.response_ms.clamp(0, 86_400_000),
        http_status: report.http_status.clamp(0, 999),
        message: report.message.chars().take(500).collect(),
    })
}
