//! ReleaseService at the API: the seed environments, who may change what, precise statuses for
//! bad input and impossible transitions, and nothing half-written. Deploys run on protocol-level
//! agents that finish every job at once; the real agent's deploys are in the agent's e2e tests.

use std::collections::HashMap;
use std::time::Duration;

use cygnet_proto::v1 as pb;
use tonic::Code;

use crate::common::{
    Backend, TestServer, TestUser, assert_invalid, assert_status, eventually, step,
};

fn stage(order: i32, environment_id: i64, pipeline_id: i64) -> pb::ReleaseStage {
    pb::ReleaseStage {
        order,
        environment_id,
        pipeline_id,
        ..Default::default()
    }
}

/// One customer with a build and a deploy pipeline, its environments and a few members.
struct Shop {
    customer: pb::Customer,
    build: pb::Pipeline,
    deploy: pb::Pipeline,
    environments: HashMap<String, pb::Environment>,
    viewer: TestUser,
    developer: TestUser,
    qa: TestUser,
    ops: TestUser,
}

async fn shop(server: &TestServer, name: &str) -> Shop {
    let customer = server.create_customer(name).await;
    let build = server
        .create_pipeline(customer.id, "Build", vec![step("build", "make")], vec![])
        .await;
    let deploy = server
        .create_pipeline(
            customer.id,
            "Deploy",
            vec![step("deploy", "deploy {{TARGET}}")],
            vec![pb::Parameter {
                name: "TARGET".into(),
                default_value: "blue".into(),
                ..Default::default()
            }],
        )
        .await;
    let environments = server.environments(customer.id).await;
    let member = |username: String, role| async move {
        let user = server.create_user(&username).await;
        server.add_member(customer.id, user.id, role).await;
        user
    };
    let viewer = member(format!("{name}-viewer"), pb::Role::Viewer).await;
    let developer = member(format!("{name}-dev"), pb::Role::Developer).await;
    let qa = member(format!("{name}-qa"), pb::Role::Qa).await;
    let ops = member(format!("{name}-ops"), pb::Role::Devops).await;
    Shop {
        customer,
        build,
        deploy,
        environments,
        viewer,
        developer,
        qa,
        ops,
    }
}

impl Shop {
    fn four_stages(&self) -> Vec<pb::ReleaseStage> {
        ["Development", "QA", "Staging", "Production"]
            .iter()
            .enumerate()
            .map(|(index, name)| {
                stage(
                    index as i32 + 1,
                    self.environments[*name].id,
                    self.deploy.id,
                )
            })
            .collect()
    }

    fn release_request(&self, name: &str) -> pb::CreateReleaseRequest {
        pb::CreateReleaseRequest {
            customer_id: self.customer.id,
            name: name.into(),
            pipeline_ids: vec![self.build.id],
            stages: self.four_stages(),
            ..Default::default()
        }
    }
}

async fn releases(server: &TestServer, customer_id: i64) -> Vec<pb::Release> {
    server
        .admin_releases()
        .list_releases(pb::ListReleasesRequest {
            customer_id,
            include_archived: true,
            ..Default::default()
        })
        .await
        .expect("list releases")
        .into_inner()
        .releases
}

/// Connects a protocol agent for the customer that succeeds at every job it is given.
async fn instant_agent(
    server: &TestServer,
    customer_id: i64,
    uuid: &str,
) -> tokio::task::JoinHandle<()> {
    let token = server.create_registration_token(customer_id).await;
    let registered = server
        .register_agent(customer_id, uuid, &token)
        .await
        .expect("register");
    let agent = server
        .connect_agent(uuid, &registered.credential)
        .await
        .expect("connect");
    agent.work_instantly().1
}

fn statuses(execution: &pb::ReleaseExecution) -> Vec<pb::StageStatus> {
    execution
        .stages
        .iter()
        .map(|stage| stage.status())
        .collect()
}

async fn wait_for_stages(
    server: &TestServer,
    customer_id: i64,
    id: i64,
    wanted: &[pb::StageStatus],
) -> pb::ReleaseExecution {
    eventually(
        &format!("stages {wanted:?}"),
        Duration::from_secs(20),
        || async { statuses(&server.release_execution(customer_id, id).await) == wanted },
    )
    .await;
    server.release_execution(customer_id, id).await
}

