//! Executions: runs of a pipeline, their steps, logs and artifacts, and the state machine
//! `queued → assigned → running → {succeeded, failed, cancelled, timed_out}`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::pipeline::{AgentSelector, StepDefinition};
use super::{AgentId, CustomerId, ExecutionId, PipelineId, UserId};

/// Where an execution is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecutionStatus {
    Queued,
    Assigned,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl ExecutionStatus {
    pub const ALL: [ExecutionStatus; 7] = [
        ExecutionStatus::Queued,
        ExecutionStatus::Assigned,
        ExecutionStatus::Running,
        ExecutionStatus::Succeeded,
        ExecutionStatus::Failed,
        ExecutionStatus::Cancelled,
        ExecutionStatus::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "queued",
            ExecutionStatus::Assigned => "assigned",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Cancelled => "cancelled",
            ExecutionStatus::TimedOut => "timed_out",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }

    /// Whether the execution has ended; a terminal status never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Succeeded
                | ExecutionStatus::Failed
                | ExecutionStatus::Cancelled
                | ExecutionStatus::TimedOut
        )
    }

    /// The statuses an agent holds a lease on.
    pub const ON_AGENT: [ExecutionStatus; 2] =
        [ExecutionStatus::Assigned, ExecutionStatus::Running];
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
    TimedOut,
}

impl StepStatus {
    pub const ALL: [StepStatus; 7] = [
        StepStatus::Pending,
        StepStatus::Running,
        StepStatus::Succeeded,
        StepStatus::Failed,
        StepStatus::Skipped,
        StepStatus::Cancelled,
        StepStatus::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
            StepStatus::TimedOut => "timed_out",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, StepStatus::Pending | StepStatus::Running)
    }
}

/// Where a piece of log output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
    System,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        [LogStream::Stdout, LogStream::Stderr, LogStream::System]
            .into_iter()
            .find(|stream| stream.as_str() == value)
    }
}

/// One step of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepExecution {
    pub index: i32,
    pub name: String,
    pub status: StepStatus,
    pub exit_code: Option<i32>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub reason: String,
}

/// An execution as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub id: ExecutionId,
    pub customer_id: CustomerId,
    pub pipeline_id: PipelineId,
    pub pipeline_name: String,
    pub status: ExecutionStatus,
    pub parameters: BTreeMap<String, String>,
    pub triggered_by: UserId,
    pub triggered_by_username: String,
    pub agent_id: Option<AgentId>,
    pub queue_reason: String,
    pub failure_reason: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Empty in listings; GetExecution fills it.
    pub steps: Vec<StepExecution>,
    pub retry_of: Option<ExecutionId>,
    pub timeout_seconds: i32,
    pub trigger: Trigger,
    /// For a webhook's run, the delivery's event, branch and commit ("" otherwise).
    pub trigger_event: String,
    pub trigger_branch: String,
    pub trigger_commit: String,
}

/// A queued execution as dispatch matches it against agents: whose it is and which agent it
/// needs. What it runs is read only once it has been claimed ([`QueuedExecution`]), so a round's
/// cost does not grow with the size of pipeline definitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCandidate {
    pub id: ExecutionId,
    pub customer_id: CustomerId,
    pub selector: AgentSelector,
    pub queue_reason: String,
}

/// What dispatch needs of a claimed execution to deliver it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedExecution {
    pub id: ExecutionId,
    pub customer_id: CustomerId,
    pub pipeline_id: PipelineId,
    pub pipeline_name: String,
    /// Shared with the other runs of the same version of the pipeline's steps.
    pub steps: std::sync::Arc<Vec<StepDefinition>>,
    pub parameters: BTreeMap<String, String>,
    pub timeout_seconds: i32,
    /// When it was queued.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// It runs a release stage (its assignment carries the release context).
    pub deploy: bool,
    /// The variable groups its pipeline names (resolved into values when it is delivered).
    pub variable_group_ids: Vec<super::VariableGroupId>,
}

/// A validated request to run a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    pub pipeline_id: PipelineId,
    /// The caller's parameters, before the pipeline's defaults are applied.
    pub parameters: BTreeMap<String, String>,
    /// One agent of the customer instead of the pipeline's selector.
    pub agent_id: Option<AgentId>,
    pub trigger: Trigger,
}

/// Why an execution was queued. Its user is stored as `triggered_by` and a retry's original as
/// `retry_of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A member asked for it (RunPipeline, the dashboard's Run button).
    User(UserId),
    /// A member retried an earlier execution.
    Retry { by: UserId, of: ExecutionId },
    /// A release stage deploys with it; the release's deployer counts as who triggered it.
    ReleaseStage {
        deployed_by: UserId,
        release: super::ReleaseExecutionId,
        stage: super::StageExecutionId,
    },
    /// A schedule's tick; the schedule's creator counts as who triggered it.
    Schedule {
        owner: UserId,
        schedule: super::ScheduleId,
    },
    /// A webhook delivery; the webhook's creator counts as who triggered it.
    Webhook {
        owner: UserId,
        webhook: super::WebhookId,
        delivery: super::WebhookDeliveryId,
    },
}

