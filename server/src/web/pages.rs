//! The pages and the forms they post.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::{
    agent_service_server::AgentService, customer_service_server::CustomerService,
    monitor_service_server::MonitorService, pipeline_service_server::PipelineService,
    release_service_server::ReleaseService, user_service_server::UserService,
};
use serde::Deserialize;

use super::Web;
use super::error::{WebError, render};
use super::session::{Peer, Session};
use super::view;

/// How many activity events the dashboard lists.
const ACTIVITY_SHOWN: i32 = 20;
/// How much of a log the execution page renders at first; the rest arrives live.
const LOG_RENDERED_BYTES: usize = 4 << 20;

/// A path segment that must be an id; anything else is as unknown as a missing record.
fn id(segment: &str) -> Result<i64, WebError> {
    segment
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(WebError::NotFound)
}

/// A customer in the switcher.
pub struct Choice {
    pub id: i64,
    pub name: String,
    pub selected: bool,
}

/// What every page shows around its content.
pub struct Frame {
    pub user: String,
    pub customers: Vec<Choice>,
    pub customer_id: i64,
    pub customer_name: String,
    /// The caller's role here (platform administrators act as admins).
    pub role: pb::Role,
    pub csrf: String,
    pub section: &'static str,
}

impl Frame {
    pub fn role_name(&self) -> String {
        view::role(self.role as i32)
    }

    fn may(&self, roles: &[pb::Role]) -> bool {
        roles.contains(&self.role)
    }

    /// Roles that may run pipelines and cancel executions (as the API decides).
    pub fn may_run(&self) -> bool {
        self.may(&[pb::Role::Admin, pb::Role::Devops, pb::Role::Developer])
    }
}

async fn frame(
    web: &Web,
    session: &Session,
    customer_id: i64,
    section: &'static str,
) -> Result<Frame, WebError> {
    // Another customer's id is NOT_FOUND here, like an unknown one.
    let (customer, me) = tokio::try_join!(
        web.customers
            .get_customer(session.request(pb::GetCustomerRequest { customer_id })),
        web.users
            .get_current_user(session.request(pb::GetCurrentUserRequest {})),
    )?;
    let customer = customer.into_inner().customer.ok_or(WebError::NotFound)?;
    let me = me.into_inner();
    let user = me.user.unwrap_or_default();
    let mut role = pb::Role::Admin;
    let mut customers = Vec::new();
    for membership in me.memberships {
        let (Some(link), Some(member_of)) = (membership.membership, membership.customer) else {
            continue;
        };
        if member_of.id == customer_id {
            role = pb::Role::try_from(link.role).unwrap_or(pb::Role::Viewer);
        }
        customers.push(Choice {
            id: member_of.id,
            name: member_of.display_name,
            selected: member_of.id == customer_id,
        });
    }
    if user.is_superuser {
        // Platform administrators may look at every customer.
        customers = all_customers(web, session)
            .await?
            .into_iter()
            .map(|other| Choice {
                selected: other.id == customer_id,
                id: other.id,
                name: other.display_name,
            })
            .collect();
    }
    Ok(Frame {
        user: user.username,
        customers,
        customer_id,
        customer_name: customer.display_name,
        role,
        csrf: session.csrf(),
        section,
    })
}

/// Every customer, for platform administrators.
async fn all_customers(web: &Web, session: &Session) -> Result<Vec<pb::Customer>, WebError> {
    let mut customers = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = web
            .customers
            .list_customers(session.request(pb::ListCustomersRequest {
                page_size: 1000,
                page_token,
                active_only: false,
            }))
            .await?
            .into_inner();
        customers.extend(page.customers);
        if page.next_page_token.is_empty() {
            return Ok(customers);
        }
        page_token = page.next_page_token;
    }
}

pub async fn index(State(web): State<Web>, session: Option<Session>) -> Result<Response, WebError> {
    let Some(session) = session else {
        return Ok(Redirect::to("/signin").into_response());
    };
    let me = web
        .users
        .get_current_user(session.request(pb::GetCurrentUserRequest {}))
        .await?
        .into_inner();
    let mut first = me.default_customer_id;
    if first == 0 && me.user.as_ref().is_some_and(|user| user.is_superuser) {
        first = all_customers(&web, &session)
            .await?
            .first()
            .map_or(0, |customer| customer.id);
    }
    if first > 0 {
        return Ok(Redirect::to(&format!("/c/{first}")).into_response());
    }
    Err(WebError::Page(
        StatusCode::NOT_FOUND,
        "You are not a member of any customer yet; ask an administrator to add you.".into(),
    ))
}

