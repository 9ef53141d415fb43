//! The task that folds execution count deltas into their rollups (see `store::rollups`): every
//! second, batches until none is left or a round's share is used, so a burst (a bulk import, a
//! retention sweep) is absorbed over a few rounds without holding the database for long. Every
//! replica runs one; each delta is folded by exactly one of them. Folded deltas are reclaimed
//! (PostgreSQL's `VACUUM`) once enough of them or enough time has passed.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::{FOLD_BATCH, SystemStore};

/// Time between rounds.
const INTERVAL: Duration = Duration::from_secs(1);
/// Batches one round folds at most.
const BATCHES_PER_ROUND: usize = 20;
/// Folded deltas that make the next round reclaim them at once.
const RECLAIM_AFTER_ROWS: u64 = 10 * FOLD_BATCH;
/// Time after which folded deltas are reclaimed however few they are.
const RECLAIM_AFTER: Duration = Duration::from_secs(10);

/// Deltas folded since they were last reclaimed.
struct Unreclaimed {
    rows: u64,
    since: Instant,
}

/// Starts the task; it ends when `shutdown` is cancelled.
pub(crate) fn spawn_folding(store: SystemStore, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut unreclaimed = Unreclaimed {
            rows: 0,
            since: Instant::now(),
        };
        loop {
            tokio::select! {
                _ = tick.tick() => round(&store, &mut unreclaimed).await,
                () = shutdown.cancelled() => break,
            }
        }
    })
}

async fn round(store: &SystemStore, unreclaimed: &mut Unreclaimed) {
    for _ in 0..BATCHES_PER_ROUND {
        match store.fold_execution_deltas().await {
            Ok(folded) => {
                unreclaimed.rows += folded;
                if folded < FOLD_BATCH {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not fold execution count deltas");
                break;
            }
        }
    }
    let due = unreclaimed.rows >= RECLAIM_AFTER_ROWS
        || (unreclaimed.rows > 0 && unreclaimed.since.elapsed() >= RECLAIM_AFTER);
    if due {
        match store.reclaim_folded_deltas().await {
            Ok(()) => {
                unreclaimed.rows = 0;
                unreclaimed.since = Instant::now();
            }
            Err(error) => tracing::warn!(%error, "could not reclaim folded count deltas"),
        }
    }
}
