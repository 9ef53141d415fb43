//! Users, for platform administrators: every user of the server, and the forms that create one
//! and hand them a first API token (its secret shown once), so a new colleague can be onboarded
//! from the browser: create the user, give them the token, invite them to a customer.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::user_service_server::UserService;
use serde::Deserialize;

use super::customers::{Shell, shell};
use super::form::FormErrors;
use super::{id, try_write};
use crate::web::Web;
use crate::web::error::{WebError, render, render_with};
use crate::web::session::{Peer, Session};

#[derive(Debug, Default, Deserialize)]
pub struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub full_name: String,
}

/// A token just made for a user, shown once.
pub struct NewToken {
    pub username: String,
    pub secret: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    shell: Shell,
    users: Vec<pb::User>,
    form: UserForm,
    errors: FormErrors,
    new_token: Option<NewToken>,
}

async fn page(
    web: &Web,
    session: &Session,
    form: UserForm,
    errors: FormErrors,
    new_token: Option<NewToken>,
) -> Result<UsersPage, WebError> {
    let shell = shell(web, session, "users").await?;
    if !shell.platform_admin {
        return Err(WebError::NotFound);
    }
    let (users, _) = every!(
        web.users,
        list_users,
        session,
        ListUsersRequest {
            page_size: 500,
            customer_id: 0
        },
        users
    )
    .await?;
    Ok(UsersPage {
        shell,
        users,
        form,
        errors,
        new_token,
    })
}

pub async fn users(State(web): State<Web>, session: Session) -> Result<Response, WebError> {
    Ok(render(
        &page(
            &web,
            &session,
            UserForm::default(),
            FormErrors::default(),
            None,
        )
        .await?,
    ))
}

pub async fn create_user(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    axum::Form(form): axum::Form<UserForm>,
) -> Result<Response, WebError> {
    session.check_csrf(&form.csrf)?;
    let api = web.users.clone();
    let request = session.request(pb::CreateUserRequest {
        username: form.username.trim().to_owned(),
        email: form.email.trim().to_owned(),
        full_name: form.full_name.trim().to_owned(),
        is_superuser: false,
    });
    let outcome = try_write(&web, peer, "cygnet.v1.UserService/CreateUser", async move {
        api.create_user(request).await
    })
    .await?;
    match outcome {
        Ok(_) => Ok(Redirect::to("/admin/users").into_response()),
        Err(status) => {
            let (errors, code) =
                FormErrors::from_status(status, &["username", "email", "full_name"])?;
            Ok(render_with(
                code,
                &page(&web, &session, form, errors, None).await?,
            ))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// A new API token for a user, its secret shown once on the page (not cached).
pub async fn create_user_token(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(user): Path<String>,
    axum::Form(form): axum::Form<CsrfOnly>,
) -> Result<Response, WebError> {
    session.check_csrf(&form.csrf)?;
    let user_id = id(&user)?;
    // Read first: a caller who is no platform administrator gets the 404 before anything is
    // written (the API would let a user give themselves a token, shown to nobody).
    let listed = page(
        &web,
        &session,
        UserForm::default(),
        FormErrors::default(),
        None,
    )
    .await?;
    let api = web.users.clone();
    let request = session.request(pb::CreateApiTokenRequest {
        name: "given in the dashboard".into(),
        user_id,
        expires_at: None,
    });
    let created = try_write(
        &web,
        peer,
        "cygnet.v1.UserService/CreateApiToken",
        async move { api.create_api_token(request).await },
    )
    .await??;
    let username = listed
        .users
        .iter()
        .find(|user| user.id == user_id)
        .map(|user| user.username.clone())
        .unwrap_or_default();
    let shown = UsersPage {
        new_token: Some(NewToken {
            username,
            secret: created.secret,
        }),
        ..listed
    };
    let mut response = render(&shown);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
