//! One pipeline: its steps and settings, how often it succeeded and failed, and its recent runs
//! as a duration chart (each bar linking to its execution) and a list.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::pipeline_service_server::PipelineService;

use super::pipelines::ExecutionRow;
use super::{Frame, frame, id};
use crate::web::Web;
use crate::web::chart::{Bar, bars};
use crate::web::error::{WebError, render};
use crate::web::session::Session;
use crate::web::view;

/// Runs the chart and the list show.
const RECENT_RUNS: i32 = 30;

pub struct StepView {
    pub name: String,
    pub command: String,
    pub artifacts: String,
}

#[derive(Template)]
#[template(path = "pipeline.html")]
struct PipelinePage {
    frame: Frame,
    pipeline: pb::Pipeline,
    steps: Vec<StepView>,
    labels: String,
    total: i64,
    succeeded: i64,
    failed: i64,
    other: i64,
    bars: Vec<Bar>,
    runs: Vec<ExecutionRow>,
}

pub async fn pipeline(
    State(web): State<Web>,
    session: Session,
    Path((customer, pipeline)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let (customer_id, pipeline_id) = (id(&customer)?, id(&pipeline)?);
    let frame = frame(&web, &session, customer_id, "pipelines").await?;
    let pipeline = web
        .pipelines
        .get_pipeline(session.request(pb::GetPipelineRequest {
            customer_id,
            pipeline_id,
        }))
        .await?
        .into_inner()
        .pipeline
        .ok_or(WebError::NotFound)?;
    let mut recent = web
        .pipelines
        .list_executions(session.request(pb::ListExecutionsRequest {
            customer_id,
            pipeline_id,
            page_size: RECENT_RUNS,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .executions;
    // The chart reads left to right, oldest first; runs not finished have no duration yet.
    recent.reverse();
    let bars = bars(
        recent
            .iter()
            .filter_map(|execution| {
                let seconds = view::seconds_between(
                    execution.started_at.as_ref(),
                    execution.finished_at.as_ref(),
                )?;
                let status = view::execution_status(execution.status);
                Some((
                    seconds,
                    format!("status-{}", status.replace(' ', "-")),
                    format!(
                        "execution {}: {status} in {}",
                        execution.id,
                        view::duration(
                            execution.started_at.as_ref(),
                            execution.finished_at.as_ref()
                        )
                    ),
                    format!("/c/{customer_id}/executions/{}", execution.id),
                ))
            })
            .collect(),
    );
    recent.reverse();
    let stats = pipeline.stats.unwrap_or_default();
    Ok(render(&PipelinePage {
        steps: pipeline
            .steps
            .iter()
            .map(|step| StepView {
                name: step.name.clone(),
                command: step.command.clone(),
                artifacts: step.artifacts.join(", "),
            })
            .collect(),
        labels: pipeline
            .agent_selector
            .as_ref()
            .map(|selector| selector.labels.join(", "))
            .unwrap_or_default(),
        total: stats.executions_total,
        succeeded: stats.executions_succeeded,
        failed: stats.executions_failed,
        other: (stats.executions_total - stats.executions_succeeded - stats.executions_failed)
            .max(0),
        bars,
        runs: recent.into_iter().map(ExecutionRow::from).collect(),
        frame,
        pipeline,
    }))
}
