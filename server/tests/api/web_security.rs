//! The dashboard's defences in the browser's terms: login CSRF (a page of another site posting
//! the sign-in form, even with correct credentials) is refused and mints no session, writes from
//! another origin are refused, and every answer carries the security headers.

use std::net::SocketAddr;

use cygnet_proto::v1 as pb;

use crate::common::{Backend, TestOptions, TestServer};
use crate::web::{Reply, hidden, http, http_with, pre_session, sign_in};

/// How many dashboard sessions `token` has minted (API tokens named "web session").
async fn web_sessions(server: &TestServer, token: &str) -> usize {
    server
        .users(token)
        .list_api_tokens(pb::ListApiTokensRequest::default())
        .await
        .expect("list tokens")
        .into_inner()
        .tokens
        .iter()
        .filter(|listed| listed.name == "web session")
        .count()
}

fn sets_a_session(reply: &Reply) -> bool {
    reply
        .headers("set-cookie")
        .iter()
        .any(|cookie| cookie.starts_with("cygnet_session=") && !cookie.contains("Max-Age=0"))
}

/// A fresh sign-in page's pre-session: its cookie and the form's token.
async fn fresh_pre_session(web: SocketAddr) -> (String, String) {
    let page = http(web, "GET", "/signin", None, None).await;
    assert_eq!(page.status, 200);
    let cookie = page.header("set-cookie").expect("a pre-session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/signin", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    pre_session(&page)
}

async fn sign_in_refuses_login_csrf(backend: Backend) {
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
    let victim_account = server.create_user("attacker").await;
    server
        .add_member(acme.id, victim_account.id, pb::Role::Viewer)
        .await;
    let (cookie, signin_token) = fresh_pre_session(web).await;
    let form = [
        ("token", victim_account.token.as_str()),
        ("signin_token", signin_token.as_str()),
    ];

    // A page of another site posts the sign-in form with correct credentials: even when the
    // browser sends the pre-session cookie and the token is right, the origin is refused.
    for (header, value) in [
        ("origin", "https://evil.example"),
        ("origin", "null"),
        ("origin", "http://cygnet.evil.example"),
        ("referer", "https://evil.example/login.html"),
    ] {
        let forged = http_with(
            web,
            "POST",
            "/signin",
            &[("cookie", &cookie), (header, value)],
            Some(&form),
        )
        .await;
        assert_eq!(forged.status, 403, "{header}: {value}: {}", forged.body);
        assert!(!sets_a_session(&forged), "{header}: {value}");
    }
    // Without the pre-session cookie (a cross-site post does not carry a SameSite=Strict
    // cookie), or with a token of another pre-session, sign-in is refused too.
    let cookieless = http_with(web, "POST", "/signin", &[], Some(&form)).await;
    assert_eq!(cookieless.status, 403, "{}", cookieless.body);
    assert!(!sets_a_session(&cookieless));
    assert!(cookieless.body.contains("did not come from this site"));
    let (other_cookie, _) = fresh_pre_session(web).await;
    let mismatched = http_with(
        web,
        "POST",
        "/signin",
        &[("cookie", &other_cookie)],
        Some(&form),
    )
    .await;
    assert_eq!(mismatched.status, 403);
    let tokenless = http_with(
        web,
        "POST",
        "/signin",
        &[("cookie", &cookie)],
        Some(&[("token", victim_account.token.as_str())]),
    )
    .await;
    assert_eq!(tokenless.status, 403);
    assert!(!sets_a_session(&mismatched) && !sets_a_session(&tokenless));
    assert_eq!(
        web_sessions(&server, &victim_account.token).await,
        0,
        "no refused sign-in minted a session"
    );

    // The same form from the dashboard's own page signs in, and ends the pre-session.
    let signed_in = http_with(
        web,
        "POST",
        "/signin",
        &[("cookie", &cookie), ("origin", "http://cygnet")],
        Some(&form),
    )
    .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert!(sets_a_session(&signed_in));
    assert!(
        signed_in
            .headers("set-cookie")
            .iter()
            .any(|cleared| cleared.starts_with("cygnet_signin=;") && cleared.contains("Max-Age=0"))
    );
    assert_eq!(web_sessions(&server, &victim_account.token).await, 1);

    // Other writes from another origin are refused even with the session's CSRF token.
    let session = signed_in.session();
    let session_cookie = format!("cygnet_session={session}");
    let home = http_with(web, "GET", "/", &[("cookie", &session_cookie)], None).await;
    let page = http_with(
        web,
        "GET",
        home.header("location").unwrap_or("/"),
        &[("cookie", &session_cookie)],
        None,
    )
    .await;
    let csrf = hidden(&page.body, "csrf");
    let forged_sign_out = http_with(
        web,
        "POST",
        "/signout",
        &[
            ("cookie", &session_cookie),
            ("origin", "https://evil.example"),
        ],
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(forged_sign_out.status, 403);
    assert_eq!(
        web_sessions(&server, &victim_account.token).await,
        1,
        "the session was not signed out by another site"
    );
    let still = http_with(web, "GET", "/", &[("cookie", &session_cookie)], None).await;
    assert_ne!(still.header("location"), Some("/signin"));
}

fn assert_security_headers(what: &str, reply: &Reply) {
    let policy = reply
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"));
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(policy.contains(directive), "{what}: {policy}");
    }
    assert!(!policy.contains("unsafe-inline"), "{what}: {policy}");
    assert!(!policy.contains("unsafe-eval"), "{what}: {policy}");
    assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        reply.header("referrer-policy"),
        Some("same-origin"),
        "{what}"
    );
}

