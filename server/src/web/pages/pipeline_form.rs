//! The new-pipeline form: name, steps (one per line, `name: command`), the shell, the artifacts
//! the last step keeps, parameters (one per line), the agents' labels, a timeout and variable
//! groups — sent as `PipelineService/CreatePipeline`, whose refusal comes back next to the input
//! holding the field it names (`steps` for `steps[1].command`).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::pipeline_service_server::PipelineService;
use cygnet_proto::v1::variable_service_server::VariableService;
use serde::Deserialize;

use super::form::FormErrors;
use super::{Frame, frame, id, try_write};
use crate::web::Web;
use crate::web::error::{WebError, render, render_with};
use crate::web::session::{Peer, Session};

/// The inputs a refusal can be shown at (request field names).
const INPUTS: [&str; 7] = [
    "name",
    "description",
    "steps",
    "parameters",
    "agent_selector",
    "timeout_seconds",
    "variable_group_ids",
];

/// The form as typed (an HTML form posts the checked groups as repeated `group` fields).
#[derive(Debug, Deserialize)]
pub struct PipelineForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub steps: String,
    #[serde(default)]
    pub shell: String,
    #[serde(default)]
    pub artifacts: String,
    #[serde(default)]
    pub parameters: String,
    #[serde(default)]
    pub labels: String,
    #[serde(default)]
    pub timeout_seconds: String,
    #[serde(default)]
    pub groups: Vec<i64>,
}

impl Default for PipelineForm {
    fn default() -> Self {
        PipelineForm {
            csrf: String::new(),
            name: String::new(),
            description: String::new(),
            steps: "build: make\ntest: make test".into(),
            shell: "bash".into(),
            artifacts: String::new(),
            parameters: String::new(),
            labels: "linux".into(),
            timeout_seconds: "3600".into(),
            groups: Vec::new(),
        }
    }
}

pub struct GroupChoice {
    pub id: i64,
    pub name: String,
    pub checked: bool,
}

/// Whether the form creates a pipeline or edits one, and what of the edited one it cannot show.
#[derive(Default)]
pub struct Mode {
    /// The pipeline edited; 0 for a new one.
    pub pipeline_id: i64,
    /// Why the steps cannot be edited here ("" when they can).
    pub steps_locked: String,
    /// Why the parameters cannot be edited here ("" when they can).
    pub parameters_locked: String,
}

impl Mode {
    pub fn editing(&self) -> bool {
        self.pipeline_id > 0
    }
}

#[derive(Template)]
#[template(path = "pipeline_form.html")]
struct PipelineFormPage {
    frame: Frame,
    form: PipelineForm,
    groups: Vec<GroupChoice>,
    errors: FormErrors,
    may_manage: bool,
    manage_reason: String,
    mode: Mode,
}

async fn page(
    web: &Web,
    session: &Session,
    customer_id: i64,
    form: PipelineForm,
    errors: FormErrors,
    mode: Mode,
) -> Result<PipelineFormPage, WebError> {
    let frame = frame(web, session, customer_id, "pipelines").await?;
    let (groups, _) = every!(
        web.variables,
        list_variable_groups,
        session,
        ListVariableGroupsRequest {
            customer_id,
            page_size: 200,
        },
        groups
    )
    .await?;
    let (may_manage, manage_reason) = frame.allowed(
        &[pb::Role::Admin, pb::Role::Devops, pb::Role::Developer],
        if mode.editing() {
            "change pipelines"
        } else {
            "create pipelines"
        },
    );
    Ok(PipelineFormPage {
        groups: groups
            .into_iter()
            .map(|group| GroupChoice {
                checked: form.groups.contains(&group.id),
                id: group.id,
                name: group.name,
            })
            .collect(),
        frame,
        form,
        errors,
        may_manage,
        manage_reason,
        mode,
    })
}

pub async fn new_pipeline(
    State(web): State<Web>,
    session: Session,
    Path(customer): Path<String>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    let page = page(
        &web,
        &session,
        customer_id,
        PipelineForm::default(),
        FormErrors::default(),
        Mode::default(),
    )
    .await?;
    Ok(render(&page))
}

