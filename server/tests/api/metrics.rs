//! The Prometheus endpoint: off by default; when on, the counters move with real traffic and
//! the scrape-time figures match the database and the open streams.

use std::net::SocketAddr;

use cygnet_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::common::{Backend, TestOptions, TestServer, assert_status, eventually, step};
use crate::monitors::ScriptedAgent;

/// One scrape: the status line and the body.
async fn scrape(address: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: cygnet\r\nconnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

/// The value of the sample named exactly `sample` (name and labels as printed).
fn value(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(sample)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

async fn metrics_follow_real_traffic(backend: Backend) {
    let off = TestServer::start(backend.clone()).await;
    assert!(off.metrics_address.is_none(), "off unless configured");
    drop(off);

    let server = TestServer::start_with(
        backend,
        TestOptions {
            metrics: true,
            ..TestOptions::default()
        },
    )
    .await;
    let address = server.metrics_address.expect("metrics on");
    let before = scrape(address).await;
    assert_eq!(value(&before, "cygnet_agents_connected"), Some(0.0));
    assert_eq!(value(&before, "cygnet_queue_depth"), Some(0.0));
    assert_eq!(
        value(&before, "cygnet_db_pool_connections{state=\"max\"}"),
        Some(4.0)
    );

    let acme = server.create_customer("acme").await;
    let agent = ScriptedAgent::connect(&server, acme.id, "acme-001").await;
    agent.heartbeat().await;
    let pipeline = server
        .create_pipeline(acme.id, "Build", vec![step("build", "make")], vec![])
        .await;
    let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    eventually(
        "execution finished",
        std::time::Duration::from_secs(10),
        || async {
            server.execution(acme.id, execution.id).await.status
                == pb::ExecutionStatus::Succeeded as i32
        },
    )
    .await;
    let viewer = server.create_user("viewer").await;
    server
        .add_member(acme.id, viewer.id, pb::Role::Viewer)
        .await;
    assert_status(
        server
            .pipelines(&viewer.token)
            .delete_pipeline(pb::DeletePipelineRequest {
                customer_id: acme.id,
                pipeline_id: pipeline.id,
            })
            .await,
        Code::PermissionDenied,
        "",
    );

    let after = scrape(address).await;
    for (sample, expected) in [
        ("cygnet_agents_connected", 1.0),
        ("cygnet_executions{status=\"succeeded\"}", 1.0),
        ("cygnet_queue_depth", 0.0),
        ("cygnet_queue_wait_seconds_count", 1.0),
        ("cygnet_dispatch_seconds_count", 1.0),
        (
            "cygnet_rpc_requests_total{method=\"cygnet.v1.PipelineService/RunPipeline\",code=\"OK\"}",
            1.0,
        ),
        (
            "cygnet_rpc_requests_total{method=\"cygnet.v1.PipelineService/DeletePipeline\",code=\"PERMISSION_DENIED\"}",
            1.0,
        ),
        (
            "cygnet_rpc_duration_seconds_count{method=\"cygnet.v1.PipelineService/RunPipeline\"}",
            1.0,
        ),
    ] {
        assert_eq!(
            value(&after, sample),
            Some(expected),
            "{sample} in:\n{after}"
        );
    }
    let heartbeats = value(&after, "cygnet_agent_heartbeats_total").expect("heartbeats");
    assert!(heartbeats >= 1.0, "{after}");
    assert!(after.trim_end().ends_with("# EOF"));
    agent.disconnect();
}

cygnet_testkit::backend_tests!(metrics_follow_real_traffic);
