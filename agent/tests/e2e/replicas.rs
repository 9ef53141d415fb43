//! Two replicas on PostgreSQL and one S3-compatible store, with agents of two customers split
//! between them; the replica running a job — a process of its own, configured by
//! `examples/deploy/replica.toml` — is killed with SIGKILL mid-job, after the job's first step
//! uploaded an artifact through it: the agent fails over to the other replica (its `ServerUrl`
//! lists both), the job completes with every log line exactly once — watched live, from start
//! to end, through the surviving replica — and the artifact downloads there and ships in a
//! release whose stage fetches it there.

use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_testkit::{
    Backend, S3Server, TestServer, eventually, final_execution, repository_root, step,
};
use sha2::Digest;

use crate::common::*;

const LINES: u32 = 200;

/// The execution of the release execution's first stage, once it has one.
async fn eventually_stage_execution(server: &TestServer, customer_id: i64, id: i64) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let current = server.release_execution(customer_id, id).await;
        if let Some(stage) = current.stages.first()
            && stage.execution_id > 0
        {
            return stage.execution_id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no stage execution: {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_job_loses_and_doubles_nothing() {
    let Some(backend) = Backend::postgres() else {
        eprintln!("CYGNET_TEST_DATABASE_URL is not set: PostgreSQL run skipped");
        return;
    };
    let s3 = S3Server::start().await;
    let mut options = one_second_heartbeats();
    options.agents.grace = Duration::from_secs(20);
    options.artifacts = s3.storage();
    let survivor = TestServer::start_with(backend, options).await;
    let mut doomed = survivor
        .start_replica_process(&repository_root().join("examples/deploy/replica.toml"))
        .await;
    let both = |first: std::net::SocketAddr, second: std::net::SocketAddr| serde_json::json!({ "ServerUrl": format!("http://{first}, http://{second}") });

    // Acme's agent connects to the doomed replica first, TechStart's to the survivor.
    let acme = survivor.create_customer("acme").await;
    let techstart = survivor.create_customer("techstart").await;
    let mut agents = Vec::new();
    for (customer, name, settings) in [
        (&acme, "acme-agent", both(doomed.address, survivor.address)),
        (
            &techstart,
            "techstart-agent",
            both(survivor.address, doomed.address),
        ),
    ] {
        let token = survivor.create_registration_token(customer.id).await;
        let host = Host::with_settings(&survivor, customer.id, name, Some(&token), settings);
        agents.push((host.spawn(), host));
        eventually("agent online", Duration::from_secs(10), || {
            is_online_with_figures(&survivor, customer.id, name)
        })
        .await;
    }
    let pipeline = survivor
        .create_pipeline(
            acme.id,
            "counter",
            vec![
                {
                    let mut build = step(
                        "build",
                        "mkdir -p dist; printf 'built before the kill' > dist/app.bin",
                    );
                    build.artifacts = vec!["dist/app.bin".into()];
                    build
                },
                step(
                    "count",
                    &format!("for i in $(seq 1 {LINES}); do echo \"n=$i\"; sleep 0.03; done"),
                ),
            ],
            vec![],
        )
        .await;
    let execution = survivor.run_pipeline(acme.id, pipeline.id, &[]).await;
    // Watched live through the survivor while the doomed replica holds the agent's stream.
    let watch = {
        let mut pipelines = survivor.admin_pipelines();
        let (customer_id, execution_id) = (acme.id, execution.id);
        tokio::spawn(async move {
            let mut stream = pipelines
                .watch_execution(pb::WatchExecutionRequest {
                    customer_id,
                    execution_id,
                    after_sequence: 0,
                })
                .await
                .expect("watch")
                .into_inner();
            let mut updates = Vec::new();
            while let Some(message) = stream.message().await.expect("watch stream") {
                updates.extend(message.update);
            }
            updates
        })
    };
    eventually("output streaming", Duration::from_secs(10), || async {
        counted_lines(&survivor.logs(acme.id, execution.id).await).len() >= 10
    })
    .await;
    let running = survivor.execution(acme.id, execution.id).await;
    assert_eq!(running.status(), pb::ExecutionStatus::Running);

    doomed.kill();

    let updates = tokio::time::timeout(Duration::from_secs(60), watch)
        .await
        .expect("the watch ends with the execution")
        .expect("watch task");
    let finished = final_execution(&updates);
    assert_eq!(
        finished.status(),
        pb::ExecutionStatus::Succeeded,
        "{finished:?}"
    );
    let watched: Vec<pb::LogChunk> = updates
        .iter()
        .filter_map(|update| match update {
            pb::watch_execution_response::Update::Log(chunk) => Some(chunk.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        counted_lines(&watched),
        (1..=LINES).collect::<Vec<_>>(),
        "the watch saw every line once, in order"
    );
    assert_every_line_once(&survivor, acme.id, execution.id, LINES).await;

    // The artifact uploaded through the killed replica downloads through the survivor.
    let artifacts = artifacts_of(&survivor, acme.id, execution.id).await;
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let content = download(&survivor, acme.id, artifacts[0].id).await;
    assert_eq!(content, b"built before the kill");
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&content)),
        artifacts[0].sha256
    );
    assert_eq!(s3.objects().len(), 1);

    // A release ships it: its Development stage runs on the agent, now on the survivor, which
    // fetches the artifact from the store and checks its digest.
    let deploy = survivor
        .create_pipeline(
            acme.id,
            "deploy",
            vec![step(
                "deploy",
                &format!(
                    "sha256sum \"$CYGNET_ARTIFACTS_DIR/{}/dist/app.bin\"",
                    pipeline.id
                ),
            )],
            vec![],
        )
        .await;
    let development = survivor.environments(acme.id).await["Development"].id;
    let mut releases = survivor.admin_releases();
    let release = releases
        .create_release(pb::CreateReleaseRequest {
            customer_id: acme.id,
            name: "api".into(),
            pipeline_ids: vec![pipeline.id],
            stages: vec![pb::ReleaseStage {
                order: 1,
                environment_id: development,
                pipeline_id: deploy.id,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("create release")
        .into_inner()
        .release
        .expect("release");
    let shipped = releases
        .deploy_release(pb::DeployReleaseRequest {
            customer_id: acme.id,
            release_id: release.id,
            version: "1.0.0".into(),
            ..Default::default()
        })
        .await
        .expect("deploy")
        .into_inner()
        .release_execution
        .expect("release execution");
    let stage_execution = eventually_stage_execution(&survivor, acme.id, shipped.id).await;
    let deployed = final_execution(
        &survivor
            .watch_to_end(acme.id, stage_execution, Duration::from_secs(30))
            .await,
    );
    assert_eq!(
        deployed.status(),
        pb::ExecutionStatus::Succeeded,
        "{deployed:?}"
    );
    let log: String = survivor
        .logs(acme.id, stage_execution)
        .await
        .into_iter()
        .map(|chunk| chunk.text)
        .collect();
    assert!(log.contains(&artifacts[0].sha256), "{log}");

    // Both agents work through the survivor now.
    for (customer, name) in [(&acme, "acme-agent"), (&techstart, "techstart-agent")] {
        eventually(
            "agent online on the survivor",
            Duration::from_secs(10),
            || is_online_with_figures(&survivor, customer.id, name),
        )
        .await;
        let pipeline = survivor
            .create_pipeline(
                customer.id,
                "after",
                vec![step("echo", "echo after")],
                vec![],
            )
            .await;
        let execution = survivor.run_pipeline(customer.id, pipeline.id, &[]).await;
        let ended = final_execution(
            &survivor
                .watch_to_end(customer.id, execution.id, Duration::from_secs(30))
                .await,
        );
        assert_eq!(
            ended.status(),
            pb::ExecutionStatus::Succeeded,
            "{name}: {ended:?}"
        );
    }
    for (child, _host) in agents {
        stop(child);
    }
}
