//! Uploading a step's artifacts: globs resolved inside the workspace only (`..` and symlinks that
//! lead out are refused), each file hashed and streamed to the server.

use std::path::{Path, PathBuf};

use cygnet_proto::AGENT_UUID_METADATA;
use cygnet_proto::v1::{self as pb, agent_service_client::AgentServiceClient};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tonic::Request;

/// Bytes per upload message.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// The files a step's artifact patterns select, as (absolute path, path relative to the
/// workspace). A pattern that selects nothing, or a file outside the workspace, is an error.
pub fn resolve(workspace: &Path, patterns: &[String]) -> Result<Vec<(PathBuf, String)>, String> {
    let root = workspace
        .canonicalize()
        .map_err(|error| format!("workspace {}: {error}", workspace.display()))?;
    let escaped_root = glob::Pattern::escape(&root.to_string_lossy());
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut files = Vec::new();
    for pattern in patterns {
        if pattern.split(['/', '\\']).any(|part| part == "..") || Path::new(pattern).is_absolute() {
            return Err(format!(
                "artifact {pattern:?}: must stay inside the workspace"
            ));
        }
        let full = format!("{escaped_root}/{pattern}");
        let matches = glob::glob_with(&full, options)
            .map_err(|error| format!("artifact {pattern:?}: {error}"))?;
        let mut matched = false;
        for entry in matches {
            let path = entry.map_err(|error| format!("artifact {pattern:?}: {error}"))?;
            let real = path
                .canonicalize()
                .map_err(|error| format!("artifact {}: {error}", path.display()))?;
            if !real.starts_with(&root) {
                return Err(format!(
                    "artifact {}: leads outside the workspace (symlink?)",
                    path.strip_prefix(&root).unwrap_or(&path).display()
                ));
            }
            if !real.is_file() {
                continue;
            }
            let relative = path
                .strip_prefix(&root)
                .map_err(|_| format!("artifact {}: outside the workspace", path.display()))?
                .to_string_lossy()
                .into_owned();
            if !files
                .iter()
                .any(|(_, known): &(PathBuf, String)| *known == relative)
            {
                files.push((real, relative));
            }
            matched = true;
        }
        if !matched {
            return Err(format!("artifact {pattern:?} matched no file"));
        }
    }
    Ok(files)
}

/// Opens a resolved artifact once, for both its digest and its upload, and checks what was
/// opened rather than the path: a step that swaps a directory of the path for a symlink after
/// [`resolve`] (the agent may read as root) gets the upload refused, not a file from outside.
async fn open_inside(path: &Path, workspace: &Path) -> std::io::Result<tokio::fs::File> {
    let outside = || {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "leads outside the workspace (symlink?)",
        )
    };
    let root = workspace.canonicalize()?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits());
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let opened = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        if !opened.starts_with(&root) {
            return Err(outside());
        }
    }
    #[cfg(not(target_os = "linux"))]
    if !path.canonicalize()?.starts_with(&root) {
        return Err(outside());
    }
    Ok(tokio::fs::File::from_std(file))
}

