//! What a monitor checks: the address a TCP monitor connects to, the URL an HTTP monitor gets.
//!
//! The server validates targets before it hands them out; the agent parses them again, with the
//! same parser (`cygnet_proto::monitor_target`), because it must know the host and port, and
//! reports a target it cannot parse as a failed check instead of trusting that validation.

use cygnet_proto::monitor_target;
use hyper::Uri;

pub use cygnet_proto::monitor_target::{TargetError, TcpTarget};

/// The URL an HTTP monitor gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// Absolute, without credentials or fragment.
    pub uri: Uri,
    /// Whether the URL is `https://`.
    pub https: bool,
}

impl HttpTarget {
    /// Parses an `http://` or `https://` URL. It goes through the `url` crate first (as on the
    /// server), so what the server accepted — international host names, characters that need
    /// percent-encoding — arrives here in the form an HTTP request line needs.
    pub fn parse(value: &str) -> Result<Self, TargetError> {
        let monitor_target::HttpTarget { mut url, https } =
            monitor_target::HttpTarget::parse(value)?;
        url.set_fragment(None);
        // Never sent: the server refuses URLs with credentials, so these are only a precaution.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let uri = url
            .as_str()
            .parse::<Uri>()
            .map_err(|error| TargetError::InvalidUrl(error.to_string()))?;
        Ok(Self { uri, https })
    }

    /// The host, for messages.
    pub fn host(&self) -> &str {
        self.uri.host().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_targets_are_absolute_http_or_https_urls() {
        let target = HttpTarget::parse("https://api.acme.com/health?full=1#top").expect("valid");
        assert!(target.https);
        assert_eq!(target.uri, "https://api.acme.com/health?full=1");
        assert_eq!(target.host(), "api.acme.com");

        let target = HttpTarget::parse("http://127.0.0.1:8080").expect("valid");
        assert!(!target.https);
        assert_eq!(target.uri.port_u16(), Some(8080));
        assert_eq!(target.uri.path(), "/");

        let target = HttpTarget::parse("http://[::1]:8080/status").expect("valid");
        assert_eq!(target.uri.host(), Some("[::1]"));

        // Credentials are never sent.
        let target = HttpTarget::parse("https://user:secret@acme.com/").expect("valid");
        assert_eq!(target.uri, "https://acme.com/");

        // What the url crate normalises: an international host name, a space in the path.
        let target = HttpTarget::parse("https://bücher.example/a b").expect("valid");
        assert_eq!(target.uri, "https://xn--bcher-kva.example/a%20b");
    }

    #[test]
    fn http_targets_that_cannot_be_checked_say_why() {
        assert_eq!(HttpTarget::parse(""), Err(TargetError::Empty));
        assert!(matches!(
            HttpTarget::parse("api.acme.com/health"),
            Err(TargetError::InvalidUrl(_))
        ));
        assert!(matches!(
            HttpTarget::parse("http://"),
            Err(TargetError::InvalidUrl(_))
        ));
        assert_eq!(
            HttpTarget::parse("ftp://acme.com/file"),
            Err(TargetError::UnsupportedHttpScheme("ftp".into()))
        );
        assert_eq!(
            HttpTarget::parse("postgres://acme-db"),
            Err(TargetError::UnsupportedHttpScheme("postgres".into()))
        );
    }
}
