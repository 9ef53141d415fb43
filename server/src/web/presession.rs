//! The pre-session that guards sign-in against login CSRF.
//!
//! The sign-in page sets a random secret in an `HttpOnly`, `SameSite=Strict` cookie scoped to
//! `/signin`, and its form carries a token derived from that secret. Sign-in proceeds only when
//! the form's token matches the cookie the same browser sent, so a page of another site cannot
//! sign a victim's browser in to the attacker's account: it can neither read the token nor make
//! the browser send the cookie with its cross-site post.

use axum::http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};

use crate::auth::token;

/// The cookie holding the pre-session secret.
pub const COOKIE: &str = "cygnet_signin";
/// How long a sign-in page stays usable.
const LIFETIME_SECONDS: u32 = 3600;

/// A browser's pre-session, from its cookie or freshly made.
pub struct PreSession {
    secret: String,
    /// Whether the browser does not hold it yet, so the answer must set the cookie.
    fresh: bool,
}

impl PreSession {
    /// The pre-session the browser sent, if any.
    pub fn from_headers(headers: &HeaderMap) -> Option<PreSession> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, secret)| secret.trim())
            .filter(|secret| !secret.is_empty() && secret.is_ascii())
            .map(|secret| PreSession {
                secret: secret.to_owned(),
                fresh: false,
            })
    }

    /// The browser's pre-session, or a new one when it has none.
    pub fn from_headers_or_new(headers: &HeaderMap) -> PreSession {
        PreSession::from_headers(headers).unwrap_or_else(|| PreSession {
            secret: token::generate("").secret,
            fresh: true,
        })
    }

    /// The token the sign-in form carries.
    pub fn form_token(&self) -> String {
        hex::encode(Sha256::digest(format!("cygnet-signin:{}", self.secret)))
    }

    /// Whether `presented` is this pre-session's form token (compared in constant time).
    pub fn accepts(&self, presented: &str) -> bool {
        token::hashes_equal(&self.form_token(), presented)
    }

    /// The `Set-Cookie` value that hands a fresh pre-session to the browser, if it is fresh.
    pub fn set_cookie(&self, secure: bool) -> Option<HeaderValue> {
        if !self.fresh {
            return None;
        }
        let secure = if secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={}; Path=/signin; HttpOnly; SameSite=Strict; Max-Age={LIFETIME_SECONDS}{secure}",
            self.secret
        ))
        .ok()
    }

    /// The `Set-Cookie` value that ends the pre-session once the browser has signed in.
    pub fn clear_cookie(secure: bool) -> HeaderValue {
        HeaderValue::from_static(if secure {
            "cygnet_signin=; Path=/signin; HttpOnly; SameSite=Strict; Max-Age=0; Secure"
        } else {
            "cygnet_signin=; Path=/signin; HttpOnly; SameSite=Strict; Max-Age=0"
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::PreSession;

    #[test]
    fn the_form_token_is_bound_to_the_browsers_cookie() {
        let fresh = PreSession::from_headers_or_new(&HeaderMap::new());
        let cookie = fresh
            .set_cookie(false)
            .expect("a fresh pre-session sets its cookie");
        let pair = cookie
            .to_str()
            .expect("ascii")
            .split(';')
            .next()
            .expect("pair");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("theme=dark; {pair}")).expect("cookie"),
        );
        let returned = PreSession::from_headers(&headers).expect("sent back");
        assert!(returned.set_cookie(false).is_none(), "kept, not set again");
        assert!(returned.accepts(&fresh.form_token()));
        let other = PreSession::from_headers_or_new(&HeaderMap::new());
        assert!(
            !returned.accepts(&other.form_token()),
            "another browser's token"
        );
        assert!(!returned.accepts(""));
    }
}
