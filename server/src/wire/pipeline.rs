//! Conversions of the pipeline contract: requests into validated definitions, and pipelines,
//! executions, steps, logs and artifacts back into protobuf.

use std::collections::BTreeMap;

use cygnet_proto::v1 as pb;

use super::common::timestamp;
use crate::artifacts::MAX_ARTIFACT_BYTES;
use crate::domain::execution::{
    Artifact, Execution, ExecutionStatus, JobEventInput, JobEventKind, LogChunk, LogStream,
    NewArtifact, StepExecution, StepStatus, TriggerKind,
};
use crate::domain::ids::parse_optional;
use crate::domain::pipeline::{
    self, DEFAULT_TIMEOUT_SECONDS, ParameterDefinition, ParameterInput, ParameterType, Pipeline,
    PipelineDefinition, PipelinePatch, Shell, StepDefinition, StepInput,
};
use crate::domain::validate::optional_text;
use crate::domain::{AgentId, ExecutionId, ValidationError};

fn shell_from_pb(field: &str, value: i32) -> Result<Option<Shell>, ValidationError> {
    match pb::Shell::try_from(value) {
        Ok(pb::Shell::Unspecified) => Ok(None),
        Ok(pb::Shell::Bash) => Ok(Some(Shell::Bash)),
        Ok(pb::Shell::Sh) => Ok(Some(Shell::Sh)),
        Ok(pb::Shell::Pwsh) => Ok(Some(Shell::Pwsh)),
        Ok(pb::Shell::Cmd) => Ok(Some(Shell::Cmd)),
        Err(_) => Err(ValidationError::new(
            field,
            format!("has unknown value {value}"),
        )),
    }
}

fn shell_to_pb(shell: Shell) -> pb::Shell {
    match shell {
        Shell::Bash => pb::Shell::Bash,
        Shell::Sh => pb::Shell::Sh,
        Shell::Pwsh => pb::Shell::Pwsh,
        Shell::Cmd => pb::Shell::Cmd,
    }
}

fn parameter_type_from_pb(
    field: &str,
    value: i32,
) -> Result<Option<ParameterType>, ValidationError> {
    match pb::ParameterType::try_from(value) {
        Ok(pb::ParameterType::Unspecified) => Ok(None),
        Ok(pb::ParameterType::String) => Ok(Some(ParameterType::String)),
        Ok(pb::ParameterType::Number) => Ok(Some(ParameterType::Number)),
        Ok(pb::ParameterType::Boolean) => Ok(Some(ParameterType::Boolean)),
        Ok(pb::ParameterType::Choice) => Ok(Some(ParameterType::Choice)),
        Err(_) => Err(ValidationError::new(
            field,
            format!("has unknown value {value}"),
        )),
    }
}

fn parameter_type_to_pb(kind: ParameterType) -> pb::ParameterType {
    match kind {
        ParameterType::String => pb::ParameterType::String,
        ParameterType::Number => pb::ParameterType::Number,
        ParameterType::Boolean => pb::ParameterType::Boolean,
        ParameterType::Choice => pb::ParameterType::Choice,
    }
}

fn steps_from_pb(steps: &[pb::Step]) -> Result<Vec<StepDefinition>, ValidationError> {
    let inputs = steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            Ok(StepInput {
                name: step.name.clone(),
                command: step.command.clone(),
                shell: shell_from_pb(&format!("steps[{index}].shell"), step.shell)?,
                env: step.env.clone().into_iter().collect(),
                timeout_seconds: step.timeout_seconds,
                continue_on_error: step.continue_on_error,
                artifacts: step.artifacts.clone(),
            })
        })
        .collect::<Result<Vec<_>, ValidationError>>()?;
    pipeline::steps(inputs)
}

fn parameters_from_pb(
    parameters: &[pb::Parameter],
) -> Result<Vec<ParameterDefinition>, ValidationError> {
    let inputs = parameters
        .iter()
        .enumerate()
        .map(|(index, parameter)| {
            Ok(ParameterInput {
                name: parameter.name.clone(),
                kind: parameter_type_from_pb(
                    &format!("parameters[{index}].type"),
                    parameter.r#type,
                )?,
                default_value: parameter.default_value.clone(),
                required: parameter.required,
                description: parameter.description.clone(),
                choices: parameter.choices.clone(),
            })
        })
        .collect::<Result<Vec<_>, ValidationError>>()?;
    pipeline::parameters(inputs)
}

