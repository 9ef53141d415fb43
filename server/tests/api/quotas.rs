//! Quotas: platform defaults overridden per customer by platform administrators, refusals with
//! RESOURCE_EXHAUSTED naming the quota, its limit and the use, nothing half-written, exact counts
//! under concurrency, one activity notice per window, and the log cap of one execution.

use std::collections::HashMap;
use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_testkit::{
    Backend, TestOptions, TestServer, assert_invalid, assert_status, eventually, step,
};
use tonic::Code;

async fn set_quotas(
    server: &TestServer,
    customer_id: i64,
    limits: &[(&str, i64)],
) -> Vec<pb::QuotaUsage> {
    server
        .admin_customers()
        .set_customer_quotas(pb::SetCustomerQuotasRequest {
            customer_id,
            limits: limits
                .iter()
                .map(|(name, limit)| ((*name).to_owned(), *limit))
                .collect(),
            reset: vec![],
        })
        .await
        .expect("set quotas")
        .into_inner()
        .quotas
}

async fn quota(server: &TestServer, customer_id: i64, name: &str) -> pb::QuotaUsage {
    server
        .admin_customers()
        .get_customer_quotas(pb::GetCustomerQuotasRequest { customer_id })
        .await
        .expect("get quotas")
        .into_inner()
        .quotas
        .into_iter()
        .find(|quota| quota.name == name)
        .expect("the quota")
}

async fn quota_notices(server: &TestServer, customer_id: i64) -> Vec<pb::ActivityEvent> {
    server
        .activity(customer_id)
        .await
        .into_iter()
        .filter(|event| event.kind == "quota.exceeded")
        .collect()
}

/// Fifty RunPipeline calls at once against a quota of ten queued executions: exactly ten are
/// queued, the other forty are refused naming the quota, and the customer hears of it once.
async fn queued_executions_are_counted_exactly_under_concurrency(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    set_quotas(&server, acme.id, &[("queued_executions", 10)]).await;
    let pipeline = server
        .create_pipeline(acme.id, "build", vec![step("run", "true")], vec![])
        .await;
    let calls = (0..50).map(|_| {
        let mut client = server.admin_pipelines();
        async move {
            client
                .run_pipeline(pb::RunPipelineRequest {
                    customer_id: acme.id,
                    pipeline_id: pipeline.id,
                    ..Default::default()
                })
                .await
        }
    });
    let results = futures_join_all(calls).await;
    let accepted = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(accepted, 10, "exactly the quota is queued");
    for result in results.into_iter().filter(Result::is_err) {
        assert_status(
            result,
            Code::ResourceExhausted,
            &format!(
                "quota queued_executions of customer {} exceeded: limit 10, in use 10",
                acme.id
            ),
        );
    }
    let executions = server
        .admin_pipelines()
        .list_executions(pb::ListExecutionsRequest {
            customer_id: acme.id,
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .executions;
    assert_eq!(executions.len(), 10, "nothing half-written");
    let usage = quota(&server, acme.id, "queued_executions").await;
    assert_eq!(
        (usage.limit, usage.used, usage.overridden),
        (10, Some(10), true)
    );
    eventually("one quota notice", Duration::from_secs(5), || async {
        quota_notices(&server, acme.id).await.len() == 1
    })
    .await;
    // A retry is refused the same way; the notice is not repeated within its window.
    assert_status(
        server
            .admin_pipelines()
            .retry_execution(pb::RetryExecutionRequest {
                customer_id: acme.id,
                execution_id: executions[0].id,
            })
            .await,
        Code::ResourceExhausted,
        "queued_executions",
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(quota_notices(&server, acme.id).await.len(), 1);
}

/// Run all futures at once (no extra dependency for a join).
async fn futures_join_all<F, T>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.expect("task"));
    }
    results
}

