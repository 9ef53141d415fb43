//! The agent's Prometheus endpoint (`MetricsListen`): its counters move with a real job and a
//! real reconnect.

use std::time::Duration;

use cygnet_testkit::{Backend, TestServer, eventually, step};

use crate::common::*;

async fn agent_metrics_follow_jobs_and_reconnects(backend: Backend) {
    let mut server = TestServer::start_with(backend, one_second_heartbeats()).await;
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;
    // A free port for the agent's endpoint.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let host = Host::with_settings(
        &server,
        acme.id,
        "acme-metrics",
        Some(&token),
        serde_json::json!({ "MetricsListen": address.to_string() }),
    );
    let agent = host.spawn();
    eventually("agent online", Duration::from_secs(10), || {
        is_online_with_figures(&server, acme.id, "acme-metrics")
    })
    .await;
    scrape_until(address, "connected", |text| {
        value(text, "cygnet_agent_connected") == Some(1.0)
    })
    .await;

    let pipeline = server
        .create_pipeline(
            acme.id,
            "Loud",
            vec![step(
                "shout",
                "for i in $(seq 1 100); do echo 'line of output'; done",
            )],
            vec![],
        )
        .await;
    let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    server
        .watch_to_end(acme.id, execution.id, Duration::from_secs(30))
        .await;
    let after_job = scrape_until(address, "job counted", |text| {
        value(text, "cygnet_agent_jobs_received_total") == Some(1.0)
            && value(text, "cygnet_agent_jobs_running") == Some(0.0)
    })
    .await;
    let sent = value(&after_job, "cygnet_agent_log_bytes_sent_total").expect("log bytes");
    assert!(
        sent >= 1500.0,
        "100 lines of 15 bytes at least: {after_job}"
    );
    assert_eq!(
        value(&after_job, "cygnet_agent_reconnects_total"),
        Some(0.0)
    );

    // The server restarts: the agent reconnects, and says so.
    server.restart().await;
    scrape_until(address, "reconnected", |text| {
        value(text, "cygnet_agent_reconnects_total").is_some_and(|count| count >= 1.0)
            && value(text, "cygnet_agent_connected") == Some(1.0)
    })
    .await;
    stop(agent);
}

fn stop(mut child: AgentProcess) {
    let _ = child.kill();
    let _ = child.wait();
}

cygnet_testkit::backend_tests!(agent_metrics_follow_jobs_and_reconnects);
