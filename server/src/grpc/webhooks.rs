//! PipelineService's webhook RPCs: admins and devops manage webhooks and read their delivery
//! logs (a webhook holds a secret that starts runs); any member lists them, never a secret.

use cygnet_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::pipelines::PipelineApi;
use crate::audit;
use crate::auth::Action;
use crate::domain::ids::parse_optional;
use crate::domain::webhook::{
    DeliveryOutcome, NewWebhook, Webhook, WebhookDelivery, WebhookFormat, WebhookRules,
};
use crate::domain::{PageRequest, PipelineId, ValidationError, WebhookId};
use crate::store::WebhookPatch;
use crate::wire::common::timestamp;

/// Random bytes of a webhook's URL token (32 characters) and of its secret (43).
const TOKEN_BYTES: usize = 24;
const SECRET_BYTES: usize = 32;

fn format_from_pb(value: i32) -> Result<WebhookFormat, ValidationError> {
    match pb::WebhookFormat::try_from(value) {
        Ok(pb::WebhookFormat::Generic) => Ok(WebhookFormat::Generic),
        Ok(pb::WebhookFormat::Github) => Ok(WebhookFormat::GitHub),
        Ok(pb::WebhookFormat::Gitlab) => Ok(WebhookFormat::GitLab),
        _ => Err(ValidationError::new(
            "format",
            "must be WEBHOOK_FORMAT_GENERIC, WEBHOOK_FORMAT_GITHUB or WEBHOOK_FORMAT_GITLAB",
        )),
    }
}

fn format_to_pb(format: WebhookFormat) -> pb::WebhookFormat {
    match format {
        WebhookFormat::Generic => pb::WebhookFormat::Generic,
        WebhookFormat::GitHub => pb::WebhookFormat::Github,
        WebhookFormat::GitLab => pb::WebhookFormat::Gitlab,
    }
}

/// The path deliveries are posted to on the web listener.
pub fn webhook_path(token: &str) -> String {
    format!("/hooks/{token}")
}

impl From<Webhook> for pb::Webhook {
    fn from(webhook: Webhook) -> Self {
        pb::Webhook {
            id: webhook.id.get(),
            customer_id: webhook.customer_id.get(),
            pipeline_id: webhook.pipeline_id.get(),
            format: format_to_pb(webhook.format).into(),
            path: webhook_path(&webhook.token),
            events: webhook.events,
            branches: webhook.branches,
            parameters: webhook.parameters.into_iter().collect(),
            enabled: webhook.enabled,
            last_delivery_at: webhook.last_delivery_at.and_then(timestamp),
            created_by: webhook.created_by.get(),
            created_at: timestamp(webhook.created_at),
        }
    }
}

impl From<WebhookDelivery> for pb::WebhookDelivery {
    fn from(delivery: WebhookDelivery) -> Self {
        pb::WebhookDelivery {
            id: delivery.id.get(),
            webhook_id: delivery.webhook_id.get(),
            delivery_id: delivery.delivery_key,
            event: delivery.event,
            branch: delivery.branch,
            commit: delivery.commit,
            author: delivery.author,
            outcome: match delivery.outcome {
                DeliveryOutcome::Queued => pb::WebhookDeliveryOutcome::Queued,
                DeliveryOutcome::Ignored => pb::WebhookDeliveryOutcome::Ignored,
                DeliveryOutcome::Refused => pb::WebhookDeliveryOutcome::Refused,
                DeliveryOutcome::Rejected => pb::WebhookDeliveryOutcome::Rejected,
            }
            .into(),
            reason: delivery.reason,
            execution_id: delivery.execution_id.map_or(0, |execution| execution.get()),
            received_at: timestamp(delivery.received_at),
        }
    }
}

/// Parameter sources from the request: names trimmed, never empty.
fn sources(
    parameters: &std::collections::HashMap<String, String>,
) -> Result<std::collections::BTreeMap<String, String>, ValidationError> {
    let mut sources = std::collections::BTreeMap::new();
    for (name, source) in parameters {
        if name.trim().is_empty() {
            return Err(ValidationError::new(
                "parameters",
                "a parameter name is empty",
            ));
        }
        sources.insert(name.trim().to_owned(), source.clone());
    }
    Ok(sources)
}

