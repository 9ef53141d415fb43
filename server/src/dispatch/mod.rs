//! Push dispatch: queued executions go to a matching connected agent of the same customer the
//! moment one is free, over its stream. Claims are single conditional updates in the database, so
//! an execution starts exactly once even with several server replicas; leases (renewed by the
//! agent's heartbeats) turn an execution whose agent vanished into `failed: agent_lost` instead
//! of leaving it running forever.

use std::sync::Arc;
use std::time::Duration;

use cygnet_proto::v1 as pb;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agents::AgentHub;
use crate::config::AgentSettings;
use crate::domain::execution::{QueueCandidate, QueuedExecution};
use crate::domain::{AgentId, CustomerId, ExecutionId};
use crate::metrics::ServerMetrics;
use crate::secrets::SecretBox;
use crate::service::Operations;
use crate::store::{JobVariables, StageGate, SystemStore, now};
use crate::wire;

/// How often the dispatcher looks at the queue even without being woken: the safety net for a
/// missed wake-up or a notification from another replica.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Queued executions considered per round.
const BATCH: u64 = 256;
/// Queued executions of one customer considered per sweep.
const SWEEP_PER_CUSTOMER: u64 = 32;

/// Wakes the dispatch loop; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: SystemStore,
    hub: Arc<AgentHub>,
    /// What happens after an execution moved.
    operations: Operations,
    grace: Duration,
    /// How long the database must have answered, after an outage, before leases may expire
    /// (see `expire_leases`).
    renewal_window: Duration,
    metrics: Arc<ServerMetrics>,
    /// Opens the secret variables a job gets.
    secrets: Arc<SecretBox>,
    /// The customer a full round stopped at; the next round starts after it.
    cursor: std::sync::atomic::AtomicI64,
}

