//! Runs of pipelines: queueing one (whatever triggered it), retrying, cancelling.

use super::{Operations, ServiceError};
use crate::auth::TenantScope;
use crate::domain::ExecutionId;
use crate::domain::execution::{Execution, RunRequest, Trigger};
use crate::domain::pipeline::{check_not_secrets, resolve_parameters};
use crate::store::Cancellation;

impl Operations {
    /// Queues a run of one of the scope's pipelines: the parameters are checked against the
    /// pipeline's definition and, for a member's run, its secret variables (a parameter never
    /// stands in for a secret), the execution is stored with a snapshot of the definition and its trigger, and
    /// dispatch looks at the queue here and on every replica.
    pub async fn queue_run(
        &self,
        scope: &TenantScope,
        run: RunRequest,
    ) -> Result<Execution, ServiceError> {
        let store = self.store();
        let pipeline = store.pipeline_to_run(scope, run.pipeline_id).await?;
        // Parameters a member sends may not be named like a secret of the pipeline. A retry
        // repeats what was accepted before (defaults included), so it is not checked again.
        if let Trigger::User(_) = run.trigger {
            let secret_keys = store
                .secret_keys_of_pipeline(scope, run.pipeline_id)
                .await?;
            check_not_secrets(&run.parameters, &secret_keys)?;
        }
        let resolved = resolve_parameters(&pipeline.definition.parameters, &run.parameters)?;
        let execution_id = store
            .create_execution(scope, &pipeline, resolved, run.agent_id, run.trigger)
            .await?;
        tracing::info!(
            execution_id = execution_id.get(),
            pipeline_id = run.pipeline_id.get(),
            trigger = ?run.trigger,
            "execution queued"
        );
        // The dispatcher first, the answer after: reading it back is not on the job's path.
        // The answer shows it as it is then (a dispatcher may have assigned it already).
        self.work_queued();
        Ok(store.get_execution(scope, execution_id).await?)
    }

    /// Queues a new run of one of the scope's executions, with its parameters.
    pub async fn retry_execution(
        &self,
        scope: &TenantScope,
        execution_id: ExecutionId,
    ) -> Result<Execution, ServiceError> {
        let (pipeline_id, parameters, agent_id) = self
            .store()
            .execution_run_request(scope, execution_id)
            .await?;
        self.queue_run(
            scope,
            RunRequest {
                pipeline_id,
                parameters,
                agent_id,
                trigger: Trigger::Retry {
                    by: scope.actor(),
                    of: execution_id,
                },
            },
        )
        .await
    }

    /// Cancels one of the scope's executions: a queued one ends at once; one on an agent is
    /// asked to stop there, and ends when the agent reports it.
    pub async fn cancel_execution(
        &self,
        scope: &TenantScope,
        execution_id: ExecutionId,
        reason: &str,
    ) -> Result<(Execution, Cancellation), ServiceError> {
        let (execution, outcome) = self
            .store()
            .cancel_execution(scope, execution_id, reason)
            .await?;
        match outcome {
            Cancellation::Requested { agent_id } => {
                self.request_cancel(agent_id, execution_id, reason)
            }
            Cancellation::Cancelled => {
                self.execution_ended(scope.customer_id(), execution_id, None)
                    .await
            }
            Cancellation::AlreadyFinished => {}
        }
        tracing::info!(
            execution_id = execution_id.get(),
            outcome = ?outcome,
            "cancellation requested"
        );
        Ok((execution, outcome))
    }
}