impl PipelineApi {
    pub(super) async fn create_webhook_rpc(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> Result<Response<pb::CreateWebhookResponse>, Status> {
        let body = request.get_ref();
        audit::note_resource("pipeline", body.pipeline_id);
        let pipeline_id = PipelineId::parse(body.pipeline_id, "pipeline_id");
        let scope = self
            .scope(&request, body.customer_id, Action::ManageWebhooks)
            .await?;
        let pipeline_id = pipeline_id?;
        let format = format_from_pb(body.format)?;
        let parameters = sources(&body.parameters)?;
        let rules = WebhookRules::parse(format, &body.events, &body.branches, &parameters)?;
        self.check_not_secrets(&scope, pipeline_id, &rules.parameters)
            .await?;
        let token = crate::auth::token::random_text(TOKEN_BYTES);
        let (secret, sealed) = self.new_secret(scope.customer_id(), &token)?;
        let new = NewWebhook {
            pipeline_id,
            format,
            rules,
            enabled: body.enabled.unwrap_or(true),
        };
        let webhook = self
            .context
            .store
            .create_webhook(&scope, new, token, sealed, scope.actor())
            .await?;
        audit::note_resource("webhook", webhook.id.get());
        Ok(Response::new(pb::CreateWebhookResponse {
            webhook: Some(webhook.into()),
            secret,
        }))
    }

    pub(super) async fn list_webhooks_rpc(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        let body = request.get_ref();
        let page = PageRequest::parse(body.page_size, &body.page_token);
        let pipeline_id = parse_optional(body.pipeline_id, "pipeline_id", PipelineId::parse);
        let scope = self
            .scope(&request, body.customer_id, Action::ReadPipelines)
            .await?;
        let page = self
            .context
            .store
            .list_webhooks(&scope, pipeline_id?, page?)
            .await?;
        Ok(Response::new(pb::ListWebhooksResponse {
            webhooks: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    pub(super) async fn update_webhook_rpc(
        &self,
        request: Request<pb::UpdateWebhookRequest>,
    ) -> Result<Response<pb::UpdateWebhookResponse>, Status> {
        let body = request.get_ref();
        audit::note_resource("webhook", body.webhook_id);
        let webhook_id = WebhookId::parse(body.webhook_id, "webhook_id");
        let scope = self
            .scope(&request, body.customer_id, Action::ManageWebhooks)
            .await?;
        let webhook_id = webhook_id?;
        let parameters = if body.set_parameters {
            Some(sources(&body.parameters)?)
        } else {
            None
        };
        let current = self.context.store.webhook_of(&scope, webhook_id).await?;
        // Checked here to name the field; the store checks the whole again.
        WebhookRules::parse(
            current.format,
            if body.set_events {
                &body.events
            } else {
                &current.events
            },
            if body.set_branches {
                &body.branches
            } else {
                &current.branches
            },
            parameters.as_ref().unwrap_or(&current.parameters),
        )?;
        if let Some(parameters) = &parameters {
            self.check_not_secrets(&scope, current.pipeline_id, parameters)
                .await?;
        }
        let patch = WebhookPatch {
            enabled: body.enabled,
            events: body.set_events.then(|| body.events.clone()),
            branches: body.set_branches.then(|| body.branches.clone()),
            parameters,
        };
        let webhook = self
            .context
            .store
            .update_webhook(&scope, webhook_id, patch)
            .await?;
        Ok(Response::new(pb::UpdateWebhookResponse {
            webhook: Some(webhook.into()),
        }))
    }

    pub(super) async fn rotate_webhook_secret_rpc(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::RotateWebhookSecretResponse>, Status> {
        let body = request.get_ref();
        audit::note_resource("webhook", body.webhook_id);
        let webhook_id = WebhookId::parse(body.webhook_id, "webhook_id");
        let scope = self
            .scope(&request, body.customer_id, Action::ManageWebhooks)
            .await?;
        let current = self.context.store.webhook_of(&scope, webhook_id?).await?;
        let (secret, sealed) = self.new_secret(scope.customer_id(), &current.token)?;
        let webhook = self
            .context
            .store
            .replace_webhook_secret(&scope, current.id, sealed)
            .await?;
        Ok(Response::new(pb::RotateWebhookSecretResponse {
            webhook: Some(webhook.into()),
            secret,
        }))
    }

    /// A new secret for the webhook at `token`, and the secret sealed for storage.
    fn new_secret(
        &self,
        customer_id: crate::domain::CustomerId,
        token: &str,
    ) -> Result<(String, String), Status> {
        let secret = format!("whsec_{}", crate::auth::token::random_text(SECRET_BYTES));
        let sealed = self
            .secrets
            .seal(
                &secret,
                &crate::webhooks::secret_context(customer_id, token),
            )
            .map_err(|error| {
                tracing::error!(%error, "sealing a webhook secret failed");
                Status::internal("the webhook secret could not be sealed")
            })?;
        Ok((secret, sealed))
    }

    pub(super) async fn delete_webhook_rpc(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::DeleteWebhookResponse>, Status> {
        let body = request.get_ref();
        audit::note_resource("webhook", body.webhook_id);
        let webhook_id = WebhookId::parse(body.webhook_id, "webhook_id");
        let scope = self
            .scope(&request, body.customer_id, Action::DeleteWebhooks)
            .await?;
        self.context
            .store
            .delete_webhook(&scope, webhook_id?)
            .await?;
        Ok(Response::new(pb::DeleteWebhookResponse {}))
    }

    pub(super) async fn list_webhook_deliveries_rpc(
        &self,
        request: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<pb::ListWebhookDeliveriesResponse>, Status> {
        let body = request.get_ref();
        let webhook_id = WebhookId::parse(body.webhook_id, "webhook_id");
        let page = PageRequest::parse(body.page_size, &body.page_token);
        let scope = self
            .scope(&request, body.customer_id, Action::ReadWebhookDeliveries)
            .await?;
        let page = self
            .context
            .store
            .list_webhook_deliveries(&scope, webhook_id?, page?)
            .await?;
        Ok(Response::new(pb::ListWebhookDeliveriesResponse {
            deliveries: page.items.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
