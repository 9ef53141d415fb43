//! Quotas: what one customer may have and do on the shared server. The platform sets a default
//! for each (server configuration); a platform administrator may override it per customer. Over
//! a quota the change is refused with RESOURCE_EXHAUSTED naming the quota, its limit and the
//! current use, and nothing is written.

use std::collections::BTreeMap;
use std::fmt;

use super::CustomerId;

/// A limit on one customer's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quota {
    /// Executions waiting in the queue.
    QueuedExecutions,
    /// Executions on agents at once (assigned or running); more wait in the queue.
    RunningExecutions,
    /// Pipelines.
    Pipelines,
    /// Bytes of one pipeline's definition (steps, parameters, selector).
    PipelineDefinitionBytes,
    /// Steps of one pipeline.
    StepsPerPipeline,
    /// Registered agents.
    Agents,
    /// Service monitors.
    Monitors,
    /// Variable groups.
    VariableGroups,
    /// Log bytes of one execution; past it the output is cut with one truncation line.
    LogBytesPerExecution,
    /// Log bytes the customer stores in all.
    LogBytesStored,
    /// Artifact bytes of one execution.
    ArtifactBytesPerExecution,
    /// Artifact bytes the customer stores in all.
    ArtifactBytesStored,
    /// Watch streams (WatchExecution, WatchReleaseExecution, WatchActivity) one user keeps open
    /// in the customer at once, on one server.
    WatchStreamsPerCaller,
    /// Days an execution's log is kept after it ended.
    LogRetentionDays,
    /// Days an execution's artifacts are kept after it ended (while no unfinished release
    /// ships them).
    ArtifactRetentionDays,
    /// Days a finished execution is kept at all (unless a release refers to it).
    ExecutionRetentionDays,
    /// Invitations the customer's admins have open at once.
    OpenInvitations,
    /// Registration tokens that can still register an agent (not revoked, expired or used up).
    RegistrationTokens,
    /// Pipeline schedules.
    Schedules,
    /// Webhook endpoints.
    Webhooks,
}

impl Quota {
    pub const ALL: [Quota; 20] = [
        Quota::QueuedExecutions,
        Quota::RunningExecutions,
        Quota::Pipelines,
        Quota::PipelineDefinitionBytes,
        Quota::StepsPerPipeline,
        Quota::Agents,
        Quota::Monitors,
        Quota::VariableGroups,
        Quota::LogBytesPerExecution,
        Quota::LogBytesStored,
        Quota::ArtifactBytesPerExecution,
        Quota::ArtifactBytesStored,
        Quota::WatchStreamsPerCaller,
        Quota::LogRetentionDays,
        Quota::ArtifactRetentionDays,
        Quota::ExecutionRetentionDays,
        Quota::OpenInvitations,
        Quota::RegistrationTokens,
        Quota::Schedules,
        Quota::Webhooks,
    ];

    /// The name used in configuration, the API and messages.
    pub fn name(self) -> &'static str {
        match self {
            Quota::QueuedExecutions => "queued_executions",
            Quota::RunningExecutions => "running_executions",
            Quota::Pipelines => "pipelines",
            Quota::PipelineDefinitionBytes => "pipeline_definition_bytes",
            Quota::StepsPerPipeline => "steps_per_pipeline",
            Quota::Agents => "agents",
            Quota::Monitors => "monitors",
            Quota::VariableGroups => "variable_groups",
            Quota::LogBytesPerExecution => "log_bytes_per_execution",
            Quota::LogBytesStored => "log_bytes_stored",
            Quota::ArtifactBytesPerExecution => "artifact_bytes_per_execution",
            Quota::ArtifactBytesStored => "artifact_bytes_stored",
            Quota::WatchStreamsPerCaller => "watch_streams_per_caller",
            Quota::LogRetentionDays => "log_retention_days",
            Quota::ArtifactRetentionDays => "artifact_retention_days",
            Quota::ExecutionRetentionDays => "execution_retention_days",
            Quota::OpenInvitations => "open_invitations",
            Quota::RegistrationTokens => "registration_tokens",
            Quota::Schedules => "schedules",
            Quota::Webhooks => "webhooks",
        }
    }

    pub fn from_name(name: &str) -> Option<Quota> {
        Self::ALL.into_iter().find(|quota| quota.name() == name)
    }

    /// The platform default when the configuration does not set one.
    pub fn default_limit(self) -> i64 {
        const MIB: i64 = 1 << 20;
        const GIB: i64 = 1 << 30;
        match self {
            Quota::QueuedExecutions => 500,
            Quota::RunningExecutions => 50,
            Quota::Pipelines => 500,
            Quota::PipelineDefinitionBytes => 256 * 1024,
            Quota::StepsPerPipeline => super::pipeline::MAX_STEPS as i64,
            Quota::Agents => 100,
            Quota::Monitors => 200,
            Quota::VariableGroups => 100,
            Quota::LogBytesPerExecution => 256 * MIB,
            Quota::LogBytesStored => 20 * GIB,
            Quota::ArtifactBytesPerExecution => 2 * GIB,
            Quota::ArtifactBytesStored => 50 * GIB,
            Quota::WatchStreamsPerCaller => 32,
            Quota::LogRetentionDays => 90,
            Quota::ArtifactRetentionDays => 90,
            Quota::ExecutionRetentionDays => 365,
            Quota::OpenInvitations => 100,
            Quota::RegistrationTokens => 100,
            Quota::Schedules => 100,
            Quota::Webhooks => 50,
        }
    }

    /// The largest limit the server accepts: some quotas sit under a hard limit of their own
    /// (a pipeline has at most `MAX_STEPS` steps whatever its quota).
    pub fn ceiling(self) -> i64 {
        match self {
            Quota::StepsPerPipeline => super::pipeline::MAX_STEPS as i64,
            Quota::LogRetentionDays
            | Quota::ArtifactRetentionDays
            | Quota::ExecutionRetentionDays => 36_500,
            _ => i64::MAX / 2,
        }
    }

    /// Whether the quota bounds something a customer holds at a time (so GetCustomerQuotas
    /// reports its use), rather than the size of one record or request.
    pub fn has_use(self) -> bool {
        !matches!(
            self,
            Quota::PipelineDefinitionBytes
                | Quota::StepsPerPipeline
                | Quota::LogBytesPerExecution
                | Quota::ArtifactBytesPerExecution
                | Quota::WatchStreamsPerCaller
                | Quota::LogRetentionDays
                | Quota::ArtifactRetentionDays
                | Quota::ExecutionRetentionDays
        )
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// The limits in force: the platform defaults with a customer's overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaLimits {
    limits: BTreeMap<Quota, i64>,
}

