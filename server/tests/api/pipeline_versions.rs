//! A pipeline's steps are stored once per version, not copied into every run: runs point at the
//! version current when they were queued, and run exactly its steps.

use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_testkit::{Backend, TestServer, step};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, Database};

async fn run(server: &TestServer, customer_id: i64, pipeline_id: i64) -> i64 {
    server.run_pipeline(customer_id, pipeline_id, &[]).await.id
}

/// (execution id, its `steps` column, its version id) of every run of the pipeline.
async fn stored_runs(server: &TestServer, pipeline_id: i64) -> Vec<(i64, String, Option<i64>)> {
    let db = Database::connect(&server.database_url)
        .await
        .expect("connect");
    let rows = db
        .query_all(
            &Query::select()
                .columns(["id", "pipeline_version_id"].map(Alias::new))
                .expr_as(Expr::cust("CAST(steps AS TEXT)"), Alias::new("steps_text"))
                .from(Alias::new("executions"))
                .and_where(Expr::col(Alias::new("pipeline_id")).eq(pipeline_id))
                .order_by(Alias::new("id"), sea_orm::Order::Asc)
                .to_owned(),
        )
        .await
        .expect("runs");
    let runs = rows
        .into_iter()
        .map(|row| {
            (
                row.try_get::<i64>("", "id").expect("id"),
                row.try_get::<String>("", "steps_text").expect("steps"),
                row.try_get::<Option<i64>>("", "pipeline_version_id")
                    .expect("version"),
            )
        })
        .collect();
    db.close().await.expect("close");
    runs
}

async fn versions(server: &TestServer, pipeline_id: i64) -> i64 {
    let db = Database::connect(&server.database_url)
        .await
        .expect("connect");
    let row = db
        .query_one(
            &Query::select()
                .expr_as(Expr::cust("COUNT(*)"), Alias::new("versions"))
                .from(Alias::new("pipeline_versions"))
                .and_where(Expr::col(Alias::new("pipeline_id")).eq(pipeline_id))
                .to_owned(),
        )
        .await
        .expect("count")
        .expect("a row");
    let count = row.try_get::<i64>("", "versions").expect("count");
    db.close().await.expect("close");
    count
}

async fn steps_stored_once_per_version_and_runs_run_theirs(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let big = "echo ".to_owned() + &"v1 ".repeat(2000);
    let pipeline = server
        .create_pipeline(acme.id, "build", vec![step("build", &big)], vec![])
        .await;
    assert_eq!(pipeline.steps_version, 1);
    let mut first = Vec::new();
    for _ in 0..5 {
        first.push(run(&server, acme.id, pipeline.id).await);
    }
    // A new name is not a new version; new steps are.
    let mut client = server.admin_pipelines();
    let renamed = client
        .update_pipeline(pb::UpdatePipelineRequest {
            customer_id: acme.id,
            pipeline_id: pipeline.id,
            name: Some("build, renamed".into()),
            ..Default::default()
        })
        .await
        .expect("rename")
        .into_inner()
        .pipeline
        .expect("pipeline");
    assert_eq!(renamed.steps_version, 1);
    let changed = client
        .update_pipeline(pb::UpdatePipelineRequest {
            customer_id: acme.id,
            pipeline_id: pipeline.id,
            steps: vec![step("build", "echo v2")],
            set_steps: true,
            ..Default::default()
        })
        .await
        .expect("new steps")
        .into_inner()
        .pipeline
        .expect("pipeline");
    assert_eq!(changed.steps_version, 2);
    let second = run(&server, acme.id, pipeline.id).await;
    assert_eq!(versions(&server, pipeline.id).await, 2);
    let stored = stored_runs(&server, pipeline.id).await;
    assert_eq!(stored.len(), 6);
    for (id, steps, version) in &stored {
        assert_eq!(steps.trim(), "[]", "run {id} carries no copy of the steps");
        assert!(version.is_some(), "run {id} points at its version");
    }
    assert_eq!(stored[0].2, stored[4].2, "the first five share version 1");
    assert_ne!(stored[4].2, stored[5].2, "the last runs version 2");

    // An agent gets each run with the steps of its own version.
    let token = server.create_registration_token(acme.id).await;
    let registered = server
        .register_agent(acme.id, "acme-agent-001", &token)
        .await
        .expect("register");
    let mut agent = server
        .connect_agent("acme-agent-001", &registered.credential)
        .await
        .expect("connect");
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let message = tokio::time::timeout(Duration::from_secs(10), agent.inbound.message())
            .await
            .expect("assignments in time")
            .expect("open")
            .expect("message");
        let Some(pb::connect_response::Command::AssignJob(job)) = message.command else {
            continue;
        };
        seen.push((job.execution_id, job.steps[0].command.clone()));
        for (sequence, event) in [
            pb::job_event::Event::Started(pb::JobStarted {
                workspace: "/w".into(),
            }),
            pb::job_event::Event::Finished(pb::JobFinished {
                status: pb::ExecutionStatus::Succeeded.into(),
                reason: String::new(),
            }),
        ]
        .into_iter()
        .enumerate()
        {
            agent
                .sender
                .send(pb::ConnectRequest {
                    message: Some(pb::connect_request::Message::JobEvent(pb::JobEvent {
                        execution_id: job.execution_id,
                        sequence: sequence as i64 + 1,
                        occurred_at: None,
                        event: Some(event),
                    })),
                })
                .await
                .expect("send");
        }
    }
    for (execution_id, command) in seen {
        if first.contains(&execution_id) {
            assert_eq!(command, big, "queued before the change: version 1");
        } else {
            assert_eq!(execution_id, second);
            assert_eq!(command, "echo v2");
        }
    }
}

cygnet_testkit::backend_tests!(steps_stored_once_per_version_and_runs_run_theirs);
