//! Pipeline schedules: kept per customer within the `schedules` quota, and fired by the
//! scheduler. A tick is claimed by moving `next_run_at` forward in the same transaction that
//! queues its run, on the condition that it still holds the tick claimed: of replicas firing
//! the same tick, one moves it and the others find nothing to move.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};

use super::entities::pipeline_schedule;
use super::executions::insert_execution;
use super::pipelines::{load_pipeline, to_json};
use super::{Store, StoreError, SystemStore, now};
use crate::auth::TenantScope;
use crate::domain::execution::Trigger;
use crate::domain::pipeline::resolve_parameters;
use crate::domain::schedule::{CronSchedule, NewSchedule, Schedule};
use crate::domain::{
    CustomerId, ExecutionId, Page, PageRequest, PipelineId, Quota, ScheduleId, UserId,
};

impl TryFrom<pipeline_schedule::Model> for Schedule {
    type Error = StoreError;

    fn try_from(row: pipeline_schedule::Model) -> Result<Self, StoreError> {
        Ok(Schedule {
            id: ScheduleId::from_db(row.id),
            customer_id: CustomerId::from_db(row.customer_id),
            pipeline_id: PipelineId::from_db(row.pipeline_id),
            parameters: serde_json::from_value(row.parameters)
                .map_err(|error| StoreError::Internal(sea_orm::DbErr::Json(error.to_string())))?,
            cron: row.cron,
            time_zone: row.time_zone,
            enabled: row.enabled,
            next_run_at: row.next_run_at,
            last_run_at: row.last_run_at,
            last_execution_id: row.last_execution_id,
            last_error: row.last_error,
            created_by: UserId::from_db(row.created_by),
            created_at: row.created_at,
        })
    }
}

/// What changes in a schedule.
#[derive(Debug, Clone, Default)]
pub struct SchedulePatch {
    pub cron: Option<String>,
    pub time_zone: Option<String>,
    pub parameters: Option<BTreeMap<String, String>>,
    pub enabled: Option<bool>,
}

/// What one tick of a schedule came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// Another replica fired this tick (or the schedule changed since it was read).
    Taken,
    /// A run was queued.
    Queued(ExecutionId),
    /// Nothing was queued, for this reason (recorded on the schedule).
    Skipped(String),
}

async fn find(
    db: &impl sea_orm::ConnectionTrait,
    customer_id: CustomerId,
    schedule_id: ScheduleId,
) -> Result<pipeline_schedule::Model, StoreError> {
    pipeline_schedule::Entity::find_by_id(schedule_id.get())
        .filter(pipeline_schedule::Column::CustomerId.eq(customer_id.get()))
        .one(db)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("schedule {schedule_id} not found")))
}

