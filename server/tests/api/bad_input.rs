//! Bad input on every RPC: INVALID_ARGUMENT naming the field, and nothing written.

use cygnet_proto::v1 as pb;

use crate::common::{Backend, TestServer, assert_invalid};

fn customer(name: &str, display_name: &str) -> pb::CreateCustomerRequest {
    pb::CreateCustomerRequest {
        name: name.into(),
        display_name: display_name.into(),
        ..Default::default()
    }
}

async fn customer_service_validates_every_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let dev = server.create_user("dev1").await;
    let mut admin = server.admin_customers();

    let long = "x".repeat(201);
    let bad_creates: Vec<(pb::CreateCustomerRequest, &str)> = vec![
        (customer("", "Empty"), "name"),
        (customer("Acme", "Upper"), "name"),
        (customer("-acme", "Dash"), "name"),
        (customer("acme corp", "Space"), "name"),
        (customer(&"a".repeat(64), "Long"), "name"),
        (customer("ok", ""), "display_name"),
        (customer("ok", "   "), "display_name"),
        (customer("ok", &long), "display_name"),
        (customer("ok", "bell\u{7}"), "display_name"),
        (
            pb::CreateCustomerRequest {
                description: "d".repeat(2001),
                ..customer("ok", "Ok")
            },
            "description",
        ),
        (
            pb::CreateCustomerRequest {
                logo_url: "javascript:alert(1)".into(),
                ..customer("ok", "Ok")
            },
            "logo_url",
        ),
        (
            pb::CreateCustomerRequest {
                contact_email: "not-an-email".into(),
                ..customer("ok", "Ok")
            },
            "contact_email",
        ),
        (
            pb::CreateCustomerRequest {
                contact_phone: "call me maybe".into(),
                ..customer("ok", "Ok")
            },
            "contact_phone",
        ),
        (
            pb::CreateCustomerRequest {
                address: "a".repeat(501),
                ..customer("ok", "Ok")
            },
            "address",
        ),
        (
            pb::CreateCustomerRequest {
                settings: "[1, 2]".into(),
                ..customer("ok", "Ok")
            },
            "settings",
        ),
        (
            pb::CreateCustomerRequest {
                settings: "\"text\"".into(),
                ..customer("ok", "Ok")
            },
            "settings",
        ),
        (
            pb::CreateCustomerRequest {
                settings: "{not json".into(),
                ..customer("ok", "Ok")
            },
            "settings",
        ),
        (
            pb::CreateCustomerRequest {
                settings: format!("{{\"k\": \"{}\"}}", "v".repeat(70_000)),
                ..customer("ok", "Ok")
            },
            "settings",
        ),
    ];
    for (request, field) in bad_creates {
        assert_invalid(
            "CreateCustomer",
            admin.create_customer(request).await,
            field,
        );
    }

    for customer_id in [0, -1] {
        assert_invalid(
            "GetCustomer",
            admin
                .get_customer(pb::GetCustomerRequest { customer_id })
                .await,
            "customer_id",
        );
        assert_invalid(
            "DeactivateCustomer",
            admin
                .deactivate_customer(pb::DeactivateCustomerRequest { customer_id })
                .await,
            "customer_id",
        );
        assert_invalid(
            "ReactivateCustomer",
            admin
                .reactivate_customer(pb::ReactivateCustomerRequest { customer_id })
                .await,
            "customer_id",
        );
        assert_invalid(
            "UpdateCustomer",
            admin
                .update_customer(pb::UpdateCustomerRequest {
                    customer_id,
                    ..Default::default()
                })
                .await,
            "customer_id",
        );
        assert_invalid(
            "ListMembers",
            admin
                .list_members(pb::ListMembersRequest {
                    customer_id,
                    ..Default::default()
                })
                .await,
            "customer_id",
        );
        assert_invalid(
            "RemoveMember",
            admin
                .remove_member(pb::RemoveMemberRequest {
                    customer_id,
                    user_id: dev.id,
                })
                .await,
            "customer_id",
        );
    }

    let bad_updates: Vec<(pb::UpdateCustomerRequest, &str)> = vec![
        (
            pb::UpdateCustomerRequest {
                display_name: Some(String::new()),
                ..Default::default()
            },
            "display_name",
        ),
        (
            pb::UpdateCustomerRequest {
                contact_email: Some("@".into()),
                ..Default::default()
            },
            "contact_email",
        ),
        (
            pb::UpdateCustomerRequest {
                logo_url: Some("ftp://x".into()),
                ..Default::default()
            },
            "logo_url",
        ),
        (
            pb::UpdateCustomerRequest {
                settings: Some("null".into()),
                ..Default::default()
            },
            "settings",
        ),
    ];
    for (request, field) in bad_updates {
        let request = pb::UpdateCustomerRequest {
            customer_id: acme.id,
            ..request
        };
        assert_invalid(
            "UpdateCustomer",
            admin.update_customer(request).await,
            field,
        );
    }

    for (request, field) in [
        (
            pb::AddMemberRequest {
                customer_id: acme.id,
                user_id: 0,
                role: pb::Role::Viewer.into(),
            },
            "user_id",
        ),
        (
            pb::AddMemberRequest {
                customer_id: acme.id,
                user_id: dev.id,
                role: pb::Role::Unspecified.into(),
            },
            "role",
        ),
        (
            pb::AddMemberRequest {
                customer_id: acme.id,
                user_id: dev.id,
                role: 99,
            },
            "role",
        ),
    ] {
        assert_invalid("AddMember", admin.add_member(request).await, field);
    }
    for (request, field) in [
        (
            pb::UpdateMemberRequest {
                customer_id: acme.id,
                user_id: -5,
                role: pb::Role::Viewer.into(),
            },
            "user_id",
        ),
        (
            pb::UpdateMemberRequest {
                customer_id: acme.id,
                user_id: dev.id,
                role: -1,
            },
            "role",
        ),
    ] {
        assert_invalid("UpdateMember", admin.update_member(request).await, field);
    }
    assert_invalid(
        "RemoveMember",
        admin
            .remove_member(pb::RemoveMemberRequest {
                customer_id: acme.id,
                user_id: 0,
            })
            .await,
        "user_id",
    );

    for (page_size, page_token, field) in [
        (-1, "", "page_size"),
        (1001, "", "page_size"),
        (10, "not-a-token", "page_token"),
    ] {
        assert_invalid(
            "ListCustomers",
            admin
                .list_customers(pb::ListCustomersRequest {
                    page_size,
                    page_token: page_token.into(),
                    active_only: false,
                })
                .await,
            field,
        );
        assert_invalid(
            "ListMembers",
            admin
                .list_members(pb::ListMembersRequest {
                    customer_id: acme.id,
                    page_size,
                    page_token: page_token.into(),
                })
                .await,
            field,
        );
    }

    // Nothing was written: still one customer, unchanged, with no members.
    let customers = admin
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .customers;
    assert_eq!(customers, [acme]);
    let members = admin
        .list_members(pb::ListMembersRequest {
            customer_id: customers[0].id,
            ..Default::default()
        })
        .await
        .expect("members")
        .into_inner()
        .members;
    assert!(members.is_empty());
}

