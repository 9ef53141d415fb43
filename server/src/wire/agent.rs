//! Agents: registration and settings on the way in; job assignments and monitor checks on the
//! way out to an agent's stream.

use cygnet_proto::v1 as pb;

use super::common::parse_timestamp;
use super::pipeline::step_to_pb;
use crate::domain::agent::{host_fact, labels, max_concurrent_jobs, uuid};
use crate::domain::execution::QueuedExecution;
use crate::domain::monitor::{MonitorKind, MonitorSettings};
use crate::domain::validate::{optional_line, required_line};
use crate::domain::{
    AgentPatch, AgentRegistration, AgentStatus, CustomerId, NewRegistrationToken, ValidationError,
};
use crate::store::{JobVariable, ReleaseContext, now};

impl TryFrom<&pb::RegisterAgentRequest> for AgentRegistration {
    type Error = ValidationError;

    fn try_from(request: &pb::RegisterAgentRequest) -> Result<Self, ValidationError> {
        let uuid = uuid("uuid", &request.uuid)?;
        let name = if request.name.is_empty() {
            uuid.clone()
        } else {
            optional_line("name", &request.name, 200)?
        };
        Ok(AgentRegistration {
            customer_id: CustomerId::parse(request.customer_id, "customer_id")?,
            name,
            location: optional_line("location", &request.location, 200)?,
            labels: labels("labels", &request.labels)?,
            hostname: host_fact("hostname", &request.hostname)?,
            os: host_fact("os", &request.os)?,
            arch: host_fact("arch", &request.arch)?,
            version: host_fact("version", &request.version)?,
            max_concurrent_jobs: max_concurrent_jobs(
                "max_concurrent_jobs",
                request.max_concurrent_jobs,
                true,
            )?,
            uuid,
        })
    }
}

impl TryFrom<&pb::CreateRegistrationTokenRequest> for NewRegistrationToken {
    type Error = ValidationError;

    fn try_from(request: &pb::CreateRegistrationTokenRequest) -> Result<Self, ValidationError> {
        let expires_at = request
            .expires_at
            .as_ref()
            .map(|value| parse_timestamp("expires_at", value))
            .transpose()?;
        if expires_at.is_some_and(|expires_at| expires_at <= now()) {
            return Err(ValidationError::new("expires_at", "must be in the future"));
        }
        if request.max_uses < 0 {
            return Err(ValidationError::new(
                "max_uses",
                "must be 0 (unlimited) or positive",
            ));
        }
        Ok(NewRegistrationToken {
            description: optional_line("description", &request.description, 200)?,
            expires_at,
            max_uses: request.max_uses,
        })
    }
}

impl TryFrom<&pb::UpdateAgentRequest> for AgentPatch {
    type Error = ValidationError;

    fn try_from(request: &pb::UpdateAgentRequest) -> Result<Self, ValidationError> {
        Ok(AgentPatch {
            name: request
                .name
                .as_deref()
                .map(|name| required_line("name", name, 200))
                .transpose()?,
            location: request
                .location
                .as_deref()
                .map(|location| optional_line("location", location, 200))
                .transpose()?,
            labels: request
                .set_labels
                .then(|| labels("labels", &request.labels))
                .transpose()?,
            enabled: request.enabled,
            max_concurrent_jobs: request
                .max_concurrent_jobs
                .map(|max| max_concurrent_jobs("max_concurrent_jobs", max, false))
                .transpose()?,
        })
    }
}

pub fn parse_status_filter(value: i32) -> Result<Option<AgentStatus>, ValidationError> {
    match pb::AgentStatus::try_from(value) {
        Ok(pb::AgentStatus::Unspecified) => Ok(None),
        Ok(pb::AgentStatus::Online) => Ok(Some(AgentStatus::Online)),
        Ok(pb::AgentStatus::Offline) => Ok(Some(AgentStatus::Offline)),
        Err(_) => Err(ValidationError::new(
            "status",
            format!("has unknown value {value}"),
        )),
    }
}

/// What an agent is told to run: the execution's snapshot, the release it deploys (if any) and
/// its variables.
pub fn job_assignment(
    execution: &QueuedExecution,
    release: Option<ReleaseContext>,
    variables: Vec<JobVariable>,
) -> pb::JobAssignment {
    pb::JobAssignment {
        execution_id: execution.id.get(),
        customer_id: execution.customer_id.get(),
        pipeline_id: execution.pipeline_id.get(),
        pipeline_name: execution.pipeline_name.clone(),
        steps: execution.steps.iter().map(step_to_pb).collect(),
        parameters: execution.parameters.clone().into_iter().collect(),
        timeout_seconds: execution.timeout_seconds,
        release: release.map(release_context),
        variables: variables
            .into_iter()
            .map(|variable| pb::JobVariable {
                key: variable.key,
                value: variable.value,
                is_secret: variable.is_secret,
            })
            .collect(),
    }
}

fn release_context(context: ReleaseContext) -> pb::ReleaseContext {
    pb::ReleaseContext {
        release_name: context.release_name,
        release_number: context.release_number,
        environment_name: context.environment_name,
        version: context.version,
        artifacts: context
            .artifacts
            .into_iter()
            .map(|(pipeline_id, artifact)| pb::ShippedArtifact {
                artifact_id: artifact.id,
                pipeline_id: pipeline_id.get(),
                path: artifact.path,
                size_bytes: artifact.size_bytes,
                sha256: artifact.sha256,
            })
            .collect(),
    }
}

/// A monitor as its agent runs it.
pub fn monitor_check(monitor_id: i64, settings: &MonitorSettings) -> pb::MonitorCheck {
    pb::MonitorCheck {
        monitor_id,
        kind: match settings.kind {
            MonitorKind::Http => pb::MonitorKind::Http,
            MonitorKind::Tcp => pb::MonitorKind::Tcp,
        }
        .into(),
        target: settings.target.clone(),
        interval_seconds: settings.interval_seconds,
        timeout_ms: settings.timeout_ms,
        expected_status: settings.expected_status,
    }
}
