//! The customer's members (the seed's Users page): who belongs with which role, invitations
//! waiting, and for the customer's administrators the forms to invite, change a role and
//! remove. Others see the same controls disabled, with the reason.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::customer_service_server::CustomerService;
use serde::Deserialize;

use super::form::FormErrors;
use super::{Frame, frame, id, try_write};
use crate::web::Web;
use crate::web::error::{WebError, render, render_with};
use crate::web::session::{Peer, Session};
use crate::web::view;

/// Roles in the order a form offers them.
const ROLES: [pb::Role; 5] = [
    pb::Role::Viewer,
    pb::Role::Qa,
    pb::Role::Developer,
    pb::Role::Devops,
    pb::Role::Admin,
];

pub struct MemberRow {
    pub user_id: i64,
    pub username: String,
    pub email: String,
    pub role: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub role: String,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    frame: Frame,
    members: Vec<MemberRow>,
    invitations: Vec<String>,
    roles: Vec<String>,
    may_manage: bool,
    manage_reason: String,
    form: InviteForm,
    errors: FormErrors,
}

/// `developer` → the role.
fn parse_role(name: &str) -> pb::Role {
    ROLES
        .into_iter()
        .find(|role| view::role(*role as i32) == name)
        .unwrap_or(pb::Role::Unspecified)
}

async fn page(
    web: &Web,
    session: &Session,
    customer_id: i64,
    form: InviteForm,
    errors: FormErrors,
) -> Result<MembersPage, WebError> {
    let frame = frame(web, session, customer_id, "members").await?;
    let (members, _) = every!(
        web.customers,
        list_members,
        session,
        ListMembersRequest {
            customer_id,
            page_size: 200,
        },
        members
    )
    .await?;
    let (may_manage, manage_reason) =
        frame.allowed(&[pb::Role::Admin], "invite members and change roles");
    let invitations = if may_manage {
        web.customers
            .list_invitations(session.request(pb::ListInvitationsRequest { customer_id }))
            .await?
            .into_inner()
            .invitations
            .into_iter()
            .map(|invitation| {
                format!(
                    "{} as {} (until {})",
                    invitation.username,
                    view::role(invitation.role),
                    view::time(invitation.expires_at.as_ref())
                )
            })
            .collect()
    } else {
        Vec::new()
    };

    Ok(MembersPage {
        members: members
            .into_iter()
            .map(|member| {
                let user = member.user.unwrap_or_default();
                MemberRow {
                    user_id: user.id,
                    username: user.username,
                    email: user.email,
                    role: view::role(member.membership.map_or(0, |link| link.role)),
                }
            })
            .collect(),
        invitations,
        roles: ROLES.iter().map(|role| view::role(*role as i32)).collect(),
        may_manage,
        manage_reason,
        form,
        errors,
        frame,
    })
}

pub async fn members(
    State(web): State<Web>,
    session: Session,
    Path(customer): Path<String>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    let form = InviteForm {
        role: "developer".into(),
        ..InviteForm::default()
    };
    Ok(render(
        &page(&web, &session, customer_id, form, FormErrors::default()).await?,
    ))
}

/// Shows the page again with a refusal, or goes back to it after a success.
async fn after(
    web: &Web,
    session: &Session,
    customer_id: i64,
    outcome: Result<(), tonic::Status>,
    form: InviteForm,
) -> Result<Response, WebError> {
    match outcome {
        Ok(()) => Ok(Redirect::to(&format!("/c/{customer_id}/members")).into_response()),
        Err(status) => {
            let (errors, code): (FormErrors, StatusCode) =
                FormErrors::from_status(status, &["username", "role"])?;
            let page = page(web, session, customer_id, form, errors).await?;
            Ok(render_with(code, &page))
        }
    }
}

pub async fn invite_member(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(customer): Path<String>,
    axum::Form(form): axum::Form<InviteForm>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    session.check_csrf(&form.csrf)?;
    let api = web.customers.clone();
    let request = session.request(pb::InviteMemberRequest {
        customer_id,
        username: form.username.trim().to_owned(),
        role: parse_role(&form.role) as i32,
    });
    let outcome = try_write(
        &web,
        peer,
        "cygnet.v1.CustomerService/InviteMember",
        async move { api.invite_member(request).await },
    )
    .await?
    .map(|_| ());
    after(&web, &session, customer_id, outcome, form).await
}

#[derive(Debug, Default, Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
}

/// `role` (a new role) or `remove`, for one member.
pub async fn change_member(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path((customer, user, action)): Path<(String, String, String)>,
    axum::Form(form): axum::Form<MemberForm>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    let user_id = id(&user)?;
    session.check_csrf(&form.csrf)?;
    let api = web.customers.clone();
    let outcome = match action.as_str() {
        "role" => {
            let request = session.request(pb::UpdateMemberRequest {
                customer_id,
                user_id,
                role: parse_role(&form.role) as i32,
            });
            try_write(
                &web,
                peer,
                "cygnet.v1.CustomerService/UpdateMember",
                async move { api.update_member(request).await },
            )
            .await?
            .map(|_| ())
        }
        "remove" => {
            let request = session.request(pb::RemoveMemberRequest {
                customer_id,
                user_id,
            });
            try_write(
                &web,
                peer,
                "cygnet.v1.CustomerService/RemoveMember",
                async move { api.remove_member(request).await },
            )
            .await?
            .map(|_| ())
        }
        _ => return Err(WebError::NotFound),
    };
    let form = InviteForm {
        role: "developer".into(),
        ..InviteForm::default()
    };
    after(&web, &session, customer_id, outcome, form).await
}
