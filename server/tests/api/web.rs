//! The web dashboard over real HTTP: sessions, CSRF, tenant isolation, escaping, audit, TLS.
//! (The browser test, with live updates, is `agent/tests/e2e/web.rs`.)

use std::sync::Arc;

use cygnet_proto::v1 as pb;
use cygnet_server::config::TlsFiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Backend, TestOptions, TestServer, make_dev_certificates};
pub(crate) use cygnet_testkit::web_client::{
    Reply, csrf, exchange, exchange_with, hidden, http, http_with, post_sign_in_plain, pre_session,
    sign_in,
};

fn web_server_options() -> TestOptions {
    TestOptions {
        web: true,
        ..TestOptions::default()
    }
}

async fn the_dashboard_is_tenant_scoped_and_safe(backend: Backend) {
    let server = TestServer::start_with(backend, web_server_options()).await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let globex = server.create_customer("globex").await;
    let dev = server.create_user("dev").await;
    server
        .add_member(acme.id, dev.id, pb::Role::Developer)
        .await;
    let viewer = server.create_user("viewer").await;
    server
        .add_member(acme.id, viewer.id, pb::Role::Viewer)
        .await;
    let hostile = "<img src=x onerror=alert(1)>";
    let pipeline = server
        .admin_pipelines()
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: acme.id,
            name: "build".into(),
            description: hostile.into(),
            steps: vec![crate::common::step("build", "true")],
            ..Default::default()
        })
        .await
        .expect("pipeline")
        .into_inner()
        .pipeline
        .expect("pipeline");
    let globex_pipeline = server
        .create_pipeline(
            globex.id,
            "secret",
            vec![crate::common::step("s", "true")],
            vec![],
        )
        .await;
    let globex_execution = server
        .run_pipeline(globex.id, globex_pipeline.id, &[])
        .await;

    // Without a session every page sends the browser to sign in.
    let anonymous = http(web, "GET", &format!("/c/{}", acme.id), None, None).await;
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.header("location"), Some("/signin"));
    let forged = http(web, "GET", "/c/1", Some("cyg_forged"), None).await;
    assert_eq!(forged.header("location"), Some("/signin"));

    // Sign-in refuses a missing or wrong token with a message.
    let empty = post_sign_in_plain(web, "").await;
    assert_eq!(empty.status, 401);
    assert!(empty.body.contains("Paste an API token"), "{}", empty.body);
    let wrong = post_sign_in_plain(web, "cyg_wrong").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("token is not valid"), "{}", wrong.body);

    // Sign-in sets an HttpOnly, SameSite=Strict, expiring cookie (no Secure without TLS).
    let signed_in = post_sign_in_plain(web, &dev.token).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let cookie = signed_in.header("set-cookie").expect("cookie").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age=43200", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    let session = signed_in.session();
    assert_ne!(
        session, dev.token,
        "the browser gets a session, not the pasted token"
    );
    let home = http(web, "GET", "/", Some(&session), None).await;
    assert_eq!(
        home.header("location"),
        Some(format!("/c/{}", acme.id).as_str())
    );

    // The dashboard shows the customer's cards; hostile text is escaped.
    let dashboard = http(web, "GET", &format!("/c/{}", acme.id), Some(&session), None).await;
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("data-card=\"executions\""));
    assert!(
        dashboard
            .body
            .contains("<span id=\"current-user\">dev</span>")
    );
    let pipelines = http(
        web,
        "GET",
        &format!("/c/{}/pipelines", acme.id),
        Some(&session),
        None,
    )
    .await;
    assert_eq!(pipelines.status, 200);
    assert!(
        pipelines
            .body
            .contains("&#60;img src=x onerror=alert(1)&#62;"),
        "{}",
        pipelines.body
    );
    assert!(!pipelines.body.contains(hostile));
    assert!(
        !pipelines.body.contains("secret"),
        "another customer's pipeline"
    );

    // Another customer's pages and ids are 404, the same as unknown ones.
    let unknown = http(web, "GET", "/c/999999", Some(&session), None).await;
    assert_eq!(unknown.status, 404);
    for path in [
        format!("/c/{}", globex.id),
        format!("/c/{}/agents", globex.id),
        format!("/c/{}/executions/{}", acme.id, globex_execution.id),
        format!("/c/{}/executions/{}", globex.id, globex_execution.id),
        format!("/c/{}/executions/x", acme.id),
        "/nowhere".to_owned(),
    ] {
        let reply = http(web, "GET", &path, Some(&session), None).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.body, unknown.body, "{path}");
    }

    // A form without the session's CSRF token changes nothing.
    let run_path = format!("/c/{}/pipelines/{}/run", acme.id, pipeline.id);
    let no_csrf = http(
        web,
        "POST",
        &run_path,
        Some(&session),
        Some(&[("csrf", "forged")]),
    )
    .await;
    assert_eq!(no_csrf.status, 403);
    let executions = || async {
        server
            .admin_pipelines()
            .list_executions(pb::ListExecutionsRequest {
                customer_id: acme.id,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .executions
    };
    assert!(executions().await.is_empty());

    // Bad input names the field and writes nothing.
    let token = csrf(&pipelines.body);
    let unknown_parameter = http(
        web,
        "POST",
        &run_path,
        Some(&session),
        Some(&[("csrf", &token), ("param.NOPE", "1")]),
    )
    .await;
    assert_eq!(unknown_parameter.status, 400, "{}", unknown_parameter.body);
    assert!(
        unknown_parameter.body.contains("NOPE"),
        "{}",
        unknown_parameter.body
    );
    assert!(executions().await.is_empty());

    // A viewer may not run; a developer may, and the audit log records who did it from where.
    let viewer_session = sign_in(web, &viewer.token).await;
    let viewer_page = http(
        web,
        "GET",
        &format!("/c/{}/pipelines", acme.id),
        Some(&viewer_session),
        None,
    )
    .await;
    assert!(
        !viewer_page.body.contains("Run build"),
        "no Run button for a viewer"
    );
    let refused = http(
        web,
        "POST",
        &run_path,
        Some(&viewer_session),
        Some(&[("csrf", &csrf(&viewer_page.body))]),
    )
    .await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("may not"), "{}", refused.body);
    let ran = http(
        web,
        "POST",
        &run_path,
        Some(&session),
        Some(&[("csrf", &token)]),
    )
    .await;
    assert_eq!(ran.status, 303, "{}", ran.body);
    let made = executions().await;
    assert_eq!(made.len(), 1);
    assert_eq!(
        ran.header("location"),
        Some(format!("/c/{}/executions/{}", acme.id, made[0].id).as_str())
    );
    let page = http(
        web,
        "GET",
        ran.header("location").expect("location"),
        Some(&session),
        None,
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"execution-status\""));
    let audit = server
        .admin_customers()
        .list_audit_log(pb::ListAuditLogRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .entries;
    let runs: Vec<_> = audit
        .iter()
        .filter(|entry| entry.method == "cygnet.v1.PipelineService/RunPipeline")
        .collect();
    // The refused form with the unknown parameter, the viewer's attempt and the run.
    assert_eq!(runs.len(), 3, "{audit:?}");
    assert!(
        runs.iter()
            .any(|entry| entry.actor_username == "dev" && entry.code == "INVALID_ARGUMENT")
    );
    assert!(
        runs.iter()
            .any(|entry| entry.actor_username == "dev" && entry.code == "OK")
    );
    assert!(
        runs.iter()
            .any(|entry| entry.actor_username == "viewer" && entry.code == "PERMISSION_DENIED")
    );
    assert!(
        runs.iter()
            .all(|entry| entry.peer_address.starts_with("127.0.0.1:"))
    );

    // Revoking the pasted token ends its web sessions.
    server
        .users(&viewer.token)
        .revoke_api_token(pb::RevokeApiTokenRequest {
            token_id: viewer.token_id,
        })
        .await
        .expect("revoke");
    let ended = http(
        web,
        "GET",
        &format!("/c/{}", acme.id),
        Some(&viewer_session),
        None,
    )
    .await;
    assert_eq!(ended.header("location"), Some("/signin"));

    // Sign-out revokes the session and clears the cookie.
    let out = http(
        web,
        "POST",
        "/signout",
        Some(&session),
        Some(&[("csrf", &token)]),
    )
    .await;
    assert_eq!(out.header("location"), Some("/signin"));
    assert!(
        out.header("set-cookie")
            .expect("cleared")
            .contains("Max-Age=0")
    );
    let after = http(web, "GET", &format!("/c/{}", acme.id), Some(&session), None).await;
    assert_eq!(after.header("location"), Some("/signin"));
    // The pasted token itself still works for the API.
    server
        .users(&dev.token)
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("the API token is untouched");
}

