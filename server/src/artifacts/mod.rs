//! Artifact content, stored through `object_store`: files under `<data_dir>/artifacts` by
//! default, or an S3-compatible bucket shared by every replica (`settings.rs`). Keys are
//! `<customer_id>/<execution_id>/<random hex>`, the same on both (and the same files as before
//! the object store: existing artifacts stay readable).
//!
//! An upload is streamed through a buffered writer (one `put` for a small artifact, a multipart
//! upload in parts of `PART_BYTES` for a large one) while it is hashed; it becomes visible only
//! when its size and SHA-256 match what the agent announced. Otherwise — or when the upload is
//! dropped half-way, its agent gone — it is aborted: the local store deletes its staging file,
//! S3 its uploaded parts. Downloads are streamed from the store as the client reads them.

pub mod settings;

use std::sync::Arc;

use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use rand::RngExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio_stream::StreamExt;

pub use settings::{ArtifactStorage, S3Settings};

use crate::domain::{CustomerId, ExecutionId};

/// Largest artifact accepted, bytes.
pub const MAX_ARTIFACT_BYTES: i64 = 1 << 30;
/// An upload's buffer and multipart part size (S3's minimum part is 5 MiB): an upload holds at
/// most this much in memory per part in flight.
const PART_BYTES: usize = 5 << 20;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("upload is {actual} bytes, but the header announced {expected}")]
    SizeMismatch { expected: i64, actual: i64 },
    #[error("upload's sha256 is {actual}, but the header announced {expected}")]
    DigestMismatch { expected: String, actual: String },
    #[error("upload is larger than announced ({expected} bytes)")]
    TooLarge { expected: i64 },
    #[error("artifact storage: {0}")]
    Io(#[from] std::io::Error),
}

/// The artifact store; cheap to clone.
#[derive(Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// Whether the content is files in the data directory (a backup then copies them).
    local: bool,
}

impl ArtifactStore {
    /// The store `storage` configures (files under `data_dir/artifacts` for `Local`).
    pub fn open_configured(
        storage: &ArtifactStorage,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        match storage {
            ArtifactStorage::Local => Self::local(data_dir),
            ArtifactStorage::S3(settings) => Self::s3(settings),
        }
    }

    /// Files under `data_dir/artifacts`.
    pub fn local(data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let root = data_dir.join("artifacts");
        std::fs::create_dir_all(&root)
            .map_err(|error| anyhow::anyhow!("artifacts directory {}: {error}", root.display()))?;
        let store = LocalFileSystem::new_with_prefix(&root)
            .map_err(|error| anyhow::anyhow!("artifacts directory {}: {error}", root.display()))?
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(store),
            local: true,
        })
    }

    /// An S3-compatible bucket.
    pub fn s3(settings: &S3Settings) -> anyhow::Result<Self> {
        // The HTTP client takes rustls's process-wide provider; without one it would panic.
        crate::tls::install_crypto_provider();
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(&settings.secret_access_key)
            .with_virtual_hosted_style_request(settings.virtual_hosted_style)
            .with_client_options(
                object_store::ClientOptions::new()
                    // A download is streamed as fast as its client reads it: no bound on the
                    // whole request, only on connecting and on a stalled read.
                    .with_timeout_disabled()
                    .with_connect_timeout(std::time::Duration::from_secs(5))
                    .with_allow_http(
                        settings
                            .endpoint
                            .as_deref()
                            .is_some_and(|endpoint| endpoint.starts_with("http://")),
                    ),
            );
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder
            .build()
            .map_err(|error| anyhow::anyhow!("artifacts (bucket {}): {error}", settings.bucket))?;
        Ok(Self {
            store: Arc::new(store),
            local: false,
        })
    }

    /// Whether artifacts are files in the data directory.
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// A fresh storage key for an artifact of this execution (ids and random hex only).
    pub fn new_key(customer_id: CustomerId, execution_id: ExecutionId) -> String {
        let unique: u64 = rand::rng().random();
        format!("{customer_id}/{execution_id}/{unique:016x}")
    }

    /// Starts writing an artifact announced as `size` bytes with `sha256`.
    pub async fn begin(
        &self,
        key: &str,
        size: i64,
        sha256: &str,
    ) -> Result<ArtifactWriter, ArtifactError> {
        let writer = BufWriter::with_capacity(self.store.clone(), StorePath::from(key), PART_BYTES)
            .with_max_concurrency(PARTS_IN_FLIGHT);
        Ok(ArtifactWriter {
            writer: Some(writer),
            hasher: Sha256::new(),
            written: 0,
            expected_size: size,
            expected_sha256: sha256.to_owned(),
        })
    }

    /// Opens a stored artifact for reading, streamed from the store.
    pub async fn open(
        &self,
        key: &str,
    ) -> std::io::Result<impl AsyncRead + Send + Unpin + 'static> {
        let found = self
            .store
            .get(&StorePath::from(key))
            .await
            .map_err(io_error)?;
        let chunks = found.into_stream().map(|chunk| chunk.map_err(io_error));
        Ok(tokio_util::io::StreamReader::new(chunks))
    }

    /// Removes a stored artifact (its row could not be written); a missing one is no error.
    pub async fn remove(&self, key: &str) {
        self.remove_many(&[key.to_owned()]).await;
    }

    /// Removes stored artifacts (their rows are gone), in one request per thousand on S3.
    /// Returns how many could not be removed (logged); missing ones count as removed.
    pub async fn remove_many(&self, keys: &[String]) -> usize {
        if keys.is_empty() {
            return 0;
        }
        let locations = keys
            .iter()
            .map(|key| Ok(StorePath::from(key.as_str())))
            .collect::<Vec<_>>();
        let mut results = self
            .store
            .delete_stream(Box::pin(tokio_stream::iter(locations)));
        let mut failed = 0;
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => {
                    failed += 1;
                    tracing::warn!(%error, "could not delete an artifact from the store");
                }
            }
        }
        failed
    }
}

