//! The customer's service monitors.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::monitor_service_server::MonitorService;

use super::{Frame, frame, id};
use crate::web::Web;
use crate::web::error::{WebError, render};
use crate::web::session::Session;
use crate::web::view;

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