/// The request the form describes, or the input that cannot be read and why.
fn request(customer_id: i64, form: &PipelineForm) -> Result<pb::CreatePipelineRequest, FormErrors> {
    let shell = match form.shell.as_str() {
        "bash" => pb::Shell::Bash,
        "sh" => pb::Shell::Sh,
        "pwsh" => pb::Shell::Pwsh,
        "cmd" => pb::Shell::Cmd,
        _ => pb::Shell::Unspecified,
    };
    let mut steps = Vec::new();
    for (number, line) in form.steps.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((name, command)) = line.split_once(':') else {
            return Err(FormErrors::at(
                "steps",
                format!("steps line {}: write it as name: command", number + 1),
            ));
        };
        steps.push(pb::Step {
            name: name.trim().to_owned(),
            command: command.trim().to_owned(),
            shell: shell as i32,
            ..Default::default()
        });
    }
    let artifacts: Vec<String> = form
        .artifacts
        .split(',')
        .map(str::trim)
        .filter(|path| !path.is_empty())
        .map(str::to_owned)
        .collect();
    if !artifacts.is_empty() {
        let Some(last) = steps.last_mut() else {
            return Err(FormErrors::at(
                "steps",
                "artifacts need a step that makes them",
            ));
        };
        last.artifacts = artifacts;
    }
    let mut parameters = Vec::new();
    for line in form
        .parameters
        .lines()
        .filter(|line| !line.trim().is_empty())
    {
        // NAME, NAME=default, NAME=a|b|c (choices, the first the default); a trailing ! on the
        // name makes it required.
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        let name = name.trim();
        let (name, required) = match name.strip_suffix('!') {
            Some(name) => (name.trim(), true),
            None => (name, false),
        };
        let choices: Vec<String> = if value.contains('|') {
            value
                .split('|')
                .map(|choice| choice.trim().to_owned())
                .collect()
        } else {
            Vec::new()
        };
        parameters.push(pb::Parameter {
            name: name.to_owned(),
            r#type: if choices.is_empty() {
                pb::ParameterType::String
            } else {
                pb::ParameterType::Choice
            } as i32,
            default_value: choices
                .first()
                .cloned()
                .unwrap_or_else(|| value.trim().to_owned()),
            required,
            description: String::new(),
            choices,
        });
    }
    let timeout_seconds = match form.timeout_seconds.trim() {
        "" => 0,
        value => value.parse::<i32>().map_err(|_| {
            FormErrors::at(
                "timeout_seconds",
                "timeout_seconds must be a whole number of seconds",
            )
        })?,
    };
    let labels: Vec<String> = form
        .labels
        .split(',')
        .map(str::trim)
        .filter(|label| !label.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(pb::CreatePipelineRequest {
        customer_id,
        name: form.name.trim().to_owned(),
        description: form.description.trim().to_owned(),
        agent_selector: (!labels.is_empty()).then_some(pb::AgentSelector {
            agent_id: 0,
            labels,
        }),
        steps,
        parameters,
        timeout_seconds,
        variable_group_ids: form.groups.clone(),
    })
}

pub async fn create_pipeline(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(customer): Path<String>,
    RawForm(form): RawForm,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    session.check_csrf(&form.csrf)?;
    let body = match request(customer_id, &form) {
        Ok(body) => body,
        Err(errors) => {
            let page = page(&web, &session, customer_id, form, errors, Mode::default()).await?;
            return Ok(render_with(StatusCode::BAD_REQUEST, &page));
        }
    };
    let api = web.pipelines.clone();
    let call = session.request(body);
    let outcome = try_write(
        &web,
        peer,
        "cygnet.v1.PipelineService/CreatePipeline",
        async move { api.create_pipeline(call).await },
    )
    .await?;
    match outcome {
        Ok(_) => Ok(Redirect::to(&format!("/c/{customer_id}/pipelines")).into_response()),
        Err(status) => {
            let (errors, code) = FormErrors::from_status(status, &INPUTS)?;
            let page = page(&web, &session, customer_id, form, errors, Mode::default()).await?;
            Ok(render_with(code, &page))
        }
    }
}

