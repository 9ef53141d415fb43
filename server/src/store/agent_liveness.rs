//! Agent liveness: online/offline transitions (with activity events), batched heartbeat
//! persistence, the metrics history and its retention.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entities::{agent, agent_sample, execution};
use super::{Store, StoreError, SystemStore, activity, convert};
use crate::auth::{AuthenticatedAgent, TenantScope};
use crate::domain::execution::ExecutionStatus;
use crate::domain::{AgentFigures, AgentId, AgentStatus, CustomerId, ExecutionId, NewActivity};

/// The latest figures of one connected agent, to persist.
#[derive(Debug, Clone)]
pub struct HeartbeatRecord {
    pub agent_id: AgentId,
    pub customer_id: CustomerId,
    /// The stream the figures came on; a record from a replaced stream is ignored.
    pub connection_id: i64,
    pub figures: AgentFigures,
    pub at: DateTime<Utc>,
    /// Also append the figures to the metrics history.
    pub sample: bool,
    /// The executions the agent reported running: their leases are renewed until `lease_until`.
    pub running: Vec<ExecutionId>,
    /// Online time this record stands for (one heartbeat interval), metered for its customer.
    pub online_seconds: i64,
    pub lease_until: DateTime<Utc>,
}

fn offline_event(agent_id: i64, name: &str, reason: &str) -> NewActivity {
    NewActivity {
        kind: "agent.offline",
        subject_type: "agent",
        subject_id: agent_id,
        message: format!("Agent {name} went offline ({reason})"),
        actor: None,
    }
}

impl Store {
    /// Marks the agent online on stream `connection_id`. Records an `agent.online` event when it
    /// was offline (or its last heartbeat was older than `online_cutoff`). Returns whether it
    /// came online.
    pub async fn mark_agent_online(
        &self,
        agent: &AuthenticatedAgent,
        connection_id: i64,
        at: DateTime<Utc>,
        online_cutoff: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let transaction = self.begin_write().await?;
        let current = agent::Entity::find_by_id(agent.agent_id().get())
            .filter(agent::Column::CustomerId.eq(agent.customer_id().get()))
            .filter(agent::Column::DeletedAt.is_null())
            .one(&transaction)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("agent {} not found", agent.agent_id())))?;
        let was_online = current.status == AgentStatus::Online.as_str()
            && current
                .last_seen_at
                .is_some_and(|seen| seen >= online_cutoff);
        agent::Entity::update_many()
            .col_expr(
                agent::Column::Status,
                Expr::value(AgentStatus::Online.as_str()),
            )
            .col_expr(agent::Column::ConnectionId, Expr::value(connection_id))
            .col_expr(agent::Column::LastSeenAt, Expr::value(at))
            .filter(agent::Column::Id.eq(current.id))
            .exec(&transaction)
            .await?;
        if !was_online {
            activity::record(
                &transaction,
                agent.customer_id(),
                NewActivity {
                    kind: "agent.online",
                    subject_type: "agent",
                    subject_id: current.id,
                    message: format!("Agent {} came online", current.name),
                    actor: None,
                },
                at,
            )
            .await?;
        }
        transaction.commit().await?;
        Ok(!was_online)
    }

    /// Marks the agent offline if stream `connection_id` is still the one that marked it
    /// online; a newer stream (here or on another replica) wins. `last_seen_at` is kept.
    /// Returns whether the agent went offline.
    pub async fn mark_agent_offline(
        &self,
        agent: &AuthenticatedAgent,
        connection_id: i64,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let transaction = self.begin_write().await?;
        let changed = agent::Entity::update_many()
            .col_expr(
                agent::Column::Status,
                Expr::value(AgentStatus::Offline.as_str()),
            )
            .col_expr(agent::Column::RunningJobs, Expr::value(0))
            .filter(agent::Column::Id.eq(agent.agent_id().get()))
            .filter(agent::Column::CustomerId.eq(agent.customer_id().get()))
            .filter(agent::Column::ConnectionId.eq(connection_id))
            .filter(agent::Column::Status.eq(AgentStatus::Online.as_str()))
            .exec(&transaction)
            .await?
            .rows_affected
            == 1;
        if changed {
            activity::record(
                &transaction,
                agent.customer_id(),
                offline_event(agent.agent_id().get(), agent.name(), reason),
                at,
            )
            .await?;
        }
        transaction.commit().await?;
        Ok(changed)
    }

    /// One of the scope's agents' samples in `[start, end)`, oldest first, at most `limit`;
    /// the flag says whether more were left out.
    pub async fn agent_samples(
        &self,
        scope: &TenantScope,
        agent_id: AgentId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        limit: u64,
    ) -> Result<(Vec<(AgentFigures, DateTime<Utc>)>, bool), StoreError> {
        let exists = agent::Entity::find_by_id(agent_id.get())
            .filter(agent::Column::CustomerId.eq(scope.customer_id().get()))
            .filter(agent::Column::DeletedAt.is_null())
            .count(&self.db)
            .await?;
        if exists == 0 {
            return Err(StoreError::NotFound(format!("agent {agent_id} not found")));
        }
        let mut rows = agent_sample::Entity::find()
            .filter(agent_sample::Column::CustomerId.eq(scope.customer_id().get()))
            .filter(agent_sample::Column::AgentId.eq(agent_id.get()))
            .filter(agent_sample::Column::SampledAt.gte(start))
            .filter(agent_sample::Column::SampledAt.lt(end))
            .order_by_asc(agent_sample::Column::SampledAt)
            .limit(limit + 1)
            .all(&self.db)
            .await?;
        let truncated = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        Ok((
            rows.into_iter()
                .map(|row| {
                    (
                        AgentFigures {
                            cpu_percent: row.cpu_percent,
                            memory_percent: row.memory_percent,
                            memory_used_bytes: convert::unsigned(row.memory_used_bytes),
                            memory_total_bytes: convert::unsigned(row.memory_total_bytes),
                            disk_free_bytes: convert::unsigned(row.disk_free_bytes),
                            load_average: row.load_average,
                            running_jobs: u32::try_from(row.running_jobs).unwrap_or(0),
                        },
                        row.sampled_at,
                    )
                })
                .collect(),
            truncated,
        ))
    }
}

