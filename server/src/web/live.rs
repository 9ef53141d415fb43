//! Server-Sent Events for the live parts: a customer's activity and an execution's progress.
//!
//! Each event stream is a Watch RPC of the API, relayed by a task that ends when the browser
//! leaves, the watch ends or the server stops. Browsers reconnect by themselves and send the
//! last event id they saw, so a reconnect resumes without gaps or repeats.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::{
    customer_service_server::CustomerService, pipeline_service_server::PipelineService,
};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use super::Web;
use super::error::WebError;
use super::session::Session;
use super::view;

type Events = Response;

#[derive(Deserialize)]
pub struct After {
    #[serde(default)]
    after: i64,
}

/// The id the browser resumes from: its `Last-Event-ID`, else what the page rendered last.
fn resume_from(headers: &HeaderMap, rendered: i64) -> i64 {
    headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<i64>().ok())
        .filter(|id| *id >= 0)
        .unwrap_or(rendered)
        .max(0)
}

/// Relays `updates` as events until the browser leaves, `updates` ends or the server stops;
/// `end` (if any) is sent last when `updates` ends by itself.
fn relay<T, S>(
    web: &Web,
    mut updates: S,
    to_event: impl Fn(T) -> Option<Event> + Send + 'static,
    end: Option<Event>,
) -> Events
where
    T: Send + 'static,
    S: Stream<Item = Result<T, tonic::Status>> + Send + Unpin + 'static,
{
    let (sender, receiver) = mpsc::channel(64);
    let stopping = web.stopping.clone().cancelled_owned();
    tokio::spawn(async move {
        tokio::pin!(stopping);
        loop {
            tokio::select! {
                _ = &mut stopping => return,
                _ = sender.closed() => return,
                update = updates.next() => match update {
                    Some(Ok(update)) => {
                        if let Some(event) = to_event(update)
                            && sender.send(Ok(event)).await.is_err()
                        {
                            return;
                        }
                    }
                    Some(Err(status)) => {
                        tracing::debug!(code = ?status.code(), "live view ended");
                        return;
                    }
                    None => break,
                },
            }
        }
        if let Some(end) = end {
            let _ = sender.send(Ok(end)).await;
        }
    });
    Sse::new(ReceiverStream::<Result<Event, Infallible>>::new(receiver))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn json_event(name: &str, data: serde_json::Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

pub async fn activity(
    State(web): State<Web>,
    session: Session,
    Path(customer): Path<String>,
    Query(query): Query<After>,
    headers: HeaderMap,
) -> Result<Events, WebError> {
    let customer_id = customer.parse::<i64>().map_err(|_| WebError::NotFound)?;
    let updates = web
        .customers
        .watch_activity(session.request(pb::WatchActivityRequest {
            customer_id,
            after_id: resume_from(&headers, query.after),
        }))
        .await?
        .into_inner();
    Ok(relay(
        &web,
        updates,
        move |update: pb::WatchActivityResponse| {
            let event = update.event?;
            Some(
                json_event(
                    "activity",
                    serde_json::json!({
                        "id": event.id,
                        "kind": event.kind,
                        "message": event.message,
                        "at": view::time(event.created_at.as_ref()),
                        "href": view::activity_link(customer_id, &event),
                    }),
                )
                .id(event.id.to_string()),
            )
        },
        None,
    ))
}

pub async fn execution(
    State(web): State<Web>,
    session: Session,
    Path((customer, execution)): Path<(String, String)>,
    Query(query): Query<After>,
    headers: HeaderMap,
) -> Result<Events, WebError> {
    let customer_id = customer.parse::<i64>().map_err(|_| WebError::NotFound)?;
    let execution_id = execution.parse::<i64>().map_err(|_| WebError::NotFound)?;
    let updates = web
        .pipelines
        .watch_execution(session.request(pb::WatchExecutionRequest {
            customer_id,
            execution_id,
            after_sequence: resume_from(&headers, query.after),
        }))
        .await?
        .into_inner();
    Ok(relay(
        &web,
        updates,
        |update: pb::WatchExecutionResponse| match update.update? {
            pb::watch_execution_response::Update::Execution(execution) => Some(json_event(
                "execution",
                serde_json::json!({
                    "status": view::execution_status(execution.status),
                    "active": view::execution_is_active(execution.status),
                    "reason": execution.failure_reason,
                }),
            )),
            pb::watch_execution_response::Update::Step(step) => Some(json_event(
                "step",
                serde_json::json!({
                    "index": step.index,
                    "status": view::step_status(step.status),
                    "exit_code": step.exit_code,
                }),
            )),
            pb::watch_execution_response::Update::Log(chunk) => Some(
                json_event("log", serde_json::json!({ "text": chunk.text }))
                    .id(chunk.sequence.to_string()),
            ),
        },
        Some(Event::default().event("end").data("")),
    ))
}