impl Default for QuotaLimits {
    fn default() -> Self {
        Self {
            limits: Quota::ALL
                .into_iter()
                .map(|quota| (quota, quota.default_limit()))
                .collect(),
        }
    }
}

impl QuotaLimits {
    pub fn get(&self, quota: Quota) -> i64 {
        self.limits
            .get(&quota)
            .copied()
            .unwrap_or_else(|| quota.default_limit())
    }

    pub fn set(&mut self, quota: Quota, limit: i64) {
        self.limits.insert(quota, limit);
    }

    /// Refuses `wanted` more of `quota` when `used` are in use already.
    pub fn check(
        &self,
        customer_id: CustomerId,
        quota: Quota,
        used: i64,
        wanted: i64,
    ) -> Result<(), QuotaExceeded> {
        let limit = self.get(quota);
        if used.saturating_add(wanted) > limit {
            return Err(QuotaExceeded {
                customer_id,
                quota,
                limit,
                used,
                wanted,
            });
        }
        Ok(())
    }
}

/// A change refused because it would take a customer past a quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub customer_id: CustomerId,
    pub quota: Quota,
    pub limit: i64,
    /// What the customer uses now (0 for a quota on the size of one record).
    pub used: i64,
    /// How much more the refused change needed.
    pub wanted: i64,
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "quota {} of customer {} exceeded: limit {}, in use {}, asked for {} more",
            self.quota, self.customer_id, self.limit, self.used, self.wanted
        )
    }
}

impl std::error::Error for QuotaExceeded {}

/// One quota as a customer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaUse {
    pub quota: Quota,
    pub limit: i64,
    /// What the customer uses now; `None` for quotas on the size of one record.
    pub used: Option<i64>,
    /// The limit is this customer's own, not the platform default.
    pub overridden: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut names = std::collections::HashSet::new();
        for quota in Quota::ALL {
            assert_eq!(Quota::from_name(quota.name()), Some(quota));
            assert!(names.insert(quota.name()));
            assert!(quota.default_limit() > 0);
            assert!(quota.default_limit() <= quota.ceiling());
        }
        assert_eq!(Quota::from_name("bogus"), None);
    }

    #[test]
    fn a_check_refuses_what_would_pass_the_limit_and_says_so() {
        let mut limits = QuotaLimits::default();
        limits.set(Quota::QueuedExecutions, 10);
        let customer = CustomerId::from_db(7);
        assert_eq!(
            limits.check(customer, Quota::QueuedExecutions, 9, 1),
            Ok(())
        );
        let refused = limits
            .check(customer, Quota::QueuedExecutions, 10, 1)
            .expect_err("over");
        assert_eq!(
            refused.to_string(),
            "quota queued_executions of customer 7 exceeded: limit 10, in use 10, asked for 1 more"
        );
        // Sizes: the use is what is asked for.
        limits.set(Quota::PipelineDefinitionBytes, 100);
        assert!(
            limits
                .check(customer, Quota::PipelineDefinitionBytes, 0, 101)
                .is_err()
        );
    }
}
