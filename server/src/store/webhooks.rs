//! Webhook endpoints (kept per customer within the `webhooks` quota) and their delivery logs.
//! A delivery whose signature held is recorded with its sender's id and the digest of its
//! signed content in the transaction that queues its run; both are unique per endpoint, so of
//! two copies of a delivery (a retry, a replay under another id, two replicas at once) one
//! queues and the other finds it. Each log keeps its newest [`KEPT_DELIVERIES`] rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};

use super::entities::{execution, webhook, webhook_delivery};
use super::error::corrupt;
use super::executions::insert_execution;
use super::pipelines::{load_pipeline, to_json};
use super::{Store, StoreError, SystemStore, now};
use crate::auth::TenantScope;
use crate::domain::execution::Trigger;
use crate::domain::pipeline::definition_named;
use crate::domain::webhook::{
    DeliveryFacts, DeliveryOutcome, NewWebhook, Webhook, WebhookDelivery, WebhookFormat,
    WebhookRules,
};
use crate::domain::{
    CustomerId, ExecutionId, Page, PageRequest, PipelineId, Quota, UserId, WebhookDeliveryId,
    WebhookId, shorten,
};

/// Rows kept in each webhook's delivery log.
pub const KEPT_DELIVERIES: u64 = 1000;

impl TryFrom<webhook::Model> for Webhook {
    type Error = StoreError;

    fn try_from(row: webhook::Model) -> Result<Self, StoreError> {
        let list = |value: serde_json::Value| -> Result<Vec<String>, StoreError> {
            serde_json::from_value(value).map_err(|error| corrupt("webhook filter", error))
        };
        Ok(Webhook {
            id: WebhookId::from_db(row.id),
            customer_id: CustomerId::from_db(row.customer_id),
            pipeline_id: PipelineId::from_db(row.pipeline_id),
            format: WebhookFormat::from_db(&row.format)
                .ok_or_else(|| corrupt("webhook format", &row.format))?,
            token: row.token,
            events: list(row.events)?,
            branches: list(row.branches)?,
            parameters: serde_json::from_value(row.parameters)
                .map_err(|error| corrupt("webhook parameters", error))?,
            enabled: row.enabled,
            last_delivery_at: row.last_delivery_at,
            created_by: UserId::from_db(row.created_by),
            created_at: row.created_at,
        })
    }
}

fn delivery_from_row(row: webhook_delivery::Model) -> Result<WebhookDelivery, StoreError> {
    Ok(WebhookDelivery {
        id: WebhookDeliveryId::from_db(row.id),
        webhook_id: WebhookId::from_db(row.webhook_id),
        delivery_key: row.delivery_key.unwrap_or_default(),
        event: row.event,
        branch: row.branch,
        commit: row.commit,
        author: row.author,
        outcome: DeliveryOutcome::from_db(&row.outcome)
            .ok_or_else(|| corrupt("delivery outcome", &row.outcome))?,
        reason: row.reason,
        execution_id: row.execution_id.map(ExecutionId::from_db),
        received_at: row.received_at,
    })
}

/// What changes in a webhook.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub enabled: Option<bool>,
    pub events: Option<Vec<String>>,
    pub branches: Option<Vec<String>>,
    pub parameters: Option<BTreeMap<String, String>>,
}

/// What a signed delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    /// A run was queued.
    Run(ExecutionId),
    /// The same delivery came before; the run it queued then, if it still exists.
    Duplicate(Option<ExecutionId>),
    /// No run could be queued (recorded in the delivery log).
    NotQueued(super::NotQueued),
}

async fn find(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    webhook_id: WebhookId,
) -> Result<webhook::Model, StoreError> {
    webhook::Entity::find_by_id(webhook_id.get())
        .filter(webhook::Column::CustomerId.eq(customer_id.get()))
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("webhook {webhook_id} not found")))
}

/// Refuses parameter names the pipeline does not have.
fn check_parameter_names(
    pipeline: &crate::domain::pipeline::Pipeline,
    parameters: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    for name in parameters.keys() {
        definition_named(&pipeline.definition.parameters, name)
            .map_err(|error| StoreError::InvalidArgument(error.to_string()))?;
    }
    Ok(())
}

