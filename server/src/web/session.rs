//! Sign-in, sign-out and the session cookie.
//!
//! Signing in with an API token mints a session token (an API token named "web session", a
//! child of the pasted one) that lives only in an `HttpOnly`, `SameSite=Strict` cookie, `Secure`
//! under TLS. It expires after [`SESSION_LIFETIME`] or with its parent, ends when its parent is
//! revoked, and sign-out revokes it. Every form that changes something carries a CSRF token
//! derived from the session secret, which a page of another site cannot read. Sign-in itself,
//! before there is a session, is guarded by a pre-session (`presession.rs`).

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, http::StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataValue;

use super::Web;
use super::error::{WebError, render};
use super::presession::PreSession;
use crate::auth::token;

/// The cookie holding the session secret.
pub const COOKIE: &str = "cygnet_session";
/// How long a session lasts at most.
pub const SESSION_LIFETIME: chrono::Duration = chrono::Duration::hours(12);

/// The caller's session, from the cookie; a page without one redirects to sign-in.
#[derive(Clone)]
pub struct Session {
    secret: String,
}

impl Session {
    fn from_headers(headers: &HeaderMap) -> Option<Session> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, secret)| secret.trim().to_owned())
            .filter(|secret| !secret.is_empty() && secret.is_ascii())
            .map(|secret| Session { secret })
    }

    /// A gRPC request carrying the session as its bearer token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Ok(value) = MetadataValue::try_from(format!("Bearer {}", self.secret)) {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    /// The CSRF token of this session.
    pub fn csrf(&self) -> String {
        hex::encode(Sha256::digest(format!("cygnet-csrf:{}", self.secret)))
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, presented: &str) -> Result<(), WebError> {
        if token::hashes_equal(&self.csrf(), presented) {
            Ok(())
        } else {
            Err(WebError::Page(
                StatusCode::FORBIDDEN,
                "the form is stale or did not come from this site; reload the page and try again"
                    .into(),
            ))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Session::from_headers(&parts.headers).ok_or(WebError::SignIn)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(Session::from_headers(&parts.headers))
    }
}

/// The browser's address, for audit entries.
pub struct Peer(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<super::serve::WebPeer>>()
                .map(|ConnectInfo(peer)| peer.0.to_string())
                .unwrap_or_default(),
        ))
    }
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage<'a> {
    error: Option<&'a str>,
    /// The pre-session's form token (login CSRF).
    signin_token: &'a str,
}

/// The sign-in page, with the browser's pre-session (set now if it has none).
fn sign_in_form(
    web: &Web,
    pre_session: &PreSession,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let mut response = render(&SignInPage {
        error,
        signin_token: &pre_session.form_token(),
    });
    if response.status() == StatusCode::OK {
        *response.status_mut() = status;
    }
    if let Some(cookie) = pre_session.set_cookie(web.secure_cookies) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub async fn sign_in_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    let pre_session = PreSession::from_headers_or_new(&headers);
    sign_in_form(&web, &pre_session, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    signin_token: String,
}

/// Signs in with a pasted API token. The browser must present the pre-session its sign-in page
/// set, and the form that page's token (see `presession`); writes from another origin never get
/// here (`origin::refuse_foreign_writes`).
pub async fn sign_in(
    State(web): State<Web>,
    peer: Peer,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let pre_session = PreSession::from_headers(&headers);
    let Some(pre_session) = pre_session.filter(|pre| pre.accepts(&form.signin_token)) else {
        let fresh = PreSession::from_headers_or_new(&headers);
        return sign_in_form(
            &web,
            &fresh,
            StatusCode::FORBIDDEN,
            Some("The sign-in form is stale or did not come from this site; try again."),
        );
    };
    let pasted = form.token.trim();
    let refused =
        |message: &str| sign_in_form(&web, &pre_session, StatusCode::UNAUTHORIZED, Some(message));
    if pasted.is_empty() {
        return refused("Paste an API token to sign in.");
    }
    let (principal, parent) = match web.authenticator.authenticate_secret(pasted).await {
        Ok(found) => found,
        Err(error) => return refused(tonic::Status::from(error).message()),
    };
    let session = token::generate("cyg_");
    let expires_at = crate::store::now() + SESSION_LIFETIME;
    let store = web.store.clone();
    let cookie_secret = session.secret.clone();
    let minted = web
        .tasks
        .spawn(async move {
            crate::audit::audited(&store, "cygnet.web/SignIn", peer.0, async {
                crate::audit::note_actor(principal.user_id, &principal.username);
                store
                    .create_session_token(parent, expires_at, &session)
                    .await
                    .map_err(tonic::Status::from)
            })
            .await
        })
        .await;
    match minted {
        Ok(Ok(_)) => {}
        Ok(Err(status)) => return refused(status.message()),
        Err(_) => {
            return WebError::Page(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is stopping".into(),
            )
            .into_response();
        }
    }
    let seconds = SESSION_LIFETIME.num_seconds();
    let secure = if web.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={seconds}{secure}",
        cookie_secret
    );
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response.headers_mut().append(
        header::SET_COOKIE,
        PreSession::clear_cookie(web.secure_cookies),
    );
    response
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn sign_out(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    session.check_csrf(&form.csrf)?;
    // An already ended session signs out all the same.
    if let Ok((principal, token_id)) = web.authenticator.authenticate_secret(&session.secret).await
    {
        let store = web.store.clone();
        let _ = web
            .tasks
            .spawn(async move {
                crate::audit::audited(&store, "cygnet.web/SignOut", peer.0, async {
                    crate::audit::note_actor(principal.user_id, &principal.username);
                    crate::audit::note_resource("api_token", token_id.get());
                    store
                        .revoke_token(token_id, Some(principal.user_id))
                        .await
                        .map_err(tonic::Status::from)
                })
                .await
            })
            .await;
    }
    let secure = if web.secure_cookies { "; Secure" } else { "" };
    let mut response = Redirect::to("/signin").into_response();
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::Session;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; cygnet_session=cyg_abc ; other=1"),
        );
        let session = Session::from_headers(&headers).expect("session");
        assert_eq!(session.secret, "cyg_abc");
        assert!(session.check_csrf(&session.csrf()).is_ok());
        assert!(session.check_csrf("forged").is_err());
        assert!(session.check_csrf("").is_err());

        headers.insert(header::COOKIE, HeaderValue::from_static("cygnet_session="));
        assert!(Session::from_headers(&headers).is_none());
    }
}
