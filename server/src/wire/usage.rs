//! Usage on the wire.

use cygnet_proto::v1 as pb;

use crate::domain::usage::UsageDay;

impl From<&UsageDay> for pb::UsageDay {
    fn from(day: &UsageDay) -> Self {
        pb::UsageDay {
            day: day.day.format("%Y-%m-%d").to_string(),
            build_seconds: day.build_seconds,
            executions_succeeded: day.executions_succeeded,
            executions_failed: day.executions_failed,
            executions_cancelled: day.executions_cancelled,
            executions_timed_out: day.executions_timed_out,
            log_bytes_added: day.log_bytes_added,
            artifact_bytes_added: day.artifact_bytes_added,
            log_bytes_stored: day.log_bytes_stored,
            artifact_bytes_stored: day.artifact_bytes_stored,
            agent_online_seconds: day.agent_online_seconds,
            monitor_checks: day.monitor_checks,
        }
    }
}

/// The sums over `days` (stored bytes: the last day's reading), with no day; a sum past
/// `i64::MAX` stays there rather than wrapping.
pub fn usage_total(days: &[UsageDay]) -> pb::UsageDay {
    let mut total = pb::UsageDay::default();
    for day in days {
        total.build_seconds = total.build_seconds.saturating_add(day.build_seconds);
        total.executions_succeeded = total
            .executions_succeeded
            .saturating_add(day.executions_succeeded);
        total.executions_failed = total
            .executions_failed
            .saturating_add(day.executions_failed);
        total.executions_cancelled = total
            .executions_cancelled
            .saturating_add(day.executions_cancelled);
        total.executions_timed_out = total
            .executions_timed_out
            .saturating_add(day.executions_timed_out);
        total.log_bytes_added = total.log_bytes_added.saturating_add(day.log_bytes_added);
        total.artifact_bytes_added = total
            .artifact_bytes_added
            .saturating_add(day.artifact_bytes_added);
        total.agent_online_seconds = total
            .agent_online_seconds
            .saturating_add(day.agent_online_seconds);
        total.monitor_checks = total.monitor_checks.saturating_add(day.monitor_checks);
        if day.log_bytes_stored > 0 || day.artifact_bytes_stored > 0 {
            total.log_bytes_stored = day.log_bytes_stored;
            total.artifact_bytes_stored = day.artifact_bytes_stored;
        }
    }
    total
}
