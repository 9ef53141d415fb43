//! One execution: its steps and log (live while it runs), and the form that cancels it.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::pipeline_service_server::PipelineService;
use serde::Deserialize;

use super::pipelines::ExecutionRow;
use super::{Frame, all_pages, frame, id, write};
use crate::web::Web;
use crate::web::error::{WebError, render};
use crate::web::session::{Peer, Session};
use crate::web::view;

/// How much of a log the execution page renders at first; the rest arrives live.
const LOG_RENDERED_BYTES: usize = 4 << 20;

pub struct StepRow {
    pub index: i32,
    pub name: String,
    pub status: String,
    pub exit_code: String,
}

#[derive(Template)]
#[template(path = "execution.html")]
struct ExecutionPage {
    frame: Frame,
    execution: ExecutionRow,
    active: bool,
    reason: String,
    parameters: Vec<(String, String)>,
    steps: Vec<StepRow>,
    log: String,
    log_truncated: bool,
    last_sequence: i64,
}

pub async fn execution(
    State(web): State<Web>,
    session: Session,
    Path((customer, execution)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let (customer_id, execution_id) = (id(&customer)?, id(&execution)?);
    let frame = frame(&web, &session, customer_id, "pipelines").await?;
    let mut execution = web
        .pipelines
        .get_execution(session.request(pb::GetExecutionRequest {
            customer_id,
            execution_id,
        }))
        .await?
        .into_inner()
        .execution
        .ok_or(WebError::NotFound)?;
    let mut rendered_bytes = 0;
    let (chunks, complete) = all_pages(
        |page_token| {
            let call =
                web.pipelines
                    .get_execution_logs(session.request(pb::GetExecutionLogsRequest {
                        customer_id,
                        execution_id,
                        page_token,
                        ..Default::default()
                    }));
            async move {
                call.await.map(|page| {
                    let page = page.into_inner();
                    (page.chunks, page.next_page_token)
                })
            }
        },
        |chunks| {
            rendered_bytes += chunks.iter().map(|chunk| chunk.text.len()).sum::<usize>();
            rendered_bytes >= LOG_RENDERED_BYTES
        },
    )
    .await?;
    let log_truncated = !complete;
    let mut log = String::new();
    let mut last_sequence = 0;
    for chunk in chunks {
        last_sequence = chunk.sequence;
        log.push_str(&chunk.text);
    }
    let mut parameters: Vec<(String, String)> = execution.parameters.clone().into_iter().collect();
    parameters.sort();
    let steps = std::mem::take(&mut execution.steps)
        .into_iter()
        .map(|step| StepRow {
            index: step.index,
            name: step.name,
            status: view::step_status(step.status),
            exit_code: step
                .exit_code
                .map(|code| code.to_string())
                .unwrap_or_default(),
        })
        .collect();
    let active = view::execution_is_active(execution.status);
    let reason = if execution.failure_reason.is_empty() {
        execution.queue_reason.clone()
    } else {
        execution.failure_reason.clone()
    };
    Ok(render(&ExecutionPage {
        frame,
        active,
        reason,
        parameters,
        steps,
        log,
        log_truncated,
        last_sequence,
        execution: ExecutionRow::from(execution),
    }))
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn cancel_execution(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path((customer, execution)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    let (customer_id, execution_id) = (id(&customer)?, id(&execution)?);
    session.check_csrf(&form.csrf)?;
    let api = web.pipelines.clone();
    let request = session.request(pb::CancelExecutionRequest {
        customer_id,
        execution_id,
    });
    write(
        &web,
        peer,
        "cygnet.v1.PipelineService/CancelExecution",
        async move { api.cancel_execution(request).await },
    )
    .await?;
    Ok(Redirect::to(&format!("/c/{customer_id}/executions/{execution_id}")).into_response())
}
