//! PipelineService over the real protocol (agents in these tests are protocol agents that finish
//! jobs at once; the real agent is exercised in agent/tests): definitions and their validation,
//! parameters, roles, isolation, cancellation of queued work, retry, exactly-once dispatch, and
//! two replicas on one PostgreSQL database.

use std::collections::HashMap;
use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_testkit::{Backend, TestServer, assert_status, eventually, step};
use tonic::Code;

fn parameter(name: &str, kind: pb::ParameterType) -> pb::Parameter {
    pb::Parameter {
        name: name.into(),
        r#type: kind.into(),
        ..Default::default()
    }
}

fn create(customer_id: i64, name: &str, steps: Vec<pb::Step>) -> pb::CreatePipelineRequest {
    pb::CreatePipelineRequest {
        customer_id,
        name: name.into(),
        steps,
        ..Default::default()
    }
}

async fn executions(server: &TestServer, customer_id: i64) -> Vec<pb::Execution> {
    server
        .admin_pipelines()
        .list_executions(pb::ListExecutionsRequest {
            customer_id,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list executions")
        .into_inner()
        .executions
}

async fn definitions_are_validated_and_managed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let techstart = server.create_customer("techstart").await;
    let token = server.create_registration_token(techstart.id).await;
    let foreign_agent = server
        .register_agent(techstart.id, "tech-001", &token)
        .await
        .expect("agent");
    let mut admin = server.admin_pipelines();

    let mut dup_env = step("a", "x");
    dup_env.env.insert("1BAD".into(), "v".into());
    let mut escaping = step("a", "x");
    escaping.artifacts = vec!["../../etc/passwd".into()];
    let mut bad_shell = step("a", "x");
    bad_shell.shell = 42;
    let mut choice = parameter("ENV", pb::ParameterType::Choice);
    choice.choices = vec!["dev".into()];
    choice.default_value = "prod".into();
    let cases: Vec<(pb::CreatePipelineRequest, &str)> = vec![
        (create(acme.id, "", vec![step("a", "x")]), "name"),
        (create(acme.id, "p", vec![]), "steps"),
        (create(acme.id, "p", vec![step("", "x")]), "steps[0].name"),
        (
            create(acme.id, "p", vec![step("a", "x"), step("a", "y")]),
            "steps[1].name",
        ),
        (
            create(acme.id, "p", vec![step("a", "")]),
            "steps[0].command",
        ),
        (create(acme.id, "p", vec![dup_env]), "steps[0].env[1BAD]"),
        (
            create(acme.id, "p", vec![escaping]),
            "steps[0].artifacts[0]",
        ),
        (create(acme.id, "p", vec![bad_shell]), "steps[0].shell"),
        (
            pb::CreatePipelineRequest {
                parameters: vec![parameter("9X", pb::ParameterType::String)],
                ..create(acme.id, "p", vec![step("a", "x")])
            },
            "parameters[0].name",
        ),
        (
            pb::CreatePipelineRequest {
                parameters: vec![choice],
                ..create(acme.id, "p", vec![step("a", "x")])
            },
            "parameters[0].default_value",
        ),
        (
            pb::CreatePipelineRequest {
                parameters: vec![parameter("X", pb::ParameterType::Choice)],
                ..create(acme.id, "p", vec![step("a", "x")])
            },
            "parameters[0].choices",
        ),
        (
            pb::CreatePipelineRequest {
                timeout_seconds: 90_000,
                ..create(acme.id, "p", vec![step("a", "x")])
            },
            "timeout_seconds",
        ),
        (
            pb::CreatePipelineRequest {
                agent_selector: Some(pb::AgentSelector {
                    agent_id: -1,
                    labels: vec![],
                }),
                ..create(acme.id, "p", vec![step("a", "x")])
            },
            "agent_selector.agent_id",
        ),
        (create(0, "p", vec![step("a", "x")]), "customer_id"),
    ];
    for (request, field) in cases {
        assert_status(
            admin.create_pipeline(request).await,
            Code::InvalidArgument,
            field,
        );
    }
    // Another customer's agent cannot be selected: it does not exist here.
    assert_status(
        admin
            .create_pipeline(pb::CreatePipelineRequest {
                agent_selector: Some(pb::AgentSelector {
                    agent_id: foreign_agent.agent_id,
                    labels: vec![],
                }),
                ..create(acme.id, "p", vec![step("a", "x")])
            })
            .await,
        Code::NotFound,
        &format!("agent {} not found", foreign_agent.agent_id),
    );

    let created = server
        .create_pipeline(acme.id, "Build API", vec![step("build", "make")], vec![])
        .await;
    assert_eq!(created.timeout_seconds, 3600);
    assert_eq!(created.steps[0].shell(), pb::Shell::Bash);
    assert_status(
        admin
            .create_pipeline(create(acme.id, "Build API", vec![step("a", "x")]))
            .await,
        Code::AlreadyExists,
        "\"Build API\"",
    );
    // The same name in another customer is fine.
    server
        .create_pipeline(
            techstart.id,
            "Build API",
            vec![step("build", "make")],
            vec![],
        )
        .await;

    let updated = admin
        .update_pipeline(pb::UpdatePipelineRequest {
            customer_id: acme.id,
            pipeline_id: created.id,
            description: Some("the API".into()),
            steps: vec![step("build", "make"), step("test", "make test")],
            set_steps: true,
            timeout_seconds: Some(600),
            ..Default::default()
        })
        .await
        .expect("update")
        .into_inner()
        .pipeline
        .expect("pipeline");
    assert_eq!(updated.steps.len(), 2);
    assert_eq!(
        (updated.timeout_seconds, updated.description.as_str()),
        (600, "the API")
    );
    assert_eq!(updated.name, "Build API");
    assert_status(
        admin
            .update_pipeline(pb::UpdatePipelineRequest {
                customer_id: acme.id,
                pipeline_id: created.id,
                set_steps: true,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "steps",
    );

    admin
        .delete_pipeline(pb::DeletePipelineRequest {
            customer_id: acme.id,
            pipeline_id: created.id,
        })
        .await
        .expect("delete");
    assert_status(
        admin
            .get_pipeline(pb::GetPipelineRequest {
                customer_id: acme.id,
                pipeline_id: created.id,
            })
            .await,
        Code::NotFound,
        "not found",
    );
    assert_status(
        admin
            .run_pipeline(pb::RunPipelineRequest {
                customer_id: acme.id,
                pipeline_id: created.id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "not found",
    );
    // The name is free again.
    server
        .create_pipeline(acme.id, "Build API", vec![step("build", "make")], vec![])
        .await;
    let listed = admin
        .list_pipelines(pb::ListPipelinesRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .pipelines;
    assert_eq!(listed.len(), 1);
}

async fn runs_check_parameters_and_queued_work_can_be_cancelled_and_retried(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let mut version = parameter("VERSION", pb::ParameterType::String);
    version.required = true;
    let mut environment = parameter("ENVIRONMENT", pb::ParameterType::Choice);
    environment.choices = vec!["dev".into(), "prod".into()];
    environment.default_value = "dev".into();
    let pipeline = server
        .create_pipeline(
            acme.id,
            "deploy",
            vec![step("deploy", "echo {{VERSION}}"), step("verify", "true")],
            vec![
                version,
                environment,
                parameter("COUNT", pb::ParameterType::Number),
                parameter("DRY", pb::ParameterType::Boolean),
            ],
        )
        .await;
    let mut admin = server.admin_pipelines();
    let run = |parameters: &[(&str, &str)]| pb::RunPipelineRequest {
        customer_id: acme.id,
        pipeline_id: pipeline.id,
        parameters: parameters
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        agent_id: 0,
    };
    for (parameters, message) in [
        (vec![], "parameters[VERSION] is required"),
        (
            vec![("VERSION", "1"), ("COUNT", "many")],
            "parameters[COUNT] must be a number",
        ),
        (
            vec![("VERSION", "1"), ("DRY", "maybe")],
            "parameters[DRY] must be true or false",
        ),
        (
            vec![("VERSION", "1"), ("ENVIRONMENT", "qa")],
            "parameters[ENVIRONMENT] must be one of [dev, prod]",
        ),
        (
            vec![("VERSION", "1"), ("COLOUR", "red")],
            "parameters[COLOUR] is not a parameter of this pipeline",
        ),
    ] {
        assert_status(
            admin.run_pipeline(run(&parameters)).await,
            Code::InvalidArgument,
            message,
        );
    }
    assert_status(
        admin
            .run_pipeline(pb::RunPipelineRequest {
                agent_id: 424_242,
                ..run(&[("VERSION", "1")])
            })
            .await,
        Code::NotFound,
        "agent 424242 not found",
    );
    assert!(
        executions(&server, acme.id).await.is_empty(),
        "nothing was queued"
    );

    // No agent: the run waits, with its reason.
    let queued = admin
        .run_pipeline(run(&[("version", "1.0"), ("COUNT", "3")]))
        .await
        .expect("run")
        .into_inner()
        .execution
        .expect("execution");
    assert_eq!(queued.status(), pb::ExecutionStatus::Queued);
    assert_eq!(queued.parameters.len(), 3);
    assert_eq!(queued.steps.len(), 2);
    assert!(
        queued
            .steps
            .iter()
            .all(|step| step.status() == pb::StepStatus::Pending)
    );

    let cancelled = admin
        .cancel_execution(pb::CancelExecutionRequest {
            customer_id: acme.id,
            execution_id: queued.id,
        })
        .await
        .expect("cancel")
        .into_inner()
        .execution
        .expect("execution");
    assert_eq!(cancelled.status(), pb::ExecutionStatus::Cancelled);
    assert_eq!(cancelled.failure_reason, "cancelled by admin");
    assert!(
        cancelled
            .steps
            .iter()
            .all(|step| step.status() == pb::StepStatus::Skipped)
    );
    // Cancelling again changes nothing.
    let again = admin
        .cancel_execution(pb::CancelExecutionRequest {
            customer_id: acme.id,
            execution_id: queued.id,
        })
        .await
        .expect("cancel again")
        .into_inner()
        .execution
        .expect("execution");
    assert_eq!(again.finished_at, cancelled.finished_at);

    let retried = admin
        .retry_execution(pb::RetryExecutionRequest {
            customer_id: acme.id,
            execution_id: queued.id,
        })
        .await
        .expect("retry")
        .into_inner()
        .execution
        .expect("execution");
    assert_ne!(retried.id, queued.id);
    assert_eq!(retried.retry_of, queued.id);
    assert_eq!(retried.parameters, queued.parameters);
    assert_eq!(retried.status(), pb::ExecutionStatus::Queued);

    let filtered = admin
        .list_executions(pb::ListExecutionsRequest {
            customer_id: acme.id,
            status: pb::ExecutionStatus::Cancelled.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .executions;
    assert_eq!(
        filtered
            .iter()
            .map(|execution| execution.id)
            .collect::<Vec<_>>(),
        [queued.id]
    );
    let newest_first = executions(&server, acme.id).await;
    assert_eq!(
        newest_first
            .iter()
            .map(|execution| execution.id)
            .collect::<Vec<_>>(),
        [retried.id, queued.id]
    );
    let activity = server
        .admin_customers()
        .list_activity(pb::ListActivityRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("activity")
        .into_inner()
        .events;
    assert!(
        activity
            .iter()
            .any(|event| event.kind == "execution.cancelled")
    );
}

async fn roles_and_isolation(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let techstart = server.create_customer("techstart").await;
    let viewer = server.create_user("viewer").await;
    let developer = server.create_user("developer").await;
    let tess = server.create_user("tess").await;
    server
        .add_member(acme.id, viewer.id, pb::Role::Viewer)
        .await;
    server
        .add_member(acme.id, developer.id, pb::Role::Developer)
        .await;
    server
        .add_member(techstart.id, tess.id, pb::Role::Admin)
        .await;
    let pipeline = server
        .create_pipeline(acme.id, "build", vec![step("build", "make")], vec![])
        .await;
    let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;

    // A viewer reads but may not create, run or cancel.
    let mut as_viewer = server.pipelines(&viewer.token);
    as_viewer
        .get_execution(pb::GetExecutionRequest {
            customer_id: acme.id,
            execution_id: execution.id,
        })
        .await
        .expect("viewer reads");
    assert_status(
        as_viewer
            .create_pipeline(create(acme.id, "mine", vec![step("a", "x")]))
            .await,
        Code::PermissionDenied,
        "role viewer may not create or change pipelines",
    );
    assert_status(
        as_viewer
            .run_pipeline(pb::RunPipelineRequest {
                customer_id: acme.id,
                pipeline_id: pipeline.id,
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "run pipelines",
    );
    assert_status(
        as_viewer
            .cancel_execution(pb::CancelExecutionRequest {
                customer_id: acme.id,
                execution_id: execution.id,
            })
            .await,
        Code::PermissionDenied,
        "cancel",
    );
    // A developer runs.
    server
        .pipelines(&developer.token)
        .run_pipeline(pb::RunPipelineRequest {
            customer_id: acme.id,
            pipeline_id: pipeline.id,
            ..Default::default()
        })
        .await
        .expect("developer runs");

    // TechStart's admin sees nothing of Acme's pipelines, executions or logs.
    let mut as_tess = server.pipelines(&tess.token);
    let acme_missing = format!("customer {} not found", acme.id);
    assert_status(
        as_tess
            .get_pipeline(pb::GetPipelineRequest {
                customer_id: acme.id,
                pipeline_id: pipeline.id,
            })
            .await,
        Code::NotFound,
        &acme_missing,
    );
    assert_status(
        as_tess
            .list_pipelines(pb::ListPipelinesRequest {
                customer_id: acme.id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &acme_missing,
    );
    assert_status(
        as_tess
            .run_pipeline(pb::RunPipelineRequest {
                customer_id: acme.id,
                pipeline_id: pipeline.id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &acme_missing,
    );
    assert_status(
        as_tess
            .get_execution(pb::GetExecutionRequest {
                customer_id: acme.id,
                execution_id: execution.id,
            })
            .await,
        Code::NotFound,
        &acme_missing,
    );
    assert_status(
        as_tess
            .list_executions(pb::ListExecutionsRequest {
                customer_id: acme.id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &acme_missing,
    );
    assert_status(
        as_tess
            .cancel_execution(pb::CancelExecutionRequest {
                customer_id: acme.id,
                execution_id: execution.id,
            })
            .await,
        Code::NotFound,
        &acme_missing,
    );
    assert_status(
        as_tess
            .retry_execution(pb::RetryExecutionRequest {
                customer_id: acme.id,
                execution_id: execution.id,
            })
            .await,
        Code::NotFound,
        &acme_missing,
    );
    assert_status(
        as_tess
            .get_execution_logs(pb::GetExecutionLogsRequest {
                customer_id: acme.id,
                execution_id: execution.id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &acme_missing,
    );
    assert_status(
        as_tess
            .list_artifacts(pb::ListArtifactsRequest {
                customer_id: acme.id,
                execution_id: execution.id,
            })
            .await,
        Code::NotFound,
        &acme_missing,
    );
    assert_status(
        as_tess
            .download_artifact(pb::DownloadArtifactRequest {
                customer_id: acme.id,
                artifact_id: 1,
            })
            .await,
        Code::NotFound,
        &acme_missing,
    );
    assert_status(
        as_tess
            .watch_execution(pb::WatchExecutionRequest {
                customer_id: acme.id,
                execution_id: execution.id,
                after_sequence: 0,
            })
            .await,
        Code::NotFound,
        &acme_missing,
    );
    assert_status(
        as_tess
            .update_pipeline(pb::UpdatePipelineRequest {
                customer_id: acme.id,
                pipeline_id: pipeline.id,
                description: Some("x".into()),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &acme_missing,
    );
    assert_status(
        as_tess
            .delete_pipeline(pb::DeletePipelineRequest {
                customer_id: acme.id,
                pipeline_id: pipeline.id,
            })
            .await,
        Code::NotFound,
        &acme_missing,
    );
    // With her own customer id, Acme's ids simply do not exist.
    let pipeline_missing = format!("pipeline {} not found", pipeline.id);
    let execution_missing = format!("execution {} not found", execution.id);
    assert_status(
        as_tess
            .get_pipeline(pb::GetPipelineRequest {
                customer_id: techstart.id,
                pipeline_id: pipeline.id,
            })
            .await,
        Code::NotFound,
        &pipeline_missing,
    );
    assert_status(
        as_tess
            .run_pipeline(pb::RunPipelineRequest {
                customer_id: techstart.id,
                pipeline_id: pipeline.id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &pipeline_missing,
    );
    assert_status(
        as_tess
            .get_execution(pb::GetExecutionRequest {
                customer_id: techstart.id,
                execution_id: execution.id,
            })
            .await,
        Code::NotFound,
        &execution_missing,
    );
    assert_status(
        as_tess
            .cancel_execution(pb::CancelExecutionRequest {
                customer_id: techstart.id,
                execution_id: execution.id,
            })
            .await,
        Code::NotFound,
        &execution_missing,
    );
    assert_status(
        as_tess
            .retry_execution(pb::RetryExecutionRequest {
                customer_id: techstart.id,
                execution_id: execution.id,
            })
            .await,
        Code::NotFound,
        &execution_missing,
    );
    assert_status(
        as_tess
            .get_execution_logs(pb::GetExecutionLogsRequest {
                customer_id: techstart.id,
                execution_id: execution.id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &execution_missing,
    );
    assert_status(
        as_tess
            .list_artifacts(pb::ListArtifactsRequest {
                customer_id: techstart.id,
                execution_id: execution.id,
            })
            .await,
        Code::NotFound,
        &execution_missing,
    );
    assert_status(
        as_tess
            .watch_execution(pb::WatchExecutionRequest {
                customer_id: techstart.id,
                execution_id: execution.id,
                after_sequence: 0,
            })
            .await,
        Code::NotFound,
        &execution_missing,
    );
    // Acme's execution is untouched.
    let untouched = server.execution(acme.id, execution.id).await;
    assert_eq!(untouched.status(), pb::ExecutionStatus::Queued);
}

async fn every_execution_runs_exactly_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;
    let pipeline = server
        .create_pipeline(acme.id, "quick", vec![step("noop", "true")], vec![])
        .await;
    let mut workers = Vec::new();
    for index in 0..3 {
        let uuid = format!("acme-{index}");
        let registered = server
            .register_agent(acme.id, &uuid, &token)
            .await
            .expect("register");
        let agent = server
            .connect_agent(&uuid, &registered.credential)
            .await
            .expect("connect");
        workers.push(agent.work_instantly());
    }
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids.push(server.run_pipeline(acme.id, pipeline.id, &[]).await.id);
    }
    eventually(
        "all 60 executions succeeded",
        Duration::from_secs(60),
        || async {
            executions(&server, acme.id)
                .await
                .iter()
                .all(|execution| execution.status() == pb::ExecutionStatus::Succeeded)
        },
    )
    .await;
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for (received, _) in &workers {
        for id in received.lock().expect("received").iter() {
            *counts.entry(*id).or_default() += 1;
        }
    }
    assert_eq!(counts.len(), ids.len(), "none lost");
    assert!(
        counts.values().all(|count| *count == 1),
        "none run twice: {counts:?}"
    );
}

/// Two replicas on one PostgreSQL database, agents on both, executions created through both:
/// every execution runs exactly once and none is lost.
async fn two_replicas_share_the_work_exactly_once(backend: Backend) {
    if matches!(backend, Backend::Sqlite) {
        return; // SQLite is single-replica by design.
    }
    let first = TestServer::start(backend).await;
    let second = first.start_replica().await;
    let acme = first.create_customer("acme").await;
    let token = first.create_registration_token(acme.id).await;
    let pipeline = first
        .create_pipeline(acme.id, "quick", vec![step("noop", "true")], vec![])
        .await;
    let mut workers = Vec::new();
    for index in 0..4 {
        let replica = if index % 2 == 0 { &first } else { &second };
        let uuid = format!("acme-{index}");
        let registered = replica
            .register_agent(acme.id, &uuid, &token)
            .await
            .expect("register");
        let agent = replica
            .connect_agent(&uuid, &registered.credential)
            .await
            .expect("connect");
        workers.push(agent.work_instantly());
    }
    let total = 300;
    for index in 0..total {
        let replica = if index % 3 == 0 { &second } else { &first };
        replica.run_pipeline(acme.id, pipeline.id, &[]).await;
    }
    eventually(
        "every execution succeeded",
        Duration::from_secs(120),
        || async {
            let all = executions(&first, acme.id).await;
            all.len() == total
                && all
                    .iter()
                    .all(|execution| execution.status() == pb::ExecutionStatus::Succeeded)
        },
    )
    .await;
    let mut counts: HashMap<i64, usize> = HashMap::new();
    let mut per_replica = [0usize; 2];
    for (index, (received, _)) in workers.iter().enumerate() {
        let received = received.lock().expect("received");
        per_replica[index % 2] += received.len();
        for id in received.iter() {
            *counts.entry(*id).or_default() += 1;
        }
    }
    assert_eq!(counts.len(), total, "none lost");
    assert!(counts.values().all(|count| *count == 1), "none run twice");
    assert!(
        per_replica.iter().all(|count| *count > 0),
        "both replicas' agents got work: {per_replica:?}"
    );
}

/// The next job assignment on a protocol-level agent's stream.
async fn next_job(agent: &mut cygnet_testkit::ProtocolAgent) -> pb::JobAssignment {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), agent.inbound.message())
            .await
            .expect("a job within 10 s")
            .expect("stream open")
            .expect("a message");
        if let Some(pb::connect_response::Command::AssignJob(job)) = message.command {
            return job;
        }
    }
}

/// Events an agent sends back to back are stored together; one for another agent's execution
/// among them is refused alone (acknowledged so the agent drops it) and changes nothing there.
async fn a_burst_of_events_with_a_foreign_one_is_stored_exactly(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut agents = Vec::new();
    let mut executions = Vec::new();
    for name in ["acme", "globex"] {
        let customer = server.create_customer(name).await;
        let token = server.create_registration_token(customer.id).await;
        let uuid = format!("{name}-001");
        let registered = server
            .register_agent(customer.id, &uuid, &token)
            .await
            .expect("register");
        let mut agent = server
            .connect_agent(&uuid, &registered.credential)
            .await
            .expect("connect");
        let pipeline = server
            .create_pipeline(customer.id, "build", vec![step("build", "make")], vec![])
            .await;
        let execution = server.run_pipeline(customer.id, pipeline.id, &[]).await;
        assert_eq!(next_job(&mut agent).await.execution_id, execution.id);
        agents.push(agent);
        executions.push((customer.id, execution.id));
    }
    let (acme_id, mine) = executions[0];
    let (globex_id, theirs) = executions[1];
    let event =
        |execution_id: i64, sequence: i64, event: pb::job_event::Event| pb::ConnectRequest {
            message: Some(pb::connect_request::Message::JobEvent(pb::JobEvent {
                execution_id,
                sequence,
                occurred_at: None,
                event: Some(event),
            })),
        };
    let burst = [
        event(
            mine,
            1,
            pb::job_event::Event::Started(pb::JobStarted {
                workspace: "/w".into(),
            }),
        ),
        event(
            theirs,
            1,
            pb::job_event::Event::Started(pb::JobStarted {
                workspace: "/stolen".into(),
            }),
        ),
        event(
            mine,
            2,
            pb::job_event::Event::Log(pb::LogOutput {
                step_index: 0,
                stream: pb::LogStream::Stdout.into(),
                text: "built\n".into(),
            }),
        ),
        event(
            mine,
            3,
            pb::job_event::Event::Finished(pb::JobFinished {
                status: pb::ExecutionStatus::Succeeded.into(),
                reason: String::new(),
            }),
        ),
    ];
    let acme_agent = &mut agents[0];
    for message in burst {
        acme_agent.sender.send(message).await.expect("stream open");
    }
    // Acknowledgements: the foreign event with i64::MAX, ours up to 3.
    let mut acknowledged = HashMap::new();
    while acknowledged.get(&mine) != Some(&3) || !acknowledged.contains_key(&theirs) {
        let message = tokio::time::timeout(Duration::from_secs(10), acme_agent.inbound.message())
            .await
            .expect("acknowledgements within 10 s")
            .expect("stream open")
            .expect("a message");
        if let Some(pb::connect_response::Command::EventAck(ack)) = message.command {
            acknowledged.insert(ack.execution_id, ack.sequence);
        }
    }
    assert_eq!(acknowledged[&theirs], i64::MAX);
    let finished = server.execution(acme_id, mine).await;
    assert_eq!(finished.status(), pb::ExecutionStatus::Succeeded);
    let logs = server.logs(acme_id, mine).await;
    assert_eq!(
        logs.iter().map(|chunk| chunk.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(logs.iter().any(|chunk| chunk.text == "built\n"));
    // The other customer's execution is untouched.
    let untouched = server.execution(globex_id, theirs).await;
    assert_eq!(untouched.status(), pb::ExecutionStatus::Assigned);
    assert!(server.logs(globex_id, theirs).await.is_empty());
}

cygnet_testkit::backend_tests!(
    definitions_are_validated_and_managed,
    runs_check_parameters_and_queued_work_can_be_cancelled_and_retried,
    roles_and_isolation,
    every_execution_runs_exactly_once,
    two_replicas_share_the_work_exactly_once,
    a_burst_of_events_with_a_foreign_one_is_stored_exactly,
);