async fn user_service_validates_every_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let dev = server.create_user("dev1").await;
    let mut admin = server.admin_users();

    let user = |username: &str, email: &str| pb::CreateUserRequest {
        username: username.into(),
        email: email.into(),
        full_name: String::new(),
        is_superuser: false,
    };
    for (request, field) in [
        (user("", "a@example.com"), "username"),
        (user("Dev", "a@example.com"), "username"),
        (user(".dev", "a@example.com"), "username"),
        (user("dev two", "a@example.com"), "username"),
        (user(&"d".repeat(65), "a@example.com"), "username"),
        (user("dev2", ""), "email"),
        (user("dev2", "dev2"), "email"),
        (user("dev2", "dev2@localhost"), "email"),
        (user("dev2", "dev 2@example.com"), "email"),
        (
            pb::CreateUserRequest {
                full_name: "n".repeat(201),
                ..user("dev2", "dev2@example.com")
            },
            "full_name",
        ),
    ] {
        assert_invalid("CreateUser", admin.create_user(request).await, field);
    }
    for user_id in [0, -7] {
        assert_invalid(
            "GetUser",
            admin.get_user(pb::GetUserRequest { user_id }).await,
            "user_id",
        );
        assert_invalid(
            "DeactivateUser",
            admin
                .deactivate_user(pb::DeactivateUserRequest { user_id })
                .await,
            "user_id",
        );
    }
    assert_invalid(
        "ListUsers",
        admin
            .list_users(pb::ListUsersRequest {
                customer_id: -1,
                ..Default::default()
            })
            .await,
        "customer_id",
    );
    assert_invalid(
        "ListUsers",
        admin
            .list_users(pb::ListUsersRequest {
                page_size: 5000,
                ..Default::default()
            })
            .await,
        "page_size",
    );
    assert_invalid(
        "SetDefaultCustomer",
        admin
            .set_default_customer(pb::SetDefaultCustomerRequest { customer_id: 0 })
            .await,
        "customer_id",
    );
    let past = prost_types::Timestamp {
        seconds: 1_000_000_000,
        nanos: 0,
    };
    for (request, field) in [
        (
            pb::CreateApiTokenRequest {
                name: String::new(),
                user_id: 0,
                expires_at: None,
            },
            "name",
        ),
        (
            pb::CreateApiTokenRequest {
                name: "t".repeat(101),
                user_id: 0,
                expires_at: None,
            },
            "name",
        ),
        (
            pb::CreateApiTokenRequest {
                name: "ci".into(),
                user_id: -2,
                expires_at: None,
            },
            "user_id",
        ),
        (
            pb::CreateApiTokenRequest {
                name: "ci".into(),
                user_id: 0,
                expires_at: Some(past),
            },
            "expires_at",
        ),
        (
            pb::CreateApiTokenRequest {
                name: "ci".into(),
                user_id: 0,
                expires_at: Some(prost_types::Timestamp {
                    seconds: 4_102_444_800,
                    nanos: 2_000_000_000,
                }),
            },
            "expires_at",
        ),
    ] {
        assert_invalid(
            "CreateApiToken",
            admin.create_api_token(request).await,
            field,
        );
    }
    assert_invalid(
        "ListApiTokens",
        admin
            .list_api_tokens(pb::ListApiTokensRequest {
                user_id: -1,
                ..Default::default()
            })
            .await,
        "user_id",
    );
    assert_invalid(
        "ListApiTokens",
        admin
            .list_api_tokens(pb::ListApiTokensRequest {
                page_token: "####".into(),
                ..Default::default()
            })
            .await,
        "page_token",
    );
    assert_invalid(
        "RevokeApiToken",
        admin
            .revoke_api_token(pb::RevokeApiTokenRequest { token_id: 0 })
            .await,
        "token_id",
    );

    // Nothing was written: two users, and dev1 still has exactly one live token.
    let users = admin
        .list_users(pb::ListUsersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .users;
    assert_eq!(users.len(), 2);
    let tokens = admin
        .list_api_tokens(pb::ListApiTokensRequest {
            user_id: dev.id,
            ..Default::default()
        })
        .await
        .expect("tokens")
        .into_inner()
        .tokens;
    assert_eq!(tokens.len(), 1);
    let admin_tokens = admin
        .list_api_tokens(pb::ListApiTokensRequest::default())
        .await
        .expect("admin tokens")
        .into_inner()
        .tokens;
    assert_eq!(admin_tokens.len(), 1, "only the bootstrap token");
}

