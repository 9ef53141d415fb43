//! Resource isolation, tried as a hostile tenant would: what one customer (or one of its agents)
//! sends must not slow, starve or fail another customer's work. Each test performs the attack as
//! customer A and asserts that customer B's work goes on as if A were not there.

use std::time::{Duration, Instant};

use cygnet_proto::v1 as pb;
use cygnet_testkit::{
    Backend, ProtocolAgent, TestOptions, TestServer, eventually, heartbeat, step,
};

fn short_leases() -> TestOptions {
    TestOptions {
        agents: cygnet_server::config::AgentSettings {
            heartbeat_interval: Duration::from_secs(1),
            grace: Duration::from_secs(3),
            ..Default::default()
        },
        ..TestOptions::default()
    }
}

/// A connected protocol agent of a new customer `name`, with its customer.
async fn customer_with_agent(server: &TestServer, name: &str) -> (pb::Customer, ProtocolAgent) {
    let customer = server.create_customer(name).await;
    let token = server.create_registration_token(customer.id).await;
    let uuid = format!("{name}-agent-001");
    let registered = server
        .register_agent(customer.id, &uuid, &token)
        .await
        .expect("register");
    let agent = server
        .connect_agent(&uuid, &registered.credential)
        .await
        .expect("connect");
    (customer, agent)
}

async fn next_assignment(agent: &mut ProtocolAgent) -> pb::JobAssignment {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), agent.inbound.message())
            .await
            .expect("an assignment within 10 s")
            .expect("stream open")
            .expect("a message");
        if let Some(pb::connect_response::Command::AssignJob(job)) = message.command {
            return job;
        }
    }
}

async fn job_event(
    agent: &ProtocolAgent,
    execution_id: i64,
    sequence: i64,
    event: pb::job_event::Event,
) {
    agent
        .sender
        .send(pb::ConnectRequest {
            message: Some(pb::connect_request::Message::JobEvent(pb::JobEvent {
                execution_id,
                sequence,
                occurred_at: None,
                event: Some(event),
            })),
        })
        .await
        .expect("stream open");
}