/// Every counted quota refuses the one past it, and writes nothing; size quotas refuse a
/// definition too large, on create and on update.
async fn every_resource_quota_refuses_the_one_past_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    set_quotas(
        &server,
        acme.id,
        &[
            ("pipelines", 1),
            ("agents", 1),
            ("monitors", 1),
            ("variable_groups", 1),
            ("steps_per_pipeline", 2),
            ("pipeline_definition_bytes", 400),
        ],
    )
    .await;
    let mut pipelines = server.admin_pipelines();
    let first = pipelines
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: acme.id,
            name: "first".into(),
            steps: vec![step("a", "true")],
            ..Default::default()
        })
        .await
        .expect("first pipeline")
        .into_inner()
        .pipeline
        .expect("pipeline");
    assert_status(
        pipelines
            .create_pipeline(pb::CreatePipelineRequest {
                customer_id: acme.id,
                name: "second".into(),
                steps: vec![step("a", "true")],
                ..Default::default()
            })
            .await,
        Code::ResourceExhausted,
        "quota pipelines",
    );
    // Three steps where two are allowed; a definition of more than 400 bytes.
    assert_status(
        pipelines
            .update_pipeline(pb::UpdatePipelineRequest {
                customer_id: acme.id,
                pipeline_id: first.id,
                steps: vec![step("a", "true"), step("b", "true"), step("c", "true")],
                set_steps: true,
                ..Default::default()
            })
            .await,
        Code::ResourceExhausted,
        "quota steps_per_pipeline",
    );
    assert_status(
        pipelines
            .update_pipeline(pb::UpdatePipelineRequest {
                customer_id: acme.id,
                pipeline_id: first.id,
                steps: vec![step("a", &"x".repeat(500))],
                set_steps: true,
                ..Default::default()
            })
            .await,
        Code::ResourceExhausted,
        "quota pipeline_definition_bytes",
    );
    let unchanged = pipelines
        .get_pipeline(pb::GetPipelineRequest {
            customer_id: acme.id,
            pipeline_id: first.id,
        })
        .await
        .expect("get")
        .into_inner()
        .pipeline
        .expect("pipeline");
    assert_eq!(unchanged.steps, first.steps, "nothing half-written");

    let token = server.create_registration_token(acme.id).await;
    let first_agent = server
        .register_agent(acme.id, "acme-agent-001", &token)
        .await
        .expect("first agent");
    assert_status(
        server
            .register_agent(acme.id, "acme-agent-002", &token)
            .await,
        Code::ResourceExhausted,
        "quota agents",
    );
    // Registering the same agent again (with its current credential) is not a new one.
    cygnet_proto::v1::agent_service_client::AgentServiceClient::new(server.channel())
        .register_agent(pb::RegisterAgentRequest {
            customer_id: acme.id,
            uuid: "acme-agent-001".into(),
            registration_token: token.clone(),
            current_credential: first_agent.credential,
            ..Default::default()
        })
        .await
        .expect("re-registration");

    let monitor = |name: &str| pb::CreateMonitorRequest {
        customer_id: acme.id,
        name: name.into(),
        kind: pb::MonitorKind::Tcp.into(),
        target: "127.0.0.1:1".into(),
        interval_seconds: 60,
        timeout_ms: 1000,
        ..Default::default()
    };
    server
        .admin_monitors()
        .create_monitor(monitor("first"))
        .await
        .expect("first monitor");
    assert_status(
        server
            .admin_monitors()
            .create_monitor(monitor("second"))
            .await,
        Code::ResourceExhausted,
        "quota monitors",
    );

    let group = |name: &str| pb::CreateVariableGroupRequest {
        customer_id: acme.id,
        name: name.into(),
        ..Default::default()
    };
    server
        .variables(cygnet_testkit::ADMIN_TOKEN)
        .create_variable_group(group("first"))
        .await
        .expect("first group");
    assert_status(
        server
            .variables(cygnet_testkit::ADMIN_TOKEN)
            .create_variable_group(group("second"))
            .await,
        Code::ResourceExhausted,
        "quota variable_groups",
    );
    for (name, used) in [
        ("pipelines", 1),
        ("agents", 1),
        ("monitors", 1),
        ("variable_groups", 1),
    ] {
        let usage = quota(&server, acme.id, name).await;
        assert_eq!(usage.used, Some(used), "{name}");
        assert_eq!(usage.limit, 1, "{name}");
    }
}

