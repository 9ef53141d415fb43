//! How failures become pages: the gRPC status of the call decides the HTTP status.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use tonic::Code;

/// A page that could not be shown.
#[derive(Debug)]
pub enum WebError {
    /// No session, or one that has ended: sign in again.
    SignIn,
    /// Unknown, or another customer's (the same answer for both).
    NotFound,
    /// A status and the message to show.
    Page(StatusCode, String),
}

impl From<tonic::Status> for WebError {
    fn from(status: tonic::Status) -> Self {
        let code = match status.code() {
            Code::Unauthenticated => return WebError::SignIn,
            Code::NotFound => return WebError::NotFound,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => {
                tracing::error!(code = ?status.code(), message = status.message(), "web request failed");
                return WebError::Page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "something went wrong on the server; it has been logged".into(),
                );
            }
        };
        WebError::Page(code, status.message().to_owned())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            WebError::SignIn => return Redirect::to("/signin").into_response(),
            WebError::NotFound => (
                StatusCode::NOT_FOUND,
                "There is nothing here, or it is not yours to see.".to_owned(),
            ),
            WebError::Page(status, message) => (status, message),
        };
        let title = status.canonical_reason().unwrap_or("Error");
        let page = ErrorPage {
            title,
            message: &message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, message).into_response(),
        }
    }
}

/// Renders a template with `status` (a form shown again with its refusal).
pub fn render_with(status: StatusCode, template: &impl Template) -> Response {
    let mut response = render(template);
    if response.status().is_success() {
        *response.status_mut() = status;
    }
    response
}

/// Renders a template, or a 500 page when it cannot be (a bug, logged).
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "rendering a page failed");
            WebError::Page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered".into(),
            )
            .into_response()
        }
    }
}
