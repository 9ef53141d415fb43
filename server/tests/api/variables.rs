//! VariableService: groups, plain and secret variables, roles, tenant isolation, bad input, and
//! secrets that never come back out nor sit in the database as plaintext.

use cygnet_proto::v1 as pb;
use tonic::Code;

use crate::common::{ADMIN_TOKEN, Backend, TestServer, assert_invalid, assert_status};

const SECRET: &str = "s3cr3t-Pr0duction-T0ken";

async fn group(
    server: &TestServer,
    token: &str,
    customer_id: i64,
    name: &str,
) -> Result<pb::VariableGroup, tonic::Status> {
    Ok(server
        .variables(token)
        .create_variable_group(pb::CreateVariableGroupRequest {
            customer_id,
            name: name.into(),
            description: "deploy credentials".into(),
            variables: vec![],
        })
        .await?
        .into_inner()
        .group
        .expect("group"))
}

fn set(
    customer_id: i64,
    group_id: i64,
    key: &str,
    value: &str,
    is_secret: bool,
    environment_id: i64,
) -> pb::SetVariableRequest {
    pb::SetVariableRequest {
        customer_id,
        group_id,
        key: key.into(),
        value: value.into(),
        is_secret,
        environment_id,
        description: String::new(),
    }
}

async fn variables_are_scoped_write_only_and_encrypted(backend: Backend) {
    let server = TestServer::start(backend.clone()).await;
    let acme = server.create_customer("acme").await;
    let globex = server.create_customer("globex").await;
    let ops = server.create_user("ops").await;
    server.add_member(acme.id, ops.id, pb::Role::Devops).await;
    let dev = server.create_user("dev").await;
    server
        .add_member(acme.id, dev.id, pb::Role::Developer)
        .await;
    let viewer = server.create_user("viewer").await;
    server
        .add_member(acme.id, viewer.id, pb::Role::Viewer)
        .await;
    let outsider = server.create_user("outsider").await;
    server
        .add_member(globex.id, outsider.id, pb::Role::Admin)
        .await;
    let production = server.environments(acme.id).await["Production"].id;

    // Only devops and admins create groups.
    assert_status(
        group(&server, &dev.token, acme.id, "deploy").await,
        Code::PermissionDenied,
        "may not",
    );
    let deploy = group(&server, &ops.token, acme.id, "deploy")
        .await
        .expect("ops creates");
    assert_status(
        group(&server, &ops.token, acme.id, "deploy").await,
        Code::AlreadyExists,
        "already exists",
    );

    // A secret goes in; no answer ever carries it.
    let mut ops_api = server.variables(&ops.token);
    let stored = ops_api
        .set_variable(set(
            acme.id,
            deploy.id,
            "API_TOKEN",
            SECRET,
            true,
            production,
        ))
        .await
        .expect("set secret")
        .into_inner()
        .variable
        .expect("variable");
    assert!(stored.is_secret);
    assert_eq!(stored.value, "");
    ops_api
        .set_variable(set(
            acme.id,
            deploy.id,
            "API_TOKEN",
            "dev-token-value",
            true,
            0,
        ))
        .await
        .expect("unscoped secret");
    let mut dev_api = server.variables(&dev.token);
    // A plain variable beside secrets is part of what secret-bearing code runs with: devops's.
    assert_status(
        dev_api
            .set_variable(set(acme.id, deploy.id, "REGION", "eu-west-1", false, 0))
            .await,
        Code::PermissionDenied,
        "it holds secrets",
    );
    ops_api
        .set_variable(set(acme.id, deploy.id, "REGION", "eu-west-1", false, 0))
        .await
        .expect("devops sets plain variables beside secrets");
    for token in [&viewer.token, &dev.token, &ops.token, ADMIN_TOKEN] {
        let read = server
            .variables(token)
            .get_variable_group(pb::GetVariableGroupRequest {
                customer_id: acme.id,
                group_id: deploy.id,
            })
            .await
            .expect("members read")
            .into_inner()
            .group
            .expect("group");
        let text = format!("{read:?}");
        assert!(
            !text.contains(SECRET) && !text.contains("dev-token-value"),
            "{text}"
        );
        assert_eq!(read.variables.len(), 3, "{read:?}");
        let region = read
            .variables
            .iter()
            .find(|v| v.key == "REGION")
            .expect("REGION");
        assert_eq!(region.value, "eu-west-1");
        let listed = format!(
            "{:?}",
            server
                .variables(token)
                .list_variable_groups(pb::ListVariableGroupsRequest {
                    customer_id: acme.id,
                    ..Default::default()
                })
                .await
                .expect("list")
                .into_inner()
        );
        assert!(!listed.contains(SECRET), "{listed}");
    }

    // Developers may not touch secrets; viewers change nothing.
    assert_status(
        dev_api
            .set_variable(set(
                acme.id,
                deploy.id,
                "DB_PASSWORD",
                "hunter2-long",
                true,
                0,
            ))
            .await,
        Code::PermissionDenied,
        "secret",
    );
    assert_status(
        dev_api
            .set_variable(set(
                acme.id,
                deploy.id,
                "API_TOKEN",
                "now-plain",
                false,
                production,
            ))
            .await,
        Code::PermissionDenied,
        "secret",
    );
    assert_status(
        dev_api
            .delete_variable(pb::DeleteVariableRequest {
                customer_id: acme.id,
                group_id: deploy.id,
                key: "API_TOKEN".into(),
                environment_id: production,
            })
            .await,
        Code::PermissionDenied,
        "secret",
    );
    assert_status(
        server
            .variables(&viewer.token)
            .set_variable(set(acme.id, deploy.id, "REGION", "us-east-1", false, 0))
            .await,
        Code::PermissionDenied,
        "may not",
    );

    // Another customer sees nothing, and cannot write into the group.
    let mut outsider_api = server.variables(&outsider.token);
    assert_status(
        outsider_api
            .get_variable_group(pb::GetVariableGroupRequest {
                customer_id: globex.id,
                group_id: deploy.id,
            })
            .await,
        Code::NotFound,
        "not found",
    );
    assert_status(
        outsider_api
            .get_variable_group(pb::GetVariableGroupRequest {
                customer_id: acme.id,
                group_id: deploy.id,
            })
            .await,
        Code::NotFound,
        "not found",
    );
    assert_status(
        outsider_api
            .set_variable(set(globex.id, deploy.id, "X_KEY", "value", false, 0))
            .await,
        Code::NotFound,
        "not found",
    );
    let globex_groups = outsider_api
        .list_variable_groups(pb::ListVariableGroupsRequest {
            customer_id: globex.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert!(globex_groups.groups.is_empty());

    // Bad input names the field and writes nothing.
    for (request, field) in [
        (set(acme.id, deploy.id, "1BAD", "v", false, 0), "key"),
        (set(acme.id, deploy.id, "BAD-KEY", "v", false, 0), "key"),
        (set(acme.id, deploy.id, "", "v", false, 0), "key"),
        (set(acme.id, deploy.id, "SHORT", "12345", true, 0), "value"),
        (
            set(
                acme.id,
                deploy.id,
                "HUGE",
                &"x".repeat(32 * 1024 + 1),
                false,
                0,
            ),
            "value",
        ),
        (
            set(acme.id, deploy.id, "ENV", "v", false, -1),
            "environment_id",
        ),
        (set(acme.id, 0, "KEY", "v", false, 0), "group_id"),
    ] {
        assert_invalid("SetVariable", ops_api.set_variable(request).await, field);
    }
    // An environment of another customer is refused like a bad field.
    let globex_production = server.environments(globex.id).await["Production"].id;
    assert_invalid(
        "SetVariable",
        ops_api
            .set_variable(set(
                acme.id,
                deploy.id,
                "OTHER",
                "v",
                false,
                globex_production,
            ))
            .await,
        "environment_id",
    );
    assert_invalid(
        "CreateVariableGroup",
        group(&server, &ops.token, acme.id, "  ").await,
        "name",
    );
    let after = ops_api
        .get_variable_group(pb::GetVariableGroupRequest {
            customer_id: acme.id,
            group_id: deploy.id,
        })
        .await
        .expect("get")
        .into_inner()
        .group
        .expect("group");
    assert_eq!(after.variables.len(), 3, "nothing half-written: {after:?}");

    // Every change is in the audit log.
    let audit = server
        .admin_customers()
        .list_audit_log(pb::ListAuditLogRequest {
            customer_id: acme.id,
            page_size: 200,
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .entries;
    let set_calls = audit
        .iter()
        .filter(|entry| entry.method == "cygnet.v1.VariableService/SetVariable")
        .count();
    assert!(set_calls >= 3 + 3 + 8, "{audit:?}");
    assert!(audit.iter().any(|entry| entry.method
        == "cygnet.v1.VariableService/CreateVariableGroup"
        && entry.actor_username == "ops"
        && entry.code == "OK"));
    assert!(!format!("{audit:?}").contains(SECRET));

    // On SQLite, the database files hold no plaintext secret.
    if matches!(backend, Backend::Sqlite) {
        for name in ["cygnet.db", "cygnet.db-wal"] {
            let path = server.data_dir.join(name);
            if let Ok(bytes) = std::fs::read(&path) {
                let found = bytes
                    .windows(SECRET.len())
                    .any(|window| window == SECRET.as_bytes());
                assert!(!found, "{} holds the secret in plaintext", path.display());
            }
        }
        assert!(server.data_dir.join("secret.key").is_file());
    }

    // Deleting the group removes its variables with it.
    ops_api
        .delete_variable(pb::DeleteVariableRequest {
            customer_id: acme.id,
            group_id: deploy.id,
            key: "REGION".into(),
            environment_id: 0,
        })
        .await
        .expect("delete variable");
    ops_api
        .delete_variable_group(pb::DeleteVariableGroupRequest {
            customer_id: acme.id,
            group_id: deploy.id,
        })
        .await
        .expect("delete group");
    assert_status(
        ops_api
            .get_variable_group(pb::GetVariableGroupRequest {
                customer_id: acme.id,
                group_id: deploy.id,
            })
            .await,
        Code::NotFound,
        "not found",
    );
}

/// Rotating the key re-encrypts every secret at start-up: afterwards the new key alone opens
/// them, and the old key alone no longer does.
async fn rotating_the_key_reencrypts_every_secret(backend: Backend) {
    use cygnet_server::secrets::KeyBytes;
    let (old, new) = (KeyBytes([1; 32]), KeyBytes([2; 32]));
    let mut server = TestServer::start(backend).await;
    server.restart_with_secret_keys(Some(old), None).await;
    let acme = server.create_customer("acme").await;
    let deploy = group(&server, ADMIN_TOKEN, acme.id, "deploy")
        .await
        .expect("group");
    server
        .variables(ADMIN_TOKEN)
        .set_variable(set(acme.id, deploy.id, "API_TOKEN", SECRET, true, 0))
        .await
        .expect("secret under the old key");

    // The new key alone cannot open what the old one sealed: start-up says so and stops.
    let refused = server
        .stop_and_try_secret_keys(Some(new), None)
        .await
        .expect_err("new key without the old one");
    assert!(refused.contains("cannot be re-encrypted"), "{refused}");

    // With the old key as previous, start-up re-encrypts; then the new key suffices...
    server.restart_with_secret_keys(Some(new), Some(old)).await;
    server
        .stop_and_try_secret_keys(Some(new), None)
        .await
        .expect("everything re-encrypted under the new key");
    // ...and the old key alone no longer opens anything.
    let stale = server
        .stop_and_try_secret_keys(Some(old), None)
        .await
        .expect_err("old key after rotation");
    assert!(stale.contains("cannot be re-encrypted"), "{stale}");
    server.restart_with_secret_keys(Some(new), None).await;
    let read = server
        .variables(ADMIN_TOKEN)
        .get_variable_group(pb::GetVariableGroupRequest {
            customer_id: acme.id,
            group_id: deploy.id,
        })
        .await
        .expect("get")
        .into_inner()
        .group
        .expect("group");
    assert_eq!(read.variables.len(), 1);
    assert_eq!(read.variables[0].value, "");
}

fn input(key: &str, value: &str, is_secret: bool, environment_id: i64) -> pb::VariableInput {
    pb::VariableInput {
        key: key.into(),
        value: value.into(),
        is_secret,
        environment_id,
        description: String::new(),
    }
}

/// A group created with its variables: all of them or nothing, each (key, environment) once.
async fn a_group_comes_with_its_variables_or_not_at_all(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let globex = server.create_customer("globex").await;
    let production = server.environments(acme.id).await["Production"].id;
    let globex_production = server.environments(globex.id).await["Production"].id;
    let mut api = server.variables(ADMIN_TOKEN);
    let create = |variables: Vec<pb::VariableInput>| pb::CreateVariableGroupRequest {
        customer_id: acme.id,
        name: "deploy".into(),
        description: String::new(),
        variables,
    };
    for (variables, field) in [
        (
            vec![
                input("API_TOKEN", SECRET, true, 0),
                input("API_TOKEN", "another-secret", true, 0),
            ],
            "variables[1].key",
        ),
        (vec![input("9LIVES", "v", false, 0)], "variables[0].key"),
        (vec![input("PIN", "1234", true, 0)], "variables[0].value"),
        (
            vec![
                input("REGION", "eu", false, 0),
                input("API_TOKEN", SECRET, true, globex_production),
            ],
            "variables[1].environment_id",
        ),
    ] {
        assert_invalid(
            "CreateVariableGroup",
            api.create_variable_group(create(variables)).await,
            field,
        );
    }
    let none = api
        .list_variable_groups(pb::ListVariableGroupsRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert!(none.groups.is_empty(), "nothing half-written: {none:?}");

    // The same key for every environment and for Production is two variables, not a repeat.
    let made = api
        .create_variable_group(create(vec![
            input("API_TOKEN", SECRET, true, 0),
            input("API_TOKEN", "production-secret", true, production),
            input("REGION", "eu-west-1", false, 0),
        ]))
        .await
        .expect("create with variables")
        .into_inner()
        .group
        .expect("group");
    assert_eq!(made.variables.len(), 3);
    assert!(!format!("{made:?}").contains(SECRET));
    assert!(
        made.variables
            .iter()
            .all(|v| !v.is_secret || v.value.is_empty())
    );
}

/// A job whose secret does not open with the server's keys fails with the reason, once,
/// instead of going round the queue.
async fn a_secret_that_does_not_open_fails_the_job(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;
    let registered = server
        .register_agent(acme.id, "acme-001", &token)
        .await
        .expect("register");
    let _agent = server
        .connect_agent("acme-001", &registered.credential)
        .await
        .expect("connect");
    let deploy = group(&server, ADMIN_TOKEN, acme.id, "deploy")
        .await
        .expect("group");
    server
        .variables(ADMIN_TOKEN)
        .set_variable(set(acme.id, deploy.id, "API_TOKEN", SECRET, true, 0))
        .await
        .expect("secret");
    let pipeline = server
        .admin_pipelines()
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: acme.id,
            name: "uses a secret".into(),
            steps: vec![crate::common::step("use", "true")],
            variable_group_ids: vec![deploy.id],
            ..Default::default()
        })
        .await
        .expect("pipeline")
        .into_inner()
        .pipeline
        .expect("pipeline");
    // As if the value had been sealed under a key this server never had.
    let database = sea_orm::Database::connect(server.database_url.as_str())
        .await
        .expect("database");
    database
        .execute_unprepared("UPDATE variables SET cipher = 'v1:00000000:AAAAAAAAAAAAAAAA:AAAA'")
        .await
        .expect("tamper");
    database.close().await.expect("close");

    let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    let updates = server
        .watch_to_end(acme.id, execution.id, std::time::Duration::from_secs(30))
        .await;
    let finished = cygnet_testkit::final_execution(&updates);
    assert_eq!(
        finished.status(),
        pb::ExecutionStatus::Failed,
        "{finished:?}"
    );
    assert!(
        finished.failure_reason.contains("API_TOKEN")
            && finished.failure_reason.contains("cannot be opened"),
        "{}",
        finished.failure_reason
    );
}

/// The attack: a developer who may run a pipeline but not read or set its secrets passes a
/// run parameter named like one (in any case, as definitions match) to replace its value.
async fn a_run_parameter_never_stands_in_for_a_secret(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let dev = server.create_user("dev").await;
    server
        .add_member(acme.id, dev.id, pb::Role::Developer)
        .await;
    let group = server
        .create_group_with_secret(
            acme.id,
            "production",
            "DB_PASSWORD",
            "s3cret-database-password",
        )
        .await;
    let pipeline = server
        .admin_pipelines()
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: acme.id,
            name: "Deploy".into(),
            steps: vec![cygnet_testkit::step("ship", "echo {{DB_PASSWORD}}")],
            // Named in another case than the secret: matched whatever the case.
            parameters: vec![pb::Parameter {
                name: "db_password".into(),
                r#type: pb::ParameterType::String as i32,
                ..Default::default()
            }],
            variable_group_ids: vec![group.id],
            ..Default::default()
        })
        .await
        .expect("pipeline")
        .into_inner()
        .pipeline
        .expect("pipeline");
    for name in ["DB_PASSWORD", "db_password", "Db_Password"] {
        assert_invalid(
            "RunPipeline",
            server
                .pipelines(&dev.token)
                .run_pipeline(pb::RunPipelineRequest {
                    customer_id: acme.id,
                    pipeline_id: pipeline.id,
                    parameters: [(name.to_owned(), "attacker-chosen".to_owned())].into(),
                    ..Default::default()
                })
                .await,
            &format!("parameters[{name}]"),
        );
    }
    // Nor a deployer's parameter for a stage deploying with that pipeline (before, DeployRelease
    // compared names exactly and took `Db_Password`).
    let development = server.environments(acme.id).await["Development"].id;
    let release = server
        .releases(ADMIN_TOKEN)
        .create_release(pb::CreateReleaseRequest {
            customer_id: acme.id,
            name: "API".into(),
            stages: vec![pb::ReleaseStage {
                order: 1,
                environment_id: development,
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
    for name in ["DB_PASSWORD", "Db_Password"] {
        assert_invalid(
            "DeployRelease",
            server
                .releases(&dev.token)
                .deploy_release(pb::DeployReleaseRequest {
                    customer_id: acme.id,
                    release_id: release.id,
                    version: "1.0".into(),
                    parameters: [(name.to_owned(), "attacker-chosen".to_owned())].into(),
                    ..Default::default()
                })
                .await,
            &format!("parameters[{name}]"),
        );
    }
}

cygnet_testkit::backend_tests!(
    a_run_parameter_never_stands_in_for_a_secret,
    variables_are_scoped_write_only_and_encrypted,
    rotating_the_key_reencrypts_every_secret,
    a_group_comes_with_its_variables_or_not_at_all,
    a_secret_that_does_not_open_fails_the_job
);
