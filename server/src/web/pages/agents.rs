//! The customer's agents.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::agent_service_server::AgentService;

use super::{Frame, all_pages, frame, id};
use crate::web::Web;
use crate::web::error::{WebError, render};
use crate::web::session::Session;
use crate::web::view;

pub struct AgentRow {
    pub id: i64,
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
    let (agents, _) = all_pages(
        |page_token| {
            let call = web
                .agents
                .list_agents(session.request(pb::ListAgentsRequest {
                    customer_id,
                    page_size: 1000,
                    page_token,
                    ..Default::default()
                }));
            async move {
                call.await.map(|page| {
                    let page = page.into_inner();
                    (page.agents, page.next_page_token)
                })
            }
        },
        |_| false,
    )
    .await?;
    let agents = agents
        .into_iter()
        .map(|agent| {
            let online = agent.status == pb::AgentStatus::Online as i32;
            let latest = agent.latest.filter(|_| online);
            AgentRow {
                id: agent.id,
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
        })
        .collect();
    Ok(render(&AgentsPage { frame, agents }))
}
