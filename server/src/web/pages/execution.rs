//! One execution: when it ran and where, its steps with their durations, its artifacts with
//! downloads, and its log (live while it runs); the form that cancels it.

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
    pub duration: String,
}

pub struct ArtifactRow {
    pub id: i64,
    pub path: String,
    pub size: String,
    pub sha256: String,
}

/// What a webhook's delivery said, for a run it started.
pub struct WebhookTrigger {
    pub id: i64,
    /// The reader may open its delivery log (admins and devops).
    pub linked: bool,
    pub event: String,
    pub branch: String,
    pub commit: String,
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
    artifacts: Vec<ArtifactRow>,
    agent_id: i64,
    /// The execution this one retries; 0 if none.
    retry_of: i64,
    /// For a release stage's run, its deployment and stage; 0 otherwise.
    release_execution_id: i64,
    stage_execution_id: i64,
    /// For a schedule's run, the schedule; 0 otherwise.
    schedule_id: i64,
    /// The webhook delivery that started it.
    webhook: Option<WebhookTrigger>,
    /// The pipeline it ran, for the link to its page.
    pipeline_id: i64,
    started: String,
    took: String,
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
            duration: view::duration(step.started_at.as_ref(), step.finished_at.as_ref()),
        })
        .collect();
    let artifacts = web
        .pipelines
        .list_artifacts(session.request(pb::ListArtifactsRequest {
            customer_id,
            execution_id,
        }))
        .await?
        .into_inner()
        .artifacts
        .into_iter()
        .map(|artifact| ArtifactRow {
            id: artifact.id,
            path: artifact.path,
            size: super::usage::bytes(artifact.size_bytes),
            sha256: artifact.sha256,
        })
        .collect();
    let started = view::time(execution.started_at.as_ref());
    let took = view::duration(
        execution.started_at.as_ref(),
        execution.finished_at.as_ref(),
    );
    let agent_id = execution.agent_id;
    let (retry_of, pipeline_id) = (execution.retry_of, execution.pipeline_id);
    let (release_execution_id, stage_execution_id, schedule_id) =
        execution.trigger.as_ref().map_or((0, 0, 0), |trigger| {
            (
                trigger.release_execution_id,
                trigger.stage_execution_id,
                trigger.schedule_id,
            )
        });
    let webhook = execution
        .trigger
        .as_ref()
        .filter(|trigger| trigger.webhook_id > 0)
        .map(|trigger| WebhookTrigger {
            id: trigger.webhook_id,
            linked: frame.may(&super::webhooks::MANAGERS),
            event: trigger.event.clone(),
            branch: trigger.branch.clone(),
            commit: trigger.commit.clone(),
        });
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
        artifacts,
        agent_id,
        retry_of,
        release_execution_id,
        stage_execution_id,
        schedule_id,
        webhook,
        pipeline_id,
        started,
        took,
        execution: ExecutionRow::from(execution),
    }))
}

/// An artifact's content, streamed from the store through the API's own download (a download,
/// never rendered: `Content-Disposition: attachment`, `application/octet-stream`).
pub async fn download_artifact(
    State(web): State<Web>,
    session: Session,
    Path((customer, artifact)): Path<(String, String)>,
) -> Result<Response, WebError> {
    use tokio_stream::StreamExt;
    let (customer_id, artifact_id) = (id(&customer)?, id(&artifact)?);
    let mut stream = web
        .pipelines
        .download_artifact(session.request(pb::DownloadArtifactRequest {
            customer_id,
            artifact_id,
        }))
        .await?
        .into_inner();
    // The first message names the artifact; its data may start there too.
    let first = stream
        .next()
        .await
        .ok_or(WebError::NotFound)?
        .map_err(WebError::from)?;
    let name = first
        .artifact
        .as_ref()
        .and_then(|artifact| artifact.path.rsplit('/').next())
        .map(|name| {
            name.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("artifact-{artifact_id}"));
    let size = first.artifact.as_ref().map(|artifact| artifact.size_bytes);
    let body = tokio_stream::once(Ok::<_, tonic::Status>(first.data))
        .chain(stream.map(|message| message.map(|message| message.data)))
        .map(|data| data.map(axum::body::Bytes::from));
    let mut response = axum::body::Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(value) =
        axum::http::HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
    {
        headers.insert(axum::http::header::CONTENT_DISPOSITION, value);
    }
    if let Some(size) = size {
        headers.insert(
            axum::http::header::CONTENT_LENGTH,
            axum::http::HeaderValue::from(size),
        );
    }
    Ok(response)
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
