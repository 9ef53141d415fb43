//! Variables and secrets reach the real agent's steps: secrets in the environment of the step
//! and nowhere in its log (plain, split across writes, multi-line, base64, on stderr), a
//! parameter cannot stand in for a secret, and a group in use cannot be deleted.

use std::time::Duration;

use base64::Engine;
use cygnet_proto::v1 as pb;
use cygnet_testkit::{
    Backend, TestServer, assert_invalid, assert_status, eventually, final_execution, log_text, step,
};
use sha2::Digest;
use tonic::Code;

use crate::common::*;

const TOKEN: &str = "tok-UNSCOPED-9f8e7d6c5b4a";
const CERT: &str =
    "-----BEGIN KEY-----\nline-one-secret-xyz\nline-two-secret-abc\n-----END KEY-----";

fn set(
    customer_id: i64,
    group_id: i64,
    key: &str,
    value: &str,
    is_secret: bool,
) -> pb::SetVariableRequest {
    pb::SetVariableRequest {
        customer_id,
        group_id,
        key: key.into(),
        value: value.into(),
        is_secret,
        environment_id: 0,
        description: String::new(),
    }
}

fn leaks(text: &str) -> Vec<&'static str> {
    let base64 = base64::engine::general_purpose::STANDARD.encode(TOKEN);
    let base64: &'static str = Box::leak(base64.into_boxed_str());
    [
        TOKEN,
        "line-one-secret-xyz",
        "line-two-secret-abc",
        base64,
        "9f8e7d6c5b4a",
    ]
    .into_iter()
    .filter(|secret| text.contains(secret))
    .collect()
}

