//! First start: create the platform administrator and hand out their token.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::auth::token;
use crate::store::SystemStore;

/// File in the data directory that receives a generated bootstrap token.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// What bootstrapping did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Users existed already; nothing was done.
    AlreadyDone,
    /// The admin was created with the configured token.
    CreatedWithConfiguredToken,
    /// The admin was created with a generated token, written to this file (mode 0600).
    CreatedWithTokenFile(PathBuf),
}

/// Creates platform admin `admin` when the database has no user. The token is the configured one,
/// or a generated one written to `<data_dir>/admin.token` with mode 0600.
pub async fn bootstrap_admin(
    store: &SystemStore,
    data_dir: &Path,
    configured_token: Option<&str>,
) -> anyhow::Result<Bootstrap> {
    if store.count_users().await? > 0 {
        return Ok(Bootstrap::AlreadyDone);
    }
    let secret = match configured_token {
        Some(configured) => token::from_secret(configured.to_owned()),
        None => token::generate(token::USER_TOKEN_PREFIX),
    };
    // Write the file before the database row: a crash in between leaves a token file for no
    // one (harmless, rewritten next start) rather than an admin whose token nobody has.
    let token_file = if configured_token.is_none() {
        let path = data_dir.join(ADMIN_TOKEN_FILE);
        write_private_file(&path, &secret.secret)?;
        Some(path)
    } else {
        None
    };
    let created = store.bootstrap_admin(&secret).await?;
    Ok(match (created, token_file) {
        (None, Some(path)) => {
            // Another replica bootstrapped first; our token is worthless.
            let _ = std::fs::remove_file(path);
            Bootstrap::AlreadyDone
        }
        (None, None) => Bootstrap::AlreadyDone,
        (Some(_), Some(path)) => Bootstrap::CreatedWithTokenFile(path),
        (Some(_), None) => Bootstrap::CreatedWithConfiguredToken,
    })
}

/// Writes `contents` to a file only its owner can read.
fn write_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(file, "{contents}")?;
    file.sync_all()?;
    Ok(())
}
