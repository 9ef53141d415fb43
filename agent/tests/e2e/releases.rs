//! Releases shipped by the real agent: Development → QA → Staging (approval) → Production
//! (approval), strictly in order; approver roles; the deployer's own production approval; a
//! rejection; a failing deploy; a cancellation mid-stage; the build artifact arriving in the
//! deploy workspace with its sha256; and another customer seeing none of it.

use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_testkit::{Backend, TestServer, assert_status, eventually, step};
use pb::StageStatus as Stage;
use sha2::Digest;
use tonic::Code;

use crate::common::*;

struct World {
    acme: pb::Customer,
    build: pb::Pipeline,
    build_execution: pb::Execution,
    deploy: pb::Pipeline,
    environments: std::collections::HashMap<String, pb::Environment>,
    viewer: cygnet_testkit::TestUser,
    qa: cygnet_testkit::TestUser,
    ops: cygnet_testkit::TestUser,
    _host: Host,
    agent: AgentProcess,
}

async fn world(server: &TestServer) -> World {
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;
    let host = Host::new(server, acme.id, "acme-deployer", Some(&token));
    let agent = host.spawn();
    eventually("agent online", Duration::from_secs(10), || {
        is_online_with_figures(server, acme.id, "acme-deployer")
    })
    .await;
    let viewer = server.create_user("viewer").await;
    let qa = server.create_user("qa1").await;
    let ops = server.create_user("ops").await;
    server
        .add_member(acme.id, viewer.id, pb::Role::Viewer)
        .await;
    server.add_member(acme.id, qa.id, pb::Role::Qa).await;
    server.add_member(acme.id, ops.id, pb::Role::Devops).await;

    let mut build_step = step(
        "build",
        "mkdir -p dist; printf 'release-artifact' > dist/app.bin",
    );
    build_step.artifacts = vec!["dist/app.bin".into()];
    let build = server
        .create_pipeline(acme.id, "Build API", vec![build_step], vec![])
        .await;
    let build_execution = server.run_pipeline(acme.id, build.id, &[]).await;
    let finished = cygnet_testkit::final_execution(
        &server
            .watch_to_end(acme.id, build_execution.id, Duration::from_secs(30))
            .await,
    );
    assert_eq!(finished.status(), pb::ExecutionStatus::Succeeded);
    let deploy = server
        .create_pipeline(
            acme.id,
            "Deploy API",
            vec![step(
                "deploy",
                &format!(
                    "echo \"deploying $RELEASE_NAME #$RELEASE_NUMBER ($RELEASE_VERSION) to $ENVIRONMENT_NAME with {{{{TARGET}}}}\"; sha256sum \"$CYGNET_ARTIFACTS_DIR/{}/dist/app.bin\"",
                    build.id
                ),
            )],
            vec![pb::Parameter {
                name: "TARGET".into(),
                default_value: "blue".into(),
                ..Default::default()
            }],
        )
        .await;
    let environments = server.environments(acme.id).await;
    World {
        acme,
        build,
        build_execution,
        deploy,
        environments,
        viewer,
        qa,
        ops,
        _host: host,
        agent,
    }
}

fn four_stages(world: &World, deploy_pipeline: i64) -> Vec<pb::ReleaseStage> {
    ["Development", "QA", "Staging", "Production"]
        .iter()
        .enumerate()
        .map(|(index, name)| pb::ReleaseStage {
            order: index as i32 + 1,
            environment_id: world.environments[*name].id,
            pipeline_id: deploy_pipeline,
            ..Default::default()
        })
        .collect()
}

async fn create_release(
    server: &TestServer,
    world: &World,
    name: &str,
    stages: Vec<pb::ReleaseStage>,
) -> pb::Release {
    server
        .releases(&world.ops.token)
        .create_release(pb::CreateReleaseRequest {
            customer_id: world.acme.id,
            name: name.into(),
            pipeline_ids: vec![world.build.id],
            stages,
            ..Default::default()
        })
        .await
        .expect("create release")
        .into_inner()
        .release
        .expect("release")
}

async fn deploy(
    server: &TestServer,
    world: &World,
    token: &str,
    release_id: i64,
    version: &str,
) -> pb::ReleaseExecution {
    server
        .releases(token)
        .deploy_release(pb::DeployReleaseRequest {
            customer_id: world.acme.id,
            release_id,
            version: version.into(),
            ..Default::default()
        })
        .await
        .expect("deploy")
        .into_inner()
        .release_execution
        .expect("release execution")
}

fn statuses(execution: &pb::ReleaseExecution) -> Vec<Stage> {
    execution
        .stages
        .iter()
        .map(|stage| stage.status())
        .collect()
}

