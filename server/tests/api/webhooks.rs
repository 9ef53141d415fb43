//! Webhooks over real HTTP: deliveries signed as GitHub, GitLab and the generic format sign
//! them (the HMAC computed here with ring, not with the server's code) queue one run each with
//! parameters from the delivery; a repeated delivery id queues nothing more; bad signatures,
//! replays, unknown and disabled webhooks get the same answer and queue nothing; filters,
//! sizes and rates are kept; the delivery log and the RPCs follow the roles.

use cygnet_proto::v1 as pb;
use cygnet_testkit::web_client::{Reply, post_body};
use cygnet_testkit::{
    ADMIN_TOKEN, Backend, TestOptions, TestServer, assert_invalid, assert_status, step,
};
use ring::hmac;
use serde_json::{Value, json};
use tonic::Code;

fn web_options() -> TestOptions {
    TestOptions {
        web: true,
        ..TestOptions::default()
    }
}

/// `sha256=<hex>` of the HMAC-SHA256 of `message` under `secret`, as senders compute it.
fn signature(secret: &str, message: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, message).as_ref()))
}

fn answer(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|_| panic!("JSON answer: {}", reply.body))
}

/// A POST that declares a body one byte over the limit and sends none of it: the answer comes
/// before any of the body is read.
async fn declared_too_large(web: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(web).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: cygnet\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        (1 << 20) + 1
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

async fn pipeline_with_parameters(server: &TestServer, customer_id: i64) -> pb::Pipeline {
    let parameter = |name: &str| pb::Parameter {
        name: name.into(),
        r#type: pb::ParameterType::String as i32,
        ..Default::default()
    };
    server
        .create_pipeline(
            customer_id,
            "Build",
            vec![step("build", "echo {{BRANCH}} {{COMMIT}}")],
            vec![parameter("BRANCH"), parameter("COMMIT"), parameter("REPO")],
        )
        .await
}

async fn create_webhook(
    server: &TestServer,
    token: &str,
    request: pb::CreateWebhookRequest,
) -> (pb::Webhook, String) {
    let created = server
        .pipelines(token)
        .create_webhook(request)
        .await
        .expect("create webhook")
        .into_inner();
    (created.webhook.expect("webhook"), created.secret)
}

async fn executions(server: &TestServer, customer_id: i64) -> Vec<pb::Execution> {
    server
        .admin_pipelines()
        .list_executions(pb::ListExecutionsRequest {
            customer_id,
            ..Default::default()
        })
        .await
        .expect("list executions")
        .into_inner()
        .executions
}

async fn deliveries(
    server: &TestServer,
    customer_id: i64,
    webhook_id: i64,
) -> Vec<pb::WebhookDelivery> {
    server
        .admin_pipelines()
        .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
            customer_id,
            webhook_id,
            ..Default::default()
        })
        .await
        .expect("deliveries")
        .into_inner()
        .deliveries
}

fn github_push(branch: &str, after: &str) -> Vec<u8> {
    json!({
        "ref": format!("refs/heads/{branch}"),
        "after": after,
        "repository": {"full_name": "acme/api"},
        "pusher": {"name": "octocat"},
        "sender": {"login": "octocat"},
    })
    .to_string()
    .into_bytes()
}

