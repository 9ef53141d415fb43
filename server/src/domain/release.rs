//! Releases: environments, release definitions and their stages, release executions and the
//! stage state machine (`pending → awaiting_approval → in_progress → succeeded | failed |
//! cancelled | skipped`).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use super::pipeline::AgentSelector;
use super::validate::{ValidationError, optional_text, required_line};
use super::{
    CustomerId, EnvironmentId, ExecutionId, PipelineId, ReleaseExecutionId, ReleaseId, Role,
    StageExecutionId, UserId,
};

/// Most stages in a release.
pub const MAX_STAGES: usize = 20;

/// The seed's default environments: (name, order, requires approval, approver roles).
pub const DEFAULT_ENVIRONMENTS: [(&str, i32, bool, &[Role]); 4] = [
    (
        "Development",
        1,
        false,
        &[Role::Admin, Role::Devops, Role::Developer],
    ),
    ("QA", 2, false, &[Role::Admin, Role::Devops, Role::Qa]),
    ("Staging", 3, true, &[Role::Admin, Role::Devops, Role::Qa]),
    ("Production", 4, true, &[Role::Admin, Role::Devops]),
];

/// A place a customer deploys to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub id: EnvironmentId,
    pub customer_id: CustomerId,
    pub name: String,
    pub description: String,
    pub order: i32,
    pub requires_approval: bool,
    pub approver_roles: Vec<Role>,
    /// Whoever deployed may approve a stage here themselves (off by default: four eyes).
    pub allow_self_approval: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A validated new environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnvironment {
    pub name: String,
    pub description: String,
    pub order: i32,
    pub requires_approval: bool,
    pub approver_roles: Vec<Role>,
    pub allow_self_approval: bool,
}

/// A validated partial update of an environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub order: Option<i32>,
    pub requires_approval: Option<bool>,
    pub approver_roles: Option<Vec<Role>>,
    pub allow_self_approval: Option<bool>,
}

pub fn environment_name(field: &str, value: &str) -> Result<String, ValidationError> {
    required_line(field, value, 100)
}

pub fn environment_description(field: &str, value: &str) -> Result<String, ValidationError> {
    optional_text(field, value, 2000)
}

/// Whether a release can be deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseStatus {
    Active,
    Disabled,
    Archived,
}

impl ReleaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Active => "active",
            ReleaseStatus::Disabled => "disabled",
            ReleaseStatus::Archived => "archived",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        [
            ReleaseStatus::Active,
            ReleaseStatus::Disabled,
            ReleaseStatus::Archived,
        ]
        .into_iter()
        .find(|status| status.as_str() == value)
    }
}

/// One stage of a release definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDefinition {
    pub order: i32,
    pub environment_id: EnvironmentId,
    pub pipeline_id: PipelineId,
    /// Overrides the deploy pipeline's selector when set.
    pub selector: Option<AgentSelector>,
    /// Overrides the environment's approval rule when set.
    pub requires_approval: Option<bool>,
    pub parameters: BTreeMap<String, String>,
}

/// A validated release definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseDefinition {
    pub name: String,
    pub description: String,
    pub pipeline_ids: Vec<PipelineId>,
    pub stages: Vec<StageDefinition>,
}

/// A stored release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub id: ReleaseId,
    pub customer_id: CustomerId,
    pub status: ReleaseStatus,
    pub definition: ReleaseDefinition,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A validated partial update of a release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleasePatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<ReleaseStatus>,
    pub pipeline_ids: Option<Vec<PipelineId>>,
    pub stages: Option<Vec<StageDefinition>>,
}

/// Checks the shape of stages: 1-20, unique positive orders, returned sorted by order.
pub fn stages(mut stages: Vec<StageDefinition>) -> Result<Vec<StageDefinition>, ValidationError> {
    if stages.is_empty() {
        return Err(ValidationError::new(
            "stages",
            "must have at least one stage",
        ));
    }
    if stages.len() > MAX_STAGES {
        return Err(ValidationError::new(
            "stages",
            format!("must have at most {MAX_STAGES} stages"),
        ));
    }
    let mut orders = HashSet::new();
    for (index, stage) in stages.iter().enumerate() {
        if stage.order < 1 {
            return Err(ValidationError::new(
                format!("stages[{index}].order"),
                "must be positive",
            ));
        }
        if !orders.insert(stage.order) {
            return Err(ValidationError::new(
                format!("stages[{index}].order"),
                format!("{} is used by another stage", stage.order),
            ));
        }
    }
    stages.sort_by_key(|stage| stage.order);
    Ok(stages)
}