/// The parameters a run of `pipeline` would get from `parameters`, or why they do not fit.
fn check_parameters(
    pipeline: &crate::domain::pipeline::Pipeline,
    parameters: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, StoreError> {
    resolve_parameters(&pipeline.definition.parameters, parameters)
        .map_err(|error| StoreError::InvalidArgument(error.to_string()))
}

impl Store {
    pub async fn create_schedule(
        &self,
        scope: &TenantScope,
        new: NewSchedule,
        created_by: UserId,
    ) -> Result<Schedule, StoreError> {
        let customer_id = scope.customer_id();
        self.precheck_one_more(customer_id, Quota::Schedules)
            .await?;
        let transaction = self.begin_write().await?;
        let pipeline = load_pipeline(&transaction, customer_id, new.pipeline_id).await?;
        check_parameters(&pipeline, &new.parameters)?;
        self.admit_one_more(&transaction, customer_id, Quota::Schedules)
            .await?;
        let at = now();
        let row = pipeline_schedule::ActiveModel {
            customer_id: Set(customer_id.get()),
            pipeline_id: Set(new.pipeline_id.get()),
            cron: Set(new.cron),
            time_zone: Set(new.parsed.zone_name().to_owned()),
            parameters: Set(to_json(&new.parameters)),
            enabled: Set(new.enabled),
            next_run_at: Set(new.enabled.then(|| new.parsed.next_after(at)).flatten()),
            last_run_at: Set(None),
            last_execution_id: Set(None),
            last_error: Set(String::new()),
            created_by: Set(created_by.get()),
            created_at: Set(at),
            updated_at: Set(at),
            ..Default::default()
        }
        .insert(&transaction)
        .await?;
        transaction.commit().await?;
        row.try_into()
    }

    pub async fn list_schedules(
        &self,
        scope: &TenantScope,
        pipeline_id: Option<PipelineId>,
        page: PageRequest,
    ) -> Result<Page<Schedule>, StoreError> {
        let mut query = pipeline_schedule::Entity::find()
            .filter(pipeline_schedule::Column::CustomerId.eq(scope.customer_id().get()));
        if let Some(pipeline_id) = pipeline_id {
            query = query.filter(pipeline_schedule::Column::PipelineId.eq(pipeline_id.get()));
        }
        if let Some(after) = page.after {
            query = query.filter(pipeline_schedule::Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(pipeline_schedule::Column::Id)
            .limit(page.fetch_limit())
            .all(&self.db)
            .await?;
        let page = Page::from_rows(rows, page, |row| row.id);
        let mut items = Vec::with_capacity(page.items.len());
        for row in page.items {
            items.push(row.try_into()?);
        }
        Ok(Page {
            items,
            next_page_token: page.next_page_token,
        })
    }

    pub async fn update_schedule(
        &self,
        scope: &TenantScope,
        schedule_id: ScheduleId,
        patch: SchedulePatch,
    ) -> Result<Schedule, StoreError> {
        let customer_id = scope.customer_id();
        let transaction = self.begin_write().await?;
        let current = find(&transaction, customer_id, schedule_id).await?;
        let cron = patch.cron.clone().unwrap_or_else(|| current.cron.clone());
        let zone = patch
            .time_zone
            .clone()
            .unwrap_or_else(|| current.time_zone.clone());
        let parsed = CronSchedule::parse(&cron, &zone)
            .map_err(|error| StoreError::InvalidArgument(error.to_string()))?;
        let enabled = patch.enabled.unwrap_or(current.enabled);
        let parameters = match patch.parameters {
            Some(parameters) => {
                let pipeline = load_pipeline(
                    &transaction,
                    customer_id,
                    PipelineId::from_db(current.pipeline_id),
                )
                .await?;
                check_parameters(&pipeline, &parameters)?;
                Some(to_json(&parameters))
            }
            None => None,
        };
        let at = now();
        let mut row: pipeline_schedule::ActiveModel = current.into();
        row.cron = Set(cron.trim().to_owned());
        row.time_zone = Set(parsed.zone_name().to_owned());
        if let Some(parameters) = parameters {
            row.parameters = Set(parameters);
        }
        row.enabled = Set(enabled);
        // A change of timing or state counts from now: no tick before it is made up.
        row.next_run_at = Set(enabled.then(|| parsed.next_after(at)).flatten());
        if enabled {
            row.last_error = Set(String::new());
        }
        row.updated_at = Set(at);
        let row = row.update(&transaction).await?;
        transaction.commit().await?;
        row.try_into()
    }

    /// The pipeline a schedule of the scope runs.
    pub async fn schedule_pipeline(
        &self,
        scope: &TenantScope,
        schedule_id: ScheduleId,
    ) -> Result<PipelineId, StoreError> {
        let row = find(&self.db, scope.customer_id(), schedule_id).await?;
        Ok(PipelineId::from_db(row.pipeline_id))
    }

    pub async fn delete_schedule(
        &self,
        scope: &TenantScope,
        schedule_id: ScheduleId,
    ) -> Result<(), StoreError> {
        let transaction = self.begin_write().await?;
        let current = find(&transaction, scope.customer_id(), schedule_id).await?;
        pipeline_schedule::Entity::delete_by_id(current.id)
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }
}

impl SystemStore {
    /// Schedules whose tick is due at `at`, the earliest first, at most `limit`: (id, customer,
    /// the tick).
    pub async fn due_schedules(
        &self,
        at: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<(ScheduleId, CustomerId, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(i64, i64, Option<DateTime<Utc>>)> = pipeline_schedule::Entity::find()
            .select_only()
            .column(pipeline_schedule::Column::Id)
            .column(pipeline_schedule::Column::CustomerId)
            .column(pipeline_schedule::Column::NextRunAt)
            .filter(pipeline_schedule::Column::Enabled.eq(true))
            .filter(pipeline_schedule::Column::NextRunAt.lte(at))
            .order_by_asc(pipeline_schedule::Column::NextRunAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, customer, tick)| {
                Some((
                    ScheduleId::from_db(id),
                    CustomerId::from_db(customer),
                    tick?,
                ))
            })
            .collect())
    }

    /// Fires one tick of a schedule at `at`: claims it (the next tick becomes the first after
    /// `at`, so ticks missed meanwhile are not made up) and queues its run, in one transaction.
    pub async fn fire_schedule(
        &self,
        schedule_id: ScheduleId,
        customer_id: CustomerId,
        tick: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Fired, StoreError> {
        let transaction = self.begin_write().await?;
        let Some(current) = pipeline_schedule::Entity::find_by_id(schedule_id.get())
            .filter(pipeline_schedule::Column::CustomerId.eq(customer_id.get()))
            .filter(pipeline_schedule::Column::Enabled.eq(true))
            .filter(pipeline_schedule::Column::NextRunAt.eq(tick))
            .one(&transaction)
            .await?
        else {
            return Ok(Fired::Taken);
        };
        // Never a tick at or before now: that would leave the schedule due again at once.
        let next = CronSchedule::parse(&current.cron, &current.time_zone)
            .ok()
            .and_then(|parsed| parsed.next_after(at))
            .filter(|next| *next > at);
        let claimed = pipeline_schedule::Entity::update_many()
            .col_expr(pipeline_schedule::Column::NextRunAt, Expr::value(next))
            .col_expr(pipeline_schedule::Column::LastRunAt, Expr::value(Some(at)))
            .filter(pipeline_schedule::Column::Id.eq(current.id))
            .filter(pipeline_schedule::Column::NextRunAt.eq(tick))
            .exec(&transaction)
            .await?;
        if claimed.rows_affected == 0 {
            return Ok(Fired::Taken);
        }
        let outcome = if next.is_none() {
            Fired::Skipped("stopped: the schedule has no next tick".to_owned())
        } else {
            self.queue_tick(&transaction, &current, customer_id).await?
        };
        let (enabled, last_execution_id, last_error) = match &outcome {
            Fired::Queued(execution) => (true, Some(execution.get()), String::new()),
            Fired::Skipped(reason) => (!reason.starts_with("stopped:"), None, reason.clone()),
            Fired::Taken => (true, None, String::new()),
        };
        let mut update = pipeline_schedule::Entity::update_many()
            .col_expr(
                pipeline_schedule::Column::LastExecutionId,
                Expr::value(last_execution_id),
            )
            .col_expr(
                pipeline_schedule::Column::LastError,
                Expr::value(last_error),
            )
            .filter(pipeline_schedule::Column::Id.eq(current.id));
        if !enabled {
            update = update
                .col_expr(pipeline_schedule::Column::Enabled, Expr::value(false))
                .col_expr(
                    pipeline_schedule::Column::NextRunAt,
                    Expr::value(Option::<DateTime<Utc>>::None),
                );
        }
        update.exec(&transaction).await?;
        transaction.commit().await?;
        Ok(outcome)
    }

    /// Queues the run of a claimed tick inside its transaction, or says why not; "stopped: …"
    /// reasons disable the schedule (its pipeline or customer is gone).
    async fn queue_tick(
        &self,
        transaction: &sea_orm::DatabaseTransaction,
        schedule: &pipeline_schedule::Model,
        customer_id: CustomerId,
    ) -> Result<Fired, StoreError> {
        let parameters: BTreeMap<String, String> =
            serde_json::from_value(schedule.parameters.clone()).unwrap_or_default();
        let owner = UserId::from_db(schedule.created_by);
        let (pipeline, parameters) = match self
            .admit_triggered_run(
                transaction,
                customer_id,
                PipelineId::from_db(schedule.pipeline_id),
                owner,
                &parameters,
            )
            .await?
        {
            Ok(admitted) => admitted,
            Err(not_queued) => return Ok(Fired::Skipped(not_queued.reason)),
        };
        let execution = insert_execution(
            transaction,
            &pipeline,
            &parameters,
            &pipeline.definition.selector,
            Trigger::Schedule {
                owner,
                schedule: ScheduleId::from_db(schedule.id),
            },
        )
        .await?;
        Ok(Fired::Queued(execution))
    }
}
