//! Prometheus metrics for `cygnet-server` and `cygnet-agent`: the `prometheus-client` types
//! both use, and a small HTTP endpoint serving `GET /metrics` in the OpenMetrics text format
//! (which Prometheus scrapes natively) on a listener of its own, off by default.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use prometheus_client;
use prometheus_client::registry::Registry;

/// The content type of the OpenMetrics text exposition.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Produces the text of one scrape (refreshing scrape-time gauges first).
pub type Render = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// The registry's metrics in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::warn!(%error, "could not encode metrics");
    }
    text
}

/// Buckets for latencies from 0.5 ms to about 30 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 17)
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes; other paths are 404.
pub fn serve(
    listener: TcpListener,
    render: Render,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::debug!(%error, "metrics listener: accept failed");
                    continue;
                }
            };
            let render = render.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let render = render.clone();
                    async move { Ok::<_, Infallible>(respond(&request, render).await) }
                });
                if let Err(error) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "metrics connection ended");
                }
            });
        }
    })
}

async fn respond(request: &Request<Incoming>, render: Render) -> Response<Full<Bytes>> {
    let mut response = if request.uri().path() != "/metrics" {
        plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        )
    } else if request.method() != Method::GET && request.method() != Method::HEAD {
        plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
    } else {
        let mut response = Response::new(Full::new(Bytes::from(render().await)));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE_OPENMETRICS),
        );
        return response;
    };
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(address: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer
    }

    #[tokio::test]
    async fn scrapes_show_the_current_values_and_other_paths_are_404() {
        let mut registry = Registry::default();
        let jobs = Counter::<u64>::default();
        registry.register("cygnet_test_jobs", "Jobs seen", jobs.clone());
        let registry = Arc::new(registry);
        let render: Render = Arc::new(move || {
            let registry = registry.clone();
            Box::pin(async move { encode(&registry) })
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = serve(listener, render, async move {
            let _ = stopped.await;
        });

        let first = get(address, "/metrics").await;
        assert!(first.starts_with("HTTP/1.1 200 OK"), "{first}");
        assert!(first.contains("application/openmetrics-text"), "{first}");
        assert!(first.contains("cygnet_test_jobs_total 0\n"), "{first}");
        jobs.inc_by(3);
        let second = get(address, "/metrics").await;
        assert!(second.contains("cygnet_test_jobs_total 3\n"), "{second}");
        assert!(second.trim_end().ends_with("# EOF"), "{second}");
        assert!(get(address, "/").await.starts_with("HTTP/1.1 404"));

        stop.send(()).expect("stop");
        task.await.expect("stopped");
        assert!(tokio::net::TcpStream::connect(address).await.is_err());
    }
}
