//! Usage metering: each write that uses something (an execution ending, log and artifact bytes
//! stored, agents online, monitor checks) adds it to the customer's row of the day in the same
//! transaction, so the figures are exact and never recounted from history.

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};

use super::entities::{customer_storage, usage_daily};
use super::{Store, StoreError, SystemStore, now};
use crate::auth::TenantScope;
use crate::domain::CustomerId;
use crate::domain::execution::ExecutionStatus;
use crate::domain::usage::{UsageDay, UsageRange};

/// What one write adds to a customer's usage of a day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct UsageDelta {
    pub build_seconds: i64,
    pub executions_succeeded: i64,
    pub executions_failed: i64,
    pub executions_cancelled: i64,
    pub executions_timed_out: i64,
    pub log_bytes_added: i64,
    pub artifact_bytes_added: i64,
    pub agent_online_seconds: i64,
    pub monitor_checks: i64,
}

impl std::ops::AddAssign for UsageDelta {
    fn add_assign(&mut self, other: UsageDelta) {
        // Destructured, so a new field cannot be left out of the sum.
        let UsageDelta {
            build_seconds,
            executions_succeeded,
            executions_failed,
            executions_cancelled,
            executions_timed_out,
            log_bytes_added,
            artifact_bytes_added,
            agent_online_seconds,
            monitor_checks,
        } = other;
        self.build_seconds += build_seconds;
        self.executions_succeeded += executions_succeeded;
        self.executions_failed += executions_failed;
        self.executions_cancelled += executions_cancelled;
        self.executions_timed_out += executions_timed_out;
        self.log_bytes_added += log_bytes_added;
        self.artifact_bytes_added += artifact_bytes_added;
        self.agent_online_seconds += agent_online_seconds;
        self.monitor_checks += monitor_checks;
    }
}

impl UsageDelta {
    /// An execution that ended with `status`: counted, with the time it ran.
    pub fn execution_ended(
        status: ExecutionStatus,
        started_at: Option<DateTime<Utc>>,
        finished_at: DateTime<Utc>,
    ) -> Self {
        let mut delta = UsageDelta {
            build_seconds: started_at.map_or(0, |started| {
                Ord::max((finished_at - started).num_seconds(), 0)
            }),
            ..Default::default()
        };
        match status {
            ExecutionStatus::Succeeded => delta.executions_succeeded = 1,
            ExecutionStatus::Failed => delta.executions_failed = 1,
            ExecutionStatus::Cancelled => delta.executions_cancelled = 1,
            ExecutionStatus::TimedOut => delta.executions_timed_out = 1,
            _ => {}
        }
        delta
    }
}

fn day_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// Adds `delta` to the customer's usage of the day of `at`, creating the day's row if needed.
pub(super) async fn add_usage(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    at: DateTime<Utc>,
    delta: UsageDelta,
) -> Result<(), StoreError> {
    if delta == UsageDelta::default() {
        return Ok(());
    }
    use usage_daily::Column;
    let summed = [
        Column::BuildSeconds,
        Column::ExecutionsSucceeded,
        Column::ExecutionsFailed,
        Column::ExecutionsCancelled,
        Column::ExecutionsTimedOut,
        Column::LogBytesAdded,
        Column::ArtifactBytesAdded,
        Column::AgentOnlineSeconds,
        Column::MonitorChecks,
    ];
    let mut on_conflict = OnConflict::columns([Column::CustomerId, Column::Day]);
    for column in summed {
        let name = sea_orm::IdenStatic::as_str(&column);
        on_conflict.value(
            column,
            Expr::col((usage_daily::Entity, column)).add(Expr::cust(format!("excluded.{name}"))),
        );
    }
    usage_daily::Entity::insert(usage_daily::ActiveModel {
        customer_id: Set(customer_id.get()),
        day: Set(day_of(at)),
        build_seconds: Set(delta.build_seconds),
        executions_succeeded: Set(delta.executions_succeeded),
        executions_failed: Set(delta.executions_failed),
        executions_cancelled: Set(delta.executions_cancelled),
        executions_timed_out: Set(delta.executions_timed_out),
        log_bytes_added: Set(delta.log_bytes_added),
        artifact_bytes_added: Set(delta.artifact_bytes_added),
        log_bytes_stored: Set(0),
        artifact_bytes_stored: Set(0),
        agent_online_seconds: Set(delta.agent_online_seconds),
        monitor_checks: Set(delta.monitor_checks),
    })
    .on_conflict(on_conflict)
    .exec_without_returning(db)
    .await?;
    Ok(())
}

