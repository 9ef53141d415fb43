//! The task that folds execution count deltas into their rollups (see `store::rollups`): every
//! second, batches until none is left or a round's share is used, so a burst (a bulk import, a
//! retention sweep) is absorbed over a few rounds without holding the database for long. Every
//! replica runs one; each delta is folded by exactly one of them.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::{FOLD_BATCH, SystemStore};

/// Time between rounds.
const INTERVAL: Duration = Duration::from_secs(1);
/// Batches one round folds at most.
const BATCHES_PER_ROUND: usize = 20;

/// Starts the task; it ends when `shutdown` is cancelled.
pub(crate) fn spawn_folding(store: SystemStore, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => round(&store).await,
                () = shutdown.cancelled() => break,
            }
        }
    })
}

async fn round(store: &SystemStore) {
    for _ in 0..BATCHES_PER_ROUND {
        match store.fold_execution_deltas().await {
            Ok(folded) if folded < FOLD_BATCH => return,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "could not fold execution count deltas");
                return;
            }
        }
    }
}