async fn digest(file: &mut tokio::fs::File) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; UPLOAD_CHUNK];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        size += read as u64;
        hasher.update(&buffer[..read]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Uploads one file; returns its size and sha256.
pub async fn upload(
    target: &super::UploadTarget,
    execution_id: i64,
    step_index: i32,
    path: &Path,
    workspace: &Path,
    relative: &str,
    max_bytes: u64,
) -> Result<(u64, String), String> {
    use tokio::io::AsyncSeekExt;
    let mut file = open_inside(path, workspace)
        .await
        .map_err(|error| format!("artifact {relative}: {error}"))?;
    let (size, sha256) = digest(&mut file)
        .await
        .map_err(|error| format!("artifact {relative}: {error}"))?;
    // What is sent is read from the same open file; the server checks size and sha256.
    file.rewind()
        .await
        .map_err(|error| format!("artifact {relative}: {error}"))?;
    if size > max_bytes {
        return Err(format!(
            "artifact {relative}: {size} bytes is over the {max_bytes} byte limit"
        ));
    }
    let header = pb::UploadArtifactRequest {
        part: Some(pb::upload_artifact_request::Part::Header(
            pb::ArtifactHeader {
                execution_id,
                step_index,
                path: relative.to_owned(),
                size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
                sha256: sha256.clone(),
            },
        )),
    };
    let chunks = futures_chunks(file);
    let stream = tokio_stream::StreamExt::chain(tokio_stream::iter(vec![header]), chunks);
    let mut request = Request::new(stream);
    let metadata = request.metadata_mut();
    if let Ok(value) = format!("Bearer {}", target.credential).parse() {
        metadata.insert("authorization", value);
    }
    if let Ok(value) = target.agent_uuid.parse() {
        metadata.insert(AGENT_UUID_METADATA, value);
    }
    AgentServiceClient::new(target.channel.clone())
        .upload_artifact(request)
        .await
        .map_err(|status| format!("artifact {relative}: upload refused: {}", status.message()))?;
    Ok((size, sha256))
}

/// The file's content as upload messages.
fn futures_chunks(
    file: tokio::fs::File,
) -> impl tokio_stream::Stream<Item = pb::UploadArtifactRequest> {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut file = file;
        let mut buffer = vec![0u8; UPLOAD_CHUNK];
        loop {
            match file.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    let message = pb::UploadArtifactRequest {
                        part: Some(pb::upload_artifact_request::Part::Data(
                            buffer[..read].to_vec(),
                        )),
                    };
                    if sender.send(message).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

/// Downloads one shipped artifact to `destination`, checking its size and sha256.
pub async fn fetch(
    target: &super::UploadTarget,
    execution_id: i64,
    artifact: &pb::ShippedArtifact,
    destination: &Path,
) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let name = &artifact.path;
    let mut request = Request::new(pb::FetchArtifactRequest {
        execution_id,
        artifact_id: artifact.artifact_id,
    });
    let metadata = request.metadata_mut();
    if let Ok(value) = format!("Bearer {}", target.credential).parse() {
        metadata.insert("authorization", value);
    }
    if let Ok(value) = target.agent_uuid.parse() {
        metadata.insert(AGENT_UUID_METADATA, value);
    }
    let mut stream = AgentServiceClient::new(target.channel.clone())
        .fetch_artifact(request)
        .await
        .map_err(|status| format!("artifact {name}: fetch refused: {}", status.message()))?
        .into_inner();
    if let Some(parent) = destination.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|error| format!("artifact {name}: {error}"))?;
    }
    let mut file = tokio::fs::File::create(destination)
        .await
        .map_err(|error| format!("artifact {name}: {error}"))?;
    let mut hasher = Sha256::new();
    let mut size: i64 = 0;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|status| format!("artifact {name}: {}", status.message()))?
    {
        size += chunk.data.len() as i64;
        hasher.update(&chunk.data);
        file.write_all(&chunk.data)
            .await
            .map_err(|error| format!("artifact {name}: {error}"))?;
    }
    file.flush()
        .await
        .map_err(|error| format!("artifact {name}: {error}"))?;
    let digest = hex::encode(hasher.finalize());
    if size != artifact.size_bytes || digest != artifact.sha256 {
        let _ = tokio::fs::remove_file(destination).await;
        return Err(format!(
            "artifact {name}: received {size} bytes with sha256 {digest}, expected {} bytes with sha256 {}",
            artifact.size_bytes, artifact.sha256
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_stay_inside_the_workspace() {
        let dir = tempfile::tempdir().expect("temp dir");
        let workspace = dir.path().join("ws");
        std::fs::create_dir_all(workspace.join("dist")).expect("mkdir");
        std::fs::write(workspace.join("dist/app.tar"), b"tar").expect("write");
        std::fs::write(workspace.join("dist/app.zip"), b"zip").expect("write");
        std::fs::write(dir.path().join("secret"), b"secret").expect("write");
        let files =
            resolve(&workspace, &["dist/*.tar".into(), "dist/app.*".into()]).expect("resolved");
        let names: Vec<_> = files
            .iter()
            .map(|(_, relative)| relative.as_str())
            .collect();
        assert_eq!(names, ["dist/app.tar", "dist/app.zip"]);
        assert!(resolve(&workspace, &["../secret".into()]).is_err());
        assert!(
            resolve(&workspace, &["missing/*".into()])
                .expect_err("nothing")
                .contains("matched no file")
        );
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret"), workspace.join("link"))
                .expect("symlink");
            let error = resolve(&workspace, &["link".into()]).expect_err("escapes");
            assert!(error.contains("outside the workspace"), "{error}");
        }
    }
}
