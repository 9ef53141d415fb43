//! The customer's service monitors, and for the roles that manage them the form that creates
//! one (through `MonitorService/CreateMonitor`, a refusal shown at its field).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::monitor_service_server::MonitorService;
use serde::Deserialize;

use super::form::FormErrors;
use super::{Frame, frame, id, try_write};
use crate::web::Web;
use crate::web::error::{WebError, render, render_with};
use crate::web::session::{Peer, Session};
use crate::web::view;

pub struct MonitorRow {
    pub id: i64,
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
    may_manage: bool,
    manage_reason: String,
    form: MonitorForm,
    errors: FormErrors,
}

/// The new-monitor form, as typed.
#[derive(Debug, Deserialize)]
pub struct MonitorForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub interval_seconds: String,
}

impl Default for MonitorForm {
    fn default() -> Self {
        MonitorForm {
            csrf: String::new(),
            name: String::new(),
            kind: "http".into(),
            target: String::new(),
            interval_seconds: "60".into(),
        }
    }
}

const FIELDS: [&str; 4] = ["name", "kind", "target", "interval_seconds"];

pub async fn monitors(
    State(web): State<Web>,
    session: Session,
    Path(customer): Path<String>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    let page = page(
        &web,
        &session,
        customer_id,
        MonitorForm::default(),
        FormErrors::default(),
    )
    .await?;
    Ok(render(&page))
}

async fn page(
    web: &Web,
    session: &Session,
    customer_id: i64,
    form: MonitorForm,
    errors: FormErrors,
) -> Result<MonitorsPage, WebError> {
    let frame = frame(web, session, customer_id, "monitors").await?;
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
            id: monitor.id,
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
    let (may_manage, manage_reason) = frame.allowed(
        &[pb::Role::Admin, pb::Role::Devops, pb::Role::Developer],
        "create or delete monitors",
    );
    Ok(MonitorsPage {
        frame,
        monitors,
        may_manage,
        manage_reason,
        form,
        errors,
    })
}

/// Creates a monitor; a refusal comes back at the field it names.
pub async fn create_monitor(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(customer): Path<String>,
    axum::Form(form): axum::Form<MonitorForm>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    session.check_csrf(&form.csrf)?;
    let Ok(interval_seconds) = form.interval_seconds.trim().parse::<i32>() else {
        let errors = FormErrors::at(
            "interval_seconds",
            "interval_seconds must be a whole number of seconds",
        );
        let page = page(&web, &session, customer_id, form, errors).await?;
        return Ok(render_with(axum::http::StatusCode::BAD_REQUEST, &page));
    };
    let kind = match form.kind.as_str() {
        "http" => pb::MonitorKind::Http,
        "tcp" => pb::MonitorKind::Tcp,
        _ => pb::MonitorKind::Unspecified,
    };
    let api = web.monitors.clone();
    let request = session.request(pb::CreateMonitorRequest {
        customer_id,
        name: form.name.trim().to_owned(),
        kind: kind as i32,
        target: form.target.trim().to_owned(),
        interval_seconds,
        ..Default::default()
    });
    let outcome = try_write(
        &web,
        peer,
        "cygnet.v1.MonitorService/CreateMonitor",
        async move { api.create_monitor(request).await },
    )
    .await?;
    match outcome {
        Ok(_) => Ok(Redirect::to(&format!("/c/{customer_id}/monitors")).into_response()),
        Err(status) => {
            let (errors, code) = FormErrors::from_status(status, &FIELDS)?;
            let page = page(&web, &session, customer_id, form, errors).await?;
            Ok(render_with(code, &page))
        }
    }
}
