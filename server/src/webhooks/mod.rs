//! Webhook deliveries: `POST /hooks/<token>` on the web listener. A delivery is checked in this
//! order, and answered at once (its run is queued, never waited for):
//!
//! 1. the body is at most [`MAX_BODY_BYTES`] (413);
//! 2. the token names a webhook, the webhook is enabled and the signature holds under its
//!    secret — otherwise the same 401 whatever failed, so a sender learns nothing of which
//!    webhooks exist from the answer (an unknown token is checked against a decoy key; a known
//!    one also opens its secret, and the first refusals a minute are logged);
//! 3. the webhook's rate (`rate_limits.webhook_deliveries_per_minute`, per replica) and its
//!    customer's (five times that, for all their webhooks) have room (429 with `Retry-After`);
//!    refused deliveries have a bucket of their own, so forged ones cannot use up a rate;
//! 4. the body is JSON and carries what its format needs (400);
//! 5. its event, action and branch pass the webhook's filters (200, ignored);
//! 6. its run is queued with the parameters the webhook fills (202), or was already queued
//!    by an earlier copy of the delivery (200, duplicate), or cannot be (422, or 429 when a
//!    quota is full).
//!
//! Every outcome is counted in `cygnet_webhook_deliveries_total{outcome}`; every delivery to a
//! known webhook (forged ones at a bounded rate) lands in its delivery log.

mod payload;
pub mod signature;

use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::auth::{SystemActor, system_scope};
use crate::domain::WebhookId;
use crate::domain::webhook::{
    DeliveryFacts, DeliveryOutcome, Webhook, WebhookFormat, WebhookRules,
};
use crate::metrics::ServerMetrics;
use crate::rate_limit::KeyedBuckets;
use crate::secrets::SecretBox;
use crate::service::Operations;
use crate::store::{Queued, Store, SystemStore};

/// Largest delivery body accepted, bytes (GitHub caps its payloads at 25 MB, but a push of a
/// normal size is well under this).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Longest URL token looked up (the server makes 32-character ones).
const MAX_TOKEN_CHARS: usize = 64;
/// Refused deliveries logged per webhook per minute (more are only counted).
const REJECTED_LOGGED_PER_MINUTE: u32 = 10;
/// A customer's webhooks together take this many times one webhook's rate.
pub const CUSTOMER_FACTOR: u32 = 5;

/// Whether `token` could be one the server made (URL-safe base64, at most 64 characters): a
/// request for anything else is refused before its body is read.
pub fn token_looks_right(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_CHARS
        && token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// The answer to a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl Answer {
    fn new(status: StatusCode, body: Value) -> Answer {
        Answer {
            status,
            body,
            retry_after: None,
        }
    }

    /// The one answer for an unknown webhook, a disabled one and a bad signature.
    fn rejected() -> Answer {
        Answer::new(
            StatusCode::UNAUTHORIZED,
            json!({
                "outcome": "rejected",
                "error": "no enabled webhook at this address accepts this signature",
            }),
        )
    }

    /// The answer to a body over [`MAX_BODY_BYTES`].
    pub fn too_large() -> Answer {
        Answer::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({
                "outcome": "too_large",
                "error": format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            }),
        )
    }
}

/// Receives deliveries; cheap to clone.
#[derive(Clone)]
pub struct Intake(Arc<Inner>);

struct Inner {
    store: SystemStore,
    secrets: Arc<SecretBox>,
    operations: Option<Operations>,
    metrics: Arc<ServerMetrics>,
    per_minute: u32,
    accepted: KeyedBuckets<WebhookId>,
    /// All of a customer's webhooks together: [`CUSTOMER_FACTOR`] times one webhook's rate.
    customers: KeyedBuckets<crate::domain::CustomerId>,
    rejected: KeyedBuckets<WebhookId>,
    /// The key an unknown token's signature is checked with (same work as a known one).
    decoy: String,
}

