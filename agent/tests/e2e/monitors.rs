//! Service monitors checked by the real agent: an HTTP service that is healthy, then slow, then
//! gone; TCP services (a test listener, the local PostgreSQL when configured, a closed port);
//! the checks come from the agent's host with its User-Agent, and their results carry its id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_testkit::{Backend, TestServer, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::common::*;

/// Checks are every 10 s (the shortest interval allowed): room for one scheduled check.
const WITHIN: Duration = Duration::from_secs(25);

/// A small HTTP service: answers every request with 200 after `delay_ms`, and reports each
/// request's User-Agent.
struct TestService {
    address: std::net::SocketAddr,
    delay_ms: Arc<AtomicU64>,
    user_agents: mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<()>,
}

impl TestService {
    async fn start() -> TestService {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (seen, user_agents) = mpsc::unbounded_channel();
        let delay = delay_ms.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (delay, seen) = (delay.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => request.extend_from_slice(&buffer[..read]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let user_agent = text
                        .lines()
                        .find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("user-agent")
                                .then(|| value.trim().to_owned())
                        })
                        .unwrap_or_default();
                    let _ = seen.send(user_agent);
                    tokio::time::sleep(Duration::from_millis(delay.load(Ordering::SeqCst))).await;
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        TestService {
            address,
            delay_ms,
            user_agents,
            task,
        }
    }

    /// Stops listening: connections are refused from now on.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A customer with the real agent online on this host.
async fn agent_online(server: &TestServer, uuid: &str) -> (pb::Customer, i64, Host, AgentProcess) {
    let customer = server.create_customer("acme").await;
    let token = server.create_registration_token(customer.id).await;
    let host = Host::new(server, customer.id, uuid, Some(&token));
    let agent = host.spawn();
    eventually("agent online", Duration::from_secs(10), || {
        is_online_with_figures(server, customer.id, uuid)
    })
    .await;
    let agent_id = find_agent(server, customer.id, uuid)
        .await
        .expect("agent")
        .id;
    (customer, agent_id, host, agent)
}

async fn an_http_service_goes_healthy_then_warning_then_down(backend: Backend) {
    let server = TestServer::start_with(backend, one_second_heartbeats()).await;
    let (acme, agent_id, _host, agent) = agent_online(&server, "acme-prod-001").await;
    let mut service = TestService::start().await;
    let monitor = server
        .create_monitor(pb::CreateMonitorRequest {
            customer_id: acme.id,
            name: "Build API".into(),
            kind: pb::MonitorKind::Http.into(),
            target: format!("http://{}/health", service.address),
            interval_seconds: 10,
            timeout_ms: 3000,
            warning_threshold_ms: 400,
            ..Default::default()
        })
        .await;

    let healthy = server
        .wait_for_monitor_status(acme.id, monitor.id, pb::MonitorStatus::Healthy, WITHIN)
        .await;
    assert_eq!(healthy.assigned_agent_id, agent_id);
    assert_eq!(healthy.last_message, "HTTP 200");
    assert!(healthy.last_response_ms < 400, "{healthy:?}");
    let user_agent = service.user_agents.recv().await.expect("a request");
    assert!(
        user_agent.starts_with("cygnet-agent/"),
        "the agent made the request, not the server: {user_agent:?}"
    );

    // Slower than the threshold: the next scheduled check finds it.
    service.delay_ms.store(800, Ordering::SeqCst);
    let warning = server
        .wait_for_monitor_status(acme.id, monitor.id, pb::MonitorStatus::Warning, WITHIN)
        .await;
    assert!(warning.last_response_ms >= 800, "{warning:?}");

    // Gone: the next check is refused.
    service.stop().await;
    let down = server
        .wait_for_monitor_status(acme.id, monitor.id, pb::MonitorStatus::Down, WITHIN)
        .await;
    assert_eq!(down.last_response_ms, 0);
    assert!(
        down.last_message.contains("refused"),
        "{}",
        down.last_message
    );

    let history = server
        .admin_monitors()
        .get_monitor_history(pb::GetMonitorHistoryRequest {
            customer_id: acme.id,
            monitor_id: monitor.id,
            ..Default::default()
        })
        .await
        .expect("history")
        .into_inner()
        .results;
    let statuses: Vec<i32> = history.iter().rev().map(|result| result.status).collect();
    assert_eq!(
        statuses,
        [
            pb::MonitorStatus::Healthy as i32,
            pb::MonitorStatus::Warning as i32,
            pb::MonitorStatus::Down as i32
        ]
    );
    assert!(history.iter().all(|result| result.agent_id == agent_id));

    let events: Vec<String> = server
        .activity(acme.id)
        .await
        .into_iter()
        .rev()
        .filter(|event| event.subject_type == "monitor")
        .map(|event| event.kind)
        .collect();
    assert_eq!(
        events,
        ["monitor.healthy", "monitor.warning", "monitor.down"]
    );

    // Without an agent nothing checks it, and the monitor says so.
    stop(agent);
    eventually("monitor without an agent", WITHIN, || async {
        let monitor = server.monitor(acme.id, monitor.id).await;
        monitor.assigned_agent_id == 0 && monitor.status == pb::MonitorStatus::Unknown as i32
    })
    .await;
}

async fn tcp_services_are_checked_by_connecting(backend: Backend) {
    let server = TestServer::start_with(backend, one_second_heartbeats()).await;
    let (acme, agent_id, _host, agent) = agent_online(&server, "acme-prod-001").await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let open = listener.local_addr().expect("address");
    let closed = {
        let spare = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        spare.local_addr().expect("address")
    };
    let tcp = |name: &str, target: String| pb::CreateMonitorRequest {
        customer_id: acme.id,
        name: name.into(),
        kind: pb::MonitorKind::Tcp.into(),
        target,
        interval_seconds: 10,
        timeout_ms: 2000,
        ..Default::default()
    };
    let mut expected = vec![
        (
            server
                .create_monitor(tcp("Cache", format!("redis://{open}")))
                .await,
            pb::MonitorStatus::Healthy,
        ),
        (
            server
                .create_monitor(tcp("Gone", format!("tcp://{closed}")))
                .await,
            pb::MonitorStatus::Down,
        ),
    ];
    // The local PostgreSQL by its service URL (default port 5432), when the suite has one.
    if let Ok(url) = std::env::var("CYGNET_TEST_DATABASE_URL") {
        let host = url::Url::parse(&url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .expect("a host in CYGNET_TEST_DATABASE_URL");
        expected.push((
            server
                .create_monitor(tcp("Database", format!("postgres://{host}")))
                .await,
            pb::MonitorStatus::Healthy,
        ));
    }
    for (monitor, status) in &expected {
        let checked = server
            .wait_for_monitor_status(acme.id, monitor.id, *status, WITHIN)
            .await;
        assert_eq!(checked.assigned_agent_id, agent_id);
        let message = checked.last_message.as_str();
        match status {
            pb::MonitorStatus::Healthy => assert_eq!(message, "connected"),
            _ => assert!(message.contains("refused"), "{message}"),
        }
    }
    drop(listener);
    stop(agent);
}

fn stop(mut child: AgentProcess) {
    let _ = child.kill();
    let _ = child.wait();
}

cygnet_testkit::backend_tests!(
    an_http_service_goes_healthy_then_warning_then_down,
    tcp_services_are_checked_by_connecting,
);
