//! Pipeline schedules: managed through PipelineService with precise refusals and the pipeline's
//! roles; fired with a test clock (`Scheduler::fire_due` at chosen times, not real minutes):
//! each tick runs once, also with two schedulers on one database firing together (replicas);
//! missed ticks run once; a schedule whose pipeline is deleted or whose customer is
//! deactivated stops; a full queue skips a tick and says so.

use chrono::{DateTime, Duration, Utc};
use cygnet_proto::v1 as pb;
use cygnet_server::scheduler::Scheduler;
use cygnet_server::store::{DatabaseOptions, Fired, Store};
use cygnet_testkit::{Backend, TestServer, assert_invalid, assert_status, step};
use tonic::Code;

fn schedule_request(customer_id: i64, pipeline_id: i64, cron: &str) -> pb::CreateScheduleRequest {
    pb::CreateScheduleRequest {
        customer_id,
        pipeline_id,
        cron: cron.into(),
        time_zone: "Europe/Berlin".into(),
        ..Default::default()
    }
}

async fn scheduler(server: &TestServer) -> (Scheduler, Store) {
    let store = Store::connect(&DatabaseOptions {
        url: server.database_url.clone(),
        max_connections: 2,
    })
    .await
    .expect("connect");
    (Scheduler::new(&store), store)
}

fn time(timestamp: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    let at = timestamp.expect("a time");
    DateTime::from_timestamp(at.seconds, at.nanos as u32).expect("valid")
}

fn queued(outcomes: &[(cygnet_server::domain::ScheduleId, Fired)]) -> Vec<i64> {
    outcomes
        .iter()
        .filter_map(|(_, fired)| match fired {
            Fired::Queued(execution) => Some(execution.get()),
            _ => None,
        })
        .collect()
}

