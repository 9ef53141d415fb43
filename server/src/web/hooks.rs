//! `POST /hooks/<token>`: webhook deliveries from outside (GitHub, GitLab, any sender that
//! signs). Served beside the dashboard but outside its session, form-token and origin rules:
//! a delivery proves itself by its signature ([`crate::webhooks`]).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::Web;
use crate::webhooks::{Answer, MAX_BODY_BYTES};

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
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok())
        .and_then(|length| length.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        web.hooks.count_too_large();
        return Answer::too_large().into_response();
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        web.hooks.count_too_large();
        return Answer::too_large().into_response();
    };
    // The delivery runs to its end even when the server is stopping meanwhile.
    let hooks = web.hooks.clone();
    let task = web
        .tasks
        .spawn(async move { hooks.receive(&token, &headers, &body, Utc::now()).await });
    match task.await {
        Ok(answer) => answer.into_response(),
        Err(_) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the server is stopping; deliver again",
        )
            .into_response(),
    }
}
