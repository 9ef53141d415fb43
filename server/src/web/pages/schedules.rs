//! A pipeline's schedules on its page: create one (cron, zone, parameters), pause or resume
//! it, delete it — each through PipelineService, a refusal shown at the input it names.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::pipeline_service_server::PipelineService;

use super::form::{Fields, FormErrors, name_value_lines};
use super::pipeline::{ScheduleForm, Typed, page};
use super::{id, try_write, write};
use crate::web::Web;
use crate::web::error::{WebError, render_with};
use crate::web::session::{Peer, Session};

/// The page of the pipeline a form came from (its `pipeline` field).
fn back(customer_id: i64, fields: &Fields) -> Result<String, WebError> {
    let pipeline_id = id(&fields.one("pipeline"))?;
    Ok(format!(
        "/c/{customer_id}/pipelines/{pipeline_id}#schedules"
    ))
}

pub async fn create_schedule(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path((customer, pipeline)): Path<(String, String)>,
    fields: Fields,
) -> Result<Response, WebError> {
    let (customer_id, pipeline_id) = (id(&customer)?, id(&pipeline)?);
    session.check_csrf(&fields.one("csrf"))?;
    let form = ScheduleForm {
        cron: fields.one("cron"),
        time_zone: fields.one("time_zone"),
        parameters: fields.one("parameters"),
    };
    let refused = |form: ScheduleForm, errors: FormErrors| Typed {
        schedule_form: form,
        schedule_errors: errors,
        ..Typed::default()
    };
    let parameters = match name_value_lines(&form.parameters, "parameters", "NAME=value") {
        Ok(parameters) => parameters,
        Err(errors) => {
            let page = page(
                &web,
                &session,
                customer_id,
                pipeline_id,
                refused(form, errors),
            )
            .await?;
            return Ok(render_with(StatusCode::BAD_REQUEST, &page));
        }
    };
    let api = web.pipelines.clone();
    let request = session.request(pb::CreateScheduleRequest {
        customer_id,
        pipeline_id,
        cron: form.cron.trim().to_owned(),
        time_zone: form.time_zone.trim().to_owned(),
        parameters,
        enabled: None,
    });
    let outcome = try_write(
        &web,
        peer,
        "cygnet.v1.PipelineService/CreateSchedule",
        async move { api.create_schedule(request).await },
    )
    .await?;
    match outcome {
        Ok(_) => Ok(Redirect::to(&format!(
            "/c/{customer_id}/pipelines/{pipeline_id}#schedules"
        ))
        .into_response()),
        Err(status) => {
            let (errors, code) =
                FormErrors::from_status(status, &["cron", "time_zone", "parameters"])?;
            let page = page(
                &web,
                &session,
                customer_id,
                pipeline_id,
                refused(form, errors),
            )
            .await?;
            Ok(render_with(code, &page))
        }
    }
}

/// What a schedule's row buttons do.
enum Change {
    /// Pause (false) or resume (true).
    Enable(bool),
    Delete,
}

/// Applies a row button's change through PipelineService and returns to the pipeline's page.
async fn change_schedule(
    web: Web,
    session: Session,
    peer: Peer,
    (customer, schedule): (String, String),
    fields: Fields,
    change: Change,
) -> Result<Response, WebError> {
    let (customer_id, schedule_id) = (id(&customer)?, id(&schedule)?);
    session.check_csrf(&fields.one("csrf"))?;
    let back = back(customer_id, &fields)?;
    let api = web.pipelines.clone();
    match change {
        Change::Enable(enabled) => {
            let request = session.request(pb::UpdateScheduleRequest {
                customer_id,
                schedule_id,
                enabled: Some(enabled),
                ..Default::default()
            });
            write(
                &web,
                peer,
                "cygnet.v1.PipelineService/UpdateSchedule",
                async move { api.update_schedule(request).await },
            )
            .await?;
        }
        Change::Delete => {
            let request = session.request(pb::DeleteScheduleRequest {
                customer_id,
                schedule_id,
            });
            write(
                &web,
                peer,
                "cygnet.v1.PipelineService/DeleteSchedule",
                async move { api.delete_schedule(request).await },
            )
            .await?;
        }
    }
    Ok(Redirect::to(&back).into_response())
}

/// Pauses or resumes a schedule (`enabled` is "true" or "false").
pub async fn toggle_schedule(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(path): Path<(String, String)>,
    fields: Fields,
) -> Result<Response, WebError> {
    let enabled = fields.one("enabled") == "true";
    change_schedule(web, session, peer, path, fields, Change::Enable(enabled)).await
}

pub async fn delete_schedule(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(path): Path<(String, String)>,
    fields: Fields,
) -> Result<Response, WebError> {
    change_schedule(web, session, peer, path, fields, Change::Delete).await
}
