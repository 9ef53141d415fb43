//! Artifact content in a real S3-compatible store (`testkit::S3Server`, s3s-fs over HTTP):
//! uploads verified before they become visible, large ones in parts, nothing left behind by a
//! refused or abandoned upload, streamed reads, batch deletes.

use std::time::Duration;

use cygnet_server::artifacts::{ArtifactError, ArtifactStore};
use cygnet_server::domain::{CustomerId, ExecutionId};
use cygnet_testkit::{S3Server, eventually};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

fn store(server: &S3Server) -> ArtifactStore {
    ArtifactStore::open_configured(&server.storage(), std::path::Path::new("/nonexistent"))
        .expect("S3 store")
}

fn key() -> String {
    ArtifactStore::new_key(CustomerId::from_db(7), ExecutionId::from_db(42))
}

fn content(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

async fn upload(
    store: &ArtifactStore,
    key: &str,
    data: &[u8],
    announced_sha256: &str,
) -> Result<(), ArtifactError> {
    let mut writer = store
        .begin(key, data.len() as i64, announced_sha256)
        .await?;
    for part in data.chunks(64 * 1024) {
        writer.write(part).await?;
    }
    writer.finish().await
}

async fn read(store: &ArtifactStore, key: &str) -> Vec<u8> {
    let mut reader = store.open(key).await.expect("open");
    let mut data = Vec::new();
    reader.read_to_end(&mut data).await.expect("read");
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_verified_before_they_are_visible_and_leave_nothing_when_refused() {
    let server = S3Server::start().await;
    let store = store(&server);
    assert!(!store.is_local());

    // A small artifact (one PUT) and a large one (12 MiB: a multipart upload of 5 MiB parts).
    let small = b"hello artifact".to_vec();
    let large = content(12 << 20);
    let (small_key, large_key) = (key(), key());
    for (key, data) in [(&small_key, &small), (&large_key, &large)] {
        upload(&store, key, data, &hex::encode(Sha256::digest(data)))
            .await
            .expect("upload");
        assert_eq!(read(&store, key).await, *data);
    }
    let mut stored = vec![small_key.clone(), large_key.clone()];
    stored.sort();
    assert_eq!(server.objects(), stored);
    assert_eq!(server.unfinished_uploads(), 0);

    // A wrong digest, small or large: refused, nothing visible, no parts kept.
    for data in [&small, &large] {
        let refused = key();
        let result = upload(&store, &refused, data, &"0".repeat(64)).await;
        assert!(
            matches!(result, Err(ArtifactError::DigestMismatch { .. })),
            "{result:?}"
        );
        assert_eq!(server.objects(), stored);
        assert_eq!(server.unfinished_uploads(), 0);
    }
    // More than announced: refused at the first byte too many.
    let too_long = key();
    let mut writer = store
        .begin(&too_long, 10, &hex::encode(Sha256::digest(&large)))
        .await
        .expect("begin");
    assert!(matches!(
        writer.write(&large[..64]).await,
        Err(ArtifactError::TooLarge { .. })
    ));
    drop(writer);

    // An upload abandoned half-way (its agent gone): aborted, nothing kept.
    let abandoned = key();
    let mut writer = store
        .begin(
            &abandoned,
            large.len() as i64,
            &hex::encode(Sha256::digest(&large)),
        )
        .await
        .expect("begin");
    for part in large[..(7 << 20)].chunks(1 << 20) {
        writer.write(part).await.expect("write");
    }
    drop(writer);
    eventually(
        "abandoned upload aborted",
        Duration::from_secs(10),
        || async { server.unfinished_uploads() == 0 },
    )
    .await;
    assert_eq!(server.objects(), stored);

    // A missing artifact reads as NotFound; batch deletes take missing keys in their stride.
    let missing = store.open(&key()).await.err().expect("missing");
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    let failed = store.remove_many(&[small_key, key(), large_key]).await;
    assert_eq!(failed, 0);
    assert!(server.objects().is_empty());
}