async fn schedules_are_managed_with_precise_refusals(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let globex = server.create_customer("globex").await;
    let dev = server
        .create_member(acme.id, "dev", pb::Role::Developer)
        .await;
    let viewer = server
        .create_member(acme.id, "viewer", pb::Role::Viewer)
        .await;
    let pipeline = server
        .create_pipeline(
            acme.id,
            "Nightly",
            vec![step("build", "make")],
            vec![pb::Parameter {
                name: "TARGET".into(),
                r#type: pb::ParameterType::String as i32,
                required: true,
                ..Default::default()
            }],
        )
        .await;
    let mut pipelines = server.pipelines(&dev.token);
    let mut with_target = schedule_request(acme.id, pipeline.id, "0 2 * * *");
    with_target
        .parameters
        .insert("TARGET".into(), "release".into());

    for (cron, zone, field) in [
        ("every night", "UTC", "cron"),
        ("* * * * * *", "UTC", "cron"),
        ("0 2 * * *", "Moon/Base", "time_zone"),
    ] {
        let mut request = with_target.clone();
        request.cron = cron.into();
        request.time_zone = zone.into();
        assert_invalid(
            "CreateSchedule",
            pipelines.create_schedule(request).await,
            field,
        );
    }
    // Parameters are checked against the pipeline now, not at 2 a.m.
    assert_invalid(
        "CreateSchedule",
        pipelines
            .create_schedule(schedule_request(acme.id, pipeline.id, "0 2 * * *"))
            .await,
        "parameters",
    );
    assert_status(
        server
            .pipelines(&viewer.token)
            .create_schedule(with_target.clone())
            .await,
        Code::PermissionDenied,
        "",
    );
    // A parameter named like one of the pipeline's secrets is refused, as for RunPipeline:
    // the attack of a member who may schedule but not read or set secrets.
    let group = server
        .create_group_with_secret(
            acme.id,
            "production",
            "DB_PASSWORD",
            "s3cret-database-password",
        )
        .await;
    let deploy = server
        .admin_pipelines()
        .create_pipeline(pb::CreatePipelineRequest {
            customer_id: acme.id,
            name: "Deploy".into(),
            steps: vec![step("ship", "./ship.sh")],
            parameters: vec![pb::Parameter {
                name: "DB_PASSWORD".into(),
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
    let mut stealing = schedule_request(acme.id, deploy.id, "0 3 * * *");
    stealing
        .parameters
        .insert("DB_PASSWORD".into(), "attacker-chosen".into());
    assert_invalid(
        "CreateSchedule",
        pipelines.create_schedule(stealing.clone()).await,
        "parameters[DB_PASSWORD]",
    );
    // Names match definitions whatever their case: so does the refusal.
    stealing.parameters.clear();
    stealing
        .parameters
        .insert("db_password".into(), "attacker-chosen".into());
    assert_invalid(
        "CreateSchedule",
        pipelines.create_schedule(stealing).await,
        "parameters[db_password]",
    );

    let created = pipelines
        .create_schedule(with_target.clone())
        .await
        .expect("create")
        .into_inner()
        .schedule
        .expect("schedule");
    assert!(created.enabled);
    assert_eq!(created.time_zone, "Europe/Berlin");
    let next = time(created.next_run_at.as_ref());
    assert!(next > Utc::now() && next - Utc::now() <= Duration::days(1));
    // 02:00 in Berlin is 01:00 or 00:00 UTC.
    assert!(
        next.format("%H:%M").to_string() == "01:00" || next.format("%H:%M").to_string() == "00:00"
    );

    // Another customer's id in the path is as unknown as a missing one.
    let outsider = server
        .create_member(globex.id, "outsider", pb::Role::Admin)
        .await;
    assert_status(
        server
            .pipelines(&outsider.token)
            .create_schedule(pb::CreateScheduleRequest {
                customer_id: globex.id,
                ..with_target.clone()
            })
            .await,
        Code::NotFound,
        "",
    );
    assert_status(
        server
            .pipelines(&outsider.token)
            .delete_schedule(pb::DeleteScheduleRequest {
                customer_id: globex.id,
                schedule_id: created.id,
            })
            .await,
        Code::NotFound,
        "",
    );

    let disabled = pipelines
        .update_schedule(pb::UpdateScheduleRequest {
            customer_id: acme.id,
            schedule_id: created.id,
            enabled: Some(false),
            ..Default::default()
        })
        .await
        .expect("disable")
        .into_inner()
        .schedule
        .expect("schedule");
    assert!(!disabled.enabled && disabled.next_run_at.is_none());
    assert_invalid(
        "UpdateSchedule",
        pipelines
            .update_schedule(pb::UpdateScheduleRequest {
                customer_id: acme.id,
                schedule_id: created.id,
                cron: Some("61 * * * *".into()),
                ..Default::default()
            })
            .await,
        "cron",
    );
    let listed = server
        .pipelines(&viewer.token)
        .list_schedules(pb::ListSchedulesRequest {
            customer_id: acme.id,
            pipeline_id: pipeline.id,
            ..Default::default()
        })
        .await
        .expect("viewers read schedules")
        .into_inner()
        .schedules;
    assert_eq!(listed.len(), 1);

    // The `schedules` quota bounds how many a customer keeps.
    server
        .admin_customers()
        .set_customer_quotas(pb::SetCustomerQuotasRequest {
            customer_id: acme.id,
            limits: [("schedules".to_owned(), 1)].into(),
            reset: vec![],
        })
        .await
        .expect("quota");
    assert_status(
        pipelines.create_schedule(with_target.clone()).await,
        Code::ResourceExhausted,
        "quota schedules",
    );
    pipelines
        .delete_schedule(pb::DeleteScheduleRequest {
            customer_id: acme.id,
            schedule_id: created.id,
        })
        .await
        .expect("delete");
    pipelines
        .create_schedule(with_target)
        .await
        .expect("room again");
}

async fn each_tick_runs_once_and_missed_ticks_run_once(backend: Backend) {
    let server = TestServer::start_with(
        backend,
        cygnet_testkit::TestOptions {
            web: true,
            ..Default::default()
        },
    )
    .await;
    let acme = server.create_customer("acme").await;
    let dev = server
        .create_member(acme.id, "dev", pb::Role::Developer)
        .await;
    let pipeline = server
        .create_pipeline(acme.id, "Nightly", vec![step("build", "true")], vec![])
        .await;
    let created = server
        .pipelines(&dev.token)
        .create_schedule(schedule_request(acme.id, pipeline.id, "*/5 * * * *"))
        .await
        .expect("create")
        .into_inner()
        .schedule
        .expect("schedule");
    let tick = time(created.next_run_at.as_ref());
    let (scheduler, _store) = scheduler(&server).await;

    assert!(
        scheduler
            .fire_due(tick - Duration::seconds(1))
            .await
            .expect("fire")
            .is_empty(),
        "nothing before its tick"
    );
    let first = scheduler.fire_due(tick).await.expect("fire");
    let runs = queued(&first);
    assert_eq!(runs.len(), 1, "{first:?}");
    assert!(
        scheduler.fire_due(tick).await.expect("fire").is_empty(),
        "a tick runs once"
    );
    let execution = server.execution(acme.id, runs[0]).await;
    let trigger = execution.trigger.expect("a trigger");
    assert_eq!(trigger.kind(), pb::TriggerKind::Schedule);
    assert_eq!((trigger.schedule_id, trigger.user_id), (created.id, dev.id));
    // The execution page says which schedule started it, on whose behalf.
    let web = server.web_address.expect("web on");
    let session = cygnet_testkit::web_client::sign_in(web, &dev.token).await;
    let page = cygnet_testkit::web_client::http(
        web,
        "GET",
        &format!("/c/{}/executions/{}", acme.id, runs[0]),
        Some(&session),
        None,
    )
    .await;
    assert!(
        page.body.contains(&format!(
            r#"Started by <a href="/c/{}/pipelines/{}#schedules">schedule {}</a> of dev"#,
            acme.id, pipeline.id, created.id
        )),
        "{}",
        page.body
    );

    // An hour with no server: twelve ticks missed, one run when it is back.
    let back = tick + Duration::hours(1) + Duration::seconds(30);
    let after_outage = scheduler.fire_due(back).await.expect("fire");
    assert_eq!(queued(&after_outage).len(), 1, "{after_outage:?}");
    assert!(scheduler.fire_due(back).await.expect("fire").is_empty());
    let schedule = server
        .pipelines(&dev.token)
        .list_schedules(pb::ListSchedulesRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .schedules
        .remove(0);
    let next = time(schedule.next_run_at.as_ref());
    assert!(next > back && next - back <= Duration::minutes(5), "{next}");
    assert_eq!(schedule.last_execution_id, queued(&after_outage)[0]);
    let scheduled = server
        .admin_pipelines()
        .list_executions(pb::ListExecutionsRequest {
            customer_id: acme.id,
            trigger_kind: pb::TriggerKind::Schedule as i32,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .executions;
    assert_eq!(scheduled.len(), 2);
}

/// Two schedulers on one database (as two replicas), firing the same ticks at once: every
/// tick runs exactly once.
async fn replicas_fire_each_tick_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let pipeline = server
        .create_pipeline(acme.id, "Hourly", vec![step("build", "true")], vec![])
        .await;
    let mut ticks = Vec::new();
    for minute in 0..20 {
        let created = server
            .admin_pipelines()
            .create_schedule(pb::CreateScheduleRequest {
                time_zone: "UTC".into(),
                ..schedule_request(acme.id, pipeline.id, &format!("{minute} * * * *"))
            })
            .await
            .expect("create")
            .into_inner()
            .schedule
            .expect("schedule");
        ticks.push(time(created.next_run_at.as_ref()));
    }
    let at = ticks.iter().max().copied().expect("ticks") + Duration::seconds(1);
    let (one, _one_store) = scheduler(&server).await;
    let (two, _two_store) = scheduler(&server).await;
    let (first, second) = tokio::join!(one.fire_due(at), two.fire_due(at));
    let mut runs = queued(&first.expect("one"));
    runs.extend(queued(&second.expect("two")));
    runs.sort_unstable();
    runs.dedup();
    assert_eq!(runs.len(), 20, "each of the 20 ticks ran once");
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
    assert_eq!(executions.len(), 20);
}

async fn schedules_stop_with_their_pipeline_or_customer_and_skip_a_full_queue(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let pipelines: Vec<pb::Pipeline> = two_pipelines(&server, acme.id).await;
    let mut ticks = Vec::new();
    for pipeline in &pipelines {
        let created = server
            .admin_pipelines()
            .create_schedule(schedule_request(acme.id, pipeline.id, "0 * * * *"))
            .await
            .expect("create")
            .into_inner()
            .schedule
            .expect("schedule");
        ticks.push((created.id, time(created.next_run_at.as_ref())));
    }
    let (scheduler, _store) = scheduler(&server).await;
    // A full queue: the tick is skipped with the quota named, the schedule carries on.
    server
        .admin_customers()
        .set_customer_quotas(pb::SetCustomerQuotasRequest {
            customer_id: acme.id,
            limits: [("queued_executions".to_owned(), 1)].into(),
            reset: vec![],
        })
        .await
        .expect("quota");
    // No agent: this run stays queued and fills the queue.
    server.run_pipeline(acme.id, pipelines[1].id, &[]).await;
    let at = ticks[0].1;
    let outcomes = scheduler.fire_due(at).await.expect("fire");
    assert!(
        outcomes.iter().all(|(_, fired)| matches!(
            fired,
            Fired::Skipped(reason) if reason.contains("queued_executions")
        )),
        "{outcomes:?}"
    );
    let schedules = |server: &TestServer| {
        let mut client = server.admin_pipelines();
        async move {
            client
                .list_schedules(pb::ListSchedulesRequest {
                    customer_id: acme.id,
                    ..Default::default()
                })
                .await
                .expect("list")
                .into_inner()
                .schedules
        }
    };
    let after = schedules(&server).await;
    assert!(after.iter().all(|schedule| schedule.enabled));
    assert!(after[0].last_error.contains("quota queued_executions"));

    // Its pipeline deleted: the schedule stops.
    server
        .admin_customers()
        .set_customer_quotas(pb::SetCustomerQuotasRequest {
            customer_id: acme.id,
            limits: Default::default(),
            reset: vec!["queued_executions".to_owned()],
        })
        .await
        .expect("quota");
    server
        .admin_pipelines()
        .delete_pipeline(pb::DeletePipelineRequest {
            customer_id: acme.id,
            pipeline_id: pipelines[0].id,
        })
        .await
        .expect("delete");
    let later = at + Duration::hours(1);
    let outcomes = scheduler.fire_due(later).await.expect("fire");
    assert_eq!(
        queued(&outcomes).len(),
        1,
        "the other schedule ran: {outcomes:?}"
    );
    let after = schedules(&server).await;
    let stopped = after
        .iter()
        .find(|schedule| schedule.pipeline_id == pipelines[0].id)
        .expect("kept");
    assert!(!stopped.enabled && stopped.next_run_at.is_none());
    assert_eq!(stopped.last_error, "stopped: the pipeline was deleted");

    // The customer deactivated: the rest stop too.
    server
        .admin_customers()
        .deactivate_customer(pb::DeactivateCustomerRequest {
            customer_id: acme.id,
        })
        .await
        .expect("deactivate");
    let outcomes = scheduler
        .fire_due(later + Duration::hours(1))
        .await
        .expect("fire");
    assert!(queued(&outcomes).is_empty(), "{outcomes:?}");
    let after = schedules(&server).await;
    assert!(after.iter().all(|schedule| !schedule.enabled), "{after:?}");
    assert!(
        after
            .iter()
            .any(|schedule| schedule.last_error == "stopped: the customer is deactivated")
    );
}

/// Runs are on the creator's behalf: a creator demoted to a role that may not run pipelines
/// (or removed) stops their schedules instead of running work they could no longer start.
async fn a_schedule_stops_when_its_creator_loses_the_role(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let dev = server
        .create_member(acme.id, "dev", pb::Role::Developer)
        .await;
    let pipeline = server
        .create_pipeline(acme.id, "Nightly", vec![step("build", "true")], vec![])
        .await;
    let created = server
        .pipelines(&dev.token)
        .create_schedule(schedule_request(acme.id, pipeline.id, "0 * * * *"))
        .await
        .expect("create")
        .into_inner()
        .schedule
        .expect("schedule");
    server
        .admin_customers()
        .update_member(pb::UpdateMemberRequest {
            customer_id: acme.id,
            user_id: dev.id,
            role: pb::Role::Viewer as i32,
        })
        .await
        .expect("demote");
    let (scheduler, _store) = scheduler(&server).await;
    let outcomes = scheduler
        .fire_due(time(created.next_run_at.as_ref()))
        .await
        .expect("fire");
    assert_eq!(
        outcomes
            .iter()
            .map(|(_, fired)| fired.clone())
            .collect::<Vec<_>>(),
        [Fired::Skipped(
            "stopped: the member it runs for may no longer run this pipeline".to_owned()
        )]
    );
    let schedule = server
        .admin_pipelines()
        .list_schedules(pb::ListSchedulesRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .schedules
        .remove(0);
    assert!(!schedule.enabled && schedule.next_run_at.is_none());
}

async fn two_pipelines(server: &TestServer, customer_id: i64) -> Vec<pb::Pipeline> {
    let mut pipelines = Vec::new();
    for name in ["One", "Two"] {
        pipelines.push(
            server
                .create_pipeline(customer_id, name, vec![step("build", "true")], vec![])
                .await,
        );
    }
    pipelines
}

cygnet_testkit::backend_tests!(
    a_schedule_stops_when_its_creator_loses_the_role,
    schedules_are_managed_with_precise_refusals,
    each_tick_runs_once_and_missed_ticks_run_once,
    replicas_fire_each_tick_once,
    schedules_stop_with_their_pipeline_or_customer_and_skip_a_full_queue,
);