/// The usage page: quotas for every member, usage (chart, table, CSV and JSON exports) for the
/// customer's admins, quota changes for platform administrators only.
async fn usage_and_quotas_in_the_dashboard(backend: Backend) {
    let server = TestServer::start_with(backend, web_server_options()).await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let globex = server.create_customer("globex").await;
    let boss = server.create_user("boss").await;
    server.add_member(acme.id, boss.id, pb::Role::Admin).await;
    let dev = server.create_user("dev").await;
    server
        .add_member(acme.id, dev.id, pb::Role::Developer)
        .await;
    let boss_session = sign_in(web, &boss.token).await;
    let dev_session = sign_in(web, &dev.token).await;
    let admin_session = sign_in(web, cygnet_testkit::ADMIN_TOKEN).await;
    let usage = format!("/c/{}/usage", acme.id);

    let page = http(web, "GET", &usage, Some(&boss_session), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Build minutes per day"), "{}", page.body);
    assert!(page.body.contains("queued_executions"), "{}", page.body);
    assert!(
        !page.body.contains("Save quotas"),
        "only platform admins change quotas"
    );
    let csv = http(
        web,
        "GET",
        &format!("/c/{}/usage.csv", acme.id),
        Some(&boss_session),
        None,
    )
    .await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.header("content-type")
            .is_some_and(|value| value.starts_with("text/csv"))
    );
    assert!(
        csv.body.starts_with("customer_id,day,build_seconds,"),
        "{}",
        csv.body
    );
    let json = http(
        web,
        "GET",
        &format!("/c/{}/usage.json", acme.id),
        Some(&boss_session),
        None,
    )
    .await;
    assert_eq!(json.status, 200);
    let parsed: serde_json::Value = serde_json::from_str(&json.body).expect("JSON");
    assert_eq!(parsed["customer_id"], acme.id);
    assert!(parsed["days"].is_array());

    // A developer sees the quotas, not the billing figures.
    let page = http(web, "GET", &usage, Some(&dev_session), None).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("for the customer&#x27;s administrators")
            || page.body.contains("for the customer's administrators"),
        "{}",
        page.body
    );
    assert!(page.body.contains("queued_executions"));
    let refused = http(
        web,
        "GET",
        &format!("/c/{}/usage.csv", acme.id),
        Some(&dev_session),
        None,
    )
    .await;
    assert_eq!(refused.status, 403);
    // Another customer's usage looks like nothing at all.
    let foreign = http(
        web,
        "GET",
        &format!("/c/{}/usage", globex.id),
        Some(&boss_session),
        None,
    )
    .await;
    assert_eq!(foreign.status, 404);

    // A customer admin may not change its quotas, even with a valid form.
    let token = csrf(
        &http(web, "GET", &usage, Some(&boss_session), None)
            .await
            .body,
    );
    let forged = http(
        web,
        "POST",
        &format!("/c/{}/quotas", acme.id),
        Some(&boss_session),
        Some(&[("csrf", &token), ("quota.queued_executions", "100000")]),
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    // The platform administrator does; empty fields keep the defaults.
    let page = http(web, "GET", &usage, Some(&admin_session), None).await;
    assert!(page.body.contains("Save quotas"));
    let token = csrf(&page.body);
    let saved = http(
        web,
        "POST",
        &format!("/c/{}/quotas", acme.id),
        Some(&admin_session),
        Some(&[
            ("csrf", &token),
            ("quota.queued_executions", "7"),
            ("quota.pipelines", ""),
        ]),
    )
    .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let quotas = server
        .admin_customers()
        .get_customer_quotas(pb::GetCustomerQuotasRequest {
            customer_id: acme.id,
        })
        .await
        .expect("quotas")
        .into_inner()
        .quotas;
    let queued = quotas
        .iter()
        .find(|quota| quota.name == "queued_executions")
        .expect("queued");
    assert_eq!((queued.limit, queued.overridden), (7, true));
    assert_eq!(quotas.iter().filter(|quota| quota.overridden).count(), 1);
    let bad = http(
        web,
        "POST",
        &format!("/c/{}/quotas", acme.id),
        Some(&admin_session),
        Some(&[("csrf", &token), ("quota.queued_executions", "lots")]),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("limits[queued_executions]"),
        "{}",
        bad.body
    );
}