pub(crate) fn selector_from_pb(
    selector: Option<&pb::AgentSelector>,
) -> Result<pipeline::AgentSelector, ValidationError> {
    match selector {
        None => Ok(pipeline::AgentSelector::default()),
        Some(selector) => pipeline::selector(
            parse_optional(selector.agent_id, "agent_selector.agent_id", AgentId::parse)?,
            &selector.labels,
        ),
    }
}

impl TryFrom<&pb::CreatePipelineRequest> for PipelineDefinition {
    type Error = ValidationError;

    fn try_from(request: &pb::CreatePipelineRequest) -> Result<Self, ValidationError> {
        let timeout = match request.timeout_seconds {
            0 => DEFAULT_TIMEOUT_SECONDS,
            value => pipeline::timeout_seconds("timeout_seconds", value, false)?,
        };
        Ok(PipelineDefinition {
            name: pipeline::pipeline_name("name", &request.name)?,
            description: optional_text("description", &request.description, 2000)?,
            selector: selector_from_pb(request.agent_selector.as_ref())?,
            steps: steps_from_pb(&request.steps)?,
            parameters: parameters_from_pb(&request.parameters)?,
            timeout_seconds: timeout,
            variable_group_ids: pipeline::variable_group_ids(
                "variable_group_ids",
                &request.variable_group_ids,
            )?,
        })
    }
}

impl TryFrom<&pb::UpdatePipelineRequest> for PipelinePatch {
    type Error = ValidationError;

    fn try_from(request: &pb::UpdatePipelineRequest) -> Result<Self, ValidationError> {
        Ok(PipelinePatch {
            name: request
                .name
                .as_deref()
                .map(|name| pipeline::pipeline_name("name", name))
                .transpose()?,
            description: request
                .description
                .as_deref()
                .map(|description| optional_text("description", description, 2000))
                .transpose()?,
            selector: request
                .agent_selector
                .as_ref()
                .map(|selector| selector_from_pb(Some(selector)))
                .transpose()?,
            steps: request
                .set_steps
                .then(|| steps_from_pb(&request.steps))
                .transpose()?,
            parameters: request
                .set_parameters
                .then(|| parameters_from_pb(&request.parameters))
                .transpose()?,
            variable_group_ids: request
                .set_variable_group_ids
                .then(|| {
                    pipeline::variable_group_ids("variable_group_ids", &request.variable_group_ids)
                })
                .transpose()?,
            timeout_seconds: request
                .timeout_seconds
                .map(|value| pipeline::timeout_seconds("timeout_seconds", value, false))
                .transpose()?,
        })
    }
}

/// A step definition as sent to agents and shown to members.
pub fn step_to_pb(step: &StepDefinition) -> pb::Step {
    pb::Step {
        name: step.name.clone(),
        command: step.command.clone(),
        shell: shell_to_pb(step.shell).into(),
        env: step.env.clone().into_iter().collect(),
        timeout_seconds: step.timeout_seconds,
        continue_on_error: step.continue_on_error,
        artifacts: step.artifacts.clone(),
    }
}

pub fn execution_status_to_pb(status: ExecutionStatus) -> pb::ExecutionStatus {
    match status {
        ExecutionStatus::Queued => pb::ExecutionStatus::Queued,
        ExecutionStatus::Assigned => pb::ExecutionStatus::Assigned,
        ExecutionStatus::Running => pb::ExecutionStatus::Running,
        ExecutionStatus::Succeeded => pb::ExecutionStatus::Succeeded,
        ExecutionStatus::Failed => pb::ExecutionStatus::Failed,
        ExecutionStatus::Cancelled => pb::ExecutionStatus::Cancelled,
        ExecutionStatus::TimedOut => pb::ExecutionStatus::TimedOut,
    }
}

/// An execution status from a request: unspecified means "any".
pub fn execution_status_filter(
    field: &str,
    value: i32,
) -> Result<Option<ExecutionStatus>, ValidationError> {
    match pb::ExecutionStatus::try_from(value) {
        Ok(pb::ExecutionStatus::Unspecified) => Ok(None),
        Ok(status) => Ok(Some(execution_status_from_pb(status))),
        Err(_) => Err(ValidationError::new(
            field,
            format!("has unknown value {value}"),
        )),
    }
}

