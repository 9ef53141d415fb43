//! What dispatch and leases need: claiming a queued execution exactly once, giving a claim back,
//! renewing and expiring leases. These act for the system (through [`SystemStore`]), not for a
//! member, and each touches one execution by id (with the agent it is claimed for).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect};

use super::entities::{agent, execution};
use super::executions::{finished_event, skip_unfinished_steps, status_of};
use super::{Store, StoreError, SystemStore, activity, now, quotas};
use crate::auth::AuthenticatedAgent;
use crate::domain::execution::ExecutionStatus;
use crate::domain::{AgentId, CustomerId, ExecutionId, Quota, QuotaLimits};

/// An execution whose agent stopped renewing its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostExecution {
    pub id: ExecutionId,
    pub customer_id: CustomerId,
    pub agent_id: Option<AgentId>,
}

impl SystemStore {
    /// Claims each execution for its agent, all in one transaction: `queued → assigned` with a
    /// lease until `lease_until`, by one conditional update each, so among any number of
    /// dispatchers (and server replicas) exactly one wins an execution. On PostgreSQL each row is
    /// locked with `FOR UPDATE SKIP LOCKED` first, so contending replicas skip it instead of
    /// waiting. A customer's claims stop at its `running_executions` quota (counted under its
    /// quota lock, so replicas claiming at once cannot pass it together); the ones past it stay
    /// queued with a queue reason saying so. Returns, in order, whether each claim won.
    pub(crate) async fn claim_executions(
        &self,
        claims: &[(ExecutionId, CustomerId, AgentId)],
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let transaction = self.begin_write().await?;
        let assigned_at = now();
        // How many more each customer may run; customers in id order, so two transactions
        // taking the same customers' locks cannot wait on each other.
        let mut customers: Vec<CustomerId> = claims
            .iter()
            .map(|(_, customer_id, _)| *customer_id)
            .collect();
        customers.sort_unstable();
        customers.dedup();
        let mut room: HashMap<CustomerId, (i64, QuotaLimits, i64)> = HashMap::new();
        for customer_id in customers {
            quotas::hold_quotas(&transaction, customer_id).await?;
            let limits = self.store.quota_limits(&transaction, customer_id).await?;
            let running = quotas::used(&transaction, customer_id, Quota::RunningExecutions).await?;
            let left = limits.get(Quota::RunningExecutions) - running;
            room.insert(customer_id, (left, limits, running));
        }
        let mut won = Vec::with_capacity(claims.len());
        for (execution_id, customer_id, agent_id) in claims {
            if let Some((left, limits, running)) = room.get_mut(customer_id)
                && *left <= 0
            {
                let exceeded = limits
                    .check(*customer_id, Quota::RunningExecutions, *running, 1)
                    .err();
                if let Some(exceeded) = exceeded {
                    execution::Entity::update_many()
                        .col_expr(
                            execution::Column::QueueReason,
                            Expr::value(format!(
                                "waiting: the customer runs {} executions, its running_executions quota",
                                exceeded.limit
                            )),
                        )
                        .filter(execution::Column::Id.eq(execution_id.get()))
                        .filter(execution::Column::Status.eq(ExecutionStatus::Queued.as_str()))
                        .exec(&transaction)
                        .await?;
                    // Tells the customer (once per window); the claim just waits.
                    let _ = self.store.over_quota(exceeded);
                }
                won.push(false);
                continue;
            }
            if self.backend() == DbBackend::Postgres {
                let locked = execution::Entity::find_by_id(execution_id.get())
                    .filter(execution::Column::Status.eq(ExecutionStatus::Queued.as_str()))
                    .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
                    .one(&transaction)
                    .await?;
                if locked.is_none() {
                    won.push(false);
                    continue;
                }
            }
            let claimed = execution::Entity::update_many()
                .col_expr(
                    execution::Column::Status,
                    Expr::value(ExecutionStatus::Assigned.as_str()),
                )
                .col_expr(execution::Column::AgentId, Expr::value(agent_id.get()))
                .col_expr(execution::Column::AssignedAt, Expr::value(assigned_at))
                .col_expr(execution::Column::LeaseExpiresAt, Expr::value(lease_until))
                .col_expr(execution::Column::QueueReason, Expr::value(""))
                .filter(execution::Column::Id.eq(execution_id.get()))
                .filter(execution::Column::Status.eq(ExecutionStatus::Queued.as_str()))
                .exec(&transaction)
                .await?
                .rows_affected
                == 1;
            if claimed && let Some((left, _, running)) = room.get_mut(customer_id) {
                *left -= 1;
                *running += 1;
            }
            won.push(claimed);
        }
        transaction.commit().await?;
        Ok(won)
    }

