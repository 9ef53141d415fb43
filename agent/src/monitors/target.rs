//! What a monitor checks: the address a TCP monitor connects to, the URL an HTTP monitor gets.
//!
//! The server validates targets before it hands them out; the agent parses them again because it
//! must know the host and port, and reports a target it cannot parse as a failed check instead of
//! trusting that validation.

use std::fmt;

use cygnet_proto::TCP_MONITOR_SCHEMES as TCP_SCHEMES;
use hyper::Uri;

/// Why a target cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("target is empty")]
    Empty,
    #[error("scheme {0:?} is not supported by TCP monitors")]
    UnsupportedTcpScheme(String),
    #[error("scheme {0:?} is not supported by HTTP monitors (use http or https)")]
    UnsupportedHttpScheme(String),
    #[error("has an unclosed '[' in its host")]
    UnclosedBracket,
    #[error("has text after its IPv6 address")]
    TextAfterIpv6Address,
    #[error("IPv6 addresses need brackets, e.g. [::1]:5432")]
    Ipv6WithoutBrackets,
    #[error("must name a host")]
    MissingHost,
    #[error("must name a port (host:port)")]
    MissingPort,
    #[error("port {0:?} is not a port number (1-65535)")]
    InvalidPort(String),
    #[error("is not a URL ({0})")]
    InvalidUrl(String),
}

/// The host and port a TCP monitor connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpTarget {
    /// A name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl TcpTarget {
    /// Parses `host:port`, `[v6]:port`, `tcp://host:port`, or a service URL whose scheme gives
    /// the default port (`postgres://user@acme-db/app` is `acme-db:5432`). An explicit port wins;
    /// credentials, path and query are ignored.
    pub fn parse(value: &str) -> Result<Self, TargetError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(TargetError::Empty);
        }
        let (scheme, rest) = match value.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("tcp".to_owned(), value),
        };
        let Some(&(_, default_port)) = TCP_SCHEMES.iter().find(|(known, _)| *known == scheme)
        else {
            return Err(TargetError::UnsupportedTcpScheme(scheme));
        };
        // The authority: after any credentials, before any path, query or fragment.
        let authority = rest
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default()
            .rsplit('@')
            .next()
            .unwrap_or_default();
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or(TargetError::UnclosedBracket)?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port),
                None if after.is_empty() => None,
                None => return Err(TargetError::TextAfterIpv6Address),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port)),
                Some(_) => return Err(TargetError::Ipv6WithoutBrackets),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(TargetError::MissingHost);
        }
        let port = match port {
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(TargetError::InvalidPort(text.to_owned())),
            },
            None => default_port.ok_or(TargetError::MissingPort)?,
        };
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for TcpTarget {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(formatter, "[{}]:{}", self.host, self.port)
        } else {
            write!(formatter, "{}:{}", self.host, self.port)
        }
    }
}

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
        let value = value.trim();
        if value.is_empty() {
            return Err(TargetError::Empty);
        }
        let mut url =
            url::Url::parse(value).map_err(|error| TargetError::InvalidUrl(error.to_string()))?;
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(TargetError::UnsupportedHttpScheme(other.to_owned())),
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(TargetError::MissingHost);
        }
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

    fn tcp(host: &str, port: u16) -> TcpTarget {
        TcpTarget {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn tcp_targets_use_the_explicit_port_or_the_scheme_default() {
        let cases = [
            ("acme-db:5432", tcp("acme-db", 5432)),
            ("  acme-db:5432  ", tcp("acme-db", 5432)),
            ("10.0.0.5:6379", tcp("10.0.0.5", 6379)),
            ("tcp://10.0.0.5:6379", tcp("10.0.0.5", 6379)),
            ("TCP://acme-db:1", tcp("acme-db", 1)),
            ("postgres://acme-db", tcp("acme-db", 5432)),
            ("postgresql://acme-db", tcp("acme-db", 5432)),
            ("mysql://acme-db", tcp("acme-db", 3306)),
            ("redis://acme-cache", tcp("acme-cache", 6379)),
            ("rediss://acme-cache", tcp("acme-cache", 6379)),
            ("mongodb://acme-docs", tcp("acme-docs", 27017)),
            ("amqp://acme-queue", tcp("acme-queue", 5672)),
            ("amqps://acme-queue", tcp("acme-queue", 5671)),
            ("memcached://acme-cache", tcp("acme-cache", 11211)),
            ("ldap://acme-directory", tcp("acme-directory", 389)),
            ("Postgres://acme-db/", tcp("acme-db", 5432)),
            // An explicit port wins; credentials, path, query and fragment are ignored.
            (
                "postgresql://user:p@ss@acme-db:6432/app?sslmode=require",
                tcp("acme-db", 6432),
            ),
            ("redis://:secret@acme-cache:6380/0", tcp("acme-cache", 6380)),
            ("mysql://acme-db?charset=utf8", tcp("acme-db", 3306)),
            ("amqp://acme-queue#vhost", tcp("acme-queue", 5672)),
            ("[::1]:5432", tcp("::1", 5432)),
            ("tcp://[fd00::5]:8080", tcp("fd00::5", 8080)),
            ("postgres://[fd00::5]", tcp("fd00::5", 5432)),
            ("postgres://user@[fd00::5]:6432/app", tcp("fd00::5", 6432)),
        ];
        for (value, expected) in cases {
            assert_eq!(TcpTarget::parse(value), Ok(expected), "{value}");
        }
    }

    #[test]
    fn tcp_targets_that_cannot_be_checked_say_why() {
        let cases = [
            ("", TargetError::Empty),
            ("   ", TargetError::Empty),
            ("acme-db", TargetError::MissingPort),
            ("tcp://acme-db", TargetError::MissingPort),
            ("[::1]", TargetError::MissingPort),
            (
                "ftp://files:21",
                TargetError::UnsupportedTcpScheme("ftp".into()),
            ),
            (
                "http://acme-web",
                TargetError::UnsupportedTcpScheme("http".into()),
            ),
            (":5432", TargetError::MissingHost),
            ("postgres://", TargetError::MissingHost),
            ("postgres://user@/app", TargetError::MissingHost),
            ("[]:5432", TargetError::MissingHost),
            ("db:0", TargetError::InvalidPort("0".into())),
            ("db:70000", TargetError::InvalidPort("70000".into())),
            ("db:x", TargetError::InvalidPort("x".into())),
            ("db:", TargetError::InvalidPort(String::new())),
            ("postgres://db:-1", TargetError::InvalidPort("-1".into())),
            ("::1:5432", TargetError::Ipv6WithoutBrackets),
            ("[::1", TargetError::UnclosedBracket),
            ("[::1]5432", TargetError::TextAfterIpv6Address),
        ];
        for (value, expected) in cases {
            assert_eq!(TcpTarget::parse(value), Err(expected), "{value:?}");
        }
        assert_eq!(
            TargetError::InvalidPort("x".into()).to_string(),
            "port \"x\" is not a port number (1-65535)"
        );
    }

    #[test]
    fn tcp_targets_display_as_an_address() {
        assert_eq!(tcp("acme-db", 5432).to_string(), "acme-db:5432");
        assert_eq!(tcp("::1", 5432).to_string(), "[::1]:5432");
    }

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