/// Refused deliveries (forged, replayed) kept per webhook, apart from the others: forged ones
/// cannot push real ones out of the log.
const KEPT_REJECTED: u64 = 100;
/// The log is pruned at one insert in this many, chosen at random (a webhook's share of the
/// row ids may follow a pattern; chance does not).
const PRUNE_EVERY: u32 = 50;

/// Keeps the newest [`KEPT_DELIVERIES`] rows of a webhook's log, and the newest
/// [`KEPT_REJECTED`] rejected ones, at one insert in [`PRUNE_EVERY`].
async fn prune_deliveries(db: &impl ConnectionTrait, webhook: &Webhook) -> Result<(), StoreError> {
    if !rand::random_ratio(1, PRUNE_EVERY) {
        return Ok(());
    }
    let rejected = DeliveryOutcome::Rejected.as_str();
    for (keep, is_rejected) in [(KEPT_DELIVERIES, false), (KEPT_REJECTED, true)] {
        let outcome = if is_rejected {
            webhook_delivery::Column::Outcome.eq(rejected)
        } else {
            webhook_delivery::Column::Outcome.ne(rejected)
        };
        let oldest_kept: Option<i64> = webhook_delivery::Entity::find()
            .select_only()
            .column(webhook_delivery::Column::Id)
            .filter(webhook_delivery::Column::CustomerId.eq(webhook.customer_id.get()))
            .filter(webhook_delivery::Column::WebhookId.eq(webhook.id.get()))
            .filter(outcome.clone())
            .order_by_desc(webhook_delivery::Column::Id)
            .offset(keep - 1)
            .limit(1)
            .into_tuple()
            .one(db)
            .await?;
        if let Some(oldest_kept) = oldest_kept {
            webhook_delivery::Entity::delete_many()
                .filter(webhook_delivery::Column::CustomerId.eq(webhook.customer_id.get()))
                .filter(webhook_delivery::Column::WebhookId.eq(webhook.id.get()))
                .filter(outcome)
                .filter(webhook_delivery::Column::Id.lt(oldest_kept))
                .exec(db)
                .await?;
        }
    }
    Ok(())
}

/// A log row for `facts` (its text cut to the columns' sizes).
fn delivery_row(
    webhook: &Webhook,
    keys: Option<(String, String)>,
    facts: &DeliveryFacts,
    outcome: DeliveryOutcome,
    reason: &str,
    at: DateTime<Utc>,
) -> webhook_delivery::ActiveModel {
    webhook_delivery::ActiveModel {
        customer_id: Set(webhook.customer_id.get()),
        webhook_id: Set(webhook.id.get()),
        delivery_key: Set(keys.as_ref().map(|(key, _)| key.clone())),
        fingerprint: Set(keys.map(|(_, fingerprint)| fingerprint)),
        event: Set(shorten(facts.event.clone(), 100)),
        branch: Set(shorten(facts.branch.clone(), 255)),
        commit: Set(shorten(facts.commit.clone(), 100)),
        author: Set(shorten(facts.author.clone(), 255)),
        outcome: Set(outcome.as_str().to_owned()),
        reason: Set(shorten(reason.to_owned(), 1000)),
        execution_id: Set(None),
        received_at: Set(at),
        ..Default::default()
    }
}

impl Store {
    /// Creates a webhook whose secret is already sealed (`sealed_secret`) and whose URL token
    /// is `token`.
    pub async fn create_webhook(
        &self,
        scope: &TenantScope,
        new: NewWebhook,
        token: String,
        sealed_secret: String,
        created_by: UserId,
    ) -> Result<Webhook, StoreError> {
        let customer_id = scope.customer_id();
        self.precheck_one_more(customer_id, Quota::Webhooks).await?;
        let transaction = self.begin_write().await?;
        let pipeline = load_pipeline(&transaction, customer_id, new.pipeline_id).await?;
        check_parameter_names(&pipeline, &new.rules.parameters)?;
        self.admit_one_more(&transaction, customer_id, Quota::Webhooks)
            .await?;
        let at = now();
        let row = webhook::ActiveModel {
            customer_id: Set(customer_id.get()),
            pipeline_id: Set(new.pipeline_id.get()),
            token: Set(token),
            format: Set(new.format.as_str().to_owned()),
            sealed_secret: Set(sealed_secret),
            events: Set(to_json(&new.rules.events)),
            branches: Set(to_json(&new.rules.branches)),
            parameters: Set(to_json(&new.rules.parameters)),
            enabled: Set(new.enabled),
            last_delivery_at: Set(None),
            created_by: Set(created_by.get()),
            created_at: Set(at),
            updated_at: Set(at),
            ..Default::default()
        }
        .insert(&transaction)
        .await?;
        transaction.commit().await?;
        row.try_into()
    }

