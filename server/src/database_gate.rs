//! Calls that need the database are refused at once while it is unreachable.
//!
//! Without this, a call waited for the pool's acquire timeout (10 s) while PostgreSQL was away,
//! and clients gave up before any answer. While the probe (`store/health.rs`) finds the
//! database unreachable, every call to a CygnetCI service is answered UNAVAILABLE before its
//! handler runs (clients retry, as for any UNAVAILABLE); health checks and reflection, which
//! need no database, are served as usual.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tower_layer::Layer;
use tower_service::Service;

use crate::store::DatabaseHealth;

/// The prefix of every CygnetCI service's paths.
const SERVICES: &str = "/cygnet.";

/// See the module docs.
#[derive(Clone)]
pub struct DatabaseGateLayer {
    health: Arc<DatabaseHealth>,
}

impl DatabaseGateLayer {
    pub fn new(health: Arc<DatabaseHealth>) -> Self {
        Self { health }
    }
}

impl<S> Layer<S> for DatabaseGateLayer {
    type Service = DatabaseGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DatabaseGate {
            inner,
            health: self.health.clone(),
        }
    }
}

/// See [`DatabaseGateLayer`].
#[derive(Clone)]
pub struct DatabaseGate<S> {
    inner: S,
    health: Arc<DatabaseHealth>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for DatabaseGate<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResponseBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        if !self.health.is_reachable() && request.uri().path().starts_with(SERVICES) {
            let status = crate::grpc::status::database_unavailable();
            return Box::pin(async move { Ok(status.into_http()) });
        }
        Box::pin(self.inner.call(request))
    }
}
