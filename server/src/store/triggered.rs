//! What runs queued by the server itself (a schedule's tick, a webhook's delivery) check
//! before they are queued, inside the transaction that queues them: the customer is active,
//! the pipeline is there, the run's owner may still run it, the parameters fit and the queue
//! has room. A refusal says why; a "stopped" one means the trigger cannot run again as it is.

use std::collections::BTreeMap;

use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter};

use super::entities::{customer, user, user_customer};
use super::pipelines::load_pipeline;
use super::{StoreError, SystemStore};
use crate::auth::Action;
use crate::domain::pipeline::{Pipeline, check_not_secrets, resolve_parameters};
use crate::domain::{CustomerId, PipelineId, Quota, Role, UserId};

/// Why a triggered run was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotQueued {
    pub reason: String,
    /// The trigger should stop: its customer, pipeline or owner is gone.
    pub stops: bool,
    /// A quota was full (the sender may try again later).
    pub quota: bool,
}

impl NotQueued {
    fn stopped(reason: &str) -> NotQueued {
        NotQueued {
            reason: format!("stopped: {reason}"),
            stops: true,
            quota: false,
        }
    }

    fn because(reason: String) -> NotQueued {
        NotQueued {
            reason,
            stops: false,
            quota: false,
        }
    }
}

impl SystemStore {
    /// Checks a run of `pipeline_id` on `owner`'s behalf with `parameters` and takes its place
    /// in the `queued_executions` quota; the pipeline and the parameters to queue it with.
    pub(super) async fn admit_triggered_run(
        &self,
        transaction: &DatabaseTransaction,
        customer_id: CustomerId,
        pipeline_id: PipelineId,
        owner: UserId,
        parameters: &BTreeMap<String, String>,
    ) -> Result<Result<(Pipeline, BTreeMap<String, String>), NotQueued>, StoreError> {
        let active = customer::Entity::find_by_id(customer_id.get())
            .one(transaction)
            .await?
            .is_some_and(|row| row.is_active);
        if !active {
            return Ok(Err(NotQueued::stopped("the customer is deactivated")));
        }
        let pipeline = match load_pipeline(transaction, customer_id, pipeline_id).await {
            Ok(pipeline) => pipeline,
            Err(StoreError::NotFound(_)) => {
                return Ok(Err(NotQueued::stopped("the pipeline was deleted")));
            }
            Err(error) => return Err(error),
        };
        // Checked again at each run: a secret added to the pipeline's groups since the
        // trigger was made must not be replaced by one of its parameters.
        let secret_keys = super::variables::secret_keys_of_groups(
            transaction,
            customer_id,
            &pipeline.definition.variable_group_ids,
        )
        .await?;
        if let Err(error) = check_not_secrets(parameters, &secret_keys) {
            return Ok(Err(NotQueued::because(error.to_string())));
        }
        let parameters = match resolve_parameters(&pipeline.definition.parameters, parameters) {
            Ok(parameters) => parameters,
            Err(error) => {
                return Ok(Err(NotQueued::because(format!(
                    "the parameters no longer fit the pipeline: {error}"
                ))));
            }
        };
        // Runs are on the owner's behalf: while they may no longer run the pipeline, the
        // trigger stops (a platform administrator keeps the authority).
        let user = user::Entity::find_by_id(owner.get())
            .one(transaction)
            .await?;
        let member_role = user_customer::Entity::find()
            .filter(user_customer::Column::UserId.eq(owner.get()))
            .filter(user_customer::Column::CustomerId.eq(customer_id.get()))
            .one(transaction)
            .await?
            .and_then(|row| Role::from_db(&row.role));
        let may_run = user.as_ref().is_some_and(|user| {
            user.is_active
                && (user.is_superuser
                    || member_role
                        .is_some_and(|role| Action::RunPipelines.allowed_roles().contains(&role)))
        });
        if !may_run {
            return Ok(Err(NotQueued::stopped(
                "the member it runs for may no longer run this pipeline",
            )));
        }
        let limits = self.store().quota_limits(transaction, customer_id).await?;
        match self
            .store()
            .admit_one_more_within(transaction, customer_id, Quota::QueuedExecutions, &limits)
            .await
        {
            Ok(()) => Ok(Ok((pipeline, parameters))),
            Err(StoreError::QuotaExceeded(exceeded)) => Ok(Err(NotQueued {
                reason: exceeded.to_string(),
                stops: false,
                quota: true,
            })),
            Err(error) => Err(error),
        }
    }
}
