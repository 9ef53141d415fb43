//! Releases: deploying, deciding a stage, cancelling, and moving a release on after its deploy
//! ended.

use super::{Operations, ServiceError};
use crate::auth::TenantScope;
use crate::domain::release::{DeployRequest, ReleaseExecution};
use crate::domain::release_flow::Decision;
use crate::domain::{CustomerId, ExecutionId, ReleaseExecutionId, ReleaseId, StageExecutionId};
use crate::store::{Cancellation, ReleaseEffects};

impl Operations {
    /// Deploys one of the scope's releases: Release-N is created and makes its first move.
    pub async fn deploy_release(
        &self,
        scope: &TenantScope,
        release_id: ReleaseId,
        request: DeployRequest,
    ) -> Result<ReleaseExecution, ServiceError> {
        let (release_execution, effects) = self
            .store()
            .deploy_release(scope, release_id, request)
            .await?;
        tracing::info!(
            release_execution_id = release_execution.id.get(),
            number = release_execution.number,
            "release deployed"
        );
        self.apply_release_effects(scope, release_execution.id, effects, "")
            .await?;
        Ok(release_execution)
    }

    /// Approves or rejects a stage awaiting approval; an approval lets the release move on.
    pub async fn decide_stage(
        &self,
        scope: &TenantScope,
        stage_execution_id: StageExecutionId,
        decision: Decision,
        comment: &str,
        reviewed_digest: &str,
    ) -> Result<ReleaseExecution, ServiceError> {
        let (release_execution, effects) = self
            .store()
            .decide_stage(
                scope,
                stage_execution_id,
                decision,
                comment,
                reviewed_digest,
            )
            .await?;
        tracing::info!(
            release_execution_id = release_execution.id.get(),
            decision = ?decision,
            "stage decided"
        );
        self.apply_release_effects(scope, release_execution.id, effects, "")
            .await?;
        Ok(release_execution)
    }

    /// Cancels a release execution: stages not started are skipped, the running deploy is
    /// cancelled, and the release ends when it has stopped.
    pub async fn cancel_release(
        &self,
        scope: &TenantScope,
        release_execution_id: ReleaseExecutionId,
        reason: &str,
    ) -> Result<ReleaseExecution, ServiceError> {
        let (_, effects) = self
            .store()
            .cancel_release_execution(scope, release_execution_id, reason)
            .await?;
        self.apply_release_effects(scope, release_execution_id, effects, reason)
            .await?;
        Ok(self
            .store()
            .get_release_execution(scope, release_execution_id)
            .await?)
    }

    /// Moves on the release that the ended execution `execution_id` deploys, if any: next stage,
    /// approval wait, or its end. A failure is logged; the dispatcher's sweep retries.
    pub(crate) async fn advance_release_after(
        &self,
        customer_id: CustomerId,
        execution_id: ExecutionId,
    ) {
        match self
            .inner
            .system
            .advance_release_of(customer_id, execution_id)
            .await
        {
            Ok(Some((release_execution_id, started))) => {
                self.release_changed(release_execution_id);
                if started.is_some() {
                    self.work_queued();
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, execution_id = execution_id.get(), "could not advance the release; the sweep retries")
            }
        }
    }

    /// Carries out what a release move asks for after its transaction committed: dispatch for a
    /// started deploy, a cancellation of a running one, watchers told.
    async fn apply_release_effects(
        &self,
        scope: &TenantScope,
        release_execution_id: ReleaseExecutionId,
        effects: ReleaseEffects,
        reason: &str,
    ) -> Result<(), ServiceError> {
        if effects.started.is_some() {
            self.work_queued();
        }
        if let Some(execution_id) = effects.cancel {
            let (_, outcome) = self.cancel_execution(scope, execution_id, reason).await?;
            if outcome == Cancellation::AlreadyFinished {
                // The deploy ended before the cancellation: its end closes the release now.
                self.advance_release_after(scope.customer_id(), execution_id)
                    .await;
            }
        }
        self.release_changed(release_execution_id);
        Ok(())
    }
}