impl SystemStore {
    /// Writes every customer's stored log and artifact bytes into its row of today (one
    /// statement per customer whose bytes changed since the last reading).
    pub(crate) async fn read_storage_into_usage(&self) -> Result<usize, StoreError> {
        let today = day_of(now());
        let storage = customer_storage::Entity::find().all(&self.db).await?;
        let recorded: std::collections::HashMap<i64, (i64, i64)> = usage_daily::Entity::find()
            .filter(usage_daily::Column::Day.eq(today.as_str()))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| {
                (
                    row.customer_id,
                    (row.log_bytes_stored, row.artifact_bytes_stored),
                )
            })
            .collect();
        let mut written = 0;
        for row in storage {
            let current = (row.log_bytes, row.artifact_bytes);
            // Nothing new to record: the same as the day's reading (or nothing stored at all).
            if recorded.get(&row.customer_id).copied().unwrap_or((0, 0)) == current {
                continue;
            }
            use usage_daily::Column;
            usage_daily::Entity::insert(usage_daily::ActiveModel {
                customer_id: Set(row.customer_id),
                day: Set(today.clone()),
                build_seconds: Set(0),
                executions_succeeded: Set(0),
                executions_failed: Set(0),
                executions_cancelled: Set(0),
                executions_timed_out: Set(0),
                log_bytes_added: Set(0),
                artifact_bytes_added: Set(0),
                log_bytes_stored: Set(row.log_bytes),
                artifact_bytes_stored: Set(row.artifact_bytes),
                agent_online_seconds: Set(0),
                monitor_checks: Set(0),
            })
            .on_conflict(
                OnConflict::columns([Column::CustomerId, Column::Day])
                    .update_columns([Column::LogBytesStored, Column::ArtifactBytesStored])
                    .to_owned(),
            )
            .exec_without_returning(&self.writer)
            .await?;
            written += 1;
        }
        Ok(written)
    }
}

impl Store {
    /// The scope's usage per day over `range`, oldest first; days without any use are left out.
    pub async fn customer_usage(
        &self,
        scope: &TenantScope,
        range: UsageRange,
    ) -> Result<Vec<UsageDay>, StoreError> {
        let rows = usage_daily::Entity::find()
            .filter(usage_daily::Column::CustomerId.eq(scope.customer_id().get()))
            .filter(usage_daily::Column::Day.gte(range.from.format("%Y-%m-%d").to_string()))
            .filter(usage_daily::Column::Day.lte(range.to.format("%Y-%m-%d").to_string()))
            .order_by_asc(usage_daily::Column::Day)
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(UsageDay {
                    day: NaiveDate::parse_from_str(&row.day, "%Y-%m-%d")
                        .map_err(|error| super::error::corrupt("usage day", error))?,
                    build_seconds: row.build_seconds,
                    executions_succeeded: row.executions_succeeded,
                    executions_failed: row.executions_failed,
                    executions_cancelled: row.executions_cancelled,
                    executions_timed_out: row.executions_timed_out,
                    log_bytes_added: row.log_bytes_added,
                    artifact_bytes_added: row.artifact_bytes_added,
                    log_bytes_stored: row.log_bytes_stored,
                    artifact_bytes_stored: row.artifact_bytes_stored,
                    agent_online_seconds: row.agent_online_seconds,
                    monitor_checks: row.monitor_checks,
                })
            })
            .collect()
    }
}
