//! Service monitors: definitions, latest status, check history.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::entities::{monitor, monitor_result};
use super::error::corrupt;
use super::pipelines::{check_selector_agent, labels_from_json, to_json};
use super::{Store, StoreError, SystemStore, now};
use crate::auth::TenantScope;
use crate::domain::monitor::{
    Monitor, MonitorCheckResult, MonitorKind, MonitorPatch, MonitorSettings, MonitorStatus,
};
use crate::domain::pipeline::AgentSelector;
use crate::domain::{AgentId, CustomerId, MonitorId, Page, PageRequest, UserId};

pub(super) fn settings_from_row(row: &monitor::Model) -> Result<MonitorSettings, StoreError> {
    Ok(MonitorSettings {
        name: row.name.clone(),
        kind: MonitorKind::from_db(&row.kind).ok_or_else(|| corrupt("monitor kind", &row.kind))?,
        target: row.target.clone(),
        interval_seconds: row.interval_seconds,
        timeout_ms: row.timeout_ms,
        warning_threshold_ms: row.warning_threshold_ms,
        expected_status: row.expected_status,
        selector: AgentSelector {
            agent_id: row.selector_agent_id.map(AgentId::from_db),
            labels: labels_from_json(row.selector_labels.clone())?,
        },
    })
}

pub(super) fn status_from_db(value: &str) -> Result<MonitorStatus, StoreError> {
    MonitorStatus::from_db(value).ok_or_else(|| corrupt("monitor status", value))
}

fn monitor_from_row(row: monitor::Model, uptime: f64) -> Result<Monitor, StoreError> {
    Ok(Monitor {
        id: MonitorId::from_db(row.id),
        customer_id: CustomerId::from_db(row.customer_id),
        settings: settings_from_row(&row)?,
        status: status_from_db(&row.status)?,
        last_response_ms: row.last_response_ms,
        last_checked_at: row.last_checked_at,
        last_message: row.last_message,
        uptime_percent_24h: uptime,
        assigned_agent_id: row.assigned_agent_id.map(AgentId::from_db),
        created_by: UserId::from_db(row.created_by),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// The share of the last 24 hours' checks that were up, per monitor, in one query.
async fn uptimes(
    db: &impl ConnectionTrait,
    monitor_ids: &[i64],
) -> Result<HashMap<i64, f64>, StoreError> {
    if monitor_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let up = Expr::case(
        Expr::col(monitor_result::Column::Status).is_in([
            MonitorStatus::Healthy.as_str(),
            MonitorStatus::Warning.as_str(),
        ]),
        1,
    )
    .finally(0);
    let query = Query::select()
        .column(monitor_result::Column::MonitorId)
        .expr_as(Func::count(Expr::col(monitor_result::Column::Id)), "total")
        .expr_as(Func::sum(up), "up")
        .from(monitor_result::Entity)
        .and_where(monitor_result::Column::MonitorId.is_in(monitor_ids.iter().copied()))
        .and_where(monitor_result::Column::CheckedAt.gte(now() - chrono::Duration::hours(24)))
        .group_by_col(monitor_result::Column::MonitorId)
        .to_owned();
    let mut result = HashMap::new();
    for row in db.query_all(&query).await? {
        let monitor_id: i64 = row.try_get("", "monitor_id")?;
        let total: i64 = row.try_get("", "total")?;
        // SUM is NUMERIC on PostgreSQL and INTEGER on SQLite.
        let up: i64 = row
            .try_get::<i64>("", "up")
            .or_else(|_| {
                row.try_get::<sea_orm::prelude::Decimal>("", "up")
                    .map(|value| value.try_into().unwrap_or(0))
            })
            .unwrap_or(0);
        if total > 0 {
            result.insert(monitor_id, (up as f64) * 100.0 / (total as f64));
        }
    }
    Ok(result)
}

async fn find_monitor(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    monitor_id: MonitorId,
) -> Result<monitor::Model, StoreError> {
    monitor::Entity::find_by_id(monitor_id.get())
        .filter(monitor::Column::CustomerId.eq(customer_id.get()))
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("monitor {monitor_id} not found")))
}

async fn load(
    db: &impl ConnectionTrait,
    customer_id: CustomerId,
    monitor_id: MonitorId,
) -> Result<Monitor, StoreError> {
    let row = find_monitor(db, customer_id, monitor_id).await?;
    let uptime = uptimes(db, &[row.id])
        .await?
        .get(&row.id)
        .copied()
        .unwrap_or(0.0);
    monitor_from_row(row, uptime)
}

fn duplicate(name: &str) -> impl FnOnce(&str) -> String + '_ {
    move |_| format!("a monitor named {name:?} already exists")
}