async fn agent_service_validates_every_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;
    let agent = server
        .register_agent(acme.id, "acme-001", &token)
        .await
        .expect("register");
    let mut admin = server.admin_agents();

    for (request, field) in [
        (
            pb::CreateRegistrationTokenRequest {
                customer_id: 0,
                ..Default::default()
            },
            "customer_id",
        ),
        (
            pb::CreateRegistrationTokenRequest {
                customer_id: acme.id,
                max_uses: -1,
                ..Default::default()
            },
            "max_uses",
        ),
        (
            pb::CreateRegistrationTokenRequest {
                customer_id: acme.id,
                description: "d".repeat(201),
                ..Default::default()
            },
            "description",
        ),
        (
            pb::CreateRegistrationTokenRequest {
                customer_id: acme.id,
                expires_at: Some(prost_types::Timestamp {
                    seconds: 1_000_000_000,
                    nanos: 0,
                }),
                ..Default::default()
            },
            "expires_at",
        ),
    ] {
        assert_invalid(
            "CreateRegistrationToken",
            admin.create_registration_token(request).await,
            field,
        );
    }
    assert_invalid(
        "ListRegistrationTokens",
        admin
            .list_registration_tokens(pb::ListRegistrationTokensRequest {
                customer_id: acme.id,
                page_size: -3,
                ..Default::default()
            })
            .await,
        "page_size",
    );
    assert_invalid(
        "RevokeRegistrationToken",
        admin
            .revoke_registration_token(pb::RevokeRegistrationTokenRequest {
                customer_id: acme.id,
                token_id: 0,
            })
            .await,
        "token_id",
    );
    for (request, field) in [
        (
            pb::ListAgentsRequest {
                customer_id: -1,
                ..Default::default()
            },
            "customer_id",
        ),
        (
            pb::ListAgentsRequest {
                customer_id: acme.id,
                labels: vec![String::new()],
                ..Default::default()
            },
            "labels[0]",
        ),
        (
            pb::ListAgentsRequest {
                customer_id: acme.id,
                page_token: "nope".into(),
                ..Default::default()
            },
            "page_token",
        ),
    ] {
        assert_invalid("ListAgents", admin.list_agents(request).await, field);
    }
    assert_invalid(
        "GetAgent",
        admin
            .get_agent(pb::GetAgentRequest {
                customer_id: acme.id,
                agent_id: 0,
            })
            .await,
        "agent_id",
    );
    assert_invalid(
        "UpdateAgent",
        admin
            .update_agent(pb::UpdateAgentRequest {
                customer_id: acme.id,
                agent_id: agent.agent_id,
                name: Some(String::new()),
                ..Default::default()
            })
            .await,
        "name",
    );
    assert_invalid(
        "DeleteAgent",
        admin
            .delete_agent(pb::DeleteAgentRequest {
                customer_id: acme.id,
                agent_id: -9,
            })
            .await,
        "agent_id",
    );
    assert_invalid(
        "GetAgentMetrics",
        admin
            .get_agent_metrics(pb::GetAgentMetricsRequest {
                customer_id: acme.id,
                agent_id: agent.agent_id,
                start_time: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -5,
                }),
                end_time: None,
            })
            .await,
        "start_time",
    );
    assert_invalid(
        "ListActivity",
        server
            .admin_customers()
            .list_activity(pb::ListActivityRequest {
                customer_id: acme.id,
                page_size: 100_000,
                ..Default::default()
            })
            .await,
        "page_size",
    );

    // Nothing was written: one token, one agent, unchanged.
    let tokens = admin
        .list_registration_tokens(pb::ListRegistrationTokensRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("tokens")
        .into_inner()
        .tokens;
    assert_eq!(tokens.len(), 1);
    let agents = admin
        .list_agents(pb::ListAgentsRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("agents")
        .into_inner()
        .agents;
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].name, "acme-001");
}

