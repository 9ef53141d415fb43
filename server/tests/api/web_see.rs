//! The dashboard's record pages, over real HTTP: an agent's page charts its stored heartbeat
//! samples (server-drawn SVG) for the range asked; a pipeline's page counts its runs and charts
//! their durations, each bar linking to its execution; another customer's records are 404.

use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_testkit::web_client::{Reply, http, sign_in};
use cygnet_testkit::{Backend, TestOptions, TestServer, eventually, heartbeat, step};

fn assert_has(page: &Reply, text: &str) {
    assert!(
        page.body.contains(text),
        "{text:?} missing from:\n{}",
        page.body
    );
}

fn options() -> TestOptions {
    TestOptions {
        web: true,
        agents: cygnet_server::config::AgentSettings {
            heartbeat_interval: Duration::from_secs(1),
            sample_interval: Duration::from_secs(1),
            retention: Duration::from_secs(3600),
            grace: Duration::from_secs(60),
            ..Default::default()
        },
        ..TestOptions::default()
    }
}

async fn an_agent_page_charts_its_samples(backend: Backend) {
    let server = TestServer::start_with(backend, options()).await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let globex = server.create_customer("globex").await;
    let viewer = server
        .create_member(acme.id, "viewer", pb::Role::Viewer)
        .await;
    let outsider = server
        .create_member(globex.id, "outsider", pb::Role::Admin)
        .await;
    let token = server.create_registration_token(acme.id).await;
    let registered = server
        .register_agent(acme.id, "acme-001", &token)
        .await
        .expect("register");
    let agent = server
        .connect_agent("acme-001", &registered.credential)
        .await
        .expect("connect");
    agent.heartbeat(heartbeat(37.0, 50.0)).await;
    eventually("a sample stored", Duration::from_secs(5), || async {
        !server
            .admin_agents()
            .get_agent_metrics(pb::GetAgentMetricsRequest {
                customer_id: acme.id,
                agent_id: registered.agent_id,
                ..Default::default()
            })
            .await
            .expect("metrics")
            .into_inner()
            .samples
            .is_empty()
    })
    .await;

    let session = sign_in(web, &viewer.token).await;
    let path = format!("/c/{}/agents/{}", acme.id, registered.agent_id);
    let list = http(
        web,
        "GET",
        &format!("/c/{}/agents", acme.id),
        Some(&session),
        None,
    )
    .await;
    assert_has(&list, &format!(r#"<a href="{path}">acme-001</a>"#));
    let page = http(web, "GET", &path, Some(&session), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_has(&page, "CPU: latest 37%, highest 37%");
    assert_has(&page, "Memory: latest 50%, highest 50%");
    assert_has(&page, "Free disk: latest 100.0 GiB");
    assert_has(&page, "<polyline points=\"");
    assert_has(&page, "No job is running on acme-001.");
    assert_has(&page, r#"<strong aria-current="true">Last hour</strong>"#);
    let day = http(
        web,
        "GET",
        &format!("{path}?range=24h"),
        Some(&session),
        None,
    )
    .await;
    assert_eq!(day.status, 200, "{}", day.body);
    assert_has(&day, r#"<strong aria-current="true">24 hours</strong>"#);
    assert_has(&day, "CPU: latest 37%");

    // Another customer's member gets the 404 of an unknown agent, in either customer's URL.
    let outsider = sign_in(web, &outsider.token).await;
    for foreign in [
        path.clone(),
        format!("/c/{}/agents/{}", globex.id, registered.agent_id),
        format!("/c/{}/agents/999999", acme.id),
    ] {
        let page = http(web, "GET", &foreign, Some(&outsider), None).await;
        assert_eq!(page.status, 404, "{foreign}: {}", page.body);
        assert!(!page.body.contains("acme-001"), "{}", page.body);
    }
}

async fn a_pipeline_page_counts_runs_and_charts_their_durations(backend: Backend) {
    let server = TestServer::start_with(backend, options()).await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let globex = server.create_customer("globex").await;
    let dev = server
        .create_member(acme.id, "dev", pb::Role::Developer)
        .await;
    let outsider = server
        .create_member(globex.id, "outsider", pb::Role::Admin)
        .await;
    let pipeline = server
        .create_pipeline(
            acme.id,
            "Build API",
            vec![step("build", "make"), step("test", "make test")],
            vec![],
        )
        .await;
    let token = server.create_registration_token(acme.id).await;
    let registered = server
        .register_agent(acme.id, "acme-001", &token)
        .await
        .expect("register");
    let agent = server
        .connect_agent("acme-001", &registered.credential)
        .await
        .expect("connect");
    agent.heartbeat(heartbeat(10.0, 10.0)).await;
    let session = sign_in(web, &dev.token).await;
    let path = format!("/c/{}/pipelines/{}", acme.id, pipeline.id);
    let empty = http(web, "GET", &path, Some(&session), None).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_has(&empty, "No finished runs yet");
    assert_has(&empty, "<code>make test</code>");

    let first = server.run_pipeline(acme.id, pipeline.id, &[]).await.id;
    let (_, worker) = agent.work_instantly_ending(move |execution_id| {
        if execution_id == first {
            (
                pb::ExecutionStatus::Failed,
                "step test exited with 2".into(),
            )
        } else {
            (pb::ExecutionStatus::Succeeded, String::new())
        }
    });
    let mut runs = vec![first];
    for _ in 0..2 {
        runs.push(server.run_pipeline(acme.id, pipeline.id, &[]).await.id);
    }
    for run in &runs {
        server
            .watch_to_end(acme.id, *run, Duration::from_secs(10))
            .await;
    }
    let page = http(web, "GET", &path, Some(&session), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_has(&page, "<strong>3</strong> runs");
    assert_has(&page, "2 succeeded");
    assert_has(&page, "1 failed");
    assert_has(&page, "How long the last 3 finished runs took");
    // Oldest first: the failed first run is the first bar, and each bar links to its run.
    let rects: Vec<&str> = page.body.split("<rect ").skip(1).collect();
    assert_eq!(rects.len(), 3, "{}", page.body);
    assert!(
        rects[0].contains(r#"class="status-failed""#),
        "{}",
        rects[0]
    );
    assert!(
        rects[2].contains(r#"class="status-succeeded""#),
        "{}",
        rects[2]
    );
    for run in &runs {
        assert_has(
            &page,
            &format!(
                r#"<a href="/c/{}/executions/{run}" aria-label="execution {run}: "#,
                acme.id
            ),
        );
    }
    let list = http(
        web,
        "GET",
        &format!("/c/{}/pipelines", acme.id),
        Some(&session),
        None,
    )
    .await;
    assert_has(&list, &format!(r#"<a href="{path}">Build API</a>"#));

    // A retry's page says which execution it retries, linking to it and to the pipeline.
    let retry = server
        .admin_pipelines()
        .retry_execution(pb::RetryExecutionRequest {
            customer_id: acme.id,
            execution_id: first,
        })
        .await
        .expect("retry")
        .into_inner()
        .execution
        .expect("execution");
    let retried = http(
        web,
        "GET",
        &format!("/c/{}/executions/{}", acme.id, retry.id),
        Some(&session),
        None,
    )
    .await;
    assert_has(
        &retried,
        &format!(
            r#"as a retry of <a href="/c/{}/executions/{first}">execution {first}</a>"#,
            acme.id
        ),
    );
    assert_has(&retried, &format!(r#"<a href="{path}">Build API</a>"#));
    // The pipeline's list of runs says what started the retry.
    let page = http(web, "GET", &path, Some(&session), None).await;
    assert_has(&page, &format!("<td>retry of {first}</td>"));

    let outsider = sign_in(web, &outsider.token).await;
    for foreign in [
        path.clone(),
        format!("/c/{}/pipelines/{}", globex.id, pipeline.id),
    ] {
        let page = http(web, "GET", &foreign, Some(&outsider), None).await;
        assert_eq!(page.status, 404, "{foreign}: {}", page.body);
        assert!(!page.body.contains("Build API"), "{}", page.body);
    }
    worker.abort();
}

/// Activity rows link to the record they are about; the cards' figures are read again as JSON
/// (what the dashboard's script does when activity arrives), for the customer's members only.
async fn activity_links_to_its_records_and_cards_refresh(backend: Backend) {
    let server = TestServer::start_with(backend, options()).await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let globex = server.create_customer("globex").await;
    let viewer = server
        .create_member(acme.id, "viewer", pb::Role::Viewer)
        .await;
    let outsider = server
        .create_member(globex.id, "outsider", pb::Role::Admin)
        .await;
    let pipeline = server
        .create_pipeline(acme.id, "Build", vec![step("build", "true")], vec![])
        .await;
    let token = server.create_registration_token(acme.id).await;
    let registered = server
        .register_agent(acme.id, "acme-001", &token)
        .await
        .expect("register");
    let agent = server
        .connect_agent("acme-001", &registered.credential)
        .await
        .expect("connect");
    agent.heartbeat(heartbeat(10.0, 10.0)).await;
    let (_, worker) = agent.work_instantly();
    let run = server.run_pipeline(acme.id, pipeline.id, &[]).await.id;
    server
        .watch_to_end(acme.id, run, Duration::from_secs(10))
        .await;

    let session = sign_in(web, &viewer.token).await;
    let dashboard = http(web, "GET", &format!("/c/{}", acme.id), Some(&session), None).await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    assert_has(
        &dashboard,
        &format!(
            r#"<a class="message" href="/c/{}/executions/{run}">"#,
            acme.id
        ),
    );
    assert_has(
        &dashboard,
        &format!(
            r#"<a class="message" href="/c/{}/agents/{}">"#,
            acme.id, registered.agent_id
        ),
    );

    let cards = http(
        web,
        "GET",
        &format!("/c/{}/cards", acme.id),
        Some(&session),
        None,
    )
    .await;
    assert_eq!(cards.status, 200, "{}", cards.body);
    assert_eq!(cards.header("cache-control"), Some("no-store"));
    let cards: serde_json::Value = serde_json::from_str(&cards.body).expect("JSON");
    let card = |key: &str| {
        cards
            .as_array()
            .expect("a list")
            .iter()
            .find(|card| card["key"] == key)
            .cloned()
            .expect("the card")
    };
    assert_eq!(card("executions")["total"], 1);
    assert_eq!(card("executions")["detail"], "100% success");
    assert_eq!(card("agents")["detail"], "1 online");

    let outsider = sign_in(web, &outsider.token).await;
    let foreign = http(
        web,
        "GET",
        &format!("/c/{}/cards", acme.id),
        Some(&outsider),
        None,
    )
    .await;
    assert_eq!(foreign.status, 404, "{}", foreign.body);
    let anonymous = http(web, "GET", &format!("/c/{}/cards", acme.id), None, None).await;
    assert_ne!(anonymous.status, 200, "{}", anonymous.body);
    worker.abort();
}

cygnet_testkit::backend_tests!(
    activity_links_to_its_records_and_cards_refresh,
    an_agent_page_charts_its_samples,
    a_pipeline_page_counts_runs_and_charts_their_durations,
);