    pub async fn list_webhooks(
        &self,
        scope: &TenantScope,
        pipeline_id: Option<PipelineId>,
        page: PageRequest,
    ) -> Result<Page<Webhook>, StoreError> {
        let mut query = webhook::Entity::find()
            .filter(webhook::Column::CustomerId.eq(scope.customer_id().get()));
        if let Some(pipeline_id) = pipeline_id {
            query = query.filter(webhook::Column::PipelineId.eq(pipeline_id.get()));
        }
        if let Some(after) = page.after {
            query = query.filter(webhook::Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(webhook::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        let page = Page::from_rows(rows, page, |row| row.id);
        let items = page
            .items
            .into_iter()
            .map(Webhook::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next_page_token: page.next_page_token,
        })
    }

    /// The pipeline and format of a webhook of the scope.
    pub async fn webhook_of(
        &self,
        scope: &TenantScope,
        webhook_id: WebhookId,
    ) -> Result<Webhook, StoreError> {
        find(&self.db, scope.customer_id(), webhook_id)
            .await?
            .try_into()
    }

    pub async fn update_webhook(
        &self,
        scope: &TenantScope,
        webhook_id: WebhookId,
        patch: WebhookPatch,
    ) -> Result<Webhook, StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let row = find(&transaction, customer_id, webhook_id).await?;
        let current: Webhook = row.clone().try_into()?;
        let rules = WebhookRules::parse(
            current.format,
            patch.events.as_ref().unwrap_or(&current.events),
            patch.branches.as_ref().unwrap_or(&current.branches),
            patch.parameters.as_ref().unwrap_or(&current.parameters),
        )
        .map_err(|error| StoreError::InvalidArgument(error.to_string()))?;
        if patch.parameters.is_some() {
            let pipeline = load_pipeline(&transaction, customer_id, current.pipeline_id).await?;
            check_parameter_names(&pipeline, &rules.parameters)?;
        }
        let mut row: webhook::ActiveModel = row.into();
        row.events = Set(to_json(&rules.events));
        row.branches = Set(to_json(&rules.branches));
        row.parameters = Set(to_json(&rules.parameters));
        if let Some(enabled) = patch.enabled {
            row.enabled = Set(enabled);
        }
        // Runs are on behalf of whoever last changed the webhook: a member cannot make runs
        // happen in another's name.
        row.created_by = Set(scope.actor().get());
        row.updated_at = Set(now());
        let row = row.update(&transaction).await?;
        transaction.commit().await?;
        row.try_into()
    }

    /// Replaces a webhook's sealed secret; the caller becomes its owner (runs are on their
    /// behalf from now on).
    pub async fn replace_webhook_secret(
        &self,
        scope: &TenantScope,
        webhook_id: WebhookId,
        sealed_secret: String,
    ) -> Result<Webhook, StoreError> {
        let transaction = self.begin_write().await?;
        let mut row: webhook::ActiveModel = find(&transaction, scope.customer_id(), webhook_id)
            .await?
            .into();
        row.sealed_secret = Set(sealed_secret);
        row.created_by = Set(scope.actor().get());
        row.updated_at = Set(now());
        let row = row.update(&transaction).await?;
        transaction.commit().await?;
        row.try_into()
    }

    /// Deletes a webhook and its delivery log; the runs it queued stay.
    pub async fn delete_webhook(
        &self,
        scope: &TenantScope,
        webhook_id: WebhookId,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_write().await?;
        let current = find(&transaction, scope.customer_id(), webhook_id).await?;
        webhook_delivery::Entity::delete_many()
            .filter(webhook_delivery::Column::CustomerId.eq(current.customer_id))
            .filter(webhook_delivery::Column::WebhookId.eq(current.id))
            .exec(&transaction)
            .await?;
        webhook::Entity::delete_by_id(current.id)
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// A webhook's delivery log, newest first.
    pub async fn list_webhook_deliveries(
        &self,
        scope: &TenantScope,
        webhook_id: WebhookId,
        page: PageRequest,
    ) -> Result<Page<WebhookDelivery>, StoreError> {
        let customer_id = scope.customer_id();
        find(&self.db, customer_id, webhook_id).await?;
        let mut query = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::CustomerId.eq(customer_id.get()))
            .filter(webhook_delivery::Column::WebhookId.eq(webhook_id.get()));
        if let Some(before) = page.after {
            query = query.filter(webhook_delivery::Column::Id.lt(before));
        }
        let rows = query
            .order_by_desc(webhook_delivery::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        let page = Page::from_rows(rows, page, |row| row.id);
        let items = page
            .items
            .into_iter()
            .map(delivery_from_row)
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next_page_token: page.next_page_token,
        })
    }
}

