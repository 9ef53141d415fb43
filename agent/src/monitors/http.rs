//! HTTP checks: GET the target URL; up when the status is the expected one (or any 2xx).

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::{Bytes, Incoming};
use hyper::header::USER_AGENT;
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::OnceCell;

use super::CheckOutcome;
use super::target::HttpTarget;

/// What the agent calls itself in checks, so operators can tell them apart in access logs.
const USER_AGENT_VALUE: &str = concat!("cygnet-agent/", env!("CARGO_PKG_VERSION"));
/// The most of a response body a check reads before it drops the connection.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The TLS settings of HTTPS checks: the host's trusted roots, read once for all monitors, on
/// first use and off the async worker threads. Ring is named explicitly, as everywhere in the
/// agent, so the checks never depend on which crypto provider the process installed.
#[derive(Clone, Default)]
pub struct TlsRoots {
    config: Arc<OnceCell<Result<rustls::ClientConfig, String>>>,
}

impl TlsRoots {
    async fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        self.config
            .get_or_init(|| async {
                tokio::task::spawn_blocking(native_roots_config)
                    .await
                    .unwrap_or_else(|error| Err(format!("cannot read trusted roots: {error}")))
            })
            .await
            .clone()
    }
}

fn native_roots_config() -> Result<rustls::ClientConfig, String> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| format!("tls: {error}"))?
    .with_native_roots()
    .map_err(|error| format!("no trusted root certificates on this host: {error}"))?
    .with_no_client_auth();
    Ok(config)
}

/// The client of one monitor. Its connections are not pooled: every check opens a new one (and
/// measures it), and nothing stays open between checks.
enum HttpClient {
    Plain(Client<HttpConnector, Empty<Bytes>>),
    Tls(Client<HttpsConnector<HttpConnector>, Empty<Bytes>>),
    /// HTTPS without trusted roots: every check reports why.
    Unavailable(String),
}

/// Checks one HTTP monitor.
pub struct HttpChecker {
    target: HttpTarget,
    /// 0: any 2xx.
    expected_status: u16,
    client: HttpClient,
}

impl HttpChecker {
    /// Builds the monitor's client (reading the trusted roots first when none were read yet and
    /// the target is `https://`).
    pub async fn new(target: HttpTarget, expected_status: u16, tls: &TlsRoots) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let builder = {
            let mut builder = Client::builder(TokioExecutor::new());
            builder.pool_max_idle_per_host(0);
            builder
        };
        let client = if target.https {
            match tls.client_config().await {
                Ok(config) => {
                    connector.enforce_http(false);
                    let connector = HttpsConnectorBuilder::new()
                        .with_tls_config(config)
                        .https_only()
                        .enable_http1()
                        .wrap_connector(connector);
                    HttpClient::Tls(builder.build(connector))
                }
                Err(problem) => HttpClient::Unavailable(problem),
            }
        } else {
            HttpClient::Plain(builder.build(connector))
        };
        Self {
            target,
            expected_status,
            client,
        }
    }

    /// GETs the target once, without following redirects. The response time is the time until
    /// the response headers arrived; the status decides. Then up to [`MAX_BODY_BYTES`] of the
    /// body are read, within what is left of `timeout` and without changing the outcome, so the
    /// server can finish its answer before the connection closes.
    pub async fn check(&self, timeout: Duration) -> CheckOutcome {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let request = match Request::get(self.target.uri.clone())
            .header(USER_AGENT, USER_AGENT_VALUE)
            .body(Empty::new())
        {
            Ok(request) => request,
            Err(error) => return CheckOutcome::down(format!("invalid request: {error}")),
        };
        let response = match &self.client {
            HttpClient::Plain(client) => client.request(request),
            HttpClient::Tls(client) => client.request(request),
            HttpClient::Unavailable(problem) => return CheckOutcome::down(problem.clone()),
        };
        let response = match tokio::time::timeout_at(deadline, response).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                return CheckOutcome::down(describe_request_error(&error, self.target.host()));
            }
            Err(_) => return CheckOutcome::timed_out(timeout),
        };
        let response_ms = super::elapsed_ms(started);
        let outcome = judge(
            response.status().as_u16(),
            self.expected_status,
            response_ms,
        );
        let _ = tokio::time::timeout_at(deadline, read_some(response.into_body())).await;
        outcome
    }
}