/// Agent A reports an absurd list of running jobs in every heartbeat, for longer than a lease
/// lasts. B's running job keeps its lease (the liveness batch that stores both agents' figures
/// neither grows with A's list nor fails because of it) and finishes normally.
async fn a_heartbeat_listing_absurdly_many_jobs_costs_no_one_else_their_lease(backend: Backend) {
    let server = TestServer::start_with(backend, short_leases()).await;
    let (_a, a_agent) = customer_with_agent(&server, "hostile").await;
    let (b, mut b_agent) = customer_with_agent(&server, "bystander").await;
    let pipeline = server
        .create_pipeline(b.id, "long", vec![step("run", "true")], vec![])
        .await;
    let execution = server.run_pipeline(b.id, pipeline.id, &[]).await;
    let job = next_assignment(&mut b_agent).await;
    assert_eq!(job.execution_id, execution.id);
    job_event(
        &b_agent,
        execution.id,
        1,
        pb::job_event::Event::Started(pb::JobStarted {
            workspace: "/tmp/bystander".into(),
        }),
    )
    .await;

    let mut flood = heartbeat(10.0, 10.0);
    flood.running_execution_ids = (1..=200_000).collect();
    let mut honest = heartbeat(10.0, 10.0);
    honest.running_execution_ids = vec![execution.id];
    // Three lease lengths of both agents heart-beating, A with its flood.
    let until = Instant::now() + Duration::from_secs(9);
    while Instant::now() < until {
        a_agent.heartbeat(flood.clone()).await;
        b_agent.heartbeat(honest.clone()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let current = server.execution(b.id, execution.id).await;
    assert_eq!(
        current.status(),
        pb::ExecutionStatus::Running,
        "B's job kept its lease: {current:?}"
    );
    job_event(
        &b_agent,
        execution.id,
        2,
        pb::job_event::Event::Finished(pb::JobFinished {
            status: pb::ExecutionStatus::Succeeded.into(),
            reason: String::new(),
        }),
    )
    .await;
    eventually("B's job succeeded", Duration::from_secs(10), || async {
        server.execution(b.id, execution.id).await.status() == pb::ExecutionStatus::Succeeded
    })
    .await;
}

/// A queues hundreds of runs that none of its agents can take (a label nobody has) while its
/// agent sits idle with free slots. B's new run still goes to B's idle agent at once.
async fn one_customers_unmatched_backlog_never_delays_another_customers_run(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (a, _a_agent) = customer_with_agent(&server, "hostile").await;
    let (b, b_agent) = customer_with_agent(&server, "bystander").await;
    let (received, _worker) = b_agent.work_instantly();
    let unmatched = server
        .create_pipeline_needing(a.id, "needs a gpu", &["gpu"])
        .await;
    for _ in 0..300 {
        server.run_pipeline(a.id, unmatched.id, &[]).await;
    }
    let pipeline = server
        .create_pipeline(b.id, "quick", vec![step("run", "true")], vec![])
        .await;
    let execution = server.run_pipeline(b.id, pipeline.id, &[]).await;
    eventually(
        "B's run dispatched and done",
        Duration::from_secs(5),
        || async {
            server.execution(b.id, execution.id).await.status() == pb::ExecutionStatus::Succeeded
        },
    )
    .await;
    assert_eq!(*received.lock().expect("received"), vec![execution.id]);
}

/// Everything at once: A floods its queue past its quota with work nobody can take, floods its
/// agent's heartbeats, holds Watch streams past its quota and sends an oversized pipeline. B's
/// running job keeps its lease, B's new run goes to B's idle agent, and A is told
/// RESOURCE_EXHAUSTED wherever a quota applies.
async fn a_tenant_doing_everything_at_once_leaves_another_untouched(backend: Backend) {
    let server = TestServer::start_with(backend, short_leases()).await;
    let (a, a_agent) = customer_with_agent(&server, "hostile").await;
    let (b, mut b_agent) = customer_with_agent(&server, "bystander").await;
    server
        .admin_customers()
        .set_customer_quotas(pb::SetCustomerQuotasRequest {
            customer_id: a.id,
            limits: [
                ("queued_executions".to_owned(), 50),
                ("watch_streams_per_caller".to_owned(), 4),
                ("pipeline_definition_bytes".to_owned(), 10_000),
            ]
            .into(),
            reset: vec![],
        })
        .await
        .expect("quotas");
    // B's job is running.
    let long = server
        .create_pipeline(b.id, "long", vec![step("run", "true")], vec![])
        .await;
    let running = server.run_pipeline(b.id, long.id, &[]).await;
    assert_eq!(next_assignment(&mut b_agent).await.execution_id, running.id);
    job_event(
        &b_agent,
        running.id,
        1,
        pb::job_event::Event::Started(pb::JobStarted {
            workspace: "/tmp/bystander".into(),
        }),
    )
    .await;

    // A: a queue flood of work nobody can take, past its quota.
    let unmatched = server
        .create_pipeline_needing(a.id, "needs a gpu", &["gpu"])
        .await;
    let floods: Vec<_> = (0..80)
        .map(|_| {
            let mut client = server.admin_pipelines();
            let (customer_id, pipeline_id) = (a.id, unmatched.id);
            tokio::spawn(async move {
                client
                    .run_pipeline(pb::RunPipelineRequest {
                        customer_id,
                        pipeline_id,
                        ..Default::default()
                    })
                    .await
            })
        })
        .collect();
    // A: watch streams past its quota.
    let mut watches = Vec::new();
    let mut watch_refusals = 0;
    for _ in 0..6 {
        match server
            .admin_customers()
            .watch_activity(pb::WatchActivityRequest {
                customer_id: a.id,
                after_id: 0,
            })
            .await
        {
            Ok(stream) => watches.push(stream),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                watch_refusals += 1;
            }
        }
    }
    assert_eq!((watches.len(), watch_refusals), (4, 2));
    // A: an oversized definition.
    let oversized = server
        .admin_pipelines()
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: a.id,
            name: "huge".into(),
            steps: vec![step("a", &"x".repeat(20_000))],
            ..Default::default()
        })
        .await;
    cygnet_testkit::assert_status(
        oversized,
        tonic::Code::ResourceExhausted,
        "pipeline_definition_bytes",
    );

    // Meanwhile B: a new run, and heartbeats for the running one while A's agent floods.
    let quick = server
        .create_pipeline(b.id, "quick", vec![step("run", "true")], vec![])
        .await;
    let queued = server.run_pipeline(b.id, quick.id, &[]).await;
    let mut flood = heartbeat(10.0, 10.0);
    flood.running_execution_ids = (1..=100_000).collect();
    let mut honest = heartbeat(10.0, 10.0);
    honest.running_execution_ids = vec![running.id];
    let until = Instant::now() + Duration::from_secs(6);
    let mut dispatched = false;
    while Instant::now() < until {
        a_agent.heartbeat(flood.clone()).await;
        b_agent.heartbeat(honest.clone()).await;
        if !dispatched
            && let Ok(Ok(Some(message))) =
                tokio::time::timeout(Duration::from_millis(400), b_agent.inbound.message()).await
            && let Some(pb::connect_response::Command::AssignJob(job)) = message.command
        {
            assert_eq!(job.execution_id, queued.id);
            dispatched = true;
        }
    }
    assert!(dispatched, "B's new run went to B's idle agent");
    let mut accepted = 0;
    for flood in floods {
        match flood.await.expect("task") {
            Ok(_) => accepted += 1,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("queued_executions"), "{status:?}");
            }
        }
    }
    assert_eq!(accepted, 50, "A's queue stops at its quota");
    assert_eq!(
        server.execution(b.id, running.id).await.status(),
        pb::ExecutionStatus::Running,
        "B's running job kept its lease"
    );
}