async fn secrets_reach_the_step_and_never_its_log(backend: Backend) {
    let server = TestServer::start_with(backend.clone(), one_second_heartbeats()).await;
    let acme = server.create_customer("acme").await;
    let globex = server.create_customer("globex").await;
    let token = server.create_registration_token(acme.id).await;
    let host = Host::new(&server, acme.id, "acme-builder", Some(&token));
    let _agent = host.spawn();
    eventually("agent online", Duration::from_secs(10), || {
        is_online_with_figures(&server, acme.id, "acme-builder")
    })
    .await;

    let mut variables = server.variables(cygnet_testkit::ADMIN_TOKEN);
    let group = variables
        .create_variable_group(pb::CreateVariableGroupRequest {
            customer_id: acme.id,
            name: "deploy".into(),
            description: String::new(),
            variables: vec![],
        })
        .await
        .expect("group")
        .into_inner()
        .group
        .expect("group");
    for request in [
        set(acme.id, group.id, "API_TOKEN", TOKEN, true),
        set(acme.id, group.id, "CERT", CERT, true),
        set(acme.id, group.id, "REGION", "eu-west-1", false),
    ] {
        variables.set_variable(request).await.expect("set");
    }
    let foreign = variables
        .create_variable_group(pb::CreateVariableGroupRequest {
            customer_id: globex.id,
            name: "theirs".into(),
            description: String::new(),
            variables: vec![],
        })
        .await
        .expect("foreign group")
        .into_inner()
        .group
        .expect("group");

    let steps = vec![step(
        "use",
        concat!(
            "echo \"plain $API_TOKEN\"; ",
            "first=$(printf %s \"$API_TOKEN\" | cut -c1-8); rest=$(printf %s \"$API_TOKEN\" | cut -c9-); ",
            "printf 'split %s' \"$first\"; sleep 0.3; printf '%s end\\n' \"$rest\"; ",
            "echo \"$CERT\"; ",
            "echo \"$CERT\" | sed -n 2p; ",
            "printf %s \"$API_TOKEN\" | base64; ",
            "echo \"err $API_TOKEN\" >&2; ",
            "echo \"region $REGION\"; ",
            "printf 'hash '; printf %s \"$API_TOKEN\" | sha256sum",
        ),
    )];
    let mut pipelines = server.admin_pipelines();
    // A group of another customer is refused.
    assert_invalid(
        "CreatePipeline",
        pipelines
            .create_pipeline(pb::CreatePipelineRequest {
                customer_id: acme.id,
                name: "bad".into(),
                steps: steps.clone(),
                variable_group_ids: vec![foreign.id],
                ..Default::default()
            })
            .await,
        "variable_group_ids",
    );
    assert_invalid(
        "CreatePipeline",
        pipelines
            .create_pipeline(pb::CreatePipelineRequest {
                customer_id: acme.id,
                name: "bad".into(),
                steps: steps.clone(),
                variable_group_ids: vec![group.id, group.id],
                ..Default::default()
            })
            .await,
        "variable_group_ids",
    );
    let pipeline = pipelines
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: acme.id,
            name: "uses secrets".into(),
            steps,
            variable_group_ids: vec![group.id],
            ..Default::default()
        })
        .await
        .expect("pipeline")
        .into_inner()
        .pipeline
        .expect("pipeline");
    assert_eq!(pipeline.variable_group_ids, vec![group.id]);

    // A parameter cannot stand in for a secret.
    assert_invalid(
        "RunPipeline",
        pipelines
            .run_pipeline(pb::RunPipelineRequest {
                customer_id: acme.id,
                pipeline_id: pipeline.id,
                parameters: [("API_TOKEN".to_owned(), "mine".to_owned())].into(),
                agent_id: 0,
            })
            .await,
        "parameters",
    );

    let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    let updates = server
        .watch_to_end(acme.id, execution.id, Duration::from_secs(30))
        .await;
    let watched = log_text(&updates);
    let finished = final_execution(&updates);
    assert_eq!(
        finished.status(),
        pb::ExecutionStatus::Succeeded,
        "{watched}"
    );
    let stored: String = server
        .logs(acme.id, execution.id)
        .await
        .into_iter()
        .map(|chunk| chunk.text)
        .collect();
    for (what, text) in [("watched", &watched), ("stored", &stored)] {
        assert!(
            leaks(text).is_empty(),
            "{what} log leaks {:?}:\n{text}",
            leaks(text)
        );
        for expected in [
            "plain ***",
            "split *** end",
            "err ***",
            "region eu-west-1",
            "split *** end\n***\n***\n***\n",
        ] {
            assert!(
                text.contains(expected),
                "{what} log lacks {expected:?}:\n{text}"
            );
        }
        // The step got the real value: its hash is printed.
        let hash = hex::encode(sha2::Sha256::digest(TOKEN.as_bytes()));
        assert!(
            text.contains(&format!("hash {hash}")),
            "{what} log lacks the hash:\n{text}"
        );
    }

    // On SQLite the database files hold no secret, logs included.
    if matches!(backend, Backend::Sqlite) {
        for name in ["cygnet.db", "cygnet.db-wal"] {
            if let Ok(bytes) = std::fs::read(server.data_dir.join(name)) {
                let text = String::from_utf8_lossy(&bytes);
                assert!(leaks(&text).is_empty(), "{name} holds {:?}", leaks(&text));
            }
        }
    }

    // Nothing the agent keeps on disk (state, spool, workspaces) holds a secret.
    let mut directories = vec![host.dir.path().to_path_buf()];
    let mut files = 0;
    while let Some(directory) = directories.pop() {
        for entry in std::fs::read_dir(&directory).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                directories.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                files += 1;
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    leaks(&text).is_empty(),
                    "{} holds {:?}",
                    path.display(),
                    leaks(&text)
                );
            }
        }
    }
    assert!(files > 0, "the agent's directory was read");

    // A group in use cannot be deleted.
    assert_status(
        variables
            .delete_variable_group(pb::DeleteVariableGroupRequest {
                customer_id: acme.id,
                group_id: group.id,
            })
            .await,
        Code::FailedPrecondition,
        "used by pipeline",
    );
}