impl SystemStore {
    /// Persists the latest figures of many agents in one transaction, and appends the ones marked
    /// `sample` to the metrics history in one insert.
    pub(crate) async fn save_heartbeats(
        &self,
        records: &[HeartbeatRecord],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        match self.save_heartbeat_batch(records).await {
            Ok(()) => Ok(()),
            // The database is away: every agent's save would fail alike.
            Err(error @ StoreError::Unavailable(_)) => Err(error),
            Err(error) if records.len() > 1 => {
                // One agent's record must not cost every other agent its lease: each is saved
                // on its own, and only the ones that fail again are lost (until their agent's
                // next heartbeat).
                tracing::warn!(%error, agents = records.len(), "saving heartbeats together failed; saving them one by one");
                for record in records {
                    if let Err(error) = self
                        .save_heartbeat_batch(std::slice::from_ref(record))
                        .await
                    {
                        tracing::warn!(%error, agent_id = record.agent_id.get(), "could not save an agent's heartbeat");
                    }
                }
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Stores the records in one transaction.
    async fn save_heartbeat_batch(&self, records: &[HeartbeatRecord]) -> Result<(), StoreError> {
        let transaction = self.begin_write().await?;
        for record in records {
            let figures = record.figures;
            agent::Entity::update_many()
                .col_expr(agent::Column::CpuPercent, Expr::value(figures.cpu_percent))
                .col_expr(
                    agent::Column::MemoryPercent,
                    Expr::value(figures.memory_percent),
                )
                .col_expr(
                    agent::Column::MemoryUsedBytes,
                    Expr::value(convert::to_i64(figures.memory_used_bytes)),
                )
                .col_expr(
                    agent::Column::MemoryTotalBytes,
                    Expr::value(convert::to_i64(figures.memory_total_bytes)),
                )
                .col_expr(
                    agent::Column::DiskFreeBytes,
                    Expr::value(convert::to_i64(figures.disk_free_bytes)),
                )
                .col_expr(
                    agent::Column::LoadAverage,
                    Expr::value(figures.load_average),
                )
                .col_expr(
                    agent::Column::RunningJobs,
                    Expr::value(convert::to_i32(figures.running_jobs)),
                )
                .col_expr(agent::Column::LastSeenAt, Expr::value(record.at))
                .filter(agent::Column::Id.eq(record.agent_id.get()))
                .filter(agent::Column::ConnectionId.eq(record.connection_id))
                .exec(&transaction)
                .await?;
            if !record.running.is_empty() {
                execution::Entity::update_many()
                    .col_expr(
                        execution::Column::LeaseExpiresAt,
                        Expr::value(record.lease_until),
                    )
                    .filter(execution::Column::CustomerId.eq(record.customer_id.get()))
                    .filter(execution::Column::AgentId.eq(record.agent_id.get()))
                    .filter(execution::Column::Id.is_in(record.running.iter().map(|id| id.get())))
                    .filter(
                        execution::Column::Status.is_in(
                            ExecutionStatus::ON_AGENT
                                .iter()
                                .map(|status| status.as_str()),
                        ),
                    )
                    .exec(&transaction)
                    .await?;
            }
        }
        let samples: Vec<agent_sample::ActiveModel> = records
            .iter()
            .filter(|record| record.sample)
            .map(|record| agent_sample::ActiveModel {
                customer_id: Set(record.customer_id.get()),
                agent_id: Set(record.agent_id.get()),
                sampled_at: Set(record.at),
                cpu_percent: Set(record.figures.cpu_percent),
                memory_percent: Set(record.figures.memory_percent),
                memory_used_bytes: Set(convert::to_i64(record.figures.memory_used_bytes)),
                memory_total_bytes: Set(convert::to_i64(record.figures.memory_total_bytes)),
                disk_free_bytes: Set(convert::to_i64(record.figures.disk_free_bytes)),
                load_average: Set(record.figures.load_average),
                running_jobs: Set(convert::to_i32(record.figures.running_jobs)),
                ..Default::default()
            })
            .collect();
        // Online time, per customer.
        let mut online: std::collections::BTreeMap<CustomerId, i64> = Default::default();
        for record in records {
            *online.entry(record.customer_id).or_default() += record.online_seconds;
        }
        let at = super::now();
        for (customer_id, seconds) in online {
            super::usage::add_usage(
                &transaction,
                customer_id,
                at,
                super::usage::UsageDelta {
                    agent_online_seconds: seconds,
                    ..Default::default()
                },
            )
            .await?;
        }
        // Bounded statements: SQLite allows at most 32766 bound parameters.
        for chunk in samples.chunks(500) {
            agent_sample::Entity::insert_many(chunk.to_vec())
                .exec(&transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Marks offline every agent still `online` whose last heartbeat is older than `cutoff`
    /// (its stream died with its server, or the server lost track). Returns how many.
    pub(crate) async fn sweep_stale_agents(
        &self,
        cutoff: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let stale = agent::Entity::find()
            .filter(agent::Column::Status.eq(AgentStatus::Online.as_str()))
            .filter(agent::Column::DeletedAt.is_null())
            .filter(
                Condition::any()
                    .add(agent::Column::LastSeenAt.lt(cutoff))
                    .add(agent::Column::LastSeenAt.is_null()),
            )
            .all(&self.db)
            .await?;
        let mut swept = 0;
        for row in stale {
            let transaction = self.begin_write().await?;
            let changed = agent::Entity::update_many()
                .col_expr(
                    agent::Column::Status,
                    Expr::value(AgentStatus::Offline.as_str()),
                )
                .col_expr(agent::Column::RunningJobs, Expr::value(0))
                .filter(agent::Column::Id.eq(row.id))
                .filter(agent::Column::Status.eq(AgentStatus::Online.as_str()))
                .filter(
                    Condition::any()
                        .add(agent::Column::LastSeenAt.lt(cutoff))
                        .add(agent::Column::LastSeenAt.is_null()),
                )
                .exec(&transaction)
                .await?
                .rows_affected
                == 1;
            if changed {
                activity::record(
                    &transaction,
                    CustomerId::from_db(row.customer_id),
                    offline_event(row.id, &row.name, "no heartbeat"),
                    at,
                )
                .await?;
                swept += 1;
            }
            transaction.commit().await?;
        }
        Ok(swept)
    }

    /// Deletes history samples taken before `before`. Returns how many.
    pub(crate) async fn prune_agent_samples(
        &self,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        Ok(agent_sample::Entity::delete_many()
            .filter(agent_sample::Column::SampledAt.lt(before))
            .exec(&self.writer)
            .await?
            .rows_affected)
    }
}