/// Who may read and change quotas, and what bad input is told.
async fn quotas_are_read_by_members_and_set_by_platform_admins(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let other = server.create_customer("other").await;
    let alice = server.create_user("alice").await;
    server.add_member(acme.id, alice.id, pb::Role::Admin).await;

    let mut theirs = server.customers(&alice.token);
    let quotas = theirs
        .get_customer_quotas(pb::GetCustomerQuotasRequest {
            customer_id: acme.id,
        })
        .await
        .expect("a member reads the quotas")
        .into_inner()
        .quotas;
    let names: Vec<&str> = quotas.iter().map(|quota| quota.name.as_str()).collect();
    assert!(names.contains(&"queued_executions") && names.contains(&"log_bytes_stored"));
    assert!(
        quotas
            .iter()
            .all(|quota| !quota.overridden && quota.limit > 0)
    );
    let defaults: HashMap<String, i64> = quotas
        .iter()
        .map(|quota| (quota.name.clone(), quota.limit))
        .collect();
    assert_status(
        theirs
            .get_customer_quotas(pb::GetCustomerQuotasRequest {
                customer_id: other.id,
            })
            .await,
        Code::NotFound,
        "not found",
    );
    // A customer admin may not raise their own limits.
    assert_status(
        theirs
            .set_customer_quotas(pb::SetCustomerQuotasRequest {
                customer_id: acme.id,
                limits: [("pipelines".to_owned(), 1_000_000)].into(),
                reset: vec![],
            })
            .await,
        Code::PermissionDenied,
        "platform",
    );
    let mut admin = server.admin_customers();
    let bad = |limits: &[(&str, i64)], reset: &[&str]| pb::SetCustomerQuotasRequest {
        customer_id: acme.id,
        limits: limits
            .iter()
            .map(|(name, limit)| ((*name).to_owned(), *limit))
            .collect(),
        reset: reset.iter().map(|name| (*name).to_owned()).collect(),
    };
    for (request, field) in [
        (bad(&[("bogus", 1)], &[]), "limits[bogus]"),
        (bad(&[("pipelines", 0)], &[]), "limits[pipelines]"),
        (
            bad(&[("steps_per_pipeline", 101)], &[]),
            "limits[steps_per_pipeline]",
        ),
        (bad(&[], &["bogus"]), "reset[0]"),
        (bad(&[("agents", 2)], &["agents"]), "reset[0]"),
        (bad(&[], &[]), "limits"),
    ] {
        assert_invalid(
            "SetCustomerQuotas",
            admin.set_customer_quotas(request).await,
            field,
        );
    }
    assert_eq!(
        quotas_overridden(&server, acme.id).await,
        0,
        "nothing half-written"
    );
    assert_status(
        admin
            .set_customer_quotas(pb::SetCustomerQuotasRequest {
                customer_id: 999_999,
                limits: [("pipelines".to_owned(), 5)].into(),
                reset: vec![],
            })
            .await,
        Code::NotFound,
        "customer 999999 not found",
    );
    let changed = set_quotas(&server, acme.id, &[("pipelines", 3), ("agents", 7)]).await;
    let pipelines = changed
        .iter()
        .find(|quota| quota.name == "pipelines")
        .expect("pipelines");
    assert_eq!((pipelines.limit, pipelines.overridden), (3, true));
    let reset = admin
        .set_customer_quotas(bad(&[], &["pipelines"]))
        .await
        .expect("reset")
        .into_inner()
        .quotas;
    let pipelines = reset
        .iter()
        .find(|quota| quota.name == "pipelines")
        .expect("pipelines");
    assert_eq!(
        (pipelines.limit, pipelines.overridden),
        (defaults["pipelines"], false)
    );
    assert_eq!(quotas_overridden(&server, acme.id).await, 1, "agents kept");
    assert_eq!(quotas_overridden(&server, other.id).await, 0, "only acme's");
}

async fn quotas_overridden(server: &TestServer, customer_id: i64) -> usize {
    server
        .admin_customers()
        .get_customer_quotas(pb::GetCustomerQuotasRequest { customer_id })
        .await
        .expect("get")
        .into_inner()
        .quotas
        .iter()
        .filter(|quota| quota.overridden)
        .count()
}

/// A caller keeps at most its quota of Watch streams open; closing one frees its place.
async fn watch_streams_are_bounded_per_caller(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    set_quotas(&server, acme.id, &[("watch_streams_per_caller", 2)]).await;
    let watch = || {
        let mut client = server.admin_customers();
        async move {
            client
                .watch_activity(pb::WatchActivityRequest {
                    customer_id: acme.id,
                    after_id: 0,
                })
                .await
        }
    };
    let first = watch().await.expect("first");
    let _second = watch().await.expect("second");
    assert_status(
        watch().await,
        Code::ResourceExhausted,
        "quota watch_streams_per_caller",
    );
    drop(first);
    eventually("a place freed", Duration::from_secs(5), || async {
        watch().await.is_ok()
    })
    .await;
}

