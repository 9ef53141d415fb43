//! One-time secrets handed to the agent in files (`RegistrationTokenFile`,
//! `ReenrolmentTokenFile`): read when registering, deleted once the registration succeeded, so
//! the secret is gone from the host before any job runs.

use std::path::Path;

/// The secret in `path` (surrounding whitespace trimmed); none when the file does not exist
/// or is empty.
pub fn read_secret(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|secret| !secret.is_empty())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Deletes a used secret file; a file already gone is fine.
pub fn remove_used(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_trimmed_and_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("token");
        assert_eq!(read_secret(&path).expect("missing is none"), None);
        std::fs::write(&path, "cygr_secret\n").expect("write");
        assert_eq!(
            read_secret(&path).expect("read").as_deref(),
            Some("cygr_secret")
        );
        remove_used(&path).expect("remove");
        assert!(!path.exists());
        remove_used(&path).expect("removing twice is fine");
    }
}
