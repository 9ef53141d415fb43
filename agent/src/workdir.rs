//! The agent's work directory: `<WorkDirectory>/<CustomerId>/`, mode 0700, the only place jobs
//! run. Paths are built from ids only.

use std::path::{Path, PathBuf};

/// Creates (or tightens) `<work_directory>/<customer_id>` with mode 0700 and returns it.
pub fn prepare_customer_directory(
    work_directory: &Path,
    customer_id: i64,
) -> std::io::Result<PathBuf> {
    let path = work_directory.join(customer_id.to_string());
    create_private_directory(&path)?;
    Ok(path)
}

/// Creates a directory (and parents) and sets it to mode 0700.
pub fn create_private_directory(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes `path` a directory of the agent's own user with `mode`, without ever following a
/// symlink: whatever else is in its place (a symlink, a file) is removed first, and a
/// directory that someone else owns is taken back with `lchown`. The parent must belong to
/// the agent's user, so nobody else can swap `path` meanwhile; callers go top-down.
#[cfg(unix)]
pub fn agent_directory(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => {
            let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
            if metadata.uid() != uid.as_raw() || metadata.gid() != gid.as_raw() {
                std::os::unix::fs::lchown(path, Some(uid.as_raw()), Some(gid.as_raw()))?;
            }
        }
        Ok(_) => {
            std::fs::remove_file(path)?;
            std::fs::create_dir(path)?;
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(path)?,
        Err(error) => return Err(error),
    }
    // Still the agent's own directory (its parent is the agent's), so this follows nothing.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_directory_is_private() {
        let root = tempfile::tempdir().expect("temp dir");
        let path = prepare_customer_directory(root.path(), 7).expect("created");
        assert_eq!(path, root.path().join("7"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }
}
