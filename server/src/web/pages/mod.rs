//! The pages and the forms they post: one module per page, with what they share here (the frame
//! around every page, path ids, paged reads, writes).

/// Every item of a paged List RPC, read from its first page with [`all_pages`]; the request's
/// fields but `page_token`, which the macro sets:
/// `every!(web.agents, list_registration_tokens, session, ListRegistrationTokensRequest { customer_id, page_size: 200, }, tokens)`.
macro_rules! every {
    ($api:expr, $method:ident, $session:expr, $request:ident { $($field:ident $(: $value:expr)?),* $(,)? }, $items:ident) => {
        super::all_pages(
            |page_token| {
                let call = $api.$method($session.request(cygnet_proto::v1::$request {
                    $($field $(: $value)?,)*
                    page_token,
                }));
                async move {
                    call.await.map(|page| {
                        let page = page.into_inner();
                        (page.$items, page.next_page_token)
                    })
                }
            },
            |_| false,
        )
    };
}

mod agent;
mod agents;
mod assets;
mod customers;
mod dashboard;
mod deletes;
mod deployment;
mod execution;
mod form;
mod members;
mod monitors;
mod pipeline;
mod pipeline_form;
mod pipelines;
mod releases;
mod schedules;
mod tokens;
mod usage;
mod users;
mod variables;
mod webhooks;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::{
    customer_service_server::CustomerService, user_service_server::UserService,
};
use serde::Deserialize;

use super::Web;
use super::error::WebError;
use super::session::{Peer, Session};
use super::view;

pub use agent::agent;
pub use agents::agents;
pub use assets::{script, stylesheet};
pub use customers::{accept_invitation, create_customer, customers, set_customer_active};
pub use dashboard::{cards_now, dashboard};
pub use deletes::{delete_monitor, delete_variable, delete_variable_group};
pub use deployment::{approve_stage, deployment, reject_stage};
pub use execution::{cancel_execution, download_artifact, execution};
pub use members::{change_member, invite_member, members};
pub use monitors::{create_monitor, monitors};
pub use pipeline::{delete_pipeline, pipeline};
pub use pipeline_form::{create_pipeline, edit_pipeline, new_pipeline, update_pipeline};
pub use pipelines::{pipelines, run_pipeline};
pub use releases::{create_environment, create_release, deploy_release, releases};
pub use schedules::{create_schedule, delete_schedule, toggle_schedule};
pub use tokens::{create_token, revoke_token, tokens};
pub use usage::{set_quotas, usage, usage_export};
pub use users::{create_user, create_user_token, users};
pub use variables::{create_group, set_variable, variables};
pub use webhooks::{
    create_webhook, delete_webhook, rotate_webhook_secret, toggle_webhook, webhook,
};

/// A path segment that must be an id; anything else is as unknown as a missing record.
fn id(segment: &str) -> Result<i64, WebError> {
    segment
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(WebError::NotFound)
}

/// A customer in the switcher.
pub struct Choice {
    pub id: i64,
    pub name: String,
    pub selected: bool,
}

/// What every page shows around its content.
pub struct Frame {
    pub user: String,
    /// The caller's user id.
    pub user_id: i64,
    pub customers: Vec<Choice>,
    pub customer_id: i64,
    pub customer_name: String,
    /// The caller's role here (platform administrators act as admins).
    pub role: pb::Role,
    pub csrf: String,
    pub section: &'static str,
    /// The caller is a platform administrator.
    pub platform_admin: bool,
}

impl Frame {
    pub fn role_name(&self) -> String {
        view::role(self.role as i32)
    }

    pub fn may(&self, roles: &[pb::Role]) -> bool {
        roles.contains(&self.role)
    }

    /// Whether the caller's role is one of `roles` (the API's rule for an action), and the reason
    /// a control is disabled when it is not: "Only Acme's administrators and devops `what` (your
    /// role: viewer)."
    pub fn allowed(&self, roles: &[pb::Role], what: &str) -> (bool, String) {
        let words: Vec<&str> = roles
            .iter()
            .map(|role| match role {
                pb::Role::Admin => "administrators",
                pb::Role::Devops => "devops",
                pb::Role::Developer => "developers",
                pb::Role::Qa => "QA",
                _ => "viewers",
            })
            .collect();
        let who = match words.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        };
        (
            self.may(roles),
            format!(
                "Only {}'s {who} {what} (your role: {}).",
                self.customer_name,
                self.role_name()
            ),
        )
    }

    /// Roles that may run pipelines and cancel executions (as the API decides).
    pub fn may_run(&self) -> bool {
        self.may(&[pb::Role::Admin, pb::Role::Devops, pb::Role::Developer])
    }
}

