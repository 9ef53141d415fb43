//! Usage metering and retention: what each customer used per day, kept with the writes, read
//! by its admins; and each customer's retention periods applied by the housekeeping task
//! without touching anyone else's data.

use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_testkit::{
    Backend, ProtocolAgent, TestOptions, TestServer, assert_invalid, assert_status, eventually,
    heartbeat, step,
};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, Database};
use tonic::Code;

fn fast_housekeeping() -> TestOptions {
    TestOptions {
        agents: cygnet_server::config::AgentSettings {
            heartbeat_interval: Duration::from_secs(1),
            ..Default::default()
        },
        retention: cygnet_server::config::RetentionSettings {
            interval: Duration::from_millis(500),
            anonymous_audit_kept: 3,
        },
        ..TestOptions::default()
    }
}

async fn connected_agent(server: &TestServer, customer_id: i64, uuid: &str) -> ProtocolAgent {
    let token = server.create_registration_token(customer_id).await;
    let registered = server
        .register_agent(customer_id, uuid, &token)
        .await
        .expect("register");
    server
        .connect_agent(uuid, &registered.credential)
        .await
        .expect("connect")
}

async fn next_job(agent: &mut ProtocolAgent) -> i64 {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), agent.inbound.message())
            .await
            .expect("an assignment in time")
            .expect("open")
            .expect("message");
        if let Some(pb::connect_response::Command::AssignJob(job)) = message.command {
            return job.execution_id;
        }
    }
}