impl SystemStore {
    /// Re-seals webhook secrets sealed under another key than the current one (after a key
    /// rotation), as [`SystemStore::reseal_secrets`] does for secret variables.
    pub(crate) async fn reseal_webhook_secrets(
        &self,
        secrets: &crate::secrets::SecretBox,
    ) -> Result<usize, StoreError> {
        let transaction = self.begin_write().await?;
        let rows = webhook::Entity::find().all(&transaction).await?;
        let mut resealed = 0;
        for row in rows {
            if !secrets.needs_reseal(&row.sealed_secret) {
                continue;
            }
            let context =
                crate::webhooks::secret_context(CustomerId::from_db(row.customer_id), &row.token);
            let plain = secrets
                .open(&row.sealed_secret, &context)
                .map_err(|error| {
                    StoreError::FailedPrecondition(format!(
                        "the secret of webhook {} cannot be re-encrypted: {error}",
                        row.id
                    ))
                })?;
            let fresh = secrets.seal(&plain, &context).map_err(|error| {
                StoreError::Internal(sea_orm::DbErr::Custom(format!("sealing a secret: {error}")))
            })?;
            let mut active: webhook::ActiveModel = row.into();
            active.sealed_secret = Set(fresh);
            active.update(&transaction).await?;
            resealed += 1;
        }
        transaction.commit().await?;
        Ok(resealed)
    }

    /// The webhook a URL token names, with its sealed secret.
    pub async fn webhook_by_token(
        &self,
        token: &str,
    ) -> Result<Option<(Webhook, String)>, StoreError> {
        let Some(row) = webhook::Entity::find()
            .filter(webhook::Column::Token.eq(token))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let sealed = row.sealed_secret.clone();
        Ok(Some((row.try_into()?, sealed)))
    }