/// A store error as an I/O error (missing content: `NotFound`).
fn io_error(error: object_store::Error) -> std::io::Error {
    match error {
        object_store::Error::NotFound { .. } => {
            std::io::Error::new(std::io::ErrorKind::NotFound, error)
        }
        error => std::io::Error::other(error),
    }
}

/// An upload in progress; dropped without `finish`, it is aborted and nothing is stored.
pub struct ArtifactWriter {
    /// `None` once finished or aborted.
    writer: Option<BufWriter>,
    hasher: Sha256,
    written: i64,
    expected_size: i64,
    expected_sha256: String,
}

impl ArtifactWriter {
    /// Appends bytes; refuses to go past the announced size.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), ArtifactError> {
        self.written += data.len() as i64;
        if self.written > self.expected_size {
            self.abort().await;
            return Err(ArtifactError::TooLarge {
                expected: self.expected_size,
            });
        }
        self.hasher.update(data);
        if let Some(writer) = self.writer.as_mut()
            && let Err(error) = writer.write_all(data).await
        {
            self.abort().await;
            return Err(error.into());
        }
        Ok(())
    }

    /// Checks size and digest, then makes the artifact visible.
    pub async fn finish(mut self) -> Result<(), ArtifactError> {
        if self.written != self.expected_size {
            self.abort().await;
            return Err(ArtifactError::SizeMismatch {
                expected: self.expected_size,
                actual: self.written,
            });
        }
        let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if actual != self.expected_sha256 {
            self.abort().await;
            return Err(ArtifactError::DigestMismatch {
                expected: self.expected_sha256.clone(),
                actual,
            });
        }
        let Some(mut writer) = self.writer.take() else {
            return Err(std::io::Error::other("upload already ended").into());
        };
        if let Err(error) = writer.shutdown().await {
            let _ = writer.abort().await;
            return Err(error.into());
        }
        Ok(())
    }

    async fn abort(&mut self) {
        if let Some(mut writer) = self.writer.take()
            && let Err(error) = writer.abort().await
        {
            tracing::warn!(%error, "could not abort an artifact upload");
        }
    }
}

impl Drop for ArtifactWriter {
    fn drop(&mut self) {
        // An upload cut off (its agent gone, the request dropped): abort what was sent.
        if let Some(mut writer) = self.writer.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(error) = writer.abort().await {
                    tracing::warn!(%error, "could not abort an artifact upload");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uploads_are_checked_before_they_land() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = ArtifactStore::local(dir.path()).expect("store");
        let data = b"hello artifact";
        let digest = hex::encode(Sha256::digest(data));
        let key = ArtifactStore::new_key(CustomerId::from_db(1), ExecutionId::from_db(2));
        assert!(key.starts_with("1/2/"));
        let mut writer = store
            .begin(&key, data.len() as i64, &digest)
            .await
            .expect("begin");
        writer.write(data).await.expect("write");
        writer.finish().await.expect("finish");
        let stored = tokio::fs::read(dir.path().join("artifacts").join(&key))
            .await
            .expect("stored");
        assert_eq!(stored, data);

        let bad = ArtifactStore::new_key(CustomerId::from_db(1), ExecutionId::from_db(2));
        let mut writer = store
            .begin(&bad, data.len() as i64, &"0".repeat(64))
            .await
            .expect("begin");
        writer.write(data).await.expect("write");
        assert!(matches!(
            writer.finish().await,
            Err(ArtifactError::DigestMismatch { .. })
        ));
        assert!(!dir.path().join("artifacts").join(&bad).exists());
        let mut writer = store.begin(&bad, 2, &digest).await.expect("begin");
        assert!(matches!(
            writer.write(data).await,
            Err(ArtifactError::TooLarge { .. })
        ));
    }
}
