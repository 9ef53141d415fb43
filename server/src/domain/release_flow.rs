//! The rules of a release execution, as pure functions: given where a release execution and its
//! stages are, what its next move is; given who asks, whether a stage may be approved or
//! rejected. The store reads the state under the release execution's lock, asks these, and
//! applies the answer in the same transaction.

use super::execution::ExecutionStatus;
use super::release::{Environment, ReleaseExecutionStatus, StageStatus};
use super::{Refusal, StageExecutionId, UserId};

/// What the rules need to know of one stage execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageState {
    pub id: StageExecutionId,
    pub order: i32,
    pub environment_name: String,
    pub status: StageStatus,
    pub requires_approval: bool,
    pub approved: bool,
    /// The stage's deploy execution once it started: its status and failure reason.
    pub deploy: Option<(ExecutionStatus, String)>,
}

impl StageState {
    /// How the stage is named in reasons: `stage 2 (Staging)`.
    fn label(&self) -> String {
        format!("stage {} ({})", self.order, self.environment_name)
    }
}

/// What the rules need to know of a release execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseState {
    pub status: ReleaseExecutionStatus,
    /// Someone asked to cancel it.
    pub cancel_requested: bool,
    /// In stage order.
    pub stages: Vec<StageState>,
}

/// One change of a move; a move is a list of them, applied in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The stage's deploy succeeded: the stage is done.
    StageSucceeded(StageExecutionId),
    /// The stage ends without success (`Failed` or `Cancelled`) for `reason`.
    StageEnded {
        stage: StageExecutionId,
        status: StageStatus,
        reason: String,
    },
    /// Every stage not started yet (pending or awaiting approval) is skipped for `reason`.
    SkipRemaining(String),
    /// The release execution is marked as asked to cancel.
    CancelRequested,
    /// The release execution is under way (it enters a stage).
    InProgress,
    /// The stage waits for an approval.
    AwaitApproval(StageExecutionId),
    /// The stage's deploy starts.
    StartStage(StageExecutionId),
    /// The release execution ends.
    Finish {
        status: ReleaseExecutionStatus,
        reason: String,
    },
}

/// The next move of a release execution: stages whose deploy ended are closed, then the first
/// stage not done decides — a running deploy or a pending approval means waiting, a pending
/// stage is entered (after an approval if it needs one), a failed or cancelled deploy ends the
/// release. When every stage succeeded, the release succeeded. An ended release makes no move,
/// so applying a move twice changes nothing the second time.
pub fn next_move(release: &ReleaseState) -> Vec<Change> {
    let mut changes = Vec::new();
    if release.status.is_terminal() {
        return changes;
    }
    for stage in &release.stages {
        match stage.status {
            StageStatus::Succeeded => continue,
            StageStatus::InProgress => {
                match &stage.deploy {
                    Some((ExecutionStatus::Succeeded, _)) => {
                        changes.push(Change::StageSucceeded(stage.id));
                        continue;
                    }
                    Some((ExecutionStatus::Cancelled, reason)) => {
                        changes.extend(end_stage(
                            stage,
                            StageStatus::Cancelled,
                            reason,
                            "the release was cancelled",
                            ReleaseExecutionStatus::Cancelled,
                            format!("{}: {reason}", stage.label()),
                        ));
                    }
                    Some((ExecutionStatus::Failed | ExecutionStatus::TimedOut, reason)) => {
                        changes.extend(end_stage(
                            stage,
                            StageStatus::Failed,
                            reason,
                            "an earlier stage failed",
                            ReleaseExecutionStatus::Failed,
                            format!("{} failed: {reason}", stage.label()),
                        ));
                    }
                    // Still queued or running.
                    _ => {}
                }
                return changes;
            }
            StageStatus::AwaitingApproval => return changes,
            StageStatus::Pending => {
                if release.cancel_requested {
                    changes.push(Change::SkipRemaining("the release was cancelled".into()));
                    changes.push(Change::Finish {
                        status: ReleaseExecutionStatus::Cancelled,
                        reason: "cancelled before this stage started".into(),
                    });
                    return changes;
                }
                changes.push(Change::InProgress);
                if stage.requires_approval && !stage.approved {
                    changes.push(Change::AwaitApproval(stage.id));
                } else {
                    changes.push(Change::StartStage(stage.id));
                }
                return changes;
            }
            StageStatus::Failed | StageStatus::Cancelled | StageStatus::Skipped => {
                // A cancellation skipped the stages after one whose deploy had already ended:
                // the release was cancelled. Otherwise only possible when the release already
                // ended; make it consistent.
                changes.push(if release.cancel_requested {
                    Change::Finish {
                        status: ReleaseExecutionStatus::Cancelled,
                        reason: "cancelled after the previous stage ended".into(),
                    }
                } else {
                    Change::Finish {
                        status: ReleaseExecutionStatus::Failed,
                        reason: "a stage did not succeed".into(),
                    }
                });
                return changes;
            }
        }
    }
    changes.push(Change::Finish {
        status: ReleaseExecutionStatus::Succeeded,
        reason: String::new(),
    });
    changes
}