    /// Records a delivery that queued nothing (rejected, ignored or refused); it keeps no
    /// delivery id, so the sender may deliver it again.
    pub async fn record_delivery(
        &self,
        webhook: &Webhook,
        facts: &DeliveryFacts,
        outcome: DeliveryOutcome,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<WebhookDeliveryId, StoreError> {
        let transaction = self.begin_write().await?;
        let row = delivery_row(webhook, None, facts, outcome, reason, at)
            .insert(&transaction)
            .await?;
        if outcome != DeliveryOutcome::Rejected {
            webhook::Entity::update_many()
                .col_expr(webhook::Column::LastDeliveryAt, Expr::value(Some(at)))
                .filter(webhook::Column::Id.eq(webhook.id.get()))
                .exec(&transaction)
                .await?;
        }
        prune_deliveries(&transaction, webhook).await?;
        transaction.commit().await?;
        Ok(WebhookDeliveryId::from_db(row.id))
    }

    /// Queues the run of a signed delivery that passed the webhook's filters, recording it
    /// with its delivery id in the same transaction; a delivery id seen before queues nothing.
    pub async fn queue_delivery(
        &self,
        webhook: &Webhook,
        facts: &DeliveryFacts,
        parameters: &BTreeMap<String, String>,
        at: DateTime<Utc>,
    ) -> Result<Queued, StoreError> {
        let customer_id = webhook.customer_id;
        // A full queue is refused before the write lock is taken (as every write does).
        match self
            .store()
            .precheck_one_more(customer_id, Quota::QueuedExecutions)
            .await
        {
            Ok(()) => {}
            Err(StoreError::QuotaExceeded(exceeded)) => {
                return Ok(Queued::NotQueued(super::NotQueued {
                    reason: exceeded.to_string(),
                    stops: false,
                    quota: true,
                }));
            }
            Err(error) => return Err(error),
        }
        let transaction = self.begin_write().await?;
        let inserted = delivery_row(
            webhook,
            Some((facts.key.clone(), facts.fingerprint.clone())),
            facts,
            DeliveryOutcome::Queued,
            "",
            at,
        )
        .insert(&transaction)
        .await;
        let delivery = match inserted {
            Ok(row) => row,
            Err(error)
                if matches!(
                    error.sql_err(),
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                ) =>
            {
                transaction.rollback().await?;
                return self.earlier_delivery(webhook, facts).await;
            }
            Err(error) => return Err(error.into()),
        };
        // The webhook as it is now: disabled meanwhile, it queues nothing; changed meanwhile,
        // its runs are on behalf of whoever changed it.
        let now = webhook::Entity::find_by_id(webhook.id.get())
            .filter(webhook::Column::CustomerId.eq(customer_id.get()))
            .one(&transaction)
            .await?
            .filter(|row| row.enabled);
        let owner = now
            .as_ref()
            .map_or(webhook.created_by, |row| UserId::from_db(row.created_by));
        let admitted = if let Some(row) = &now {
            self.admit_triggered_run(
                &transaction,
                customer_id,
                PipelineId::from_db(row.pipeline_id),
                owner,
                parameters,
            )
            .await?
        } else {
            Err(super::NotQueued {
                reason: "the webhook was disabled".to_owned(),
                stops: false,
                quota: false,
            })
        };
        let (pipeline, parameters) = match admitted {
            Ok(admitted) => admitted,
            Err(not_queued) => {
                transaction.rollback().await?;
                return Ok(Queued::NotQueued(not_queued));
            }
        };
        let execution_id = insert_execution(
            &transaction,
            &pipeline,
            &parameters,
            &pipeline.definition.selector,
            Trigger::Webhook {
                owner,
                webhook: webhook.id,
                delivery: WebhookDeliveryId::from_db(delivery.id),
            },
        )
        .await?;
        execution::Entity::update_many()
            .col_expr(
                execution::Column::TriggerEvent,
                Expr::value(shorten(facts.event.clone(), 100)),
            )
            .col_expr(
                execution::Column::TriggerBranch,
                Expr::value(shorten(facts.branch.clone(), 255)),
            )
            .col_expr(
                execution::Column::TriggerCommit,
                Expr::value(shorten(facts.commit.clone(), 100)),
            )
            .filter(execution::Column::Id.eq(execution_id.get()))
            .exec(&transaction)
            .await?;
        webhook_delivery::Entity::update_many()
            .col_expr(
                webhook_delivery::Column::ExecutionId,
                Expr::value(Some(execution_id.get())),
            )
            .filter(webhook_delivery::Column::Id.eq(delivery.id))
            .exec(&transaction)
            .await?;
        webhook::Entity::update_many()
            .col_expr(webhook::Column::LastDeliveryAt, Expr::value(Some(at)))
            .filter(webhook::Column::Id.eq(webhook.id.get()))
            .exec(&transaction)
            .await?;
        prune_deliveries(&transaction, webhook).await?;
        transaction.commit().await?;
        Ok(Queued::Run(execution_id))
    }

    /// The run an earlier copy of a delivery queued (the same delivery id, or the same signed
    /// content under another id).
    async fn earlier_delivery(
        &self,
        webhook: &Webhook,
        facts: &DeliveryFacts,
    ) -> Result<Queued, StoreError> {
        let earlier = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::CustomerId.eq(webhook.customer_id.get()))
            .filter(webhook_delivery::Column::WebhookId.eq(webhook.id.get()))
            .filter(
                sea_orm::Condition::any()
                    .add(webhook_delivery::Column::DeliveryKey.eq(facts.key.as_str()))
                    .add(webhook_delivery::Column::Fingerprint.eq(facts.fingerprint.as_str())),
            )
            .one(&self.db)
            .await?;
        Ok(Queued::Duplicate(earlier.and_then(|row| {
            row.execution_id.map(ExecutionId::from_db)
        })))
    }
}