/// Many watchers of one execution (they share each read) each get its whole log, once, in
/// order, and its end; none of them waits for a poll.
async fn many_watchers_of_one_execution_each_get_the_whole_log(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (b, mut agent) = customer_with_agent(&server, "bystander").await;
    let pipeline = server
        .create_pipeline(b.id, "chatty", vec![step("talk", "true")], vec![])
        .await;
    let execution = server.run_pipeline(b.id, pipeline.id, &[]).await;
    assert_eq!(next_assignment(&mut agent).await.execution_id, execution.id);
    let watchers: Vec<_> = (0..8)
        .map(|_| {
            let mut client = server.admin_pipelines();
            let (customer_id, execution_id) = (b.id, execution.id);
            tokio::spawn(async move {
                let mut stream = client
                    .watch_execution(pb::WatchExecutionRequest {
                        customer_id,
                        execution_id,
                        after_sequence: 0,
                    })
                    .await
                    .expect("watch")
                    .into_inner();
                let mut updates = Vec::new();
                while let Some(update) = stream.message().await.expect("stream") {
                    updates.push(update.update.expect("update"));
                }
                updates
            })
        })
        .collect();
    job_event(
        &agent,
        execution.id,
        1,
        pb::job_event::Event::Started(pb::JobStarted {
            workspace: "/w".into(),
        }),
    )
    .await;
    for line in 0..50 {
        job_event(
            &agent,
            execution.id,
            line + 2,
            pb::job_event::Event::Log(pb::LogOutput {
                step_index: 0,
                stream: pb::LogStream::Stdout.into(),
                text: format!("line {line}\n"),
            }),
        )
        .await;
    }
    job_event(
        &agent,
        execution.id,
        52,
        pb::job_event::Event::Finished(pb::JobFinished {
            status: pb::ExecutionStatus::Succeeded.into(),
            reason: String::new(),
        }),
    )
    .await;
    let expected: String = (0..50).map(|line| format!("line {line}\n")).collect();
    for watcher in watchers {
        let updates = tokio::time::timeout(Duration::from_secs(10), watcher)
            .await
            .expect("every watcher ends within 10 s, woken by changes")
            .expect("task");
        let text = cygnet_testkit::log_text(&updates);
        let output: String = text
            .lines()
            .filter(|line| line.starts_with("line "))
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(output, expected, "the whole output, once, in order");
        assert_eq!(
            cygnet_testkit::final_execution(&updates).status(),
            pb::ExecutionStatus::Succeeded
        );
    }
}

cygnet_testkit::backend_tests!(
    a_heartbeat_listing_absurdly_many_jobs_costs_no_one_else_their_lease,
    one_customers_unmatched_backlog_never_delays_another_customers_run,
    a_tenant_doing_everything_at_once_leaves_another_untouched,
    many_watchers_of_one_execution_each_get_the_whole_log,
);