/// The kinds of [`Trigger`], as stored (`executions.trigger_kind`) and filtered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerKind {
    User,
    Retry,
    ReleaseStage,
    Schedule,
    Webhook,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::User => "user",
            TriggerKind::Retry => "retry",
            TriggerKind::ReleaseStage => "release_stage",
            TriggerKind::Schedule => "schedule",
            TriggerKind::Webhook => "webhook",
        }
    }

    /// The kind stored as `text`; rows of a kind this version does not know read as a user's.
    pub fn parse(text: &str) -> TriggerKind {
        match text {
            "retry" => TriggerKind::Retry,
            "release_stage" => TriggerKind::ReleaseStage,
            "schedule" => TriggerKind::Schedule,
            "webhook" => TriggerKind::Webhook,
            _ => TriggerKind::User,
        }
    }
}

impl Trigger {
    /// The user recorded as having triggered the execution.
    pub fn triggered_by(self) -> UserId {
        match self {
            Trigger::User(user) => user,
            Trigger::Retry { by, .. } => by,
            Trigger::ReleaseStage { deployed_by, .. } => deployed_by,
            Trigger::Schedule { owner, .. } | Trigger::Webhook { owner, .. } => owner,
        }
    }

    /// The execution this one retries.
    pub fn retry_of(self) -> Option<ExecutionId> {
        match self {
            Trigger::Retry { of, .. } => Some(of),
            _ => None,
        }
    }

    pub fn kind(self) -> TriggerKind {
        match self {
            Trigger::User(_) => TriggerKind::User,
            Trigger::Retry { .. } => TriggerKind::Retry,
            Trigger::ReleaseStage { .. } => TriggerKind::ReleaseStage,
            Trigger::Schedule { .. } => TriggerKind::Schedule,
            Trigger::Webhook { .. } => TriggerKind::Webhook,
        }
    }

    /// The webhook and delivery of a webhook's run.
    pub fn webhook(self) -> Option<(super::WebhookId, super::WebhookDeliveryId)> {
        match self {
            Trigger::Webhook {
                webhook, delivery, ..
            } => Some((webhook, delivery)),
            _ => None,
        }
    }

    /// The schedule of a scheduled run.
    pub fn schedule(self) -> Option<super::ScheduleId> {
        match self {
            Trigger::Schedule { schedule, .. } => Some(schedule),
            _ => None,
        }
    }

    /// The deployment and stage of a release stage's run.
    pub fn release_stage(self) -> Option<(super::ReleaseExecutionId, super::StageExecutionId)> {
        match self {
            Trigger::ReleaseStage { release, stage, .. } => Some((release, stage)),
            _ => None,
        }
    }

    /// The trigger a stored row describes (`None` parts read as a user's run, as before
    /// triggers were recorded).
    pub fn from_parts(
        kind: TriggerKind,
        by: UserId,
        retry_of: Option<ExecutionId>,
        stage: Option<(super::ReleaseExecutionId, super::StageExecutionId)>,
        schedule: Option<super::ScheduleId>,
        webhook: Option<(super::WebhookId, super::WebhookDeliveryId)>,
    ) -> Trigger {
        if let (TriggerKind::Webhook, Some((webhook, delivery))) = (kind, webhook) {
            return Trigger::Webhook {
                owner: by,
                webhook,
                delivery,
            };
        }
        match (kind, retry_of, stage, schedule) {
            (TriggerKind::Retry, Some(of), _, _) => Trigger::Retry { by, of },
            (TriggerKind::ReleaseStage, _, Some((release, stage)), _) => Trigger::ReleaseStage {
                deployed_by: by,
                release,
                stage,
            },
            (TriggerKind::Schedule, _, _, Some(schedule)) => Trigger::Schedule {
                owner: by,
                schedule,
            },
            _ => Trigger::User(by),
        }
    }
}

/// Which executions a listing wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    pub pipeline_id: Option<PipelineId>,
    pub status: Option<ExecutionStatus>,
    pub trigger_kind: Option<TriggerKind>,
}

/// A piece of an execution's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub sequence: i64,
    pub step_index: i32,
    pub stream: LogStream,
    pub text: String,
    pub logged_at: DateTime<Utc>,
}

/// A stored artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub id: i64,
    pub execution_id: ExecutionId,
    pub step_index: i32,
    pub path: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub storage_key: String,
    pub created_at: DateTime<Utc>,
}

/// An artifact an agent uploads, as its header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewArtifact {
    pub execution_id: ExecutionId,
    pub step_index: i32,
    /// Relative to the job's workspace, without `..`.
    pub path: String,
    pub size_bytes: i64,
    /// Lowercase hex.
    pub sha256: String,
}

/// One event of a job, as an agent reports it (see `JobEvent` in the contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEventInput {
    pub execution_id: ExecutionId,
    pub sequence: i64,
    pub occurred_at: DateTime<Utc>,
    pub kind: JobEventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEventKind {
    Started {
        workspace: String,
    },
    Rejected {
        reason: String,
    },
    StepStarted {
        step_index: i32,
    },
    Log {
        step_index: i32,
        stream: LogStream,
        text: String,
    },
    StepFinished {
        step_index: i32,
        status: StepStatus,
        exit_code: Option<i32>,
        reason: String,
    },
    Finished {
        status: ExecutionStatus,
        reason: String,
    },
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEventOutcome {
    /// Every event up to this sequence is stored: the acknowledgement to send.
    pub acknowledged: i64,
    /// Whether this event was new (stored now) rather than a repeat.
    pub stored: bool,
    /// The execution's status when this event ended it.
    pub finished: Option<ExecutionStatus>,
}
