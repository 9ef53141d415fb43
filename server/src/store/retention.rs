//! Retention: what a customer's retention periods let go — logs, artifacts and whole finished
//! executions older than their period — removed in bounded batches, each batch one transaction
//! that also takes the bytes off the customer's stored totals.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait};

use super::entities::{
    artifact, audit_entry, customer, execution, log_chunk, release_execution,
    release_execution_build, stage_execution_record, step_execution,
};
use super::{StoreError, SystemStore, quotas};
use crate::domain::execution::ExecutionStatus;
use crate::domain::release::ReleaseExecutionStatus;
use crate::domain::{CustomerId, Quota, QuotaLimits};

/// What one retention batch removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    pub executions: u64,
    pub log_bytes: i64,
    pub artifact_bytes: i64,
    /// Storage keys of the removed artifacts' content, to delete once the batch committed.
    pub artifact_keys: Vec<String>,
}

fn terminal() -> [&'static str; 4] {
    [
        ExecutionStatus::Succeeded.as_str(),
        ExecutionStatus::Failed.as_str(),
        ExecutionStatus::Cancelled.as_str(),
        ExecutionStatus::TimedOut.as_str(),
    ]
}

impl SystemStore {
    /// Every customer with the limits in force for it.
    pub(crate) async fn customers_with_limits(
        &self,
    ) -> Result<Vec<(CustomerId, QuotaLimits)>, StoreError> {
        let ids: Vec<i64> = customer::Entity::find()
            .select_only()
            .column(customer::Column::Id)
            .order_by_asc(customer::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut customers = Vec::with_capacity(ids.len());
        for id in ids {
            let customer_id = CustomerId::from_db(id);
            customers.push((
                customer_id,
                self.store.quota_limits(&self.db, customer_id).await?,
            ));
        }
        Ok(customers)
    }

    /// Removes the logs of up to `batch` of the customer's executions that ended before
    /// `cutoff`, marking them `log_expired`.
    pub(crate) async fn expire_logs(
        &self,
        customer_id: CustomerId,
        cutoff: DateTime<Utc>,
        batch: u64,
    ) -> Result<Removed, StoreError> {
        let transaction = self.begin_write().await?;
        let rows: Vec<(i64, i64)> = execution::Entity::find()
            .select_only()
            .column(execution::Column::Id)
            .column(execution::Column::LogBytes)
            .filter(execution::Column::CustomerId.eq(customer_id.get()))
            .filter(execution::Column::Status.is_in(terminal()))
            .filter(execution::Column::FinishedAt.lt(cutoff))
            .filter(execution::Column::LogExpired.eq(false))
            .order_by_asc(execution::Column::Id)
            .limit(batch)
            .into_tuple()
            .all(&transaction)
            .await?;
        let mut removed = Removed::default();
        if rows.is_empty() {
            return Ok(removed);
        }
        let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
        removed.log_bytes = rows.iter().map(|(_, bytes)| bytes).sum();
        removed.executions = ids.len() as u64;
        log_chunk::Entity::delete_many()
            .filter(log_chunk::Column::CustomerId.eq(customer_id.get()))
            .filter(log_chunk::Column::ExecutionId.is_in(ids.iter().copied()))
            .exec(&transaction)
            .await?;
        execution::Entity::update_many()
            .col_expr(execution::Column::LogExpired, Expr::value(true))
            .col_expr(execution::Column::LogBytes, Expr::value(0))
            .filter(execution::Column::Id.is_in(ids))
            .exec(&transaction)
            .await?;
        quotas::add_stored_bytes(
            &transaction,
            customer_id,
            Quota::LogBytesStored,
            -removed.log_bytes,
            i64::MAX,
        )
        .await?;
        transaction.commit().await?;
        Ok(removed)
    }

    /// Removes the artifacts of up to `batch` of the customer's executions that ended before
    /// `cutoff`, except those a release still in progress ships.
    pub(crate) async fn expire_artifacts(
        &self,
        customer_id: CustomerId,
        cutoff: DateTime<Utc>,
        batch: u64,
    ) -> Result<Removed, StoreError> {
        let transaction = self.begin_write().await?;
        let shipped_by_open_release = release_execution_build::Entity::find()
            .select_only()
            .column(release_execution_build::Column::ExecutionId)
            .filter(release_execution_build::Column::CustomerId.eq(customer_id.get()))
            .filter(
                release_execution_build::Column::ReleaseExecutionId.in_subquery(
                    release_execution::Entity::find()
                        .select_only()
                        .column(release_execution::Column::Id)
                        .filter(release_execution::Column::CustomerId.eq(customer_id.get()))
                        .filter(release_execution::Column::Status.is_in([
                            ReleaseExecutionStatus::Pending.as_str(),
                            ReleaseExecutionStatus::InProgress.as_str(),
                        ]))
                        .into_query(),
                ),
            )
            .into_query();
        let old_executions = execution::Entity::find()
            .select_only()
            .column(execution::Column::Id)
            .filter(execution::Column::CustomerId.eq(customer_id.get()))
            .filter(execution::Column::Status.is_in(terminal()))
            .filter(execution::Column::FinishedAt.lt(cutoff))
            .into_query();
        let rows = artifact::Entity::find()
            .filter(artifact::Column::CustomerId.eq(customer_id.get()))
            .filter(artifact::Column::ExecutionId.in_subquery(old_executions))
            .filter(artifact::Column::ExecutionId.not_in_subquery(shipped_by_open_release))
            .order_by_asc(artifact::Column::Id)
            .limit(batch)
            .all(&transaction)
            .await?;
        let mut removed = Removed::default();
        if rows.is_empty() {
            return Ok(removed);
        }
        removed.artifact_bytes = rows.iter().map(|row| row.size_bytes).sum();
        removed.artifact_keys = rows.iter().map(|row| row.storage_key.clone()).collect();
        artifact::Entity::delete_many()
            .filter(artifact::Column::Id.is_in(rows.iter().map(|row| row.id)))
            .exec(&transaction)
            .await?;
        quotas::add_stored_bytes(
            &transaction,
            customer_id,
            Quota::ArtifactBytesStored,
            -removed.artifact_bytes,
            i64::MAX,
        )
        .await?;
        transaction.commit().await?;
        Ok(removed)
    }

    /// Removes up to `batch` of the customer's executions that ended before `cutoff`, with their
    /// steps, log and artifacts — except executions a release refers to (a stage's deploy, a
    /// shipped build), which stay for the release's history.
    pub(crate) async fn expire_executions(
        &self,
        customer_id: CustomerId,
        cutoff: DateTime<Utc>,
        batch: u64,
    ) -> Result<Removed, StoreError> {
        let transaction = self.begin_write().await?;
        let deploys = stage_execution_record::Entity::find()
            .select_only()
            .column(stage_execution_record::Column::ExecutionId)
            .filter(stage_execution_record::Column::CustomerId.eq(customer_id.get()))
            .filter(stage_execution_record::Column::ExecutionId.is_not_null())
            .into_query();
        let builds = release_execution_build::Entity::find()
            .select_only()
            .column(release_execution_build::Column::ExecutionId)
            .filter(release_execution_build::Column::CustomerId.eq(customer_id.get()))
            .into_query();
        let rows: Vec<(i64, i64)> = execution::Entity::find()
            .select_only()
            .column(execution::Column::Id)
            .column(execution::Column::LogBytes)
            .filter(execution::Column::CustomerId.eq(customer_id.get()))
            .filter(execution::Column::Status.is_in(terminal()))
            .filter(execution::Column::FinishedAt.lt(cutoff))
            .filter(execution::Column::Id.not_in_subquery(deploys))
            .filter(execution::Column::Id.not_in_subquery(builds))
            .order_by_asc(execution::Column::Id)
            .limit(batch)
            .into_tuple()
            .all(&transaction)
            .await?;
        let mut removed = Removed::default();
        if rows.is_empty() {
            return Ok(removed);
        }
        let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
        removed.executions = ids.len() as u64;
        removed.log_bytes = rows.iter().map(|(_, bytes)| bytes).sum();
        let artifacts = artifact::Entity::find()
            .filter(artifact::Column::CustomerId.eq(customer_id.get()))
            .filter(artifact::Column::ExecutionId.is_in(ids.iter().copied()))
            .all(&transaction)
            .await?;
        removed.artifact_bytes = artifacts.iter().map(|row| row.size_bytes).sum();
        removed.artifact_keys = artifacts
            .iter()
            .map(|row| row.storage_key.clone())
            .collect();
        artifact::Entity::delete_many()
            .filter(artifact::Column::CustomerId.eq(customer_id.get()))
            .filter(artifact::Column::ExecutionId.is_in(ids.iter().copied()))
            .exec(&transaction)
            .await?;
        log_chunk::Entity::delete_many()
            .filter(log_chunk::Column::CustomerId.eq(customer_id.get()))
            .filter(log_chunk::Column::ExecutionId.is_in(ids.iter().copied()))
            .exec(&transaction)
            .await?;
        step_execution::Entity::delete_many()
            .filter(step_execution::Column::CustomerId.eq(customer_id.get()))
            .filter(step_execution::Column::ExecutionId.is_in(ids.iter().copied()))
            .exec(&transaction)
            .await?;
        execution::Entity::delete_many()
            .filter(execution::Column::CustomerId.eq(customer_id.get()))
            .filter(execution::Column::Id.is_in(ids))
            .exec(&transaction)
            .await?;
        for (quota, bytes) in [
            (Quota::LogBytesStored, removed.log_bytes),
            (Quota::ArtifactBytesStored, removed.artifact_bytes),
        ] {
            quotas::add_stored_bytes(&transaction, customer_id, quota, -bytes, i64::MAX).await?;
        }
        transaction.commit().await?;
        Ok(removed)
    }

    /// Keeps the audit entries of calls that authenticated no one (they belong to no customer
    /// and no user) to the newest `keep`, removing at most `batch` older ones a call.
    pub(crate) async fn prune_anonymous_audit(
        &self,
        keep: u64,
        batch: u64,
    ) -> Result<u64, StoreError> {
        let newest_kept: Option<i64> = audit_entry::Entity::find()
            .select_only()
            .column(audit_entry::Column::Id)
            .filter(audit_entry::Column::ActorUserId.is_null())
            .filter(audit_entry::Column::CustomerId.is_null())
            .filter(audit_entry::Column::ActorUsername.eq(""))
            .order_by_desc(audit_entry::Column::Id)
            .offset(keep)
            .limit(1)
            .into_tuple()
            .one(&self.db)
            .await?;
        let Some(boundary) = newest_kept else {
            return Ok(0);
        };
        let doomed = Query::select()
            .column(audit_entry::Column::Id)
            .from(audit_entry::Entity)
            .and_where(audit_entry::Column::ActorUserId.is_null())
            .and_where(audit_entry::Column::CustomerId.is_null())
            .and_where(audit_entry::Column::ActorUsername.eq(""))
            .and_where(Expr::col(audit_entry::Column::Id).lte(boundary))
            .order_by(audit_entry::Column::Id, sea_orm::Order::Asc)
            .limit(batch)
            .to_owned();
        Ok(audit_entry::Entity::delete_many()
            .filter(audit_entry::Column::Id.in_subquery(doomed))
            .exec(&self.writer)
            .await?
            .rows_affected)
    }
}
