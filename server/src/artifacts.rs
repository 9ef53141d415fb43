//! Artifact files, kept under `<data_dir>/artifacts/<customer_id>/<execution_id>/`. An upload is
//! written to a temporary file while it is hashed, and only renamed into place when its size and
//! SHA-256 match what the agent announced.

use std::path::{Path, PathBuf};

use rand::RngExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::domain::{CustomerId, ExecutionId};

/// Largest artifact accepted, bytes.
pub const MAX_ARTIFACT_BYTES: i64 = 1 << 30;

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

/// The artifact directory.
#[derive(Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

impl ArtifactStore {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("artifacts"),
        }
    }

    /// A fresh storage key for an artifact of this execution (ids and random hex only).
    pub fn new_key(customer_id: CustomerId, execution_id: ExecutionId) -> String {
        let unique: u64 = rand::rng().random();
        format!("{customer_id}/{execution_id}/{unique:016x}")
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Starts writing an artifact announced as `size` bytes with `sha256`.
    pub async fn begin(
        &self,
        key: &str,
        size: i64,
        sha256: &str,
    ) -> Result<ArtifactWriter, ArtifactError> {
        let path = self.path(key);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let temporary = path.with_extension("partial");
        let file = tokio::fs::File::create(&temporary).await?;
        Ok(ArtifactWriter {
            file,
            temporary,
            path,
            hasher: Sha256::new(),
            written: 0,
            expected_size: size,
            expected_sha256: sha256.to_owned(),
        })
    }

    /// Opens a stored artifact for reading.
    pub async fn open(&self, key: &str) -> std::io::Result<tokio::fs::File> {
        tokio::fs::File::open(self.path(key)).await
    }

    /// Removes a stored artifact (its row could not be written).
    pub async fn remove(&self, key: &str) {
        let _ = tokio::fs::remove_file(self.path(key)).await;
    }
}

/// An upload in progress; dropped without `finish`, its temporary file is removed.
pub struct ArtifactWriter {
    file: tokio::fs::File,
    temporary: PathBuf,
    path: PathBuf,
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
            return Err(ArtifactError::TooLarge {
                expected: self.expected_size,
            });
        }
        self.hasher.update(data);
        self.file.write_all(data).await?;
        Ok(())
    }

    /// Checks size and digest, then moves the file into place.
    pub async fn finish(mut self) -> Result<(), ArtifactError> {
        if self.written != self.expected_size {
            return Err(ArtifactError::SizeMismatch {
                expected: self.expected_size,
                actual: self.written,
            });
        }
        let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if actual != self.expected_sha256 {
            return Err(ArtifactError::DigestMismatch {
                expected: self.expected_sha256.clone(),
                actual,
            });
        }
        self.file.flush().await?;
        self.file.sync_all().await?;
        tokio::fs::rename(&self.temporary, &self.path).await?;
        Ok(())
    }
}

impl Drop for ArtifactWriter {
    fn drop(&mut self) {
        // After a successful finish the temporary file no longer exists; this is then a no-op.
        let _ = std::fs::remove_file(&self.temporary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uploads_are_checked_before_they_land() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = ArtifactStore::new(dir.path());
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