/// The shell a form line's steps run with.
fn shell_name(shell: i32) -> &'static str {
    match pb::Shell::try_from(shell) {
        Ok(pb::Shell::Sh) => "sh",
        Ok(pb::Shell::Pwsh) => "pwsh",
        Ok(pb::Shell::Cmd) => "cmd",
        _ => "bash",
    }
}

/// Why the form cannot show these steps without losing something, or "" when it can: its
/// lines hold a name and a one-line command, one shell for all, artifacts on the last step.
fn steps_locked(steps: &[pb::Step]) -> String {
    let shells: std::collections::HashSet<&str> =
        steps.iter().map(|step| shell_name(step.shell)).collect();
    let last = steps.len().saturating_sub(1);
    let odd = steps.iter().enumerate().find_map(|(index, step)| {
        if !step.env.is_empty() {
            Some(format!("step {:?} sets environment variables", step.name))
        } else if step.timeout_seconds > 0 {
            Some(format!("step {:?} has its own timeout", step.name))
        } else if step.continue_on_error {
            Some(format!("step {:?} continues on error", step.name))
        } else if step.command.contains(['\n', '\r']) || step.name.contains(':') {
            Some(format!("step {:?} does not fit on one line", step.name))
        } else if index != last && !step.artifacts.is_empty() {
            Some(format!(
                "step {:?} keeps artifacts before the last step",
                step.name
            ))
        } else {
            None
        }
    });
    match odd {
        Some(what) => format!("{what}, which this form cannot show"),
        None if shells.len() > 1 => {
            "its steps use different shells, which this form cannot show".into()
        }
        None => String::new(),
    }
}

/// Why the form cannot show these parameters without losing something, or "".
fn parameters_locked(parameters: &[pb::Parameter]) -> String {
    parameters
        .iter()
        .find_map(|parameter| {
            let choices_reordered = !parameter.choices.is_empty()
                && parameter.choices.first() != Some(&parameter.default_value);
            if !parameter.description.is_empty() {
                Some(format!("parameter {} has a description", parameter.name))
            } else if choices_reordered {
                Some(format!(
                    "parameter {}'s default is not its first choice",
                    parameter.name
                ))
            } else if parameter.default_value.contains(['|', '\n'])
                || parameter
                    .choices
                    .iter()
                    .any(|choice| choice.contains(['|', '\n']))
            {
                Some(format!(
                    "parameter {} has a value with | or a line break",
                    parameter.name
                ))
            } else {
                None
            }
        })
        .map(|what| format!("{what}, which this form cannot show"))
        .unwrap_or_default()
}

