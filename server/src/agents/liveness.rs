//! The background task behind agent liveness. Every heartbeat interval it persists the figures
//! that arrived (one transaction for all agents), ends streams that went silent, and marks
//! offline agents whose server vanished without saying so; hourly it prunes old history. On
//! shutdown it saves what is left and marks this server's agents offline.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::AgentHub;
use crate::config::AgentSettings;
use crate::store::{SystemStore, now};

const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often streams are looked at for a keepalive due (each gets one every
/// `hub::KEEPALIVE_EVERY`, so at most this much later).
const KEEPALIVE_CHECK: Duration = Duration::from_secs(5);
/// How soon a failed save of figures and leases is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Starts the task; it ends after `shutdown` is cancelled, once agents are marked offline.
pub fn spawn_liveness_task(
    hub: Arc<AgentHub>,
    store: SystemStore,
    settings: AgentSettings,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry = tokio::time::interval(RETRY_EVERY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut keepalive = tokio::time::interval(KEEPALIVE_CHECK);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reachability = store.health().subscribe();
        // Figures (and the leases they renew) a failed save left to save again.
        let mut unsaved = false;
        loop {
            tokio::select! {
                _ = tick.tick() => unsaved = !run_once(&hub, &store, &settings).await,
                // The database is back: the leases of agents whose streams stayed open are
                // renewed first, before any replica may judge them expired.
                Ok(()) = reachability.changed() => {
                    if *reachability.borrow_and_update() {
                        unsaved = !save_figures(&hub, &store, &settings).await;
                    }
                }
                _ = retry.tick(), if unsaved => {
                    unsaved = !save_figures(&hub, &store, &settings).await;
                }
                _ = keepalive.tick() => {
                    hub.send_keepalives();
                }
                _ = prune.tick() => prune_history(&store, &settings).await,
                () = shutdown.cancelled() => break,
            }
        }
        save_figures(&hub, &store, &settings).await;
        mark_lost_offline(&hub, &store, true).await;
        let status = Status::unavailable("server shutting down");
        for (agent, connection_id) in hub.disconnect_all(&status) {
            if let Err(error) = store
                .store()
                .mark_agent_offline(&agent, connection_id, now(), "server shutting down")
                .await
            {
                tracing::warn!(%error, agent_id = agent.agent_id().get(), "could not mark agent offline");
            }
        }
    })
}

/// Returns whether the figures were saved.
async fn run_once(hub: &AgentHub, store: &SystemStore, settings: &AgentSettings) -> bool {
    let saved = save_figures(hub, store, settings).await;
    // While the database is away (and for a renewal window after), a stream's reader may be
    // the one waiting, on the database, with the agent's heartbeats unread behind it: silence
    // is judged only once the database answers.
    if !store.health().reachable_for(settings.renewal_window()) {
        return saved;
    }
    mark_lost_offline(hub, store, false).await;
    let offline_after = settings.offline_after();
    for (agent, connection_id) in hub.expire_silent(offline_after) {
        let reason = format!("no heartbeat for {} s", offline_after.as_secs());
        tracing::info!(agent_id = agent.agent_id().get(), customer_id = agent.customer_id().get(), %reason, "agent offline");
        if let Err(error) = store
            .store()
            .mark_agent_offline(&agent, connection_id, now(), &reason)
            .await
        {
            tracing::warn!(%error, agent_id = agent.agent_id().get(), "could not mark agent offline");
        }
    }
    // Agents of a vanished replica are judged by their stored last-seen time, which nobody
    // could renew while the database was away: likewise not until every replica has had a
    // renewal window to save its own agents' times.
    let at = now();
    let cutoff = at - offline_after;
    match store.sweep_stale_agents(cutoff, at).await {
        Ok(0) => {}
        Ok(swept) => tracing::info!(swept, "marked agents without recent heartbeats offline"),
        Err(error) => tracing::warn!(%error, "could not sweep stale agents"),
    }
    saved
}

/// Marks offline the agents whose broken streams were not replaced in time (all of them with
/// `everything`); an agent that reconnected meanwhile has a newer connection stored, which the
/// mark leaves alone.
async fn mark_lost_offline(hub: &AgentHub, store: &SystemStore, everything: bool) {
    for (agent, connection_id) in hub.take_lost(everything) {
        match store
            .store()
            .mark_agent_offline(&agent, connection_id, now(), "connection lost")
            .await
        {
            Ok(true) => tracing::info!(
                agent_id = agent.agent_id().get(),
                customer_id = agent.customer_id().get(),
                "agent offline: its connection was lost and it did not come back"
            ),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, agent_id = agent.agent_id().get(), "could not mark agent offline");
            }
        }
    }
}

/// Saves the figures that arrived and renews the leases of the jobs they report; returns
/// whether that worked. On failure the agents' latest figures stay unsaved, for the next try.
async fn save_figures(hub: &AgentHub, store: &SystemStore, settings: &AgentSettings) -> bool {
    let lease_until =
        now() + chrono::Duration::from_std(settings.grace).unwrap_or(chrono::Duration::seconds(60));
    let online_seconds = i64::try_from(settings.heartbeat_interval.as_secs()).unwrap_or(0);
    let records = hub.take_unsaved(settings.sample_interval, lease_until, online_seconds);
    if records.is_empty() {
        return true;
    }
    match store.save_heartbeats(&records).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, agents = records.len(), "could not save agent heartbeats");
            hub.mark_unsaved(&records);
            false
        }
    }
}

async fn prune_history(store: &SystemStore, settings: &AgentSettings) {
    let Ok(retention) = chrono::Duration::from_std(settings.retention) else {
        return;
    };
    match store.prune_agent_samples(now() - retention).await {
        Ok(0) => {}
        Ok(pruned) => tracing::info!(pruned, "pruned agent metrics history"),
        Err(error) => tracing::warn!(%error, "could not prune agent metrics history"),
    }
}
