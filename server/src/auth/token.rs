//! Bearer secrets: 256 random bits, shown once, stored only as a SHA-256 hash.
//!
//! The secrets are high-entropy, so a fast hash is the right tool (a slow password hash would add
//! latency to every request without adding strength). The database lookup is by hash, and the
//! found hash is compared again in constant time.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every user token starts with this, so leaked tokens are easy to recognise and scan for.
pub const USER_TOKEN_PREFIX: &str = "cyg_";
/// How many leading characters of a secret are kept to recognise it in listings.
const DISPLAY_PREFIX_CHARS: usize = 9;

/// A freshly generated secret, its hash and its display prefix.
pub struct GeneratedSecret {
    pub secret: String,
    pub hash: String,
    pub display_prefix: String,
}

/// Generates a new token secret with the given prefix.
pub fn generate(prefix: &str) -> GeneratedSecret {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
    from_secret(secret)
}

/// `bytes` random bytes as URL-safe base64 (a webhook's URL token and secret).
pub fn random_text(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

/// Describes a secret chosen elsewhere (the bootstrap token from configuration).
pub fn from_secret(secret: String) -> GeneratedSecret {
    GeneratedSecret {
        hash: hash(&secret),
        display_prefix: secret.chars().take(DISPLAY_PREFIX_CHARS).collect(),
        secret,
    }
}

/// The stored form of a secret: lowercase hex SHA-256.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two hashes without leaking where they differ through timing.
pub fn hashes_equal(left: &str, right: &str) -> bool {
    left.as_bytes().ct_eq(right.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_unique_prefixed_and_hash_stably() {
        let first = generate(USER_TOKEN_PREFIX);
        let second = generate(USER_TOKEN_PREFIX);
        assert_ne!(first.secret, second.secret);
        assert!(first.secret.starts_with("cyg_"));
        assert_eq!(first.secret.len(), 4 + 43);
        assert_eq!(first.hash, hash(&first.secret));
        assert_eq!(first.hash.len(), 64);
        assert!(hashes_equal(&first.hash, &hash(&first.secret)));
        assert!(!hashes_equal(&first.hash, &second.hash));
        assert_eq!(first.display_prefix.len(), 9);
    }
}