/// Runs the job to its end with `output` printed, as a real agent reports it.
async fn run_job(
    agent: &ProtocolAgent,
    execution_id: i64,
    output: &str,
    status: pb::ExecutionStatus,
) {
    let events = [
        pb::job_event::Event::Started(pb::JobStarted {
            workspace: "/w".into(),
        }),
        pb::job_event::Event::Log(pb::LogOutput {
            step_index: 0,
            stream: pb::LogStream::Stdout.into(),
            text: output.to_owned(),
        }),
        pb::job_event::Event::Finished(pb::JobFinished {
            status: status.into(),
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

async fn usage(server: &TestServer, customer_id: i64) -> pb::GetCustomerUsageResponse {
    server
        .admin_customers()
        .get_customer_usage(pb::GetCustomerUsageRequest {
            customer_id,
            ..Default::default()
        })
        .await
        .expect("usage")
        .into_inner()
}

async fn ended(server: &TestServer, customer_id: i64, execution_id: i64) -> bool {
    server
        .execution(customer_id, execution_id)
        .await
        .finished_at
        .is_some()
}

/// Executions by outcome, build time, log bytes, agent online time and stored bytes are metered
/// per customer and day; only the customer's admins (and platform admins) read them.
async fn usage_is_metered_per_customer_and_day(backend: Backend) {
    let server = TestServer::start_with(backend, fast_housekeeping()).await;
    let acme = server.create_customer("acme").await;
    let other = server.create_customer("other").await;
    let mut agent = connected_agent(&server, acme.id, "acme-agent-001").await;
    let pipeline = server
        .create_pipeline(acme.id, "build", vec![step("run", "true")], vec![])
        .await;
    let output = "x".repeat(1000) + "\n";
    let first = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    assert_eq!(next_job(&mut agent).await, first.id);
    run_job(&agent, first.id, &output, pb::ExecutionStatus::Succeeded).await;
    let second = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    assert_eq!(next_job(&mut agent).await, second.id);
    run_job(&agent, second.id, &output, pb::ExecutionStatus::Failed).await;
    eventually("both ended", Duration::from_secs(10), || async {
        ended(&server, acme.id, first.id).await && ended(&server, acme.id, second.id).await
    })
    .await;
    // The agent stays online (heartbeats), and its customer's online time grows.
    for _ in 0..3 {
        agent.heartbeat(heartbeat(5.0, 5.0)).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    eventually("metered", Duration::from_secs(10), || async {
        let usage = usage(&server, acme.id).await;
        let total = usage.total.unwrap_or_default();
        usage.days.len() == 1 && total.agent_online_seconds >= 1 && total.log_bytes_stored > 0
    })
    .await;
    let read = usage(&server, acme.id).await;
    let today = read.days[0].clone();
    assert_eq!(today.day, read.to, "today, UTC");
    assert_eq!(
        (today.executions_succeeded, today.executions_failed),
        (1, 1)
    );
    assert!(
        today.log_bytes_added >= 2 * output.len() as i64,
        "{today:?}"
    );
    assert_eq!(today.log_bytes_stored, today.log_bytes_added, "{today:?}");
    assert!(today.build_seconds >= 0);
    assert_eq!(
        read.total,
        Some(today.clone()).map(|mut day| {
            day.day = String::new();
            day
        })
    );
    // Another customer's usage is its own.
    assert!(usage(&server, other.id).await.days.is_empty());

    // Who may read it, and bad ranges.
    let dev = server.create_user("dev").await;
    server
        .add_member(acme.id, dev.id, pb::Role::Developer)
        .await;
    assert_status(
        server
            .customers(&dev.token)
            .get_customer_usage(pb::GetCustomerUsageRequest {
                customer_id: acme.id,
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "role developer may not read the usage of",
    );
    assert_status(
        server
            .customers(&dev.token)
            .get_customer_usage(pb::GetCustomerUsageRequest {
                customer_id: other.id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "not found",
    );
    for (from, to, field) in [
        ("yesterday", "", "from"),
        ("", "2026-13-01", "to"),
        ("2026-12-05", "2026-12-01", "from"),
    ] {
        assert_invalid(
            "GetCustomerUsage",
            server
                .admin_customers()
                .get_customer_usage(pb::GetCustomerUsageRequest {
                    customer_id: acme.id,
                    from: from.into(),
                    to: to.into(),
                })
                .await,
            field,
        );
    }
}

async fn backdate(server: &TestServer, execution_id: i64, days: i64) {
    let db = Database::connect(&server.database_url)
        .await
        .expect("connect");
    let past = chrono::Utc::now() - chrono::Duration::days(days);
    db.execute(
        &Query::update()
            .table("executions")
            .value("finished_at", past)
            .and_where(Expr::col("id").eq(execution_id))
            .to_owned(),
    )
    .await
    .expect("backdate");
    db.close().await.expect("close");
}

/// A customer's retention periods remove its old logs, then its old executions, in the
/// background, taking their bytes off its stored totals; another customer's data of the same
/// age stays, under its own (default) periods.
async fn retention_removes_a_customers_old_data_and_only_its(backend: Backend) {
    let server = TestServer::start_with(backend, fast_housekeeping()).await;
    let acme = server.create_customer("acme").await;
    let other = server.create_customer("other").await;
    server
        .admin_customers()
        .set_customer_quotas(pb::SetCustomerQuotasRequest {
            customer_id: acme.id,
            limits: [
                ("log_retention_days".to_owned(), 1),
                ("execution_retention_days".to_owned(), 2),
            ]
            .into(),
            reset: vec![],
        })
        .await
        .expect("retention");
    let output = "y".repeat(5000) + "\n";
    let mut runs = Vec::new();
    let mut agents: Vec<ProtocolAgent> = Vec::new();
    for (customer, uuid) in [(acme.id, "acme-agent-001"), (other.id, "other-agent-001")] {
        let mut agent = connected_agent(&server, customer, uuid).await;
        let pipeline = server
            .create_pipeline(customer, "build", vec![step("run", "true")], vec![])
            .await;
        for _ in 0..2 {
            let execution = server.run_pipeline(customer, pipeline.id, &[]).await;
            assert_eq!(next_job(&mut agent).await, execution.id);
            run_job(
                &agent,
                execution.id,
                &output,
                pb::ExecutionStatus::Succeeded,
            )
            .await;
            runs.push((customer, execution.id));
        }
        // Kept connected: its events are stored before it leaves.
        agents.push(agent);
    }
    for (customer, execution_id) in &runs {
        eventually("ended", Duration::from_secs(10), || async {
            ended(&server, *customer, *execution_id).await
        })
        .await;
    }
    let stored_before = |customer: i64| {
        let server = &server;
        async move {
            server
                .admin_customers()
                .get_customer_quotas(pb::GetCustomerQuotasRequest {
                    customer_id: customer,
                })
                .await
                .expect("quotas")
                .into_inner()
                .quotas
                .into_iter()
                .find(|quota| quota.name == "log_bytes_stored")
                .and_then(|quota| quota.used)
                .unwrap_or_default()
        }
    };
    let acme_before = stored_before(acme.id).await;
    let other_before = stored_before(other.id).await;
    assert!(acme_before > 2 * output.len() as i64);
    // Acme's first run ended a day and a half ago (its log goes), its second three days ago
    // (it goes entirely); the other customer's runs are as old, but its periods are the defaults.
    backdate(&server, runs[0].1, 1).await;
    backdate(&server, runs[1].1, 3).await;
    backdate(&server, runs[2].1, 3).await;
    backdate(&server, runs[3].1, 3).await;
    eventually(
        "acme's old run is gone",
        Duration::from_secs(10),
        || async {
            server
                .admin_pipelines()
                .get_execution(pb::GetExecutionRequest {
                    customer_id: acme.id,
                    execution_id: runs[1].1,
                })
                .await
                .is_err_and(|status| status.code() == Code::NotFound)
        },
    )
    .await;
    eventually(
        "acme's older log is gone",
        Duration::from_secs(10),
        || async { server.logs(acme.id, runs[0].1).await.is_empty() },
    )
    .await;
    assert_eq!(
        server.execution(acme.id, runs[0].1).await.status(),
        pb::ExecutionStatus::Succeeded,
        "the execution itself stays"
    );
    eventually(
        "acme's stored bytes drop to zero",
        Duration::from_secs(10),
        || async { stored_before(acme.id).await == 0 },
    )
    .await;
    for (customer, execution_id) in &runs[2..] {
        let logs = server.logs(*customer, *execution_id).await;
        assert!(
            logs.iter().any(|chunk| chunk.text == output),
            "the other customer's log stays"
        );
    }
    assert_eq!(stored_before(other.id).await, other_before);

    // Audit entries of calls that authenticated no one are kept to the newest three.
    let mut anonymous = pb::customer_service_client::CustomerServiceClient::new(server.channel());
    for _ in 0..6 {
        let refused = anonymous
            .update_customer(pb::UpdateCustomerRequest {
                customer_id: acme.id,
                ..Default::default()
            })
            .await;
        assert_status(refused, Code::Unauthenticated, "");
    }
    eventually(
        "anonymous entries capped",
        Duration::from_secs(10),
        || async {
            let entries = server
                .admin_customers()
                .list_audit_log(pb::ListAuditLogRequest {
                    customer_id: 0,
                    page_size: 1000,
                    ..Default::default()
                })
                .await
                .expect("audit")
                .into_inner()
                .entries;
            entries
                .iter()
                .filter(|entry| entry.code == "UNAUTHENTICATED")
                .count()
                == 3
        },
    )
    .await;
}

cygnet_testkit::backend_tests!(
    usage_is_metered_per_customer_and_day,
    retention_removes_a_customers_old_data_and_only_its,
);
