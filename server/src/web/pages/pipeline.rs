//! One pipeline: its steps and settings, how often it succeeded and failed, and its recent runs
//! as a duration chart (each bar linking to its execution) and a list.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::pipeline_service_server::PipelineService;

use serde::Deserialize;

use super::form::FormErrors;
use super::pipelines::ExecutionRow;
use super::{Frame, frame, id, try_write};
use crate::web::Web;
use crate::web::chart::{Bar, bars};
use crate::web::error::{WebError, render, render_with};
use crate::web::session::{Peer, Session};
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
pub(super) struct PipelinePage {
    frame: Frame,
    may_manage: bool,
    manage_reason: String,
    typed: Typed,
    schedules: Vec<ScheduleRow>,
    webhooks: Vec<super::webhooks::WebhookRow>,
    may_manage_webhooks: bool,
    webhooks_reason: String,
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

/// One of the pipeline's schedules, as listed.
pub struct ScheduleRow {
    pub id: i64,
    pub cron: String,
    pub time_zone: String,
    pub parameters: String,
    pub enabled: bool,
    pub next_run: String,
    pub last_run: String,
    pub last_execution_id: i64,
    pub last_error: String,
}

/// The new-schedule form as typed.
pub struct ScheduleForm {
    pub cron: String,
    pub time_zone: String,
    pub parameters: String,
}

impl Default for ScheduleForm {
    fn default() -> Self {
        ScheduleForm {
            cron: "0 2 * * *".into(),
            time_zone: "UTC".into(),
            parameters: String::new(),
        }
    }
}

/// What the page shows besides what it reads: refusals and forms as typed.
#[derive(Default)]
pub(super) struct Typed {
    /// Why a delete was refused ("" when none was).
    pub delete_error: String,
    pub schedule_form: ScheduleForm,
    pub schedule_errors: FormErrors,
    pub webhook_form: super::webhooks::WebhookForm,
    pub webhook_errors: FormErrors,
    /// A webhook just created, with its secret (shown this once).
    pub created_webhook: Option<super::webhooks::CreatedWebhook>,
}

pub async fn pipeline(
    State(web): State<Web>,
    session: Session,
    Path((customer, pipeline)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let (customer_id, pipeline_id) = (id(&customer)?, id(&pipeline)?);
    Ok(render(
        &page(&web, &session, customer_id, pipeline_id, Typed::default()).await?,
    ))
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
}

/// Deletes a pipeline (`PipelineService/DeletePipeline`); a refusal (a role, a deactivated
/// customer) is shown on its page.
pub async fn delete_pipeline(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path((customer, pipeline)): Path<(String, String)>,
    Form(form): Form<DeleteForm>,
) -> Result<Response, WebError> {
    let (customer_id, pipeline_id) = (id(&customer)?, id(&pipeline)?);
    session.check_csrf(&form.csrf)?;
    let api = web.pipelines.clone();
    let call = session.request(pb::DeletePipelineRequest {
        customer_id,
        pipeline_id,
    });
    let outcome = try_write(
        &web,
        peer,
        "cygnet.v1.PipelineService/DeletePipeline",
        async move { api.delete_pipeline(call).await },
    )
    .await?;
    match outcome {
        Ok(_) => Ok(Redirect::to(&format!("/c/{customer_id}/pipelines")).into_response()),
        Err(status) => {
            let (errors, code) = FormErrors::from_status(status, &[])?;
            let typed = Typed {
                delete_error: errors.general().to_owned(),
                ..Typed::default()
            };
            let page = page(&web, &session, customer_id, pipeline_id, typed).await?;
            Ok(render_with(code, &page))
        }
    }
}

pub(super) async fn page(
    web: &Web,
    session: &Session,
    customer_id: i64,
    pipeline_id: i64,
    typed: Typed,
) -> Result<PipelinePage, WebError> {
    let frame = frame(web, session, customer_id, "pipelines").await?;
    let pipeline = super::pipeline_form::current(web, session, customer_id, pipeline_id).await?;
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
    let (may_manage, manage_reason) = frame.allowed(
        &[pb::Role::Admin, pb::Role::Devops, pb::Role::Developer],
        "change or delete pipelines",
    );
    let (schedules, _) = every!(
        web.pipelines,
        list_schedules,
        session,
        ListSchedulesRequest {
            customer_id,
            pipeline_id,
            page_size: 1000,
        },
        schedules
    )
    .await?;
    let (webhooks, _) = every!(
        web.pipelines,
        list_webhooks,
        session,
        ListWebhooksRequest {
            customer_id,
            pipeline_id,
            page_size: 1000,
        },
        webhooks
    )
    .await?;
    let (may_manage_webhooks, webhooks_reason) =
        frame.allowed(&super::webhooks::MANAGERS, "manage webhooks");
    let schedules = schedules
        .into_iter()
        .map(|schedule| {
            let mut parameters: Vec<String> = schedule
                .parameters
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            parameters.sort();
            ScheduleRow {
                id: schedule.id,
                cron: schedule.cron,
                time_zone: schedule.time_zone,
                parameters: parameters.join(", "),
                enabled: schedule.enabled,
                next_run: view::time(schedule.next_run_at.as_ref()),
                last_run: view::time(schedule.last_run_at.as_ref()),
                last_execution_id: schedule.last_execution_id,
                last_error: schedule.last_error,
            }
        })
        .collect();
    Ok(PipelinePage {
        may_manage,
        manage_reason,
        typed,
        schedules,
        webhooks: super::webhooks::rows(webhooks),
        may_manage_webhooks,
        webhooks_reason,
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
    })
}