impl Dispatcher {
    pub(crate) fn new(
        store: SystemStore,
        hub: Arc<AgentHub>,
        operations: Operations,
        agents: AgentSettings,
        metrics: Arc<ServerMetrics>,
        secrets: Arc<SecretBox>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                hub,
                operations,
                grace: agents.grace,
                renewal_window: agents.renewal_window(),
                metrics,
                secrets,
                cursor: std::sync::atomic::AtomicI64::new(0),
            }),
        }
    }

    /// The lease a claim or heartbeat grants: until `now + grace`.
    pub fn lease_until(&self) -> chrono::DateTime<chrono::Utc> {
        now()
            + chrono::Duration::from_std(self.inner.grace).unwrap_or(chrono::Duration::seconds(60))
    }

    /// Runs the dispatch loop until `shutdown` is cancelled.
    pub fn spawn(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let dispatcher = self.clone();
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = dispatcher.inner.operations.dispatch_wanted().notified() => dispatcher.dispatch_round(false).await,
                    _ = sweep.tick() => {
                        dispatcher.expire_leases().await;
                        dispatcher.advance_stalled_releases().await;
                        dispatcher.resend_cancellations().await;
                        dispatcher.dispatch_round(true).await;
                    }
                    () = shutdown.cancelled() => break,
                }
            }
        })
    }

    /// Matches queued executions with free agents connected here, fairly across customers.
    ///
    /// A round on demand (new work, a freed slot) reads only the queues of customers with a free
    /// slot here, a few rows per free slot: it costs nothing while every agent is busy. The sweep
    /// reads every customer's queue, so executions that no free agent matches get their queue
    /// reason within a second. Either reads at most a few of each customer's oldest executions,
    /// taking customers in turns (`SystemStore::queue_candidates`): one customer's backlog, even
    /// one that no agent can take, never keeps another's work out of a round.
    async fn dispatch_round(&self, sweep: bool) {
        let inner = &self.inner;
        if inner.hub.connected_count() == 0 {
            return;
        }
        let (customers, per_customer, limit) = if sweep {
            (None, SWEEP_PER_CUSTOMER, BATCH)
        } else {
            let free = inner.hub.free_slots_by_customer();
            if free.is_empty() {
                return;
            }
            let most = free.values().copied().max().unwrap_or(1);
            let slots: usize = free.values().sum();
            let per_customer = u64::try_from(most.saturating_mul(4))
                .unwrap_or(BATCH)
                .min(BATCH);
            let limit = BATCH.min(u64::try_from(slots.saturating_mul(4)).unwrap_or(BATCH));
            (
                Some(free.into_keys().collect::<Vec<CustomerId>>()),
                per_customer,
                limit,
            )
        };
        let after = CustomerId::from_db(inner.cursor.load(std::sync::atomic::Ordering::Relaxed));
        let candidates = match inner
            .store
            .queue_candidates(customers.as_deref(), after, per_customer, limit)
            .await
        {
            Ok(candidates) => candidates,
            Err(error) => {
                tracing::warn!(%error, "could not read the queue");
                return;
            }
        };
        // The next round starts after the last customer this one reached, when it was full.
        if u64::try_from(candidates.len()).unwrap_or(u64::MAX) >= limit
            && let Some(last) = candidates.last()
        {
            inner
                .cursor
                .store(last.customer_id.get(), std::sync::atomic::Ordering::Relaxed);
        }
        // Pick an agent for each execution (reserving its slot), then claim them all at once.
        let mut picked: Vec<(AgentId, QueueCandidate)> = Vec::new();
        let mut reasons: Vec<(ExecutionId, String)> = Vec::new();
        for candidate in candidates {
            match inner.hub.pick(candidate.customer_id, &candidate.selector) {
                Ok(agent_id) => {
                    if inner.hub.reserve(agent_id, candidate.id) {
                        picked.push((agent_id, candidate));
                    }
                }
                Err(reason) if reason != candidate.queue_reason => {
                    reasons.push((candidate.id, reason));
                }
                Err(_) => {}
            }
        }
        if !picked.is_empty() {
            self.claim_and_deliver(picked).await;
        }
        // Why the others wait, recorded after the deliveries (so no one's job waits for the
        // writes) and in one statement per reason.
        if !reasons.is_empty() {
            match inner.store.set_queue_reasons(&reasons).await {
                Ok(()) => {
                    for (execution_id, _) in &reasons {
                        // Its watchers show why it waits.
                        inner.operations.execution_changed(*execution_id);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, executions = reasons.len(), "could not record queue reasons");
                }
            }
        }
    }

    /// Claims the picked executions in one transaction and delivers the ones won.
    async fn claim_and_deliver(&self, picked: Vec<(AgentId, QueueCandidate)>) {
        let inner = &self.inner;
        let started = std::time::Instant::now();
        let claims: Vec<(ExecutionId, CustomerId, AgentId)> = picked
            .iter()
            .map(|(agent_id, candidate)| (candidate.id, candidate.customer_id, *agent_id))
            .collect();
        let won = match inner
            .store
            .claim_executions(&claims, self.lease_until())
            .await
        {
            Ok(won) => won,
            Err(error) => {
                tracing::warn!(%error, executions = claims.len(), "could not claim executions");
                vec![false; claims.len()]
            }
        };
        let mut claimed: std::collections::HashMap<ExecutionId, (AgentId, CustomerId)> =
            Default::default();
        for ((agent_id, candidate), won) in picked.into_iter().zip(won) {
            if won {
                claimed.insert(candidate.id, (agent_id, candidate.customer_id));
            } else {
                // Another dispatcher (or a cancellation) got there first.
                inner.hub.release(agent_id, candidate.id);
            }
        }
        // What the claimed executions run is read once, for them only.
        let ids: Vec<ExecutionId> = claimed.keys().copied().collect();
        match inner.store.executions_to_deliver(&ids).await {
            Ok(executions) => {
                for execution in executions {
                    if let Some((agent_id, _)) = claimed.remove(&execution.id) {
                        self.deliver(agent_id, execution, started).await;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, executions = ids.len(), "could not read claimed executions; requeued");
            }
        }
        // Whatever could not be read goes back to the queue.
        for (execution_id, (agent_id, customer_id)) in claimed {
            self.give_back(agent_id, customer_id, execution_id).await;
        }
    }

    /// Sends a claimed execution to its agent (back to the queue if the stream is gone).
    async fn deliver(
        &self,
        agent_id: AgentId,
        execution: QueuedExecution,
        started: std::time::Instant,
    ) {
        let inner = &self.inner;
        // Only deploys have a release to read.
        let context = if execution.deploy {
            inner.store.release_context(execution.id).await
        } else {
            Ok(None)
        };
        let environment = context.as_ref().ok().and_then(|context| {
            context.as_ref().map(|context| {
                let gate = if context.unapproved {
                    StageGate::NotApproved
                } else {
                    StageGate::Open
                };
                (context.environment_id, gate)
            })
        });
        let release = match context {
            Ok(context) => context,
            Err(error) => {
                tracing::warn!(%error, execution_id = execution.id.get(), "could not read the release of a deploy; requeued");
                return self
                    .give_back(agent_id, execution.customer_id, execution.id)
                    .await;
            }
        };
        let variables = match inner
            .store
            .job_variables(
                execution.customer_id,
                &execution.variable_group_ids,
                environment,
                &inner.secrets,
            )
            .await
        {
            Ok(JobVariables::Ready(variables)) => variables,
            Ok(JobVariables::Unopenable(reason)) => {
                // A secret that does not open now will not open on a retry: the job fails
                // with the reason instead of going round the queue.
                tracing::error!(execution_id = execution.id.get(), %reason, "job not delivered");
                let reason = format!("variables: {reason}");
                match inner
                    .store
                    .fail_undeliverable(execution.id, execution.customer_id, &reason, now())
                    .await
                {
                    Ok(true) => {
                        self.audit(execution.customer_id, "FailUndeliverable", execution.id)
                            .await;
                        inner
                            .operations
                            .execution_ended(execution.customer_id, execution.id, Some(agent_id))
                            .await;
                    }
                    Ok(false) => inner.hub.release(agent_id, execution.id),
                    Err(error) => {
                        inner.hub.release(agent_id, execution.id);
                        tracing::warn!(%error, execution_id = execution.id.get(), "could not fail an undeliverable execution");
                    }
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, execution_id = execution.id.get(), "could not read the variables of a job; requeued");
                return self
                    .give_back(agent_id, execution.customer_id, execution.id)
                    .await;
            }
        };
        let assignment = pb::connect_response::Command::AssignJob(wire::agent::job_assignment(
            &execution, release, variables,
        ));
        if inner.hub.send(agent_id, assignment) {
            let waited = (crate::store::now() - execution.created_at)
                .to_std()
                .unwrap_or_default();
            inner.metrics.dispatched(waited, started.elapsed());
            tracing::info!(
                execution_id = execution.id.get(),
                agent_id = agent_id.get(),
                customer_id = execution.customer_id.get(),
                "execution assigned"
            );
            inner.operations.execution_changed(execution.id);
        } else {
            // The stream went away between the pick and the send: back to the queue.
            self.give_back(agent_id, execution.customer_id, execution.id)
                .await;
        }
    }

    /// Puts a claimed execution that could not be delivered back in the queue, and frees the
    /// agent's slot. Dispatch is not woken: the next sweep picks it up again, so a failure that
    /// persists (the database gone) costs one attempt a second, not a busy loop.
    async fn give_back(
        &self,
        agent_id: AgentId,
        customer_id: CustomerId,
        execution_id: ExecutionId,
    ) {
        let inner = &self.inner;
        inner.hub.release(agent_id, execution_id);
        if let Err(error) = inner
            .store
            .release_claim(customer_id, execution_id, agent_id)
            .await
        {
            tracing::warn!(%error, execution_id = execution_id.get(), "could not requeue execution");
        }
    }

    /// Ends executions whose agent stopped renewing their lease.
    ///
    /// Not while the database is unreachable, nor until it has answered for a renewal window
    /// after an outage: leases could not be renewed meanwhile, and every replica first renews
    /// those of the agents whose streams stayed open. Only an agent silent on its own stream
    /// loses its jobs.
    async fn expire_leases(&self) {
        let inner = &self.inner;
        if !inner.store.health().reachable_for(inner.renewal_window) {
            return;
        }
        let at = now();
        let lost = match inner.store.expired_leases(at).await {
            Ok(lost) => lost,
            Err(error) => {
                tracing::warn!(%error, "could not read expired leases");
                return;
            }
        };
        for execution in lost {
            match inner.store.end_lost_execution(&execution, at).await {
                Ok(Some(status)) => {
                    tracing::warn!(
                        execution_id = execution.id.get(),
                        status = status.as_str(),
                        "agent lost; execution ended"
                    );
                    self.audit(execution.customer_id, "ExpireLease", execution.id)
                        .await;
                    inner
                        .operations
                        .execution_ended(execution.customer_id, execution.id, execution.agent_id)
                        .await;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, execution_id = execution.id.get(), "could not end lost execution")
                }
            }
        }
    }

    /// Moves on releases whose deploy ended while nobody advanced them (e.g. across a restart).
    async fn advance_stalled_releases(&self) {
        match self.inner.store.stalled_release_executions().await {
            Ok(executions) => {
                for (customer_id, execution_id) in executions {
                    self.inner
                        .operations
                        .advance_release_after(customer_id, execution_id)
                        .await;
                }
            }
            Err(error) => tracing::warn!(%error, "could not read stalled releases"),
        }
    }

    /// Records in the customer's audit log that the dispatcher itself ended one of its
    /// executions (`system/<what>`).
    async fn audit(&self, customer_id: CustomerId, what: &str, execution_id: ExecutionId) {
        let method = format!("system/{what}");
        if let Err(error) = self
            .inner
            .store
            .record_system_audit(
                customer_id,
                &method,
                ("execution", execution_id.get()),
                "OK",
            )
            .await
        {
            tracing::error!(%error, %method, "could not write the audit log");
        }
    }

    /// Repeats pending cancellations to agents connected here (the request may have been made on
    /// another replica, or while the agent was reconnecting). Agents ignore repeats.
    async fn resend_cancellations(&self) {
        let inner = &self.inner;
        if inner.hub.connected_count() == 0 {
            return;
        }
        let pending = match inner.store.pending_cancellations().await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%error, "could not read pending cancellations");
                return;
            }
        };
        // Agents connected elsewhere are not in the hub; `send` skips them.
        for (agent_id, execution_id, reason) in pending {
            inner.hub.send(
                agent_id,
                pb::connect_response::Command::CancelJob(pb::CancelJob {
                    execution_id: execution_id.get(),
                    reason,
                }),
            );
        }
    }
}
