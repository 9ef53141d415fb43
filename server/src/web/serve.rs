//! Serving the dashboard on its own listener: plain HTTP, or HTTPS with the server's certificate
//! when TLS is configured.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::config::TlsFiles;

/// How long a browser may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The browser's address, as handlers see it (`ConnectInfo<WebPeer>`).
#[derive(Clone, Copy, Debug)]
pub struct WebPeer(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for WebPeer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        WebPeer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for WebPeer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        WebPeer(*stream.remote_addr())
    }
}

/// The rustls configuration of the dashboard: the gRPC server's certificate and key (client
/// certificates are for agents, not browsers, and are not asked for).
pub fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certificates = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| anyhow::anyhow!("tls.cert {}: {error}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|error| anyhow::anyhow!("tls.key {}: {error}", files.key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|error| anyhow::anyhow!("tls.cert/tls.key: {error}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TCP connections and completes TLS handshakes concurrently, so a slow handshake
/// delays nobody else.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    fn new(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::debug!(%error, "web accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = sender.closed() => return,
                };
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "web TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "web TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task only ends with this listener; never reached while serving.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Serves `router` on `listener` (over TLS with `tls`) until `stopping` is cancelled; open live
/// streams end then, and requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    stopping: CancellationToken,
) {
    let service = router.into_make_service_with_connect_info::<WebPeer>();
    let stopped = stopping.cancelled_owned();
    let result = match tls {
        None => {
            axum::serve(listener, service)
                .with_graceful_shutdown(stopped)
                .await
        }
        Some(acceptor) => match TlsListener::new(listener, acceptor) {
            Ok(listener) => {
                axum::serve(listener, service)
                    .with_graceful_shutdown(stopped)
                    .await
            }
            Err(error) => Err(error),
        },
    };
    if let Err(error) = result {
        tracing::error!(%error, "the web dashboard stopped");
    }
}
