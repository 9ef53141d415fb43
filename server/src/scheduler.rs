//! The scheduler: every second, each replica fires the schedule ticks that are due. A tick is
//! claimed in the transaction that queues its run ([`SystemStore::fire_schedule`]), so with
//! several replicas each tick runs once; ticks missed while no replica ran are not made up
//! (the claim moves to the first tick after now), so the latest of them runs once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::{SystemActor, system_scope};
use crate::domain::ScheduleId;
use crate::service::Operations;
use crate::store::{Fired, Store, StoreError, SystemStore};

/// How often due ticks are looked for.
const POLL: Duration = Duration::from_secs(1);
/// Most ticks one round fires; a full round is followed by another at once.
const ROUND: u64 = 200;
/// Most rounds one call makes; what is left is due at the next call.
const MAX_ROUNDS: usize = 50;

pub struct Scheduler {
    store: SystemStore,
    /// Wakes dispatch here and on other replicas after a run is queued (without it, dispatch
    /// finds the run at its next sweep).
    operations: Option<Operations>,
}

impl Scheduler {
    /// A scheduler on `store`; the server's also wakes dispatch ([`Scheduler::waking`]).
    pub fn new(store: &Store) -> Scheduler {
        Scheduler {
            store: store.system(&system_scope(SystemActor::Scheduler)),
            operations: None,
        }
    }

    pub(crate) fn waking(mut self, operations: Operations) -> Scheduler {
        self.operations = Some(operations);
        self
    }

    /// Fires every tick due at `at` (the clock is the caller's: tests pass theirs) and says
    /// what each came to.
    pub async fn fire_due(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<(ScheduleId, Fired)>, StoreError> {
        let mut outcomes = Vec::new();
        // Each schedule is tried once a call: one that fails (and stays due) does not keep
        // the round from the others, nor the call from ending.
        let mut tried = std::collections::HashSet::new();
        for _ in 0..MAX_ROUNDS {
            let due = self.store.due_schedules(at, ROUND).await?;
            let full = due.len() as u64 == ROUND;
            let mut fresh = false;
            for (schedule, customer, tick) in due {
                if !tried.insert(schedule) {
                    continue;
                }
                fresh = true;
                let fired = match self.store.fire_schedule(schedule, customer, tick, at).await {
                    Ok(fired) => fired,
                    Err(error) => {
                        tracing::warn!(
                            schedule_id = schedule.get(),
                            customer_id = customer.get(),
                            %error,
                            "firing a schedule failed; it is tried again next time"
                        );
                        continue;
                    }
                };
                match &fired {
                    Fired::Queued(execution) => tracing::info!(
                        schedule_id = schedule.get(),
                        customer_id = customer.get(),
                        execution_id = execution.get(),
                        "scheduled run queued"
                    ),
                    Fired::Skipped(reason) => tracing::info!(
                        schedule_id = schedule.get(),
                        customer_id = customer.get(),
                        reason,
                        "scheduled run not queued"
                    ),
                    Fired::Taken => {}
                }
                outcomes.push((schedule, fired));
            }
            if !full || !fresh {
                break;
            }
        }
        if outcomes
            .iter()
            .any(|(_, fired)| matches!(fired, Fired::Queued(_)))
            && let Some(operations) = &self.operations
        {
            operations.work_queued();
        }
        Ok(outcomes)
    }

    pub fn spawn(self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(POLL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = interval.tick() => {}
                }
                if let Err(error) = self.fire_due(Utc::now()).await {
                    tracing::warn!(%error, "firing schedules failed; trying again");
                }
            }
        })
    }
}
