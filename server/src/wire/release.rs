//! Conversions of the release contract.

use cygnet_proto::v1 as pb;

use super::common::{parse_role, role_to_pb, timestamp};
use crate::domain::ids::parse_optional;
use crate::domain::pipeline::AgentSelector;
use crate::domain::release::{
    self, DeployRequest, Environment, EnvironmentPatch, NewEnvironment, Release, ReleaseDefinition,
    ReleaseExecution, ReleaseExecutionStatus, ReleasePatch, ReleaseStatus, StageDefinition,
    StageExecution, StageStatus,
};
use crate::domain::validate::{optional_line, optional_text, required_line};
use crate::domain::{
    AgentId, EnvironmentId, ExecutionId, PipelineId, Role, UserId, ValidationError,
};

fn roles(field: &str, values: &[i32]) -> Result<Vec<Role>, ValidationError> {
    let mut roles = Vec::new();
    for (index, value) in values.iter().enumerate() {
        let role = parse_role(&format!("{field}[{index}]"), *value)?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(roles)
}

impl TryFrom<&pb::CreateEnvironmentRequest> for NewEnvironment {
    type Error = ValidationError;

    fn try_from(request: &pb::CreateEnvironmentRequest) -> Result<Self, ValidationError> {
        let approver_roles = roles("approver_roles", &request.approver_roles)?;
        if request.requires_approval && approver_roles.is_empty() {
            return Err(ValidationError::new(
                "approver_roles",
                "must name at least one role when approval is required",
            ));
        }
        Ok(NewEnvironment {
            name: release::environment_name("name", &request.name)?,
            description: release::environment_description("description", &request.description)?,
            order: request.order,
            requires_approval: request.requires_approval,
            approver_roles,
            allow_self_approval: request.allow_self_approval,
        })
    }
}

impl TryFrom<&pb::UpdateEnvironmentRequest> for EnvironmentPatch {
    type Error = ValidationError;

    fn try_from(request: &pb::UpdateEnvironmentRequest) -> Result<Self, ValidationError> {
        Ok(EnvironmentPatch {
            name: request
                .name
                .as_deref()
                .map(|name| release::environment_name("name", name))
                .transpose()?,
            description: request
                .description
                .as_deref()
                .map(|text| release::environment_description("description", text))
                .transpose()?,
            order: request.order,
            requires_approval: request.requires_approval,
            approver_roles: request
                .set_approver_roles
                .then(|| roles("approver_roles", &request.approver_roles))
                .transpose()?,
            allow_self_approval: request.allow_self_approval,
        })
    }
}

fn stages_from_pb(stages: &[pb::ReleaseStage]) -> Result<Vec<StageDefinition>, ValidationError> {
    let definitions = stages
        .iter()
        .enumerate()
        .map(|(index, stage)| {
            let field = |name: &str| format!("stages[{index}].{name}");
            let selector = match &stage.agent_selector {
                None => None,
                Some(selector) => Some(AgentSelector {
                    agent_id: parse_optional(
                        selector.agent_id,
                        &field("agent_selector.agent_id"),
                        AgentId::parse,
                    )?,
                    labels: crate::domain::agent::labels(
                        &field("agent_selector.labels"),
                        &selector.labels,
                    )?,
                }),
            };
            for (name, value) in &stage.parameters {
                if name.is_empty()
                    || value.len() > crate::domain::pipeline::MAX_PARAMETER_VALUE_BYTES
                {
                    return Err(ValidationError::new(
                        format!("stages[{index}].parameters[{name}]"),
                        "must have a name and at most 4096 bytes",
                    ));
                }
            }
            Ok(StageDefinition {
                order: stage.order,
                environment_id: EnvironmentId::parse(
                    stage.environment_id,
                    &field("environment_id"),
                )?,
                pipeline_id: PipelineId::parse(stage.pipeline_id, &field("pipeline_id"))?,
                selector,
                requires_approval: stage.requires_approval,
                parameters: stage.parameters.clone().into_iter().collect(),
            })
        })
        .collect::<Result<Vec<_>, ValidationError>>()?;
    release::stages(definitions)
}

fn pipeline_ids_from_pb(ids: &[i64]) -> Result<Vec<PipelineId>, ValidationError> {
    let ids = ids
        .iter()
        .enumerate()
        .map(|(index, id)| PipelineId::parse(*id, &format!("pipeline_ids[{index}]")))
        .collect::<Result<Vec<_>, _>>()?;
    release::pipeline_ids(ids)
}

impl TryFrom<&pb::CreateReleaseRequest> for ReleaseDefinition {
    type Error = ValidationError;

    fn try_from(request: &pb::CreateReleaseRequest) -> Result<Self, ValidationError> {
        Ok(ReleaseDefinition {
            name: required_line("name", &request.name, 200)?,
            description: optional_text("description", &request.description, 2000)?,
            pipeline_ids: pipeline_ids_from_pb(&request.pipeline_ids)?,
            stages: stages_from_pb(&request.stages)?,
        })
    }
}

impl TryFrom<&pb::UpdateReleaseRequest> for ReleasePatch {
    type Error = ValidationError;

    fn try_from(request: &pb::UpdateReleaseRequest) -> Result<Self, ValidationError> {
        let status = match pb::ReleaseStatus::try_from(request.status) {
            Ok(pb::ReleaseStatus::Unspecified) => None,
            Ok(pb::ReleaseStatus::Active) => Some(ReleaseStatus::Active),
            Ok(pb::ReleaseStatus::Disabled) => Some(ReleaseStatus::Disabled),
            Ok(pb::ReleaseStatus::Archived) => {
                return Err(ValidationError::new(
                    "status",
                    "use ArchiveRelease to archive",
                ));
            }
            Err(_) => {
                return Err(ValidationError::new(
                    "status",
                    format!("has unknown value {}", request.status),
                ));
            }
        };
        Ok(ReleasePatch {
            name: request
                .name
                .as_deref()
                .map(|name| required_line("name", name, 200))
                .transpose()?,
            description: request
                .description
                .as_deref()
                .map(|text| optional_text("description", text, 2000))
                .transpose()?,
            status,
            pipeline_ids: request
                .set_pipeline_ids
                .then(|| pipeline_ids_from_pb(&request.pipeline_ids))
                .transpose()?,
            stages: request
                .set_stages
                .then(|| stages_from_pb(&request.stages))
                .transpose()?,
        })
    }
}

impl TryFrom<&pb::DeployReleaseRequest> for DeployRequest {
    type Error = ValidationError;

    fn try_from(request: &pb::DeployReleaseRequest) -> Result<Self, ValidationError> {
        let builds = request
            .builds
            .iter()
            .enumerate()
            .map(|(index, build)| {
                Ok((
                    PipelineId::parse(build.pipeline_id, &format!("builds[{index}].pipeline_id"))?,
                    ExecutionId::parse(
                        build.execution_id,
                        &format!("builds[{index}].execution_id"),
                    )?,
                ))
            })
            .collect::<Result<Vec<_>, ValidationError>>()?;
        for (index, (pipeline_id, _)) in builds.iter().enumerate() {
            if builds[..index]
                .iter()
                .any(|(earlier, _)| earlier == pipeline_id)
            {
                return Err(ValidationError::new(
                    format!("builds[{index}].pipeline_id"),
                    "is given twice",
                ));
            }
        }
        Ok(DeployRequest {
            version: optional_line("version", &request.version, 100)?,
            builds,
            parameters: request.parameters.clone().into_iter().collect(),
        })
    }
}

/// A release execution status from a request: unspecified means "any".
pub fn release_status_filter(
    field: &str,
    value: i32,
) -> Result<Option<ReleaseExecutionStatus>, ValidationError> {
    match pb::ReleaseExecutionStatus::try_from(value) {
        Ok(pb::ReleaseExecutionStatus::Unspecified) => Ok(None),
        Ok(pb::ReleaseExecutionStatus::Pending) => Ok(Some(ReleaseExecutionStatus::Pending)),
        Ok(pb::ReleaseExecutionStatus::InProgress) => Ok(Some(ReleaseExecutionStatus::InProgress)),
        Ok(pb::ReleaseExecutionStatus::Succeeded) => Ok(Some(ReleaseExecutionStatus::Succeeded)),
        Ok(pb::ReleaseExecutionStatus::Failed) => Ok(Some(ReleaseExecutionStatus::Failed)),
        Ok(pb::ReleaseExecutionStatus::Cancelled) => Ok(Some(ReleaseExecutionStatus::Cancelled)),
        Ok(pb::ReleaseExecutionStatus::Rejected) => Ok(Some(ReleaseExecutionStatus::Rejected)),
        Err(_) => Err(ValidationError::new(
            field,
            format!("has unknown value {value}"),
        )),
    }
}

impl From<Environment> for pb::Environment {
    fn from(environment: Environment) -> Self {
        pb::Environment {
            id: environment.id.get(),
            customer_id: environment.customer_id.get(),
            name: environment.name,
            description: environment.description,
            order: environment.order,
            requires_approval: environment.requires_approval,
            approver_roles: environment
                .approver_roles
                .into_iter()
                .map(|role| role_to_pb(role).into())
                .collect(),
            created_at: timestamp(environment.created_at),
            updated_at: timestamp(environment.updated_at),
            allow_self_approval: environment.allow_self_approval,
        }
    }
}

impl From<Release> for pb::Release {
    fn from(release: Release) -> Self {
        pb::Release {
            id: release.id.get(),
            customer_id: release.customer_id.get(),
            name: release.definition.name,
            description: release.definition.description,
            status: match release.status {
                ReleaseStatus::Active => pb::ReleaseStatus::Active,
                ReleaseStatus::Disabled => pb::ReleaseStatus::Disabled,
                ReleaseStatus::Archived => pb::ReleaseStatus::Archived,
            }
            .into(),
            pipeline_ids: release
                .definition
                .pipeline_ids
                .into_iter()
                .map(PipelineId::get)
                .collect(),
            stages: release
                .definition
                .stages
                .into_iter()
                .map(|stage| pb::ReleaseStage {
                    order: stage.order,
                    environment_id: stage.environment_id.get(),
                    pipeline_id: stage.pipeline_id.get(),
                    agent_selector: stage.selector.map(|selector| pb::AgentSelector {
                        agent_id: selector.agent_id.map_or(0, AgentId::get),
                        labels: selector.labels,
                    }),
                    requires_approval: stage.requires_approval,
                    parameters: stage.parameters.into_iter().collect(),
                })
                .collect(),
            created_at: timestamp(release.created_at),
            updated_at: timestamp(release.updated_at),
            created_by: release.created_by.get(),
        }
    }
}

fn stage_status_to_pb(status: StageStatus) -> pb::StageStatus {
    match status {
        StageStatus::Pending => pb::StageStatus::Pending,
        StageStatus::AwaitingApproval => pb::StageStatus::AwaitingApproval,
        StageStatus::InProgress => pb::StageStatus::InProgress,
        StageStatus::Succeeded => pb::StageStatus::Succeeded,
        StageStatus::Failed => pb::StageStatus::Failed,
        StageStatus::Cancelled => pb::StageStatus::Cancelled,
        StageStatus::Skipped => pb::StageStatus::Skipped,
    }
}

impl From<StageExecution> for pb::StageExecution {
    fn from(stage: StageExecution) -> Self {
        pb::StageExecution {
            id: stage.id.get(),
            order: stage.order,
            environment_id: stage.environment_id.get(),
            environment_name: stage.environment_name,
            pipeline_id: stage.pipeline_id.get(),
            status: stage_status_to_pb(stage.status).into(),
            requires_approval: stage.requires_approval,
            execution_id: stage.execution_id.map_or(0, ExecutionId::get),
            approved_by: stage.approved_by.map_or(0, UserId::get),
            approved_at: stage.approved_at.and_then(timestamp),
            rejected_by: stage.rejected_by.map_or(0, UserId::get),
            comment: stage.comment,
            started_at: stage.started_at.and_then(timestamp),
            finished_at: stage.finished_at.and_then(timestamp),
            reason: stage.reason,
            pipeline_version: stage.pipeline_version,
            snapshot_digest: stage.snapshot_digest,
        }
    }
}

impl From<ReleaseExecution> for pb::ReleaseExecution {
    fn from(execution: ReleaseExecution) -> Self {
        pb::ReleaseExecution {
            id: execution.id.get(),
            customer_id: execution.customer_id.get(),
            release_id: execution.release_id.get(),
            name: format!("Release-{}", execution.number),
            release_name: execution.release_name,
            number: execution.number,
            version: execution.version,
            status: match execution.status {
                ReleaseExecutionStatus::Pending => pb::ReleaseExecutionStatus::Pending,
                ReleaseExecutionStatus::InProgress => pb::ReleaseExecutionStatus::InProgress,
                ReleaseExecutionStatus::Succeeded => pb::ReleaseExecutionStatus::Succeeded,
                ReleaseExecutionStatus::Failed => pb::ReleaseExecutionStatus::Failed,
                ReleaseExecutionStatus::Cancelled => pb::ReleaseExecutionStatus::Cancelled,
                ReleaseExecutionStatus::Rejected => pb::ReleaseExecutionStatus::Rejected,
            }
            .into(),
            stages: execution.stages.into_iter().map(Into::into).collect(),
            builds: execution
                .builds
                .into_iter()
                .map(|(pipeline_id, execution_id)| pb::ShippedBuild {
                    pipeline_id: pipeline_id.get(),
                    execution_id: execution_id.get(),
                })
                .collect(),
            parameters: execution.parameters.into_iter().collect(),
            triggered_by: execution.triggered_by.get(),
            reason: execution.reason,
            created_at: timestamp(execution.created_at),
            finished_at: execution.finished_at.and_then(timestamp),
        }
    }
}