async fn new_customers_start_with_the_seed_environments(backend: Backend) {
    let server = TestServer::start(backend).await;
    let shop = shop(&server, "acme").await;
    let mut seeded: Vec<_> = shop.environments.values().cloned().collect();
    seeded.sort_by_key(|environment| environment.order);
    let summary: Vec<_> = seeded
        .iter()
        .map(|environment| {
            (
                environment.name.as_str(),
                environment.order,
                environment.requires_approval,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("Development", 1, false),
            ("QA", 2, false),
            ("Staging", 3, true),
            ("Production", 4, true),
        ]
    );
    assert_eq!(
        shop.environments["Production"].approver_roles,
        [pb::Role::Admin as i32, pb::Role::Devops as i32]
    );

    // Every member reads them; only admins and devops change them.
    let listed = server
        .releases(&shop.viewer.token)
        .list_environments(pb::ListEnvironmentsRequest {
            customer_id: shop.customer.id,
            ..Default::default()
        })
        .await
        .expect("viewer lists")
        .into_inner()
        .environments;
    assert_eq!(listed.len(), 4);
    let hotfix = pb::CreateEnvironmentRequest {
        customer_id: shop.customer.id,
        name: "Hotfix".into(),
        order: 5,
        requires_approval: true,
        approver_roles: vec![pb::Role::Qa as i32],
        ..Default::default()
    };
    for user in [&shop.viewer, &shop.developer, &shop.qa] {
        assert_status(
            server
                .releases(&user.token)
                .create_environment(hotfix.clone())
                .await,
            Code::PermissionDenied,
            "",
        );
    }
    let created = server
        .releases(&shop.ops.token)
        .create_environment(hotfix.clone())
        .await
        .expect("devops creates")
        .into_inner()
        .environment
        .expect("environment");
    assert_eq!(created.approver_roles, [pb::Role::Qa as i32]);
    assert_status(
        server
            .releases(&shop.ops.token)
            .create_environment(hotfix)
            .await,
        Code::AlreadyExists,
        "Hotfix",
    );
    let updated = server
        .releases(&shop.ops.token)
        .update_environment(pb::UpdateEnvironmentRequest {
            customer_id: shop.customer.id,
            environment_id: created.id,
            description: Some("out of band fixes".into()),
            approver_roles: vec![pb::Role::Admin as i32, pb::Role::Qa as i32],
            set_approver_roles: true,
            ..Default::default()
        })
        .await
        .expect("update")
        .into_inner()
        .environment
        .expect("environment");
    assert_eq!(updated.description, "out of band fixes");
    assert_eq!(
        updated.approver_roles,
        [pb::Role::Admin as i32, pb::Role::Qa as i32]
    );
    assert_eq!(updated.name, "Hotfix");

    // Another customer's environments are its own, and this one's are invisible to it.
    let other = shop_customer_only(&server, "techstart").await;
    assert_status(
        server
            .admin_releases()
            .update_environment(pb::UpdateEnvironmentRequest {
                customer_id: other,
                environment_id: created.id,
                description: Some("mine now".into()),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &format!("environment {} not found", created.id),
    );
    assert_eq!(server.environments(other).await.len(), 4);
}

async fn shop_customer_only(server: &TestServer, name: &str) -> i64 {
    server.create_customer(name).await.id
}

async fn release_service_validates_every_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let shop = shop(&server, "acme").await;
    let customer_id = shop.customer.id;
    let mut admin = server.admin_releases();
    let staging = shop.environments["Staging"].id;

    // Environments.
    let environment = |name: &str| pb::CreateEnvironmentRequest {
        customer_id,
        name: name.into(),
        order: 9,
        ..Default::default()
    };
    assert_invalid(
        "CreateEnvironment",
        admin.create_environment(environment(" ")).await,
        "name",
    );
    assert_invalid(
        "CreateEnvironment",
        admin
            .create_environment(environment(&"x".repeat(101)))
            .await,
        "name",
    );
    assert_invalid(
        "CreateEnvironment",
        admin
            .create_environment(pb::CreateEnvironmentRequest {
                requires_approval: true,
                ..environment("Gate")
            })
            .await,
        "approver_roles",
    );
    assert_invalid(
        "CreateEnvironment",
        admin
            .create_environment(pb::CreateEnvironmentRequest {
                approver_roles: vec![pb::Role::Qa as i32, 77],
                ..environment("Gate")
            })
            .await,
        "approver_roles[1]",
    );
    assert_invalid(
        "CreateEnvironment",
        admin
            .create_environment(pb::CreateEnvironmentRequest {
                customer_id: 0,
                ..environment("Gate")
            })
            .await,
        "customer_id",
    );
    assert_invalid(
        "UpdateEnvironment",
        admin
            .update_environment(pb::UpdateEnvironmentRequest {
                customer_id,
                environment_id: -4,
                ..Default::default()
            })
            .await,
        "environment_id",
    );
    assert_invalid(
        "UpdateEnvironment",
        admin
            .update_environment(pb::UpdateEnvironmentRequest {
                customer_id,
                environment_id: staging,
                requires_approval: Some(true),
                set_approver_roles: true,
                ..Default::default()
            })
            .await,
        "approver_roles",
    );
    assert_invalid(
        "ListEnvironments",
        admin
            .list_environments(pb::ListEnvironmentsRequest {
                customer_id,
                page_size: 5000,
                ..Default::default()
            })
            .await,
        "page_size",
    );
    assert!(
        shop.environments["Staging"].requires_approval
            && server.environments(customer_id).await["Staging"].approver_roles
                == shop.environments["Staging"].approver_roles,
        "a refused update changed nothing"
    );

    // Release definitions.
    let request = || shop.release_request("API");
    let cases: Vec<(&str, pb::CreateReleaseRequest)> = vec![
        (
            "name",
            pb::CreateReleaseRequest {
                name: String::new(),
                ..request()
            },
        ),
        (
            "description",
            pb::CreateReleaseRequest {
                description: "d".repeat(2001),
                ..request()
            },
        ),
        (
            "stages",
            pb::CreateReleaseRequest {
                stages: vec![],
                ..request()
            },
        ),
        (
            "stages",
            pb::CreateReleaseRequest {
                stages: (1..=21)
                    .map(|order| stage(order, staging, shop.deploy.id))
                    .collect(),
                ..request()
            },
        ),
        (
            "stages[1].order",
            pb::CreateReleaseRequest {
                stages: vec![
                    stage(1, staging, shop.deploy.id),
                    stage(1, shop.environments["QA"].id, shop.deploy.id),
                ],
                ..request()
            },
        ),
        (
            "stages[0].order",
            pb::CreateReleaseRequest {
                stages: vec![stage(0, staging, shop.deploy.id)],
                ..request()
            },
        ),
        (
            "stages[0].environment_id",
            pb::CreateReleaseRequest {
                stages: vec![stage(1, 0, shop.deploy.id)],
                ..request()
            },
        ),
        (
            "stages[0].pipeline_id",
            pb::CreateReleaseRequest {
                stages: vec![stage(1, staging, -1)],
                ..request()
            },
        ),
        (
            "stages[0].agent_selector.labels",
            pb::CreateReleaseRequest {
                stages: vec![pb::ReleaseStage {
                    agent_selector: Some(pb::AgentSelector {
                        agent_id: 0,
                        labels: vec!["no spaces allowed".into()],
                    }),
                    ..stage(1, staging, shop.deploy.id)
                }],
                ..request()
            },
        ),
        (
            "stages[0].parameters[]",
            pb::CreateReleaseRequest {
                stages: vec![pb::ReleaseStage {
                    parameters: [(String::new(), "x".to_owned())].into(),
                    ..stage(1, staging, shop.deploy.id)
                }],
                ..request()
            },
        ),
        (
            "stages[0].parameters[COLOR]",
            pb::CreateReleaseRequest {
                stages: vec![pb::ReleaseStage {
                    parameters: [("COLOR".to_owned(), "red".to_owned())].into(),
                    ..stage(1, staging, shop.deploy.id)
                }],
                ..request()
            },
        ),
        (
            "pipeline_ids[1]",
            pb::CreateReleaseRequest {
                pipeline_ids: vec![shop.build.id, 0],
                ..request()
            },
        ),
        (
            "pipeline_ids[1]",
            pb::CreateReleaseRequest {
                pipeline_ids: vec![shop.build.id, shop.build.id],
                ..request()
            },
        ),
    ];
    for (field, case) in cases {
        assert_invalid("CreateRelease", admin.create_release(case).await, field);
    }
    assert!(
        releases(&server, customer_id).await.is_empty(),
        "no refused release was written"
    );

    let release = admin
        .create_release(request())
        .await
        .expect("create")
        .into_inner()
        .release
        .expect("release");
    assert_eq!(
        release
            .stages
            .iter()
            .map(|stage| stage.order)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_status(
        admin.create_release(request()).await,
        Code::AlreadyExists,
        "API",
    );
    let update = || pb::UpdateReleaseRequest {
        customer_id,
        release_id: release.id,
        ..Default::default()
    };
    assert_invalid(
        "UpdateRelease",
        admin
            .update_release(pb::UpdateReleaseRequest {
                set_stages: true,
                stages: vec![
                    stage(2, staging, shop.deploy.id),
                    stage(2, staging, shop.deploy.id),
                ],
                ..update()
            })
            .await,
        "stages[1].order",
    );
    assert_invalid(
        "UpdateRelease",
        admin
            .update_release(pb::UpdateReleaseRequest {
                status: pb::ReleaseStatus::Archived as i32,
                ..update()
            })
            .await,
        "status",
    );
    assert_invalid(
        "UpdateRelease",
        admin
            .update_release(pb::UpdateReleaseRequest {
                status: 42,
                ..update()
            })
            .await,
        "status",
    );
    assert_invalid(
        "UpdateRelease",
        admin
            .update_release(pb::UpdateReleaseRequest {
                name: Some(String::new()),
                ..update()
            })
            .await,
        "name",
    );
    assert_invalid(
        "GetRelease",
        admin
            .get_release(pb::GetReleaseRequest {
                customer_id,
                release_id: 0,
            })
            .await,
        "release_id",
    );
    let unchanged = releases(&server, customer_id).await;
    assert_eq!(
        unchanged,
        std::slice::from_ref(&release),
        "refused updates changed nothing"
    );

    // Deployments and decisions.
    let deploy = || pb::DeployReleaseRequest {
        customer_id,
        release_id: release.id,
        ..Default::default()
    };
    assert_invalid(
        "DeployRelease",
        admin
            .deploy_release(pb::DeployReleaseRequest {
                version: "v".repeat(101),
                ..deploy()
            })
            .await,
        "version",
    );
    assert_invalid(
        "DeployRelease",
        admin
            .deploy_release(pb::DeployReleaseRequest {
                builds: vec![
                    pb::ShippedBuild {
                        pipeline_id: shop.build.id,
                        execution_id: 1,
                    },
                    pb::ShippedBuild {
                        pipeline_id: shop.build.id,
                        execution_id: 2,
                    },
                ],
                ..deploy()
            })
            .await,
        "builds[1].pipeline_id",
    );
    assert_invalid(
        "DeployRelease",
        admin
            .deploy_release(pb::DeployReleaseRequest {
                builds: vec![pb::ShippedBuild {
                    pipeline_id: shop.build.id,
                    execution_id: 0,
                }],
                ..deploy()
            })
            .await,
        "builds[0].execution_id",
    );
    for (rpc, result) in [
        (
            "ApproveStage",
            admin
                .approve_stage(pb::ApproveStageRequest {
                    customer_id,
                    stage_execution_id: 0,
                    comment: String::new(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        (
            "RejectStage",
            admin
                .reject_stage(pb::RejectStageRequest {
                    customer_id,
                    stage_execution_id: -2,
                    comment: String::new(),
                })
                .await
                .map(|_| ()),
        ),
    ] {
        assert_invalid(rpc, result, "stage_execution_id");
    }
    assert_invalid(
        "ApproveStage",
        admin
            .approve_stage(pb::ApproveStageRequest {
                customer_id,
                stage_execution_id: 1,
                comment: "c".repeat(2001),
                ..Default::default()
            })
            .await,
        "comment",
    );
    assert_invalid(
        "CancelReleaseExecution",
        admin
            .cancel_release_execution(pb::CancelReleaseExecutionRequest {
                customer_id,
                release_execution_id: 0,
            })
            .await,
        "release_execution_id",
    );
    assert_invalid(
        "ListReleaseExecutions",
        admin
            .list_release_executions(pb::ListReleaseExecutionsRequest {
                customer_id,
                status: 99,
                ..Default::default()
            })
            .await,
        "status",
    );
    assert_invalid(
        "ListReleaseExecutions",
        admin
            .list_release_executions(pb::ListReleaseExecutionsRequest {
                customer_id,
                page_token: "not a token".into(),
                ..Default::default()
            })
            .await,
        "page_token",
    );
    let executions = admin
        .list_release_executions(pb::ListReleaseExecutionsRequest {
            customer_id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .release_executions;
    assert!(executions.is_empty(), "no refused deployment was written");
}

async fn references_to_unknown_or_foreign_records_are_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = shop(&server, "acme").await;
    let techstart = shop(&server, "techstart").await;
    let token = server
        .create_registration_token(techstart.customer.id)
        .await;
    let foreign_agent = server
        .register_agent(techstart.customer.id, "tech-001", &token)
        .await
        .expect("agent");
    let mut admin = server.admin_releases();
    let qa = acme.environments["QA"].id;
    let request = || acme.release_request("API");
    let cases: Vec<(String, pb::CreateReleaseRequest)> = vec![
        (
            format!("pipeline_ids[0]: pipeline {} not found", techstart.build.id),
            pb::CreateReleaseRequest {
                pipeline_ids: vec![techstart.build.id],
                ..request()
            },
        ),
        (
            "pipeline_ids[0]: pipeline 424242 not found".into(),
            pb::CreateReleaseRequest {
                pipeline_ids: vec![424_242],
                ..request()
            },
        ),
        (
            format!(
                "stages[0].pipeline_id: pipeline {} not found",
                techstart.deploy.id
            ),
            pb::CreateReleaseRequest {
                stages: vec![stage(1, qa, techstart.deploy.id)],
                ..request()
            },
        ),
        (
            "stages[1].pipeline_id: pipeline 424242 not found".into(),
            pb::CreateReleaseRequest {
                stages: vec![stage(1, qa, acme.deploy.id), stage(2, qa, 424_242)],
                ..request()
            },
        ),
        (
            format!(
                "stages[0].environment_id: environment {} not found",
                techstart.environments["QA"].id
            ),
            pb::CreateReleaseRequest {
                stages: vec![stage(1, techstart.environments["QA"].id, acme.deploy.id)],
                ..request()
            },
        ),
        (
            "stages[0].environment_id: environment 424242 not found".into(),
            pb::CreateReleaseRequest {
                stages: vec![stage(1, 424_242, acme.deploy.id)],
                ..request()
            },
        ),
        (
            format!(
                "stages[0].agent_selector.agent_id: agent {} not found",
                foreign_agent.agent_id
            ),
            pb::CreateReleaseRequest {
                stages: vec![pb::ReleaseStage {
                    agent_selector: Some(pb::AgentSelector {
                        agent_id: foreign_agent.agent_id,
                        labels: vec![],
                    }),
                    ..stage(1, qa, acme.deploy.id)
                }],
                ..request()
            },
        ),
    ];
    for (message, case) in cases {
        assert_status(admin.create_release(case).await, Code::NotFound, &message);
    }
    assert!(releases(&server, acme.customer.id).await.is_empty());

    // The same rules when a definition changes, and nothing of a refused change sticks.
    let release = admin
        .create_release(request())
        .await
        .expect("create")
        .into_inner()
        .release
        .expect("release");
    assert_status(
        admin
            .update_release(pb::UpdateReleaseRequest {
                customer_id: acme.customer.id,
                release_id: release.id,
                name: Some("renamed".into()),
                set_stages: true,
                stages: vec![stage(1, qa, techstart.deploy.id)],
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "stages[0].pipeline_id",
    );
    assert_eq!(
        releases(&server, acme.customer.id).await,
        std::slice::from_ref(&release)
    );

    // A build of another customer cannot be shipped.
    let _worker = instant_agent(&server, techstart.customer.id, "tech-002").await;
    let theirs = server
        .run_pipeline(techstart.customer.id, techstart.build.id, &[])
        .await;
    assert_status(
        admin
            .deploy_release(pb::DeployReleaseRequest {
                customer_id: acme.customer.id,
                release_id: release.id,
                builds: vec![pb::ShippedBuild {
                    pipeline_id: acme.build.id,
                    execution_id: theirs.id,
                }],
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &format!(
            "builds[0].execution_id: execution {} of pipeline",
            theirs.id
        ),
    );
    // And the release is nobody else's business.
    assert_status(
        server
            .releases(&techstart.ops.token)
            .get_release(pb::GetReleaseRequest {
                customer_id: techstart.customer.id,
                release_id: release.id,
            })
            .await,
        Code::NotFound,
        &format!("release {} not found", release.id),
    );
    assert_status(
        server
            .releases(&techstart.ops.token)
            .deploy_release(pb::DeployReleaseRequest {
                customer_id: acme.customer.id,
                release_id: release.id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "",
    );
}

async fn deployments_refuse_impossible_transitions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let shop = shop(&server, "acme").await;
    let customer_id = shop.customer.id;
    let mut admin = server.admin_releases();
    let release = admin
        .create_release(shop.release_request("API"))
        .await
        .expect("create")
        .into_inner()
        .release
        .expect("release");
    let deploy = || pb::DeployReleaseRequest {
        customer_id,
        release_id: release.id,
        version: "1.0.0".into(),
        ..Default::default()
    };

    // Nothing built yet: there is nothing to ship.
    assert_status(
        admin.deploy_release(deploy()).await,
        Code::FailedPrecondition,
        &format!(
            "pipeline {} has no succeeded execution to ship",
            shop.build.id
        ),
    );
    // A build that did not succeed cannot be chosen.
    let queued = server.run_pipeline(customer_id, shop.build.id, &[]).await;
    server
        .admin_pipelines()
        .cancel_execution(pb::CancelExecutionRequest {
            customer_id,
            execution_id: queued.id,
        })
        .await
        .expect("cancel");
    assert_invalid(
        "DeployRelease",
        admin
            .deploy_release(pb::DeployReleaseRequest {
                builds: vec![pb::ShippedBuild {
                    pipeline_id: shop.build.id,
                    execution_id: queued.id,
                }],
                ..deploy()
            })
            .await,
        "builds[0].execution_id",
    );
    let _worker = instant_agent(&server, customer_id, "acme-001").await;
    let build = server.run_pipeline(customer_id, shop.build.id, &[]).await;
    eventually("build succeeded", Duration::from_secs(20), || async {
        server.execution(customer_id, build.id).await.status() == pb::ExecutionStatus::Succeeded
    })
    .await;
    assert_invalid(
        "DeployRelease",
        admin
            .deploy_release(pb::DeployReleaseRequest {
                builds: vec![pb::ShippedBuild {
                    pipeline_id: shop.deploy.id,
                    execution_id: build.id,
                }],
                ..deploy()
            })
            .await,
        "builds[0].pipeline_id",
    );
    assert_invalid(
        "DeployRelease",
        admin
            .deploy_release(pb::DeployReleaseRequest {
                parameters: [("COLOR".to_owned(), "red".to_owned())].into(),
                ..deploy()
            })
            .await,
        "parameters[COLOR]",
    );

    // Who may deploy: developers and up, not viewers or qa.
    for user in [&shop.viewer, &shop.qa] {
        assert_status(
            server.releases(&user.token).deploy_release(deploy()).await,
            Code::PermissionDenied,
            "",
        );
    }
    let deployed = server
        .releases(&shop.ops.token)
        .deploy_release(deploy())
        .await
        .expect("deploy")
        .into_inner()
        .release_execution
        .expect("release execution");
    assert_eq!(deployed.name, "Release-1");
    assert_eq!(
        deployed.builds,
        [pb::ShippedBuild {
            pipeline_id: shop.build.id,
            execution_id: build.id,
        }]
    );
    use pb::StageStatus as S;
    let waiting = wait_for_stages(
        &server,
        customer_id,
        deployed.id,
        &[S::Succeeded, S::Succeeded, S::AwaitingApproval, S::Pending],
    )
    .await;
    let stage_id = |index: usize| waiting.stages[index].id;

    // Only what awaits approval can be decided.
    for index in [0, 3] {
        for approve in [true, false] {
            let result = if approve {
                admin
                    .approve_stage(pb::ApproveStageRequest {
                        customer_id,
                        stage_execution_id: stage_id(index),
                        comment: String::new(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
            } else {
                admin
                    .reject_stage(pb::RejectStageRequest {
                        customer_id,
                        stage_execution_id: stage_id(index),
                        comment: String::new(),
                    })
                    .await
                    .map(|_| ())
            };
            assert_status(result, Code::FailedPrecondition, "not awaiting approval");
        }
    }
    // Staging approvers are admin, devops and qa; a developer is not one of them.
    assert_status(
        server
            .releases(&shop.developer.token)
            .approve_stage(pb::ApproveStageRequest {
                customer_id,
                stage_execution_id: stage_id(2),
                comment: String::new(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "approver roles: admin, devops, qa",
    );
    server
        .releases(&shop.qa.token)
        .approve_stage(pb::ApproveStageRequest {
            customer_id,
            stage_execution_id: stage_id(2),
            comment: "tested".into(),
            ..Default::default()
        })
        .await
        .expect("qa approves staging");
    let at_production = wait_for_stages(
        &server,
        customer_id,
        deployed.id,
        &[
            S::Succeeded,
            S::Succeeded,
            S::Succeeded,
            S::AwaitingApproval,
        ],
    )
    .await;
    // The deployer may not approve their own production stage...
    let approve_production = pb::ApproveStageRequest {
        customer_id,
        stage_execution_id: at_production.stages[3].id,
        comment: "ship it".into(),
        ..Default::default()
    };
    assert_status(
        server
            .releases(&shop.ops.token)
            .approve_stage(approve_production.clone())
            .await,
        Code::PermissionDenied,
        "allow_self_approval",
    );
    // ...unless the environment allows it (a customer setting no longer does).
    server
        .admin_customers()
        .update_customer(pb::UpdateCustomerRequest {
            customer_id,
            settings: Some(r#"{"allow_self_approval": true}"#.into()),
            ..Default::default()
        })
        .await
        .expect("customer settings");
    assert_status(
        server
            .releases(&shop.ops.token)
            .approve_stage(approve_production.clone())
            .await,
        Code::PermissionDenied,
        "environment setting allow_self_approval is off",
    );
    admin
        .update_environment(pb::UpdateEnvironmentRequest {
            customer_id,
            environment_id: shop.environments["Production"].id,
            allow_self_approval: Some(true),
            ..Default::default()
        })
        .await
        .expect("allow self approval");
    server
        .releases(&shop.ops.token)
        .approve_stage(approve_production)
        .await
        .expect("self approval allowed");
    let finished = wait_for_stages(&server, customer_id, deployed.id, &[S::Succeeded; 4]).await;
    assert_eq!(finished.status(), pb::ReleaseExecutionStatus::Succeeded);
    assert_eq!(finished.stages[3].approved_by, shop.ops.id);
    // A finished deployment stays finished when cancelled.
    let cancelled = admin
        .cancel_release_execution(pb::CancelReleaseExecutionRequest {
            customer_id,
            release_execution_id: deployed.id,
        })
        .await
        .expect("cancel finished")
        .into_inner()
        .release_execution
        .expect("release execution");
    assert_eq!(cancelled.status(), pb::ReleaseExecutionStatus::Succeeded);

    // Disabled and archived releases cannot be deployed; archived ones cannot be changed.
    admin
        .update_release(pb::UpdateReleaseRequest {
            customer_id,
            release_id: release.id,
            status: pb::ReleaseStatus::Disabled as i32,
            ..Default::default()
        })
        .await
        .expect("disable");
    assert_status(
        admin.deploy_release(deploy()).await,
        Code::FailedPrecondition,
        &format!("release {} is disabled", release.id),
    );
    admin
        .archive_release(pb::ArchiveReleaseRequest {
            customer_id,
            release_id: release.id,
        })
        .await
        .expect("archive");
    assert_status(
        admin.deploy_release(deploy()).await,
        Code::FailedPrecondition,
        &format!("release {} is archived", release.id),
    );
    assert_status(
        admin
            .update_release(pb::UpdateReleaseRequest {
                customer_id,
                release_id: release.id,
                status: pb::ReleaseStatus::Active as i32,
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "archived",
    );
    let history = admin
        .list_release_executions(pb::ListReleaseExecutionsRequest {
            customer_id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .release_executions;
    assert_eq!(history.len(), 1, "refused deployments left no trace");
}

async fn concurrent_approvals_start_one_deploy(backend: Backend) {
    let server = TestServer::start(backend).await;
    let shop = shop(&server, "acme").await;
    let customer_id = shop.customer.id;
    let _worker = instant_agent(&server, customer_id, "acme-001").await;
    let build = server.run_pipeline(customer_id, shop.build.id, &[]).await;
    eventually("build succeeded", Duration::from_secs(20), || async {
        server.execution(customer_id, build.id).await.status() == pb::ExecutionStatus::Succeeded
    })
    .await;
    let release = server
        .admin_releases()
        .create_release(pb::CreateReleaseRequest {
            stages: vec![stage(1, shop.environments["Staging"].id, shop.deploy.id)],
            ..shop.release_request("API")
        })
        .await
        .expect("create")
        .into_inner()
        .release
        .expect("release");
    let deployed = server
        .admin_releases()
        .deploy_release(pb::DeployReleaseRequest {
            customer_id,
            release_id: release.id,
            ..Default::default()
        })
        .await
        .expect("deploy")
        .into_inner()
        .release_execution
        .expect("release execution");
    use pb::StageStatus as S;
    let waiting = wait_for_stages(&server, customer_id, deployed.id, &[S::AwaitingApproval]).await;

    // Eight approvals at once, by two approvers: one wins, the others find nothing to approve.
    let approvals = (0..8).map(|index| {
        let token = if index % 2 == 0 {
            shop.qa.token.clone()
        } else {
            shop.ops.token.clone()
        };
        let mut client = server.releases(&token);
        let stage_execution_id = waiting.stages[0].id;
        async move {
            client
                .approve_stage(pb::ApproveStageRequest {
                    customer_id,
                    stage_execution_id,
                    comment: format!("approval {index}"),
                    ..Default::default()
                })
                .await
        }
    });
    let results = futures_join_all(approvals).await;
    let won = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    for result in results.iter().filter_map(|result| result.as_ref().err()) {
        assert_eq!(result.code(), Code::FailedPrecondition, "{result:?}");
    }
    let finished = wait_for_stages(&server, customer_id, deployed.id, &[S::Succeeded]).await;
    let deploys = server
        .admin_pipelines()
        .list_executions(pb::ListExecutionsRequest {
            customer_id,
            pipeline_id: shop.deploy.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .executions;
    assert_eq!(
        deploys
            .iter()
            .map(|execution| execution.id)
            .collect::<Vec<_>>(),
        [finished.stages[0].execution_id],
        "exactly one deploy ran"
    );
}

/// Runs the futures concurrently on the test's runtime and returns their results in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.expect("task"));
    }
    results
}

cygnet_testkit::backend_tests!(
    new_customers_start_with_the_seed_environments,
    release_service_validates_every_field,
    references_to_unknown_or_foreign_records_are_not_found,
    deployments_refuse_impossible_transitions,
    concurrent_approvals_start_one_deploy,
);
