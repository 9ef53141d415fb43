//! Pages need the database as much as API calls do: while the probe (`store/health.rs`) finds it
//! unreachable, every page but the static files is answered 503 at once with the reason, as the
//! gRPC services answer UNAVAILABLE (`database_gate`), instead of waiting for the pool's acquire
//! timeout in the handlers the pages call.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Web;
use super::error::WebError;

/// Answers 503 before any handler while the database is unreachable.
pub async fn refuse_while_unreachable(
    State(web): State<Web>,
    request: Request,
    next: Next,
) -> Response {
    if !web.store.health().is_reachable() && !request.uri().path().starts_with("/static/") {
        return WebError::Page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The database is unreachable; this page will work again when it answers. Try again in a moment.".into(),
        )
        .into_response();
    }
    next.run(request).await
}
