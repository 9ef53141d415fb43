//! A real S3-compatible server for tests: the `s3s-fs` crate's file-backed implementation of the
//! S3 API, served over HTTP on 127.0.0.1:0 in the test's process, with signed requests checked
//! against one access key.

use std::path::{Path, PathBuf};

use cygnet_server::artifacts::{ArtifactStorage, S3Settings};
use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

const ACCESS_KEY: &str = "cygnet-test-access";
const SECRET_KEY: &str = "cygnet-test-secret-0123456789";
const BUCKET: &str = "cygnet-artifacts";

/// See the module docs. Stops when dropped.
pub struct S3Server {
    pub endpoint: String,
    root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl S3Server {
    /// Starts a server with one empty bucket.
    pub async fn start() -> S3Server {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join(BUCKET)).expect("bucket directory");
        let filesystem = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs root");
        let mut builder = S3ServiceBuilder::new(filesystem);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(connection), service)
                        .await;
                });
            }
        });
        S3Server {
            endpoint,
            root,
            task,
        }
    }

    /// The server's settings for the artifact store.
    pub fn storage(&self) -> ArtifactStorage {
        ArtifactStorage::S3(S3Settings {
            endpoint: Some(self.endpoint.clone()),
            bucket: BUCKET.to_owned(),
            region: "us-east-1".to_owned(),
            access_key_id: ACCESS_KEY.to_owned(),
            secret_access_key: SECRET_KEY.to_owned(),
            virtual_hosted_style: false,
        })
    }

    /// Every object in the bucket, as keys, sorted.
    pub fn objects(&self) -> Vec<String> {
        let bucket = self.root.path().join(BUCKET);
        let mut keys: Vec<String> = files_under(&bucket)
            .into_iter()
            .filter_map(|path| {
                let relative = path.strip_prefix(&bucket).ok()?.to_str()?.to_owned();
                // s3s-fs keeps its own bookkeeping beside objects.
                (!relative.split('/').any(|part| part.starts_with('.'))).then_some(relative)
            })
            .collect();
        keys.sort();
        keys
    }

    /// Multipart uploads begun and neither completed nor aborted (their parts are kept
    /// outside the bucket until then).
    pub fn unfinished_uploads(&self) -> usize {
        std::fs::read_dir(self.root.path())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|entry| entry.file_name().to_string_lossy().starts_with(".upload"))
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(path),
                Ok(kind) if kind.is_file() => files.push(path),
                _ => {}
            }
        }
    }
    files
}
