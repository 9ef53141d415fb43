//! A PostgreSQL outage longer than the agent grace period while a job streams its output: calls
//! that need the database answer UNAVAILABLE (dashboard pages 503) at once, the agent's stream
//! stays open, and the job completes with every line exactly once — the outage is the server's,
//! not the agent's.

use std::time::{Duration, Instant};

use cygnet_proto::v1 as pb;
use cygnet_testkit::web_client::{http, sign_in};
use cygnet_testkit::{
    ADMIN_TOKEN, Backend, PrivatePostgres, TestServer, eventually, final_execution, step,
};
use tonic::Code;

use crate::common::*;

const LINES: u32 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_longer_than_the_grace_period_fails_no_job() {
    let postgres = PrivatePostgres::start();
    let mut options = one_second_heartbeats();
    let grace = Duration::from_secs(4);
    options.agents.grace = grace;
    options.web = true;
    let server = TestServer::start_with(Backend::Postgres(postgres.admin_url()), options).await;
    let web = server.web_address.expect("web on");
    let session = sign_in(web, ADMIN_TOKEN).await;
    let (acme, _host, agent) = customer_with_agent(&server, "acme", serde_json::json!({})).await;
    let pipeline = server
        .create_pipeline(
            acme.id,
            "counter",
            vec![step(
                "count",
                &format!("for i in $(seq 1 {LINES}); do echo \"n=$i\"; sleep 0.05; done"),
            )],
            vec![],
        )
        .await;
    let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    eventually("output started", Duration::from_secs(10), || async {
        server
            .logs(acme.id, execution.id)
            .await
            .iter()
            .any(|chunk| chunk.text.contains("n=1\n"))
    })
    .await;

    postgres.stop();
    let stopped_at = Instant::now();
    // Once the server has noticed, a call that needs the database is refused at once.
    let mut pipelines = server.admin_pipelines();
    let noticed_within = Duration::from_secs(15);
    loop {
        let asked = Instant::now();
        let answer = pipelines
            .get_execution(pb::GetExecutionRequest {
                customer_id: acme.id,
                execution_id: execution.id,
            })
            .await;
        let status = answer.expect_err("no answer without the database");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        if asked.elapsed() < Duration::from_millis(500) {
            break;
        }
        assert!(
            stopped_at.elapsed() < noticed_within,
            "calls still wait for the database after {noticed_within:?}"
        );
    }
    // So is a dashboard page, whose handlers need the database as much.
    let asked = Instant::now();
    let page = http(web, "GET", &format!("/c/{}", acme.id), Some(&session), None).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(
        page.body.contains("database is unreachable"),
        "{}",
        page.body
    );
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "the page waited {:?}",
        asked.elapsed()
    );
    // The outage outlasts the grace period, by twice over.
    tokio::time::sleep((grace * 2).saturating_sub(stopped_at.elapsed())).await;
    postgres.start_again();
    eventually(
        "the server sees the database again",
        Duration::from_secs(10),
        || {
            let mut pipelines = server.admin_pipelines();
            async move {
                pipelines
                    .get_execution(pb::GetExecutionRequest {
                        customer_id: acme.id,
                        execution_id: execution.id,
                    })
                    .await
                    .is_ok()
            }
        },
    )
    .await;

    let page = http(web, "GET", &format!("/c/{}", acme.id), Some(&session), None).await;
    assert_eq!(page.status, 200, "{}", page.body);

    let finished = final_execution(
        &server
            .watch_to_end(acme.id, execution.id, Duration::from_secs(60))
            .await,
    );
    assert_eq!(
        finished.status(),
        pb::ExecutionStatus::Succeeded,
        "{finished:?}"
    );
    assert_every_line_once(&server, acme.id, execution.id, LINES).await;
    // The agent was never lost: no offline mark, still online.
    let activity = server.activity(acme.id).await;
    assert!(
        activity.iter().all(|event| event.kind != "agent.offline"),
        "{activity:?}"
    );
    assert!(is_online_with_figures(&server, acme.id, "acme-agent").await);
    stop(agent);
}
