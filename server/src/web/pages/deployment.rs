//! One release execution (a deployment): its stages as pills, who approved or rejected each and
//! when, what an approval binds, each stage's deploy log, the builds it ships; and the form an
//! approver decides a waiting stage with.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::customer_service_server::CustomerService;
use cygnet_proto::v1::release_service_server::ReleaseService;
use serde::Deserialize;

use super::{Frame, frame, id, write};
use crate::web::Web;
use crate::web::error::{WebError, render};
use crate::web::session::{Peer, Session};
use crate::web::view;

/// A person and a time: "approved by ops1, 2026-12-07 12:00 UTC".
pub struct Decision {
    pub verb: &'static str,
    pub by: String,
    pub at: String,
}

pub struct StageView {
    pub id: i64,
    pub order: i32,
    pub environment: String,
    pub status: String,
    pub requires_approval: bool,
    pub decision: Option<Decision>,
    pub comment: String,
    pub reason: String,
    pub started: String,
    pub finished: String,
    /// The deploy pipeline's execution (its log), 0 before the stage started.
    pub execution_id: i64,
    pub may_decide: bool,
    /// Why an approver's controls are missing here, when the stage waits.
    pub decide_reason: String,
    /// What an approval binds: the steps version and digest of what the stage runs.
    pub pipeline_version: i32,
    pub snapshot_digest: String,
    /// The digest's first 12 hex digits, as shown (the whole one in its title).
    pub snapshot_short: String,
}

#[derive(Template)]
#[template(path = "deployment.html")]
struct DeploymentPage {
    frame: Frame,
    id: i64,
    title: String,
    status: String,
    reason: String,
    by: String,
    created: String,
    finished: String,
    parameters: Vec<(String, String)>,
    builds: Vec<i64>,
    stages: Vec<StageView>,
}

/// Usernames of the customer's members by user id (another user shows as their id: a platform
/// administrator who acted here, or a member since removed).
async fn usernames(
    web: &Web,
    session: &Session,
    customer_id: i64,
) -> Result<HashMap<i64, String>, WebError> {
    let (members, _) = every!(
        web.customers,
        list_members,
        session,
        ListMembersRequest {
            customer_id,
            page_size: 1000,
        },
        members
    )
    .await?;
    Ok(members
        .into_iter()
        .filter_map(|member| member.user)
        .map(|user| (user.id, user.username))
        .collect())
}

pub async fn deployment(
    State(web): State<Web>,
    session: Session,
    Path((customer, run)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let (customer_id, release_execution_id) = (id(&customer)?, id(&run)?);
    let frame = frame(&web, &session, customer_id, "releases").await?;
    let run = web
        .releases
        .get_release_execution(session.request(pb::GetReleaseExecutionRequest {
            customer_id,
            release_execution_id,
        }))
        .await?
        .into_inner()
        .release_execution
        .ok_or(WebError::NotFound)?;
    // The stages carry their environments' names; the approver roles come from the
    // environments the releases page reads.
    let environments = super::releases::environments(&web, &session, customer_id).await?;
    let environments: HashMap<i64, pb::Environment> = environments
        .into_iter()
        .map(|environment| (environment.id, environment))
        .collect();
    let mut names = usernames(&web, &session, customer_id).await?;
    // A platform administrator acts here without being a member.
    names.insert(frame.user_id, frame.user.clone());
    let name = |user: i64| {
        names
            .get(&user)
            .cloned()
            .unwrap_or_else(|| format!("user {user}"))
    };
    let stages = run
        .stages
        .into_iter()
        .map(|stage| {
            let awaiting = stage.status == pb::StageStatus::AwaitingApproval as i32;
            let environment = environments.get(&stage.environment_id);
            let approvers: Vec<pb::Role> = environment
                .map(|environment| {
                    environment
                        .approver_roles
                        .iter()
                        .filter_map(|role| pb::Role::try_from(*role).ok())
                        .collect()
                })
                .unwrap_or_default();
            let (role_may, role_reason) = frame.allowed(&approvers, "approve deployments here");
            let own = run.triggered_by == frame.user_id
                && !environment.is_some_and(|environment| environment.allow_self_approval);
            let (may_decide, decide_reason) = match (awaiting, role_may, own) {
                (false, _, _) => (false, String::new()),
                (true, false, _) => (false, role_reason),
                (true, true, true) => (
                    false,
                    "You deployed this release: another approver decides (four eyes).".into(),
                ),
                (true, true, false) => (true, String::new()),
            };
            let decision = if stage.rejected_by > 0 {
                Some(Decision {
                    verb: "rejected",
                    by: name(stage.rejected_by),
                    at: view::time(stage.finished_at.as_ref()),
                })
            } else if stage.approved_by > 0 {
                Some(Decision {
                    verb: "approved",
                    by: name(stage.approved_by),
                    at: view::time(stage.approved_at.as_ref()),
                })
            } else {
                None
            };
            StageView {
                id: stage.id,
                order: stage.order,
                environment: if stage.environment_name.is_empty() {
                    format!("environment {}", stage.environment_id)
                } else {
                    stage.environment_name
                },
                status: view::stage_status(stage.status),
                requires_approval: stage.requires_approval,
                decision,
                comment: stage.comment,
                reason: stage.reason,
                started: view::time(stage.started_at.as_ref()),
                finished: view::time(stage.finished_at.as_ref()),
                execution_id: stage.execution_id,
                may_decide,
                decide_reason,
                pipeline_version: stage.pipeline_version,
                snapshot_short: stage.snapshot_digest.chars().take(19).collect(),
                snapshot_digest: stage.snapshot_digest,
            }
        })
        .collect();
    let mut parameters: Vec<(String, String)> = run.parameters.into_iter().collect();
    parameters.sort();
    Ok(render(&DeploymentPage {
        id: run.id,
        title: format!("{} {} (#{})", run.release_name, run.version, run.number),
        status: view::release_execution_status(run.status),
        reason: run.reason,
        by: name(run.triggered_by),
        created: view::time(run.created_at.as_ref()),
        finished: view::time(run.finished_at.as_ref()),
        parameters,
        builds: run.builds.iter().map(|build| build.execution_id).collect(),
        stages,
        frame,
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
enum Verdict {
    Approve,
    Reject,
}

async fn decide_stage(
    web: Web,
    session: Session,
    peer: Peer,
    (customer, stage): (String, String),
    form: DecisionForm,
    verdict: Verdict,
) -> Result<Response, WebError> {
    let (customer_id, stage_execution_id) = (id(&customer)?, id(&stage)?);
    session.check_csrf(&form.csrf)?;
    let api = web.releases.clone();
    let run = match verdict {
        Verdict::Approve => {
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
            .await?
            .release_execution
        }
        Verdict::Reject => {
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
            .await?
            .release_execution
        }
    };
    let back = run.map_or_else(
        || format!("/c/{customer_id}/releases"),
        |run| format!("/c/{customer_id}/deployments/{}", run.id),
    );
    Ok(Redirect::to(&back).into_response())
}

pub async fn approve_stage(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(path): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, WebError> {
    decide_stage(web, session, peer, path, form, Verdict::Approve).await
}

pub async fn reject_stage(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(path): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, WebError> {
    decide_stage(web, session, peer, path, form, Verdict::Reject).await
}
