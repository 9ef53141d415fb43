//! A pipeline's webhooks on its page (create one and see its secret once, disable or enable it,
//! delete it) and a webhook's delivery log on a page of its own — each through PipelineService,
//! so roles (admins and devops manage them) and refusals are the API's.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::pipeline_service_server::PipelineService;

use super::form::{Fields, FormErrors, name_value_lines};
use super::pipeline::{Typed, page};
use super::{Frame, frame, id, try_write, write};
use crate::web::Web;
use crate::web::error::{WebError, render, render_with};
use crate::web::session::{Peer, Session};
use crate::web::view;

/// Who manages webhooks, as the API's `ManageWebhooks` says.
pub const MANAGERS: [pb::Role; 2] = [pb::Role::Admin, pb::Role::Devops];

/// One of the pipeline's webhooks, as listed.
pub struct WebhookRow {
    pub id: i64,
    pub format: &'static str,
    pub path: String,
    pub filters: String,
    pub parameters: String,
    pub enabled: bool,
    pub last_delivery: String,
}

/// The new-webhook form as typed.
#[derive(Default)]
pub struct WebhookForm {
    pub format: String,
    pub events: String,
    pub branches: String,
    pub parameters: String,
}

/// A webhook just created: where to deliver and its secret, shown this once.
pub struct CreatedWebhook {
    /// "Webhook created", or "New secret for webhook 3".
    pub heading: String,
    pub path: String,
    /// The address to deliver to, as this browser reached the dashboard.
    pub url: String,
    pub secret: String,
}

/// The full address of `path` on the dashboard's listener, as the browser addressed it
/// (behind a proxy, its own address is the one senders use).
fn delivery_url(web: &Web, headers: &HeaderMap, path: &str) -> String {
    let scheme = if web.secure_cookies { "https" } else { "http" };
    let host = view::addressed_host(headers).unwrap_or("localhost");
    format!("{scheme}://{host}{path}")
}

/// The pipeline's page showing a webhook's address and secret this once (never cached).
async fn with_secret(
    web: &Web,
    session: &Session,
    customer_id: i64,
    pipeline_id: i64,
    created: CreatedWebhook,
) -> Result<Response, WebError> {
    let typed = Typed {
        created_webhook: Some(created),
        ..Typed::default()
    };
    let page = page(web, session, customer_id, pipeline_id, typed).await?;
    let mut response = render(&page);
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// Gives a webhook a new secret (`RotateWebhookSecret`) and shows it once.
pub async fn rotate_webhook_secret(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    headers: HeaderMap,
    Path((customer, webhook)): Path<(String, String)>,
    fields: Fields,
) -> Result<Response, WebError> {
    let (customer_id, webhook_id) = (id(&customer)?, id(&webhook)?);
    session.check_csrf(&fields.one("csrf"))?;
    let pipeline_id = id(&fields.one("pipeline"))?;
    let api = web.pipelines.clone();
    let request = session.request(pb::RotateWebhookSecretRequest {
        customer_id,
        webhook_id,
    });
    let rotated = write(
        &web,
        peer,
        "cygnet.v1.PipelineService/RotateWebhookSecret",
        async move { api.rotate_webhook_secret(request).await },
    )
    .await?;
    let Some(webhook) = rotated.webhook else {
        return Err(WebError::Page(
            StatusCode::NOT_FOUND,
            "no such webhook".into(),
        ));
    };
    let created = CreatedWebhook {
        heading: format!("New secret for webhook {}", webhook.id),
        url: delivery_url(&web, &headers, &webhook.path),
        path: webhook.path,
        secret: rotated.secret,
    };
    with_secret(&web, &session, customer_id, pipeline_id, created).await
}

pub fn format_name(format: i32) -> &'static str {
    match pb::WebhookFormat::try_from(format) {
        Ok(pb::WebhookFormat::Github) => "GitHub",
        Ok(pb::WebhookFormat::Gitlab) => "GitLab",
        Ok(pb::WebhookFormat::Generic) => "generic",
        _ => "unknown",
    }
}