fn execution_status_from_pb(status: pb::ExecutionStatus) -> ExecutionStatus {
    match status {
        pb::ExecutionStatus::Queued | pb::ExecutionStatus::Unspecified => ExecutionStatus::Queued,
        pb::ExecutionStatus::Assigned => ExecutionStatus::Assigned,
        pb::ExecutionStatus::Running => ExecutionStatus::Running,
        pb::ExecutionStatus::Succeeded => ExecutionStatus::Succeeded,
        pb::ExecutionStatus::Failed => ExecutionStatus::Failed,
        pb::ExecutionStatus::Cancelled => ExecutionStatus::Cancelled,
        pb::ExecutionStatus::TimedOut => ExecutionStatus::TimedOut,
    }
}

fn step_status_to_pb(status: StepStatus) -> pb::StepStatus {
    match status {
        StepStatus::Pending => pb::StepStatus::Pending,
        StepStatus::Running => pb::StepStatus::Running,
        StepStatus::Succeeded => pb::StepStatus::Succeeded,
        StepStatus::Failed => pb::StepStatus::Failed,
        StepStatus::Skipped => pb::StepStatus::Skipped,
        StepStatus::Cancelled => pb::StepStatus::Cancelled,
        StepStatus::TimedOut => pb::StepStatus::TimedOut,
    }
}

fn log_stream_to_pb(stream: LogStream) -> pb::LogStream {
    match stream {
        LogStream::Stdout => pb::LogStream::Stdout,
        LogStream::Stderr => pb::LogStream::Stderr,
        LogStream::System => pb::LogStream::System,
    }
}

impl From<Pipeline> for pb::Pipeline {
    fn from(pipeline: Pipeline) -> Self {
        let definition = pipeline.definition;
        pb::Pipeline {
            id: pipeline.id.get(),
            customer_id: pipeline.customer_id.get(),
            name: definition.name,
            description: definition.description,
            agent_selector: Some(pb::AgentSelector {
                agent_id: definition.selector.agent_id.map_or(0, AgentId::get),
                labels: definition.selector.labels,
            }),
            variable_group_ids: definition
                .variable_group_ids
                .iter()
                .map(|id| id.get())
                .collect(),
            steps: definition.steps.iter().map(step_to_pb).collect(),
            parameters: definition
                .parameters
                .into_iter()
                .map(|parameter| pb::Parameter {
                    name: parameter.name,
                    r#type: parameter_type_to_pb(parameter.kind).into(),
                    default_value: parameter.default_value,
                    required: parameter.required,
                    description: parameter.description,
                    choices: parameter.choices,
                })
                .collect(),
            timeout_seconds: definition.timeout_seconds,
            steps_version: pipeline.steps_version.number,
            created_at: timestamp(pipeline.created_at),
            updated_at: timestamp(pipeline.updated_at),
            created_by: pipeline.created_by.get(),
            stats: Some(pb::PipelineStats {
                executions_total: pipeline.stats.total,
                executions_succeeded: pipeline.stats.succeeded,
                executions_failed: pipeline.stats.failed,
                last_status: pipeline
                    .stats
                    .last_status
                    .map_or(pb::ExecutionStatus::Unspecified, execution_status_to_pb)
                    .into(),
                last_execution_at: pipeline.stats.last_execution_at.and_then(timestamp),
            }),
        }
    }
}

impl From<StepExecution> for pb::StepExecution {
    fn from(step: StepExecution) -> Self {
        pb::StepExecution {
            index: step.index,
            name: step.name,
            status: step_status_to_pb(step.status).into(),
            exit_code: step.exit_code,
            started_at: step.started_at.and_then(timestamp),
            finished_at: step.finished_at.and_then(timestamp),
            reason: step.reason,
        }
    }
}

