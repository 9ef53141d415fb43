//! Jobs on this agent: accepting assignments (only of the agent's own customer), running their
//! steps in `WorkDirectory/<customer_id>/<pipeline_id>/<execution_id>/`, cancelling them, and the
//! outbox of their events.

pub mod artifacts;
pub mod logs;
pub mod outbox;
pub mod process;
mod runner;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cygnet_proto::v1 as pb;
use tokio::sync::watch;
use tonic::transport::Channel;

pub use outbox::Outbox;

/// How jobs run here.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// The agent's customer: jobs of any other customer are refused.
    pub customer_id: i64,
    /// `WorkDirectory` (jobs run under `<it>/<customer_id>/…`).
    pub work_directory: PathBuf,
    /// Time between SIGTERM and SIGKILL when a step is cancelled or times out.
    pub kill_grace: Duration,
    /// Output a job may log before it is truncated.
    pub max_log_bytes: u64,
    /// Finished workspaces kept per pipeline (0: removed at once).
    pub keep_workspaces: usize,
    /// Largest artifact uploaded.
    pub max_artifact_bytes: u64,
}

/// Where artifacts are uploaded: the server, with this agent's identity.
#[derive(Clone)]
pub struct UploadTarget {
    pub channel: Channel,
    pub credential: String,
    pub agent_uuid: String,
}

/// The jobs of this agent.
pub struct Jobs {
    settings: JobSettings,
    outbox: Arc<Outbox>,
    running: Mutex<HashMap<i64, watch::Sender<Option<String>>>>,
    upload_target: Mutex<Option<UploadTarget>>,
}

impl Jobs {
    pub fn new(settings: JobSettings, outbox: Arc<Outbox>) -> Arc<Self> {
        Arc::new(Self {
            settings,
            outbox,
            running: Mutex::new(HashMap::new()),
            upload_target: Mutex::new(None),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, watch::Sender<Option<String>>>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Uses this connection and identity for artifact uploads from now on.
    pub fn set_upload_target(&self, target: UploadTarget) {
        *self
            .upload_target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(target);
    }

    fn upload_target(&self) -> Option<UploadTarget> {
        self.upload_target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Starts a job, unless it already runs or ran here (a repeated assignment).
    pub fn start(self: &Arc<Self>, assignment: pb::JobAssignment) {
        let execution_id = assignment.execution_id;
        if self.outbox.knows(execution_id) {
            tracing::info!(execution_id, "assignment repeated; the job is already here");
            return;
        }
        let (cancel, cancelled) = watch::channel(None);
        {
            let mut running = self.running();
            if running.contains_key(&execution_id) {
                return;
            }
            running.insert(execution_id, cancel);
        }
        let jobs = self.clone();
        tokio::spawn(async move {
            runner::run_job(&jobs, assignment, cancelled).await;
            jobs.running().remove(&execution_id);
        });
    }

    /// Asks a running job to stop; repeats are harmless.
    pub fn cancel(&self, execution_id: i64, reason: String) {
        if let Some(cancel) = self.running().get(&execution_id) {
            cancel.send_if_modified(|current| {
                if current.is_none() {
                    *current = Some(reason);
                    true
                } else {
                    false
                }
            });
        }
    }

    /// Executions the server should keep leasing to this agent: running, or with events it has
    /// not acknowledged yet.
    pub fn running_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.running().keys().copied().collect();
        for pending in self.outbox.pending_executions() {
            if !ids.contains(&pending) {
                ids.push(pending);
            }
        }
        ids.sort_unstable();
        ids
    }

    /// Jobs running now.
    pub fn running_count(&self) -> u32 {
        u32::try_from(self.running().len()).unwrap_or(u32::MAX)
    }

    /// Asks every running job to stop (the agent is shutting down).
    pub fn cancel_all(&self, reason: &str) {
        for cancel in self.running().values() {
            let _ = cancel.send(Some(reason.to_owned()));
        }
    }
}
