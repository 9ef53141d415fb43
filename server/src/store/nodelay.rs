//! `TCP_NODELAY` on the PostgreSQL pool's sockets.
//!
//! sqlx 0.9.0 opens its PostgreSQL TCP connections without `TCP_NODELAY` (a regression reported
//! as transact-rs/sqlx#4335 and fixed upstream by #4336, not yet released). With Nagle's
//! algorithm on, a statement written right after a small write that PostgreSQL has not yet
//! acknowledged waits for its delayed ACK, 40 ms on Linux: log chunks were stored at 1.5 MB/s on
//! PostgreSQL against 116 MB/s on SQLite (BENCHMARKS.md). sqlx keeps the socket to itself, so
//! after each new pool connection this module finds the process's TCP sockets connected to the
//! database server and sets the option on them. A duplicate of each descriptor is taken with
//! `pidfd_getfd` (a socket option set through a duplicate applies to the socket itself), which
//! keeps the code free of `unsafe`. Remove this module once sqlx sets the option itself.

use std::io;
use std::net::SocketAddr;

use rustix::net::sockopt;
use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

/// Sets `TCP_NODELAY` on every TCP socket of this process whose peer is one of `peers`; returns
/// how many sockets it looked at that match.
pub(crate) fn set_on_connections_to(peers: &[SocketAddr]) -> io::Result<usize> {
    let this_process = pidfd_open(getpid(), PidfdFlags::empty())?;
    let mut matched = 0;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let Some(number) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // Only sockets: the link reads `socket:[inode]`. The directory's own descriptor and any
        // closed since the listing are skipped.
        let is_socket = std::fs::read_link(entry.path())
            .map(|target| {
                target
                    .as_os_str()
                    .as_encoded_bytes()
                    .starts_with(b"socket:")
            })
            .unwrap_or(false);
        if !is_socket {
            continue;
        }
        let Ok(duplicate) = pidfd_getfd(&this_process, number, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let peer = rustix::net::getpeername(&duplicate)
            .ok()
            .flatten()
            .and_then(|address| SocketAddr::try_from(address).ok());
        if peer.is_some_and(|peer| peers.contains(&peer)) {
            sockopt::set_tcp_nodelay(&duplicate, true)?;
            matched += 1;
        }
    }
    Ok(matched)
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::set_on_connections_to;

    #[test]
    fn only_sockets_connected_to_the_given_peers_change() -> std::io::Result<()> {
        let database = TcpListener::bind("127.0.0.1:0")?;
        let other = TcpListener::bind("127.0.0.1:0")?;
        let to_database = TcpStream::connect(database.local_addr()?)?;
        let to_other = TcpStream::connect(other.local_addr()?)?;
        assert!(!to_database.nodelay()?);
        assert!(!to_other.nodelay()?);

        let matched = set_on_connections_to(&[database.local_addr()?])?;

        assert_eq!(matched, 1);
        assert!(to_database.nodelay()?);
        assert!(!to_other.nodelay()?);
        Ok(())
    }
}
