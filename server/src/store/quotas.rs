//! Quotas in the store: the limits in force for a customer (platform defaults, overridden per
//! customer), the counts they bound, and the checks that run inside the transaction writing what
//! a quota limits — so that counting and writing are one step, exact under concurrency.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sea_orm::sea_query::{Expr, ExprTrait, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect,
};

use super::entities::{
    agent, customer, customer_quota, customer_storage, execution, invitation, monitor, pipeline,
    pipeline_schedule, registration_token, variable_group, webhook,
};
use super::{Store, StoreError, activity, now};
use crate::auth::{PlatformAdmin, TenantScope};
use crate::domain::execution::ExecutionStatus;
use crate::domain::quota::QuotaUse;
use crate::domain::{CustomerId, NewActivity, Quota, QuotaExceeded, QuotaLimits};

/// How often a customer is told, in its activity, that one quota blocked work.
const NOTICE_EVERY: Duration = Duration::from_secs(600);

/// The limits a customer runs under: `defaults` with its overrides.
pub(super) async fn limits_of(
    db: &impl ConnectionTrait,
    defaults: &QuotaLimits,
    customer_id: CustomerId,
) -> Result<QuotaLimits, StoreError> {
    let mut limits = defaults.clone();
    for row in customer_quota::Entity::find()
        .filter(customer_quota::Column::CustomerId.eq(customer_id.get()))
        .all(db)
        .await?
    {
        if let Some(quota) = Quota::from_name(&row.quota) {
            limits.set(quota, row.limit_value);
        }
    }
    Ok(limits)
}

/// Makes the rest of the transaction the only one counting against the customer's quotas: on
/// PostgreSQL its customer row is locked until the transaction ends (SQLite's write
/// transactions exclude each other already). `FOR NO KEY UPDATE`, not `FOR UPDATE`: every
/// insert of a row referencing the customer (an execution, an activity event, an audit entry)
/// holds `FOR KEY SHARE` on it for its foreign key, which `FOR UPDATE` conflicts with: the quota
/// lock and those foreign-key locks formed cycles, and the two-replica throughput run lost
/// job-event batches and audit groups to PostgreSQL's deadlock detector (BENCHMARKS.md).
/// `FOR NO KEY UPDATE` still excludes other quota holders.
pub(super) async fn hold_quotas(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
) -> Result<(), StoreError> {
    if db.get_database_backend() == DbBackend::Postgres {
        customer::Entity::find_by_id(customer_id.get())
            .select_only()
            .column(customer::Column::Id)
            .lock(LockType::NoKeyUpdate)
            .into_tuple::<i64>()
            .one(db)
            .await?;
    }
    Ok(())
}

