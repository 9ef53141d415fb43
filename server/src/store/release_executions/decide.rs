//! Deciding a stage (approve, reject) and cancelling a release execution: the rules of
//! `auth::permissions` and `domain::release_flow` decide, under the release execution's lock;
//! this applies their answer.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::moves::{apply_move, release_state};
use super::{
    ReleaseEffects, event, find_release_execution, label, load_release_execution,
    lock_release_execution, stage_status, stages_of,
};
use crate::auth::{TenantScope, require_stage_approver};
use crate::domain::release::{ReleaseExecution, StageStatus};
use crate::domain::release_flow::{
    Decision, DecisionRequest, cancel_move, check_decision, reject_move,
};
use crate::domain::{EnvironmentId, ExecutionId, ReleaseExecutionId, StageExecutionId};
use crate::store::entities::{stage_execution_record as stage, user};
use crate::store::environments::{environment_from_row, find_environment};
use crate::store::error::corrupt;
use crate::store::{Store, StoreError, activity, now};

impl Store {
    /// Approves or rejects a stage awaiting approval. The caller's role must be one of the
    /// environment's approver roles, and the decision must pass the release rules
    /// ([`check_decision`]). An approval lets the release move on at once; a rejection ends it.
    pub async fn decide_stage(
        &self,
        scope: &TenantScope,
        stage_execution_id: StageExecutionId,
        decision: Decision,
        comment: &str,
        reviewed_digest: &str,
    ) -> Result<(ReleaseExecution, ReleaseEffects), StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let not_found =
            || StoreError::NotFound(format!("stage execution {stage_execution_id} not found"));
        let find_stage = || {
            stage::Entity::find_by_id(stage_execution_id.get())
                .filter(stage::Column::CustomerId.eq(customer_id.get()))
                .one(&transaction)
        };
        let found = find_stage().await?.ok_or_else(not_found)?;
        // Two approvers at once: the second waits for the first and reads the stage it left.
        lock_release_execution(&transaction, customer_id, found.release_execution_id).await?;
        let stage_row = find_stage().await?.ok_or_else(not_found)?;
        let environment = find_environment(
            &transaction,
            customer_id,
            EnvironmentId::from_db(stage_row.environment_id),
        )
        .await?
        .map(environment_from_row)
        .transpose()?
        .ok_or_else(|| corrupt("stage", "environment missing"))?;
        require_stage_approver(scope.role(), &environment)?;
        let row = find_release_execution(
            &transaction,
            customer_id,
            ReleaseExecutionId::from_db(stage_row.release_execution_id),
        )
        .await?;
        check_decision(&DecisionRequest {
            decision,
            actor: scope.actor(),
            stage_id: stage_execution_id,
            stage_status: stage_status(&stage_row)?,
            environment: &environment,
            deployed_by: crate::domain::UserId::from_db(row.triggered_by),
            release_label: &label(&row),
            snapshot_digest: &stage_row.snapshot_digest,
            reviewed_digest,
        })?;
        let at = now();
        let username = user::Entity::find_by_id(scope.actor().get())
            .one(&transaction)
            .await?
            .map(|user| user.username)
            .unwrap_or_default();
        let mut effects = ReleaseEffects::default();
        match decision {
            Decision::Approve => {
                stage::Entity::update_many()
                    .col_expr(
                        stage::Column::Status,
                        Expr::value(StageStatus::Pending.as_str()),
                    )
                    .col_expr(stage::Column::ApprovedBy, Expr::value(scope.actor().get()))
                    .col_expr(stage::Column::ApprovedAt, Expr::value(at))
                    .col_expr(stage::Column::Comment, Expr::value(comment))
                    .filter(stage::Column::Id.eq(stage_row.id))
                    .exec(&transaction)
                    .await?;
                activity::record(
                    &transaction,
                    customer_id,
                    event(
                        "release.stage.approved",
                        row.id,
                        format!(
                            "{username} approved {} for {}",
                            label(&row),
                            environment.name
                        ),
                        Some(scope.actor()),
                    ),
                    at,
                )
                .await?;
                effects.started = super::moves::advance(&transaction, customer_id, row.id).await?;
            }
            Decision::Reject => {
                let reason = if comment.is_empty() {
                    format!("rejected by {username}")
                } else {
                    format!("rejected by {username}: {comment}")
                };
                stage::Entity::update_many()
                    .col_expr(
                        stage::Column::Status,
                        Expr::value(StageStatus::Cancelled.as_str()),
                    )
                    .col_expr(stage::Column::RejectedBy, Expr::value(scope.actor().get()))
                    .col_expr(stage::Column::Comment, Expr::value(comment))
                    .col_expr(stage::Column::Reason, Expr::value(reason.as_str()))
                    .col_expr(stage::Column::FinishedAt, Expr::value(at))
                    .filter(stage::Column::Id.eq(stage_row.id))
                    .exec(&transaction)
                    .await?;
                apply_move(
                    &transaction,
                    &row,
                    &[],
                    reject_move(&environment.name, &reason),
                )
                .await?;
            }
        }
        let loaded = load_release_execution(
            &transaction,
            customer_id,
            ReleaseExecutionId::from_db(row.id),
        )
        .await?;
        transaction.commit().await?;
        Ok((loaded, effects))
    }

    /// Cancels a release execution ([`cancel_move`]): stages not started are skipped; a running
    /// stage's deploy must be cancelled by the caller (returned), and the release ends when it
    /// has stopped.
    pub async fn cancel_release_execution(
        &self,
        scope: &TenantScope,
        id: ReleaseExecutionId,
        reason: &str,
    ) -> Result<(ReleaseExecution, ReleaseEffects), StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let row = lock_release_execution(&transaction, customer_id, id.get())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("release execution {id} not found")))?;
        let stage_rows = stages_of(&transaction, customer_id, row.id).await?;
        let state = release_state(&transaction, &row, &stage_rows).await?;
        let (changes, running) = cancel_move(&state, reason);
        let mut effects = ReleaseEffects::default();
        apply_move(&transaction, &row, &stage_rows, changes).await?;
        if let Some(stage_id) = running {
            effects.cancel = stage_rows
                .iter()
                .find(|stage_row| stage_row.id == stage_id.get())
                .and_then(|stage_row| stage_row.execution_id)
                .map(ExecutionId::from_db);
        }
        let loaded = load_release_execution(&transaction, customer_id, id).await?;
        transaction.commit().await?;
        Ok((loaded, effects))
    }
}