impl Store {
    /// Adds a monitor (status unknown, not yet assigned to an agent).
    pub async fn create_monitor(
        &self,
        scope: &TenantScope,
        settings: MonitorSettings,
    ) -> Result<Monitor, StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        self.admit_one_more(&transaction, customer_id, crate::domain::Quota::Monitors)
            .await?;
        check_selector_agent(
            &transaction,
            customer_id,
            settings.selector.agent_id,
            "agent_selector.agent_id",
        )
        .await?;
        let at = now();
        let row = monitor::ActiveModel {
            customer_id: Set(customer_id.get()),
            name: Set(settings.name.clone()),
            kind: Set(settings.kind.as_str().to_owned()),
            target: Set(settings.target.clone()),
            interval_seconds: Set(settings.interval_seconds),
            timeout_ms: Set(settings.timeout_ms),
            warning_threshold_ms: Set(settings.warning_threshold_ms),
            expected_status: Set(settings.expected_status),
            selector_agent_id: Set(settings.selector.agent_id.map(AgentId::get)),
            selector_labels: Set(to_json(&settings.selector.labels)),
            status: Set(MonitorStatus::Unknown.as_str().to_owned()),
            last_response_ms: Set(0),
            last_checked_at: Set(None),
            last_message: Set(String::new()),
            assigned_agent_id: Set(None),
            created_by: Set(scope.actor().get()),
            created_at: Set(at),
            updated_at: Set(at),
            ..Default::default()
        }
        .insert(&transaction)
        .await
        .map_err(|error| StoreError::on_unique_violation(error, duplicate(&settings.name)))?;
        transaction.commit().await?;
        monitor_from_row(row, 0.0)
    }

    /// One monitor of the scope's customer.
    pub async fn get_monitor(
        &self,
        scope: &TenantScope,
        monitor_id: MonitorId,
    ) -> Result<Monitor, StoreError> {
        load(&self.db, scope.customer_id(), monitor_id).await
    }

    /// The scope's monitors by id, optionally only those with one status.
    pub async fn list_monitors(
        &self,
        scope: &TenantScope,
        status: Option<MonitorStatus>,
        page: PageRequest,
    ) -> Result<Page<Monitor>, StoreError> {
        let mut query = monitor::Entity::find()
            .filter(monitor::Column::CustomerId.eq(scope.customer_id().get()));
        if let Some(status) = status {
            query = query.filter(monitor::Column::Status.eq(status.as_str()));
        }
        if let Some(after) = page.after {
            query = query.filter(monitor::Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(monitor::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        let uptime = uptimes(&self.db, &ids).await?;
        Page::from_rows(rows, page, |row| row.id).try_map(|row| {
            let value = uptime.get(&row.id).copied().unwrap_or(0.0);
            monitor_from_row(row, value)
        })
    }

    /// Changes a monitor. Returns it and whether its agent's copy of the check changed.
    pub async fn update_monitor(
        &self,
        scope: &TenantScope,
        monitor_id: MonitorId,
        patch: MonitorPatch,
    ) -> Result<(Monitor, bool), StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let row = find_monitor(&transaction, customer_id, monitor_id).await?;
        let before = settings_from_row(&row)?;
        let selector_changed = patch.selector.is_some();
        let after = before
            .patched(patch)
            .map_err(|error| StoreError::InvalidArgument(error.to_string()))?;
        if selector_changed {
            check_selector_agent(
                &transaction,
                customer_id,
                after.selector.agent_id,
                "agent_selector.agent_id",
            )
            .await?;
        }
        let mut active: monitor::ActiveModel = row.into();
        active.name = Set(after.name.clone());
        active.target = Set(after.target.clone());
        active.interval_seconds = Set(after.interval_seconds);
        active.timeout_ms = Set(after.timeout_ms);
        active.warning_threshold_ms = Set(after.warning_threshold_ms);
        active.expected_status = Set(after.expected_status);
        active.selector_agent_id = Set(after.selector.agent_id.map(AgentId::get));
        active.selector_labels = Set(to_json(&after.selector.labels));
        if !before.same_check(&after) {
            // Results of the old check say nothing about the new one.
            active.status = Set(MonitorStatus::Unknown.as_str().to_owned());
            active.last_message = Set(String::new());
        }
        active.updated_at = Set(now());
        active
            .update(&transaction)
            .await
            .map_err(|error| StoreError::on_unique_violation(error, duplicate(&after.name)))?;
        let monitor = load(&transaction, customer_id, monitor_id).await?;
        transaction.commit().await?;
        Ok((monitor, !before.same_check(&after) || selector_changed))
    }

    /// Deletes a monitor with its history. Returns the agent that ran it, if any.
    pub async fn delete_monitor(
        &self,
        scope: &TenantScope,
        monitor_id: MonitorId,
    ) -> Result<Option<AgentId>, StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let row = find_monitor(&transaction, customer_id, monitor_id).await?;
        monitor_result::Entity::delete_many()
            .filter(monitor_result::Column::CustomerId.eq(customer_id.get()))
            .filter(monitor_result::Column::MonitorId.eq(row.id))
            .exec(&transaction)
            .await?;
        monitor::Entity::delete_by_id(row.id)
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(row.assigned_agent_id.map(AgentId::from_db))
    }

    /// A monitor's results checked in `[start, end)`, newest first; the page token is the id of
    /// the last result seen.
    pub async fn monitor_history(
        &self,
        scope: &TenantScope,
        monitor_id: MonitorId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        page: PageRequest,
    ) -> Result<Page<MonitorCheckResult>, StoreError> {
        let row = find_monitor(&self.db, scope.customer_id(), monitor_id).await?;
        let mut query = monitor_result::Entity::find()
            .filter(monitor_result::Column::CustomerId.eq(row.customer_id))
            .filter(monitor_result::Column::MonitorId.eq(row.id))
            .filter(monitor_result::Column::CheckedAt.gte(start))
            .filter(monitor_result::Column::CheckedAt.lt(end));
        if let Some(before) = page.after {
            query = query.filter(monitor_result::Column::Id.lt(before));
        }
        let rows = query
            .order_by_desc(monitor_result::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        Page::from_rows(rows, page, |row| row.id).try_map(|row| {
            Ok(MonitorCheckResult {
                id: row.id,
                checked_at: row.checked_at,
                status: status_from_db(&row.status)?,
                response_ms: row.response_ms,
                http_status: row.http_status,
                message: row.message,
                agent_id: row.agent_id.map(AgentId::from_db),
            })
        })
    }
}

impl SystemStore {
    /// Deletes check results older than `before`; returns how many.
    pub(crate) async fn prune_monitor_results(
        &self,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        Ok(monitor_result::Entity::delete_many()
            .filter(monitor_result::Column::CheckedAt.lt(before))
            .exec(&self.writer)
            .await?
            .rows_affected)
    }
}