/// The form showing `pipeline`, and what of it the form cannot show.
fn edit_form(pipeline: &pb::Pipeline) -> (PipelineForm, Mode) {
    let steps = pipeline
        .steps
        .iter()
        .map(|step| format!("{}: {}", step.name, step.command))
        .collect::<Vec<_>>()
        .join("\n");
    let parameters = pipeline
        .parameters
        .iter()
        .map(|parameter| {
            let name = if parameter.required {
                format!("{}!", parameter.name)
            } else {
                parameter.name.clone()
            };
            if !parameter.choices.is_empty() {
                format!("{name}={}", parameter.choices.join("|"))
            } else if parameter.default_value.is_empty() {
                name
            } else {
                format!("{name}={}", parameter.default_value)
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let form = PipelineForm {
        csrf: String::new(),
        name: pipeline.name.clone(),
        description: pipeline.description.clone(),
        steps,
        shell: pipeline
            .steps
            .first()
            .map_or("bash", |step| shell_name(step.shell))
            .to_owned(),
        artifacts: pipeline
            .steps
            .last()
            .map(|step| step.artifacts.join(", "))
            .unwrap_or_default(),
        parameters,
        labels: pipeline
            .agent_selector
            .as_ref()
            .map(|selector| selector.labels.join(", "))
            .unwrap_or_default(),
        timeout_seconds: if pipeline.timeout_seconds > 0 {
            pipeline.timeout_seconds.to_string()
        } else {
            String::new()
        },
        groups: pipeline.variable_group_ids.clone(),
    };
    let mode = Mode {
        pipeline_id: pipeline.id,
        steps_locked: steps_locked(&pipeline.steps),
        parameters_locked: parameters_locked(&pipeline.parameters),
    };
    (form, mode)
}

/// The pipeline as it is now (another customer's, or a deleted one, is not found).
pub(super) async fn current(
    web: &Web,
    session: &Session,
    customer_id: i64,
    pipeline_id: i64,
) -> Result<pb::Pipeline, WebError> {
    web.pipelines
        .get_pipeline(session.request(pb::GetPipelineRequest {
            customer_id,
            pipeline_id,
        }))
        .await?
        .into_inner()
        .pipeline
        .ok_or(WebError::NotFound)
}

pub async fn edit_pipeline(
    State(web): State<Web>,
    session: Session,
    Path((customer, pipeline)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let (customer_id, pipeline_id) = (id(&customer)?, id(&pipeline)?);
    let pipeline = current(&web, &session, customer_id, pipeline_id).await?;
    let (form, mode) = edit_form(&pipeline);
    let page = page(
        &web,
        &session,
        customer_id,
        form,
        FormErrors::default(),
        mode,
    )
    .await?;
    Ok(render(&page))
}

/// Changes a pipeline as the form describes it (`PipelineService/UpdatePipeline`); steps or
/// parameters the form could not show are left as they are.
pub async fn update_pipeline(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path((customer, pipeline)): Path<(String, String)>,
    RawForm(form): RawForm,
) -> Result<Response, WebError> {
    let (customer_id, pipeline_id) = (id(&customer)?, id(&pipeline)?);
    session.check_csrf(&form.csrf)?;
    let existing = current(&web, &session, customer_id, pipeline_id).await?;
    let (shown, mode) = edit_form(&existing);
    // Inputs the form locked were not posted; a refused form shows them again as they are.
    let again = |mut form: PipelineForm| {
        if !mode.steps_locked.is_empty() {
            form.steps = shown.steps.clone();
            form.shell = shown.shell.clone();
            form.artifacts = shown.artifacts.clone();
        }
        if !mode.parameters_locked.is_empty() {
            form.parameters = shown.parameters.clone();
        }
        form
    };
    let body = match request(customer_id, &form) {
        Ok(body) => body,
        Err(errors) => {
            let page = page(&web, &session, customer_id, again(form), errors, mode).await?;
            return Ok(render_with(StatusCode::BAD_REQUEST, &page));
        }
    };
    // A pinned agent is not on the form; it stays.
    let pinned = existing
        .agent_selector
        .as_ref()
        .map_or(0, |selector| selector.agent_id);
    let update = pb::UpdatePipelineRequest {
        customer_id,
        pipeline_id,
        name: Some(body.name),
        description: Some(body.description),
        agent_selector: Some(pb::AgentSelector {
            agent_id: pinned,
            labels: body
                .agent_selector
                .map(|selector| selector.labels)
                .unwrap_or_default(),
        }),
        set_steps: mode.steps_locked.is_empty(),
        steps: body.steps,
        set_parameters: mode.parameters_locked.is_empty(),
        parameters: body.parameters,
        // Left empty, the timeout stays; anything typed is the API's to judge.
        timeout_seconds: (!form.timeout_seconds.trim().is_empty()).then_some(body.timeout_seconds),
        set_variable_group_ids: true,
        variable_group_ids: body.variable_group_ids,
    };
    let api = web.pipelines.clone();
    let call = session.request(update);
    let outcome = try_write(
        &web,
        peer,
        "cygnet.v1.PipelineService/UpdatePipeline",
        async move { api.update_pipeline(call).await },
    )
    .await?;
    match outcome {
        Ok(_) => {
            Ok(Redirect::to(&format!("/c/{customer_id}/pipelines/{pipeline_id}")).into_response())
        }
        Err(status) => {
            let (errors, code) = FormErrors::from_status(status, &INPUTS)?;
            let page = page(&web, &session, customer_id, again(form), errors, mode).await?;
            Ok(render_with(code, &page))
        }
    }
}

/// The form body, with `group` repeated once per checked variable group (serde_urlencoded,
/// which `axum::Form` uses, reads no repeated keys into a list).
pub struct RawForm(PipelineForm);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawForm {
    type Rejection = WebError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, WebError> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|_| WebError::Page(StatusCode::BAD_REQUEST, "unreadable form".into()))?;
        let mut form = PipelineForm {
            steps: String::new(),
            shell: String::new(),
            labels: String::new(),
            timeout_seconds: String::new(),
            ..PipelineForm::default()
        };
        for (key, value) in url::form_urlencoded::parse(&bytes) {
            let value = value.into_owned();
            match key.as_ref() {
                "csrf" => form.csrf = value,
                "name" => form.name = value,
                "description" => form.description = value,
                "steps" => form.steps = value,
                "shell" => form.shell = value,
                "artifacts" => form.artifacts = value,
                "parameters" => form.parameters = value,
                "labels" => form.labels = value,
                "timeout_seconds" => form.timeout_seconds = value,
                "group" => {
                    let group = value.parse().map_err(|_| {
                        WebError::Page(StatusCode::BAD_REQUEST, "group must be an id".into())
                    })?;
                    form.groups.push(group);
                }
                _ => {}
            }
        }
        Ok(RawForm(form))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, command: &str) -> pb::Step {
        pb::Step {
            name: name.into(),
            command: command.into(),
            ..Default::default()
        }
    }

    #[test]
    fn what_the_form_cannot_show_locks_its_input() {
        assert_eq!(
            steps_locked(&[step("a", "make"), step("b", "make test")]),
            ""
        );
        let multi_line = steps_locked(&[step("a", "make\nmake install")]);
        assert_eq!(
            multi_line,
            "step \"a\" does not fit on one line, which this form cannot show"
        );
        let early_artifacts = pb::Step {
            artifacts: vec!["x".into()],
            ..step("a", "make")
        };
        assert!(steps_locked(&[early_artifacts, step("b", "true")]).contains("before the last"));
        let mixed = pb::Step {
            shell: pb::Shell::Pwsh as i32,
            ..step("b", "dir")
        };
        assert!(steps_locked(&[step("a", "ls"), mixed]).contains("different shells"));

        let plain = pb::Parameter {
            name: "MODE".into(),
            default_value: "fast".into(),
            choices: vec!["fast".into(), "slow".into()],
            ..Default::default()
        };
        assert_eq!(parameters_locked(std::slice::from_ref(&plain)), "");
        let reordered = pb::Parameter {
            default_value: "slow".into(),
            ..plain.clone()
        };
        assert!(parameters_locked(&[reordered]).contains("not its first choice"));
        let described = pb::Parameter {
            description: "how fast".into(),
            ..plain
        };
        assert!(parameters_locked(&[described]).contains("has a description"));
    }

    #[test]
    fn the_edit_form_reads_back_what_it_shows() {
        let pipeline = pb::Pipeline {
            id: 4,
            name: "Build".into(),
            steps: vec![
                step("build", "make"),
                pb::Step {
                    artifacts: vec!["dist/a".into(), "dist/b".into()],
                    ..step("pack", "tar c dist")
                },
            ],
            parameters: vec![pb::Parameter {
                name: "TARGET".into(),
                required: true,
                ..Default::default()
            }],
            timeout_seconds: 600,
            ..Default::default()
        };
        let (form, mode) = edit_form(&pipeline);
        assert!(mode.editing() && mode.steps_locked.is_empty());
        assert_eq!(form.steps, "build: make\npack: tar c dist");
        assert_eq!(form.artifacts, "dist/a, dist/b");
        assert_eq!(form.parameters, "TARGET!");
        let request = request(1, &form).expect("the form reads back");
        assert_eq!(request.steps[1].artifacts, ["dist/a", "dist/b"]);
        assert_eq!(request.steps[0].command, "make");
        assert!(request.parameters[0].required);
        assert_eq!(request.timeout_seconds, 600);
    }
}
