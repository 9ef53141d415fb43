//! Small conversions from API messages to what pages show.

use cygnet_proto::v1 as pb;

/// `EXECUTION_STATUS_SUCCEEDED` → `succeeded`.
fn label(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', " ")
}

pub fn execution_status(value: i32) -> String {
    pb::ExecutionStatus::try_from(value)
        .map(|status| label(status.as_str_name(), "EXECUTION_STATUS_"))
        .unwrap_or_else(|_| "unknown".into())
}

pub fn step_status(value: i32) -> String {
    pb::StepStatus::try_from(value)
        .map(|status| label(status.as_str_name(), "STEP_STATUS_"))
        .unwrap_or_else(|_| "unknown".into())
}

pub fn agent_status(value: i32) -> String {
    pb::AgentStatus::try_from(value)
        .map(|status| label(status.as_str_name(), "AGENT_STATUS_"))
        .unwrap_or_else(|_| "unknown".into())
}

pub fn monitor_status(value: i32) -> String {
    pb::MonitorStatus::try_from(value)
        .map(|status| label(status.as_str_name(), "MONITOR_STATUS_"))
        .unwrap_or_else(|_| "unknown".into())
}

pub fn stage_status(value: i32) -> String {
    pb::StageStatus::try_from(value)
        .map(|status| label(status.as_str_name(), "STAGE_STATUS_"))
        .unwrap_or_else(|_| "unknown".into())
}

pub fn release_execution_status(value: i32) -> String {
    pb::ReleaseExecutionStatus::try_from(value)
        .map(|status| label(status.as_str_name(), "RELEASE_EXECUTION_STATUS_"))
        .unwrap_or_else(|_| "unknown".into())
}

pub fn role(value: i32) -> String {
    pb::Role::try_from(value)
        .map(|role| label(role.as_str_name(), "ROLE_"))
        .unwrap_or_else(|_| "unknown".into())
}

/// `2026-12-01 09:30:00 UTC`, or an empty string when unset.
pub fn time(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(|at| chrono::DateTime::from_timestamp(at.seconds, at.nanos.max(0) as u32))
        .map(|at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// The dashboard page of the record an activity event is about ("" for none): an agent's or
/// execution's own page, a deployment's page, else the page that lists such records.
pub fn activity_link(customer_id: i64, event: &pb::ActivityEvent) -> String {
    let id = event.subject_id;
    let gone = event.kind.ends_with(".deleted");
    match event.subject_type.as_str() {
        "agent" if id > 0 && !gone => format!("/c/{customer_id}/agents/{id}"),
        "agent" => format!("/c/{customer_id}/agents"),
        "execution" if id > 0 => format!("/c/{customer_id}/executions/{id}"),
        "release_execution" if id > 0 => format!("/c/{customer_id}/deployments/{id}"),
        "monitor" => format!("/c/{customer_id}/monitors"),
        "user" => format!("/c/{customer_id}/members"),
        "customer" => format!("/c/{customer_id}/usage"),
        _ => String::new(),
    }
}

/// The host (and port) the browser addressed (`Host`), when it is a plain host name or address.
pub fn addressed_host(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-[]:".contains(&b))
        })
}

/// What started an execution, in a few words ("" for a member's own run).
pub fn trigger_label(trigger: &pb::ExecutionTrigger) -> String {
    match pb::TriggerKind::try_from(trigger.kind) {
        Ok(pb::TriggerKind::Retry) => format!("retry of {}", trigger.retry_of),
        Ok(pb::TriggerKind::ReleaseStage) => {
            format!("deployment {}", trigger.release_execution_id)
        }
        Ok(pb::TriggerKind::Schedule) => format!("schedule {}", trigger.schedule_id),
        Ok(pb::TriggerKind::Webhook) if trigger.branch.is_empty() => {
            format!("webhook {}: {}", trigger.webhook_id, trigger.event)
        }
        Ok(pb::TriggerKind::Webhook) => format!(
            "webhook {}: {} {}",
            trigger.webhook_id, trigger.event, trigger.branch
        ),
        _ => String::new(),
    }
}

/// Seconds from `started` to `finished`, when both are set.
pub fn seconds_between(
    started: Option<&prost_types::Timestamp>,
    finished: Option<&prost_types::Timestamp>,
) -> Option<f64> {
    let (started, finished) = (started?, finished?);
    let seconds = (finished.seconds - started.seconds) as f64
        + f64::from(finished.nanos - started.nanos) / 1e9;
    Some(seconds.max(0.0))
}

/// `1 min 5 s` between two times, or "" when either is unset.
pub fn duration(
    started: Option<&prost_types::Timestamp>,
    finished: Option<&prost_types::Timestamp>,
) -> String {
    seconds_between(started, finished).map_or_else(String::new, |seconds| {
        let whole = seconds as i64;
        match whole {
            0 => format!("{} ms", (seconds * 1000.0) as i64),
            1..=59 => format!("{whole} s"),
            _ => format!("{} min {} s", whole / 60, whole % 60),
        }
    })
}

/// Whether an execution can still change (and be cancelled).
pub fn execution_is_active(value: i32) -> bool {
    matches!(
        pb::ExecutionStatus::try_from(value),
        Ok(pb::ExecutionStatus::Queued
            | pb::ExecutionStatus::Assigned
            | pb::ExecutionStatus::Running)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_as_words() {
        assert_eq!(execution_status(4), "succeeded");
        assert_eq!(stage_status(2), "awaiting approval");
        let event = |kind: &str, subject_type: &str, subject_id: i64| pb::ActivityEvent {
            kind: kind.into(),
            subject_type: subject_type.into(),
            subject_id,
            ..Default::default()
        };
        assert_eq!(
            activity_link(3, &event("execution.failed", "execution", 9)),
            "/c/3/executions/9"
        );
        assert_eq!(
            activity_link(3, &event("release.deployed", "release_execution", 4)),
            "/c/3/deployments/4"
        );
        assert_eq!(
            activity_link(3, &event("agent.online", "agent", 2)),
            "/c/3/agents/2"
        );
        assert_eq!(
            activity_link(3, &event("agent.deleted", "agent", 2)),
            "/c/3/agents"
        );
        assert_eq!(activity_link(3, &event("something.new", "thing", 1)), "");
        let trigger = |kind: pb::TriggerKind| pb::ExecutionTrigger {
            kind: kind as i32,
            retry_of: 4,
            release_execution_id: 7,
            schedule_id: 3,
            ..Default::default()
        };
        assert_eq!(trigger_label(&trigger(pb::TriggerKind::User)), "");
        assert_eq!(
            trigger_label(&trigger(pb::TriggerKind::Retry)),
            "retry of 4"
        );
        assert_eq!(
            trigger_label(&trigger(pb::TriggerKind::ReleaseStage)),
            "deployment 7"
        );
        assert_eq!(
            trigger_label(&trigger(pb::TriggerKind::Schedule)),
            "schedule 3"
        );
        assert_eq!(role(5), "viewer");
        assert_eq!(execution_status(99), "unknown");
        assert_eq!(
            time(Some(&prost_types::Timestamp {
                seconds: 1_764_581_400,
                nanos: 0
            })),
            "2025-12-01 09:30:00 UTC"
        );
    }
}
