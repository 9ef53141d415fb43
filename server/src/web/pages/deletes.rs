//! The buttons that remove something from a list page — a monitor, a variable, a variable
//! group — each one write RPC; its refusal (a role, a state) is the error page with the API's
//! message, and success returns to the list.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::monitor_service_server::MonitorService;
use cygnet_proto::v1::variable_service_server::VariableService;
use serde::Deserialize;

use super::{id, write};
use crate::web::Web;
use crate::web::error::WebError;
use crate::web::session::{Peer, Session};

#[derive(Deserialize)]
pub struct Confirmed {
    #[serde(default)]
    csrf: String,
}

pub async fn delete_monitor(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path((customer, monitor)): Path<(String, String)>,
    Form(form): Form<Confirmed>,
) -> Result<Response, WebError> {
    let (customer_id, monitor_id) = (id(&customer)?, id(&monitor)?);
    session.check_csrf(&form.csrf)?;
    let api = web.monitors.clone();
    let request = session.request(pb::DeleteMonitorRequest {
        customer_id,
        monitor_id,
    });
    write(
        &web,
        peer,
        "cygnet.v1.MonitorService/DeleteMonitor",
        async move { api.delete_monitor(request).await },
    )
    .await?;
    Ok(Redirect::to(&format!("/c/{customer_id}/monitors")).into_response())
}

pub async fn delete_variable_group(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path((customer, group)): Path<(String, String)>,
    Form(form): Form<Confirmed>,
) -> Result<Response, WebError> {
    let (customer_id, group_id) = (id(&customer)?, id(&group)?);
    session.check_csrf(&form.csrf)?;
    let api = web.variables.clone();
    let request = session.request(pb::DeleteVariableGroupRequest {
        customer_id,
        group_id,
    });
    write(
        &web,
        peer,
        "cygnet.v1.VariableService/DeleteVariableGroup",
        async move { api.delete_variable_group(request).await },
    )
    .await?;
    Ok(Redirect::to(&format!("/c/{customer_id}/variables")).into_response())
}

#[derive(Deserialize)]
pub struct VariableNamed {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    environment_id: i64,
}

pub async fn delete_variable(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path((customer, group)): Path<(String, String)>,
    Form(form): Form<VariableNamed>,
) -> Result<Response, WebError> {
    let (customer_id, group_id) = (id(&customer)?, id(&group)?);
    session.check_csrf(&form.csrf)?;
    let api = web.variables.clone();
    let request = session.request(pb::DeleteVariableRequest {
        customer_id,
        group_id,
        key: form.key,
        environment_id: form.environment_id,
    });
    write(
        &web,
        peer,
        "cygnet.v1.VariableService/DeleteVariable",
        async move { api.delete_variable(request).await },
    )
    .await?;
    Ok(Redirect::to(&format!("/c/{customer_id}/variables#group-{group_id}")).into_response())
}
