//! The housekeeping task: on each round it records every customer's stored bytes in its usage
//! of the day, applies each customer's retention periods in bounded batches (so one customer's
//! backlog costs the others nothing but its turn), and keeps the audit entries of anonymous
//! calls to a fixed number.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::artifacts::ArtifactStore;
use crate::domain::{CustomerId, Quota, QuotaLimits};
use crate::store::{StoreError, SystemStore, now};

/// Rows one batch removes at most.
const BATCH: u64 = 100;
/// Batches of one kind one customer gets per round at most.
const BATCHES_PER_ROUND: usize = 10;
/// Anonymous audit entries removed per round at most.
const AUDIT_BATCH: u64 = 10_000;

/// How the housekeeping task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Time between rounds.
    pub interval: Duration,
    /// Audit entries of calls that authenticated no one kept at most (newest first).
    pub anonymous_audit_kept: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(600),
            anonymous_audit_kept: 100_000,
        }
    }
}

/// Starts the task; it ends when `shutdown` is cancelled.
pub(crate) fn spawn_housekeeping(
    store: SystemStore,
    artifacts: ArtifactStore,
    settings: RetentionSettings,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => round(&store, &artifacts, &settings).await,
                () = shutdown.cancelled() => break,
            }
        }
    })
}

async fn round(store: &SystemStore, artifacts: &ArtifactStore, settings: &RetentionSettings) {
    if let Err(error) = store.read_storage_into_usage().await {
        tracing::warn!(%error, "could not record stored bytes in usage");
    }
    match store.customers_with_limits().await {
        Ok(customers) => {
            for (customer_id, limits) in customers {
                if let Err(error) = retain(store, artifacts, customer_id, &limits).await {
                    tracing::warn!(%error, customer_id = customer_id.get(), "retention round failed");
                }
            }
        }
        Err(error) => tracing::warn!(%error, "could not read customers for retention"),
    }
    match store
        .prune_anonymous_audit(settings.anonymous_audit_kept, AUDIT_BATCH)
        .await
    {
        Ok(0) => {}
        Ok(pruned) => tracing::info!(pruned, "pruned audit entries of anonymous calls"),
        Err(error) => tracing::warn!(%error, "could not prune anonymous audit entries"),
    }
}

/// Applies one customer's retention periods, at most [`BATCHES_PER_ROUND`] batches of each kind.
async fn retain(
    store: &SystemStore,
    artifacts: &ArtifactStore,
    customer_id: CustomerId,
    limits: &QuotaLimits,
) -> Result<(), StoreError> {
    let cutoff = |quota: Quota| now() - chrono::Duration::days(limits.get(quota));
    let mut removed = (0u64, 0i64, 0i64);
    for _ in 0..BATCHES_PER_ROUND {
        let batch = store
            .expire_executions(customer_id, cutoff(Quota::ExecutionRetentionDays), BATCH)
            .await?;
        removed.0 += batch.executions;
        removed.1 += batch.log_bytes;
        removed.2 += batch.artifact_bytes;
        remove_files(artifacts, &batch.artifact_keys).await;
        if batch.executions < BATCH {
            break;
        }
    }
    for _ in 0..BATCHES_PER_ROUND {
        let batch = store
            .expire_logs(customer_id, cutoff(Quota::LogRetentionDays), BATCH)
            .await?;
        removed.1 += batch.log_bytes;
        if batch.executions < BATCH {
            break;
        }
    }
    for _ in 0..BATCHES_PER_ROUND {
        let batch = store
            .expire_artifacts(customer_id, cutoff(Quota::ArtifactRetentionDays), BATCH)
            .await?;
        removed.2 += batch.artifact_bytes;
        remove_files(artifacts, &batch.artifact_keys).await;
        if (batch.artifact_keys.len() as u64) < BATCH {
            break;
        }
    }
    if removed != (0, 0, 0) {
        tracing::info!(
            customer_id = customer_id.get(),
            executions = removed.0,
            log_bytes = removed.1,
            artifact_bytes = removed.2,
            "retention removed old data"
        );
    }
    Ok(())
}

/// Deletes the content of a batch of expired artifacts (their rows are gone): one request per
/// thousand keys on S3.
async fn remove_files(artifacts: &ArtifactStore, keys: &[String]) {
    let failed = artifacts.remove_many(keys).await;
    if failed > 0 {
        tracing::warn!(failed, "expired artifacts left in the store");
    }
}