async fn wait_for_stages(
    server: &TestServer,
    customer_id: i64,
    id: i64,
    wanted: &[Stage],
) -> pb::ReleaseExecution {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let current = server.release_execution(customer_id, id).await;
        if statuses(&current) == wanted {
            return current;
        }
        if tokio::time::Instant::now() > deadline {
            // Say what happened instead, with the deploys' logs.
            let mut report =
                format!("stages {wanted:?} not reached; release execution: {current:#?}\n");
            for stage in &current.stages {
                if stage.execution_id > 0 {
                    let log: String = server
                        .logs(customer_id, stage.execution_id)
                        .await
                        .into_iter()
                        .map(|chunk| chunk.text)
                        .collect();
                    report.push_str(&format!(
                        "--- log of execution {} ---\n{log}\n",
                        stage.execution_id
                    ));
                }
            }
            panic!("{report}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn decide(
    server: &TestServer,
    token: &str,
    customer_id: i64,
    stage_execution_id: i64,
    approve: bool,
    comment: &str,
) -> Result<pb::ReleaseExecution, tonic::Status> {
    let mut client = server.releases(token);
    if approve {
        client
            .approve_stage(pb::ApproveStageRequest {
                customer_id,
                stage_execution_id,
                comment: comment.into(),
                ..Default::default()
            })
            .await
            .map(|response| {
                response
                    .into_inner()
                    .release_execution
                    .expect("release execution")
            })
    } else {
        client
            .reject_stage(pb::RejectStageRequest {
                customer_id,
                stage_execution_id,
                comment: comment.into(),
            })
            .await
            .map(|response| {
                response
                    .into_inner()
                    .release_execution
                    .expect("release execution")
            })
    }
}

async fn stages_run_in_order_with_approvals_and_artifacts(backend: Backend) {
    let server = TestServer::start_with(backend, one_second_heartbeats()).await;
    let world = world(&server).await;
    let customer_id = world.acme.id;
    let release = create_release(
        &server,
        &world,
        "API v2",
        four_stages(&world, world.deploy.id),
    )
    .await;

    let deployed = deploy(&server, &world, &world.ops.token, release.id, "2.0.1").await;
    assert_eq!((deployed.name.as_str(), deployed.number), ("Release-1", 1));
    assert_eq!(
        deployed.builds,
        [pb::ShippedBuild {
            pipeline_id: world.build.id,
            execution_id: world.build_execution.id
        }]
    );
    // Development and QA run one after the other, then Staging waits for an approver.
    let waiting = wait_for_stages(
        &server,
        customer_id,
        deployed.id,
        &[
            Stage::Succeeded,
            Stage::Succeeded,
            Stage::AwaitingApproval,
            Stage::Pending,
        ],
    )
    .await;
    assert_eq!(waiting.status(), pb::ReleaseExecutionStatus::InProgress);
    let development = &waiting.stages[0];
    let qa_stage = &waiting.stages[1];
    assert!(
        development.execution_id > 0 && qa_stage.execution_id > development.execution_id,
        "strictly in order"
    );
    assert!(
        development
            .finished_at
            .as_ref()
            .map(|at| (at.seconds, at.nanos))
            <= qa_stage
                .started_at
                .as_ref()
                .map(|at| (at.seconds, at.nanos))
    );
    // The deploy saw its release, environment, parameters and the build's artifact.
    let log: String = server
        .logs(customer_id, development.execution_id)
        .await
        .into_iter()
        .map(|chunk| chunk.text)
        .collect();
    assert!(
        log.contains("deploying API v2 #1 (2.0.1) to Development with blue"),
        "{log}"
    );
    let digest = hex::encode(sha2::Sha256::digest(b"release-artifact"));
    assert!(log.contains(&digest), "the artifact arrived intact:\n{log}");
    assert!(log.contains("fetched artifact dist/app.bin"), "{log}");
    let shipped = server
        .admin_releases()
        .list_release_artifacts(pb::ListReleaseArtifactsRequest {
            customer_id,
            release_execution_id: deployed.id,
        })
        .await
        .expect("artifacts")
        .into_inner()
        .artifacts;
    assert_eq!(
        shipped
            .iter()
            .map(|artifact| artifact.sha256.as_str())
            .collect::<Vec<_>>(),
        [digest.as_str()]
    );

    let staging = waiting.stages[2].id;
    assert_status(
        decide(&server, &world.viewer.token, customer_id, staging, true, "").await,
        Code::PermissionDenied,
        "role viewer may not approve",
    );
    let approved = decide(
        &server,
        &world.qa.token,
        customer_id,
        staging,
        true,
        "looks good",
    )
    .await
    .expect("qa approves staging");
    assert_eq!(approved.stages[2].approved_by, world.qa.id);
    assert_eq!(approved.stages[2].comment, "looks good");
    let waiting = wait_for_stages(
        &server,
        customer_id,
        deployed.id,
        &[
            Stage::Succeeded,
            Stage::Succeeded,
            Stage::Succeeded,
            Stage::AwaitingApproval,
        ],
    )
    .await;
    let production = waiting.stages[3].id;
    // Production: qa is not an approver there, and the deployer may not approve their own.
    assert_status(
        decide(&server, &world.qa.token, customer_id, production, true, "").await,
        Code::PermissionDenied,
        "role qa may not approve",
    );
    assert_status(
        decide(&server, &world.ops.token, customer_id, production, true, "").await,
        Code::PermissionDenied,
        "may not approve its Production stage",
    );
    // Approving what is not awaiting approval is refused.
    assert_status(
        decide(
            &server,
            cygnet_testkit::ADMIN_TOKEN,
            customer_id,
            staging,
            true,
            "",
        )
        .await,
        Code::FailedPrecondition,
        "not awaiting approval",
    );
    decide(
        &server,
        cygnet_testkit::ADMIN_TOKEN,
        customer_id,
        production,
        true,
        "ship it",
    )
    .await
    .expect("admin approves");
    let mut watch = server
        .admin_releases()
        .watch_release_execution(pb::WatchReleaseExecutionRequest {
            customer_id,
            release_execution_id: deployed.id,
        })
        .await
        .expect("watch")
        .into_inner();
    let mut last = None;
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(message) = watch.message().await.expect("watch stream") {
            last = message.release_execution;
        }
    })
    .await
    .expect("release finished");
    let finished = last.expect("an update");
    assert_eq!(finished.status(), pb::ReleaseExecutionStatus::Succeeded);
    assert_eq!(statuses(&finished), [Stage::Succeeded; 4]);

    // A second deployment, rejected at Staging: the rest is skipped.
    let second = deploy(&server, &world, &world.ops.token, release.id, "2.0.2").await;
    assert_eq!(second.number, 2);
    let waiting = wait_for_stages(
        &server,
        customer_id,
        second.id,
        &[
            Stage::Succeeded,
            Stage::Succeeded,
            Stage::AwaitingApproval,
            Stage::Pending,
        ],
    )
    .await;
    let rejected = decide(
        &server,
        &world.qa.token,
        customer_id,
        waiting.stages[2].id,
        false,
        "not ready",
    )
    .await
    .expect("reject");
    assert_eq!(rejected.status(), pb::ReleaseExecutionStatus::Rejected);
    assert_eq!(
        statuses(&rejected),
        [
            Stage::Succeeded,
            Stage::Succeeded,
            Stage::Cancelled,
            Stage::Skipped
        ]
    );
    assert_eq!(rejected.stages[2].rejected_by, world.qa.id);
    assert!(
        rejected.stages[2]
            .reason
            .contains("rejected by qa1: not ready"),
        "{}",
        rejected.stages[2].reason
    );
    stop(world.agent);
}

