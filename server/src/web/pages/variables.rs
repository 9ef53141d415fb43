//! Variable groups and their variables: any member reads them, secrets shown only as set
//! (their values are write-only, no call returns one); admins and devops create groups and set
//! secrets, developers set plain values. Forms go through `VariableService`, a refusal shown at
//! the input it names; controls a role may not use are disabled with the reason.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::release_service_server::ReleaseService;
use cygnet_proto::v1::variable_service_server::VariableService;
use serde::Deserialize;

use super::form::FormErrors;
use super::{Frame, frame, id, try_write};
use crate::web::Web;
use crate::web::error::{WebError, render, render_with};
use crate::web::session::{Peer, Session};
use crate::web::view;

pub struct VariableRow {
    pub key: String,
    pub environment_id: i64,
    /// The value, or "" for a secret.
    pub value: String,
    pub secret: bool,
    pub environment: String,
    pub updated: String,
}

pub struct GroupRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub variables: Vec<VariableRow>,
    /// Whether the caller may set and delete its variables: a group holding a secret is for the
    /// roles that manage secrets (the API's rule).
    pub may_change: bool,
    /// Why not, when the caller may set variables elsewhere but not here.
    pub change_reason: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct GroupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct VariableForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub environment_id: String,
    /// The group the form was for (refusals show at that group's form).
    #[serde(skip)]
    pub group_id: i64,
}

#[derive(Template)]
#[template(path = "variables.html")]
struct VariablesPage {
    frame: Frame,
    groups: Vec<GroupRow>,
    environments: Vec<(i64, String)>,
    may_manage_groups: bool,
    groups_reason: String,
    group_form: GroupForm,
    group_errors: FormErrors,
    variable_form: VariableForm,
    variable_errors: FormErrors,
}

async fn page(
    web: &Web,
    session: &Session,
    customer_id: i64,
    group_form: GroupForm,
    group_errors: FormErrors,
    variable_form: VariableForm,
    variable_errors: FormErrors,
) -> Result<VariablesPage, WebError> {
    let frame = frame(web, session, customer_id, "variables").await?;
    let (listed, _) = every!(
        web.variables,
        list_variable_groups,
        session,
        ListVariableGroupsRequest {
            customer_id,
            page_size: 200,
        },
        groups
    )
    .await?;
    let (environments, _) = every!(
        web.releases,
        list_environments,
        session,
        ListEnvironmentsRequest {
            customer_id,
            page_size: 200,
        },
        environments
    )
    .await?;
    let environments: Vec<(i64, String)> = environments
        .into_iter()
        .map(|environment| (environment.id, environment.name))
        .collect();
    let environment_name = |id: i64| {
        environments
            .iter()
            .find(|(environment, _)| *environment == id)
            .map_or_else(|| "every environment".to_owned(), |(_, name)| name.clone())
    };
    let (may_set, set_reason) = frame.allowed(
        &[pb::Role::Admin, pb::Role::Devops, pb::Role::Developer],
        "set variables",
    );
    let (may_manage_groups, groups_reason) = frame.allowed(
        &[pb::Role::Admin, pb::Role::Devops],
        "create groups and set secrets",
    );
    let (_, secrets_reason) = frame.allowed(
        &[pb::Role::Admin, pb::Role::Devops],
        "change a group that holds secrets",
    );
    let groups = listed
        .into_iter()
        .map(|group| {
            let holds_secrets = group.variables.iter().any(|variable| variable.is_secret);
            let may_change = may_set && (may_manage_groups || !holds_secrets);
            GroupRow {
                may_change,
                change_reason: if may_set && !may_change {
                    secrets_reason.clone()
                } else {
                    set_reason.clone()
                },
                id: group.id,
                name: group.name,
                description: group.description,
                variables: group
                    .variables
                    .into_iter()
                    .map(|variable| VariableRow {
                        environment: environment_name(variable.environment_id),
                        environment_id: variable.environment_id,
                        updated: view::time(variable.updated_at.as_ref()),
                        secret: variable.is_secret,
                        value: if variable.is_secret {
                            String::new()
                        } else {
                            variable.value
                        },
                        key: variable.key,
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(VariablesPage {
        frame,
        groups,
        environments,
        may_manage_groups,
        groups_reason,
        group_form,
        group_errors,
        variable_form,
        variable_errors,
    })
}

pub async fn variables(
    State(web): State<Web>,
    session: Session,
    Path(customer): Path<String>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    let page = page(
        &web,
        &session,
        customer_id,
        GroupForm::default(),
        FormErrors::default(),
        VariableForm::default(),
        FormErrors::default(),
    )
    .await?;
    Ok(render(&page))
}

pub async fn create_group(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(customer): Path<String>,
    axum::Form(form): axum::Form<GroupForm>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    session.check_csrf(&form.csrf)?;
    let api = web.variables.clone();
    let request = session.request(pb::CreateVariableGroupRequest {
        customer_id,
        name: form.name.trim().to_owned(),
        description: form.description.trim().to_owned(),
        variables: vec![],
    });
    let outcome = try_write(
        &web,
        peer,
        "cygnet.v1.VariableService/CreateVariableGroup",
        async move { api.create_variable_group(request).await },
    )
    .await?;
    match outcome {
        Ok(_) => Ok(Redirect::to(&format!("/c/{customer_id}/variables")).into_response()),
        Err(status) => {
            let (errors, code) = FormErrors::from_status(status, &["name", "description"])?;
            let page = page(
                &web,
                &session,
                customer_id,
                form,
                errors,
                VariableForm::default(),
                FormErrors::default(),
            )
            .await?;
            Ok(render_with(code, &page))
        }
    }
}

pub async fn set_variable(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path((customer, group)): Path<(String, String)>,
    axum::Form(mut form): axum::Form<VariableForm>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    let group_id = id(&group)?;
    session.check_csrf(&form.csrf)?;
    form.group_id = group_id;
    let environment_id = form.environment_id.trim().parse::<i64>().unwrap_or(0);
    let api = web.variables.clone();
    let request = session.request(pb::SetVariableRequest {
        customer_id,
        group_id,
        key: form.key.trim().to_owned(),
        value: form.value.clone(),
        is_secret: form.secret.is_some(),
        environment_id,
        description: String::new(),
    });
    let outcome = try_write(
        &web,
        peer,
        "cygnet.v1.VariableService/SetVariable",
        async move { api.set_variable(request).await },
    )
    .await?;
    match outcome {
        Ok(_) => Ok(Redirect::to(&format!("/c/{customer_id}/variables")).into_response()),
        Err(status) => {
            let (errors, code) =
                FormErrors::from_status(status, &["key", "value", "environment_id"])?;
            // A refused secret is never sent back to the browser.
            form.value.clear();
            let page = page(
                &web,
                &session,
                customer_id,
                GroupForm::default(),
                FormErrors::default(),
                form,
                errors,
            )
            .await?;
            Ok(render_with(code, &page))
        }
    }
}