/// Checks associated pipelines: no repeats, at most 20.
pub fn pipeline_ids(ids: Vec<PipelineId>) -> Result<Vec<PipelineId>, ValidationError> {
    if ids.len() > 20 {
        return Err(ValidationError::new(
            "pipeline_ids",
            "must have at most 20 pipelines",
        ));
    }
    let mut seen = HashSet::new();
    for (index, id) in ids.iter().enumerate() {
        if !seen.insert(*id) {
            return Err(ValidationError::new(
                format!("pipeline_ids[{index}]"),
                format!("repeats pipeline {id}"),
            ));
        }
    }
    Ok(ids)
}

/// Where a release execution is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseExecutionStatus {
    Pending,
    InProgress,
    Succeeded,
    Failed,
    Cancelled,
    Rejected,
}

impl ReleaseExecutionStatus {
    pub const ALL: [ReleaseExecutionStatus; 6] = [
        ReleaseExecutionStatus::Pending,
        ReleaseExecutionStatus::InProgress,
        ReleaseExecutionStatus::Succeeded,
        ReleaseExecutionStatus::Failed,
        ReleaseExecutionStatus::Cancelled,
        ReleaseExecutionStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseExecutionStatus::Pending => "pending",
            ReleaseExecutionStatus::InProgress => "in_progress",
            ReleaseExecutionStatus::Succeeded => "succeeded",
            ReleaseExecutionStatus::Failed => "failed",
            ReleaseExecutionStatus::Cancelled => "cancelled",
            ReleaseExecutionStatus::Rejected => "rejected",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            ReleaseExecutionStatus::Pending | ReleaseExecutionStatus::InProgress
        )
    }
}

/// Where a stage execution is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageStatus {
    Pending,
    AwaitingApproval,
    InProgress,
    Succeeded,
    Failed,
    Cancelled,
    Skipped,
}

impl StageStatus {
    pub const ALL: [StageStatus; 7] = [
        StageStatus::Pending,
        StageStatus::AwaitingApproval,
        StageStatus::InProgress,
        StageStatus::Succeeded,
        StageStatus::Failed,
        StageStatus::Cancelled,
        StageStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Pending => "pending",
            StageStatus::AwaitingApproval => "awaiting_approval",
            StageStatus::InProgress => "in_progress",
            StageStatus::Succeeded => "succeeded",
            StageStatus::Failed => "failed",
            StageStatus::Cancelled => "cancelled",
            StageStatus::Skipped => "skipped",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }
}

/// One stage of a release execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageExecution {
    pub id: StageExecutionId,
    pub order: i32,
    pub environment_id: EnvironmentId,
    pub environment_name: String,
    pub pipeline_id: PipelineId,
    pub status: StageStatus,
    pub requires_approval: bool,
    pub execution_id: Option<ExecutionId>,
    pub approved_by: Option<UserId>,
    pub approved_at: Option<DateTime<Utc>>,
    pub rejected_by: Option<UserId>,
    pub comment: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub reason: String,
    /// The deploy pipeline's steps version it runs (0: deployed before versions were pinned).
    pub pipeline_version: i32,
    /// The digest of its snapshot (see `domain::snapshot`); empty before snapshots.
    pub snapshot_digest: String,
}

/// A release execution with its stages and shipped builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseExecution {
    pub id: ReleaseExecutionId,
    pub customer_id: CustomerId,
    pub release_id: ReleaseId,
    pub release_name: String,
    pub number: i64,
    pub version: String,
    pub status: ReleaseExecutionStatus,
    pub stages: Vec<StageExecution>,
    pub builds: Vec<(PipelineId, ExecutionId)>,
    pub parameters: BTreeMap<String, String>,
    pub triggered_by: UserId,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A validated deployment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequest {
    pub version: String,
    pub builds: Vec<(PipelineId, ExecutionId)>,
    pub parameters: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(order: i32) -> StageDefinition {
        StageDefinition {
            order,
            environment_id: EnvironmentId::from_db(1),
            pipeline_id: PipelineId::from_db(1),
            selector: None,
            requires_approval: None,
            parameters: BTreeMap::new(),
        }
    }

    #[test]
    fn stage_orders_are_unique_and_sorted() {
        let sorted = stages(vec![stage(3), stage(1), stage(2)]).expect("valid");
        assert_eq!(
            sorted.iter().map(|stage| stage.order).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(
            stages(vec![stage(1), stage(1)])
                .expect_err("duplicate")
                .field(),
            "stages[1].order"
        );
        assert_eq!(
            stages(vec![stage(0)]).expect_err("zero").field(),
            "stages[0].order"
        );
        assert_eq!(stages(vec![]).expect_err("empty").field(), "stages");
    }
}