impl From<Execution> for pb::Execution {
    fn from(execution: Execution) -> Self {
        pb::Execution {
            id: execution.id.get(),
            customer_id: execution.customer_id.get(),
            pipeline_id: execution.pipeline_id.get(),
            pipeline_name: execution.pipeline_name,
            status: execution_status_to_pb(execution.status).into(),
            parameters: execution.parameters.into_iter().collect(),
            triggered_by: execution.triggered_by.get(),
            agent_id: execution.agent_id.map_or(0, AgentId::get),
            queue_reason: execution.queue_reason,
            failure_reason: execution.failure_reason,
            created_at: timestamp(execution.created_at),
            started_at: execution.started_at.and_then(timestamp),
            finished_at: execution.finished_at.and_then(timestamp),
            steps: execution.steps.into_iter().map(Into::into).collect(),
            retry_of: execution.retry_of.map_or(0, ExecutionId::get),
            timeout_seconds: execution.timeout_seconds,
            trigger: Some(pb::ExecutionTrigger {
                kind: trigger_kind_to_pb(execution.trigger.kind()).into(),
                user_id: execution.trigger.triggered_by().get(),
                username: execution.triggered_by_username.clone(),
                retry_of: execution.trigger.retry_of().map_or(0, ExecutionId::get),
                release_execution_id: execution
                    .trigger
                    .release_stage()
                    .map_or(0, |(release, _)| release.get()),
                stage_execution_id: execution
                    .trigger
                    .release_stage()
                    .map_or(0, |(_, stage)| stage.get()),
                schedule_id: execution
                    .trigger
                    .schedule()
                    .map_or(0, |schedule| schedule.get()),
                webhook_id: execution
                    .trigger
                    .webhook()
                    .map_or(0, |(webhook, _)| webhook.get()),
                webhook_delivery_id: execution
                    .trigger
                    .webhook()
                    .map_or(0, |(_, delivery)| delivery.get()),
                event: execution.trigger_event,
                branch: execution.trigger_branch,
                commit: execution.trigger_commit,
            }),
            triggered_by_username: execution.triggered_by_username,
        }
    }
}

fn trigger_kind_to_pb(kind: TriggerKind) -> pb::TriggerKind {
    match kind {
        TriggerKind::User => pb::TriggerKind::User,
        TriggerKind::Retry => pb::TriggerKind::Retry,
        TriggerKind::ReleaseStage => pb::TriggerKind::ReleaseStage,
        TriggerKind::Schedule => pb::TriggerKind::Schedule,
        TriggerKind::Webhook => pb::TriggerKind::Webhook,
    }
}

/// A `TriggerKind` filter: unspecified means any.
pub fn trigger_kind_filter(
    field: &str,
    value: i32,
) -> Result<Option<TriggerKind>, ValidationError> {
    match pb::TriggerKind::try_from(value) {
        Ok(pb::TriggerKind::Unspecified) => Ok(None),
        Ok(pb::TriggerKind::User) => Ok(Some(TriggerKind::User)),
        Ok(pb::TriggerKind::Retry) => Ok(Some(TriggerKind::Retry)),
        Ok(pb::TriggerKind::ReleaseStage) => Ok(Some(TriggerKind::ReleaseStage)),
        Ok(pb::TriggerKind::Schedule) => Ok(Some(TriggerKind::Schedule)),
        Ok(pb::TriggerKind::Webhook) => Ok(Some(TriggerKind::Webhook)),
        Err(_) => Err(ValidationError::new(
            field,
            format!("has unknown value {value}"),
        )),
    }
}

impl From<LogChunk> for pb::LogChunk {
    fn from(chunk: LogChunk) -> Self {
        pb::LogChunk {
            sequence: chunk.sequence,
            step_index: chunk.step_index,
            stream: log_stream_to_pb(chunk.stream).into(),
            text: chunk.text,
            logged_at: timestamp(chunk.logged_at),
        }
    }
}

impl From<Artifact> for pb::Artifact {
    fn from(artifact: Artifact) -> Self {
        pb::Artifact {
            id: artifact.id,
            execution_id: artifact.execution_id.get(),
            step_index: artifact.step_index,
            path: artifact.path,
            size_bytes: artifact.size_bytes,
            sha256: artifact.sha256,
            created_at: timestamp(artifact.created_at),
        }
    }
}