async fn github_deliveries_queue_once_and_forgeries_queue_nothing(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        TestOptions {
            metrics: true,
            ..web_options()
        },
    )
    .await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let pipeline = pipeline_with_parameters(&server, acme.id).await;
    let (webhook, secret) = create_webhook(
        &server,
        ADMIN_TOKEN,
        pb::CreateWebhookRequest {
            customer_id: acme.id,
            pipeline_id: pipeline.id,
            format: pb::WebhookFormat::Github as i32,
            events: vec!["push".into(), "pull_request".into()],
            branches: vec!["main".into(), "release/*".into()],
            parameters: [
                ("BRANCH".to_owned(), "branch".to_owned()),
                ("COMMIT".to_owned(), "commit".to_owned()),
                ("REPO".to_owned(), "/repository/full_name".to_owned()),
            ]
            .into(),
            ..Default::default()
        },
    )
    .await;
    assert!(webhook.path.starts_with("/hooks/"));
    // The address says nothing of its customer or pipeline.
    let token = webhook.path.trim_start_matches("/hooks/");
    assert!(token.len() >= 32, "{token}");
    assert!(secret.len() >= 40);

    let body = github_push("main", "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    let signed = signature(&secret, &body);
    let headers = |delivery: &'static str, signature: &str| {
        vec![
            ("content-type", "application/json".to_owned()),
            ("x-github-event", "push".to_owned()),
            ("x-github-delivery", delivery.to_owned()),
            ("x-hub-signature-256", signature.to_owned()),
        ]
    };
    let post = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let path = webhook.path.clone();
        async move {
            let pairs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            post_body(web, &path, &pairs, &body).await
        }
    };

    let reply = post(
        headers("72d3162e-cc78-11e3-81ab-4c9367dc0958", &signed),
        body.clone(),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let execution_id = answer(&reply)["execution_id"]
        .as_i64()
        .expect("an execution");
    let execution = server.execution(acme.id, execution_id).await;
    assert_eq!(
        execution.parameters.get("BRANCH").map(String::as_str),
        Some("main")
    );
    assert_eq!(
        execution.parameters.get("COMMIT").map(String::as_str),
        Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246")
    );
    assert_eq!(
        execution.parameters.get("REPO").map(String::as_str),
        Some("acme/api")
    );
    let trigger = execution.trigger.expect("trigger");
    assert_eq!(trigger.kind, pb::TriggerKind::Webhook as i32);
    assert_eq!(trigger.webhook_id, webhook.id);
    assert_eq!(
        (trigger.event.as_str(), trigger.branch.as_str()),
        ("push", "main")
    );
    assert_eq!(trigger.commit, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(
        trigger.username, "admin",
        "on behalf of the webhook's creator"
    );
    assert!(trigger.webhook_delivery_id > 0);

    // GitHub's redelivery (the same X-GitHub-Delivery) queues nothing more.
    let again = post(
        headers("72d3162e-cc78-11e3-81ab-4c9367dc0958", &signed),
        body.clone(),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(answer(&again)["outcome"], "duplicate");
    assert_eq!(answer(&again)["execution_id"].as_i64(), Some(execution_id));

    // The same signed body under a fresh delivery id (a replay by someone who saw it) is a
    // copy too.
    let replayed = post(headers("a-fresh-id", &signed), body.clone()).await;
    assert_eq!(
        answer(&replayed)["outcome"],
        "duplicate",
        "{}",
        replayed.body
    );

    // A wrong signature, a body changed under a good one, an unknown address and no
    // signature at all: one answer, nothing queued.
    let forged = post(
        headers("forged-1", &signature("guessed", &body)),
        body.clone(),
    )
    .await;
    let changed = github_push("main", "0123456789abcdef0123456789abcdef01234567");
    let changed_reply = post(headers("forged-2", &signed), changed).await;
    let unknown = post_body(
        web,
        "/hooks/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &[
            ("x-github-event", "push"),
            ("x-github-delivery", "x"),
            ("x-hub-signature-256", &signed),
        ],
        &body,
    )
    .await;
    let unsigned = post(
        vec![
            ("x-github-event", "push".to_owned()),
            ("x-github-delivery", "forged-3".to_owned()),
        ],
        body.clone(),
    )
    .await;
    for reply in [&forged, &changed_reply, &unknown, &unsigned] {
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(reply.body, forged.body, "the same answer whatever failed");
    }
    // A forged delivery cannot take a real delivery's id: the real one still queues.
    let real_after_forgery = post(
        headers(
            "forged-1",
            &signature(&secret, &github_push("main", "aaaa")),
        ),
        github_push("main", "aaaa"),
    )
    .await;
    assert_eq!(
        real_after_forgery.status, 202,
        "{}",
        real_after_forgery.body
    );
    assert_eq!(executions(&server, acme.id).await.len(), 2);

    // Filters: another branch, a closed pull request and GitHub's ping queue nothing.
    let feature = github_push("feature/x", "bbbb");
    let reply = post(headers("d-feature", &signature(&secret, &feature)), feature).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(answer(&reply)["outcome"], "ignored");
    let release = github_push("release/2.1", "cccc");
    let reply = post(headers("d-release", &signature(&secret, &release)), release).await;
    assert_eq!(
        reply.status, 202,
        "a release/* branch builds: {}",
        reply.body
    );
    let pull_request = |action: &str, head_repo: i64, sha: &str| {
        json!({"action": action, "pull_request": {
            "head": {"ref": "fix", "sha": sha, "repo": {"id": head_repo}},
            "base": {"ref": "main", "repo": {"id": 1}},
            "user": {"login": "mona"}}})
        .to_string()
        .into_bytes()
    };
    let closed = pull_request("closed", 1, "dddd");
    let mut pull_headers = headers("d-closed", &signature(&secret, &closed));
    pull_headers[1].1 = "pull_request".to_owned();
    let reply = post(pull_headers, closed).await;
    assert_eq!(answer(&reply)["outcome"], "ignored", "{}", reply.body);
    // A pull request from a fork would run its author's code with the pipeline's secrets.
    let forked = pull_request("opened", 2, "9999");
    let mut pull_headers = headers("d-fork", &signature(&secret, &forked));
    pull_headers[1].1 = "pull_request".to_owned();
    let reply = post(pull_headers, forked).await;
    assert_eq!(answer(&reply)["outcome"], "ignored", "{}", reply.body);
    assert!(reply.body.contains("fork"), "{}", reply.body);
    let opened = pull_request("opened", 1, "eeee");
    let mut pull_headers = headers("d-opened", &signature(&secret, &opened));
    pull_headers[1].1 = "pull_request".to_owned();
    let reply = post(pull_headers, opened).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let pulled = server
        .execution(
            acme.id,
            answer(&reply)["execution_id"].as_i64().expect("id"),
        )
        .await;
    let pulled = pulled.trigger.expect("trigger");
    // The filter matched the target branch (main); the run gets the source branch.
    assert_eq!(
        (pulled.event.as_str(), pulled.branch.as_str()),
        ("pull_request", "fix")
    );
    let ping = br#"{"zen":"Keep it logically awesome."}"#.to_vec();
    let mut ping_headers = headers("d-ping", &signature(&secret, &ping));
    ping_headers[1].1 = "ping".to_owned();
    assert_eq!(
        answer(&post(ping_headers, ping).await)["outcome"],
        "ignored"
    );
    assert_eq!(executions(&server, acme.id).await.len(), 4);

    // The delivery log: newest first, what each came to and why.
    let log = deliveries(&server, acme.id, webhook.id).await;
    let outcomes: Vec<i32> = log.iter().map(|delivery| delivery.outcome).collect();
    assert_eq!(
        log.first().map(|delivery| delivery.event.as_str()),
        Some("ping")
    );
    assert!(outcomes.contains(&(pb::WebhookDeliveryOutcome::Rejected as i32)));
    assert!(outcomes.contains(&(pb::WebhookDeliveryOutcome::Ignored as i32)));
    let queued: Vec<&pb::WebhookDelivery> = log
        .iter()
        .filter(|delivery| delivery.outcome == pb::WebhookDeliveryOutcome::Queued as i32)
        .collect();
    assert_eq!(queued.len(), 4);
    assert!(
        queued
            .iter()
            .any(|delivery| delivery.execution_id == execution_id
                && delivery.delivery_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
                && delivery.author == "octocat")
    );
    let rejected = log
        .iter()
        .find(|delivery| delivery.outcome == pb::WebhookDeliveryOutcome::Rejected as i32)
        .expect("a rejected delivery");
    assert!(
        rejected.delivery_id.is_empty(),
        "a forgery keeps no delivery id"
    );

    // Disabled: the same answer as a bad signature, nothing queued.
    server
        .admin_pipelines()
        .update_webhook(pb::UpdateWebhookRequest {
            customer_id: acme.id,
            webhook_id: webhook.id,
            enabled: Some(false),
            ..Default::default()
        })
        .await
        .expect("disable");
    let fresh = github_push("main", "ffff");
    let reply = post(headers("d-disabled", &signature(&secret, &fresh)), fresh).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body, forged.body);
    assert_eq!(executions(&server, acme.id).await.len(), 4);

    // The filter of ListExecutions finds webhook runs.
    let by_webhook = server
        .admin_pipelines()
        .list_executions(pb::ListExecutionsRequest {
            customer_id: acme.id,
            trigger_kind: pb::TriggerKind::Webhook as i32,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .executions;
    assert_eq!(by_webhook.len(), 4);

    // A new secret works at once and the old one no longer does.
    server
        .admin_pipelines()
        .update_webhook(pb::UpdateWebhookRequest {
            customer_id: acme.id,
            webhook_id: webhook.id,
            enabled: Some(true),
            ..Default::default()
        })
        .await
        .expect("enable");
    let rotated = server
        .admin_pipelines()
        .rotate_webhook_secret(pb::RotateWebhookSecretRequest {
            customer_id: acme.id,
            webhook_id: webhook.id,
        })
        .await
        .expect("rotate")
        .into_inner();
    assert_ne!(rotated.secret, secret);
    let next = github_push("main", "abcdef");
    let old = post(
        headers("d-old-secret", &signature(&secret, &next)),
        next.clone(),
    )
    .await;
    assert_eq!(old.status, 401, "{}", old.body);
    let new = post(
        headers("d-new-secret", &signature(&rotated.secret, &next)),
        next,
    )
    .await;
    assert_eq!(new.status, 202, "{}", new.body);

    // Every outcome is counted.
    let metrics = cygnet_testkit::web_client::http(
        server.metrics_address.expect("metrics on"),
        "GET",
        "/metrics",
        None,
        None,
    )
    .await;
    for line in [
        r#"cygnet_webhook_deliveries_total{outcome="queued"} 5"#,
        r#"cygnet_webhook_deliveries_total{outcome="duplicate"} 2"#,
        r#"cygnet_webhook_deliveries_total{outcome="ignored"} 4"#,
        r#"cygnet_webhook_deliveries_total{outcome="rejected"} 6"#,
    ] {
        assert!(metrics.body.contains(line), "{line} in:\n{}", metrics.body);
    }
}

async fn gitlab_and_generic_deliveries(backend: Backend) {
    let server = TestServer::start_with(backend, web_options()).await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let pipeline = pipeline_with_parameters(&server, acme.id).await;
    let sources: std::collections::HashMap<String, String> = [
        ("BRANCH".to_owned(), "branch".to_owned()),
        ("COMMIT".to_owned(), "commit".to_owned()),
    ]
    .into();
    let (gitlab, gitlab_secret) = create_webhook(
        &server,
        ADMIN_TOKEN,
        pb::CreateWebhookRequest {
            customer_id: acme.id,
            pipeline_id: pipeline.id,
            format: pb::WebhookFormat::Gitlab as i32,
            events: vec!["push".into(), "merge_request".into()],
            parameters: sources.clone(),
            ..Default::default()
        },
    )
    .await;
    // GitLab's push and merge request events, with its token header.
    let push = json!({"object_kind": "push", "ref": "refs/heads/main",
        "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "user_username": "jsmith"})
    .to_string();
    let reply = post_body(
        web,
        &gitlab.path,
        &[
            ("x-gitlab-event", "Push Hook"),
            ("x-gitlab-token", &gitlab_secret),
            ("idempotency-key", "f8a5c0d2-0001"),
        ],
        push.as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let execution = server
        .execution(
            acme.id,
            answer(&reply)["execution_id"].as_i64().expect("id"),
        )
        .await;
    assert_eq!(
        execution.parameters.get("COMMIT").map(String::as_str),
        Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7")
    );
    let merge = json!({"object_kind": "merge_request", "user": {"username": "ann"},
        "object_attributes": {"action": "open", "source_branch": "feature",
        "target_branch": "main", "source_project_id": 7, "target_project_id": 7,
        "last_commit": {"id": "b1"}}})
    .to_string();
    let reply = post_body(
        web,
        &gitlab.path,
        &[
            ("x-gitlab-event", "Merge Request Hook"),
            ("x-gitlab-token", &gitlab_secret),
        ],
        merge.as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let wrong = post_body(
        web,
        &gitlab.path,
        &[
            ("x-gitlab-event", "Push Hook"),
            ("x-gitlab-token", "not-the-secret"),
        ],
        push.as_bytes(),
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(executions(&server, acme.id).await.len(), 2);

    // The generic format: the timestamp is signed with the body; a delivery older than five
    // minutes is a replay, refused though its signature holds.
    let (generic, generic_secret) = create_webhook(
        &server,
        ADMIN_TOKEN,
        pb::CreateWebhookRequest {
            customer_id: acme.id,
            pipeline_id: pipeline.id,
            format: pb::WebhookFormat::Generic as i32,
            parameters: sources,
            ..Default::default()
        },
    )
    .await;
    let body = br#"{"branch":"main","commit":"abc123"}"#;
    let send = |at: i64| {
        let path = generic.path.clone();
        let secret = generic_secret.clone();
        async move {
            let timestamp = at.to_string();
            let mut message = format!("{timestamp}.").into_bytes();
            message.extend_from_slice(body);
            let signed = signature(&secret, &message);
            post_body(
                web,
                &path,
                &[
                    ("x-cygnet-timestamp", &timestamp),
                    ("x-cygnet-signature", &signed),
                ],
                body,
            )
            .await
        }
    };
    let now = chrono::Utc::now().timestamp();
    let reply = send(now).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    // The same signed delivery again (a replay within the window) is the same delivery.
    let again = send(now).await;
    assert_eq!(answer(&again)["outcome"], "duplicate", "{}", again.body);
    let stale = send(now - 360).await;
    assert_eq!(stale.status, 401, "{}", stale.body);
    assert_eq!(executions(&server, acme.id).await.len(), 3);
    let log = deliveries(&server, acme.id, generic.id).await;
    assert!(log[0].reason.contains("five minutes"), "{:?}", log[0]);

    // A body over the limit is refused before it is read; a signed body that is not JSON is
    // refused naming why.
    let reply = declared_too_large(web, &generic.path).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    let text = b"branch=main";
    let timestamp = now.to_string();
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(text);
    let reply = post_body(
        web,
        &generic.path,
        &[
            ("x-cygnet-timestamp", &timestamp),
            ("x-cygnet-signature", &signature(&generic_secret, &message)),
        ],
        text,
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        answer(&reply)["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("JSON")
    );
}

/// Sends one signed push to each of `webs` at once, all with one delivery id: one is queued
/// (202), the others are its duplicates (200).
async fn copies_queue_one_run(webs: &[std::net::SocketAddr], path: &str, secret: &str) {
    let body = github_push("main", "1234");
    let signed = signature(secret, &body);
    let mut copies = Vec::new();
    for web in webs.iter().copied() {
        let (path, body, signed) = (path.to_owned(), body.clone(), signed.clone());
        copies.push(tokio::spawn(async move {
            post_body(
                web,
                &path,
                &[
                    ("x-github-event", "push"),
                    ("x-github-delivery", "same-delivery"),
                    ("x-hub-signature-256", &signed),
                ],
                &body,
            )
            .await
            .status
        }));
    }
    let mut statuses = Vec::new();
    for copy in copies {
        statuses.push(copy.await.expect("delivery"));
    }
    let queued = statuses.iter().filter(|status| **status == 202).count();
    let duplicates = statuses.iter().filter(|status| **status == 200).count();
    assert_eq!((queued, duplicates), (1, webs.len() - 1), "{statuses:?}");
}

async fn concurrent_copies_of_a_delivery_queue_one_run(backend: Backend) {
    let server = TestServer::start_with(backend, web_options()).await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let pipeline = pipeline_with_parameters(&server, acme.id).await;
    let (webhook, secret) = create_webhook(
        &server,
        ADMIN_TOKEN,
        pb::CreateWebhookRequest {
            customer_id: acme.id,
            pipeline_id: pipeline.id,
            format: pb::WebhookFormat::Github as i32,
            ..Default::default()
        },
    )
    .await;
    let web = [web; 8];
    copies_queue_one_run(&web, &webhook.path, &secret).await;
    assert_eq!(executions(&server, acme.id).await.len(), 1);
}

/// Two replicas on one PostgreSQL database receive copies of one delivery at once: one run.
async fn replicas_queue_one_run_per_delivery(backend: Backend) {
    if matches!(backend, Backend::Sqlite) {
        return; // SQLite is single-replica by design.
    }
    let first = TestServer::start_with(backend, web_options()).await;
    let second = first.start_replica().await;
    let acme = first.create_customer("acme").await;
    let pipeline = pipeline_with_parameters(&first, acme.id).await;
    let (webhook, secret) = create_webhook(
        &first,
        ADMIN_TOKEN,
        pb::CreateWebhookRequest {
            customer_id: acme.id,
            pipeline_id: pipeline.id,
            format: pb::WebhookFormat::Github as i32,
            ..Default::default()
        },
    )
    .await;
    let webs: Vec<std::net::SocketAddr> = [first.web_address, second.web_address]
        .into_iter()
        .map(|address| address.expect("web on"))
        .cycle()
        .take(8)
        .collect();
    copies_queue_one_run(&webs, &webhook.path, &secret).await;
    assert_eq!(executions(&first, acme.id).await.len(), 1);
}

async fn webhooks_follow_roles_quotas_and_rates(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        TestOptions {
            web: true,
            rate_limits: cygnet_server::config::RateLimits {
                webhook_deliveries_per_minute: 10,
                ..Default::default()
            },
            ..TestOptions::default()
        },
    )
    .await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let globex = server.create_customer("globex").await;
    let devops = server
        .create_member(acme.id, "devops", pb::Role::Devops)
        .await;
    let developer = server
        .create_member(acme.id, "dev", pb::Role::Developer)
        .await;
    let outsider = server
        .create_member(globex.id, "outsider", pb::Role::Admin)
        .await;
    let pipeline = pipeline_with_parameters(&server, acme.id).await;
    let request = pb::CreateWebhookRequest {
        customer_id: acme.id,
        pipeline_id: pipeline.id,
        format: pb::WebhookFormat::Github as i32,
        ..Default::default()
    };

    // Bad input names its field.
    let mut pipelines = server.pipelines(&devops.token);
    for (change, field) in [
        (
            pb::CreateWebhookRequest {
                format: 0,
                ..request.clone()
            },
            "format",
        ),
        (
            pb::CreateWebhookRequest {
                events: vec!["issues".into()],
                ..request.clone()
            },
            "events[0]",
        ),
        (
            pb::CreateWebhookRequest {
                branches: vec!["release/[".into()],
                ..request.clone()
            },
            "branches[0]",
        ),
        (
            pb::CreateWebhookRequest {
                parameters: [("BRANCH".to_owned(), "the branch".to_owned())].into(),
                ..request.clone()
            },
            "parameters[BRANCH]",
        ),
        (
            pb::CreateWebhookRequest {
                parameters: [("NOPE".to_owned(), "branch".to_owned())].into(),
                ..request.clone()
            },
            "parameters[NOPE]",
        ),
        (
            pb::CreateWebhookRequest {
                pipeline_id: -1,
                ..request.clone()
            },
            "pipeline_id",
        ),
    ] {
        assert_invalid(
            "CreateWebhook",
            pipelines.create_webhook(change).await,
            field,
        );
    }

    // A developer may run pipelines but not make a webhook (it holds a secret that starts
    // runs) nor read delivery logs; they see webhooks without secrets.
    assert_status(
        server
            .pipelines(&developer.token)
            .create_webhook(request.clone())
            .await,
        Code::PermissionDenied,
        "manage webhooks",
    );
    assert_status(
        server
            .pipelines(&developer.token)
            .rotate_webhook_secret(pb::RotateWebhookSecretRequest {
                customer_id: acme.id,
                webhook_id: 1,
            })
            .await,
        Code::PermissionDenied,
        "manage webhooks",
    );
    let created = pipelines
        .create_webhook(request.clone())
        .await
        .expect("devops creates")
        .into_inner();
    let webhook = created.webhook.expect("webhook");
    let listed = server
        .pipelines(&developer.token)
        .list_webhooks(pb::ListWebhooksRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("developers list")
        .into_inner();
    assert_eq!(listed.webhooks.len(), 1);
    assert!(!format!("{listed:?}").contains(&created.secret));
    assert_status(
        server
            .pipelines(&developer.token)
            .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
                customer_id: acme.id,
                webhook_id: webhook.id,
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "read the webhook deliveries",
    );
    // Another customer's admin finds nothing, by their customer or by the id.
    assert_status(
        server
            .pipelines(&outsider.token)
            .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
                customer_id: globex.id,
                webhook_id: webhook.id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "webhook",
    );
    assert_status(
        server
            .pipelines(&outsider.token)
            .delete_webhook(pb::DeleteWebhookRequest {
                customer_id: globex.id,
                webhook_id: webhook.id,
            })
            .await,
        Code::NotFound,
        "webhook",
    );

    // The `webhooks` quota.
    server
        .admin_customers()
        .set_customer_quotas(pb::SetCustomerQuotasRequest {
            customer_id: acme.id,
            limits: [("webhooks".to_owned(), 1)].into(),
            reset: vec![],
        })
        .await
        .expect("quota");
    assert_status(
        pipelines.create_webhook(request.clone()).await,
        Code::ResourceExhausted,
        "quota webhooks",
    );

    // The rate per webhook: ten at once, then 429 with Retry-After; forged deliveries do not
    // use it up first.
    for index in 0..20 {
        let body = github_push("main", &format!("{index}"));
        let reply = post_body(
            web,
            &webhook.path,
            &[
                ("x-github-event", "push"),
                ("x-github-delivery", &format!("forged-{index}")),
                ("x-hub-signature-256", &signature("guess", &body)),
            ],
            &body,
        )
        .await;
        assert_eq!(reply.status, 401);
    }
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for index in 0..11 {
        let body = github_push("main", &format!("c{index}"));
        let reply = post_body(
            web,
            &webhook.path,
            &[
                ("x-github-event", "push"),
                ("x-github-delivery", &format!("real-{index}")),
                ("x-hub-signature-256", &signature(&created.secret, &body)),
            ],
            &body,
        )
        .await;
        statuses.push(reply.status);
        if reply.status == 429 {
            retry_after = reply.header("retry-after").map(str::to_owned);
            assert!(
                reply.body.contains("webhook_deliveries_per_minute"),
                "{}",
                reply.body
            );
        }
    }
    assert_eq!(&statuses[..10], &[202; 10], "{statuses:?}");
    assert_eq!(statuses[10], 429);
    assert!(retry_after.is_some());
    // Forged deliveries were logged at a bounded rate, not all twenty.
    let log = deliveries(&server, acme.id, webhook.id).await;
    let rejected = log
        .iter()
        .filter(|delivery| delivery.outcome == pb::WebhookDeliveryOutcome::Rejected as i32)
        .count();
    assert!(rejected <= 10, "{rejected}");

    // Deleting the webhook ends its address (the same answer as any unknown one).
    pipelines
        .delete_webhook(pb::DeleteWebhookRequest {
            customer_id: acme.id,
            webhook_id: webhook.id,
        })
        .await
        .expect("delete");
    let body = github_push("main", "after-delete");
    let reply = post_body(
        web,
        &webhook.path,
        &[
            ("x-github-event", "push"),
            ("x-github-delivery", "after-delete"),
            ("x-hub-signature-256", &signature(&created.secret, &body)),
        ],
        &body,
    )
    .await;
    assert_eq!(reply.status, 401);
}

/// The attack of a member who may manage webhooks: a parameter named like one of the
/// pipeline's secrets (in any case) would let a delivery replace the secret in `{{NAME}}`.
async fn a_webhook_parameter_never_stands_in_for_a_secret(backend: Backend) {
    let server = TestServer::start_with(backend, web_options()).await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let devops = server
        .create_member(acme.id, "devops", pb::Role::Devops)
        .await;
    let group = server
        .create_group_with_secret(acme.id, "production", "DB_PASSWORD", "s3cret")
        .await;
    let mut variables = server.variables(ADMIN_TOKEN);
    let pipeline = server
        .admin_pipelines()
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: acme.id,
            name: "Deploy".into(),
            steps: vec![step("ship", "echo {{DB_PASSWORD}} {{DEPLOY_TOKEN}}")],
            parameters: ["DB_PASSWORD", "DEPLOY_TOKEN"]
                .into_iter()
                .map(|name| pb::Parameter {
                    name: name.into(),
                    r#type: pb::ParameterType::String as i32,
                    ..Default::default()
                })
                .collect(),
            variable_group_ids: vec![group.id],
            ..Default::default()
        })
        .await
        .expect("pipeline")
        .into_inner()
        .pipeline
        .expect("pipeline");
    for name in ["DB_PASSWORD", "db_password"] {
        assert_invalid(
            "CreateWebhook",
            server
                .pipelines(&devops.token)
                .create_webhook(pb::CreateWebhookRequest {
                    customer_id: acme.id,
                    pipeline_id: pipeline.id,
                    format: pb::WebhookFormat::Generic as i32,
                    parameters: [(name.to_owned(), "/password".to_owned())].into(),
                    ..Default::default()
                })
                .await,
            &format!("parameters[{name}]"),
        );
    }

    // A webhook made while TOKEN was a plain parameter: once a secret named TOKEN joins the
    // pipeline's group, a delivery can no longer replace it.
    let (webhook, secret) = create_webhook(
        &server,
        &devops.token,
        pb::CreateWebhookRequest {
            customer_id: acme.id,
            pipeline_id: pipeline.id,
            format: pb::WebhookFormat::Gitlab as i32,
            parameters: [("DEPLOY_TOKEN".to_owned(), "/token".to_owned())].into(),
            ..Default::default()
        },
    )
    .await;
    variables
        .set_variable(pb::SetVariableRequest {
            customer_id: acme.id,
            group_id: group.id,
            key: "deploy_token".into(),
            value: "the-real-token".into(),
            is_secret: true,
            ..Default::default()
        })
        .await
        .expect("a secret added later");
    let push =
        json!({"ref": "refs/heads/main", "checkout_sha": "c0ffee", "token": "attacker-chosen"})
            .to_string();
    let reply = post_body(
        web,
        &webhook.path,
        &[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", &secret)],
        push.as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("secret"), "{}", reply.body);
    assert!(executions(&server, acme.id).await.is_empty());
}

cygnet_testkit::backend_tests!(
    github_deliveries_queue_once_and_forgeries_queue_nothing,
    gitlab_and_generic_deliveries,
    concurrent_copies_of_a_delivery_queue_one_run,
    replicas_queue_one_run_per_delivery,
    webhooks_follow_roles_quotas_and_rates,
    a_webhook_parameter_never_stands_in_for_a_secret,
);