/// Output past an execution's log quota is cut: what fits is kept, one line says the rest is
/// not, later output is dropped, and the job itself ends as its agent reports.
async fn a_log_past_its_cap_ends_with_one_truncation_line(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    set_quotas(&server, acme.id, &[("log_bytes_per_execution", 1000)]).await;
    let token = server.create_registration_token(acme.id).await;
    let registered = server
        .register_agent(acme.id, "acme-agent-001", &token)
        .await
        .expect("register");
    let mut agent = server
        .connect_agent("acme-agent-001", &registered.credential)
        .await
        .expect("connect");
    let pipeline = server
        .create_pipeline(acme.id, "chatty", vec![step("talk", "true")], vec![])
        .await;
    let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), agent.inbound.message())
            .await
            .expect("assignment in time")
            .expect("open")
            .expect("message");
        if matches!(
            message.command,
            Some(pb::connect_response::Command::AssignJob(_))
        ) {
            break;
        }
    }
    let line = "0123456789".repeat(60) + "\n";
    let mut events = vec![pb::job_event::Event::Started(pb::JobStarted {
        workspace: "/w".into(),
    })];
    for _ in 0..3 {
        events.push(pb::job_event::Event::Log(pb::LogOutput {
            step_index: 0,
            stream: pb::LogStream::Stdout.into(),
            text: line.clone(),
        }));
    }
    events.push(pb::job_event::Event::Finished(pb::JobFinished {
        status: pb::ExecutionStatus::Succeeded.into(),
        reason: String::new(),
    }));
    for (index, event) in events.into_iter().enumerate() {
        agent
            .sender
            .send(pb::ConnectRequest {
                message: Some(pb::connect_request::Message::JobEvent(pb::JobEvent {
                    execution_id: execution.id,
                    sequence: index as i64 + 1,
                    occurred_at: None,
                    event: Some(event),
                })),
            })
            .await
            .expect("send");
    }
    eventually("the job ended", Duration::from_secs(10), || async {
        server.execution(acme.id, execution.id).await.status() == pb::ExecutionStatus::Succeeded
    })
    .await;
    let logs = server.logs(acme.id, execution.id).await;
    let text: String = logs.iter().map(|chunk| chunk.text.as_str()).collect();
    let stored: usize = logs.iter().map(|chunk| chunk.text.len()).sum();
    assert_eq!(
        text.matches("==> output truncated").count(),
        1,
        "one truncation line: {text}"
    );
    assert!(
        text.contains("log_bytes_per_execution quota of 1000 bytes"),
        "{text}"
    );
    assert_eq!(
        text.matches(&line).count(),
        1,
        "the first output whole, the second cut"
    );
    assert!(text.trim_end().ends_with("execution succeeded"), "{text}");
    assert!(stored < 1000 + 400, "stored {stored} bytes");
}

/// A customer's running executions stop at its quota however many agents are free; the rest wait
/// with a queue reason naming the quota, and go once a slot of the quota frees.
async fn running_executions_wait_at_the_quota(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    set_quotas(&server, acme.id, &[("running_executions", 1)]).await;
    let token = server.create_registration_token(acme.id).await;
    let registered = server
        .register_agent(acme.id, "acme-agent-001", &token)
        .await
        .expect("register");
    let mut agent = server
        .connect_agent("acme-agent-001", &registered.credential)
        .await
        .expect("connect");
    let pipeline = server
        .create_pipeline(acme.id, "build", vec![step("run", "true")], vec![])
        .await;
    let first = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    let second = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    let assigned = next_job(&mut agent).await;
    assert_eq!(assigned, first.id, "the older one first");
    eventually(
        "the second waits on the quota",
        Duration::from_secs(5),
        || async {
            let waiting = server.execution(acme.id, second.id).await;
            waiting.status() == pb::ExecutionStatus::Queued
                && waiting.queue_reason.contains("running_executions")
        },
    )
    .await;
    // The agent has a free slot; still nothing more comes while the first runs.
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), next_job(&mut agent))
            .await
            .is_err(),
        "no second assignment while at the quota"
    );
    finish(&agent, first.id).await;
    assert_eq!(next_job(&mut agent).await, second.id);
}

async fn next_job(agent: &mut cygnet_testkit::ProtocolAgent) -> i64 {
    loop {
        let message = agent
            .inbound
            .message()
            .await
            .expect("open")
            .expect("message");
        if let Some(pb::connect_response::Command::AssignJob(job)) = message.command {
            return job.execution_id;
        }
    }
}

async fn finish(agent: &cygnet_testkit::ProtocolAgent, execution_id: i64) {
    let events = [
        pb::job_event::Event::Started(pb::JobStarted {
            workspace: "/w".into(),
        }),
        pb::job_event::Event::Finished(pb::JobFinished {
            status: pb::ExecutionStatus::Succeeded.into(),
            reason: String::new(),
        }),
    ];
    for (index, event) in events.into_iter().enumerate() {
        agent
            .sender
            .send(pb::ConnectRequest {
                message: Some(pb::connect_request::Message::JobEvent(pb::JobEvent {
                    execution_id,
                    sequence: index as i64 + 1,
                    occurred_at: None,
                    event: Some(event),
                })),
            })
            .await
            .expect("send");
    }
}