async fn pipeline_service_validates_ids_pages_and_enums(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let pipeline = server
        .create_pipeline(
            acme.id,
            "p",
            vec![cygnet_testkit::step("a", "true")],
            vec![],
        )
        .await;
    let mut admin = server.admin_pipelines();
    assert_invalid(
        "GetPipeline",
        admin
            .get_pipeline(pb::GetPipelineRequest {
                customer_id: acme.id,
                pipeline_id: 0,
            })
            .await,
        "pipeline_id",
    );
    assert_invalid(
        "ListPipelines",
        admin
            .list_pipelines(pb::ListPipelinesRequest {
                customer_id: acme.id,
                page_size: -1,
                ..Default::default()
            })
            .await,
        "page_size",
    );
    assert_invalid(
        "DeletePipeline",
        admin
            .delete_pipeline(pb::DeletePipelineRequest {
                customer_id: acme.id,
                pipeline_id: -2,
            })
            .await,
        "pipeline_id",
    );
    assert_invalid(
        "UpdatePipeline",
        admin
            .update_pipeline(pb::UpdatePipelineRequest {
                customer_id: acme.id,
                pipeline_id: pipeline.id,
                name: Some(String::new()),
                ..Default::default()
            })
            .await,
        "name",
    );
    assert_invalid(
        "RunPipeline",
        admin
            .run_pipeline(pb::RunPipelineRequest {
                customer_id: acme.id,
                pipeline_id: -1,
                ..Default::default()
            })
            .await,
        "pipeline_id",
    );
    assert_invalid(
        "RunPipeline",
        admin
            .run_pipeline(pb::RunPipelineRequest {
                customer_id: acme.id,
                pipeline_id: pipeline.id,
                agent_id: -1,
                ..Default::default()
            })
            .await,
        "agent_id",
    );
    assert_invalid(
        "GetExecution",
        admin
            .get_execution(pb::GetExecutionRequest {
                customer_id: acme.id,
                execution_id: 0,
            })
            .await,
        "execution_id",
    );
    assert_invalid(
        "ListExecutions",
        admin
            .list_executions(pb::ListExecutionsRequest {
                customer_id: acme.id,
                status: 77,
                ..Default::default()
            })
            .await,
        "status",
    );
    assert_invalid(
        "ListExecutions",
        admin
            .list_executions(pb::ListExecutionsRequest {
                customer_id: acme.id,
                pipeline_id: -5,
                ..Default::default()
            })
            .await,
        "pipeline_id",
    );
    assert_invalid(
        "CancelExecution",
        admin
            .cancel_execution(pb::CancelExecutionRequest {
                customer_id: acme.id,
                execution_id: 0,
            })
            .await,
        "execution_id",
    );
    assert_invalid(
        "RetryExecution",
        admin
            .retry_execution(pb::RetryExecutionRequest {
                customer_id: acme.id,
                execution_id: 0,
            })
            .await,
        "execution_id",
    );
    assert_invalid(
        "GetExecutionLogs",
        admin
            .get_execution_logs(pb::GetExecutionLogsRequest {
                customer_id: acme.id,
                execution_id: 1,
                after_sequence: -1,
                ..Default::default()
            })
            .await,
        "after_sequence",
    );
    assert_invalid(
        "GetExecutionLogs",
        admin
            .get_execution_logs(pb::GetExecutionLogsRequest {
                customer_id: acme.id,
                execution_id: 1,
                page_size: 5000,
                ..Default::default()
            })
            .await,
        "page_size",
    );
    assert_invalid(
        "WatchExecution",
        admin
            .watch_execution(pb::WatchExecutionRequest {
                customer_id: acme.id,
                execution_id: 0,
                after_sequence: 0,
            })
            .await,
        "execution_id",
    );
    assert_invalid(
        "ListArtifacts",
        admin
            .list_artifacts(pb::ListArtifactsRequest {
                customer_id: acme.id,
                execution_id: -1,
            })
            .await,
        "execution_id",
    );
    assert_invalid(
        "DownloadArtifact",
        admin
            .download_artifact(pb::DownloadArtifactRequest {
                customer_id: acme.id,
                artifact_id: 0,
            })
            .await,
        "artifact_id",
    );
    // Nothing was written.
    let executions = admin
        .list_executions(pb::ListExecutionsRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .executions;
    assert!(executions.is_empty());
    let unchanged = admin
        .get_pipeline(pb::GetPipelineRequest {
            customer_id: acme.id,
            pipeline_id: pipeline.id,
        })
        .await
        .expect("get")
        .into_inner()
        .pipeline
        .expect("pipeline");
    assert_eq!(unchanged.name, "p");
}

cygnet_testkit::backend_tests!(
    agent_service_validates_every_field,
    pipeline_service_validates_ids_pages_and_enums,
    customer_service_validates_every_field,
    user_service_validates_every_field,
);
