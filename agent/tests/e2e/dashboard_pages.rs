//! The dashboard's execution page for a run a real agent made: when and where it ran, its
//! steps with durations, and its artifact, downloaded through the page's link byte for byte —
//! and not by a member of another customer.

use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_testkit::web_client::{http, sign_in};
use cygnet_testkit::{TestServer, final_execution, step};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_page_shows_its_run_and_downloads_its_artifact() {
    let mut options = one_second_heartbeats();
    options.web = true;
    let server = TestServer::start_with(cygnet_testkit::Backend::Sqlite, options).await;
    let web = server.web_address.expect("web on");
    let (acme, _host, agent) = customer_with_agent(&server, "acme", serde_json::json!({})).await;
    let pipeline = server
        .create_pipeline(
            acme.id,
            "package",
            vec![{
                let mut build = step(
                    "build",
                    "mkdir -p dist; printf 'binary \\001\\002 content' > 'dist/app v1.bin'",
                );
                build.artifacts = vec!["dist/app v1.bin".into()];
                build
            }],
            vec![],
        )
        .await;
    let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    let finished = final_execution(
        &server
            .watch_to_end(acme.id, execution.id, Duration::from_secs(30))
            .await,
    );
    assert_eq!(
        finished.status(),
        pb::ExecutionStatus::Succeeded,
        "{finished:?}"
    );
    let artifact = artifacts_of(&server, acme.id, execution.id).await.remove(0);

    let dev = server.create_user("dev").await;
    server
        .add_member(acme.id, dev.id, pb::Role::Developer)
        .await;
    let session = sign_in(web, &dev.token).await;
    let page = http(
        web,
        "GET",
        &format!("/c/{}/executions/{}", acme.id, execution.id),
        Some(&session),
        None,
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(&format!(
            r#"on <a href="/c/{}/agents/{agent}">agent {agent}</a>"#,
            acme.id,
            agent = finished.agent_id
        )),
        "{}",
        page.body
    );
    assert!(page.body.contains("took "), "{}", page.body);
    assert!(page.body.contains(r#"class="duration""#), "{}", page.body);
    assert!(page.body.contains(&artifact.sha256), "{}", page.body);
    let link = format!("/c/{}/artifacts/{}", acme.id, artifact.id);
    assert!(page.body.contains(&link), "{}", page.body);

    // The link's answer is the artifact itself, as a download. (The web client reads text.)
    let downloaded = http(web, "GET", &link, Some(&session), None).await;
    assert_eq!(downloaded.status, 200);
    assert_eq!(
        downloaded.header("content-disposition"),
        Some(r#"attachment; filename="app_v1.bin""#)
    );
    assert_eq!(
        downloaded.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        downloaded.body.as_bytes(),
        download(&server, acme.id, artifact.id).await.as_slice()
    );
    assert_eq!(downloaded.body.as_bytes(), b"binary \x01\x02 content");

    // A member of another customer gets the same 404 as for an unknown artifact.
    let globex = server.create_customer("globex").await;
    let outsider = server.create_user("outsider").await;
    server
        .add_member(globex.id, outsider.id, pb::Role::Admin)
        .await;
    let theirs = sign_in(web, &outsider.token).await;
    for path in [
        link.clone(),
        format!("/c/{}/artifacts/{}", globex.id, artifact.id),
        format!("/c/{}/artifacts/999999", globex.id),
    ] {
        let refused = http(web, "GET", &path, Some(&theirs), None).await;
        assert_eq!(refused.status, 404, "{path}");
    }
    stop(agent);
}