/// What the customer holds now of a quota that bounds a count or a total.
pub(super) async fn used(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    quota: Quota,
) -> Result<i64, StoreError> {
    let customer = customer_id.get();
    let count = |count: u64| i64::try_from(count).unwrap_or(i64::MAX);
    Ok(match quota {
        Quota::QueuedExecutions | Quota::RunningExecutions => {
            let statuses: Vec<&str> = if quota == Quota::QueuedExecutions {
                vec![ExecutionStatus::Queued.as_str()]
            } else {
                ExecutionStatus::ON_AGENT
                    .iter()
                    .map(|status| status.as_str())
                    .collect()
            };
            count(
                execution::Entity::find()
                    .filter(execution::Column::CustomerId.eq(customer))
                    .filter(execution::Column::Status.is_in(statuses))
                    .count(db)
                    .await?,
            )
        }
        Quota::Pipelines => count(
            pipeline::Entity::find()
                .filter(pipeline::Column::CustomerId.eq(customer))
                .filter(pipeline::Column::DeletedAt.is_null())
                .count(db)
                .await?,
        ),
        Quota::Agents => count(
            agent::Entity::find()
                .filter(agent::Column::CustomerId.eq(customer))
                .filter(agent::Column::DeletedAt.is_null())
                .count(db)
                .await?,
        ),
        Quota::Monitors => count(
            monitor::Entity::find()
                .filter(monitor::Column::CustomerId.eq(customer))
                .count(db)
                .await?,
        ),
        Quota::VariableGroups => count(
            variable_group::Entity::find()
                .filter(variable_group::Column::CustomerId.eq(customer))
                .count(db)
                .await?,
        ),
        Quota::LogBytesStored | Quota::ArtifactBytesStored => {
            let row = customer_storage::Entity::find_by_id(customer)
                .one(db)
                .await?;
            row.map_or(0, |row| {
                if quota == Quota::LogBytesStored {
                    row.log_bytes
                } else {
                    row.artifact_bytes
                }
            })
        }
        Quota::OpenInvitations => count(
            invitation::Entity::find()
                .filter(invitation::Column::CustomerId.eq(customer))
                .filter(invitation::Column::ExpiresAt.gt(super::now()))
                .count(db)
                .await?,
        ),
        Quota::Schedules => count(
            pipeline_schedule::Entity::find()
                .filter(pipeline_schedule::Column::CustomerId.eq(customer))
                .count(db)
                .await?,
        ),
        Quota::Webhooks => count(
            webhook::Entity::find()
                .filter(webhook::Column::CustomerId.eq(customer))
                .count(db)
                .await?,
        ),
        Quota::RegistrationTokens => count(
            registration_token::Entity::find()
                .filter(registration_token::Column::CustomerId.eq(customer))
                .filter(super::registration_tokens::live(super::now()))
                .count(db)
                .await?,
        ),
        Quota::PipelineDefinitionBytes
        | Quota::StepsPerPipeline
        | Quota::LogBytesPerExecution
        | Quota::ArtifactBytesPerExecution
        | Quota::WatchStreamsPerCaller
        | Quota::LogRetentionDays
        | Quota::ArtifactRetentionDays
        | Quota::ExecutionRetentionDays => 0,
    })
}

/// Adds `bytes` to a stored-bytes counter of the customer (`LogBytesStored` or
/// `ArtifactBytesStored`) if that stays within `limit`, in one conditional update; false when it
/// would not. Exact under concurrency without any other lock.
pub(super) async fn add_stored_bytes(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    quota: Quota,
    bytes: i64,
    limit: i64,
) -> Result<bool, StoreError> {
    let column = match quota {
        Quota::LogBytesStored => customer_storage::Column::LogBytes,
        _ => customer_storage::Column::ArtifactBytes,
    };
    let changed = customer_storage::Entity::update_many()
        .col_expr(column, Expr::col(column).add(bytes))
        .filter(customer_storage::Column::CustomerId.eq(customer_id.get()))
        .filter(Expr::col(column).add(bytes).lte(limit))
        .exec(db)
        .await?
        .rows_affected;
    Ok(changed == 1)
}

