//! TCP checks: the target is up when a connection opens.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::TcpStream;

use super::CheckOutcome;
use super::target::TcpTarget;

/// Resolves the target and connects to its addresses in turn; up at the first connection. The
/// connection is closed at once. The response time counts from before resolution, like an HTTP
/// check's.
///
/// Not bounded in time: the caller applies the monitor's timeout.
pub async fn check(target: &TcpTarget) -> CheckOutcome {
    let started = Instant::now();
    let addresses: Vec<SocketAddr> =
        match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
            Ok(addresses) => addresses.collect(),
            Err(error) => {
                return CheckOutcome::down(format!("cannot resolve {}: {error}", target.host));
            }
        };
    let mut last_error = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                let response_ms = super::elapsed_ms(started);
                drop(stream);
                return CheckOutcome::up(response_ms, 0, "connected".to_owned());
            }
            Err(error) => last_error = Some(error),
        }
    }
    match last_error {
        Some(error) => CheckOutcome::down(describe_io_error(&error)),
        None => CheckOutcome::down(format!("cannot resolve {}: no addresses", target.host)),
    }
}

/// A short, lowercase description of a failed connection ("connection refused").
pub(super) fn describe_io_error(error: &io::Error) -> String {
    known_io_error(error.kind())
        .map(str::to_owned)
        .unwrap_or_else(|| error.to_string())
}

/// The phrase for errors every operator recognises; `None` for the rest.
pub(super) fn known_io_error(kind: io::ErrorKind) -> Option<&'static str> {
    Some(match kind {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        io::ErrorKind::NetworkDown => "network down",
        io::ErrorKind::TimedOut => "connection timed out",
        io::ErrorKind::AddrNotAvailable => "address not available",
        io::ErrorKind::PermissionDenied => "permission denied",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn target_of(address: SocketAddr) -> TcpTarget {
        TcpTarget {
            host: address.ip().to_string(),
            port: address.port(),
        }
    }

    #[tokio::test]
    async fn a_listening_port_is_up() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let outcome = check(&target_of(address)).await;
        assert_eq!(
            (outcome.up, outcome.http_status, outcome.message.as_str()),
            (true, 0, "connected")
        );
        assert!(outcome.response_ms >= 0);
        // The listener really saw the connection.
        let (_accepted, _) = listener.accept().await.expect("accepted");
    }

    #[tokio::test]
    async fn a_name_is_resolved_before_connecting() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let outcome = check(&TcpTarget {
            host: "localhost".into(),
            port,
        })
        .await;
        // localhost may resolve to ::1 first; the IPv4 address is tried next.
        assert!(outcome.up, "{}", outcome.message);
    }

    #[tokio::test]
    async fn a_closed_port_is_down_with_connection_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let outcome = check(&target_of(address)).await;
        assert_eq!(
            (
                outcome.up,
                outcome.response_ms,
                outcome.http_status,
                outcome.message.as_str()
            ),
            (false, 0, 0, "connection refused")
        );
    }
}
