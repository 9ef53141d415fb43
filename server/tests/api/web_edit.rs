//! Changing and deleting from the dashboard, over real HTTP: a pipeline's edit form shows it as
//! it is and saves through `UpdatePipeline` (a refusal at its input, what was typed kept); what
//! the form cannot show (a step's environment) is locked and left as it is, never lost; a
//! viewer finds the controls disabled with the reason and a forged post is refused; a deleted
//! pipeline leaves the lists.

use std::collections::HashMap;

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

fn borrowed<'a>(form: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    form.iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect()
}

async fn pipeline(server: &TestServer, customer_id: i64, pipeline_id: i64) -> pb::Pipeline {
    server
        .admin_pipelines()
        .get_pipeline(pb::GetPipelineRequest {
            customer_id,
            pipeline_id,
        })
        .await
        .expect("get")
        .into_inner()
        .pipeline
        .expect("pipeline")
}

async fn pipelines_are_edited_and_deleted_in_the_dashboard(backend: Backend) {
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
    let dev = server
        .create_member(acme.id, "dev", pb::Role::Developer)
        .await;
    let viewer = server
        .create_member(acme.id, "viewer", pb::Role::Viewer)
        .await;
    let build = server
        .create_pipeline(acme.id, "Build", vec![step("build", "make")], vec![])
        .await;
    let session = sign_in(web, &dev.token).await;
    let edit = format!("/c/{}/pipelines/{}/edit", acme.id, build.id);

    // The form shows the pipeline as it is.
    let page = http(web, "GET", &edit, Some(&session), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_has(&page, "<h1>Edit pipeline</h1>");
    assert_has(&page, ">build: make</textarea>");
    assert_has(&page, r#"value="Build""#);
    assert_has(&page, "Save changes");
    let token = csrf(&page.body);

    let form = |timeout: &'static str| {
        vec![
            ("csrf", token.clone()),
            ("name", "Build API".to_owned()),
            ("description", "the API".to_owned()),
            (
                "steps",
                "build: make all\npackage: tar czf dist.tgz dist".to_owned(),
            ),
            ("shell", "sh".to_owned()),
            ("artifacts", "dist.tgz".to_owned()),
            ("parameters", "MODE=fast|slow\nTARGET!".to_owned()),
            ("labels", "linux, docker".to_owned()),
            ("timeout_seconds", timeout.to_owned()),
        ]
    };
    let refused_form = form("-1");
    let refused = http(
        web,
        "POST",
        &edit,
        Some(&session),
        Some(&borrowed(&refused_form)),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_has(&refused, r#"id="pipeline-timeout-error""#);
    assert_has(&refused, "package: tar czf dist.tgz dist</textarea>");
    assert_eq!(pipeline(&server, acme.id, build.id).await.name, "Build");

    let saved_form = form("900");
    let saved = http(
        web,
        "POST",
        &edit,
        Some(&session),
        Some(&borrowed(&saved_form)),
    )
    .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(
        saved.header("location"),
        Some(format!("/c/{}/pipelines/{}", acme.id, build.id).as_str())
    );
    let changed = pipeline(&server, acme.id, build.id).await;
    assert_eq!(changed.name, "Build API");
    assert_eq!(changed.description, "the API");
    assert_eq!(changed.steps_version, 2);
    let steps: Vec<(&str, &str, i32, Vec<String>)> = changed
        .steps
        .iter()
        .map(|step| {
            (
                step.name.as_str(),
                step.command.as_str(),
                step.shell,
                step.artifacts.clone(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("build", "make all", pb::Shell::Sh as i32, vec![]),
            (
                "package",
                "tar czf dist.tgz dist",
                pb::Shell::Sh as i32,
                vec!["dist.tgz".to_owned()]
            ),
        ]
    );
    assert_eq!(changed.parameters[0].choices, ["fast", "slow"]);
    assert!(changed.parameters[1].required);
    assert_eq!(
        changed.agent_selector.expect("selector").labels,
        ["linux", "docker"]
    );
    assert_eq!(changed.timeout_seconds, 900);
    // The edit form shows it back exactly as it was saved.
    let again = http(web, "GET", &edit, Some(&session), None).await;
    assert_has(
        &again,
        ">build: make all\npackage: tar czf dist.tgz dist</textarea>",
    );
    assert_has(&again, ">MODE=fast|slow\nTARGET!</textarea>");
    assert_has(&again, r#"<option value="sh" selected>"#);

    // A step with its own environment cannot be shown on the form: the steps are locked and
    // kept as they are while the rest changes.
    let deploy = server
        .admin_pipelines()
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: acme.id,
            name: "Deploy".into(),
            steps: vec![pb::Step {
                env: HashMap::from([("REGION".to_owned(), "eu".to_owned())]),
                ..step("ship", "./ship.sh")
            }],
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
        .pipeline
        .expect("pipeline");
    let deploy_edit = format!("/c/{}/pipelines/{}/edit", acme.id, deploy.id);
    let page = http(web, "GET", &deploy_edit, Some(&session), None).await;
    assert_has(
        &page,
        "The steps stay as they are: step &#34;ship&#34; sets environment variables",
    );
    assert_has(&page, r#"name="steps" rows="6" disabled"#);
    // A disabled textarea is not posted.
    let saved = http(
        web,
        "POST",
        &deploy_edit,
        Some(&session),
        Some(&[
            ("csrf", &token),
            ("name", "Deploy API"),
            ("labels", ""),
            ("timeout_seconds", ""),
        ]),
    )
    .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let kept = pipeline(&server, acme.id, deploy.id).await;
    assert_eq!(kept.name, "Deploy API");
    assert_eq!(kept.steps.len(), 1);
    assert_eq!(kept.steps[0].env["REGION"], "eu");
    assert_eq!(kept.steps_version, 1);

    // A viewer: the controls are disabled with the reason, and a forged post is refused.
    let viewing = sign_in(web, &viewer.token).await;
    let page = http(
        web,
        "GET",
        &format!("/c/{}/pipelines/{}", acme.id, build.id),
        Some(&viewing),
        None,
    )
    .await;
    assert_has(&page, "change or delete pipelines (your role: viewer)");
    assert!(!page.body.contains("Delete pipeline"), "{}", page.body);
    let page = http(web, "GET", &edit, Some(&viewing), None).await;
    assert_has(&page, "change pipelines (your role: viewer)");
    let forged = http(
        web,
        "POST",
        &format!("/c/{}/pipelines/{}/delete", acme.id, build.id),
        Some(&viewing),
        Some(&[("csrf", &csrf(&page.body))]),
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    pipeline(&server, acme.id, build.id).await;

    // Deleted: it leaves the list and its page.
    let deleted = http(
        web,
        "POST",
        &format!("/c/{}/pipelines/{}/delete", acme.id, build.id),
        Some(&session),
        Some(&[("csrf", &token)]),
    )
    .await;
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    let list = http(
        web,
        "GET",
        &format!("/c/{}/pipelines", acme.id),
        Some(&session),
        None,
    )
    .await;
    assert!(!list.body.contains("Build API"), "{}", list.body);
    assert_has(&list, "Deploy API");
    let gone = http(
        web,
        "GET",
        &format!("/c/{}/pipelines/{}", acme.id, build.id),
        Some(&session),
        None,
    )
    .await;
    assert_eq!(gone.status, 404);
}

/// Monitors, variables and variable groups are deleted from their list pages, each by the
/// roles the API lets; a secret's Delete is not offered to a developer, whose forged one is
/// refused and changes nothing.
async fn monitors_variables_and_groups_are_deleted_in_the_dashboard(backend: Backend) {
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
    let mut sessions = Vec::new();
    for (name, role) in [
        ("dev", pb::Role::Developer),
        ("ops", pb::Role::Devops),
        ("qa", pb::Role::Qa),
    ] {
        let user = server.create_member(acme.id, name, role).await;
        sessions.push(sign_in(web, &user.token).await);
    }
    let [dev, ops, qa] = <[_; 3]>::try_from(sessions).expect("three sessions");
    let monitor = server
        .create_monitor(pb::CreateMonitorRequest {
            customer_id: acme.id,
            name: "Partner API".into(),
            kind: pb::MonitorKind::Http as i32,
            target: "http://127.0.0.1:9/status".into(),
            interval_seconds: 60,
            ..Default::default()
        })
        .await;
    let variables = server.variables(cygnet_testkit::ADMIN_TOKEN);
    let group = variables
        .clone()
        .create_variable_group(pb::CreateVariableGroupRequest {
            customer_id: acme.id,
            name: "production".into(),
            ..Default::default()
        })
        .await
        .expect("group")
        .into_inner()
        .group
        .expect("group");
    for (key, value, is_secret) in [
        ("REGION", "eu-west", false),
        ("DB_PASSWORD", "s3cret-database-password", true),
    ] {
        variables
            .clone()
            .set_variable(pb::SetVariableRequest {
                customer_id: acme.id,
                group_id: group.id,
                key: key.into(),
                value: value.into(),
                is_secret,
                ..Default::default()
            })
            .await
            .expect("set");
    }
    let shared = variables
        .clone()
        .create_variable_group(pb::CreateVariableGroupRequest {
            customer_id: acme.id,
            name: "shared".into(),
            ..Default::default()
        })
        .await
        .expect("group")
        .into_inner()
        .group
        .expect("group");
    variables
        .clone()
        .set_variable(pb::SetVariableRequest {
            customer_id: acme.id,
            group_id: shared.id,
            key: "LOG_LEVEL".into(),
            value: "debug".into(),
            ..Default::default()
        })
        .await
        .expect("set");
    let keys = |group_id: i64| {
        let server = &server;
        async move {
            let mut keys: Vec<String> = server
                .variables(cygnet_testkit::ADMIN_TOKEN)
                .get_variable_group(pb::GetVariableGroupRequest {
                    customer_id: acme.id,
                    group_id,
                })
                .await
                .expect("group")
                .into_inner()
                .group
                .expect("group")
                .variables
                .into_iter()
                .map(|variable| variable.key)
                .collect();
            keys.sort();
            keys
        }
    };

    // A group holding a secret is for admins and devops: a developer gets no Delete there (and
    // the Set form disabled with the reason), and a forged delete is refused.
    let page = http(
        web,
        "GET",
        &format!("/c/{}/variables", acme.id),
        Some(&dev),
        None,
    )
    .await;
    assert_has(
        &page,
        r#"aria-label="Delete LOG_LEVEL (every environment)""#,
    );
    assert!(!page.body.contains("Delete REGION"), "{}", page.body);
    assert!(!page.body.contains("Delete DB_PASSWORD"), "{}", page.body);
    assert!(!page.body.contains("Delete group"), "{}", page.body);
    assert_has(
        &page,
        &format!(
            r#"<p class="reason" id="set-reason-{}">Only acme display&#39;s administrators and devops change a group that holds secrets (your role: developer).</p>"#,
            group.id
        ),
    );
    let token = csrf(&page.body);
    let forged = http(
        web,
        "POST",
        &format!("/c/{}/variables/{}/unset", acme.id, group.id),
        Some(&dev),
        Some(&[("csrf", &token), ("key", "REGION"), ("environment_id", "0")]),
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(keys(group.id).await, ["DB_PASSWORD", "REGION"]);
    let deleted = http(
        web,
        "POST",
        &format!("/c/{}/variables/{}/unset", acme.id, shared.id),
        Some(&dev),
        Some(&[
            ("csrf", &token),
            ("key", "LOG_LEVEL"),
            ("environment_id", "0"),
        ]),
    )
    .await;
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    assert!(keys(shared.id).await.is_empty());

    let page = http(
        web,
        "GET",
        &format!("/c/{}/variables", acme.id),
        Some(&ops),
        None,
    )
    .await;
    assert_has(&page, "Delete group production");
    let deleted = http(
        web,
        "POST",
        &format!("/c/{}/variables/{}/delete", acme.id, group.id),
        Some(&ops),
        Some(&[("csrf", &csrf(&page.body))]),
    )
    .await;
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    let groups = server
        .variables(cygnet_testkit::ADMIN_TOKEN)
        .list_variable_groups(pb::ListVariableGroupsRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .groups;
    assert_eq!(
        groups
            .iter()
            .map(|group| group.name.as_str())
            .collect::<Vec<_>>(),
        ["shared"]
    );

    // QA may not delete monitors: no button, and a forged post is refused.
    let monitors = format!("/c/{}/monitors", acme.id);
    let page = http(web, "GET", &monitors, Some(&qa), None).await;
    assert!(!page.body.contains("Delete monitor"), "{}", page.body);
    assert_has(&page, "create or delete monitors (your role: qa)");
    let delete = format!("/c/{}/monitors/{}/delete", acme.id, monitor.id);
    let forged = http(
        web,
        "POST",
        &delete,
        Some(&qa),
        Some(&[("csrf", &csrf(&page.body))]),
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let page = http(web, "GET", &monitors, Some(&dev), None).await;
    assert_has(&page, r#"aria-label="Delete monitor Partner API""#);
    let deleted = http(
        web,
        "POST",
        &delete,
        Some(&dev),
        Some(&[("csrf", &csrf(&page.body))]),
    )
    .await;
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    let page = http(web, "GET", &monitors, Some(&dev), None).await;
    assert!(!page.body.contains("Partner API"), "{}", page.body);
}

/// A pipeline's schedules on its page: added (a refusal at its input, what was typed kept),
/// paused, resumed and deleted through PipelineService.
async fn schedules_are_managed_on_the_pipeline_page(backend: Backend) {
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
    let dev = server
        .create_member(acme.id, "dev", pb::Role::Developer)
        .await;
    let viewer = server
        .create_member(acme.id, "viewer", pb::Role::Viewer)
        .await;
    let nightly = server
        .create_pipeline(acme.id, "Nightly", vec![step("build", "make")], vec![])
        .await;
    let session = sign_in(web, &dev.token).await;
    let path = format!("/c/{}/pipelines/{}", acme.id, nightly.id);
    let page = http(web, "GET", &path, Some(&session), None).await;
    assert_has(&page, "Not scheduled");
    let token = csrf(&page.body);
    let add = format!("{path}/schedules");
    let refused = http(
        web,
        "POST",
        &add,
        Some(&session),
        Some(&[
            ("csrf", &token),
            ("cron", "0 2 * *"),
            ("time_zone", "Europe/Berlin"),
            ("parameters", ""),
        ]),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_has(&refused, r#"id="schedule-cron-error""#);
    assert_has(&refused, r#"value="Europe/Berlin""#);
    let added = http(
        web,
        "POST",
        &add,
        Some(&session),
        Some(&[
            ("csrf", &token),
            ("cron", "0 2 * * *"),
            ("time_zone", "Europe/Berlin"),
            ("parameters", ""),
        ]),
    )
    .await;
    assert_eq!(added.status, 303, "{}", added.body);
    let listed = server
        .admin_pipelines()
        .list_schedules(pb::ListSchedulesRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .schedules;
    assert_eq!(listed.len(), 1);
    let schedule = &listed[0];
    let page = http(web, "GET", &path, Some(&session), None).await;
    assert_has(&page, "<code>0 2 * * *</code> <small>Europe/Berlin</small>");
    let toggle = format!("/c/{}/schedules/{}/toggle", acme.id, schedule.id);
    let pipeline_field = nightly.id.to_string();
    let paused = http(
        web,
        "POST",
        &toggle,
        Some(&session),
        Some(&[
            ("csrf", &token),
            ("pipeline", &pipeline_field),
            ("enabled", "false"),
        ]),
    )
    .await;
    assert_eq!(paused.status, 303, "{}", paused.body);
    let page = http(web, "GET", &path, Some(&session), None).await;
    assert_has(&page, r#"<span class="status status-paused">paused</span>"#);
    assert_has(&page, ">Resume</button>");

    // A viewer: the form is disabled with the reason, and a forged delete is refused.
    let viewing = sign_in(web, &viewer.token).await;
    let page = http(web, "GET", &path, Some(&viewing), None).await;
    assert_has(&page, "change or delete pipelines (your role: viewer)");
    assert!(!page.body.contains("Delete schedule"), "{}", page.body);
    let delete = format!("/c/{}/schedules/{}/delete", acme.id, schedule.id);
    let forged = http(
        web,
        "POST",
        &delete,
        Some(&viewing),
        Some(&[("csrf", &csrf(&page.body)), ("pipeline", &pipeline_field)]),
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let deleted = http(
        web,
        "POST",
        &delete,
        Some(&session),
        Some(&[("csrf", &token), ("pipeline", &pipeline_field)]),
    )
    .await;
    assert_eq!(deleted.status, 303, "{}", deleted.body);
    let page = http(web, "GET", &path, Some(&session), None).await;
    assert_has(&page, "Not scheduled");
}

cygnet_testkit::backend_tests!(
    schedules_are_managed_on_the_pipeline_page,
    pipelines_are_edited_and_deleted_in_the_dashboard,
    monitors_variables_and_groups_are_deleted_in_the_dashboard,
);
