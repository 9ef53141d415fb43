//! What happens after an execution or a release execution moved, in one place each: watchers
//! here and on other replicas are told, a freed slot wakes dispatch, an ended deploy moves its
//! release on.

use cygnet_proto::v1 as pb;

use super::Operations;
use crate::auth::AuthenticatedAgent;
use crate::domain::{AgentId, CustomerId, ExecutionId, ReleaseExecutionId};
use crate::store::NotificationHandler;

impl Operations {
    /// Asks this replica's dispatcher for a round now (a slot freed, an agent connected or
    /// changed).
    pub fn wake_dispatch(&self) {
        self.inner.dispatch_wanted.notify_one();
    }

    /// New work was queued: this replica and every other one look at the queue.
    pub fn work_queued(&self) {
        self.wake_dispatch();
        self.inner.notifier.work_queued();
    }

    /// Something of an execution was stored: its watchers, here and on other replicas, re-read
    /// it.
    pub fn execution_changed(&self, execution_id: ExecutionId) {
        self.inner.signals.bump(execution_id);
        self.inner.notifier.execution_changed(execution_id);
    }

    /// The one path after an execution reached its final status, whoever ended it (its agent,
    /// a cancellation, an expired lease, an undeliverable job): the slot it held on `agent` here
    /// is freed, its watchers are told, the release it deploys (if any) moves on, and dispatch
    /// looks for the next job.
    pub(crate) async fn execution_ended(
        &self,
        customer_id: CustomerId,
        execution_id: ExecutionId,
        agent: Option<AgentId>,
    ) {
        if let Some(agent_id) = agent {
            self.inner.hub.release(agent_id, execution_id);
        }
        self.execution_changed(execution_id);
        self.advance_release_after(customer_id, execution_id).await;
        self.wake_dispatch();
    }

    /// Puts back in the queue an execution assigned to `agent` that the agent never received
    /// (it does not list it after reconnecting).
    pub(crate) async fn requeue_unreceived(
        &self,
        agent: &AuthenticatedAgent,
        execution_id: ExecutionId,
    ) {
        let agent_id = agent.agent_id();
        self.inner.hub.release(agent_id, execution_id);
        match self
            .inner
            .system
            .release_claim(agent.customer_id(), execution_id, agent_id)
            .await
        {
            Ok(true) => {
                tracing::info!(
                    execution_id = execution_id.get(),
                    agent_id = agent_id.get(),
                    "assignment lost in a reconnect; execution queued again"
                );
                self.execution_changed(execution_id);
                self.work_queued();
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, execution_id = execution_id.get(), "could not requeue execution")
            }
        }
    }

    /// Asks the agent running `execution_id` to stop it, wherever it is connected.
    pub fn request_cancel(&self, agent_id: AgentId, execution_id: ExecutionId, reason: &str) {
        let sent = self.inner.hub.send(
            agent_id,
            pb::connect_response::Command::CancelJob(pb::CancelJob {
                execution_id: execution_id.get(),
                reason: reason.to_owned(),
            }),
        );
        if !sent {
            // Connected to another replica (or reconnecting): the sweep there resends it.
            self.inner.notifier.cancel_requested();
        }
    }

    /// A release execution moved: its watchers, here and on other replicas, re-read it.
    pub fn release_changed(&self, release_execution_id: ReleaseExecutionId) {
        self.inner.release_signals.bump(release_execution_id);
        self.inner.notifier.release_changed(release_execution_id);
    }
}

impl NotificationHandler for Operations {
    fn work(&self) {
        self.wake_dispatch();
    }

    fn execution_changed(&self, execution_id: ExecutionId) {
        self.inner.signals.bump(execution_id);
    }

    fn release_changed(&self, release_execution_id: ReleaseExecutionId) {
        self.inner.release_signals.bump(release_execution_id);
    }
}
