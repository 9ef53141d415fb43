//! What a monitor checks: the address a TCP monitor connects to, the URL an HTTP monitor gets.
//!
//! One parser for both sides. The server validates a target with it before storing it
//! ([`TcpTarget::parse`], [`HttpTarget::validate`]); the agent parses it again
//! ([`TcpTarget::parse`], [`HttpTarget::parse`]) because it must know the host and port, and
//! reports a target it cannot parse as a failed check instead of trusting that validation.
//! [`TargetError`] says why a target is refused, in the words the server's validation uses.

use std::fmt;

/// Service URL schemes a `MONITOR_KIND_TCP` target may use, with the port a URL without one
/// means (`tcp` always names its port).
pub const TCP_MONITOR_SCHEMES: [(&str, Option<u16>); 11] = [
    ("tcp", None),
    ("postgres", Some(5432)),
    ("postgresql", Some(5432)),
    ("mysql", Some(3306)),
    ("redis", Some(6379)),
    ("rediss", Some(6379)),
    ("mongodb", Some(27017)),
    ("amqp", Some(5672)),
    ("amqps", Some(5671)),
    ("memcached", Some(11211)),
    ("ldap", Some(389)),
];

/// Why a target cannot be checked (or stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    Empty,
    UnsupportedTcpScheme(String),
    UnsupportedHttpScheme(String),
    UnclosedBracket,
    TextAfterIpv6Address,
    Ipv6WithoutBrackets,
    /// A TCP target without a host.
    MissingHost,
    /// An HTTP target without a host after `scheme://`.
    MissingUrlHost,
    MissingPort,
    InvalidPort(String),
    InvalidUrl(String),
    /// An HTTP target with a user name or password ([`HttpTarget::validate`] only).
    Credentials,
}

impl fmt::Display for TargetError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Empty => formatter.write_str("target is empty"),
            TargetError::UnsupportedTcpScheme(scheme) => {
                write!(
                    formatter,
                    "scheme {scheme:?} is not supported by TCP monitors (use one of "
                )?;
                for (index, (known, _)) in TCP_MONITOR_SCHEMES.iter().enumerate() {
                    if index > 0 {
                        formatter.write_str(", ")?;
                    }
                    formatter.write_str(known)?;
                }
                formatter.write_str(")")
            }
            TargetError::UnsupportedHttpScheme(scheme) => write!(
                formatter,
                "scheme {scheme:?} is not supported by HTTP monitors (use http or https)"
            ),
            TargetError::UnclosedBracket => formatter.write_str("has an unclosed '[' in its host"),
            TargetError::TextAfterIpv6Address => {
                formatter.write_str("has text after its IPv6 address")
            }
            TargetError::Ipv6WithoutBrackets => {
                formatter.write_str("IPv6 addresses need brackets, e.g. [::1]:5432")
            }
            TargetError::MissingHost => formatter.write_str("must name a host"),
            TargetError::MissingUrlHost => {
                formatter.write_str("must name a host (scheme://host/path)")
            }
            TargetError::MissingPort => formatter.write_str("must name a port (host:port)"),
            TargetError::InvalidPort(port) => {
                write!(formatter, "port {port:?} is not a port number (1-65535)")
            }
            TargetError::InvalidUrl(error) => write!(formatter, "is not a URL ({error})"),
            TargetError::Credentials => formatter
                .write_str("must not carry credentials (they would be stored and shown in clear)"),
        }
    }
}

impl std::error::Error for TargetError {}

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
    /// credentials, path, query and fragment are ignored.
    pub fn parse(value: &str) -> Result<Self, TargetError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(TargetError::Empty);
        }
        let (scheme, rest) = match value.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("tcp".to_owned(), value),
        };
        let Some(&(_, default_port)) = TCP_MONITOR_SCHEMES
            .iter()
            .find(|(known, _)| *known == scheme)
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

/// The URL an HTTP monitor gets, as the `url` crate reads it (international host names in
/// their ASCII form, characters that need it percent-encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// Absolute, `http` or `https`, with a host; as written otherwise (credentials and fragment
    /// included).
    pub url: url::Url,
    /// Whether the URL is `https://`.
    pub https: bool,
}

impl HttpTarget {
    /// Parses an `http://` or `https://` URL with a host.
    pub fn parse(value: &str) -> Result<Self, TargetError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(TargetError::Empty);
        }
        let url =
            url::Url::parse(value).map_err(|error| TargetError::InvalidUrl(error.to_string()))?;
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(TargetError::UnsupportedHttpScheme(other.to_owned())),
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(TargetError::MissingUrlHost);
        }
        Ok(Self { url, https })
    }

    /// [`HttpTarget::parse`], and what a target must also be to be stored: its host written
    /// after `scheme://` (the URL parser reads `http:///health` and `http:health` as host
    /// `health`), no credentials (they would be stored and shown in clear).
    pub fn validate(value: &str) -> Result<Self, TargetError> {
        let target = Self::parse(value)?;
        let authority = value.trim().split_once("://").map_or("", |(_, rest)| rest);
        if authority.is_empty() || authority.starts_with(['/', '?', '#']) {
            return Err(TargetError::MissingUrlHost);
        }
        if !target.url.username().is_empty() || target.url.password().is_some() {
            return Err(TargetError::Credentials);
        }
        Ok(target)
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
    fn refusals_read_as_the_server_has_always_worded_them() {
        assert_eq!(
            TargetError::UnsupportedTcpScheme("ftp".into()).to_string(),
            "scheme \"ftp\" is not supported by TCP monitors (use one of tcp, postgres, \
             postgresql, mysql, redis, rediss, mongodb, amqp, amqps, memcached, ldap)"
        );
        assert_eq!(
            TargetError::MissingUrlHost.to_string(),
            "must name a host (scheme://host/path)"
        );
    }

    #[test]
    fn http_targets_keep_what_the_url_crate_read() {
        let target =
            HttpTarget::parse(" https://user:secret@api.acme.com/health#top ").expect("valid");
        assert!(target.https);
        assert_eq!(
            target.url.as_str(),
            "https://user:secret@api.acme.com/health#top"
        );
        assert_eq!(
            HttpTarget::parse("ftp://acme.com"),
            Err(TargetError::UnsupportedHttpScheme("ftp".into()))
        );
        // The URL parser finds a host here; a stored target must write it after "//".
        assert_eq!(
            HttpTarget::parse("http:health")
                .expect("valid")
                .url
                .as_str(),
            "http://health/"
        );
    }

    #[test]
    fn stored_http_targets_name_their_host_and_carry_no_credentials() {
        assert!(HttpTarget::validate("https://api.acme.com/health").is_ok());
        for value in ["http:///health", "http:health", "http:/health"] {
            assert_eq!(
                HttpTarget::validate(value),
                Err(TargetError::MissingUrlHost),
                "{value}"
            );
        }
        for value in [
            "https://user:secret@acme.com",
            "https://user@acme.com",
            "https://:pw@acme.com",
        ] {
            assert_eq!(
                HttpTarget::validate(value),
                Err(TargetError::Credentials),
                "{value}"
            );
        }
    }
}