/// A release's stages get their own environment's value, the shared one otherwise.
async fn each_stage_gets_its_environments_value(backend: Backend) {
    let server = TestServer::start_with(backend, one_second_heartbeats()).await;
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;
    let host = Host::new(&server, acme.id, "acme-deployer", Some(&token));
    let _agent = host.spawn();
    eventually("agent online", Duration::from_secs(10), || {
        is_online_with_figures(&server, acme.id, "acme-deployer")
    })
    .await;
    let environments = server.environments(acme.id).await;
    let mut releases = server.admin_releases();
    // No approvals in this test: the stages run one after the other by themselves.
    for name in ["Development", "QA", "Staging", "Production"] {
        releases
            .update_environment(pb::UpdateEnvironmentRequest {
                customer_id: acme.id,
                environment_id: environments[name].id,
                requires_approval: Some(false),
                ..Default::default()
            })
            .await
            .expect("no approval");
    }
    let mut variables = server.variables(cygnet_testkit::ADMIN_TOKEN);
    let group = variables
        .create_variable_group(pb::CreateVariableGroupRequest {
            customer_id: acme.id,
            name: "credentials".into(),
            description: String::new(),
            variables: vec![],
        })
        .await
        .expect("group")
        .into_inner()
        .group
        .expect("group");
    for (value, environment) in [
        ("shared-value-000", 0),
        ("production-value-111", environments["Production"].id),
        ("development-value-222", environments["Development"].id),
    ] {
        variables
            .set_variable(pb::SetVariableRequest {
                environment_id: environment,
                ..set(acme.id, group.id, "DB_PASSWORD", value, true)
            })
            .await
            .expect("set");
    }
    let build = server
        .create_pipeline(acme.id, "Build", vec![step("build", "true")], vec![])
        .await;
    let built = server.run_pipeline(acme.id, build.id, &[]).await;
    server
        .watch_to_end(acme.id, built.id, Duration::from_secs(30))
        .await;
    let deploy = server
        .admin_pipelines()
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: acme.id,
            name: "Deploy".into(),
            steps: vec![step(
                "deploy",
                "printf '%s ' \"$ENVIRONMENT_NAME\"; printf %s \"$DB_PASSWORD\" | sha256sum",
            )],
            variable_group_ids: vec![group.id],
            ..Default::default()
        })
        .await
        .expect("deploy pipeline")
        .into_inner()
        .pipeline
        .expect("pipeline");
    let stages = ["Development", "QA", "Production"]
        .iter()
        .enumerate()
        .map(|(index, name)| pb::ReleaseStage {
            order: index as i32 + 1,
            environment_id: environments[*name].id,
            pipeline_id: deploy.id,
            ..Default::default()
        })
        .collect();
    let release = releases
        .create_release(pb::CreateReleaseRequest {
            customer_id: acme.id,
            name: "api".into(),
            pipeline_ids: vec![build.id],
            stages,
            ..Default::default()
        })
        .await
        .expect("release")
        .into_inner()
        .release
        .expect("release");
    let run = releases
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
    let mut done = server.release_execution(acme.id, run.id).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while done.status() != pb::ReleaseExecutionStatus::Succeeded {
        assert!(
            tokio::time::Instant::now() < deadline,
            "release did not succeed: {done:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        done = server.release_execution(acme.id, run.id).await;
    }
    let hash = |value: &str| hex::encode(sha2::Sha256::digest(value.as_bytes()));
    for (stage, (environment, value)) in done.stages.iter().zip([
        ("Development", "development-value-222"),
        ("QA", "shared-value-000"),
        ("Production", "production-value-111"),
    ]) {
        let log: String = server
            .logs(acme.id, stage.execution_id)
            .await
            .into_iter()
            .map(|chunk| chunk.text)
            .collect();
        assert!(
            log.contains(&format!("{environment} {}", hash(value))),
            "stage {environment} did not get {value:?}:\n{log}"
        );
        assert!(!log.contains("value-"), "{log}");
    }
}

cygnet_testkit::backend_tests!(
    secrets_reach_the_step_and_never_its_log,
    each_stage_gets_its_environments_value
);
