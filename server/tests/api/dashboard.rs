//! The customer dashboard at the API: GetCustomerStats against hand-counted fixtures,
//! WatchActivity live and tenant-scoped, and the audit log of every write.

use std::time::Duration;

use cygnet_proto::v1 as pb;
use tonic::Code;

use crate::common::{Backend, TestServer, assert_invalid, assert_status, step};
use crate::monitors::{ScriptedAgent, tcp_monitor};

const WITHIN: Duration = Duration::from_secs(10);

async fn stats(server: &TestServer, token: &str, customer_id: i64) -> pb::CustomerStats {
    server
        .customers(token)
        .get_customer_stats(pb::GetCustomerStatsRequest { customer_id })
        .await
        .expect("stats")
        .into_inner()
        .stats
        .expect("stats")
}

/// Runs the pipeline and waits until its execution finished.
async fn run_to_end(server: &TestServer, customer_id: i64, pipeline_id: i64) -> pb::Execution {
    let execution = server.run_pipeline(customer_id, pipeline_id, &[]).await;
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let now = server.execution(customer_id, execution.id).await;
        if matches!(
            pb::ExecutionStatus::try_from(now.status),
            Ok(pb::ExecutionStatus::Succeeded | pb::ExecutionStatus::Failed)
        ) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "execution {} not finished: {now:?}",
            execution.id
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn stats_match_hand_counted_fixtures(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let other = server.create_customer("techstart").await;

    // Users: four members, one deactivated; the platform admin is not a member.
    let mut member_tokens = Vec::new();
    for (name, role) in [
        ("alice", pb::Role::Admin),
        ("bob", pb::Role::Developer),
        ("carol", pb::Role::Viewer),
        ("dave", pb::Role::Qa),
    ] {
        let user = server.create_user(name).await;
        server.add_member(acme.id, user.id, role).await;
        member_tokens.push((user.id, user.token));
    }
    server
        .admin_users()
        .deactivate_user(pb::DeactivateUserRequest {
            user_id: member_tokens[3].0,
        })
        .await
        .expect("deactivate dave");

    // Agents: three registered, two online; one registered and never connected.
    let mut first = ScriptedAgent::connect(&server, acme.id, "acme-prod-001").await;
    let _second = ScriptedAgent::connect(&server, acme.id, "acme-prod-002").await;
    let token = server.create_registration_token(acme.id).await;
    let offline = server
        .register_agent(acme.id, "acme-prod-003", &token)
        .await
        .expect("register offline agent");

    // Pipelines: Build API succeeds twice; Tests succeeds then fails; Docs is cancelled while
    // queued for the offline agent; Old succeeds and is deleted.
    let build = server
        .create_pipeline(acme.id, "Build API", vec![step("build", "make")], vec![])
        .await;
    let tests = server
        .create_pipeline(acme.id, "Tests", vec![step("test", "make test")], vec![])
        .await;
    let docs = server
        .create_pipeline(acme.id, "Docs", vec![step("docs", "make docs")], vec![])
        .await;
    let old = server
        .create_pipeline(acme.id, "Old", vec![step("old", "true")], vec![])
        .await;
    for pipeline_id in [build.id, build.id, tests.id, old.id] {
        let execution = run_to_end(&server, acme.id, pipeline_id).await;
        assert_eq!(execution.status, pb::ExecutionStatus::Succeeded as i32);
    }
    let mut admin_pipelines = server.admin_pipelines();
    admin_pipelines
        .update_pipeline(pb::UpdatePipelineRequest {
            customer_id: acme.id,
            pipeline_id: tests.id,
            steps: vec![step("test", "false")],
            set_steps: true,
            ..Default::default()
        })
        .await
        .expect("break the tests");
    let failed = run_to_end(&server, acme.id, tests.id).await;
    assert_eq!(failed.status, pb::ExecutionStatus::Failed as i32);
    let queued = admin_pipelines
        .run_pipeline(pb::RunPipelineRequest {
            customer_id: acme.id,
            pipeline_id: docs.id,
            agent_id: offline.agent_id,
            ..Default::default()
        })
        .await
        .expect("queue docs")
        .into_inner()
        .execution
        .expect("execution");
    admin_pipelines
        .cancel_execution(pb::CancelExecutionRequest {
            customer_id: acme.id,
            execution_id: queued.id,
        })
        .await
        .expect("cancel docs");
    admin_pipelines
        .delete_pipeline(pb::DeletePipelineRequest {
            customer_id: acme.id,
            pipeline_id: old.id,
        })
        .await
        .expect("delete old");

    // Releases: one active and deploying (waiting for approval on Staging), one disabled, one
    // archived.
    let environments = server.environments(acme.id).await;
    let mut releases = server.admin_releases();
    let mut release_ids = Vec::new();
    for name in ["Web", "Mobile", "Legacy"] {
        let release = releases
            .create_release(pb::CreateReleaseRequest {
                customer_id: acme.id,
                name: name.into(),
                stages: vec![pb::ReleaseStage {
                    order: 1,
                    environment_id: environments["Staging"].id,
                    pipeline_id: build.id,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .expect("create release")
            .into_inner()
            .release
            .expect("release");
        release_ids.push(release.id);
    }
    releases
        .deploy_release(pb::DeployReleaseRequest {
            customer_id: acme.id,
            release_id: release_ids[0],
            ..Default::default()
        })
        .await
        .expect("deploy web");
    releases
        .update_release(pb::UpdateReleaseRequest {
            customer_id: acme.id,
            release_id: release_ids[1],
            status: pb::ReleaseStatus::Disabled.into(),
            ..Default::default()
        })
        .await
        .expect("disable mobile");
    releases
        .archive_release(pb::ArchiveReleaseRequest {
            customer_id: acme.id,
            release_id: release_ids[2],
        })
        .await
        .expect("archive legacy");

    // Services: healthy, warning, down and one never checked, all on the first agent.
    let pinned = |name: &str| pb::CreateMonitorRequest {
        warning_threshold_ms: 500,
        agent_selector: Some(pb::AgentSelector {
            agent_id: first.agent_id,
            labels: vec![],
        }),
        ..tcp_monitor(acme.id, name, &format!("{}:5432", name.to_lowercase()))
    };
    let mut monitor_ids = Vec::new();
    for name in ["Database", "Cache", "Queue", "Search"] {
        monitor_ids.push(server.create_monitor(pinned(name)).await.id);
    }
    first.wait_for_monitors(&monitor_ids).await;
    first.report(monitor_ids[0], true, 12, "connected").await;
    first.report(monitor_ids[1], true, 900, "connected").await;
    first
        .report(monitor_ids[2], false, 0, "connection refused")
        .await;
    for (monitor_id, status) in [
        (monitor_ids[0], pb::MonitorStatus::Healthy),
        (monitor_ids[1], pb::MonitorStatus::Warning),
        (monitor_ids[2], pb::MonitorStatus::Down),
    ] {
        server
            .wait_for_monitor_status(acme.id, monitor_id, status, WITHIN)
            .await;
    }

    // Noise in another customer that must not count.
    let _theirs = ScriptedAgent::connect(&server, other.id, "techstart-001").await;
    let theirs = server
        .create_pipeline(other.id, "Theirs", vec![step("x", "true")], vec![])
        .await;
    run_to_end(&server, other.id, theirs.id).await;
    server
        .create_monitor(tcp_monitor(other.id, "Their DB", "their-db:5432"))
        .await;

    let figures = stats(&server, &member_tokens[2].1, acme.id).await;
    assert_eq!(figures.customer_id, acme.id);
    let counted = [
        ("agents_total", figures.agents_total, 3),
        ("agents_online", figures.agents_online, 2),
        ("pipelines_total", figures.pipelines_total, 3),
        ("pipelines_succeeding", figures.pipelines_succeeding, 1),
        ("releases_total", figures.releases_total, 2),
        ("releases_active", figures.releases_active, 1),
        ("releases_in_progress", figures.releases_in_progress, 1),
        ("services_total", figures.services_total, 4),
        ("services_healthy", figures.services_healthy, 1),
        ("services_warning", figures.services_warning, 1),
        ("services_down", figures.services_down, 1),
        ("users_total", figures.users_total, 4),
        ("users_active", figures.users_active, 3),
        // Build API ×2, Tests ×2, Docs, Old.
        ("executions_total", figures.executions_total, 6),
        ("executions_succeeded", figures.executions_succeeded, 4),
        ("executions_failed", figures.executions_failed, 1),
    ];
    for (name, got, expected) in counted {
        assert_eq!(got, expected, "{name}");
    }
    // 4 of 6 finished executions succeeded.
    assert!(
        (figures.success_rate_percent - 400.0 / 6.0).abs() < 1e-9,
        "{}",
        figures.success_rate_percent
    );
    assert!(figures.computed_at.is_some());

    // The other customer's figures are its own.
    let theirs = stats(&server, cygnet_testkit::ADMIN_TOKEN, other.id).await;
    assert_eq!(
        (
            theirs.agents_total,
            theirs.pipelines_total,
            theirs.executions_total,
            theirs.services_total,
            theirs.users_total,
            theirs.success_rate_percent
        ),
        (1, 1, 1, 1, 0, 100.0)
    );
    // A member of one customer gets nothing of the other.
    assert_status(
        server
            .customers(&member_tokens[0].1)
            .get_customer_stats(pb::GetCustomerStatsRequest {
                customer_id: other.id,
            })
            .await,
        Code::NotFound,
        "customer",
    );
    assert_invalid(
        "GetCustomerStats",
        server
            .admin_customers()
            .get_customer_stats(pb::GetCustomerStatsRequest { customer_id: 0 })
            .await,
        "customer_id",
    );
}

/// The next event of a watch, within `within`.
async fn next_event(
    stream: &mut tonic::Streaming<pb::WatchActivityResponse>,
    within: Duration,
) -> pb::ActivityEvent {
    tokio::time::timeout(within, stream.message())
        .await
        .expect("an event in time")
        .expect("stream healthy")
        .expect("stream open")
        .event
        .expect("event")
}

async fn watch_activity_is_live_and_only_the_customers_own(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let other = server.create_customer("techstart").await;
    let viewer = server.create_user("viewer").await;
    server
        .add_member(acme.id, viewer.id, pb::Role::Viewer)
        .await;
    let outsider = server.create_user("outsider").await;
    server
        .add_member(other.id, outsider.id, pb::Role::Admin)
        .await;
    let newest = server.activity(acme.id).await[0].id;

    let mut stream = server
        .customers(&viewer.token)
        .watch_activity(pb::WatchActivityRequest {
            customer_id: acme.id,
            after_id: 0,
        })
        .await
        .expect("watch")
        .into_inner();

    // Activity of the other customer first, then of this one: the first event that arrives is
    // this customer's, within a second of the write that caused it.
    let theirs = server.create_user("theirs").await;
    server
        .add_member(other.id, theirs.id, pb::Role::Viewer)
        .await;
    ScriptedAgent::connect(&server, other.id, "techstart-001").await;
    let ours = server.create_user("ours").await;
    server
        .add_member(acme.id, ours.id, pb::Role::Developer)
        .await;
    let event = next_event(&mut stream, Duration::from_secs(1)).await;
    assert_eq!(
        (
            event.customer_id,
            event.kind.as_str(),
            event.subject_type.as_str(),
            event.subject_id,
            event.message.as_str(),
        ),
        (
            acme.id,
            "member.added",
            "user",
            ours.id,
            "ours joined as developer"
        )
    );
    assert!(event.actor_user_id > 0, "the platform admin did it");
    assert!(event.created_at.is_some());

    // Each kind arrives as it happens.
    let mut agent = ScriptedAgent::connect(&server, acme.id, "acme-prod-001").await;
    let registered = next_event(&mut stream, Duration::from_secs(1)).await;
    assert_eq!(registered.kind, "agent.registered");
    let online = next_event(&mut stream, Duration::from_secs(1)).await;
    assert_eq!(
        (online.kind.as_str(), online.subject_id),
        ("agent.online", agent.agent_id)
    );
    let monitor = server
        .create_monitor(tcp_monitor(acme.id, "Database", "postgres://acme-db"))
        .await;
    agent.wait_for_monitors(&[monitor.id]).await;
    agent
        .report(monitor.id, false, 0, "connection refused")
        .await;
    let down = next_event(&mut stream, Duration::from_secs(1)).await;
    assert_eq!(
        (down.kind.as_str(), down.message.as_str()),
        (
            "monitor.down",
            "Service \"Database\" is down: connection refused"
        )
    );
    let pipeline = server
        .create_pipeline(acme.id, "Build API", vec![step("build", "make")], vec![])
        .await;
    server.run_pipeline(acme.id, pipeline.id, &[]).await;
    let started = next_event(&mut stream, Duration::from_secs(1)).await;
    let finished = next_event(&mut stream, Duration::from_secs(1)).await;
    assert_eq!(started.kind, "execution.started");
    assert!(
        started
            .message
            .starts_with("Pipeline \"Build API\" execution "),
        "{}",
        started.message
    );
    assert!(started.message.ends_with(" started on acme-prod-001"));
    assert_eq!(finished.kind, "execution.succeeded");
    assert!(finished.message.ends_with(" succeeded on acme-prod-001"));

    // A second watch replays what came after an id, then goes on live.
    let mut replaying = server
        .customers(&viewer.token)
        .watch_activity(pb::WatchActivityRequest {
            customer_id: acme.id,
            after_id: newest,
        })
        .await
        .expect("watch with replay")
        .into_inner();
    let mut kinds = Vec::new();
    for _ in 0..6 {
        let event = next_event(&mut replaying, Duration::from_secs(1)).await;
        assert_eq!(event.customer_id, acme.id);
        kinds.push(event.kind);
    }
    assert_eq!(
        kinds,
        [
            "member.added",
            "agent.registered",
            "agent.online",
            "monitor.down",
            "execution.started",
            "execution.succeeded"
        ]
    );
    server
        .admin_customers()
        .update_member(pb::UpdateMemberRequest {
            customer_id: acme.id,
            user_id: ours.id,
            role: pb::Role::Devops.into(),
        })
        .await
        .expect("promote");
    for stream in [&mut stream, &mut replaying] {
        let changed = next_event(stream, Duration::from_secs(1)).await;
        assert_eq!(
            (changed.kind.as_str(), changed.message.as_str()),
            ("member.role_changed", "ours is now devops (was developer)")
        );
    }

    // Another customer's admin cannot watch this customer; bad input names the field.
    assert_status(
        server
            .customers(&outsider.token)
            .watch_activity(pb::WatchActivityRequest {
                customer_id: acme.id,
                after_id: 0,
            })
            .await,
        Code::NotFound,
        "customer",
    );
    assert_invalid(
        "WatchActivity",
        server
            .customers(&viewer.token)
            .watch_activity(pb::WatchActivityRequest {
                customer_id: acme.id,
                after_id: -1,
            })
            .await,
        "after_id",
    );
}

/// The audit entries a caller reads for a customer (0: all), newest first.
async fn audit(
    server: &TestServer,
    token: &str,
    customer_id: i64,
) -> Result<Vec<pb::AuditEntry>, tonic::Status> {
    server
        .customers(token)
        .list_audit_log(pb::ListAuditLogRequest {
            customer_id,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .map(|response| response.into_inner().entries)
}

async fn the_audit_log_records_every_write_for_the_right_readers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let other = server.create_customer("techstart").await;
    let alice = server.create_user("alice").await;
    server.add_member(acme.id, alice.id, pb::Role::Admin).await;
    let carol = server.create_user("carol").await;
    server.add_member(acme.id, carol.id, pb::Role::Viewer).await;
    let outsider = server.create_user("outsider").await;
    server
        .add_member(other.id, outsider.id, pb::Role::Admin)
        .await;

    // A write that works, one refused by role, one with bad input, and reads (not audited).
    let pipeline = server
        .pipelines(&alice.token)
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: acme.id,
            name: "Build API".into(),
            steps: vec![step("build", "make")],
            ..Default::default()
        })
        .await
        .expect("create pipeline")
        .into_inner()
        .pipeline
        .expect("pipeline");
    assert_status(
        server
            .pipelines(&carol.token)
            .delete_pipeline(pb::DeletePipelineRequest {
                customer_id: acme.id,
                pipeline_id: pipeline.id,
            })
            .await,
        Code::PermissionDenied,
        "",
    );
    assert_invalid(
        "CreateMonitor",
        server
            .monitors(&alice.token)
            .create_monitor(tcp_monitor(acme.id, "Database", "acme-db"))
            .await,
        "target",
    );
    server
        .pipelines(&carol.token)
        .list_pipelines(pb::ListPipelinesRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("list");
    // The outsider tries the same pipeline under its own customer and under acme's.
    assert_status(
        server
            .pipelines(&outsider.token)
            .delete_pipeline(pb::DeletePipelineRequest {
                customer_id: acme.id,
                pipeline_id: pipeline.id,
            })
            .await,
        Code::NotFound,
        "customer",
    );

    let entries = audit(&server, &alice.token, acme.id)
        .await
        .expect("acme's admin reads acme's log");
    let summary: Vec<(&str, &str, &str, &str, i64)> = entries
        .iter()
        .map(|entry| {
            (
                entry.method.as_str(),
                entry.actor_username.as_str(),
                entry.code.as_str(),
                entry.resource_type.as_str(),
                entry.resource_id,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "cygnet.v1.MonitorService/CreateMonitor",
                "alice",
                "INVALID_ARGUMENT",
                "",
                0
            ),
            (
                "cygnet.v1.PipelineService/DeletePipeline",
                "carol",
                "PERMISSION_DENIED",
                "pipeline",
                pipeline.id
            ),
            (
                "cygnet.v1.PipelineService/CreatePipeline",
                "alice",
                "OK",
                "pipeline",
                pipeline.id
            ),
            (
                "cygnet.v1.CustomerService/AddMember",
                "admin",
                "OK",
                "user",
                carol.id
            ),
            (
                "cygnet.v1.CustomerService/AddMember",
                "admin",
                "OK",
                "user",
                alice.id
            ),
            (
                "cygnet.v1.CustomerService/CreateCustomer",
                "admin",
                "OK",
                "customer",
                acme.id
            ),
        ]
    );
    for entry in &entries {
        assert_eq!(entry.customer_id, acme.id);
        assert!(
            entry.peer_address.starts_with("127.0.0.1:"),
            "{}",
            entry.peer_address
        );
        assert!(entry.created_at.is_some());
    }
    assert_eq!(entries[0].actor_user_id, alice.id);

    // Only admins read it; another customer's admin does not see acme at all.
    assert_status(
        audit(&server, &carol.token, acme.id).await,
        Code::PermissionDenied,
        "",
    );
    assert_status(
        audit(&server, &outsider.token, acme.id).await,
        Code::NotFound,
        "customer",
    );
    let theirs = audit(&server, &outsider.token, other.id)
        .await
        .expect("their own log");
    assert!(
        theirs.iter().all(|entry| entry.customer_id == other.id),
        "{theirs:?}"
    );
    assert!(
        theirs
            .iter()
            .all(|entry| entry.resource_id != pipeline.id || entry.resource_type != "pipeline"),
        "the refused attempt on acme's pipeline belongs to no customer's log: {theirs:?}"
    );
    assert_status(
        audit(&server, &alice.token, 0).await,
        Code::PermissionDenied,
        "",
    );

    // The platform admin reads everything, including writes of no customer and the outsider's
    // refused attempt.
    let everything = audit(&server, cygnet_testkit::ADMIN_TOKEN, 0)
        .await
        .expect("platform log");
    let create_users = everything
        .iter()
        .filter(|entry| entry.method == "cygnet.v1.UserService/CreateUser")
        .count();
    assert_eq!(create_users, 3);
    assert!(everything.iter().any(|entry| {
        entry.actor_username == "outsider"
            && entry.code == "NOT_FOUND"
            && entry.customer_id == 0
            && entry.method == "cygnet.v1.PipelineService/DeletePipeline"
    }));
    // Filtered by actor.
    let by_carol = server
        .admin_customers()
        .list_audit_log(pb::ListAuditLogRequest {
            customer_id: 0,
            actor_user_id: carol.id,
            ..Default::default()
        })
        .await
        .expect("by actor")
        .into_inner()
        .entries;
    assert_eq!(by_carol.len(), 1);
    assert_eq!(by_carol[0].code, "PERMISSION_DENIED");
    // An unauthenticated write is recorded too.
    assert_status(
        server
            .pipelines("not-a-token")
            .create_pipeline(pb::CreatePipelineRequest {
                customer_id: acme.id,
                name: "x".into(),
                ..Default::default()
            })
            .await,
        Code::Unauthenticated,
        "",
    );
    let latest = audit(&server, cygnet_testkit::ADMIN_TOKEN, 0)
        .await
        .expect("platform log")
        .remove(0);
    assert_eq!(
        (
            latest.method.as_str(),
            latest.code.as_str(),
            latest.actor_user_id,
            latest.customer_id
        ),
        (
            "cygnet.v1.PipelineService/CreatePipeline",
            "UNAUTHENTICATED",
            0,
            0
        )
    );
}

/// Entries of concurrent writes are written in groups: each write still has exactly its own
/// entry, stored before its answer (read right after every answer, with no waiting).
async fn concurrent_writes_each_have_their_entry_before_the_answer(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let mut calls = Vec::new();
    for index in 0..48 {
        let mut pipelines = server.admin_pipelines();
        calls.push(tokio::spawn(async move {
            pipelines
                .create_pipeline(pb::CreatePipelineRequest {
                    customer_id: acme.id,
                    name: format!("p{index}"),
                    steps: vec![step("s", "true")],
                    ..Default::default()
                })
                .await
                .expect("create")
                .into_inner()
                .pipeline
                .expect("pipeline")
                .id
        }));
    }
    let mut created = Vec::new();
    for call in calls {
        created.push(call.await.expect("call"));
    }
    let entries = audit(&server, crate::common::ADMIN_TOKEN, acme.id)
        .await
        .expect("audit");
    let mut audited: Vec<i64> = entries
        .iter()
        .filter(|entry| entry.method == "cygnet.v1.PipelineService/CreatePipeline")
        .map(|entry| entry.resource_id)
        .collect();
    audited.sort_unstable();
    created.sort_unstable();
    assert_eq!(
        audited, created,
        "one entry per write, none lost or doubled"
    );
}

cygnet_testkit::backend_tests!(
    stats_match_hand_counted_fixtures,
    watch_activity_is_live_and_only_the_customers_own,
    the_audit_log_records_every_write_for_the_right_readers,
    concurrent_writes_each_have_their_entry_before_the_answer,
);
