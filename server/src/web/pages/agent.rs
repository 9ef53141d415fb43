//! One agent: what it is and where, the jobs it runs now, and its CPU, memory and free disk over
//! the last hour, six hours or day, drawn from the stored heartbeat samples
//! (`AgentService/GetAgentMetrics`).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::agent_service_server::AgentService;
use cygnet_proto::v1::pipeline_service_server::PipelineService;
use serde::Deserialize;

use super::usage::bytes;
use super::{Frame, frame, id};
use crate::web::Web;
use crate::web::chart::LineChart;
use crate::web::error::{WebError, render};
use crate::web::session::Session;
use crate::web::view;

/// The ranges the page offers, by their query value: (value, hours, label).
const RANGES: [(&str, i64, &str); 3] = [
    ("1h", 1, "Last hour"),
    ("6h", 6, "6 hours"),
    ("24h", 24, "24 hours"),
];

#[derive(Deserialize)]
pub struct RangeQuery {
    #[serde(default)]
    range: String,
}

pub struct RangeLink {
    pub value: &'static str,
    pub label: &'static str,
    pub current: bool,
}

pub struct RunningJob {
    pub execution_id: i64,
    pub pipeline: String,
    pub started: String,
}

#[derive(Template)]
#[template(path = "agent.html")]
struct AgentPage {
    frame: Frame,
    agent: pb::Agent,
    status: String,
    last_seen: String,
    registered: String,
    ranges: Vec<RangeLink>,
    charts: Vec<LineChart>,
    truncated: bool,
    running: Vec<RunningJob>,
}

pub async fn agent(
    State(web): State<Web>,
    session: Session,
    Path((customer, agent)): Path<(String, String)>,
    Query(query): Query<RangeQuery>,
) -> Result<Response, WebError> {
    let (customer_id, agent_id) = (id(&customer)?, id(&agent)?);
    let (_, hours, _) = RANGES
        .iter()
        .find(|(value, ..)| *value == query.range)
        .unwrap_or(&RANGES[0]);
    let frame = frame(&web, &session, customer_id, "agents").await?;
    let agent = web
        .agents
        .get_agent(session.request(pb::GetAgentRequest {
            customer_id,
            agent_id,
        }))
        .await?
        .into_inner()
        .agent
        .ok_or(WebError::NotFound)?;
    let end = chrono::Utc::now().timestamp();
    let start = end - hours * 3600;
    let metrics = web
        .agents
        .get_agent_metrics(session.request(pb::GetAgentMetricsRequest {
            customer_id,
            agent_id,
            start_time: Some(prost_types::Timestamp {
                seconds: start,
                nanos: 0,
            }),
            end_time: None,
        }))
        .await?
        .into_inner();
    // Samples further apart than three periods are a gap (the agent was away).
    let gap = i64::from(metrics.sample_interval_seconds.max(1)) * 3;
    let at = |sample: &pb::AgentSample| sample.sampled_at.as_ref().map_or(0, |at| at.seconds);
    let series = |value: fn(&pb::AgentSample) -> f64| -> Vec<(i64, f64)> {
        metrics
            .samples
            .iter()
            .map(|sample| (at(sample), value(sample)))
            .collect()
    };
    let percent = |value: f64| format!("{value:.0}%");
    let disk = series(|sample| sample.disk_free_bytes as f64);
    let most_disk = disk.iter().map(|(_, free)| *free).fold(0.0_f64, f64::max);
    let charts = vec![
        LineChart::new(
            "CPU",
            &series(|sample| sample.cpu_percent),
            (start, end),
            100.0,
            gap,
            percent,
        ),
        LineChart::new(
            "Memory",
            &series(|sample| sample.memory_percent),
            (start, end),
            100.0,
            gap,
            percent,
        ),
        LineChart::new(
            "Free disk",
            &disk,
            (start, end),
            most_disk * 1.1,
            gap,
            |free| bytes(free as i64),
        ),
    ];
    let (running, _) = every!(
        web.pipelines,
        list_executions,
        session,
        ListExecutionsRequest {
            customer_id,
            page_size: 1000,
            pipeline_id: 0,
            status: pb::ExecutionStatus::Running as i32,
            trigger_kind: 0,
        },
        executions
    )
    .await?;
    let running = running
        .into_iter()
        .filter(|execution| execution.agent_id == agent_id)
        .map(|execution| RunningJob {
            execution_id: execution.id,
            pipeline: execution.pipeline_name,
            started: view::time(execution.started_at.as_ref()),
        })
        .collect();
    Ok(render(&AgentPage {
        frame,
        status: view::agent_status(agent.status),
        last_seen: view::time(agent.last_seen_at.as_ref()),
        registered: view::time(agent.registered_at.as_ref()),
        ranges: RANGES
            .iter()
            .map(|(value, range_hours, label)| RangeLink {
                value,
                label,
                current: range_hours == hours,
            })
            .collect(),
        charts,
        truncated: metrics.truncated,
        running,
        agent,
    }))
}
