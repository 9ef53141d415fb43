//! The dashboard as a workplace, over real HTTP: a fresh server's platform administrator is led
//! to create the first customer; members are invited and accept; registration tokens are
//! created (secret once, a ready appsettings.json) and revoked; a refusal comes back next to
//! the field it names with what was typed; controls a role may not use are disabled with the
//! reason. Every write goes through the gRPC handlers (the audit log shows them).

use cygnet_proto::v1 as pb;
use cygnet_testkit::web_client::{Reply, csrf, hidden, http, sign_in};
use cygnet_testkit::{ADMIN_TOKEN, Backend, TestOptions, TestServer};

fn options() -> TestOptions {
    TestOptions {
        web: true,
        ..TestOptions::default()
    }
}

fn assert_has(page: &Reply, text: &str) {
    assert!(
        page.body.contains(text),
        "{text:?} missing from:\n{}",
        page.body
    );
}

async fn a_fresh_server_leads_its_administrator_to_the_first_customer(backend: Backend) {
    let server = TestServer::start_with(backend, options()).await;
    let web = server.web_address.expect("web on");
    let admin = sign_in(web, ADMIN_TOKEN).await;

    let welcome = http(web, "GET", "/", Some(&admin), None).await;
    assert_eq!(welcome.status, 200, "{}", welcome.body);
    assert_has(&welcome, "Create customer");
    assert_has(&welcome, "Sign out");
    assert!(!welcome.body.contains("ask an administrator"));
    let token = csrf(&welcome.body);

    // A bad name comes back at its field, with what was typed.
    let refused = http(
        web,
        "POST",
        "/admin/customers",
        Some(&admin),
        Some(&[
            ("csrf", &token),
            ("name", "Not A Name!"),
            ("display_name", "Acme Corporation"),
            ("contact_email", ""),
        ]),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_has(&refused, r#"id="customer-name-error""#);
    assert_has(
        &refused,
        r#"aria-invalid="true" aria-describedby="customer-name-error""#,
    );
    assert_has(&refused, r#"value="Acme Corporation""#);

    let created = http(
        web,
        "POST",
        "/admin/customers",
        Some(&admin),
        Some(&[
            ("csrf", &token),
            ("name", "acme"),
            ("display_name", "Acme Corporation"),
            ("contact_email", "admin@acme.com"),
        ]),
    )
    .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let location = created
        .header("location")
        .expect("to the customer")
        .to_owned();
    let dashboard = http(web, "GET", &location, Some(&admin), None).await;
    assert_eq!(dashboard.status, 200);
    assert_has(&dashboard, "Acme Corporation");
    // Every card links to the page its figures come from.
    for (page, title) in [
        ("agents", "Total Agents"),
        ("monitors", "Services"),
        ("members", "Users"),
    ] {
        assert_has(
            &dashboard,
            &format!(r#"<h2><a href="{location}/{page}">{title}</a></h2>"#),
        );
    }

    // The list, and deactivation through the same handlers.
    let list = http(web, "GET", "/admin/customers", Some(&admin), None).await;
    assert_has(&list, "admin@acme.com");
    let customer_id = location.trim_start_matches("/c/");
    let deactivated = http(
        web,
        "POST",
        &format!("/admin/customers/{customer_id}/deactivate"),
        Some(&admin),
        Some(&[("csrf", &token)]),
    )
    .await;
    assert_eq!(deactivated.status, 303, "{}", deactivated.body);
    let customer = server
        .admin_customers()
        .get_customer(pb::GetCustomerRequest {
            customer_id: customer_id.parse().expect("id"),
        })
        .await
        .expect("get")
        .into_inner()
        .customer
        .expect("customer");
    assert!(!customer.is_active);
    let audit = server
        .admin_customers()
        .list_audit_log(pb::ListAuditLogRequest {
            customer_id: 0,
            page_size: 10,
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .entries;
    assert!(
        audit
            .iter()
            .any(|entry| entry.method == "cygnet.v1.CustomerService/DeactivateCustomer"),
        "{audit:?}"
    );
}

async fn members_are_invited_and_accept_in_the_dashboard(backend: Backend) {
    let server = TestServer::start_with(backend, options()).await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let boss = server.create_user("boss").await;
    server.add_member(acme.id, boss.id, pb::Role::Admin).await;
    let newcomer = server.create_user("newcomer").await;
    let viewer = server.create_user("viewer").await;
    server
        .add_member(acme.id, viewer.id, pb::Role::Viewer)
        .await;
    let boss_session = sign_in(web, &boss.token).await;
    let members = format!("/c/{}/members", acme.id);

    // A user with no customer sees where they stand, and can sign out.
    let newcomer_session = sign_in(web, &newcomer.token).await;
    let alone = http(web, "GET", "/", Some(&newcomer_session), None).await;
    assert_eq!(alone.status, 200);
    assert_has(&alone, "you are not a member of any");
    assert_has(&alone, "Sign out");

    let page = http(web, "GET", &members, Some(&boss_session), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_has(&page, "viewer");
    let token = csrf(&page.body);
    let refused = http(
        web,
        "POST",
        &format!("{members}/invite"),
        Some(&boss_session),
        Some(&[
            ("csrf", &token),
            ("username", "No Such Name!"),
            ("role", "developer"),
        ]),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_has(&refused, r#"id="invite-username-error""#);
    let invited = http(
        web,
        "POST",
        &format!("{members}/invite"),
        Some(&boss_session),
        Some(&[
            ("csrf", &token),
            ("username", "newcomer"),
            ("role", "developer"),
        ]),
    )
    .await;
    assert_eq!(invited.status, 303, "{}", invited.body);
    let page = http(web, "GET", &members, Some(&boss_session), None).await;
    assert_has(&page, "newcomer as developer");

    // The newcomer accepts on their welcome page and lands in Acme.
    let welcome = http(web, "GET", "/", Some(&newcomer_session), None).await;
    assert_has(&welcome, "invites you as developer");
    let action_start = welcome.body.find("/invitations/").expect("an accept form");
    let action: String = welcome.body[action_start..]
        .split('"')
        .next()
        .expect("action")
        .to_owned();
    let accepted = http(
        web,
        "POST",
        &action,
        Some(&newcomer_session),
        Some(&[("csrf", &hidden(&welcome.body, "csrf"))]),
    )
    .await;
    assert_eq!(accepted.status, 303, "{}", accepted.body);
    let home = http(web, "GET", "/", Some(&newcomer_session), None).await;
    assert_eq!(
        home.header("location"),
        Some(format!("/c/{}", acme.id).as_str())
    );

    // A viewer sees the controls disabled, with the reason; the handler refuses all the same.
    let viewer_session = sign_in(web, &viewer.token).await;
    let page = http(web, "GET", &members, Some(&viewer_session), None).await;
    assert_eq!(page.status, 200);
    assert_has(
        &page,
        "administrators invite members and change roles (your role: viewer)",
    );
    assert_has(&page, "disabled");
    let forced = http(
        web,
        "POST",
        &format!("{members}/invite"),
        Some(&viewer_session),
        Some(&[
            ("csrf", &csrf(&page.body)),
            ("username", "someone"),
            ("role", "admin"),
        ]),
    )
    .await;
    assert_eq!(forced.status, 403, "{}", forced.body);
}

async fn registration_tokens_are_created_once_and_revoked(backend: Backend) {
    let server = TestServer::start_with(backend, options()).await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let ops = server.create_user("ops").await;
    server.add_member(acme.id, ops.id, pb::Role::Devops).await;
    let session = sign_in(web, &ops.token).await;
    let tokens = format!("/c/{}/agents/tokens", acme.id);

    let agents = http(
        web,
        "GET",
        &format!("/c/{}/agents", acme.id),
        Some(&session),
        None,
    )
    .await;
    assert_has(&agents, "create a registration token");
    let page = http(web, "GET", &tokens, Some(&session), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let token = csrf(&page.body);
    let refused = http(
        web,
        "POST",
        &tokens,
        Some(&session),
        Some(&[
            ("csrf", &token),
            ("description", "farm"),
            ("max_uses", "lots"),
        ]),
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_has(&refused, r#"id="token-max-uses-error""#);
    let created = http(
        web,
        "POST",
        &tokens,
        Some(&session),
        Some(&[
            ("csrf", &token),
            ("description", "build farm"),
            ("max_uses", "2"),
        ]),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let marker = r#"id="token-secret">"#;
    let start = created.body.find(marker).expect("the secret") + marker.len();
    let secret = created.body[start..]
        .split('<')
        .next()
        .expect("secret")
        .to_owned();
    assert!(secret.len() > 20 && !secret.contains('&'), "{secret}");
    assert_has(&created, &format!("&#34;CustomerId&#34;: {},", acme.id));
    assert_has(
        &created,
        &format!("http://cygnet:{}", server.address.port()),
    );
    // Shown once: the list has its prefix only.
    let again = http(web, "GET", &tokens, Some(&session), None).await;
    assert!(!again.body.contains(&secret));
    assert_has(&again, "build farm");
    assert_has(&again, "0 of 2");

    // The secret registers an agent.
    pb::agent_service_client::AgentServiceClient::new(server.channel())
        .register_agent(pb::RegisterAgentRequest {
            customer_id: acme.id,
            uuid: "farm-1".into(),
            registration_token: secret.clone(),
            ..Default::default()
        })
        .await
        .expect("the shown secret registers an agent");

    let revoke_at = again.body.find("/revoke").expect("a revoke form");
    let action_start = again.body[..revoke_at].rfind('"').expect("action") + 1;
    let action = &again.body[action_start..revoke_at + "/revoke".len()];
    let revoked = http(
        web,
        "POST",
        action,
        Some(&session),
        Some(&[("csrf", &token)]),
    )
    .await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    let after = http(web, "GET", &tokens, Some(&session), None).await;
    assert_has(&after, "revoked");
}

async fn monitors_are_created_in_the_dashboard(backend: Backend) {
    let server = TestServer::start_with(backend, options()).await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let dev = server.create_user("dev").await;
    server
        .add_member(acme.id, dev.id, pb::Role::Developer)
        .await;
    let qa = server.create_user("qa").await;
    server.add_member(acme.id, qa.id, pb::Role::Qa).await;
    let session = sign_in(web, &dev.token).await;
    let monitors = format!("/c/{}/monitors", acme.id);
    let page = http(web, "GET", &monitors, Some(&session), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_has(&page, "Create monitor");
    let token = csrf(&page.body);
    let refused = http(
        web,
        "POST",
        &monitors,
        Some(&session),
        Some(&[
            ("csrf", &token),
            ("name", "Partner API"),
            ("kind", "http"),
            ("target", "not a url"),
            ("interval_seconds", "60"),
        ]),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_has(&refused, r#"id="monitor-target-error""#);
    assert_has(&refused, r#"value="Partner API""#);
    let created = http(
        web,
        "POST",
        &monitors,
        Some(&session),
        Some(&[
            ("csrf", &token),
            ("name", "Partner API"),
            ("kind", "http"),
            ("target", "http://127.0.0.1:9/status"),
            ("interval_seconds", "60"),
        ]),
    )
    .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let listed = server
        .monitors(&dev.token)
        .list_monitors(pb::ListMonitorsRequest {
            customer_id: acme.id,
            page_size: 10,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .monitors;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].target, "http://127.0.0.1:9/status");
    // QA reads monitors but does not create them: the form is disabled, with the reason.
    let qa_session = sign_in(web, &qa.token).await;
    let page = http(web, "GET", &monitors, Some(&qa_session), None).await;
    assert_has(&page, "Partner API");
    assert_has(&page, "create or delete monitors (your role: qa)");
}

async fn pipelines_are_created_in_the_dashboard(backend: Backend) {
    let server = TestServer::start_with(backend, options()).await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let dev = server.create_user("dev").await;
    server
        .add_member(acme.id, dev.id, pb::Role::Developer)
        .await;
    let session = sign_in(web, &dev.token).await;
    let new = format!("/c/{}/pipelines/new", acme.id);
    let page = http(web, "GET", &new, Some(&session), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let token = csrf(&page.body);
    let post = |steps: &'static str| {
        let token = token.clone();
        let session = session.clone();
        let new = new.clone();
        async move {
            http(
                web,
                "POST",
                &new,
                Some(&session),
                Some(&[
                    ("csrf", &token),
                    ("name", "Build API"),
                    ("steps", steps),
                    ("shell", "sh"),
                    ("artifacts", "dist/api.txt"),
                    ("parameters", "VERSION!\nENVIRONMENT=dev|staging"),
                    ("labels", "linux, docker"),
                    ("timeout_seconds", "600"),
                ]),
            )
            .await
        }
    };
    // A line the form cannot read, and a step the handler refuses: both at the steps input.
    let unreadable = post("build make").await;
    assert_eq!(unreadable.status, 400, "{}", unreadable.body);
    assert_has(&unreadable, r#"id="pipeline-steps-error""#);
    assert_has(&unreadable, "steps line 1");
    let refused = post("build: make\n: echo no name").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_has(&refused, r#"id="pipeline-steps-error""#);
    assert_has(&refused, "steps[1].name");
    assert_has(&refused, "VERSION!");
    let created = post("build: mkdir -p dist && echo {{VERSION}} > dist/api.txt\ntest: true").await;
    assert_eq!(created.status, 303, "{}", created.body);

    let pipelines = server
        .pipelines(&dev.token)
        .list_pipelines(pb::ListPipelinesRequest {
            customer_id: acme.id,
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner()
        .pipelines;
    assert_eq!(
        pipelines.len(),
        1,
        "one pipeline, the refused posts left nothing"
    );
    let pipeline = &pipelines[0];
    let names: Vec<&str> = pipeline
        .steps
        .iter()
        .map(|step| step.name.as_str())
        .collect();
    assert_eq!(names, ["build", "test"]);
    assert_eq!(pipeline.steps[0].shell(), pb::Shell::Sh);
    assert_eq!(pipeline.steps[1].artifacts, ["dist/api.txt"]);
    assert_eq!(pipeline.timeout_seconds, 600);
    assert_eq!(
        pipeline
            .agent_selector
            .as_ref()
            .map(|selector| selector.labels.clone()),
        Some(vec!["linux".to_owned(), "docker".to_owned()])
    );
    let parameters: Vec<(&str, bool, &str, Vec<String>)> = pipeline
        .parameters
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.required,
                p.default_value.as_str(),
                p.choices.clone(),
            )
        })
        .collect();
    assert_eq!(
        parameters,
        [
            ("VERSION", true, "", vec![]),
            (
                "ENVIRONMENT",
                false,
                "dev",
                vec!["dev".to_owned(), "staging".to_owned()]
            ),
        ]
    );
}

async fn variables_and_secrets_in_the_dashboard(backend: Backend) {
    let server = TestServer::start_with(backend, options()).await;
    let web = server.web_address.expect("web on");
    let acme = server.create_customer("acme").await;
    let ops = server.create_user("ops").await;
    server.add_member(acme.id, ops.id, pb::Role::Devops).await;
    let dev = server.create_user("dev").await;
    server
        .add_member(acme.id, dev.id, pb::Role::Developer)
        .await;
    let ops_session = sign_in(web, &ops.token).await;
    let variables = format!("/c/{}/variables", acme.id);
    let page = http(web, "GET", &variables, Some(&ops_session), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let token = csrf(&page.body);
    let created = http(
        web,
        "POST",
        &variables,
        Some(&ops_session),
        Some(&[("csrf", &token), ("name", "deploy"), ("description", "")]),
    )
    .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let group = server
        .variables(&ops.token)
        .list_variable_groups(pb::ListVariableGroupsRequest {
            customer_id: acme.id,
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .expect("groups")
        .into_inner()
        .groups
        .remove(0);
    let set = format!("{variables}/{}", group.id);
    let secret = "s3cr3t-value-never-shown";
    for (key, value, is_secret) in [("API_TOKEN", secret, "1"), ("REGION", "eu-west-1", "")] {
        let mut fields = vec![("csrf", token.as_str()), ("key", key), ("value", value)];
        if !is_secret.is_empty() {
            fields.push(("secret", is_secret));
        }
        fields.push(("environment_id", "0"));
        let answer = http(web, "POST", &set, Some(&ops_session), Some(&fields)).await;
        assert_eq!(answer.status, 303, "{key}: {}", answer.body);
    }
    let page = http(web, "GET", &variables, Some(&ops_session), None).await;
    assert_has(&page, "API_TOKEN");
    assert_has(&page, "(secret)");
    assert_has(&page, "eu-west-1");
    assert!(!page.body.contains(secret), "a secret is never shown");

    // A developer may set plain values but not secrets: the checkbox is disabled, and a forged
    // post is refused by the handler; the refused value is not sent back.
    let dev_session = sign_in(web, &dev.token).await;
    let page = http(web, "GET", &variables, Some(&dev_session), None).await;
    assert_has(
        &page,
        "create groups and set secrets (your role: developer)",
    );
    let forged = http(
        web,
        "POST",
        &set,
        Some(&dev_session),
        Some(&[
            ("csrf", &csrf(&page.body)),
            ("key", "STOLEN"),
            ("value", "dev-chosen-secret"),
            ("secret", "1"),
            ("environment_id", "0"),
        ]),
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(!forged.body.contains("dev-chosen-secret"));
    // A bad key is shown at the key input.
    let refused = http(
        web,
        "POST",
        &set,
        Some(&dev_session),
        Some(&[
            ("csrf", &csrf(&page.body)),
            ("key", "not a key!"),
            ("value", "x"),
            ("environment_id", "0"),
        ]),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_has(&refused, &format!(r#"id="key-{}-error""#, group.id));
}

async fn platform_administrators_onboard_users_in_the_dashboard(backend: Backend) {
    let server = TestServer::start_with(backend, options()).await;
    let web = server.web_address.expect("web on");
    let admin = sign_in(web, ADMIN_TOKEN).await;
    let page = http(web, "GET", "/admin/users", Some(&admin), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let token = csrf(&page.body);
    let refused = http(
        web,
        "POST",
        "/admin/users",
        Some(&admin),
        Some(&[
            ("csrf", &token),
            ("username", "Bad Name!"),
            ("email", "x@acme.com"),
        ]),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_has(&refused, r#"id="user-username-error""#);
    let created = http(
        web,
        "POST",
        "/admin/users",
        Some(&admin),
        Some(&[
            ("csrf", &token),
            ("username", "tess"),
            ("email", "tess@acme.com"),
            ("full_name", "Tess QA"),
        ]),
    )
    .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let users = http(web, "GET", "/admin/users", Some(&admin), None).await;
    assert_has(&users, "tess@acme.com");
    let tess_id = server
        .admin_users()
        .list_users(pb::ListUsersRequest {
            page_size: 10,
            page_token: String::new(),
            customer_id: 0,
        })
        .await
        .expect("users")
        .into_inner()
        .users
        .into_iter()
        .find(|user| user.username == "tess")
        .expect("tess")
        .id;
    let given = http(
        web,
        "POST",
        &format!("/admin/users/{tess_id}/token"),
        Some(&admin),
        Some(&[("csrf", &token)]),
    )
    .await;
    assert_eq!(given.status, 200, "{}", given.body);
    assert_eq!(given.header("cache-control"), Some("no-store"));
    let marker = r#"id="user-token-secret">"#;
    let start = given.body.find(marker).expect("the secret") + marker.len();
    let secret = given.body[start..]
        .split('<')
        .next()
        .expect("secret")
        .to_owned();
    let me = server
        .users(&secret)
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("the given token signs tess in")
        .into_inner();
    assert_eq!(me.user.expect("user").username, "tess");
    // Not for anyone else.
    let tess = sign_in(web, &secret).await;
    let hidden = http(web, "GET", "/admin/users", Some(&tess), None).await;
    assert_eq!(hidden.status, 404);
    // Posting the give-a-token form for oneself: the same 404, and no token is made.
    let tokens = || async {
        server
            .users(&secret)
            .list_api_tokens(pb::ListApiTokensRequest {
                user_id: tess_id,
                ..Default::default()
            })
            .await
            .expect("tokens")
            .into_inner()
            .tokens
            .len()
    };
    let before = tokens().await;
    let home = http(web, "GET", "/", Some(&tess), None).await;
    let forged = http(
        web,
        "POST",
        &format!("/admin/users/{tess_id}/token"),
        Some(&tess),
        Some(&[("csrf", &csrf(&home.body))]),
    )
    .await;
    assert_eq!(forged.status, 404, "{}", forged.body);
    assert_eq!(tokens().await, before, "no token was made");
}

cygnet_testkit::backend_tests!(
    platform_administrators_onboard_users_in_the_dashboard,
    variables_and_secrets_in_the_dashboard,
    pipelines_are_created_in_the_dashboard,
    monitors_are_created_in_the_dashboard,
    a_fresh_server_leads_its_administrator_to_the_first_customer,
    members_are_invited_and_accept_in_the_dashboard,
    registration_tokens_are_created_once_and_revoked,
);