impl Intake {
    pub fn new(
        store: &Store,
        secrets: Arc<SecretBox>,
        operations: Option<Operations>,
        metrics: Arc<ServerMetrics>,
        per_minute: u32,
    ) -> Intake {
        Intake(Arc::new(Inner {
            store: store.system(&system_scope(SystemActor::Webhooks)),
            secrets,
            operations,
            metrics,
            per_minute,
            accepted: KeyedBuckets::default(),
            customers: KeyedBuckets::default(),
            rejected: KeyedBuckets::default(),
            decoy: crate::auth::token::random_text(32),
        }))
    }

    /// Counts a delivery the handler answered itself (`too_large`, `timeout`, `error`): a body
    /// too large or too slow, or a server stopping.
    pub fn count(&self, outcome: &'static str) {
        self.0.metrics.webhook_delivery(outcome);
    }

    /// Handles one delivery to `token` received at `now`.
    pub async fn receive(
        &self,
        token: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Answer {
        let answer = match self.handle(token, headers, body, now).await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(%error, "a webhook delivery failed");
                self.0.metrics.webhook_delivery("error");
                return Answer::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"outcome": "error", "error": "the delivery could not be stored; deliver it again"}),
                );
            }
        };
        let outcome = answer
            .body
            .get("outcome")
            .and_then(Value::as_str)
            .unwrap_or("error");
        self.0.metrics.webhook_delivery(match outcome {
            "queued" => "queued",
            "duplicate" => "duplicate",
            "ignored" => "ignored",
            "refused" => "refused",
            "rate_limited" => "rate_limited",
            "invalid" => "invalid",
            _ => "rejected",
        });
        answer
    }

    async fn handle(
        &self,
        token: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Answer, crate::store::StoreError> {
        let inner = &self.0;
        let found = if token_looks_right(token) {
            inner.store.webhook_by_token(token).await?
        } else {
            None
        };
        let Some((webhook, sealed)) = found else {
            // The same work as for a known webhook, then the same answer.
            let _ = signature::verify(WebhookFormat::GitHub, &inner.decoy, headers, body, now);
            return Ok(Answer::rejected());
        };
        let secret = inner
            .secrets
            .open(
                &sealed,
                &secret_context(webhook.customer_id, &webhook.token),
            )
            .map_err(|error| {
                crate::store::StoreError::Internal(sea_orm::DbErr::Custom(format!(
                    "webhook {} secret: {error}",
                    webhook.id
                )))
            })?;
        let refusal = match signature::verify(webhook.format, &secret, headers, body, now) {
            Err(reason) => Some(reason),
            Ok(()) if !webhook.enabled => Some("the webhook is disabled"),
            Ok(()) => None,
        };
        if let Some(reason) = refusal {
            if inner
                .rejected
                .take(webhook.id, REJECTED_LOGGED_PER_MINUTE, Instant::now())
                .is_ok()
            {
                inner
                    .store
                    .record_delivery(
                        &webhook,
                        &DeliveryFacts::default(),
                        DeliveryOutcome::Rejected,
                        reason,
                        now,
                    )
                    .await?;
            }
            return Ok(Answer::rejected());
        }
        let customer_per_minute = inner.per_minute.saturating_mul(CUSTOMER_FACTOR);
        let limited = inner
            .accepted
            .take(webhook.id, inner.per_minute, Instant::now())
            .err()
            .map(|wait| (wait, "this webhook", inner.per_minute))
            .or_else(|| {
                inner
                    .customers
                    .take(webhook.customer_id, customer_per_minute, Instant::now())
                    .err()
                    .map(|wait| {
                        (
                            wait,
                            "this customer's webhooks together",
                            customer_per_minute,
                        )
                    })
            });
        if let Some((wait, who, per_minute)) = limited {
            let seconds = wait.as_secs().max(1);
            return Ok(Answer {
                retry_after: Some(seconds),
                ..Answer::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({
                        "outcome": "rate_limited",
                        "error": format!(
                            "{who} take at most {per_minute} deliveries a minute (rate_limits.webhook_deliveries_per_minute); retry in {seconds} s"
                        ),
                    }),
                )
            });
        }
        self.signed(&webhook, headers, body, now).await
    }

    /// A delivery whose signature held.
    async fn signed(
        &self,
        webhook: &Webhook,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Answer, crate::store::StoreError> {
        let store = &self.0.store;
        let parsed: Value = match serde_json::from_slice(body) {
            Ok(parsed) => parsed,
            Err(error) => {
                let reason = format!("the body is not JSON (send it as application/json): {error}");
                return self
                    .invalid(webhook, &DeliveryFacts::default(), reason, now)
                    .await;
            }
        };
        // What the signature covers: the generic format signs its timestamp with the body.
        let timestamp = signature::header(headers, signature::GENERIC_TIMESTAMP)
            .unwrap_or_default()
            .trim();
        let signed: Vec<&[u8]> = match webhook.format {
            WebhookFormat::Generic => vec![timestamp.as_bytes(), b".", body],
            WebhookFormat::GitHub | WebhookFormat::GitLab => vec![body],
        };
        let facts = match payload::read(webhook.format, headers, &signed, &parsed) {
            Ok(facts) => facts,
            Err(reason) => {
                return self
                    .invalid(webhook, &DeliveryFacts::default(), reason, now)
                    .await;
            }
        };
        let rules = WebhookRules {
            events: webhook.events.clone(),
            branches: webhook.branches.clone(),
            parameters: webhook.parameters.clone(),
        };
        if let Some(reason) = rules.ignores(webhook.format, &facts) {
            store
                .record_delivery(webhook, &facts, DeliveryOutcome::Ignored, &reason, now)
                .await?;
            return Ok(Answer::new(
                StatusCode::OK,
                json!({"outcome": "ignored", "reason": reason}),
            ));
        }
        let parameters = match payload::parameters(&webhook.parameters, &facts, &parsed) {
            Ok(parameters) => parameters,
            Err(reason) => return self.refused(webhook, &facts, reason, false, now).await,
        };
        match store
            .queue_delivery(webhook, &facts, &parameters, now)
            .await?
        {
            Queued::Run(execution) => {
                if let Some(operations) = &self.0.operations {
                    operations.work_queued();
                }
                tracing::info!(
                    webhook_id = webhook.id.get(),
                    customer_id = webhook.customer_id.get(),
                    execution_id = execution.get(),
                    event = facts.event,
                    "webhook delivery queued a run"
                );
                Ok(Answer::new(
                    StatusCode::ACCEPTED,
                    json!({"outcome": "queued", "execution_id": execution.get()}),
                ))
            }
            Queued::Duplicate(execution) => Ok(Answer::new(
                StatusCode::OK,
                json!({
                    "outcome": "duplicate",
                    "execution_id": execution.map_or(0, |execution| execution.get()),
                    "reason": "this delivery id was received before",
                }),
            )),
            Queued::NotQueued(not_queued) => {
                self.refused(webhook, &facts, not_queued.reason, not_queued.quota, now)
                    .await
            }
        }
    }

    /// A signed delivery that does not say what its format needs.
    async fn invalid(
        &self,
        webhook: &Webhook,
        facts: &DeliveryFacts,
        reason: String,
        now: DateTime<Utc>,
    ) -> Result<Answer, crate::store::StoreError> {
        self.0
            .store
            .record_delivery(webhook, facts, DeliveryOutcome::Refused, &reason, now)
            .await?;
        Ok(Answer::new(
            StatusCode::BAD_REQUEST,
            json!({"outcome": "invalid", "reason": reason}),
        ))
    }

    /// A signed delivery whose run cannot be queued.
    async fn refused(
        &self,
        webhook: &Webhook,
        facts: &DeliveryFacts,
        reason: String,
        quota: bool,
        now: DateTime<Utc>,
    ) -> Result<Answer, crate::store::StoreError> {
        self.0
            .store
            .record_delivery(webhook, facts, DeliveryOutcome::Refused, &reason, now)
            .await?;
        let answer = Answer::new(
            if quota {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            },
            json!({"outcome": "refused", "reason": reason}),
        );
        // A full queue empties as runs start: a sender that retries may try in a minute.
        Ok(Answer {
            retry_after: quota.then_some(60),
            ..answer
        })
    }
}

/// What a webhook's sealed secret is bound to: a sealed secret copied onto another webhook
/// does not open.
pub fn secret_context(customer_id: crate::domain::CustomerId, token: &str) -> String {
    format!("webhook:{customer_id}:{token}")
}
