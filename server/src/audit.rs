//! The audit log: one entry for every write request, whatever its outcome.
//!
//! A tower layer wraps each write RPC. While the handler runs, the code it calls notes what the
//! entry needs in a task-local record: `auth` notes the authenticated user and the customer the
//! request concerns, handlers note the resource they wrote. When the handler has answered, the
//! layer stores the entry with the method, the peer address and the outcome's gRPC code, before
//! the answer goes out.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_layer::Layer;
use tower_service::Service;

use crate::domain::{CustomerId, UserId};
use crate::store::{NewAuditEntry, Store};

tokio::task_local! {
    static FACTS: Arc<Mutex<Facts>>;
}

#[derive(Debug, Default)]
struct Facts {
    actor: Option<(UserId, String)>,
    customer: Option<CustomerId>,
    resource: Option<(&'static str, i64)>,
}

fn note(update: impl FnOnce(&mut Facts)) {
    // Outside an audited request (reads, background tasks) there is nothing to note.
    let _ = FACTS.try_with(|facts| {
        update(
            &mut facts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    });
}

/// The request's caller, once authenticated.
pub fn note_actor(user_id: UserId, username: &str) {
    note(|facts| facts.actor = Some((user_id, username.to_owned())));
}

/// The customer the request concerns (noted only once the caller may know it exists).
pub fn note_customer(customer_id: CustomerId) {
    note(|facts| facts.customer = Some(customer_id));
}

/// The record the request wrote (or tried to).
pub fn note_resource(kind: &'static str, id: i64) {
    note(|facts| facts.resource = Some((kind, id)));
}

/// Whether an RPC path is a write: every method of the cygnet services except reads (Get…,
/// List…, Watch…, Download…) and the agent's own traffic (its stream and artifact transfers).
pub fn is_write(path: &str) -> bool {
    let Some((service, method)) = path
        .strip_prefix("/cygnet.v1.")
        .and_then(|rest| rest.split_once('/'))
    else {
        return false;
    };
    if service == "AgentService" && matches!(method, "Connect" | "UploadArtifact" | "FetchArtifact")
    {
        return false;
    }
    !["Get", "List", "Watch", "Download"]
        .iter()
        .any(|read| method.starts_with(read))
}

/// The conventional name of a gRPC status code, e.g. `PERMISSION_DENIED`.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

fn peer_address(extensions: &http::Extensions) -> String {
    let address: Option<SocketAddr> = extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        });
    address
        .map(|address| address.to_string())
        .unwrap_or_default()
}

/// Adds audit entries to a service (see the module docs).
#[derive(Clone)]
pub struct AuditLayer {
    store: Store,
}

impl AuditLayer {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audited {
            inner,
            store: self.store.clone(),
        }
    }
}

/// See [`AuditLayer`].
#[derive(Clone)]
pub struct Audited<S> {
    inner: S,
    store: Store,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for Audited<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResponseBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let method = request.uri().path().to_owned();
        if !is_write(&method) {
            return Box::pin(self.inner.call(request));
        }
        let peer_address = peer_address(request.extensions());
        let facts = Arc::new(Mutex::new(Facts::default()));
        let call = FACTS.scope(facts.clone(), self.inner.call(request));
        let store = self.store.clone();
        Box::pin(async move {
            let response = call.await?;
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<i32>().ok())
                .unwrap_or(0);
            record(&store, &facts, &method, peer_address, code).await;
            Ok(response)
        })
    }
}

/// Runs a write that arrives outside gRPC (a form of the web dashboard) the way the layer runs
/// a write RPC: `method` is the RPC it performs (`cygnet.v1.PipelineService/RunPipeline`), and
/// its entry is stored before the answer is returned.
pub async fn audited<T>(
    store: &Store,
    method: &str,
    peer_address: String,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    let facts = Arc::new(Mutex::new(Facts::default()));
    let result = FACTS.scope(facts.clone(), call).await;
    let code = match &result {
        Ok(_) => 0,
        Err(status) => status.code() as i32,
    };
    record(store, &facts, method, peer_address, code).await;
    result
}

async fn record(
    store: &Store,
    facts: &Mutex<Facts>,
    method: &str,
    peer_address: String,
    code: i32,
) {
    let facts = std::mem::take(
        &mut *facts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let entry = NewAuditEntry {
        customer_id: facts.customer,
        actor: facts.actor,
        method: method.trim_start_matches('/').to_owned(),
        resource: facts.resource,
        peer_address,
        code: code_name(code),
    };
    if let Err(error) = store.record_audit(entry).await {
        tracing::error!(%error, %method, "could not write the audit log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_told_from_reads() {
        for write in [
            "/cygnet.v1.PipelineService/CreatePipeline",
            "/cygnet.v1.PipelineService/RunPipeline",
            "/cygnet.v1.UserService/RevokeApiToken",
            "/cygnet.v1.AgentService/RegisterAgent",
            "/cygnet.v1.ReleaseService/ApproveStage",
            "/cygnet.v1.MonitorService/DeleteMonitor",
        ] {
            assert!(is_write(write), "{write}");
        }
        for read in [
            "/cygnet.v1.PipelineService/GetExecutionLogs",
            "/cygnet.v1.CustomerService/ListAuditLog",
            "/cygnet.v1.ReleaseService/WatchReleaseExecution",
            "/cygnet.v1.PipelineService/DownloadArtifact",
            "/cygnet.v1.AgentService/Connect",
            "/cygnet.v1.AgentService/UploadArtifact",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(!is_write(read), "{read}");
        }
    }

    #[tokio::test]
    async fn notes_reach_only_the_request_they_belong_to() {
        let facts = Arc::new(Mutex::new(Facts::default()));
        FACTS
            .scope(facts.clone(), async {
                note_actor(UserId::from_db(3), "ops");
                note_customer(CustomerId::from_db(7));
                note_resource("pipeline", 11);
            })
            .await;
        // Outside a scope, notes go nowhere (and do not panic).
        note_customer(CustomerId::from_db(99));
        let facts = facts.lock().expect("facts");
        assert_eq!(facts.actor, Some((UserId::from_db(3), "ops".to_owned())));
        assert_eq!(facts.customer, Some(CustomerId::from_db(7)));
        assert_eq!(facts.resource, Some(("pipeline", 11)));
    }
}
