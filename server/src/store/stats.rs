//! The dashboard's figures, each from one aggregate query over indexed columns.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, QueryTrait,
};

use super::entities::{
    agent, execution, monitor, pipeline, release, release_execution, user, user_customer,
};
use super::rollups::{self, Counted};
use super::{Store, StoreError, SystemStore, now};
use crate::auth::TenantScope;
use crate::domain::execution::ExecutionStatus;
use crate::domain::monitor::MonitorStatus;
use crate::domain::release::{ReleaseExecutionStatus, ReleaseStatus};
use crate::domain::{AgentStatus, CustomerId};

/// A customer's dashboard figures.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerStats {
    pub customer_id: CustomerId,
    pub agents_total: i64,
    pub agents_online: i64,
    pub pipelines_total: i64,
    pub pipelines_succeeding: i64,
    pub releases_total: i64,
    pub releases_active: i64,
    pub releases_in_progress: i64,
    pub services_total: i64,
    pub services_healthy: i64,
    pub services_warning: i64,
    pub services_down: i64,
    pub users_total: i64,
    pub users_active: i64,
    pub executions_total: i64,
    pub executions_succeeded: i64,
    pub executions_failed: i64,
    pub success_rate_percent: f64,
    pub computed_at: DateTime<Utc>,
}

const FINISHED: [ExecutionStatus; 4] = [
    ExecutionStatus::Succeeded,
    ExecutionStatus::Failed,
    ExecutionStatus::TimedOut,
    ExecutionStatus::Cancelled,
];

/// Rows per status value: `SELECT status, COUNT(*) … GROUP BY status`.
async fn by_status<E>(
    db: &impl ConnectionTrait,
    select: sea_orm::Select<E>,
    status: impl ColumnTrait,
    id: impl ColumnTrait,
) -> Result<HashMap<String, i64>, StoreError>
where
    E: EntityTrait,
{
    let rows: Vec<(String, i64)> = select
        .select_only()
        .column(status)
        .column_as(id.count(), "count")
        .group_by(status)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

impl Store {
    /// The scope's dashboard figures; agents count as online when their stream is open and
    /// they were seen since `online_cutoff`.
    pub async fn customer_stats(
        &self,
        scope: &TenantScope,
        online_cutoff: DateTime<Utc>,
    ) -> Result<CustomerStats, StoreError> {
        let customer_id = scope.customer_id();
        let customer = customer_id.get();
        let db = &self.db;

        // The figures are independent reads: they run concurrently on the pool, so the answer
        // takes as long as the slowest, not their sum (the dashboard waits for it).
        let agents = agent::Entity::find()
            .filter(agent::Column::CustomerId.eq(customer))
            .filter(agent::Column::DeletedAt.is_null());
        let agent_figures = async {
            let total = agents.clone().count(db).await? as i64;
            let online = agents
                .clone()
                .filter(agent::Column::Status.eq(AgentStatus::Online.as_str()))
                .filter(agent::Column::LastSeenAt.gte(online_cutoff))
                .count(db)
                .await? as i64;
            Ok::<_, StoreError>((total, online))
        };

        let live_pipelines = pipeline::Entity::find()
            .filter(pipeline::Column::CustomerId.eq(customer))
            .filter(pipeline::Column::DeletedAt.is_null());
        let pipelines_total =
            async { Ok::<_, StoreError>(live_pipelines.clone().count(db).await? as i64) };
        // A pipeline succeeds when its latest finished execution did: one index seek per
        // live pipeline (see `latest_of_each`), not a scan of the customer's history.
        let pipelines_succeeding = async {
            let live_ids: Vec<i64> = live_pipelines
                .clone()
                .select_only()
                .column(pipeline::Column::Id)
                .into_tuple()
                .all(db)
                .await?;
            let mut succeeding = 0;
            for ids in live_ids.chunks(500) {
                succeeding +=
                    execution::Entity::find()
                        .filter(execution::Column::Id.in_subquery(
                            super::pipelines::latest_of_each(customer_id, ids, Some(&FINISHED)),
                        ))
                        .filter(execution::Column::Status.eq(ExecutionStatus::Succeeded.as_str()))
                        .count(db)
                        .await? as i64;
            }
            Ok::<_, StoreError>(succeeding)
        };

        let releases = by_status(
            db,
            release::Entity::find().filter(release::Column::CustomerId.eq(customer)),
            release::Column::Status,
            release::Column::Id,
        );
        let releases_in_progress = async {
            Ok::<_, StoreError>(
                release_execution::Entity::find()
                    .filter(release_execution::Column::CustomerId.eq(customer))
                    .filter(release_execution::Column::Status.is_in([
                        ReleaseExecutionStatus::Pending.as_str(),
                        ReleaseExecutionStatus::InProgress.as_str(),
                    ]))
                    .count(db)
                    .await? as i64,
            )
        };

        let services = by_status(
            db,
            monitor::Entity::find().filter(monitor::Column::CustomerId.eq(customer)),
            monitor::Column::Status,
            monitor::Column::Id,
        );

        let members =
            user_customer::Entity::find().filter(user_customer::Column::CustomerId.eq(customer));
        let user_figures = async {
            let total = members.clone().count(db).await? as i64;
            let active = members
                .clone()
                .filter(
                    user_customer::Column::UserId.in_subquery(
                        user::Entity::find()
                            .select_only()
                            .column(user::Column::Id)
                            .filter(user::Column::IsActive.eq(true))
                            .into_query(),
                    ),
                )
                .count(db)
                .await? as i64;
            Ok::<_, StoreError>((total, active))
        };

        let executions = rollups::counts_by_status(db, Counted::Customer(customer_id));
        let (
            (agents_total, agents_online),
            pipelines_total,
            pipelines_succeeding,
            releases,
            releases_in_progress,
            services,
            (users_total, users_active),
            executions,
        ) = tokio::try_join!(
            agent_figures,
            pipelines_total,
            pipelines_succeeding,
            releases,
            releases_in_progress,
            services,
            user_figures,
            executions,
        )?;
        let releases_active = releases
            .get(ReleaseStatus::Active.as_str())
            .copied()
            .unwrap_or(0);
        let releases_total = releases_active
            + releases
                .get(ReleaseStatus::Disabled.as_str())
                .copied()
                .unwrap_or(0);
        let service = |status: MonitorStatus| services.get(status.as_str()).copied().unwrap_or(0);
        let count = |status: ExecutionStatus| executions.get(status.as_str()).copied().unwrap_or(0);
        let executions_succeeded = count(ExecutionStatus::Succeeded);
        let executions_failed = count(ExecutionStatus::Failed) + count(ExecutionStatus::TimedOut);
        let finished: i64 = FINISHED.iter().map(|status| count(*status)).sum();
        Ok(CustomerStats {
            customer_id,
            agents_total,
            agents_online,
            pipelines_total,
            pipelines_succeeding,
            releases_total,
            releases_active,
            releases_in_progress,
            services_total: services.values().sum(),
            services_healthy: service(MonitorStatus::Healthy),
            services_warning: service(MonitorStatus::Warning),
            services_down: service(MonitorStatus::Down),
            users_total,
            users_active,
            executions_total: executions.values().sum(),
            executions_succeeded,
            executions_failed,
            success_rate_percent: if finished == 0 {
                0.0
            } else {
                executions_succeeded as f64 * 100.0 / finished as f64
            },
            computed_at: now(),
        })
    }
}

/// Executions of all customers by status, for the server's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionCounts {
    pub by_status: Vec<(String, i64)>,
    pub queued: i64,
    /// How long the oldest queued execution has waited.
    pub oldest_queued_age: Option<std::time::Duration>,
}