async fn every_answer_carries_the_security_headers(backend: Backend) {
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
    let viewer = server.create_user("viewer").await;
    server
        .add_member(acme.id, viewer.id, pb::Role::Viewer)
        .await;
    let session = sign_in(web, &viewer.token).await;
    let customer = format!("/c/{}", acme.id);

    let mut answers = vec![
        (
            "sign-in page",
            http(web, "GET", "/signin", None, None).await,
        ),
        (
            "redirect to sign-in",
            http(web, "GET", &customer, None, None).await,
        ),
        (
            "static script",
            http(web, "GET", "/static/app.js", None, None).await,
        ),
        (
            "static stylesheet",
            http(web, "GET", "/static/app.css", None, None).await,
        ),
        (
            "unknown path",
            http(web, "GET", "/no/such/page", None, None).await,
        ),
        (
            "dashboard",
            http(web, "GET", &customer, Some(&session), None).await,
        ),
        (
            "another customer's page",
            http(web, "GET", "/c/999999", Some(&session), None).await,
        ),
        (
            "a refused form",
            http(
                web,
                "POST",
                &format!("{customer}/quotas"),
                Some(&session),
                Some(&[("csrf", "forged")]),
            )
            .await,
        ),
        (
            "a refused sign-in",
            http(web, "POST", "/signin", None, Some(&[("token", "x")])).await,
        ),
    ];
    answers.push((
        "a write from another origin",
        http_with(
            web,
            "POST",
            "/signout",
            &[("origin", "https://evil.example")],
            Some(&[("csrf", "x")]),
        )
        .await,
    ));
    let statuses: Vec<u16> = answers.iter().map(|(_, reply)| reply.status).collect();
    assert_eq!(
        statuses,
        [200, 303, 200, 200, 404, 200, 404, 403, 403, 403],
        "the answers cover pages, redirects, static files and errors"
    );
    for (what, reply) in &answers {
        assert_security_headers(what, reply);
        // The policy allows no inline script: every script element is a served file.
        for script in reply.body.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap_or_default();
            assert!(
                tag.contains("src=\"/static/"),
                "{what}: inline script <script{tag}>"
            );
        }
    }
}

cygnet_testkit::backend_tests!(
    sign_in_refuses_login_csrf,
    every_answer_carries_the_security_headers,
);