/// The move when a stage's deploy could not even be queued (its pipeline was deleted, or its
/// parameters no longer fit it): the stage fails and so does the release.
pub fn stage_not_started(stage: &StageState, reason: &str) -> Vec<Change> {
    end_stage(
        stage,
        StageStatus::Failed,
        reason,
        "an earlier stage failed",
        ReleaseExecutionStatus::Failed,
        format!("{}: {reason}", stage.label()),
    )
}

/// What cancelling a release execution does at once: stages not started are skipped; a stage
/// whose deploy runs has it cancelled (returned), and the release ends when that deploy has
/// stopped; with none running, the release ends now. An ended release is left as it is.
pub fn cancel_move(
    release: &ReleaseState,
    reason: &str,
) -> (Vec<Change>, Option<StageExecutionId>) {
    if release.status.is_terminal() {
        return (Vec::new(), None);
    }
    let mut changes = vec![
        Change::CancelRequested,
        Change::SkipRemaining(reason.to_owned()),
    ];
    let running = release
        .stages
        .iter()
        .find(|stage| stage.status == StageStatus::InProgress && stage.deploy.is_some());
    match running {
        Some(stage) => (changes, Some(stage.id)),
        None => {
            changes.push(Change::Finish {
                status: ReleaseExecutionStatus::Cancelled,
                reason: reason.to_owned(),
            });
            (changes, None)
        }
    }
}

/// What rejecting a stage does to the release (after the stage itself was closed with the
/// rejection): the rest is skipped and the release ends `rejected`, naming the environment and
/// `reason`.
pub fn reject_move(environment_name: &str, reason: &str) -> Vec<Change> {
    vec![
        Change::SkipRemaining("the release was rejected".into()),
        Change::Finish {
            status: ReleaseExecutionStatus::Rejected,
            reason: format!("{environment_name} {reason}"),
        },
    ]
}

fn end_stage(
    stage: &StageState,
    status: StageStatus,
    reason: &str,
    skip_reason: &str,
    release_status: ReleaseExecutionStatus,
    release_reason: String,
) -> Vec<Change> {
    vec![
        Change::StageEnded {
            stage: stage.id,
            status,
            reason: reason.to_owned(),
        },
        Change::SkipRemaining(skip_reason.to_owned()),
        Change::Finish {
            status: release_status,
            reason: release_reason,
        },
    ]
}

/// Approving or rejecting a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

/// Who decides what about which stage; the approver's role was checked against the
/// environment's approver roles already (`auth::permissions::require_stage_approver`).
#[derive(Debug, Clone, Copy)]
pub struct DecisionRequest<'a> {
    pub decision: Decision,
    pub actor: UserId,
    pub stage_id: StageExecutionId,
    pub stage_status: StageStatus,
    pub environment: &'a Environment,
    /// Who deployed the release execution.
    pub deployed_by: UserId,
    /// How the release execution is named in messages (`Web App Release-3`).
    pub release_label: &'a str,
    /// The digest of what the stage will run (empty for stages deployed before snapshots).
    pub snapshot_digest: &'a str,
    /// The digest the approver reviewed, if they named one.
    pub reviewed_digest: &'a str,
}