    /// Puts an execution the agent never received back in the queue.
    pub(crate) async fn release_claim(
        &self,
        customer_id: CustomerId,
        execution_id: ExecutionId,
        agent_id: AgentId,
    ) -> Result<bool, StoreError> {
        let released = execution::Entity::update_many()
            .col_expr(
                execution::Column::Status,
                Expr::value(ExecutionStatus::Queued.as_str()),
            )
            .col_expr(execution::Column::AgentId, Expr::value(Option::<i64>::None))
            .col_expr(
                execution::Column::AssignedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                execution::Column::LeaseExpiresAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(execution::Column::Id.eq(execution_id.get()))
            .filter(execution::Column::CustomerId.eq(customer_id.get()))
            .filter(execution::Column::AgentId.eq(agent_id.get()))
            .filter(execution::Column::Status.eq(ExecutionStatus::Assigned.as_str()))
            .exec(&self.writer)
            .await?
            .rows_affected
            == 1;
        Ok(released)
    }

    /// Records why queued executions wait (only while they are queued): one transaction, one
    /// statement per distinct reason.
    pub(crate) async fn set_queue_reasons(
        &self,
        reasons: &[(ExecutionId, String)],
    ) -> Result<(), StoreError> {
        let mut by_reason: HashMap<&str, Vec<i64>> = HashMap::new();
        for (execution_id, reason) in reasons {
            by_reason
                .entry(reason.as_str())
                .or_default()
                .push(execution_id.get());
        }
        let transaction = self.begin_write().await?;
        for (reason, ids) in by_reason {
            execution::Entity::update_many()
                .col_expr(execution::Column::QueueReason, Expr::value(reason))
                .filter(execution::Column::Id.is_in(ids))
                .filter(execution::Column::Status.eq(ExecutionStatus::Queued.as_str()))
                .exec(&transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Executions on agents whose lease ran out.
    pub(crate) async fn expired_leases(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<LostExecution>, StoreError> {
        let rows = execution::Entity::find()
            .filter(
                execution::Column::Status.is_in(
                    ExecutionStatus::ON_AGENT
                        .iter()
                        .map(|status| status.as_str()),
                ),
            )
            .filter(execution::Column::LeaseExpiresAt.lt(at))
            .limit(500)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| LostExecution {
                id: ExecutionId::from_db(row.id),
                customer_id: CustomerId::from_db(row.customer_id),
                agent_id: row.agent_id.map(AgentId::from_db),
            })
            .collect())
    }

    /// Ends an execution whose agent is gone: `failed` with reason `agent_lost` (or `cancelled`
    /// when a cancellation was already asked), if its lease is still expired. Returns the final
    /// status when it changed.
    pub(crate) async fn end_lost_execution(
        &self,
        lost: &LostExecution,
        at: DateTime<Utc>,
    ) -> Result<Option<ExecutionStatus>, StoreError> {
        self.end_on_agent(lost.id, lost.customer_id, at, true, |row| {
            if row.cancel_requested_at.is_some() {
                (
                    ExecutionStatus::Cancelled,
                    format!("{} (agent lost)", row.cancel_reason),
                )
            } else {
                (ExecutionStatus::Failed, "agent_lost".to_owned())
            }
        })
        .await
    }

    /// Fails a claimed execution that cannot be delivered (e.g. a secret it needs does not open
    /// with the server's keys), with `reason`. Returns whether it changed.
    pub(crate) async fn fail_undeliverable(
        &self,
        execution_id: ExecutionId,
        customer_id: CustomerId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(self
            .end_on_agent(execution_id, customer_id, at, false, |_| {
                (ExecutionStatus::Failed, reason.to_owned())
            })
            .await?
            .is_some())
    }

    /// Ends an execution that is on (or assigned to) an agent with the status and reason
    /// `decide` gives, its unfinished steps skipped and an activity event; only when its lease
    /// has expired if `lease_expired_only`.
    async fn end_on_agent(
        &self,
        execution_id: ExecutionId,
        customer_id: CustomerId,
        at: DateTime<Utc>,
        lease_expired_only: bool,
        decide: impl FnOnce(&execution::Model) -> (ExecutionStatus, String),
    ) -> Result<Option<ExecutionStatus>, StoreError> {
        let transaction = self.begin_write().await?;
        let Some(row) = execution::Entity::find_by_id(execution_id.get())
            .filter(execution::Column::CustomerId.eq(customer_id.get()))
            .one(&transaction)
            .await?
        else {
            return Ok(None);
        };
        let (status, reason) = decide(&row);
        let mut update = execution::Entity::update_many()
            .col_expr(execution::Column::Status, Expr::value(status.as_str()))
            .col_expr(
                execution::Column::FailureReason,
                Expr::value(reason.as_str()),
            )
            .col_expr(execution::Column::FinishedAt, Expr::value(at))
            .col_expr(
                execution::Column::LeaseExpiresAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(execution::Column::Id.eq(row.id))
            .filter(
                execution::Column::Status.is_in(
                    ExecutionStatus::ON_AGENT
                        .iter()
                        .map(|status| status.as_str()),
                ),
            );
        if lease_expired_only {
            update = update.filter(execution::Column::LeaseExpiresAt.lt(at));
        }
        let changed = update.exec(&transaction).await?.rows_affected == 1;
        if !changed {
            return Ok(None);
        }
        skip_unfinished_steps(&transaction, customer_id, row.id, &reason, at).await?;
        super::usage::add_usage(
            &transaction,
            customer_id,
            at,
            super::usage::UsageDelta::execution_ended(status, row.started_at, at),
        )
        .await?;
        let agent_name = match row.agent_id {
            Some(agent_id) => agent::Entity::find_by_id(agent_id)
                .one(&transaction)
                .await?
                .map(|agent| agent.name),
            None => None,
        };
        activity::record(
            &transaction,
            customer_id,
            finished_event(&row, status, &reason, agent_name.as_deref()),
            at,
        )
        .await?;
        transaction.commit().await?;
        Ok(Some(status))
    }
}

impl SystemStore {
    /// Every cancellation requested of an execution still on an agent, with that agent: one
    /// query however many agents are connected (executions on agents are bounded by their
    /// slots, and the ones being cancelled are fewer still).
    pub(crate) async fn pending_cancellations(
        &self,
    ) -> Result<Vec<(AgentId, ExecutionId, String)>, StoreError> {
        Ok(execution::Entity::find()
            .select_only()
            .column(execution::Column::AgentId)
            .column(execution::Column::Id)
            .column(execution::Column::CancelReason)
            .filter(
                execution::Column::Status.is_in(
                    ExecutionStatus::ON_AGENT
                        .iter()
                        .map(|status| status.as_str()),
                ),
            )
            .filter(execution::Column::CancelRequestedAt.is_not_null())
            .filter(execution::Column::AgentId.is_not_null())
            .into_tuple::<(i64, i64, String)>()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|(agent_id, id, reason)| {
                (AgentId::from_db(agent_id), ExecutionId::from_db(id), reason)
            })
            .collect())
    }
}

impl Store {
    /// The executions assigned to or running on an agent, with whether a cancellation was asked.
    pub async fn executions_on_agent(
        &self,
        agent: &AuthenticatedAgent,
    ) -> Result<Vec<(ExecutionId, ExecutionStatus, Option<DateTime<Utc>>, String)>, StoreError>
    {
        let rows = execution::Entity::find()
            .filter(execution::Column::CustomerId.eq(agent.customer_id().get()))
            .filter(execution::Column::AgentId.eq(agent.agent_id().get()))
            .filter(
                execution::Column::Status.is_in(
                    ExecutionStatus::ON_AGENT
                        .iter()
                        .map(|status| status.as_str()),
                ),
            )
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|row| {
                let status = status_of(&row)?;
                let cancel = if row.cancel_requested_at.is_some() {
                    row.cancel_reason.clone()
                } else {
                    String::new()
                };
                Ok((
                    ExecutionId::from_db(row.id),
                    status,
                    row.assigned_at,
                    cancel,
                ))
            })
            .collect()
    }
}