/// The outcome for a response status.
fn judge(status: u16, expected_status: u16, response_ms: i64) -> CheckOutcome {
    let up = if expected_status == 0 {
        (200..300).contains(&status)
    } else {
        status == expected_status
    };
    if up {
        CheckOutcome::up(response_ms, i32::from(status), format!("HTTP {status}"))
    } else {
        let message = if expected_status == 0 {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status} (expected {expected_status})")
        };
        CheckOutcome {
            http_status: i32::from(status),
            ..CheckOutcome::down(message)
        }
    }
}

/// Reads the body until its end, an error, or [`MAX_BODY_BYTES`].
async fn read_some(mut body: Incoming) {
    let mut read = 0;
    while read < MAX_BODY_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
            Some(Err(_)) | None => return,
        }
    }
}

/// A short description of why no response arrived: "connection refused", "cannot resolve
/// acme-web: …", or the chain of causes (the client's own top-level error only says which stage
/// failed, so it is left out).
fn describe_request_error(error: &hyper_util::client::legacy::Error, host: &str) -> String {
    let mut chain: Vec<&(dyn StdError + 'static)> = Vec::new();
    let mut cause = error.source();
    while let Some(current) = cause {
        chain.push(current);
        cause = current.source();
    }
    for current in &chain {
        if let Some(known) = current
            .downcast_ref::<io::Error>()
            .and_then(|io_error| super::tcp::known_io_error(io_error.kind()))
        {
            return known.to_owned();
        }
    }
    let mut messages: Vec<String> = Vec::new();
    for current in &chain {
        let message = current.to_string();
        if messages.last() != Some(&message) {
            messages.push(message);
        }
    }
    if messages.first().is_some_and(|first| first == "dns error") {
        let reason = messages.get(1..).unwrap_or_default().join(": ");
        return format!("cannot resolve {host}: {reason}");
    }
    if messages.is_empty() {
        return error.to_string();
    }
    messages.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    /// Reads a request head (up to the blank line).
    async fn read_head(stream: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut buffer = [0u8; 1024];
        while !head.windows(4).any(|window| window == b"\r\n\r\n") {
            let read = stream.read(&mut buffer).await.expect("read request");
            if read == 0 {
                break;
            }
            head.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    /// A server answering every request with `response`; it sends each request head it got.
    async fn answering(response: String) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (heads, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let head = read_head(&mut stream).await;
                let _ = heads.send(head);
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        (address, received)
    }

    fn status_line(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    async fn checker(address: SocketAddr, expected_status: u16) -> HttpChecker {
        let target = HttpTarget::parse(&format!("http://{address}/health?deep=1")).expect("url");
        HttpChecker::new(target, expected_status, &TlsRoots::default()).await
    }

    #[tokio::test]
    async fn a_2xx_answer_is_up_and_the_request_names_the_agent() {
        let (address, mut heads) = answering(status_line("200 OK", "fine")).await;
        let outcome = checker(address, 0)
            .await
            .check(Duration::from_secs(5))
            .await;
        assert_eq!(
            (outcome.up, outcome.http_status, outcome.message.as_str()),
            (true, 200, "HTTP 200")
        );
        assert!(outcome.response_ms >= 0);
        let head = heads.recv().await.expect("request");
        assert!(
            head.starts_with("GET /health?deep=1 HTTP/1.1\r\n"),
            "{head}"
        );
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains(&format!(
                "user-agent: cygnet-agent/{}\r\n",
                env!("CARGO_PKG_VERSION")
            )),
            "{head}"
        );
        assert!(head.contains(&format!("host: {address}\r\n")), "{head}");
    }

    #[tokio::test]
    async fn a_503_answer_is_down() {
        let (address, _heads) =
            answering(status_line("503 Service Unavailable", "maintenance")).await;
        let outcome = checker(address, 0)
            .await
            .check(Duration::from_secs(5))
            .await;
        assert_eq!(
            (
                outcome.up,
                outcome.response_ms,
                outcome.http_status,
                outcome.message.as_str()
            ),
            (false, 0, 503, "HTTP 503")
        );
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_and_is_down_without_an_expected_status() {
        let (address, mut heads) = answering(
            "HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n".to_owned(),
        )
        .await;
        let outcome = checker(address, 0)
            .await
            .check(Duration::from_secs(5))
            .await;
        assert_eq!(
            (outcome.up, outcome.http_status, outcome.message.as_str()),
            (false, 302, "HTTP 302")
        );
        assert!(heads.recv().await.is_some());
        assert!(heads.try_recv().is_err(), "one request only");
    }

    #[tokio::test]
    async fn the_expected_status_decides_when_one_is_given() {
        let (address, _heads) = answering(status_line("204 No Content", "")).await;
        let outcome = checker(address, 204)
            .await
            .check(Duration::from_secs(5))
            .await;
        assert_eq!(
            (outcome.up, outcome.http_status, outcome.message.as_str()),
            (true, 204, "HTTP 204")
        );

        let (address, _heads) = answering(status_line("200 OK", "")).await;
        let outcome = checker(address, 204)
            .await
            .check(Duration::from_secs(5))
            .await;
        assert_eq!(
            (
                outcome.up,
                outcome.response_ms,
                outcome.http_status,
                outcome.message.as_str()
            ),
            (false, 0, 200, "HTTP 200 (expected 204)")
        );
    }

    #[tokio::test]
    async fn a_large_body_is_not_read_to_its_end() {
        // Announces far more than it sends: reading it all would wait for the deadline.
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: 100000000\r\n\r\n{}",
            "x".repeat(MAX_BODY_BYTES + 1024)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            read_head(&mut stream).await;
            stream
                .write_all(response.as_bytes())
                .await
                .expect("write response");
            // The agent closes the connection once it has read enough.
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        });
        let started = Instant::now();
        let outcome = checker(address, 0)
            .await
            .check(Duration::from_secs(30))
            .await;
        assert!(outcome.up, "{}", outcome.message);
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("connection closed by the agent")
            .expect("server");
    }

    #[tokio::test]
    async fn an_answer_slower_than_the_timeout_is_down() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (closed, mut closed_seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            read_head(&mut stream).await;
            // Never answers; reports when the agent gives up on the connection.
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
            let _ = closed.send(());
        });
        let outcome = checker(address, 0)
            .await
            .check(Duration::from_millis(150))
            .await;
        assert_eq!(
            (
                outcome.up,
                outcome.response_ms,
                outcome.http_status,
                outcome.message.as_str()
            ),
            (false, 0, 0, "timed out after 150 ms")
        );
        tokio::time::timeout(Duration::from_secs(5), closed_seen.recv())
            .await
            .expect("connection closed after the timeout");
    }

    #[tokio::test]
    async fn a_closed_port_is_down_with_connection_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let outcome = checker(address, 0)
            .await
            .check(Duration::from_secs(5))
            .await;
        assert_eq!(
            (outcome.up, outcome.http_status, outcome.message.as_str()),
            (false, 0, "connection refused")
        );
    }

    #[tokio::test]
    async fn https_to_a_server_without_tls_is_down() {
        let (address, _heads) = answering(status_line("200 OK", "plain")).await;
        let target = HttpTarget::parse(&format!("https://{address}/")).expect("url");
        let outcome = HttpChecker::new(target, 0, &TlsRoots::default())
            .await
            .check(Duration::from_secs(5))
            .await;
        assert!(!outcome.up);
        assert_eq!((outcome.response_ms, outcome.http_status), (0, 0));
        assert!(!outcome.message.is_empty());
    }

    #[test]
    fn statuses_are_judged_by_the_expected_status_or_2xx() {
        for (status, expected, up, message) in [
            (200, 0, true, "HTTP 200"),
            (299, 0, true, "HTTP 299"),
            (301, 0, false, "HTTP 301"),
            (404, 0, false, "HTTP 404"),
            (401, 401, true, "HTTP 401"),
            (200, 401, false, "HTTP 200 (expected 401)"),
        ] {
            let outcome = judge(status, expected, 12);
            assert_eq!(
                (
                    outcome.up,
                    outcome.response_ms,
                    outcome.http_status,
                    outcome.message.as_str()
                ),
                (up, if up { 12 } else { 0 }, i32::from(status), message),
                "{status} expecting {expected}"
            );
        }
    }
}