/// Rows for the pipeline page.
pub fn rows(webhooks: Vec<pb::Webhook>) -> Vec<WebhookRow> {
    webhooks
        .into_iter()
        .map(|webhook| {
            let mut filters = Vec::new();
            if !webhook.events.is_empty() {
                filters.push(format!("events {}", webhook.events.join(", ")));
            }
            if !webhook.branches.is_empty() {
                filters.push(format!("branches {}", webhook.branches.join(", ")));
            }
            let mut parameters: Vec<String> = webhook
                .parameters
                .iter()
                .map(|(name, source)| format!("{name}←{source}"))
                .collect();
            parameters.sort();
            WebhookRow {
                id: webhook.id,
                format: format_name(webhook.format),
                path: webhook.path,
                filters: filters.join("; "),
                parameters: parameters.join(", "),
                enabled: webhook.enabled,
                last_delivery: view::time(webhook.last_delivery_at.as_ref()),
            }
        })
        .collect()
}

/// `a, b c` → `["a", "b", "c"]`.
fn words(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

pub async fn create_webhook(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    headers: HeaderMap,
    Path((customer, pipeline)): Path<(String, String)>,
    fields: Fields,
) -> Result<Response, WebError> {
    let (customer_id, pipeline_id) = (id(&customer)?, id(&pipeline)?);
    session.check_csrf(&fields.one("csrf"))?;
    let form = WebhookForm {
        format: fields.one("format"),
        events: fields.one("events"),
        branches: fields.one("branches"),
        parameters: fields.one("parameters"),
    };
    let refused = |form: WebhookForm, errors: FormErrors| Typed {
        webhook_form: form,
        webhook_errors: errors,
        ..Typed::default()
    };
    let parameters = match name_value_lines(
        &form.parameters,
        "parameters",
        "NAME=branch (or tag, commit, author, event, /json/pointer)",
    ) {
        Ok(parameters) => parameters,
        Err(errors) => {
            let page = page(
                &web,
                &session,
                customer_id,
                pipeline_id,
                refused(form, errors),
            )
            .await?;
            return Ok(render_with(StatusCode::BAD_REQUEST, &page));
        }
    };
    let format = match form.format.as_str() {
        "github" => pb::WebhookFormat::Github,
        "gitlab" => pb::WebhookFormat::Gitlab,
        "generic" => pb::WebhookFormat::Generic,
        _ => pb::WebhookFormat::Unspecified,
    };
    let api = web.pipelines.clone();
    let request = session.request(pb::CreateWebhookRequest {
        customer_id,
        pipeline_id,
        format: format.into(),
        events: words(&form.events),
        branches: words(&form.branches),
        parameters,
        enabled: None,
    });
    let outcome = try_write(
        &web,
        peer,
        "cygnet.v1.PipelineService/CreateWebhook",
        async move { api.create_webhook(request).await },
    )
    .await?;
    match outcome {
        // The secret cannot be read again: the page that shows it is the answer itself.
        Ok(created) => match created.webhook {
            Some(webhook) => {
                let created = CreatedWebhook {
                    heading: "Webhook created".to_owned(),
                    url: delivery_url(&web, &headers, &webhook.path),
                    path: webhook.path,
                    secret: created.secret,
                };
                with_secret(&web, &session, customer_id, pipeline_id, created).await
            }
            None => Err(WebError::Page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the webhook was not returned".into(),
            )),
        },
        Err(status) => {
            let (errors, code) =
                FormErrors::from_status(status, &["format", "events", "branches", "parameters"])?;
            let page = page(
                &web,
                &session,
                customer_id,
                pipeline_id,
                refused(form, errors),
            )
            .await?;
            Ok(render_with(code, &page))
        }
    }
}

/// What a webhook's row buttons do.
enum Change {
    /// Disable (false) or enable (true).
    Enable(bool),
    Delete,
}

