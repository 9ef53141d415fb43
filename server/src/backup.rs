//! `cygnet-server backup` and `restore` for the embedded setup: one archive (tar) holding a
//! consistent copy of the SQLite database (`Store::copy_sqlite_into`), the secret key when it is
//! kept in the data directory, and the artifact files.
//!
//! The database is copied first, then the artifacts: every artifact a copied row names was
//! stored before its row (uploads are renamed into place before they are recorded), so it is in
//! the archive; files newer than the copy come along unreferenced and harm nothing. The archive
//! is written beside its final name and renamed into place when complete, so a failed backup
//! leaves no file that looks like one. A restore writes into a data directory without a
//! database, the database last, so a failed restore leaves none.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::ServerConfig;
use crate::secrets::KEY_FILE;
use crate::store::{Store, sqlite_file};

/// The database's name inside an archive.
const DATABASE_ENTRY: &str = "cygnet.db";
/// Where artifacts live, in the data directory and in an archive.
const ARTIFACTS: &str = "artifacts";

/// What a backup holds.
#[derive(Debug)]
pub struct BackupSummary {
    pub artifacts: usize,
    /// Artifacts are in an S3-compatible store, which the archive does not copy.
    pub artifacts_in_object_store: bool,
    /// Whether the secret key file is in the archive (false: the key is configured outside the
    /// data directory, `CYGNET_SECRET_KEY`, and must be kept with the backup by the operator).
    pub secret_key_included: bool,
}

/// Writes a backup of the server configured by `config` to `target`, while it runs.
pub async fn backup(config: &ServerConfig, target: &Path) -> anyhow::Result<BackupSummary> {
    if sqlite_file(&config.database.url).is_none() {
        bail!(
            "backup copies the embedded SQLite database; back PostgreSQL up with pg_dump or its \
             continuous archiving (docs/deploy.md)"
        );
    }
    if target.exists() {
        bail!(
            "{} exists; a backup is written to a new file",
            target.display()
        );
    }
    let partial = sibling(target, "partial")?;
    let snapshot = sibling(target, "db-snapshot")?;
    let _ = std::fs::remove_file(&partial);
    let _ = std::fs::remove_file(&snapshot);
    let store = Store::connect(&config.database)
        .await
        .context("cannot open the database")?;
    let copied = store.copy_sqlite_into(&snapshot).await;
    store.close().await.ok();
    copied.context("cannot copy the database")?;
    let data_dir = config.data_dir.clone();
    let key_in_data_dir = config.secret_key.is_none();
    let local_artifacts = config.artifacts == crate::artifacts::ArtifactStorage::Local;
    let (target, result) = tokio::task::spawn_blocking({
        let target = target.to_owned();
        let partial = partial.clone();
        let snapshot = snapshot.clone();
        move || {
            let result = write_archive(
                &partial,
                &snapshot,
                &data_dir,
                key_in_data_dir,
                local_artifacts,
            )
            .and_then(|summary| {
                std::fs::rename(&partial, &target)
                    .with_context(|| format!("cannot move the backup to {}", target.display()))?;
                Ok(summary)
            });
            (target, result)
        }
    })
    .await
    .context("backup task")?;
    let _ = std::fs::remove_file(&snapshot);
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result.with_context(|| format!("backup to {}", target.display()))
}