#[derive(Deserialize)]
pub struct SwitchQuery {
    #[serde(default)]
    customer: String,
}

/// The customer switcher's form (a GET, so it works without JavaScript).
pub async fn switch(
    _session: Session,
    Query(query): Query<SwitchQuery>,
) -> Result<Response, WebError> {
    let customer = id(&query.customer)?;
    Ok(Redirect::to(&format!("/c/{customer}")).into_response())
}

pub async fn not_found() -> WebError {
    WebError::NotFound
}

pub async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/app.css"),
    )
}

pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/app.js"),
    )
}

pub struct Card {
    pub key: &'static str,
    pub title: &'static str,
    pub total: i64,
    pub detail: String,
}

pub struct ActivityItem {
    pub id: i64,
    pub kind: String,
    pub message: String,
    pub at: String,
}

impl From<pb::ActivityEvent> for ActivityItem {
    fn from(event: pb::ActivityEvent) -> Self {
        ActivityItem {
            id: event.id,
            at: view::time(event.created_at.as_ref()),
            kind: event.kind,
            message: event.message,
        }
    }
}

fn cards(stats: &pb::CustomerStats) -> Vec<Card> {
    let services = match stats.services_down {
        0 => format!("{} warning", stats.services_warning),
        down => format!("{} warning, {down} down", stats.services_warning),
    };
    let executions = match stats.executions_total {
        0 => "no runs yet".to_owned(),
        _ => format!("{:.0}% success", stats.success_rate_percent),
    };
    vec![
        Card {
            key: "agents",
            title: "Total Agents",
            total: stats.agents_total,
            detail: format!("{} online", stats.agents_online),
        },
        Card {
            key: "pipelines",
            title: "Pipelines",
            total: stats.pipelines_total,
            detail: format!("{} succeeding", stats.pipelines_succeeding),
        },
        Card {
            key: "releases",
            title: "Releases",
            total: stats.releases_total,
            detail: format!(
                "{} active, {} deploying",
                stats.releases_active, stats.releases_in_progress
            ),
        },
        Card {
            key: "services",
            title: "Services",
            total: stats.services_total,
            detail: services,
        },
        Card {
            key: "users",
            title: "Users",
            total: stats.users_total,
            detail: format!("{} active", stats.users_active),
        },
        Card {
            key: "executions",
            title: "Executions",
            total: stats.executions_total,
            detail: executions,
        },
    ]
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    frame: Frame,
    cards: Vec<Card>,
    activity: Vec<ActivityItem>,
    newest: i64,
}

pub async fn dashboard(
    State(web): State<Web>,
    session: Session,
    Path(customer): Path<String>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    // Independent reads, concurrently: the page takes as long as the slowest.
    let (frame, stats, activity) = tokio::try_join!(
        frame(&web, &session, customer_id, "dashboard"),
        async {
            Ok(web
                .customers
                .get_customer_stats(session.request(pb::GetCustomerStatsRequest { customer_id }))
                .await?)
        },
        async {
            Ok(web
                .customers
                .list_activity(session.request(pb::ListActivityRequest {
                    customer_id,
                    page_size: ACTIVITY_SHOWN,
                    ..Default::default()
                }))
                .await?)
        },
    )?;
    let stats = stats.into_inner().stats.unwrap_or_default();
    let activity: Vec<ActivityItem> = activity
        .into_inner()
        .events
        .into_iter()
        .map(ActivityItem::from)
        .collect();
    let newest = activity.first().map_or(0, |item| item.id);
    Ok(render(&DashboardPage {
        frame,
        cards: cards(&stats),
        activity,
        newest,
    }))
}

pub struct AgentRow {
    pub name: String,
    pub status: String,
    pub labels: String,
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub running_jobs: u32,
    pub last_seen: String,
}

#[derive(Template)]
#[template(path = "agents.html")]
struct AgentsPage {
    frame: Frame,
    agents: Vec<AgentRow>,
}