/// Connections of the database pool, for the server's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    pub idle: u32,
    pub in_use: u32,
    pub max: u32,
}

impl SystemStore {
    /// Two aggregate queries: executions by status, and the oldest queued one.
    pub(crate) async fn execution_counts(&self) -> Result<ExecutionCounts, StoreError> {
        let counts = rollups::counts_by_status(&self.db, Counted::All).await?;
        let oldest: Option<DateTime<Utc>> = execution::Entity::find()
            .select_only()
            .column_as(execution::Column::CreatedAt.min(), "oldest")
            .filter(execution::Column::Status.eq(ExecutionStatus::Queued.as_str()))
            .into_tuple::<Option<DateTime<Utc>>>()
            .one(&self.db)
            .await?
            .flatten();
        let queued = counts
            .get(ExecutionStatus::Queued.as_str())
            .copied()
            .unwrap_or(0);
        let mut by_status: Vec<(String, i64)> = counts.into_iter().collect();
        by_status.sort();
        Ok(ExecutionCounts {
            by_status,
            queued,
            oldest_queued_age: oldest.map(|at| (now() - at).to_std().unwrap_or_default()),
        })
    }
}

impl SystemStore {
    /// The pool's connections now.
    pub(crate) fn pool_usage(&self) -> PoolUsage {
        let (size, idle, max) = match self.backend() {
            sea_orm::DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            _ => {
                let pool = self.db.get_sqlite_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
        };
        let idle = u32::try_from(idle).unwrap_or(u32::MAX);
        PoolUsage {
            idle,
            in_use: size.saturating_sub(idle),
            max,
        }
    }
}
