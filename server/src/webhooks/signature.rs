//! Whether a delivery comes from whoever holds the endpoint's secret, as each format signs:
//!
//! - generic: `X-Cygnet-Timestamp: <unix seconds>` and `X-Cygnet-Signature: sha256=<hex>`, the
//!   HMAC-SHA256 of `<timestamp>.<body>` under the secret; refused when the timestamp is more
//!   than five minutes from the server's clock, so a captured delivery cannot be replayed later;
//! - GitHub: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the body;
//! - GitLab: `X-Gitlab-Token`, the secret itself.
//!
//! Every comparison takes the same time whatever the bytes (ring's HMAC verification, subtle's
//! equality).

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use ring::hmac;
use subtle::ConstantTimeEq;

use crate::domain::webhook::WebhookFormat;

/// How far a generic delivery's timestamp may be from now, seconds.
pub const REPLAY_WINDOW_SECONDS: i64 = 300;

pub const GENERIC_SIGNATURE: &str = "x-cygnet-signature";
pub const GENERIC_TIMESTAMP: &str = "x-cygnet-timestamp";
pub const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
pub const GITLAB_TOKEN: &str = "x-gitlab-token";

/// The header's value as text, when it is there and is text.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// `sha256=<hex>` → the digest bytes.
fn sha256_hex(value: &str) -> Option<Vec<u8>> {
    let hex_digits = value.trim().strip_prefix("sha256=")?;
    let bytes = hex::decode(hex_digits).ok()?;
    (bytes.len() == 32).then_some(bytes)
}

/// The HMAC-SHA256 of `parts` (concatenated) under `secret`, as `sha256=<hex>`: what a sender
/// puts in the signature header.
pub fn sign(secret: &str, parts: &[&[u8]]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    for part in parts {
        context.update(part);
    }
    format!("sha256={}", hex::encode(context.sign().as_ref()))
}

fn verify_hmac(secret: &str, parts: &[&[u8]], claimed: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    for part in parts {
        context.update(part);
    }
    let computed = context.sign();
    bool::from(computed.as_ref().ct_eq(claimed))
}

/// Checks a delivery's signature; `Err` says why it is refused (for the endpoint's delivery
/// log, never for the sender).
pub fn verify(
    format: WebhookFormat,
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), &'static str> {
    match format {
        WebhookFormat::GitHub => {
            let claimed =
                header(headers, GITHUB_SIGNATURE).ok_or("no X-Hub-Signature-256 header")?;
            let claimed = sha256_hex(claimed).ok_or("X-Hub-Signature-256 is not sha256=<hex>")?;
            verify_hmac(secret, &[body], &claimed)
                .then_some(())
                .ok_or("the signature does not match the secret")
        }
        WebhookFormat::GitLab => {
            let claimed = header(headers, GITLAB_TOKEN).ok_or("no X-Gitlab-Token header")?;
            bool::from(claimed.as_bytes().ct_eq(secret.as_bytes()))
                .then_some(())
                .ok_or("the token does not match the secret")
        }
        WebhookFormat::Generic => {
            let timestamp =
                header(headers, GENERIC_TIMESTAMP).ok_or("no X-Cygnet-Timestamp header")?;
            let claimed =
                header(headers, GENERIC_SIGNATURE).ok_or("no X-Cygnet-Signature header")?;
            let claimed = sha256_hex(claimed).ok_or("X-Cygnet-Signature is not sha256=<hex>")?;
            let seconds: i64 = timestamp
                .trim()
                .parse()
                .map_err(|_| "X-Cygnet-Timestamp is not whole seconds since 1970")?;
            // The signature first: an unsigned timestamp says nothing.
            if !verify_hmac(secret, &[timestamp.trim().as_bytes(), b".", body], &claimed) {
                return Err("the signature does not match the secret");
            }
            if now.timestamp().abs_diff(seconds) > REPLAY_WINDOW_SECONDS.unsigned_abs() {
                return Err("the timestamp is more than five minutes from now (a replay?)");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("valid"));
        }
        map
    }

    /// The example of GitHub's documentation ("Validating webhook deliveries"): the secret
    /// "It's a Secret to Everybody" and the payload "Hello, World!".
    #[test]
    fn github_documented_vector() {
        let secret = "It's a Secret to Everybody";
        let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(secret, &[b"Hello, World!"]), signature);
        let now = Utc::now();
        let signed = headers(&[(GITHUB_SIGNATURE, signature)]);
        assert_eq!(
            verify(
                WebhookFormat::GitHub,
                secret,
                &signed,
                b"Hello, World!",
                now
            ),
            Ok(())
        );
        assert!(
            verify(
                WebhookFormat::GitHub,
                secret,
                &signed,
                b"Hello, World?",
                now
            )
            .is_err()
        );
        assert!(
            verify(
                WebhookFormat::GitHub,
                "another",
                &signed,
                b"Hello, World!",
                now
            )
            .is_err()
        );
        assert!(verify(WebhookFormat::GitHub, secret, &HeaderMap::new(), b"", now).is_err());
    }

    #[test]
    fn gitlab_compares_the_token() {
        let now = Utc::now();
        let right = headers(&[(GITLAB_TOKEN, "s3cret")]);
        assert_eq!(
            verify(WebhookFormat::GitLab, "s3cret", &right, b"{}", now),
            Ok(())
        );
        let wrong = headers(&[(GITLAB_TOKEN, "s3cre")]);
        assert!(verify(WebhookFormat::GitLab, "s3cret", &wrong, b"{}", now).is_err());
    }

    #[test]
    fn generic_signs_the_timestamp_and_refuses_old_ones() {
        let now = Utc::now();
        let secret = "whsec";
        let body = br#"{"branch":"main"}"#;
        let at = now.timestamp().to_string();
        let signature = sign(secret, &[at.as_bytes(), b".", body]);
        let fresh = headers(&[(GENERIC_TIMESTAMP, &at), (GENERIC_SIGNATURE, &signature)]);
        assert_eq!(
            verify(WebhookFormat::Generic, secret, &fresh, body, now),
            Ok(())
        );
        // The same delivery six minutes later is a replay.
        let later = now + chrono::Duration::seconds(360);
        assert!(verify(WebhookFormat::Generic, secret, &fresh, body, later).is_err());
        // A timestamp moved forward no longer matches its signature.
        let moved = (now.timestamp() + 360).to_string();
        let forged = headers(&[(GENERIC_TIMESTAMP, &moved), (GENERIC_SIGNATURE, &signature)]);
        assert!(verify(WebhookFormat::Generic, secret, &forged, body, later).is_err());
    }
}
