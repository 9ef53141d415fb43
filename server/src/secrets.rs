//! Encryption of secret variable values at rest.
//!
//! Values are sealed with ChaCha20-Poly1305 (ring) under the server's 256-bit key, with a fresh
//! random nonce each time and the row's identity (customer, group, key, environment) as
//! associated data, so a ciphertext copied onto another row does not open. A sealed value reads
//! `v1:<key id>:<nonce>:<ciphertext>` (base64); the key id (the first 8 hex digits of the key's
//! SHA-256) says which key opens it, so after a rotation values sealed under the previous key
//! still open until they are re-sealed (`Store::reseal_secrets`, at start-up).
//!
//! The key comes from `secret_key` (`CYGNET_SECRET_KEY`, base64 of 32 bytes) or, when unset,
//! from `<data_dir>/secret.key`, generated on first start with mode 0600. The database alone
//! reveals no secret.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// Length of a key, bytes.
pub const KEY_LEN: usize = 32;
/// The key file in the data directory, when no key is configured.
pub const KEY_FILE: &str = "secret.key";

/// Why a sealed value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("sealed with key {0}, which this server does not have (set secret_key_previous)")]
    UnknownKey(String),
    #[error("the sealed value is malformed")]
    Malformed,
    #[error("the sealed value does not open with its key (wrong key or altered data)")]
    Corrupt,
}

struct Key {
    id: String,
    aead: LessSafeKey,
}

impl Key {
    fn new(bytes: &[u8; KEY_LEN]) -> anyhow::Result<Key> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| anyhow::anyhow!("not a ChaCha20-Poly1305 key"))?;
        Ok(Key {
            id: hex::encode(&Sha256::digest(bytes)[..4]),
            aead: LessSafeKey::new(unbound),
        })
    }
}

/// Seals and opens secret values.
pub struct SecretBox {
    current: Key,
    previous: Option<Key>,
    random: SystemRandom,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("key_id", &self.current.id)
            .finish_non_exhaustive()
    }
}

/// Key bytes from the configuration; `Debug` does not show them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyBytes(pub [u8; KEY_LEN]);

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyBytes(<redacted>)")
    }
}

/// A configured key: base64 of exactly 32 bytes.
pub fn parse_key(value: &str) -> Result<[u8; KEY_LEN], String> {
    let bytes = STANDARD
        .decode(value.trim())
        .map_err(|_| "is not base64".to_owned())?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "must be {KEY_LEN} bytes (base64 of them), not {}",
            bytes.len()
        )
    })
}

impl SecretBox {
    pub fn new(current: &[u8; KEY_LEN], previous: Option<&[u8; KEY_LEN]>) -> anyhow::Result<Self> {
        Ok(SecretBox {
            current: Key::new(current)?,
            previous: previous.map(Key::new).transpose()?,
            random: SystemRandom::new(),
        })
    }

    /// The configured key, or the data directory's key file (created, mode 0600, when missing).
    pub fn load(
        configured: Option<[u8; KEY_LEN]>,
        previous: Option<[u8; KEY_LEN]>,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        let current = match configured {
            Some(key) => key,
            None => key_file(&data_dir.join(KEY_FILE))?,
        };
        Self::new(&current, previous.as_ref())
    }

    /// The id of the key new values are sealed with.
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plaintext`, bound to `context` (the row it is stored in).
    pub fn seal(&self, plaintext: &str, context: &str) -> anyhow::Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("no randomness for a nonce"))?;
        let mut sealed = plaintext.as_bytes().to_vec();
        self.current
            .aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        Ok(format!(
            "v1:{}:{}:{}",
            self.current.id,
            STANDARD.encode(nonce),
            STANDARD.encode(sealed)
        ))
    }

    /// Opens a value sealed by [`SecretBox::seal`] with the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<String, SecretError> {
        let mut parts = sealed.split(':');
        let (Some("v1"), Some(key_id), Some(nonce), Some(ciphertext), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(SecretError::Malformed);
        };
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|key| key.id == key_id)
            .ok_or_else(|| SecretError::UnknownKey(key_id.to_owned()))?;
        let nonce: [u8; NONCE_LEN] = STANDARD
            .decode(nonce)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(SecretError::Malformed)?;
        let mut data = STANDARD
            .decode(ciphertext)
            .map_err(|_| SecretError::Malformed)?;
        let plain = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .map_err(|_| SecretError::Corrupt)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Corrupt)
    }

    /// Whether a sealed value is under another key than the current one.
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        sealed.split(':').nth(1) != Some(self.current.id.as_str())
    }
}

/// Reads the key file, or creates it with a new random key (mode 0600) when missing.
fn key_file(path: &Path) -> anyhow::Result<[u8; KEY_LEN]> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_key(&text)
            .map_err(|problem| anyhow::anyhow!("{}: the key {problem}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; KEY_LEN];
            SystemRandom::new()
                .fill(&mut key)
                .map_err(|_| anyhow::anyhow!("no randomness for a secret key"))?;
            write_private(path, &(STANDARD.encode(key) + "\n"))?;
            tracing::info!(key_file = %path.display(), "generated the key that encrypts secret variables; back it up");
            Ok(key)
        }
        Err(error) => Err(anyhow::anyhow!("{}: {error}", path.display())),
    }
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|error| anyhow::anyhow!("cannot create {}: {error}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() -> anyhow::Result<()> {
        let one = SecretBox::new(&[1; KEY_LEN], None)?;
        let sealed = one.seal("hunter2-secret", "1:2:TOKEN:0")?;
        assert!(!sealed.contains("hunter2"));
        assert_eq!(one.open(&sealed, "1:2:TOKEN:0")?, "hunter2-secret");
        assert_ne!(
            sealed,
            one.seal("hunter2-secret", "1:2:TOKEN:0")?,
            "fresh nonce"
        );
        assert!(matches!(
            one.open(&sealed, "1:3:TOKEN:0"),
            Err(SecretError::Corrupt)
        ));
        let mut altered = sealed.clone();
        altered.pop();
        altered.push('A');
        assert!(one.open(&altered, "1:2:TOKEN:0").is_err());
        assert!(matches!(
            one.open("plain", "x"),
            Err(SecretError::Malformed)
        ));

        // After a rotation the previous key still opens old values, which need resealing.
        let two = SecretBox::new(&[2; KEY_LEN], Some(&[1; KEY_LEN]))?;
        assert!(two.needs_reseal(&sealed));
        assert_eq!(two.open(&sealed, "1:2:TOKEN:0")?, "hunter2-secret");
        let resealed = two.seal("hunter2-secret", "1:2:TOKEN:0")?;
        assert!(!two.needs_reseal(&resealed));
        let without_previous = SecretBox::new(&[2; KEY_LEN], None)?;
        assert!(matches!(
            without_previous.open(&sealed, "1:2:TOKEN:0"),
            Err(SecretError::UnknownKey(_))
        ));
        Ok(())
    }

    #[test]
    fn the_key_file_is_created_once_and_private() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = SecretBox::load(None, None, dir.path())?;
        let second = SecretBox::load(None, None, dir.path())?;
        assert_eq!(first.key_id(), second.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))?
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(KEY_FILE), "short")?;
        assert!(SecretBox::load(None, None, dir.path()).is_err());
        assert_eq!(parse_key(&STANDARD.encode([7u8; 32])).ok(), Some([7u8; 32]));
        assert!(parse_key("AAAA").is_err());
        Ok(())
    }
}
