//! Webhooks in the dashboard, over real HTTP: devops add one on the pipeline's page and see its
//! secret once (a refusal comes back at its input); a signed delivery's run and the delivery
//! log show on the webhook's page and the execution's; a developer sees webhooks without the
//! controls (the reason given) and cannot read the log.

use cygnet_proto::v1 as pb;
use cygnet_testkit::web_client::{Reply, csrf, http, post_body, sign_in};
use cygnet_testkit::{Backend, TestOptions, TestServer, step};
use ring::hmac;

fn assert_has(page: &Reply, text: &str) {
    assert!(
        page.body.contains(text),
        "{text:?} missing from:\n{}",
        page.body
    );
}

/// The text of the element with `id` (up to its closing tag).
fn element(page: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let start = page
        .find(&marker)
        .map(|at| at + marker.len())
        .expect("the element");
    let end = page[start..].find('<').expect("its end");
    page[start..start + end].to_owned()
}

async fn webhooks_are_made_and_watched_in_the_dashboard(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        TestOptions {
            web: true,
            ..TestOptions::default()
        },
    )
    .await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let devops = server
        .create_member(acme.id, "devops", pb::Role::Devops)
        .await;
    let dev = server
        .create_member(acme.id, "dev", pb::Role::Developer)
        .await;
    let build = server
        .create_pipeline(
            acme.id,
            "Build",
            vec![step("build", "make")],
            vec![pb::Parameter {
                name: "BRANCH".into(),
                r#type: pb::ParameterType::String as i32,
                ..Default::default()
            }],
        )
        .await;
    let page_path = format!("/c/{}/pipelines/{}", acme.id, build.id);
    let session = sign_in(web, &devops.token).await;
    let page = http(web, "GET", &page_path, Some(&session), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_has(&page, "New webhook");
    let token = csrf(&page.body);
    let create = format!("{page_path}/webhooks");

    // A parameter the pipeline does not have comes back at its input, as typed.
    let refused = http(
        web,
        "POST",
        &create,
        Some(&session),
        Some(&[
            ("csrf", token.as_str()),
            ("format", "github"),
            ("branches", "main"),
            ("parameters", "NOPE=branch"),
        ]),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_has(&refused, r#"id="webhook-parameters-error""#);
    assert_has(&refused, "NOPE=branch</textarea>");

    let created = http(
        web,
        "POST",
        &create,
        Some(&session),
        Some(&[
            ("csrf", token.as_str()),
            ("format", "github"),
            ("branches", "main, release/*"),
            ("parameters", "BRANCH=branch"),
        ]),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let secret = element(&created.body, "webhook-secret");
    let path = element(&created.body, "webhook-path");
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(path.starts_with("/hooks/"), "{path}");
    // The full address, as this browser reached the dashboard (the test client says `cygnet`).
    assert_eq!(
        element(&created.body, "webhook-url"),
        format!("http://cygnet{path}")
    );
    // Shown once: the page read again has the webhook, not its secret.
    let again = http(web, "GET", &page_path, Some(&session), None).await;
    assert_has(&again, &path);
    assert_has(&again, "branches main, release/*");
    assert!(!again.body.contains(&secret));

    // A push signed with the secret queues a run the dashboard traces back to it.
    let body = br#"{"ref":"refs/heads/main","after":"abc123","pusher":{"name":"octo"}}"#;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let signature = format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()));
    let delivered = post_body(
        web,
        &path,
        &[
            ("x-github-event", "push"),
            ("x-github-delivery", "dashboard-1"),
            ("x-hub-signature-256", &signature),
        ],
        body,
    )
    .await;
    assert_eq!(delivered.status, 202, "{}", delivered.body);
    let listed = server
        .admin_pipelines()
        .list_webhooks(pb::ListWebhooksRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("webhooks")
        .into_inner()
        .webhooks;
    let webhook_id = listed[0].id;
    let log_path = format!("/c/{}/webhooks/{webhook_id}", acme.id);
    let log = http(web, "GET", &log_path, Some(&session), None).await;
    assert_eq!(log.status, 200, "{}", log.body);
    assert_has(&log, "status-queued");
    assert_has(&log, "<code>abc123</code>");
    let execution_id: i64 = serde_json::from_str::<serde_json::Value>(&delivered.body)
        .expect("JSON")["execution_id"]
        .as_i64()
        .expect("an execution");
    assert_has(&log, &format!("executions/{execution_id}\""));
    let execution = http(
        web,
        "GET",
        &format!("/c/{}/executions/{execution_id}", acme.id),
        Some(&session),
        None,
    )
    .await;
    assert_has(&execution, "Started by a push delivery to");
    assert_has(&execution, "<code>main</code>");

    // A new secret, from the row's button: shown once, the old one gone.
    let rotated = http(
        web,
        "POST",
        &format!("/c/{}/webhooks/{webhook_id}/secret", acme.id),
        Some(&session),
        Some(&[
            ("csrf", token.as_str()),
            ("pipeline", &build.id.to_string()),
        ]),
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_has(&rotated, &format!("New secret for webhook {webhook_id}"));
    assert_eq!(rotated.header("cache-control"), Some("no-store"));
    let new_secret = element(&rotated.body, "webhook-secret");
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);

    // Disable, from the row's button.
    let toggled = http(
        web,
        "POST",
        &format!("/c/{}/webhooks/{webhook_id}/toggle", acme.id),
        Some(&session),
        Some(&[
            ("csrf", token.as_str()),
            ("pipeline", &build.id.to_string()),
            ("enabled", "false"),
        ]),
    )
    .await;
    assert_eq!(toggled.status, 303, "{}", toggled.body);
    let page = http(web, "GET", &page_path, Some(&session), None).await;
    assert_has(&page, "status-paused\">disabled");

    // A developer sees the webhook but not the controls, and may not read its log.
    let dev_session = sign_in(web, &dev.token).await;
    let page = http(web, "GET", &page_path, Some(&dev_session), None).await;
    assert_has(&page, &path);
    assert_has(
        &page,
        "Only acme display&#39;s administrators and devops manage webhooks",
    );
    assert!(
        !page
            .body
            .contains(&format!("/c/{}/webhooks/{webhook_id}/delete", acme.id))
    );
    let log = http(web, "GET", &log_path, Some(&dev_session), None).await;
    assert_eq!(log.status, 403, "{}", log.body);
}

cygnet_testkit::backend_tests!(webhooks_are_made_and_watched_in_the_dashboard);
