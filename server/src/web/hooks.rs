//! `POST /hooks/<token>`: webhook deliveries from outside (GitHub, GitLab, any sender that
//! signs). Served beside the dashboard but outside its session, form-token and origin rules:
//! a delivery proves itself by its signature ([`crate::webhooks`]).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::Web;
use crate::webhooks::{Answer, MAX_BODY_BYTES, token_looks_right};

/// Longest a sender may take to send its body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after;
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body.to_string(),
        )
            .into_response();
        if let Some(seconds) = retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

pub async fn deliver(
    State(web): State<Web>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !token_looks_right(&token) {
        // No webhook has such an address: the same answer as any unknown one, unread.
        return web
            .hooks
            .receive(&token, &headers, &[], Utc::now())
            .await
            .into_response();
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        web.hooks.count("too_large");
        return Answer::too_large().into_response();
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES))
        .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            web.hooks.count("too_large");
            return Answer::too_large().into_response();
        }
        Err(_) => {
            web.hooks.count("timeout");
            return (
                axum::http::StatusCode::REQUEST_TIMEOUT,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"outcome":"error","error":"the body took longer than 10 s to arrive"}"#,
            )
                .into_response();
        }
    };
    // The delivery runs to its end even when the server is stopping meanwhile.
    let hooks = web.hooks.clone();
    let task = web
        .tasks
        .spawn(async move { hooks.receive(&token, &headers, &body, Utc::now()).await });
    match task.await {
        Ok(answer) => answer.into_response(),
        Err(_) => {
            web.hooks.count("error");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"outcome":"error","error":"the server is stopping; deliver again"}"#,
            )
                .into_response()
        }
    }
}
