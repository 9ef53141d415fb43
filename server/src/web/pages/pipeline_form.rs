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

#[derive(Template)]
#[template(path = "pipeline_form.html")]
struct PipelineFormPage {
    frame: Frame,
    form: PipelineForm,
    groups: Vec<GroupChoice>,
    errors: FormErrors,
    may_manage: bool,
    manage_reason: String,
}

async fn page(
    web: &Web,
    session: &Session,
    customer_id: i64,
    form: PipelineForm,
    errors: FormErrors,
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
        "create pipelines",
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
            let page = page(&web, &session, customer_id, form, errors).await?;
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
            let page = page(&web, &session, customer_id, form, errors).await?;
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