/// Requests past a caller's rate are refused at once, per token and, without a token, per
/// address; other callers go on, and refused calls leave no audit entry.
async fn request_rates_are_bounded_per_caller(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        TestOptions {
            rate_limits: cygnet_server::config::RateLimits {
                requests_per_minute_per_token: 30,
                requests_per_minute_per_address: 5,
                ..Default::default()
            },
            ..TestOptions::default()
        },
    )
    .await;
    let acme = server.create_customer("acme").await;
    let alice = server.create_user("alice").await;
    server.add_member(acme.id, alice.id, pb::Role::Admin).await;
    let mut theirs = server.customers(&alice.token);
    let mut refused = 0;
    for _ in 0..40 {
        match theirs
            .get_customer(pb::GetCustomerRequest {
                customer_id: acme.id,
            })
            .await
        {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("rate limit"), "{status:?}");
                refused += 1;
            }
        }
    }
    assert!(refused >= 29, "a burst of ten, then refusals: {refused}");
    // The administrator's token has its own bucket.
    server
        .admin_customers()
        .get_customer(pb::GetCustomerRequest {
            customer_id: acme.id,
        })
        .await
        .expect("another caller goes on");
    // Without a token: five a minute from this address, then refused before anything runs.
    let mut anonymous = pb::customer_service_client::CustomerServiceClient::new(server.channel());
    let mut unauthenticated = 0;
    let mut limited = 0;
    for _ in 0..10 {
        let result = anonymous
            .update_customer(pb::UpdateCustomerRequest {
                customer_id: acme.id,
                ..Default::default()
            })
            .await;
        match result.expect_err("no token").code() {
            Code::Unauthenticated => unauthenticated += 1,
            Code::ResourceExhausted => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((unauthenticated, limited), (5, 5));
    let audited = server
        .admin_customers()
        .list_audit_log(pb::ListAuditLogRequest {
            customer_id: 0,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .entries
        .into_iter()
        .filter(|entry| entry.code == "UNAUTHENTICATED")
        .count();
    assert_eq!(audited, 5, "refused calls leave no audit entry");
}

/// Registration tokens: live ones count against `registration_tokens`; revoking one makes
/// room; tokens that can no longer register are kept as history only up to a bound, so a
/// customer creating and revoking in a loop keeps its rows (and its tokens page) bounded.
async fn registration_tokens_are_bounded(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let globex = server.create_customer("globex").await;
    set_quotas(&server, acme.id, &[("registration_tokens", 2)]).await;
    let mut agents = server.admin_agents();
    let create = |customer_id: i64| pb::CreateRegistrationTokenRequest {
        customer_id,
        description: "build farm".into(),
        ..Default::default()
    };
    let mut created = Vec::new();
    for _ in 0..2 {
        created.push(
            agents
                .create_registration_token(create(acme.id))
                .await
                .expect("within the quota")
                .into_inner()
                .token
                .expect("token")
                .id,
        );
    }
    assert_status(
        agents.create_registration_token(create(acme.id)).await,
        Code::ResourceExhausted,
        "quota registration_tokens",
    );
    assert_eq!(
        quota(&server, acme.id, "registration_tokens").await.used,
        Some(2)
    );
    // Another customer is not affected.
    agents
        .create_registration_token(create(globex.id))
        .await
        .expect("globex's own quota");
    // Create and revoke many times: live stay within the quota, dead ones are pruned.
    for _ in 0..110 {
        agents
            .revoke_registration_token(pb::RevokeRegistrationTokenRequest {
                customer_id: acme.id,
                token_id: created.remove(0),
            })
            .await
            .expect("revoke");
        created.push(
            agents
                .create_registration_token(create(acme.id))
                .await
                .expect("room again after a revoke")
                .into_inner()
                .token
                .expect("token")
                .id,
        );
    }
    let listed = agents
        .list_registration_tokens(pb::ListRegistrationTokensRequest {
            customer_id: acme.id,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .tokens;
    let live = listed
        .iter()
        .filter(|token| token.revoked_at.is_none())
        .count();
    assert_eq!(live, 2);
    assert_eq!(listed.len(), 2 + 100, "the newest 100 dead tokens are kept");
}

cygnet_testkit::backend_tests!(
    registration_tokens_are_bounded,
    queued_executions_are_counted_exactly_under_concurrency,
    every_resource_quota_refuses_the_one_past_it,
    quotas_are_read_by_members_and_set_by_platform_admins,
    watch_streams_are_bounded_per_caller,
    a_log_past_its_cap_ends_with_one_truncation_line,
    running_executions_wait_at_the_quota,
    request_rates_are_bounded_per_caller,
);
