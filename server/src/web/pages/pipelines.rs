//! The customer's pipelines with their latest executions, and the form that runs one.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::pipeline_service_server::PipelineService;

use super::{Frame, all_pages, frame, id, write};
use crate::web::Web;
use crate::web::error::{WebError, render};
use crate::web::session::{Peer, Session};
use crate::web::view;

pub struct ParameterField {
    pub name: String,
    pub default_value: String,
    pub required: bool,
    pub description: String,
    pub choices: Vec<String>,
}

pub struct PipelineRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub last_status: String,
    pub last_run: String,
    pub runs: i64,
    pub parameters: Vec<ParameterField>,
}

pub struct ExecutionRow {
    pub id: i64,
    pub pipeline: String,
    pub status: String,
    pub by: String,
    pub created: String,
    /// What started it, when not a member's own run: "retry of 4", "deployment 7",
    /// "schedule 3".
    pub trigger: String,
}

impl From<pb::Execution> for ExecutionRow {
    fn from(execution: pb::Execution) -> Self {
        ExecutionRow {
            id: execution.id,
            pipeline: execution.pipeline_name,
            status: view::execution_status(execution.status),
            by: execution.triggered_by_username,
            created: view::time(execution.created_at.as_ref()),
            trigger: execution
                .trigger
                .as_ref()
                .map(view::trigger_label)
                .unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "pipelines.html")]
struct PipelinesPage {
    frame: Frame,
    pipelines: Vec<PipelineRow>,
    executions: Vec<ExecutionRow>,
}

pub async fn pipelines(
    State(web): State<Web>,
    session: Session,
    Path(customer): Path<String>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    let frame = frame(&web, &session, customer_id, "pipelines").await?;
    let (pipelines, _) = all_pages(
        |page_token| {
            let call = web
                .pipelines
                .list_pipelines(session.request(pb::ListPipelinesRequest {
                    customer_id,
                    page_size: 1000,
                    page_token,
                }));
            async move {
                call.await.map(|page| {
                    let page = page.into_inner();
                    (page.pipelines, page.next_page_token)
                })
            }
        },
        |_| false,
    )
    .await?;
    let pipelines = pipelines
        .into_iter()
        .map(|pipeline| {
            let stats = pipeline.stats.unwrap_or_default();
            PipelineRow {
                id: pipeline.id,
                name: pipeline.name,
                description: pipeline.description,
                last_status: if stats.executions_total == 0 {
                    "never run".into()
                } else {
                    view::execution_status(stats.last_status)
                },
                last_run: view::time(stats.last_execution_at.as_ref()),
                runs: stats.executions_total,
                parameters: pipeline
                    .parameters
                    .into_iter()
                    .map(|parameter| ParameterField {
                        name: parameter.name,
                        default_value: parameter.default_value,
                        required: parameter.required,
                        description: parameter.description,
                        choices: parameter.choices,
                    })
                    .collect(),
            }
        })
        .collect();
    let executions = web
        .pipelines
        .list_executions(session.request(pb::ListExecutionsRequest {
            customer_id,
            page_size: 20,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .executions
        .into_iter()
        .map(ExecutionRow::from)
        .collect();
    Ok(render(&PipelinesPage {
        frame,
        pipelines,
        executions,
    }))
}

pub async fn run_pipeline(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path((customer, pipeline)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let (customer_id, pipeline_id) = (id(&customer)?, id(&pipeline)?);
    let mut csrf = "";
    let mut parameters = HashMap::new();
    for (name, value) in &fields {
        if name == "csrf" {
            csrf = value;
        } else if let Some(parameter) = name.strip_prefix("param.") {
            // An empty field means "the pipeline's default".
            if !value.is_empty() {
                parameters.insert(parameter.to_owned(), value.clone());
            }
        }
    }
    session.check_csrf(csrf)?;
    let api = web.pipelines.clone();
    let request = session.request(pb::RunPipelineRequest {
        customer_id,
        pipeline_id,
        parameters,
        agent_id: 0,
    });
    let run = write(
        &web,
        peer,
        "cygnet.v1.PipelineService/RunPipeline",
        async move { api.run_pipeline(request).await },
    )
    .await?;
    let execution = run.execution.ok_or(WebError::NotFound)?;
    Ok(Redirect::to(&format!("/c/{customer_id}/executions/{}", execution.id)).into_response())
}