async fn frame(
    web: &Web,
    session: &Session,
    customer_id: i64,
    section: &'static str,
) -> Result<Frame, WebError> {
    // Another customer's id is NOT_FOUND here, like an unknown one.
    let (customer, me) = tokio::try_join!(
        web.customers
            .get_customer(session.request(pb::GetCustomerRequest { customer_id })),
        web.users
            .get_current_user(session.request(pb::GetCurrentUserRequest {})),
    )?;
    let customer = customer.into_inner().customer.ok_or(WebError::NotFound)?;
    let me = me.into_inner();
    let user = me.user.unwrap_or_default();
    let mut role = pb::Role::Admin;
    let mut customers = Vec::new();
    for membership in me.memberships {
        let (Some(link), Some(member_of)) = (membership.membership, membership.customer) else {
            continue;
        };
        if member_of.id == customer_id {
            role = pb::Role::try_from(link.role).unwrap_or(pb::Role::Viewer);
        }
        customers.push(Choice {
            id: member_of.id,
            name: member_of.display_name,
            selected: member_of.id == customer_id,
        });
    }
    if user.is_superuser {
        // Platform administrators may look at every customer.
        customers = all_customers(web, session)
            .await?
            .into_iter()
            .map(|other| Choice {
                selected: other.id == customer_id,
                id: other.id,
                name: other.display_name,
            })
            .collect();
    }
    Ok(Frame {
        user_id: user.id,
        user: user.username,
        customers,
        customer_id,
        customer_name: customer.display_name,
        role,
        csrf: session.csrf(),
        section,
        platform_admin: user.is_superuser,
    })
}

/// Every customer, for platform administrators.
async fn all_customers(web: &Web, session: &Session) -> Result<Vec<pb::Customer>, WebError> {
    let (customers, _) = all_pages(
        |page_token| {
            let call = web
                .customers
                .list_customers(session.request(pb::ListCustomersRequest {
                    page_size: 1000,
                    page_token,
                    active_only: false,
                }));
            async move {
                call.await.map(|page| {
                    let page = page.into_inner();
                    (page.customers, page.next_page_token)
                })
            }
        },
        |_| false,
    )
    .await?;
    Ok(customers)
}

/// Reads a paged List RPC from its first page. `page` fetches the page a token names (the
/// first for an empty one) as its items and the next page's token, empty after the last page.
/// Reading ends after the last page, or after an earlier one whose items make `enough` true;
/// the flag says whether the last page was read.
async fn all_pages<T, F>(
    mut page: impl FnMut(String) -> F,
    mut enough: impl FnMut(&[T]) -> bool,
) -> Result<(Vec<T>, bool), WebError>
where
    F: Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let (read, next_page_token) = page(page_token).await?;
        let stop = enough(&read);
        items.extend(read);
        if next_page_token.is_empty() {
            return Ok((items, true));
        }
        if stop {
            return Ok((items, false));
        }
        page_token = next_page_token;
    }
}

/// Runs a write as the API's own write RPCs run: as a task (a browser that leaves does not
/// stop it halfway) with its audit entry.
async fn write<T, F>(web: &Web, peer: Peer, method: &'static str, call: F) -> Result<T, WebError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
{
    Ok(try_write(web, peer, method, call).await??)
}

/// As [`write`], with the handler's refusal kept as a status, for a form to show it.
async fn try_write<T, F>(
    web: &Web,
    peer: Peer,
    method: &'static str,
    call: F,
) -> Result<Result<T, tonic::Status>, WebError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
{
    let store = web.store.clone();
    let task = web
        .tasks
        .spawn(async move { crate::audit::audited(&store, method, peer.0, call).await });
    match task.await {
        Ok(result) => Ok(result.map(tonic::Response::into_inner)),
        Err(_) => Err(WebError::Page(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is stopping; try again".into(),
        )),
    }
}

pub async fn index(State(web): State<Web>, session: Option<Session>) -> Result<Response, WebError> {
    let Some(session) = session else {
        return Ok(Redirect::to("/signin").into_response());
    };
    let me = web
        .users
        .get_current_user(session.request(pb::GetCurrentUserRequest {}))
        .await?
        .into_inner();
    let mut first = me.default_customer_id;
    if first == 0 && me.user.as_ref().is_some_and(|user| user.is_superuser) {
        first = all_customers(&web, &session)
            .await?
            .first()
            .map_or(0, |customer| customer.id);
    }
    if first > 0 {
        return Ok(Redirect::to(&format!("/c/{first}")).into_response());
    }
    customers::welcome(&web, &session).await
}

#[derive(Deserialize)]
pub struct SwitchQuery {
    #[serde(default)]
    customer: String,
}

/// The customer switcher's form (a GET, so it works without JavaScript).
pub async fn switch(
    _session: Session,
    Query(query): Query<SwitchQuery>,
) -> Result<Response, WebError> {
    let customer = id(&query.customer)?;
    Ok(Redirect::to(&format!("/c/{customer}")).into_response())
}

pub async fn not_found() -> WebError {
    WebError::NotFound
}