/// Whether the decision may be made: the stage must await approval; whoever deployed may not
/// approve it themselves unless its environment allows self-approval (whatever the
/// environment is called); an approval that names a digest binds exactly that snapshot.
pub fn check_decision(request: &DecisionRequest<'_>) -> Result<(), Refusal> {
    if request.stage_status != StageStatus::AwaitingApproval {
        return Err(Refusal::WrongState(format!(
            "stage execution {} is {}, not awaiting approval",
            request.stage_id,
            request.stage_status.as_str().replace('_', " ")
        )));
    }
    if request.decision != Decision::Approve {
        return Ok(());
    }
    if request.actor == request.deployed_by && !request.environment.allow_self_approval {
        return Err(Refusal::NotPermitted(format!(
            "the person who deployed {} may not approve its {} stage (environment setting allow_self_approval is off)",
            request.release_label, request.environment.name
        )));
    }
    if !request.reviewed_digest.is_empty() && request.reviewed_digest != request.snapshot_digest {
        return Err(Refusal::WrongState(format!(
            "snapshot_digest {} is not what stage execution {} runs ({})",
            request.reviewed_digest,
            request.stage_id,
            if request.snapshot_digest.is_empty() {
                "no snapshot"
            } else {
                request.snapshot_digest
            }
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CustomerId, EnvironmentId, Role};

    fn stage(id: i64, status: StageStatus) -> StageState {
        StageState {
            id: StageExecutionId::from_db(id),
            order: i32::try_from(id).unwrap_or_default(),
            environment_name: format!("env{id}"),
            status,
            requires_approval: false,
            approved: false,
            deploy: None,
        }
    }

    fn running(id: i64, deploy: ExecutionStatus, reason: &str) -> StageState {
        StageState {
            deploy: Some((deploy, reason.to_owned())),
            ..stage(id, StageStatus::InProgress)
        }
    }

    fn release(stages: Vec<StageState>) -> ReleaseState {
        ReleaseState {
            status: ReleaseExecutionStatus::InProgress,
            cancel_requested: false,
            stages,
        }
    }

    fn id(value: i64) -> StageExecutionId {
        StageExecutionId::from_db(value)
    }

    #[test]
    fn an_ended_release_makes_no_move() {
        for status in [
            ReleaseExecutionStatus::Succeeded,
            ReleaseExecutionStatus::Failed,
            ReleaseExecutionStatus::Cancelled,
            ReleaseExecutionStatus::Rejected,
        ] {
            let state = ReleaseState {
                status,
                ..release(vec![stage(1, StageStatus::Pending)])
            };
            assert_eq!(next_move(&state), vec![]);
        }
    }

    #[test]
    fn a_pending_stage_starts_and_the_release_is_under_way() {
        let state = ReleaseState {
            status: ReleaseExecutionStatus::Pending,
            ..release(vec![
                stage(1, StageStatus::Pending),
                stage(2, StageStatus::Pending),
            ])
        };
        assert_eq!(
            next_move(&state),
            vec![Change::InProgress, Change::StartStage(id(1))]
        );
    }

    #[test]
    fn a_stage_needing_approval_waits_until_approved() {
        let mut gated = stage(2, StageStatus::Pending);
        gated.requires_approval = true;
        let state = release(vec![running(1, ExecutionStatus::Succeeded, ""), gated]);
        assert_eq!(
            next_move(&state),
            vec![
                Change::StageSucceeded(id(1)),
                Change::InProgress,
                Change::AwaitApproval(id(2))
            ]
        );
        let mut approved = stage(2, StageStatus::Pending);
        approved.requires_approval = true;
        approved.approved = true;
        let state = release(vec![stage(1, StageStatus::Succeeded), approved]);
        assert_eq!(
            next_move(&state),
            vec![Change::InProgress, Change::StartStage(id(2))]
        );
    }

    #[test]
    fn waiting_stages_make_no_move() {
        for deploy in [
            ExecutionStatus::Queued,
            ExecutionStatus::Assigned,
            ExecutionStatus::Running,
        ] {
            let state = release(vec![running(1, deploy, ""), stage(2, StageStatus::Pending)]);
            assert_eq!(next_move(&state), vec![], "{deploy:?}");
        }
        let state = release(vec![
            stage(1, StageStatus::AwaitingApproval),
            stage(2, StageStatus::Pending),
        ]);
        assert_eq!(next_move(&state), vec![]);
    }

    #[test]
    fn the_last_stage_succeeding_ends_the_release() {
        let state = release(vec![
            stage(1, StageStatus::Succeeded),
            running(2, ExecutionStatus::Succeeded, ""),
        ]);
        assert_eq!(
            next_move(&state),
            vec![
                Change::StageSucceeded(id(2)),
                Change::Finish {
                    status: ReleaseExecutionStatus::Succeeded,
                    reason: String::new()
                }
            ]
        );
    }

    #[test]
    fn a_failed_or_timed_out_deploy_fails_the_release_and_skips_the_rest() {
        for deploy in [ExecutionStatus::Failed, ExecutionStatus::TimedOut] {
            let state = release(vec![
                running(1, deploy, "exit code 1"),
                stage(2, StageStatus::Pending),
            ]);
            assert_eq!(
                next_move(&state),
                vec![
                    Change::StageEnded {
                        stage: id(1),
                        status: StageStatus::Failed,
                        reason: "exit code 1".into()
                    },
                    Change::SkipRemaining("an earlier stage failed".into()),
                    Change::Finish {
                        status: ReleaseExecutionStatus::Failed,
                        reason: "stage 1 (env1) failed: exit code 1".into()
                    }
                ]
            );
        }
    }

    #[test]
    fn a_cancelled_deploy_cancels_the_release() {
        let state = release(vec![running(
            1,
            ExecutionStatus::Cancelled,
            "cancelled by ops",
        )]);
        assert_eq!(
            next_move(&state),
            vec![
                Change::StageEnded {
                    stage: id(1),
                    status: StageStatus::Cancelled,
                    reason: "cancelled by ops".into()
                },
                Change::SkipRemaining("the release was cancelled".into()),
                Change::Finish {
                    status: ReleaseExecutionStatus::Cancelled,
                    reason: "stage 1 (env1): cancelled by ops".into()
                }
            ]
        );
    }

    #[test]
    fn a_cancel_request_stops_the_release_before_the_next_stage() {
        let state = ReleaseState {
            cancel_requested: true,
            ..release(vec![
                running(1, ExecutionStatus::Succeeded, ""),
                stage(2, StageStatus::Pending),
            ])
        };
        assert_eq!(
            next_move(&state),
            vec![
                Change::StageSucceeded(id(1)),
                Change::SkipRemaining("the release was cancelled".into()),
                Change::Finish {
                    status: ReleaseExecutionStatus::Cancelled,
                    reason: "cancelled before this stage started".into()
                }
            ]
        );
    }

    #[test]
    fn a_cancel_after_the_deploy_ended_cancels_the_release() {
        // The deploy succeeded just before the cancellation skipped the next stage.
        let state = ReleaseState {
            cancel_requested: true,
            ..release(vec![
                running(1, ExecutionStatus::Succeeded, ""),
                stage(2, StageStatus::Skipped),
            ])
        };
        assert_eq!(
            next_move(&state),
            vec![
                Change::StageSucceeded(id(1)),
                Change::Finish {
                    status: ReleaseExecutionStatus::Cancelled,
                    reason: "cancelled after the previous stage ended".into()
                }
            ]
        );
    }

    #[test]
    fn a_rejection_skips_the_rest_and_ends_the_release() {
        assert_eq!(
            reject_move("Production", "rejected by ops: not today"),
            vec![
                Change::SkipRemaining("the release was rejected".into()),
                Change::Finish {
                    status: ReleaseExecutionStatus::Rejected,
                    reason: "Production rejected by ops: not today".into()
                }
            ]
        );
    }

    #[test]
    fn an_inconsistent_stage_fails_the_release() {
        for status in [
            StageStatus::Failed,
            StageStatus::Cancelled,
            StageStatus::Skipped,
        ] {
            let state = release(vec![stage(1, status)]);
            assert_eq!(
                next_move(&state),
                vec![Change::Finish {
                    status: ReleaseExecutionStatus::Failed,
                    reason: "a stage did not succeed".into()
                }]
            );
        }
    }

    #[test]
    fn a_stage_that_cannot_start_fails_the_release() {
        assert_eq!(
            stage_not_started(
                &stage(3, StageStatus::Pending),
                "deploy pipeline 9 was deleted"
            ),
            vec![
                Change::StageEnded {
                    stage: id(3),
                    status: StageStatus::Failed,
                    reason: "deploy pipeline 9 was deleted".into()
                },
                Change::SkipRemaining("an earlier stage failed".into()),
                Change::Finish {
                    status: ReleaseExecutionStatus::Failed,
                    reason: "stage 3 (env3): deploy pipeline 9 was deleted".into()
                }
            ]
        );
    }

    #[test]
    fn cancelling_skips_what_has_not_started_and_stops_what_runs() {
        let waiting = release(vec![
            stage(1, StageStatus::Succeeded),
            stage(2, StageStatus::AwaitingApproval),
        ]);
        assert_eq!(
            cancel_move(&waiting, "cancelled by ops"),
            (
                vec![
                    Change::CancelRequested,
                    Change::SkipRemaining("cancelled by ops".into()),
                    Change::Finish {
                        status: ReleaseExecutionStatus::Cancelled,
                        reason: "cancelled by ops".into()
                    }
                ],
                None
            )
        );
        let deploying = release(vec![
            running(1, ExecutionStatus::Running, ""),
            stage(2, StageStatus::Pending),
        ]);
        assert_eq!(
            cancel_move(&deploying, "cancelled by ops"),
            (
                vec![
                    Change::CancelRequested,
                    Change::SkipRemaining("cancelled by ops".into())
                ],
                Some(id(1))
            )
        );
        let ended = ReleaseState {
            status: ReleaseExecutionStatus::Succeeded,
            ..waiting
        };
        assert_eq!(cancel_move(&ended, "cancelled by ops"), (vec![], None));
    }

    fn environment(name: &str, allow_self_approval: bool) -> Environment {
        Environment {
            id: EnvironmentId::from_db(1),
            customer_id: CustomerId::from_db(1),
            name: name.to_owned(),
            description: String::new(),
            order: 1,
            requires_approval: true,
            approver_roles: vec![Role::Admin, Role::Devops],
            allow_self_approval,
            created_at: chrono::DateTime::UNIX_EPOCH,
            updated_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn decide_reviewed(
        decision: Decision,
        actor: i64,
        status: StageStatus,
        environment: &Environment,
        reviewed_digest: &str,
    ) -> Result<(), Refusal> {
        check_decision(&DecisionRequest {
            decision,
            actor: UserId::from_db(actor),
            stage_id: id(7),
            stage_status: status,
            environment,
            deployed_by: UserId::from_db(1),
            release_label: "App Release-2",
            snapshot_digest: "sha256:aa",
            reviewed_digest,
        })
    }

    fn decide(
        decision: Decision,
        actor: i64,
        status: StageStatus,
        environment: &Environment,
    ) -> Result<(), Refusal> {
        decide_reviewed(decision, actor, status, environment, "")
    }

    #[test]
    fn only_a_stage_awaiting_approval_is_decided() {
        let staging = environment("Staging", false);
        for status in StageStatus::ALL {
            for decision in [Decision::Approve, Decision::Reject] {
                let result = decide(decision, 2, status, &staging);
                if status == StageStatus::AwaitingApproval {
                    assert_eq!(result, Ok(()));
                } else {
                    assert!(
                        matches!(&result, Err(Refusal::WrongState(message)) if message.contains("not awaiting approval")),
                        "{status:?}: {result:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_deployer_approves_no_gated_environment_unless_it_allows_self_approval() {
        let awaiting = StageStatus::AwaitingApproval;
        // Whatever the environment is called.
        for name in ["Production", "prod-eu", "Staging"] {
            let strict = environment(name, false);
            let refused = decide(Decision::Approve, 1, awaiting, &strict);
            assert!(
                matches!(&refused, Err(Refusal::NotPermitted(message)) if message.contains(&format!("may not approve its {name} stage"))),
                "{refused:?}"
            );
            // Someone else may approve; the deployer may reject.
            assert_eq!(decide(Decision::Approve, 2, awaiting, &strict), Ok(()));
            assert_eq!(decide(Decision::Reject, 1, awaiting, &strict), Ok(()));
            let lenient = environment(name, true);
            assert_eq!(decide(Decision::Approve, 1, awaiting, &lenient), Ok(()));
        }
    }

    #[test]
    fn an_approval_naming_a_digest_binds_that_snapshot() {
        let production = environment("Production", false);
        let awaiting = StageStatus::AwaitingApproval;
        assert_eq!(
            decide_reviewed(Decision::Approve, 2, awaiting, &production, "sha256:aa"),
            Ok(())
        );
        let refused = decide_reviewed(Decision::Approve, 2, awaiting, &production, "sha256:bb");
        assert!(
            matches!(&refused, Err(Refusal::WrongState(message)) if message.contains("is not what stage execution 7 runs")),
            "{refused:?}"
        );
    }
}