async fn change_webhook(
    web: Web,
    session: Session,
    peer: Peer,
    (customer, webhook): (String, String),
    fields: Fields,
    change: Change,
) -> Result<Response, WebError> {
    let (customer_id, webhook_id) = (id(&customer)?, id(&webhook)?);
    session.check_csrf(&fields.one("csrf"))?;
    let pipeline_id = id(&fields.one("pipeline"))?;
    let api = web.pipelines.clone();
    match change {
        Change::Enable(enabled) => {
            let request = session.request(pb::UpdateWebhookRequest {
                customer_id,
                webhook_id,
                enabled: Some(enabled),
                ..Default::default()
            });
            write(
                &web,
                peer,
                "cygnet.v1.PipelineService/UpdateWebhook",
                async move { api.update_webhook(request).await },
            )
            .await?;
        }
        Change::Delete => {
            let request = session.request(pb::DeleteWebhookRequest {
                customer_id,
                webhook_id,
            });
            write(
                &web,
                peer,
                "cygnet.v1.PipelineService/DeleteWebhook",
                async move { api.delete_webhook(request).await },
            )
            .await?;
        }
    }
    Ok(Redirect::to(&format!(
        "/c/{customer_id}/pipelines/{pipeline_id}#webhooks"
    ))
    .into_response())
}

/// Disables or enables a webhook (`enabled` is "true" or "false").
pub async fn toggle_webhook(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(path): Path<(String, String)>,
    fields: Fields,
) -> Result<Response, WebError> {
    let enabled = fields.one("enabled") == "true";
    change_webhook(web, session, peer, path, fields, Change::Enable(enabled)).await
}

pub async fn delete_webhook(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path(path): Path<(String, String)>,
    fields: Fields,
) -> Result<Response, WebError> {
    change_webhook(web, session, peer, path, fields, Change::Delete).await
}

/// One row of a delivery log.
pub struct DeliveryRow {
    pub received: String,
    pub outcome: &'static str,
    pub event: String,
    pub branch: String,
    pub commit: String,
    pub author: String,
    pub execution_id: i64,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct WebhookPage {
    frame: Frame,
    webhook: WebhookRow,
    pipeline_id: i64,
    deliveries: Vec<DeliveryRow>,
}

/// Deliveries a page shows (the newest).
const SHOWN_DELIVERIES: i32 = 200;

/// A webhook's delivery log, newest first (`ListWebhookDeliveries`: admins and devops).
pub async fn webhook(
    State(web): State<Web>,
    session: Session,
    Path((customer, webhook)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let (customer_id, webhook_id) = (id(&customer)?, id(&webhook)?);
    let frame = frame(&web, &session, customer_id, "pipelines").await?;
    let deliveries = web
        .pipelines
        .list_webhook_deliveries(session.request(pb::ListWebhookDeliveriesRequest {
            customer_id,
            webhook_id,
            page_size: SHOWN_DELIVERIES,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .deliveries;
    // The webhook itself, among the customer's (the log answered, so it is theirs).
    let (webhooks, _) = every!(
        web.pipelines,
        list_webhooks,
        session,
        ListWebhooksRequest {
            customer_id,
            pipeline_id: 0,
            page_size: 1000,
        },
        webhooks
    )
    .await?;
    let Some(found) = webhooks
        .into_iter()
        .find(|webhook| webhook.id == webhook_id)
    else {
        return Err(WebError::Page(
            StatusCode::NOT_FOUND,
            "no such webhook".into(),
        ));
    };
    let pipeline_id = found.pipeline_id;
    let webhook = rows(vec![found]).remove(0);
    let deliveries = deliveries
        .into_iter()
        .map(|delivery| DeliveryRow {
            received: view::time(delivery.received_at.as_ref()),
            outcome: match pb::WebhookDeliveryOutcome::try_from(delivery.outcome) {
                Ok(pb::WebhookDeliveryOutcome::Queued) => "queued",
                Ok(pb::WebhookDeliveryOutcome::Ignored) => "ignored",
                Ok(pb::WebhookDeliveryOutcome::Refused) => "refused",
                Ok(pb::WebhookDeliveryOutcome::Rejected) => "rejected",
                _ => "unknown",
            },
            event: delivery.event,
            branch: delivery.branch,
            commit: delivery.commit,
            author: delivery.author,
            execution_id: delivery.execution_id,
            reason: delivery.reason,
        })
        .collect();
    Ok(render(&WebhookPage {
        frame,
        webhook,
        pipeline_id,
        deliveries,
    }))
}
