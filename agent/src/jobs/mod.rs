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
use tracing::Instrument;

use cygnet_proto::v1 as pb;
use tokio::sync::watch;
use tonic::transport::Channel;

pub use outbox::Outbox;

use crate::step_groups::StepGroups;
use crate::step_user::StepUser;

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
    /// The unprivileged user steps run as (`RunStepsAs`), owner of the job directories.
    pub run_as: Option<Arc<StepUser>>,
    /// Where running steps' process groups are recorded.
    pub step_groups: Arc<StepGroups>,
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
    /// Held (shared) by every running job; the sweep of the step user's processes takes it
    /// alone, so it runs only when no job does and no job starts meanwhile.
    steps: tokio::sync::RwLock<()>,
}

impl Jobs {
    pub fn new(settings: JobSettings, outbox: Arc<Outbox>) -> Arc<Self> {
        Arc::new(Self {
            settings,
            outbox,
            running: Mutex::new(HashMap::new()),
            upload_target: Mutex::new(None),
            steps: tokio::sync::RwLock::new(()),
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
        // Every log line of the job names its customer, pipeline and execution.
        let span = tracing::info_span!(
            "job",
            customer_id = assignment.customer_id,
            pipeline_id = assignment.pipeline_id,
            execution_id
        );
        tokio::spawn(
            async move {
                let job = jobs.steps.read().await;
                runner::run_job(&jobs, assignment, cancelled).await;
                drop(job);
                jobs.running().remove(&execution_id);
                // The last job out ends whatever its steps left behind as the step user.
                if let Some(user) = &jobs.settings.run_as
                    && let Ok(_alone) = jobs.steps.try_write()
                {
                    user.sweep().await;
                }
            }
            .instrument(span),
        );
    }

    /// Ends whatever earlier steps left running as the step user outside their process groups
    /// (at start-up, before any job runs).
    pub async fn sweep_step_user(&self) {
        if let Some(user) = &self.settings.run_as {
            let _alone = self.steps.write().await;
            user.sweep().await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(work: &std::path::Path) -> JobSettings {
        JobSettings {
            customer_id: 1,
            work_directory: work.to_path_buf(),
            kill_grace: Duration::from_secs(1),
            max_log_bytes: 1 << 20,
            keep_workspaces: 0,
            max_artifact_bytes: 1 << 20,
            run_as: None,
            step_groups: Arc::new(StepGroups::open(work).expect("step groups")),
        }
    }

    async fn events_of(outbox: &Outbox, execution_id: i64) -> Vec<pb::job_event::Event> {
        loop {
            let events: Vec<_> = outbox
                .take_unsent()
                .into_iter()
                .filter(|event| event.execution_id == execution_id)
                .filter_map(|event| event.event)
                .collect();
            if !events.is_empty() {
                return events;
            }
            outbox.changed.notified().await;
        }
    }

    #[tokio::test]
    async fn a_job_of_another_customer_is_refused_and_nothing_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let outbox = Arc::new(Outbox::new(dir.path(), 1 << 20));
        let jobs = Jobs::new(settings(&dir.path().join("work")), outbox.clone());
        jobs.start(pb::JobAssignment {
            execution_id: 9,
            customer_id: 2,
            pipeline_id: 3,
            pipeline_name: "theirs".into(),
            steps: vec![pb::Step {
                name: "evil".into(),
                command: "touch /tmp/should-not-exist".into(),
                ..Default::default()
            }],
            parameters: Default::default(),
            timeout_seconds: 60,
            release: None,
            variables: vec![],
        });
        let events = tokio::time::timeout(Duration::from_secs(5), events_of(&outbox, 9))
            .await
            .expect("refusal reported");
        match events.as_slice() {
            [pb::job_event::Event::Rejected(rejected)] => {
                assert!(
                    rejected.reason.contains("belongs to customer 1"),
                    "{}",
                    rejected.reason
                );
            }
            other => panic!("expected one refusal, got {other:?}"),
        }
        assert!(
            !dir.path().join("work/2").exists(),
            "no workspace for another customer"
        );
    }

    #[tokio::test]
    async fn a_repeated_assignment_is_not_run_twice() {
        let dir = tempfile::tempdir().expect("temp dir");
        let outbox = Arc::new(Outbox::new(dir.path(), 1 << 20));
        let jobs = Jobs::new(settings(&dir.path().join("work")), outbox.clone());
        let assignment = pb::JobAssignment {
            execution_id: 5,
            customer_id: 1,
            pipeline_id: 3,
            pipeline_name: "ours".into(),
            steps: vec![pb::Step {
                name: "count".into(),
                command: "echo ran >> ../runs.txt".into(),
                ..Default::default()
            }],
            parameters: Default::default(),
            timeout_seconds: 60,
            release: None,
            variables: vec![],
        };
        jobs.start(assignment.clone());
        jobs.start(assignment.clone());
        // Wait for the job's last event, then assign once more.
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let finished = outbox
                    .take_unsent()
                    .into_iter()
                    .any(|event| matches!(event.event, Some(pb::job_event::Event::Finished(_))));
                if finished {
                    return;
                }
                outbox.changed.notified().await;
            }
        })
        .await
        .expect("job finished");
        // Its events are not acknowledged yet: the agent still knows the job and does not start it.
        let before = jobs.running_count();
        jobs.start(assignment);
        assert!(jobs.running_count() <= before, "not started again");
        let runs = std::fs::read_to_string(dir.path().join("work/1/3/runs.txt")).expect("runs");
        assert_eq!(runs.lines().count(), 1, "ran exactly once");
    }
}
