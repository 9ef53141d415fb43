//! The customer's dashboard: totals and the latest activity.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::customer_service_server::CustomerService;

use super::{Frame, frame, id};
use crate::web::Web;
use crate::web::error::{WebError, render};
use crate::web::session::Session;
use crate::web::view;

/// How many activity events the dashboard lists.
const ACTIVITY_SHOWN: i32 = 20;

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
    /// The page of the record it is about ("" for none).
    pub href: String,
}

impl Card {
    /// The page a card's figures come from.
    pub fn page(&self) -> &'static str {
        match self.key {
            "agents" => "agents",
            "releases" => "releases",
            "services" => "monitors",
            "users" => "members",
            _ => "pipelines",
        }
    }
}

impl ActivityItem {
    fn new(customer_id: i64, event: pb::ActivityEvent) -> Self {
        ActivityItem {
            href: view::activity_link(customer_id, &event),
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

async fn stats(
    web: &Web,
    session: &Session,
    customer_id: i64,
) -> Result<pb::CustomerStats, WebError> {
    Ok(web
        .customers
        .get_customer_stats(session.request(pb::GetCustomerStatsRequest { customer_id }))
        .await?
        .into_inner()
        .stats
        .unwrap_or_default())
}

/// The cards' figures as JSON, which the dashboard's script reads again when activity arrives
/// (so the cards follow the feed without a reload).
pub async fn cards_now(
    State(web): State<Web>,
    session: Session,
    Path(customer): Path<String>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    let cards: Vec<serde_json::Value> = cards(&stats(&web, &session, customer_id).await?)
        .into_iter()
        .map(|card| {
            serde_json::json!({
                "key": card.key,
                "total": card.total,
                "detail": card.detail,
            })
        })
        .collect();
    let body = serde_json::Value::Array(cards).to_string();
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/json"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
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
        stats(&web, &session, customer_id),
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
    let activity: Vec<ActivityItem> = activity
        .into_inner()
        .events
        .into_iter()
        .map(|event| ActivityItem::new(customer_id, event))
        .collect();
    let newest = activity.first().map_or(0, |item| item.id);
    Ok(render(&DashboardPage {
        frame,
        cards: cards(&stats),
        activity,
        newest,
    }))
}
