//! The customer's releases and release executions, and the forms that approve or reject a
//! stage.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::release_service_server::ReleaseService;
use serde::Deserialize;

use super::{Frame, frame, id, write};
use crate::web::Web;
use crate::web::error::{WebError, render};
use crate::web::session::{Peer, Session};
use crate::web::view;

pub struct StageView {
    pub id: i64,
    pub environment: String,
    pub status: String,
    pub may_decide: bool,
    pub note: String,
    /// What an approval binds: the steps version and digest of what the stage runs.
    pub pipeline_version: i32,
    pub snapshot_digest: String,
    /// The digest's first 12 hex digits, as shown (the whole one in its title).
    pub snapshot_short: String,
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
                        pipeline_version: stage.pipeline_version,
                        snapshot_short: stage.snapshot_digest.chars().take(19).collect(),
                        snapshot_digest: stage.snapshot_digest,
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
    /// The digest the approver was shown; the approval binds it.
    #[serde(default)]
    snapshot_digest: String,
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
                snapshot_digest: form.snapshot_digest,
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
