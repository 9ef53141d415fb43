//! Every execution records its trigger: a member's run, a retry (of which execution), a
//! release stage (which deployment and stage); shown in the API, filterable in ListExecutions,
//! named in the activity feed and on the dashboard's execution page.

use std::time::Duration;

use cygnet_migrations::{Migrator, MigratorTrait};
use cygnet_proto::v1 as pb;
use cygnet_testkit::web_client::{http, sign_in};
use cygnet_testkit::{Backend, TestOptions, TestServer, assert_invalid, heartbeat, step};

async fn executions(server: &TestServer, customer_id: i64, kind: pb::TriggerKind) -> Vec<i64> {
    server
        .admin_pipelines()
        .list_executions(pb::ListExecutionsRequest {
            customer_id,
            trigger_kind: kind as i32,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .executions
        .into_iter()
        .map(|execution| execution.id)
        .collect()
}

async fn every_execution_records_its_trigger(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        TestOptions {
            web: true,
            ..TestOptions::default()
        },
    )
    .await;
    let acme = server.create_customer("acme").await;
    let dev = server.create_member(acme.id, "dev", pb::Role::Admin).await;
    let build = server
        .create_pipeline(acme.id, "Build", vec![step("build", "true")], vec![])
        .await;
    let token = server.create_registration_token(acme.id).await;
    let registered = server
        .register_agent(acme.id, "acme-001", &token)
        .await
        .expect("register");
    let agent = server
        .connect_agent("acme-001", &registered.credential)
        .await
        .expect("connect");
    agent.heartbeat(heartbeat(10.0, 10.0)).await;
    let (_, worker) = agent.work_instantly();

    let mut pipelines = server.pipelines(&dev.token);
    let run = pipelines
        .run_pipeline(pb::RunPipelineRequest {
            customer_id: acme.id,
            pipeline_id: build.id,
            ..Default::default()
        })
        .await
        .expect("run")
        .into_inner()
        .execution
        .expect("execution");
    let trigger = run.trigger.clone().expect("a trigger");
    assert_eq!(trigger.kind(), pb::TriggerKind::User);
    assert_eq!(
        (trigger.user_id, trigger.username.as_str()),
        (dev.id, "dev")
    );
    server
        .watch_to_end(acme.id, run.id, Duration::from_secs(10))
        .await;
    let retry = pipelines
        .retry_execution(pb::RetryExecutionRequest {
            customer_id: acme.id,
            execution_id: run.id,
        })
        .await
        .expect("retry")
        .into_inner()
        .execution
        .expect("execution");
    let trigger = retry.trigger.clone().expect("a trigger");
    assert_eq!(trigger.kind(), pb::TriggerKind::Retry);
    assert_eq!((trigger.retry_of, trigger.user_id), (run.id, dev.id));
    server
        .watch_to_end(acme.id, retry.id, Duration::from_secs(10))
        .await;

    // A release stage that needs no approval starts its deploy at once.
    let development = server.environments(acme.id).await["Development"].id;
    let release = server
        .releases(&dev.token)
        .create_release(pb::CreateReleaseRequest {
            customer_id: acme.id,
            name: "API".into(),
            stages: vec![pb::ReleaseStage {
                order: 1,
                environment_id: development,
                pipeline_id: build.id,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("release")
        .into_inner()
        .release
        .expect("release");
    let deployed = server
        .releases(&dev.token)
        .deploy_release(pb::DeployReleaseRequest {
            customer_id: acme.id,
            release_id: release.id,
            version: "1.0".into(),
            ..Default::default()
        })
        .await
        .expect("deploy")
        .into_inner()
        .release_execution
        .expect("deployment");
    let stage = &deployed.stages[0];
    assert!(stage.execution_id > 0, "the stage started its deploy");
    let deploy_run = server.execution(acme.id, stage.execution_id).await;
    let trigger = deploy_run.trigger.clone().expect("a trigger");
    assert_eq!(trigger.kind(), pb::TriggerKind::ReleaseStage);
    assert_eq!(
        (
            trigger.release_execution_id,
            trigger.stage_execution_id,
            trigger.user_id
        ),
        (deployed.id, stage.id, dev.id)
    );
    server
        .watch_to_end(acme.id, deploy_run.id, Duration::from_secs(10))
        .await;

    // Filterable; an unknown kind is refused naming the field.
    assert_eq!(
        executions(&server, acme.id, pb::TriggerKind::User).await,
        [run.id]
    );
    assert_eq!(
        executions(&server, acme.id, pb::TriggerKind::Retry).await,
        [retry.id]
    );
    assert_eq!(
        executions(&server, acme.id, pb::TriggerKind::ReleaseStage).await,
        [deploy_run.id]
    );
    assert_eq!(
        executions(&server, acme.id, pb::TriggerKind::Unspecified)
            .await
            .len(),
        3
    );
    assert_invalid(
        "ListExecutions",
        server
            .admin_pipelines()
            .list_executions(pb::ListExecutionsRequest {
                customer_id: acme.id,
                trigger_kind: 99,
                ..Default::default()
            })
            .await,
        "trigger_kind",
    );

    // The activity feed names the trigger.
    let activity: Vec<String> = server
        .admin_customers()
        .list_activity(pb::ListActivityRequest {
            customer_id: acme.id,
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("activity")
        .into_inner()
        .events
        .into_iter()
        .map(|event| event.message)
        .collect();
    let succeeded = |id: i64, note: &str| {
        activity.iter().any(|message| {
            message.starts_with(&format!("Pipeline \"Build\" execution {id} succeeded"))
                && message.ends_with(note)
        })
    };
    assert!(
        succeeded(retry.id, &format!("(retry of execution {})", run.id)),
        "{activity:#?}"
    );
    assert!(
        succeeded(deploy_run.id, &format!("(deployment {})", deployed.id)),
        "{activity:#?}"
    );

    // The execution page says it, linking to the deployment's stage.
    let web = server.web_address.expect("web on");
    let session = sign_in(web, &dev.token).await;
    let page = http(
        web,
        "GET",
        &format!("/c/{}/executions/{}", acme.id, deploy_run.id),
        Some(&session),
        None,
    )
    .await;
    assert!(
        page.body.contains(&format!(
            r#"Deployed by dev for a stage of <a href="/c/{}/deployments/{}#stage-{}">deployment {}</a>"#,
            acme.id, deployed.id, stage.id, deployed.id
        )),
        "{}",
        page.body
    );
    worker.abort();

    // Rows written before triggers were recorded get theirs from what was recorded then: the
    // migration is undone (its columns dropped) and applied again on these rows.
    let db = sea_orm::Database::connect(&server.database_url)
        .await
        .expect("connect");
    Migrator::down(&db, Some(1)).await.expect("down");
    Migrator::up(&db, None).await.expect("up again");
    db.close().await.expect("close");
    let again = |id: i64| {
        let server = &server;
        async move {
            server
                .execution(acme.id, id)
                .await
                .trigger
                .expect("a trigger")
        }
    };
    assert_eq!(again(run.id).await.kind(), pb::TriggerKind::User);
    let retried = again(retry.id).await;
    assert_eq!(
        (retried.kind(), retried.retry_of),
        (pb::TriggerKind::Retry, run.id)
    );
    let staged = again(deploy_run.id).await;
    assert_eq!(
        (
            staged.kind(),
            staged.release_execution_id,
            staged.stage_execution_id
        ),
        (pb::TriggerKind::ReleaseStage, deployed.id, stage.id)
    );
}

cygnet_testkit::backend_tests!(every_execution_records_its_trigger,);
