//! `cygnet-server backup` of a live embedded server while a job streams its output, restored
//! into a new server: every finished execution, its log and its artifact are intact, and the
//! secrets still open for jobs (the key came along).

use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_testkit::{Backend, TestServer, eventually, final_execution, log_text, step};
use sha2::Digest;

use crate::common::*;

const SECRET: &str = "backup-secret-5e6f7a8b";

/// Everything a reader sees of a finished execution: status, log text, artifacts with content.
async fn finished_record(
    server: &TestServer,
    customer_id: i64,
    execution_id: i64,
) -> (pb::ExecutionStatus, String, Vec<(String, String, Vec<u8>)>) {
    let execution = server.execution(customer_id, execution_id).await;
    let log: String = server
        .logs(customer_id, execution_id)
        .await
        .iter()
        .map(|chunk| chunk.text.clone())
        .collect();
    let listed = server
        .admin_pipelines()
        .list_artifacts(pb::ListArtifactsRequest {
            customer_id,
            execution_id,
        })
        .await
        .expect("artifacts")
        .into_inner()
        .artifacts;
    let mut artifacts = Vec::new();
    for artifact in listed {
        let mut download = server
            .admin_pipelines()
            .download_artifact(pb::DownloadArtifactRequest {
                customer_id,
                artifact_id: artifact.id,
            })
            .await
            .expect("download")
            .into_inner();
        let mut content = Vec::new();
        while let Some(message) = download.message().await.expect("chunk") {
            content.extend(message.data);
        }
        assert_eq!(hex::encode(sha2::Sha256::digest(&content)), artifact.sha256);
        artifacts.push((artifact.path, artifact.sha256, content));
    }
    (execution.status(), log, artifacts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_mid_job_restores_every_finished_execution_and_the_secrets() {
    let server = TestServer::start_with(Backend::Sqlite, one_second_heartbeats()).await;
    let (acme, _host, agent) = customer_with_agent(&server, "acme", serde_json::json!({})).await;
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
    variables
        .set_variable(pb::SetVariableRequest {
            customer_id: acme.id,
            group_id: group.id,
            key: "API_TOKEN".into(),
            value: SECRET.into(),
            is_secret: true,
            environment_id: 0,
            description: String::new(),
        })
        .await
        .expect("secret");
    let mut build = step(
        "build",
        &format!(
            "test \"$API_TOKEN\" = '{SECRET}' && echo secret-opens; \
             for i in $(seq 1 {{{{LINES}}}}); do echo \"n=$i\"; sleep 0.02; done; \
             mkdir -p dist; printf 'artifact of %s' '{{{{LINES}}}}' > dist/app.bin"
        ),
    );
    build.artifacts = vec!["dist/*.bin".into()];
    let pipeline = server
        .admin_pipelines()
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: acme.id,
            name: "build".into(),
            steps: vec![build],
            variable_group_ids: vec![group.id],
            parameters: vec![pb::Parameter {
                name: "LINES".into(),
                r#type: pb::ParameterType::Number.into(),
                required: true,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("pipeline")
        .into_inner()
        .pipeline
        .expect("pipeline");

    let mut finished = Vec::new();
    for lines in ["20", "30"] {
        let execution = server
            .run_pipeline(acme.id, pipeline.id, &[("LINES", lines)])
            .await;
        let ended = final_execution(
            &server
                .watch_to_end(acme.id, execution.id, Duration::from_secs(30))
                .await,
        );
        assert_eq!(ended.status(), pb::ExecutionStatus::Succeeded, "{ended:?}");
        finished.push(execution.id);
    }
    // A long job streams its output while the backup is taken.
    let streaming = server
        .run_pipeline(acme.id, pipeline.id, &[("LINES", "400")])
        .await;
    eventually("output streaming", Duration::from_secs(10), || async {
        server
            .logs(acme.id, streaming.id)
            .await
            .iter()
            .any(|chunk| chunk.text.contains("n=5\n"))
    })
    .await;
    let backups = tempfile::tempdir().expect("temp dir");
    let archive = backups.path().join("cygnet-backup.tar");
    let summary = cygnet_server::backup::backup(server.config(), &archive)
        .await
        .expect("backup");
    assert!(summary.secret_key_included, "{summary:?}");
    assert_eq!(summary.artifacts, 2, "{summary:?}");
    assert!(
        server.execution(acme.id, streaming.id).await.status() == pb::ExecutionStatus::Running,
        "the backup was taken while the job ran"
    );

    let restored = server.start_from_backup(&archive).await;
    for execution_id in &finished {
        let original = finished_record(&server, acme.id, *execution_id).await;
        let copy = finished_record(&restored, acme.id, *execution_id).await;
        assert_eq!(copy.0, pb::ExecutionStatus::Succeeded);
        assert!(copy.1.contains("secret-opens") && copy.1.contains("n=20\n"));
        assert_eq!(copy.2.len(), 1, "one artifact each");
        assert_eq!(copy, original, "execution {execution_id} restored intact");
    }

    // The restored server's secrets still open for a job on one of its agents.
    let token = restored.create_registration_token(acme.id).await;
    let host = Host::new(&restored, acme.id, "restored-agent", Some(&token));
    let restored_agent = host.spawn();
    eventually(
        "agent online on the restored server",
        Duration::from_secs(10),
        || is_online_with_figures(&restored, acme.id, "restored-agent"),
    )
    .await;
    let execution = restored
        .run_pipeline(acme.id, pipeline.id, &[("LINES", "3")])
        .await;
    let updates = restored
        .watch_to_end(acme.id, execution.id, Duration::from_secs(30))
        .await;
    let ended = final_execution(&updates);
    assert_eq!(ended.status(), pb::ExecutionStatus::Succeeded, "{ended:?}");
    assert!(log_text(&updates).contains("secret-opens"));
    stop(restored_agent);
    stop(agent);
}
