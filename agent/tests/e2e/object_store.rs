//! Artifacts in an S3-compatible store (`testkit::S3Server`, a real S3 API over HTTP): a real
//! agent uploads a small and a large artifact, both land in the bucket under the execution's
//! prefix, and download whole with their digests, on both database backends.

use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_testkit::{Backend, S3Server, TestServer, final_execution, step};
use sha2::Digest;

use crate::common::*;

async fn artifacts_go_to_the_object_store(backend: Backend) {
    let s3 = S3Server::start().await;
    let mut options = one_second_heartbeats();
    options.artifacts = s3.storage();
    let server = TestServer::start_with(backend, options).await;
    let (acme, _host, agent) = customer_with_agent(&server, "acme", serde_json::json!({})).await;
    let mut build = step(
        "build",
        "mkdir -p dist; printf 'small artifact' > dist/small.bin; \
         head -c 7340032 /dev/zero | tr '\\0' 'x' > dist/large.bin",
    );
    build.artifacts = vec!["dist/*.bin".into()];
    let pipeline = server
        .create_pipeline(acme.id, "build", vec![build], vec![])
        .await;
    let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    let ended = final_execution(
        &server
            .watch_to_end(acme.id, execution.id, Duration::from_secs(60))
            .await,
    );
    assert_eq!(ended.status(), pb::ExecutionStatus::Succeeded, "{ended:?}");
    let artifacts = artifacts_of(&server, acme.id, execution.id).await;
    let mut sizes: Vec<(String, i64)> = artifacts
        .iter()
        .map(|artifact| (artifact.path.clone(), artifact.size_bytes))
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [
            ("dist/large.bin".to_owned(), 7_340_032),
            ("dist/small.bin".to_owned(), 14)
        ]
    );
    for artifact in &artifacts {
        let content = download(&server, acme.id, artifact.id).await;
        assert_eq!(content.len() as i64, artifact.size_bytes);
        assert_eq!(hex::encode(sha2::Sha256::digest(&content)), artifact.sha256);
    }
    let objects = s3.objects();
    assert_eq!(objects.len(), 2, "{objects:?}");
    let prefix = format!("{}/{}/", acme.id, execution.id);
    assert!(
        objects.iter().all(|key| key.starts_with(&prefix)),
        "{objects:?}"
    );
    assert_eq!(s3.unfinished_uploads(), 0);
    assert!(
        !server
            .data_dir
            .join("artifacts")
            .join(acme.id.to_string())
            .exists(),
        "nothing stored in the data directory"
    );
    stop(agent);
}

cygnet_testkit::backend_tests!(artifacts_go_to_the_object_store);