/// The counters of a new customer.
pub(super) async fn create_storage(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
) -> Result<(), StoreError> {
    customer_storage::Entity::insert(customer_storage::ActiveModel {
        customer_id: Set(customer_id.get()),
        log_bytes: Set(0),
        artifact_bytes: Set(0),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// How long after a refusal a request of the same customer is checked against the quota before
/// it takes the write lock.
const PRECHECK_AFTER_REFUSAL: Duration = Duration::from_secs(2);

/// When each customer was last told that a quota blocked its work, and last refused (this
/// server only).
#[derive(Default)]
pub(super) struct QuotaNotices {
    last: Mutex<HashMap<(CustomerId, Quota), Instant>>,
    refused: Mutex<HashMap<(CustomerId, Quota), Instant>>,
}

impl QuotaNotices {
    fn mark_refused(&self, customer_id: CustomerId, quota: Quota) {
        let mut refused = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if refused.len() > 4096 {
            refused.retain(|_, at| now.duration_since(*at) < PRECHECK_AFTER_REFUSAL);
        }
        refused.insert((customer_id, quota), now);
    }

    fn refused_recently(&self, customer_id: CustomerId, quota: Quota) -> bool {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(customer_id, quota))
            .is_some_and(|at| at.elapsed() < PRECHECK_AFTER_REFUSAL)
    }

    /// Whether to tell the customer now (not told within [`NOTICE_EVERY`]).
    fn due(&self, customer_id: CustomerId, quota: Quota) -> bool {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        // Forget old notices, so the map holds only the last window's.
        if last.len() > 4096 {
            last.retain(|_, at| now.duration_since(*at) < NOTICE_EVERY);
        }
        match last.get(&(customer_id, quota)) {
            Some(at) if now.duration_since(*at) < NOTICE_EVERY => false,
            _ => {
                last.insert((customer_id, quota), now);
                true
            }
        }
    }
}

impl Store {
    /// Holds the customer's quotas for the rest of `db`'s transaction ([`hold_quotas`]) and
    /// refuses one more of the counted `quota`; returns the limits in force, for further checks.
    pub(super) async fn admit_one_more(
        &self,
        db: &impl ConnectionTrait,
        customer_id: CustomerId,
        quota: Quota,
    ) -> Result<QuotaLimits, StoreError> {
        hold_quotas(db, customer_id).await?;
        let limits = limits_of(db, &self.quota_defaults, customer_id).await?;
        self.admit_one_more_within(db, customer_id, quota, &limits)
            .await?;
        Ok(limits)
    }

    /// [`admit_one_more`](Self::admit_one_more) against limits the caller read before it took
    /// the write lock (a limit changed meanwhile applies from the next call); only the count is
    /// read under the lock.
    pub(super) async fn admit_one_more_within(
        &self,
        db: &impl ConnectionTrait,
        customer_id: CustomerId,
        quota: Quota,
        limits: &QuotaLimits,
    ) -> Result<(), StoreError> {
        hold_quotas(db, customer_id).await?;
        let used = used(db, customer_id, quota).await?;
        limits
            .check(customer_id, quota, used, 1)
            .map_err(|exceeded| self.over_quota(exceeded))
    }

    /// For a customer refused `quota` a moment ago, refuses one more of it again from a read,
    /// before the caller takes the write lock: a customer hammering a full quota then costs
    /// reads, not turns at the lock everyone's writes queue for. (The check in the write
    /// transaction stays the exact one.)
    pub(super) async fn precheck_one_more(
        &self,
        customer_id: CustomerId,
        quota: Quota,
    ) -> Result<(), StoreError> {
        if !self.quota_notices.refused_recently(customer_id, quota) {
            return Ok(());
        }
        let limits = limits_of(&self.db, &self.quota_defaults, customer_id).await?;
        let used = used(&self.db, customer_id, quota).await?;
        limits
            .check(customer_id, quota, used, 1)
            .map_err(|exceeded| self.over_quota(exceeded))
    }

    /// The limits in force for a customer.
    pub(super) async fn quota_limits(
        &self,
        db: &impl ConnectionTrait,
        customer_id: CustomerId,
    ) -> Result<QuotaLimits, StoreError> {
        limits_of(db, &self.quota_defaults, customer_id).await
    }

    /// The error for a quota refusal. The customer's activity says so too (at most once per
    /// quota and window), written by a task of its own once the refused transaction has ended.
    pub(super) fn over_quota(&self, exceeded: QuotaExceeded) -> StoreError {
        self.quota_notices
            .mark_refused(exceeded.customer_id, exceeded.quota);
        let store = self.clone();
        let notice = exceeded.clone();
        tokio::spawn(async move { store.notice_quota(&notice).await });
        StoreError::QuotaExceeded(exceeded)
    }

    /// Records a `quota.exceeded` activity event for the customer, at most once per quota and
    /// window.
    pub(crate) async fn notice_quota(&self, exceeded: &QuotaExceeded) {
        if !self.quota_notices.due(exceeded.customer_id, exceeded.quota) {
            return;
        }
        let event = NewActivity {
            kind: "quota.exceeded",
            subject_type: "customer",
            subject_id: exceeded.customer_id.get(),
            message: format!(
                "Quota {} reached (limit {}): work was refused",
                exceeded.quota, exceeded.limit
            ),
            actor: None,
        };
        let recorded = async {
            let transaction = self.begin_write().await?;
            activity::record(&transaction, exceeded.customer_id, event, now()).await?;
            transaction.commit().await?;
            Ok::<(), StoreError>(())
        };
        if let Err(error) = recorded.await {
            tracing::warn!(%error, customer_id = exceeded.customer_id.get(), "could not record a quota notice");
        }
    }

    /// The limit of one quota in force for the scope's customer.
    pub async fn quota_limit(&self, scope: &TenantScope, quota: Quota) -> Result<i64, StoreError> {
        Ok(
            limits_of(&self.db, &self.quota_defaults, scope.customer_id())
                .await?
                .get(quota),
        )
    }

    /// The quotas of the scope's customer: each limit in force, whether it is the customer's own,
    /// and what the customer uses now.
    pub async fn customer_quotas(&self, scope: &TenantScope) -> Result<Vec<QuotaUse>, StoreError> {
        quota_uses(&self.db, &self.quota_defaults, scope.customer_id()).await
    }

    /// Sets (`set`) and removes (`reset`, back to the platform default) a customer's own limits,
    /// all or nothing; returns the quotas as they are then.
    pub async fn set_customer_quotas(
        &self,
        admin: &PlatformAdmin,
        customer_id: CustomerId,
        set: &[(Quota, i64)],
        reset: &[Quota],
    ) -> Result<Vec<QuotaUse>, StoreError> {
        let transaction = self.begin_write().await?;
        if customer::Entity::find_by_id(customer_id.get())
            .one(&transaction)
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound(format!(
                "customer {customer_id} not found"
            )));
        }
        let at = now();
        for quota in reset {
            customer_quota::Entity::delete_many()
                .filter(customer_quota::Column::CustomerId.eq(customer_id.get()))
                .filter(customer_quota::Column::Quota.eq(quota.name()))
                .exec(&transaction)
                .await?;
        }
        for (quota, limit) in set {
            customer_quota::Entity::delete_many()
                .filter(customer_quota::Column::CustomerId.eq(customer_id.get()))
                .filter(customer_quota::Column::Quota.eq(quota.name()))
                .exec(&transaction)
                .await?;
            customer_quota::Entity::insert(customer_quota::ActiveModel {
                customer_id: Set(customer_id.get()),
                quota: Set(quota.name().to_owned()),
                limit_value: Set(*limit),
                updated_by: Set(admin.actor().get()),
                updated_at: Set(at),
            })
            .exec_without_returning(&transaction)
            .await?;
        }
        let uses = quota_uses(&transaction, &self.quota_defaults, customer_id).await?;
        transaction.commit().await?;
        Ok(uses)
    }
}

async fn quota_uses(
    db: &impl ConnectionTrait,
    defaults: &QuotaLimits,
    customer_id: CustomerId,
) -> Result<Vec<QuotaUse>, StoreError> {
    let overrides: HashMap<String, i64> = customer_quota::Entity::find()
        .filter(customer_quota::Column::CustomerId.eq(customer_id.get()))
        .all(db)
        .await?
        .into_iter()
        .map(|row| (row.quota, row.limit_value))
        .collect();
    let mut uses = Vec::with_capacity(Quota::ALL.len());
    for quota in Quota::ALL {
        let own = overrides.get(quota.name()).copied();
        uses.push(QuotaUse {
            quota,
            limit: own.unwrap_or_else(|| defaults.get(quota)),
            used: if quota.has_use() {
                Some(used(db, customer_id, quota).await?)
            } else {
                None
            },
            overridden: own.is_some(),
        });
    }
    Ok(uses)
}
