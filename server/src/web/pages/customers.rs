//! Pages outside any customer: the welcome page of a user with no customer to open (a platform
//! administrator on a fresh server is led to create the first one; anyone else sees their
//! invitations), and the platform administrators' customer list, where customers are created,
//! deactivated and reactivated. Every write goes through the gRPC handlers (roles, audit).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::customer_service_server::CustomerService;
use cygnet_proto::v1::user_service_server::UserService;
use serde::Deserialize;

use super::form::FormErrors;
use super::{all_customers, id, try_write};
use crate::web::Web;
use crate::web::error::{WebError, render, render_with};
use crate::web::session::{Peer, Session};
use crate::web::view;

/// What the header of a page outside a customer needs.
pub struct Shell {
    pub user: String,
    pub platform_admin: bool,
    pub csrf: String,
    pub section: &'static str,
}

pub(super) async fn shell(
    web: &Web,
    session: &Session,
    section: &'static str,
) -> Result<Shell, WebError> {
    let me = web
        .users
        .get_current_user(session.request(pb::GetCurrentUserRequest {}))
        .await?
        .into_inner();
    let user = me.user.unwrap_or_default();
    Ok(Shell {
        user: user.username,
        platform_admin: user.is_superuser,
        csrf: session.csrf(),
        section,
    })
}

/// The customer form's inputs, as typed.
#[derive(Debug, Default, Deserialize)]
pub struct CustomerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub contact_email: String,
}

const CUSTOMER_FIELDS: [&str; 3] = ["name", "display_name", "contact_email"];

pub struct InvitationRow {
    pub id: i64,
    pub customer: String,
    pub role: String,
}

#[derive(Template)]
#[template(path = "welcome.html")]
struct WelcomePage {
    shell: Shell,
    form: CustomerForm,
    errors: FormErrors,
    invitations: Vec<InvitationRow>,
}

/// The page of a signed-in user with no customer to open.
pub async fn welcome(web: &Web, session: &Session) -> Result<Response, WebError> {
    let shell = shell(web, session, "welcome").await?;
    let invitations = web
        .users
        .list_my_invitations(session.request(pb::ListMyInvitationsRequest {}))
        .await?
        .into_inner()
        .invitations
        .into_iter()
        .map(|invitation| InvitationRow {
            id: invitation.id,
            customer: invitation.customer_display_name,
            role: view::role(invitation.role),
        })
        .collect();
    Ok(render(&WelcomePage {
        shell,
        form: CustomerForm::default(),
        errors: FormErrors::default(),
        invitations,
    }))
}

#[derive(Template)]
#[template(path = "customers.html")]
struct CustomersPage {
    shell: Shell,
    customers: Vec<pb::Customer>,
    form: CustomerForm,
    errors: FormErrors,
}

async fn customers_page(
    web: &Web,
    session: &Session,
    form: CustomerForm,
    errors: FormErrors,
) -> Result<CustomersPage, WebError> {
    let shell = shell(web, session, "customers").await?;
    if !shell.platform_admin {
        return Err(WebError::NotFound);
    }
    Ok(CustomersPage {
        customers: all_customers(web, session).await?,
        shell,
        form,
        errors,
    })
}

/// Every customer, for platform administrators (anyone else: not found).
pub async fn customers(State(web): State<Web>, session: Session) -> Result<Response, WebError> {
    let page = customers_page(
        &web,
        &session,
        CustomerForm::default(),
        FormErrors::default(),
    )
    .await?;
    Ok(render(&page))
}

/// Creates a customer; on a refusal the form comes back with the message at its field.
pub async fn create_customer(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    axum::Form(form): axum::Form<CustomerForm>,
) -> Result<Response, WebError> {
    session.check_csrf(&form.csrf)?;
    let api = web.customers.clone();
    let request = session.request(pb::CreateCustomerRequest {
        name: form.name.trim().to_owned(),
        display_name: form.display_name.trim().to_owned(),
        contact_email: form.contact_email.trim().to_owned(),
        ..Default::default()
    });
    let outcome = try_write(
        &web,
        peer,
        "cygnet.v1.CustomerService/CreateCustomer",
        async move { api.create_customer(request).await },
    )
    .await?;
    match outcome {
        Ok(created) => {
            let id = created.customer.map_or(0, |customer| customer.id);
            Ok(Redirect::to(&format!("/c/{id}")).into_response())
        }
        Err(status) => {
            let (errors, code) = FormErrors::from_status(status, &CUSTOMER_FIELDS)?;
            let page = customers_page(&web, &session, form, errors).await;
            match page {
                Ok(page) => Ok(render_with(code, &page)),
                // Not a platform administrator: the welcome page cannot create either.
                Err(error) => Err(error),
            }
        }
    }
}

/// Deactivates (`deactivate`) or reactivates (`reactivate`) a customer.
pub async fn set_customer_active(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path((customer, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<CustomerForm>,
) -> Result<Response, WebError> {
    session.check_csrf(&form.csrf)?;
    let customer_id = id(&customer)?;
    let api = web.customers.clone();
    let outcome = match action.as_str() {
        "deactivate" => {
            let request = session.request(pb::DeactivateCustomerRequest { customer_id });
            try_write(
                &web,
                peer,
                "cygnet.v1.CustomerService/DeactivateCustomer",
                async move {
                    api.deactivate_customer(request)
                        .await
                        .map(|_| tonic::Response::new(()))
                },
            )
            .await?
        }
        "reactivate" => {
            let request = session.request(pb::ReactivateCustomerRequest { customer_id });
            try_write(
                &web,
                peer,
                "cygnet.v1.CustomerService/ReactivateCustomer",
                async move {
                    api.reactivate_customer(request)
                        .await
                        .map(|_| tonic::Response::new(()))
                },
            )
            .await?
        }
        _ => return Err(WebError::NotFound),
    };
    outcome?;
    Ok(Redirect::to("/admin/customers").into_response())
}

/// Accepts one of the caller's invitations and opens its customer.
pub async fn accept_invitation(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(invitation): Path<String>,
    axum::Form(form): axum::Form<CustomerForm>,
) -> Result<Response, WebError> {
    session.check_csrf(&form.csrf)?;
    let invitation_id = id(&invitation)?;
    let api = web.users.clone();
    let request = session.request(pb::AcceptInvitationRequest { invitation_id });
    try_write(
        &web,
        peer,
        "cygnet.v1.UserService/AcceptInvitation",
        async move { api.accept_invitation(request).await },
    )
    .await??;
    Ok(Redirect::to("/").into_response())
}
