//! Releases in the dashboard, over real HTTP: devops create an environment and a release (each
//! refusal at its input, what was typed kept), a developer deploys it and lands on the
//! deployment's page, cannot approve their own deployment, an approver does, and the page says
//! who approved, when, what the approval binds and where the stage's deploy log is. A viewer
//! finds Deploy disabled with the reason.

use cygnet_proto::v1 as pb;
use cygnet_testkit::web_client::{Reply, csrf, http, sign_in};
use cygnet_testkit::{Backend, TestOptions, TestServer, step};

fn assert_has(page: &Reply, text: &str) {
    assert!(
        page.body.contains(text),
        "{text:?} missing from:\n{}",
        page.body
    );
}

async fn releases_are_created_deployed_and_approved_in_the_dashboard(backend: Backend) {
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
    let mut users = Vec::new();
    for (name, role) in [
        ("ops", pb::Role::Devops),
        ("dev", pb::Role::Developer),
        ("boss", pb::Role::Admin),
        ("viewer", pb::Role::Viewer),
    ] {
        let user = server.create_member(acme.id, name, role).await;
        users.push(sign_in(web, &user.token).await);
    }
    let [ops, dev, boss, viewer] = <[_; 4]>::try_from(users).expect("four sessions");
    let deploy = server
        .create_pipeline(
            acme.id,
            "Deploy API",
            vec![step("ship", "echo {{REGION}}")],
            vec![pb::Parameter {
                name: "REGION".into(),
                r#type: pb::ParameterType::String as i32,
                default_value: "us-east".into(),
                ..Default::default()
            }],
        )
        .await;
    let releases = format!("/c/{}/releases", acme.id);
    let environments = format!("/c/{}/environments", acme.id);

    // An environment that needs approval but names no approver is refused at that input.
    let page = http(web, "GET", &releases, Some(&ops), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    // A new customer starts with the seed's environments.
    assert_has(&page, "<th scope=\"row\">Production</th>");
    let token = csrf(&page.body);
    let refused = http(
        web,
        "POST",
        &environments,
        Some(&ops),
        Some(&[
            ("csrf", &token),
            ("name", "Canary"),
            ("requires_approval", "on"),
        ]),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_has(&refused, r#"id="environment-approvers-error""#);
    assert_has(&refused, r#"value="Canary""#);
    let created = http(
        web,
        "POST",
        &environments,
        Some(&ops),
        Some(&[
            ("csrf", &token),
            ("name", "Canary"),
            ("requires_approval", "on"),
            ("approver", "admin"),
            ("approver", "devops"),
        ]),
    )
    .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let listed = server.environments(acme.id).await;
    let canary = &listed["Canary"];
    assert!(canary.requires_approval);
    assert_eq!(
        canary.approver_roles,
        [pb::Role::Admin as i32, pb::Role::Devops as i32]
    );

    // A stage line naming no environment comes back at the stages input, everything kept.
    let refused = http(
        web,
        "POST",
        &releases,
        Some(&ops),
        Some(&[
            ("csrf", &token),
            ("name", "API"),
            ("stages", "Canary: Deploy API\nMoon: Deploy API"),
        ]),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_has(&refused, r#"id="release-stages-error""#);
    assert_has(
        &refused,
        "stages line 2: no environment is named &#34;Moon&#34;",
    );
    assert_has(&refused, "Canary: Deploy API\nMoon: Deploy API</textarea>");
    let created = http(
        web,
        "POST",
        &releases,
        Some(&ops),
        Some(&[
            ("csrf", &token),
            ("name", "API"),
            ("description", "the public API"),
            ("stages", "canary: deploy api"),
        ]),
    )
    .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let release = server
        .admin_releases()
        .list_releases(pb::ListReleasesRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .releases
        .remove(0);
    assert_eq!(release.stages.len(), 1);
    assert_eq!(release.stages[0].pipeline_id, deploy.id);

    // Deploy is disabled for a viewer, with the reason.
    let page = http(web, "GET", &releases, Some(&viewer), None).await;
    assert_has(&page, "Deploy API");
    assert_has(&page, "deploy releases (your role: viewer)");
    assert_has(
        &page,
        "create environments and releases (your role: viewer)",
    );

    // A developer deploys: an overlong version is refused at its input; then the deployment page.
    let page = http(web, "GET", &releases, Some(&dev), None).await;
    let token = csrf(&page.body);
    let deploy_path = format!("/c/{}/releases/{}/deploy", acme.id, release.id);
    let refused = http(
        web,
        "POST",
        &deploy_path,
        Some(&dev),
        Some(&[
            ("csrf", &token),
            ("version", &"9".repeat(101)),
            ("parameters", ""),
        ]),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_has(
        &refused,
        &format!(r#"id="deploy-version-{}-error""#, release.id),
    );
    // A parameter no stage's pipeline has comes back at the parameters input.
    let refused = http(
        web,
        "POST",
        &deploy_path,
        Some(&dev),
        Some(&[
            ("csrf", &token),
            ("version", "2.0.1"),
            ("parameters", "REGOIN=eu-west"),
        ]),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_has(
        &refused,
        &format!(r#"id="deploy-parameters-{}-error""#, release.id),
    );
    assert_has(&refused, "REGOIN=eu-west</textarea>");
    let deployed = http(
        web,
        "POST",
        &deploy_path,
        Some(&dev),
        Some(&[
            ("csrf", &token),
            ("version", "2.0.1"),
            ("parameters", "REGION=eu-west"),
        ]),
    )
    .await;
    assert_eq!(deployed.status, 303, "{}", deployed.body);
    let location = deployed
        .header("location")
        .expect("to the deployment")
        .to_owned();
    assert!(location.starts_with(&format!("/c/{}/deployments/", acme.id)));
    let page = http(web, "GET", &location, Some(&dev), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_has(&page, "API 2.0.1 (#1)");
    assert_has(&page, r#"class="pill status-awaiting-approval""#);
    assert_has(&page, "<code>REGION</code></dt><dd>eu-west</dd>");
    // The developer is no approver here; the page says so instead of a form.
    assert!(!page.body.contains("Approve</button>"));
    assert_has(&page, "approve deployments here (your role: developer)");

    // An approver sees what the approval binds, approves, and the page says who and when.
    let page = http(web, "GET", &location, Some(&boss), None).await;
    assert_has(&page, "An approval binds");
    assert_has(&page, "Approve</button>");
    let stage_id: i64 = page
        .body
        .split(r#"data-stage=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|id| id.parse().ok())
        .expect("a stage on the page");
    let digest = page
        .body
        .split(r#"name="snapshot_digest" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the digest the approval binds")
        .to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let approved = http(
        web,
        "POST",
        &format!("/c/{}/stages/{stage_id}/approve", acme.id),
        Some(&boss),
        Some(&[
            ("csrf", &csrf(&page.body)),
            ("comment", "checked the change log"),
            ("snapshot_digest", &digest),
        ]),
    )
    .await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    assert_eq!(approved.header("location"), Some(location.as_str()));
    let page = http(web, "GET", &location, Some(&viewer), None).await;
    assert_has(
        &page,
        r#"approved by <strong class="decider">boss</strong>"#,
    );
    assert_has(&page, "checked the change log");
    assert_has(&page, "Deploy log</dt>");
    let run = server
        .admin_releases()
        .list_release_executions(pb::ListReleaseExecutionsRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .release_executions
        .remove(0);
    let execution_id = run.stages[0].execution_id;
    assert!(execution_id > 0, "the approved stage started its deploy");
    assert_has(
        &page,
        &format!(r#"href="/c/{}/executions/{execution_id}""#, acme.id),
    );
    // The releases list shows the deployment with its stages as pills linking to the page.
    let list = http(web, "GET", &releases, Some(&viewer), None).await;
    assert_has(&list, &format!(r#"href="{location}#stage-{stage_id}""#));
}

/// A deployment of another customer is as unknown as a missing one.
async fn another_customers_deployment_is_not_found(backend: Backend) {
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
    let globex = server.create_customer("globex").await;
    let outsider = server
        .create_member(globex.id, "outsider", pb::Role::Admin)
        .await;
    let pipeline = server
        .create_pipeline(acme.id, "Deploy", vec![step("ship", "true")], vec![])
        .await;
    let environment_id = server.environments(acme.id).await["Development"].id;
    let release = server
        .admin_releases()
        .create_release(pb::CreateReleaseRequest {
            customer_id: acme.id,
            name: "Web".into(),
            stages: vec![pb::ReleaseStage {
                order: 1,
                environment_id,
                pipeline_id: pipeline.id,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("release")
        .into_inner()
        .release
        .expect("release");
    let run = server
        .admin_releases()
        .deploy_release(pb::DeployReleaseRequest {
            customer_id: acme.id,
            release_id: release.id,
            version: "1".into(),
            ..Default::default()
        })
        .await
        .expect("deploy")
        .into_inner()
        .release_execution
        .expect("run");
    let session = sign_in(web, &outsider.token).await;
    for path in [
        format!("/c/{}/deployments/{}", acme.id, run.id),
        format!("/c/{}/deployments/{}", globex.id, run.id),
    ] {
        let page = http(web, "GET", &path, Some(&session), None).await;
        assert_eq!(page.status, 404, "{path}: {}", page.body);
        assert!(!page.body.contains("Web 1"), "{}", page.body);
    }
}

cygnet_testkit::backend_tests!(
    releases_are_created_deployed_and_approved_in_the_dashboard,
    another_customers_deployment_is_not_found,
);