cygnet_testkit::backend_tests!(
    the_dashboard_is_tenant_scoped_and_safe,
    usage_and_quotas_in_the_dashboard,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_tls_the_dashboard_is_https_with_secure_cookies() {
    let certs = tempfile::tempdir().expect("temp dir");
    make_dev_certificates(certs.path(), "acme-001");
    let server = TestServer::start_with(
        Backend::Sqlite,
        TestOptions {
            web: true,
            tls: Some(TlsFiles {
                cert: certs.path().join("server.pem"),
                key: certs.path().join("server.key"),
                client_ca: None,
            }),
            client_tls: Some(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(
                        std::fs::read(certs.path().join("ca.pem")).expect("ca"),
                    ))
                    .domain_name("localhost"),
            ),
            ..TestOptions::default()
        },
    )
    .await;
    let web = server.web_address.expect("web on");
    let user = server.create_user("dev").await;

    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        rustls::pki_types::CertificateDer::pem_file_iter(certs.path().join("ca.pem")).expect("ca")
    {
        roots.add(certificate.expect("certificate")).expect("root");
    }
    let connector = tokio_rustls::TlsConnector::from(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ));
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(web).await.expect("connect");
        connector
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").expect("name"),
                tcp,
            )
            .await
            .expect("TLS handshake")
    };
    let page = exchange(connect().await, "GET", "/signin", None, None).await;
    let pre_session_cookie = page.header("set-cookie").expect("pre-session cookie");
    assert!(
        pre_session_cookie.contains("; Secure"),
        "{pre_session_cookie}"
    );
    let (cookie, signin_token) = pre_session(&page);
    let signed_in = exchange_with(
        connect().await,
        "POST",
        "/signin",
        &[("cookie", &cookie), ("origin", "https://cygnet")],
        Some(&[("token", &user.token), ("signin_token", &signin_token)]),
    )
    .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let cookie = signed_in.header("set-cookie").expect("cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");

    // Plain HTTP on the TLS port gets no page.
    let mut plain = tokio::net::TcpStream::connect(web).await.expect("connect");
    plain
        .write_all(b"GET /signin HTTP/1.1\r\nhost: cygnet\r\nconnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(!String::from_utf8_lossy(&answer).contains("Sign in"));
}