/// A run request's parameters in a deterministic order.
pub fn run_parameters(
    parameters: &std::collections::HashMap<String, String>,
) -> BTreeMap<String, String> {
    parameters
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// Most bytes of output one job event carries (the agent sends at most 64 KiB); more is cut.
pub const MAX_EVENT_OUTPUT_BYTES: usize = 256 * 1024;
/// Most bytes of a reason or other text an agent reports in a job event; more is cut.
pub const MAX_EVENT_TEXT_BYTES: usize = 4096;

/// `text` cut to at most `max` bytes, at a character boundary.
fn bounded(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// An agent's job event, checked for shape (the store checks it against the execution). Every
/// text it carries is bounded, so what one agent sends cannot make the batch it is stored in
/// grow without limit.
pub fn job_event_from_pb(event: pb::JobEvent) -> Result<JobEventInput, ValidationError> {
    let execution_id = ExecutionId::parse(event.execution_id, "job_event.execution_id")?;
    if event.sequence < 1 {
        return Err(ValidationError::new(
            "job_event.sequence",
            "must be positive",
        ));
    }
    let occurred_at = event
        .occurred_at
        .as_ref()
        .map(|at| super::common::parse_timestamp("job_event.occurred_at", at))
        .transpose()?
        .unwrap_or_else(crate::store::now);
    let step = |index: i32| {
        if index < 0 || index as usize >= pipeline::MAX_STEPS {
            Err(ValidationError::new(
                "job_event.step_index",
                "is out of range",
            ))
        } else {
            Ok(index)
        }
    };
    use pb::job_event::Event;
    let kind = match event.event {
        Some(Event::Started(started)) => JobEventKind::Started {
            workspace: bounded(started.workspace, MAX_EVENT_TEXT_BYTES),
        },
        Some(Event::Rejected(rejected)) => JobEventKind::Rejected {
            reason: bounded(rejected.reason, MAX_EVENT_TEXT_BYTES),
        },
        Some(Event::StepStarted(started)) => JobEventKind::StepStarted {
            step_index: step(started.step_index)?,
        },
        Some(Event::Log(log)) => JobEventKind::Log {
            step_index: if log.step_index == -1 {
                -1
            } else {
                step(log.step_index)?
            },
            stream: match pb::LogStream::try_from(log.stream) {
                Ok(pb::LogStream::Stdout) => LogStream::Stdout,
                Ok(pb::LogStream::Stderr) => LogStream::Stderr,
                _ => LogStream::System,
            },
            text: bounded(log.text, MAX_EVENT_OUTPUT_BYTES),
        },
        Some(Event::StepFinished(finished)) => JobEventKind::StepFinished {
            step_index: step(finished.step_index)?,
            status: match pb::StepStatus::try_from(finished.status) {
                Ok(pb::StepStatus::Succeeded) => StepStatus::Succeeded,
                Ok(pb::StepStatus::Skipped) => StepStatus::Skipped,
                Ok(pb::StepStatus::Cancelled) => StepStatus::Cancelled,
                Ok(pb::StepStatus::TimedOut) => StepStatus::TimedOut,
                _ => StepStatus::Failed,
            },
            exit_code: finished.exit_code,
            reason: bounded(finished.reason, MAX_EVENT_TEXT_BYTES),
        },
        Some(Event::Finished(finished)) => JobEventKind::Finished {
            status: match pb::ExecutionStatus::try_from(finished.status) {
                Ok(status) => execution_status_from_pb(status),
                Err(_) => ExecutionStatus::Failed,
            },
            reason: bounded(finished.reason, MAX_EVENT_TEXT_BYTES),
        },
        None => return Err(ValidationError::new("job_event.event", "is required")),
    };
    Ok(JobEventInput {
        execution_id,
        sequence: event.sequence,
        occurred_at,
        kind,
    })
}

/// An artifact upload's header, checked before any data is stored.
impl TryFrom<&pb::ArtifactHeader> for NewArtifact {
    type Error = ValidationError;

    fn try_from(header: &pb::ArtifactHeader) -> Result<Self, ValidationError> {
        let execution_id = ExecutionId::parse(header.execution_id, "header.execution_id")?;
        if header.step_index < 0 {
            return Err(ValidationError::new(
                "header.step_index",
                "must not be negative",
            ));
        }
        let escapes = header.path.starts_with('/')
            || header
                .path
                .split(['/', '\\'])
                .any(|part| part == ".." || part.is_empty())
            || header.path.contains('\0');
        if header.path.is_empty() || header.path.len() > 1024 || escapes {
            return Err(ValidationError::new(
                "header.path",
                "must be a relative path inside the workspace, without '..'",
            ));
        }
        if !(0..=MAX_ARTIFACT_BYTES).contains(&header.size_bytes) {
            return Err(ValidationError::new(
                "header.size_bytes",
                format!("must be between 0 and {MAX_ARTIFACT_BYTES}"),
            ));
        }
        let hex = header.sha256.len() == 64
            && header
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return Err(ValidationError::new(
                "header.sha256",
                "must be 64 lowercase hex digits",
            ));
        }
        Ok(NewArtifact {
            execution_id,
            step_index: header.step_index,
            path: header.path.clone(),
            size_bytes: header.size_bytes,
            sha256: header.sha256.clone(),
        })
    }
}