async fn failing_and_cancelled_deploys_stop_the_release(backend: Backend) {
    let server = TestServer::start_with(backend, one_second_heartbeats()).await;
    let world = world(&server).await;
    let customer_id = world.acme.id;

    let failing = server
        .create_pipeline(
            customer_id,
            "Deploy broken",
            vec![step("deploy", "echo nope; exit 4")],
            vec![],
        )
        .await;
    let release = create_release(&server, &world, "broken", four_stages(&world, failing.id)).await;
    let execution = deploy(&server, &world, &world.ops.token, release.id, "1").await;
    let failed = wait_for_stages(
        &server,
        customer_id,
        execution.id,
        &[
            Stage::Failed,
            Stage::Skipped,
            Stage::Skipped,
            Stage::Skipped,
        ],
    )
    .await;
    assert_eq!(failed.status(), pb::ReleaseExecutionStatus::Failed);
    assert!(failed.reason.contains("exit code 4"), "{}", failed.reason);

    let slow = server
        .create_pipeline(
            customer_id,
            "Deploy slowly",
            vec![step("deploy", "echo started; sleep 600")],
            vec![],
        )
        .await;
    let release = create_release(&server, &world, "slow", four_stages(&world, slow.id)).await;
    let execution = deploy(&server, &world, &world.ops.token, release.id, "1").await;
    let running = wait_for_stages(
        &server,
        customer_id,
        execution.id,
        &[
            Stage::InProgress,
            Stage::Pending,
            Stage::Pending,
            Stage::Pending,
        ],
    )
    .await;
    let deploy_execution = running.stages[0].execution_id;
    eventually("deploy running", Duration::from_secs(10), || async {
        server
            .execution(customer_id, deploy_execution)
            .await
            .status()
            == pb::ExecutionStatus::Running
    })
    .await;
    server
        .releases(&world.ops.token)
        .cancel_release_execution(pb::CancelReleaseExecutionRequest {
            customer_id,
            release_execution_id: execution.id,
        })
        .await
        .expect("cancel");
    let cancelled = wait_for_stages(
        &server,
        customer_id,
        execution.id,
        &[
            Stage::Cancelled,
            Stage::Skipped,
            Stage::Skipped,
            Stage::Skipped,
        ],
    )
    .await;
    assert_eq!(cancelled.status(), pb::ReleaseExecutionStatus::Cancelled);
    assert_eq!(
        server
            .execution(customer_id, deploy_execution)
            .await
            .status(),
        pb::ExecutionStatus::Cancelled
    );

    // Another customer's admin sees none of it.
    let techstart = server.create_customer("techstart").await;
    let tess = server.create_user("tess").await;
    server
        .add_member(techstart.id, tess.id, pb::Role::Admin)
        .await;
    let mut as_tess = server.releases(&tess.token);
    let missing = format!("customer {customer_id} not found");
    assert_status(
        as_tess
            .get_release(pb::GetReleaseRequest {
                customer_id,
                release_id: release.id,
            })
            .await,
        Code::NotFound,
        &missing,
    );
    assert_status(
        as_tess
            .get_release_execution(pb::GetReleaseExecutionRequest {
                customer_id,
                release_execution_id: execution.id,
            })
            .await,
        Code::NotFound,
        &missing,
    );
    assert_status(
        as_tess
            .list_environments(pb::ListEnvironmentsRequest {
                customer_id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &missing,
    );
    assert_status(
        as_tess
            .deploy_release(pb::DeployReleaseRequest {
                customer_id,
                release_id: release.id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &missing,
    );
    assert_status(
        as_tess
            .approve_stage(pb::ApproveStageRequest {
                customer_id,
                stage_execution_id: running.stages[1].id,
                comment: String::new(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &missing,
    );
    assert_status(
        as_tess
            .list_release_artifacts(pb::ListReleaseArtifactsRequest {
                customer_id,
                release_execution_id: execution.id,
            })
            .await,
        Code::NotFound,
        &missing,
    );
    assert_status(
        as_tess
            .watch_release_execution(pb::WatchReleaseExecutionRequest {
                customer_id,
                release_execution_id: execution.id,
            })
            .await,
        Code::NotFound,
        &missing,
    );
    // With her own customer id, Acme's ids do not exist.
    let theirs = techstart.id;
    assert_status(
        as_tess
            .get_release(pb::GetReleaseRequest {
                customer_id: theirs,
                release_id: release.id,
            })
            .await,
        Code::NotFound,
        "release",
    );
    assert_status(
        as_tess
            .get_release_execution(pb::GetReleaseExecutionRequest {
                customer_id: theirs,
                release_execution_id: execution.id,
            })
            .await,
        Code::NotFound,
        "release execution",
    );
    assert_status(
        as_tess
            .approve_stage(pb::ApproveStageRequest {
                customer_id: theirs,
                stage_execution_id: running.stages[1].id,
                comment: String::new(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "stage execution",
    );
    assert_status(
        as_tess
            .cancel_release_execution(pb::CancelReleaseExecutionRequest {
                customer_id: theirs,
                release_execution_id: execution.id,
            })
            .await,
        Code::NotFound,
        "release execution",
    );
    assert_status(
        as_tess
            .update_environment(pb::UpdateEnvironmentRequest {
                customer_id: theirs,
                environment_id: world.environments["QA"].id,
                description: Some("x".into()),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "environment",
    );
    // Nor can a release of hers reference Acme's pipelines or environments.
    assert_status(
        as_tess
            .create_release(pb::CreateReleaseRequest {
                customer_id: theirs,
                name: "steal".into(),
                pipeline_ids: vec![world.build.id],
                stages: vec![pb::ReleaseStage {
                    order: 1,
                    environment_id: world.environments["QA"].id,
                    pipeline_id: world.deploy.id,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &format!("pipeline_ids[0]: pipeline {} not found", world.build.id),
    );
    stop(world.agent);
}

fn stop(mut child: AgentProcess) {
    let _ = child.kill();
    let _ = child.wait();
}

cygnet_testkit::backend_tests!(
    stages_run_in_order_with_approvals_and_artifacts,
    failing_and_cancelled_deploys_stop_the_release,
);
