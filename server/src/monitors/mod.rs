//! Service monitors at run time: which agent runs which monitor, and getting each connected
//! agent the set it should run.
//!
//! The decisions live in the database (`monitors.assigned_agent_id`), so every replica sees the
//! same placement. A round — on demand after a change, and every [`ROUND_INTERVAL`] regardless —
//! rebalances the customers that need it (a monitor whose agent is gone, or one without an agent
//! while the customer has one online), then sends every agent connected here its complete set
//! when it differs from what its stream last got.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cygnet_proto::v1 as pb;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agents::AgentHub;
use crate::config::AgentSettings;
use crate::domain::CustomerId;
use crate::store::{SystemStore, now};
use crate::wire;

/// How often a round runs when nothing asks for one.
pub const ROUND_INTERVAL: Duration = Duration::from_secs(2);
/// How often old check results are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Handle to the monitor placement task; cheap to clone.
#[derive(Clone)]
pub struct MonitorScheduler {
    inner: Arc<Inner>,
}

struct Inner {
    store: SystemStore,
    hub: Arc<AgentHub>,
    settings: AgentSettings,
    wake: Notify,
    changed: Mutex<BTreeSet<CustomerId>>,
}

impl MonitorScheduler {
    pub(crate) fn new(store: SystemStore, hub: Arc<AgentHub>, settings: AgentSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                hub,
                settings,
                wake: Notify::new(),
                changed: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// Something about the customer's monitors or agents changed: rebalance it now.
    pub fn customer_changed(&self, customer_id: CustomerId) {
        self.inner
            .changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(customer_id);
        self.inner.wake.notify_one();
    }

    /// Runs rounds until `shutdown` is cancelled.
    pub fn spawn(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let scheduler = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ROUND_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut prune = tokio::time::interval(PRUNE_INTERVAL);
            prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = scheduler.inner.wake.notified() => scheduler.round().await,
                    _ = tick.tick() => scheduler.round().await,
                    _ = prune.tick() => scheduler.prune().await,
                    () = shutdown.cancelled() => return,
                }
            }
        })
    }

    async fn round(&self) {
        let inner = &self.inner;
        let offline_after = chrono::Duration::from_std(inner.settings.offline_after())
            .unwrap_or(chrono::Duration::seconds(30));
        let cutoff = now() - offline_after;
        let mut customers = std::mem::take(
            &mut *inner
                .changed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        match inner.store.customers_needing_rebalance(cutoff).await {
            Ok(more) => customers.extend(more),
            Err(error) => tracing::warn!(%error, "cannot look for monitors to place"),
        }
        for customer_id in customers {
            if let Err(error) = inner.store.rebalance_monitors(customer_id, cutoff).await {
                tracing::warn!(%error, customer_id = customer_id.get(), "cannot place monitors");
            }
        }
        let agents = inner.hub.connected_agents();
        match inner.store.monitor_checks_for(&agents).await {
            Ok(sets) => {
                for (agent_id, checks) in sets {
                    let count = checks.len();
                    let set = pb::AssignMonitors {
                        monitors: checks
                            .into_iter()
                            .map(|(monitor_id, settings)| {
                                wire::agent::monitor_check(monitor_id.get(), &settings)
                            })
                            .collect(),
                    };
                    if inner.hub.assign_monitors(agent_id, set) {
                        tracing::debug!(
                            agent_id = agent_id.get(),
                            monitors = count,
                            "monitors sent"
                        );
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read monitor assignments"),
        }
    }

    async fn prune(&self) {
        let inner = &self.inner;
        let Ok(retention) = chrono::Duration::from_std(inner.settings.monitor_retention) else {
            return;
        };
        match inner.store.prune_monitor_results(now() - retention).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned monitor history"),
            Err(error) => tracing::warn!(%error, "could not prune monitor history"),
        }
    }
}