fn write_archive(
    archive: &Path,
    snapshot: &Path,
    data_dir: &Path,
    key_in_data_dir: bool,
    local_artifacts: bool,
) -> anyhow::Result<BackupSummary> {
    let file =
        File::create(archive).with_context(|| format!("cannot create {}", archive.display()))?;
    let mut builder = tar::Builder::new(BufWriter::new(file));
    builder.mode(tar::HeaderMode::Deterministic);
    builder
        .append_path_with_name(snapshot, DATABASE_ENTRY)
        .context("archiving the database")?;
    let key = data_dir.join(KEY_FILE);
    let secret_key_included = key_in_data_dir && key.exists();
    if secret_key_included {
        builder
            .append_path_with_name(&key, KEY_FILE)
            .context("archiving the secret key")?;
    }
    let mut artifacts = 0;
    let root = data_dir.join(ARTIFACTS);
    if local_artifacts && root.is_dir() {
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .collect::<Result<_, _>>()?;
            entries.sort_by_key(std::fs::DirEntry::file_name);
            for entry in entries {
                let path = entry.path();
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    pending.push(path);
                } else if kind.is_file() && !in_progress(&path) {
                    let relative = path.strip_prefix(data_dir)?;
                    builder
                        .append_path_with_name(&path, relative)
                        .with_context(|| format!("archiving {}", path.display()))?;
                    artifacts += 1;
                }
            }
        }
    }
    let writer = builder.into_inner().context("finishing the archive")?;
    let file = writer.into_inner().map_err(|error| error.into_error())?;
    file.sync_all().context("syncing the archive")?;
    Ok(BackupSummary {
        artifacts,
        artifacts_in_object_store: !local_artifacts,
        secret_key_included,
    })
}

/// An upload still being written is not an artifact yet: the object store stages it as
/// `<key>#<n>` (earlier versions wrote `<key>.partial`).
fn in_progress(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    name.contains('#') || name.ends_with(".partial")
}

/// What a restore wrote.
#[derive(Debug)]
pub struct RestoreSummary {
    pub artifacts: usize,
    pub secret_key_restored: bool,
}

/// Restores `archive` for the server configured by `config`: its SQLite database must not
/// exist yet.
pub async fn restore(config: &ServerConfig, archive: &Path) -> anyhow::Result<RestoreSummary> {
    let database = sqlite_file(&config.database.url)
        .map(PathBuf::from)
        .context("restore writes the embedded SQLite database; this server is configured for another database (see docs/deploy.md for PostgreSQL)")?;
    if database.exists() {
        bail!(
            "{} exists; restore into a server without a database (a new data directory)",
            database.display()
        );
    }
    let config = config.clone();
    let archive = archive.to_owned();
    tokio::task::spawn_blocking(move || unpack(&config, &archive, &database))
        .await
        .context("restore task")?
}

fn unpack(
    config: &ServerConfig,
    archive: &Path,
    database: &Path,
) -> anyhow::Result<RestoreSummary> {
    let file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    if let Some(parent) = database.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let restoring = sibling(database, "restoring")?;
    let mut found_database = false;
    let mut secret_key_restored = false;
    let mut artifacts = 0;
    let mut entries = tar::Archive::new(file);
    for entry in entries.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive")?;
        let path = entry.path()?.into_owned();
        if path
            .components()
            .any(|part| !matches!(part, Component::Normal(_)))
        {
            bail!(
                "archive entry {} is not a plain relative path",
                path.display()
            );
        }
        if path == Path::new(DATABASE_ENTRY) {
            entry.unpack(&restoring)?;
            found_database = true;
        } else if path == Path::new(KEY_FILE) {
            let key = data_dir.join(KEY_FILE);
            if key.exists() {
                bail!(
                    "{} exists; restore into a new data directory",
                    key.display()
                );
            }
            entry.unpack(&key)?;
            std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            secret_key_restored = true;
        } else if path.starts_with(ARTIFACTS) && entry.header().entry_type().is_file() {
            entry.unpack_in(data_dir)?;
            artifacts += 1;
        } else {
            bail!(
                "archive entry {} is not part of a CygnetCI backup",
                path.display()
            );
        }
    }
    if !found_database {
        bail!("{} holds no database ({DATABASE_ENTRY})", archive.display());
    }
    std::fs::rename(&restoring, database)
        .with_context(|| format!("cannot move the database to {}", database.display()))?;
    Ok(RestoreSummary {
        artifacts,
        secret_key_restored,
    })
}

/// `path` with `.<suffix>` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> anyhow::Result<PathBuf> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let mut name = name.to_owned();
    name.push(format!(".{suffix}"));
    Ok(path.with_file_name(name))
}