pub async fn agents(
    State(web): State<Web>,
    session: Session,
    Path(customer): Path<String>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    let frame = frame(&web, &session, customer_id, "agents").await?;
    let mut agents = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = web
            .agents
            .list_agents(session.request(pb::ListAgentsRequest {
                customer_id,
                page_size: 1000,
                page_token,
                ..Default::default()
            }))
            .await?
            .into_inner();
        agents.extend(page.agents.into_iter().map(|agent| {
            let online = agent.status == pb::AgentStatus::Online as i32;
            let latest = agent.latest.filter(|_| online);
            AgentRow {
                name: agent.name,
                status: view::agent_status(agent.status),
                labels: agent.labels.join(", "),
                cpu: latest
                    .as_ref()
                    .map(|sample| sample.cpu_percent.clamp(0.0, 100.0)),
                memory: latest
                    .as_ref()
                    .map(|sample| sample.memory_percent.clamp(0.0, 100.0)),
                running_jobs: latest.as_ref().map_or(0, |sample| sample.running_jobs),
                last_seen: view::time(agent.last_seen_at.as_ref()),
            }
        }));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(render(&AgentsPage { frame, agents }))
}

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
}

impl From<pb::Execution> for ExecutionRow {
    fn from(execution: pb::Execution) -> Self {
        ExecutionRow {
            id: execution.id,
            pipeline: execution.pipeline_name,
            status: view::execution_status(execution.status),
            by: execution.triggered_by_username,
            created: view::time(execution.created_at.as_ref()),
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
    let mut pipelines = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = web
            .pipelines
            .list_pipelines(session.request(pb::ListPipelinesRequest {
                customer_id,
                page_size: 1000,
                page_token,
            }))
            .await?
            .into_inner();
        pipelines.extend(page.pipelines.into_iter().map(|pipeline| {
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
        }));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
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

/// Runs a write as the API's own write RPCs run: as a task (a browser that leaves does not
/// stop it halfway) with its audit entry.
async fn write<T, F>(web: &Web, peer: Peer, method: &'static str, call: F) -> Result<T, WebError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
{
    let store = web.store.clone();
    let task = web
        .tasks
        .spawn(async move { crate::audit::audited(&store, method, peer.0, call).await });
    match task.await {
        Ok(result) => Ok(result?.into_inner()),
        Err(_) => Err(WebError::Page(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is stopping; try again".into(),
        )),
    }
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
    let mut log = String::new();
    let mut last_sequence = 0;
    let mut page_token = String::new();
    let mut log_truncated = false;
    loop {
        let page = web
            .pipelines
            .get_execution_logs(session.request(pb::GetExecutionLogsRequest {
                customer_id,
                execution_id,
                page_token,
                ..Default::default()
            }))
            .await?
            .into_inner();
        for chunk in page.chunks {
            last_sequence = chunk.sequence;
            log.push_str(&chunk.text);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        if log.len() >= LOG_RENDERED_BYTES {
            log_truncated = true;
            break;
        }
        page_token = page.next_page_token;
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

pub struct StageView {
    pub id: i64,
    pub environment: String,
    pub status: String,
    pub may_decide: bool,
    pub note: String,
}

pub struct ReleaseRunView {
    pub id: i64,
    pub title: String,
    pub status: String,
    pub created: String,
    pub stages: Vec<StageView>,
}

pub struct ReleaseView {
    pub name: String,
    pub description: String,
    pub status: String,
    pub environments: String,
}

#[derive(Template)]
#[template(path = "releases.html")]
struct ReleasesPage {
    frame: Frame,
    releases: Vec<ReleaseView>,
    runs: Vec<ReleaseRunView>,
}

pub async fn releases(
    State(web): State<Web>,
    session: Session,
    Path(customer): Path<String>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    let frame = frame(&web, &session, customer_id, "releases").await?;
    let environments: HashMap<i64, pb::Environment> = web
        .releases
        .list_environments(session.request(pb::ListEnvironmentsRequest {
            customer_id,
            page_size: 1000,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .environments
        .into_iter()
        .map(|environment| (environment.id, environment))
        .collect();
    let environment_name = |id: i64| {
        environments.get(&id).map_or_else(
            || format!("environment {id}"),
            |environment| environment.name.clone(),
        )
    };
    let releases = web
        .releases
        .list_releases(session.request(pb::ListReleasesRequest {
            customer_id,
            page_size: 1000,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .releases
        .into_iter()
        .map(|release| ReleaseView {
            status: pb::ReleaseStatus::try_from(release.status)
                .map(|status| {
                    status
                        .as_str_name()
                        .trim_start_matches("RELEASE_STATUS_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_default(),
            environments: release
                .stages
                .iter()
                .map(|stage| environment_name(stage.environment_id))
                .collect::<Vec<_>>()
                .join(" → "),
            name: release.name,
            description: release.description,
        })
        .collect();
    let runs = web
        .releases
        .list_release_executions(session.request(pb::ListReleaseExecutionsRequest {
            customer_id,
            page_size: 20,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .release_executions
        .into_iter()
        .map(|run| ReleaseRunView {
            id: run.id,
            title: format!("{} {} (#{})", run.release_name, run.version, run.number),
            status: view::release_execution_status(run.status),
            created: view::time(run.created_at.as_ref()),
            stages: run
                .stages
                .into_iter()
                .map(|stage| {
                    let awaiting = stage.status == pb::StageStatus::AwaitingApproval as i32;
                    let approvers = environments
                        .get(&stage.environment_id)
                        .map(|environment| environment.approver_roles.clone())
                        .unwrap_or_default();
                    StageView {
                        id: stage.id,
                        environment: if stage.environment_name.is_empty() {
                            environment_name(stage.environment_id)
                        } else {
                            stage.environment_name
                        },
                        status: view::stage_status(stage.status),
                        may_decide: awaiting && approvers.contains(&(frame.role as i32)),
                        note: if stage.comment.is_empty() {
                            stage.reason
                        } else {
                            stage.comment
                        },
                    }
                })
                .collect(),
        })
        .collect();
    Ok(render(&ReleasesPage {
        frame,
        releases,
        runs,
    }))
}

#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    comment: String,
}

/// Approve or reject: the same form, two RPCs.
#[derive(Clone, Copy)]
enum Decision {
    Approve,
    Reject,
}

async fn decide_stage(
    web: Web,
    session: Session,
    peer: Peer,
    (customer, stage): (String, String),
    form: DecisionForm,
    decision: Decision,
) -> Result<Response, WebError> {
    let (customer_id, stage_execution_id) = (id(&customer)?, id(&stage)?);
    session.check_csrf(&form.csrf)?;
    let api = web.releases.clone();
    match decision {
        Decision::Approve => {
            let request = session.request(pb::ApproveStageRequest {
                customer_id,
                stage_execution_id,
                comment: form.comment,
            });
            write(
                &web,
                peer,
                "cygnet.v1.ReleaseService/ApproveStage",
                async move { api.approve_stage(request).await },
            )
            .await?;
        }
        Decision::Reject => {
            let request = session.request(pb::RejectStageRequest {
                customer_id,
                stage_execution_id,
                comment: form.comment,
            });
            write(
                &web,
                peer,
                "cygnet.v1.ReleaseService/RejectStage",
                async move { api.reject_stage(request).await },
            )
            .await?;
        }
    }
    Ok(Redirect::to(&format!("/c/{customer_id}/releases")).into_response())
}

pub async fn approve_stage(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(path): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, WebError> {
    decide_stage(web, session, peer, path, form, Decision::Approve).await
}

pub async fn reject_stage(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(path): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, WebError> {
    decide_stage(web, session, peer, path, form, Decision::Reject).await
}

pub struct MonitorRow {
    pub name: String,
    pub kind: String,
    pub target: String,
    pub status: String,
    pub response_ms: String,
    pub uptime: String,
    pub checked: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "monitors.html")]
struct MonitorsPage {
    frame: Frame,
    monitors: Vec<MonitorRow>,
}

pub async fn monitors(
    State(web): State<Web>,
    session: Session,
    Path(customer): Path<String>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    let frame = frame(&web, &session, customer_id, "monitors").await?;
    let monitors = web
        .monitors
        .list_monitors(session.request(pb::ListMonitorsRequest {
            customer_id,
            page_size: 1000,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .monitors
        .into_iter()
        .map(|monitor| MonitorRow {
            kind: pb::MonitorKind::try_from(monitor.kind)
                .map(|kind| {
                    kind.as_str_name()
                        .trim_start_matches("MONITOR_KIND_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_default(),
            status: view::monitor_status(monitor.status),
            response_ms: if monitor.last_checked_at.is_some() {
                format!("{} ms", monitor.last_response_ms)
            } else {
                String::new()
            },
            uptime: format!("{:.1}%", monitor.uptime_percent_24h),
            checked: view::time(monitor.last_checked_at.as_ref()),
            name: monitor.name,
            target: monitor.target,
            message: monitor.last_message,
        })
        .collect();
    Ok(render(&MonitorsPage { frame, monitors }))
}
