//! AgentService over the real protocol: registration and its refusals, stream authentication,
//! heartbeats, liveness, operator RPCs, roles and isolation. The real `cygnet-agent` process is
//! exercised in `agent/tests/`.

use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_testkit::{Backend, TestOptions, TestServer, assert_status, eventually, heartbeat};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, Database};
use tonic::Code;

fn fast_heartbeats() -> TestOptions {
    TestOptions {
        agents: cygnet_server::config::AgentSettings {
            heartbeat_interval: Duration::from_secs(1),
            sample_interval: Duration::from_secs(1),
            retention: Duration::from_secs(3600),
            grace: Duration::from_secs(60),
            ..Default::default()
        },
        ..TestOptions::default()
    }
}

async fn agent(server: &TestServer, customer_id: i64, agent_id: i64) -> pb::Agent {
    server
        .admin_agents()
        .get_agent(pb::GetAgentRequest {
            customer_id,
            agent_id,
        })
        .await
        .expect("get agent")
        .into_inner()
        .agent
        .expect("agent")
}

async fn agent_count(server: &TestServer, customer_id: i64) -> usize {
    server
        .admin_agents()
        .list_agents(pb::ListAgentsRequest {
            customer_id,
            ..Default::default()
        })
        .await
        .expect("list agents")
        .into_inner()
        .agents
        .len()
}

async fn use_count(server: &TestServer, customer_id: i64) -> Vec<i64> {
    server
        .admin_agents()
        .list_registration_tokens(pb::ListRegistrationTokensRequest {
            customer_id,
            ..Default::default()
        })
        .await
        .expect("list tokens")
        .into_inner()
        .tokens
        .iter()
        .map(|token| token.use_count)
        .collect()
}

async fn activity(server: &TestServer, customer_id: i64) -> Vec<String> {
    server
        .admin_customers()
        .list_activity(pb::ListActivityRequest {
            customer_id,
            ..Default::default()
        })
        .await
        .expect("activity")
        .into_inner()
        .events
        .into_iter()
        .map(|event| event.kind)
        .collect()
}

async fn registration_refusals_write_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let techstart = server.create_customer("techstart").await;
    let inactive = server.create_customer("sleepy").await;
    let acme_token = server.create_registration_token(acme.id).await;
    let techstart_token = server.create_registration_token(techstart.id).await;
    let inactive_token = server.create_registration_token(inactive.id).await;
    server
        .admin_customers()
        .deactivate_customer(pb::DeactivateCustomerRequest {
            customer_id: inactive.id,
        })
        .await
        .expect("deactivate");
    // acme-001 belongs to Acme.
    server
        .register_agent(acme.id, "acme-001", &acme_token)
        .await
        .expect("first registration");
    let acme_uses = use_count(&server, acme.id).await;

    // Wrong, foreign, revoked, expired and used-up tokens: UNAUTHENTICATED.
    assert_status(
        server
            .register_agent(acme.id, "acme-002", "cygr_wrong")
            .await,
        Code::Unauthenticated,
        "not valid for customer",
    );
    assert_status(
        server
            .register_agent(acme.id, "acme-002", &techstart_token)
            .await,
        Code::Unauthenticated,
        "not valid for customer",
    );
    let revoked = server
        .admin_agents()
        .create_registration_token(pb::CreateRegistrationTokenRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("token")
        .into_inner();
    server
        .admin_agents()
        .revoke_registration_token(pb::RevokeRegistrationTokenRequest {
            customer_id: acme.id,
            token_id: revoked.token.as_ref().expect("token").id,
        })
        .await
        .expect("revoke");
    assert_status(
        server
            .register_agent(acme.id, "acme-002", &revoked.secret)
            .await,
        Code::Unauthenticated,
        "revoked",
    );
    let once = server
        .admin_agents()
        .create_registration_token(pb::CreateRegistrationTokenRequest {
            customer_id: acme.id,
            max_uses: 1,
            ..Default::default()
        })
        .await
        .expect("token")
        .into_inner();
    server
        .register_agent(acme.id, "acme-003", &once.secret)
        .await
        .expect("the one use");
    assert_status(
        server
            .register_agent(acme.id, "acme-004", &once.secret)
            .await,
        Code::Unauthenticated,
        "used up",
    );
    let expiring = server
        .admin_agents()
        .create_registration_token(pb::CreateRegistrationTokenRequest {
            customer_id: acme.id,
            expires_at: Some(prost_types::Timestamp {
                seconds: 4_102_444_800,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .expect("token")
        .into_inner();
    let db = Database::connect(&server.database_url)
        .await
        .expect("connect");
    let past = chrono::DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
        .expect("date")
        .with_timezone(&chrono::Utc);
    db.execute(
        &Query::update()
            .table("registration_tokens")
            .value("expires_at", past)
            .and_where(Expr::col("id").eq(expiring.token.as_ref().expect("token").id))
            .to_owned(),
    )
    .await
    .expect("expire");
    db.close().await.expect("close");
    assert_status(
        server
            .register_agent(acme.id, "acme-005", &expiring.secret)
            .await,
        Code::Unauthenticated,
        "expired",
    );

    // Unknown and inactive customers answer exactly like a wrong token: nothing tells an
    // unauthenticated caller which customer ids are active.
    let unknown = server
        .register_agent(987_654, "x-1", &acme_token)
        .await
        .expect_err("unknown customer");
    let asleep = server
        .register_agent(inactive.id, "x-1", &inactive_token)
        .await
        .expect_err("inactive customer");
    let wrong = server
        .register_agent(acme.id, "x-1", "cygr_wrong")
        .await
        .expect_err("wrong token");
    for refused in [&unknown, &asleep, &wrong] {
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    assert_eq!(
        unknown.message().replace("987654", "N"),
        asleep.message().replace(&inactive.id.to_string(), "N")
    );
    assert_eq!(
        unknown.message().replace("987654", "N"),
        wrong.message().replace(&acme.id.to_string(), "N")
    );

    // Bad fields: INVALID_ARGUMENT naming them.
    for (uuid, field) in [
        ("", "uuid"),
        ("has space", "uuid"),
        (&"u".repeat(129) as &str, "uuid"),
    ] {
        assert_status(
            server.register_agent(acme.id, uuid, &acme_token).await,
            Code::InvalidArgument,
            field,
        );
    }
    assert_status(
        server.register_agent(acme.id, "acme-009", "").await,
        Code::InvalidArgument,
        "registration_token",
    );
    assert_status(
        server.register_agent(0, "acme-009", &acme_token).await,
        Code::InvalidArgument,
        "customer_id",
    );
    let mut oversized = pb::RegisterAgentRequest {
        customer_id: acme.id,
        uuid: "acme-010".into(),
        name: "n".repeat(201),
        registration_token: acme_token.clone(),
        ..Default::default()
    };
    assert_status(
        cygnet_proto::v1::agent_service_client::AgentServiceClient::new(server.channel())
            .register_agent(oversized.clone())
            .await,
        Code::InvalidArgument,
        "name",
    );
    oversized.name = "ok".into();
    oversized.labels = vec!["bad label".into()];
    assert_status(
        cygnet_proto::v1::agent_service_client::AgentServiceClient::new(server.channel())
            .register_agent(oversized)
            .await,
        Code::InvalidArgument,
        "labels[0]",
    );

    // Nothing of all that was written.
    assert_eq!(
        agent_count(&server, acme.id).await,
        2,
        "acme-001 and acme-003"
    );
    assert_eq!(agent_count(&server, techstart.id).await, 0);
    assert_eq!(use_count(&server, techstart.id).await, [0]);
    let acme_uses_after = use_count(&server, acme.id).await;
    assert_eq!(
        acme_uses_after.last(),
        acme_uses.last(),
        "the first token's count is unchanged"
    );
    let registered = activity(&server, acme.id).await;
    assert_eq!(
        registered
            .iter()
            .filter(|kind| *kind == "agent.registered")
            .count(),
        2
    );
    assert!(activity(&server, techstart.id).await.is_empty());
}

async fn reregistration_keeps_the_id_and_revokes_the_old_credential(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;
    let first = server
        .register_agent(acme.id, "acme-001", &token)
        .await
        .expect("register");
    assert_eq!(first.heartbeat_interval_seconds, 10);
    assert!(first.credential.starts_with("cyga_"));
    let connected = server
        .connect_agent("acme-001", &first.credential)
        .await
        .expect("connect");
    assert_eq!(connected.welcome.agent_id, first.agent_id);
    assert_eq!(connected.welcome.customer_id, acme.id);

    let second = cygnet_proto::v1::agent_service_client::AgentServiceClient::new(server.channel())
        .register_agent(pb::RegisterAgentRequest {
            customer_id: acme.id,
            uuid: "acme-001".into(),
            registration_token: token.clone(),
            current_credential: first.credential.clone(),
            ..Default::default()
        })
        .await
        .expect("register again with the current credential")
        .into_inner();
    assert_eq!(second.agent_id, first.agent_id, "same agent");
    assert_ne!(second.credential, first.credential, "fresh credential");
    // The open stream with the old credential is ended, and the old credential is refused.
    let ended = connected.closed_with().await.expect("ended with a status");
    assert_eq!(ended.code(), Code::Unauthenticated);
    assert_status(
        server.connect_agent("acme-001", &first.credential).await,
        Code::Unauthenticated,
        "not valid",
    );
    server
        .connect_agent("acme-001", &second.credential)
        .await
        .expect("new credential works");
    assert_eq!(agent_count(&server, acme.id).await, 1);
    assert!(
        activity(&server, acme.id)
            .await
            .contains(&"agent.reregistered".to_owned())
    );
}

async fn stream_authentication_refuses_borrowed_credentials(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;
    let one = server
        .register_agent(acme.id, "acme-001", &token)
        .await
        .expect("one");
    server
        .register_agent(acme.id, "acme-002", &token)
        .await
        .expect("two");
    // acme-001's credential presented as acme-002.
    assert_status(
        server.connect_agent("acme-002", &one.credential).await,
        Code::Unauthenticated,
        "does not belong",
    );
    // A user token is not an agent credential.
    assert_status(
        server
            .connect_agent("acme-001", cygnet_testkit::ADMIN_TOKEN)
            .await,
        Code::Unauthenticated,
        "not valid",
    );
    assert_status(
        server.connect_agent("acme-001", "").await,
        Code::Unauthenticated,
        "authorization",
    );
    // Nothing of that made anyone online.
    let listed = server
        .admin_agents()
        .list_agents(pb::ListAgentsRequest {
            customer_id: acme.id,
            status: pb::AgentStatus::Online.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .agents;
    assert!(listed.is_empty());
}

async fn heartbeats_liveness_and_history(backend: Backend) {
    let server = TestServer::start_with(backend, fast_heartbeats()).await;
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;
    let registered = server
        .register_agent(acme.id, "acme-001", &token)
        .await
        .expect("register");
    assert_eq!(registered.heartbeat_interval_seconds, 1);
    let before = agent(&server, acme.id, registered.agent_id).await;
    assert_eq!(before.status(), pb::AgentStatus::Offline);
    assert!(before.last_seen_at.is_none() && before.latest.is_none());

    let stream = server
        .connect_agent("acme-001", &registered.credential)
        .await
        .expect("connect");
    // Online at once, with the figures of the first heartbeat; absurd values are clamped.
    stream.heartbeat(heartbeat(f64::NAN, 250.0)).await;
    eventually("figures visible", Duration::from_secs(2), || async {
        agent(&server, acme.id, registered.agent_id)
            .await
            .latest
            .is_some()
    })
    .await;
    let online = agent(&server, acme.id, registered.agent_id).await;
    assert_eq!(online.status(), pb::AgentStatus::Online);
    let latest = online.latest.expect("latest");
    assert_eq!((latest.cpu_percent, latest.memory_percent), (0.0, 100.0));
    assert_eq!(latest.memory_total_bytes, 8 << 30);

    // Figures reach the database and the history within a flush or two.
    stream.heartbeat(heartbeat(42.0, 50.0)).await;
    eventually("history sampled", Duration::from_secs(5), || async {
        let samples = server
            .admin_agents()
            .get_agent_metrics(pb::GetAgentMetricsRequest {
                customer_id: acme.id,
                agent_id: registered.agent_id,
                ..Default::default()
            })
            .await
            .expect("metrics")
            .into_inner()
            .samples;
        samples.iter().any(|sample| sample.cpu_percent == 42.0)
    })
    .await;

    // A second stream replaces the first (ABORTED for the old one) and the agent stays online.
    let replacement = server
        .connect_agent("acme-001", &registered.credential)
        .await
        .expect("second connect");
    assert_eq!(
        stream.closed_with().await.expect("status").code(),
        Code::Aborted
    );
    assert_eq!(
        agent(&server, acme.id, registered.agent_id).await.status(),
        pb::AgentStatus::Online
    );

    // Silence: no heartbeat for 3 intervals ⇒ offline, the stream ended, last_seen kept.
    let silent_since = std::time::Instant::now();
    eventually("silent agent offline", Duration::from_secs(6), || async {
        agent(&server, acme.id, registered.agent_id).await.status() == pb::AgentStatus::Offline
    })
    .await;
    assert!(
        silent_since.elapsed() >= Duration::from_secs(2),
        "not before ~3 intervals"
    );
    assert_eq!(
        replacement.closed_with().await.expect("status").code(),
        Code::DeadlineExceeded
    );
    let offline = agent(&server, acme.id, registered.agent_id).await;
    assert!(offline.last_seen_at.is_some());

    // Closing the stream makes it offline at once.
    let again = server
        .connect_agent("acme-001", &registered.credential)
        .await
        .expect("third connect");
    assert_eq!(
        agent(&server, acme.id, registered.agent_id).await.status(),
        pb::AgentStatus::Online
    );
    drop(again);
    eventually("closed stream offline", Duration::from_secs(1), || async {
        agent(&server, acme.id, registered.agent_id).await.status() == pb::AgentStatus::Offline
    })
    .await;
    let kinds = activity(&server, acme.id).await;
    assert_eq!(
        kinds.iter().filter(|kind| *kind == "agent.online").count(),
        2
    );
    assert_eq!(
        kinds.iter().filter(|kind| *kind == "agent.offline").count(),
        2
    );
}

async fn operator_rpcs_and_roles(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let devops = server.create_user("ops").await;
    let developer = server.create_user("dev1").await;
    server
        .add_member(acme.id, devops.id, pb::Role::Devops)
        .await;
    server
        .add_member(acme.id, developer.id, pb::Role::Developer)
        .await;

    assert_status(
        server
            .agents(&developer.token)
            .create_registration_token(pb::CreateRegistrationTokenRequest {
                customer_id: acme.id,
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "role developer may not manage agents",
    );
    let created = server
        .agents(&devops.token)
        .create_registration_token(pb::CreateRegistrationTokenRequest {
            customer_id: acme.id,
            description: "rack 3".into(),
            max_uses: 5,
            ..Default::default()
        })
        .await
        .expect("devops creates tokens")
        .into_inner();
    assert!(
        created
            .secret
            .starts_with(&created.token.as_ref().expect("token").token_prefix)
    );
    let listed = server
        .agents(&developer.token)
        .list_registration_tokens(pb::ListRegistrationTokensRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("members read tokens")
        .into_inner()
        .tokens;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].description, "rack 3");

    let build = server
        .register_agent(acme.id, "build-1", &created.secret)
        .await
        .expect("build-1");
    let deploy = server
        .register_agent(acme.id, "deploy-1", &created.secret)
        .await
        .expect("deploy-1");
    let _stream = server
        .connect_agent("build-1", &build.credential)
        .await
        .expect("connect");

    let mut as_devops = server.agents(&devops.token);
    let updated = as_devops
        .update_agent(pb::UpdateAgentRequest {
            customer_id: acme.id,
            agent_id: deploy.agent_id,
            name: Some("Deployer".into()),
            location: Some("Production".into()),
            labels: vec!["linux".into(), "deploy".into()],
            set_labels: true,
            enabled: Some(false),
            max_concurrent_jobs: Some(4),
        })
        .await
        .expect("update")
        .into_inner()
        .agent
        .expect("agent");
    assert_eq!(updated.name, "Deployer");
    assert_eq!(updated.location, "Production");
    assert_eq!(updated.labels, ["deploy", "linux"]);
    assert!(!updated.enabled);
    assert_eq!(updated.max_concurrent_jobs, 4);
    assert_status(
        server
            .agents(&developer.token)
            .update_agent(pb::UpdateAgentRequest {
                customer_id: acme.id,
                agent_id: deploy.agent_id,
                enabled: Some(true),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "manage agents",
    );
    for (labels, max, field) in [
        (
            vec!["ok".to_owned(), "not ok".to_owned()],
            None,
            "labels[1]",
        ),
        (vec![], Some(0), "max_concurrent_jobs"),
        (vec![], Some(65), "max_concurrent_jobs"),
    ] {
        assert_status(
            as_devops
                .update_agent(pb::UpdateAgentRequest {
                    customer_id: acme.id,
                    agent_id: deploy.agent_id,
                    set_labels: !labels.is_empty(),
                    labels,
                    max_concurrent_jobs: max,
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            field,
        );
    }

    // Filters: by label and by status.
    let list = |labels: Vec<&'static str>, status: pb::AgentStatus| {
        let mut client = server.agents(&developer.token);
        let customer_id = acme.id;
        async move {
            client
                .list_agents(pb::ListAgentsRequest {
                    customer_id,
                    labels: labels.into_iter().map(str::to_owned).collect(),
                    status: status.into(),
                    ..Default::default()
                })
                .await
                .expect("list")
                .into_inner()
                .agents
                .into_iter()
                .map(|agent| agent.uuid)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(vec![], pb::AgentStatus::Unspecified).await,
        ["build-1", "deploy-1"]
    );
    assert_eq!(
        list(vec!["linux"], pb::AgentStatus::Unspecified).await,
        ["build-1", "deploy-1"]
    );
    assert_eq!(
        list(vec!["linux", "deploy"], pb::AgentStatus::Unspecified).await,
        ["deploy-1"]
    );
    assert_eq!(list(vec![], pb::AgentStatus::Online).await, ["build-1"]);
    assert_eq!(list(vec![], pb::AgentStatus::Offline).await, ["deploy-1"]);
    assert_status(
        server
            .agents(&developer.token)
            .list_agents(pb::ListAgentsRequest {
                customer_id: acme.id,
                status: 9,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "status",
    );

    // Delete: gone from listings, credential refused as deleted, stream ended.
    let stream = server
        .connect_agent("deploy-1", &deploy.credential)
        .await
        .expect("connect");
    as_devops
        .delete_agent(pb::DeleteAgentRequest {
            customer_id: acme.id,
            agent_id: deploy.agent_id,
        })
        .await
        .expect("delete");
    assert_eq!(
        stream.closed_with().await.expect("status").code(),
        Code::PermissionDenied
    );
    assert_status(
        server.connect_agent("deploy-1", &deploy.credential).await,
        Code::PermissionDenied,
        "was deleted",
    );
    assert_status(
        as_devops
            .get_agent(pb::GetAgentRequest {
                customer_id: acme.id,
                agent_id: deploy.agent_id,
            })
            .await,
        Code::NotFound,
        "not found",
    );
    assert_eq!(
        list(vec![], pb::AgentStatus::Unspecified).await,
        ["build-1"]
    );
    // The deletion sticks: the registration token does not bring the host back (restoring it
    // takes a re-enrolment token, `agent_credentials.rs`).
    assert_status(
        server
            .register_agent(acme.id, "deploy-1", &created.secret)
            .await,
        Code::FailedPrecondition,
        "was deleted",
    );

    // Revoking the token stops further registrations only.
    as_devops
        .revoke_registration_token(pb::RevokeRegistrationTokenRequest {
            customer_id: acme.id,
            token_id: listed[0].id,
        })
        .await
        .expect("revoke");
    assert_status(
        server
            .register_agent(acme.id, "build-2", &created.secret)
            .await,
        Code::Unauthenticated,
        "revoked",
    );
    server
        .connect_agent("build-1", &build.credential)
        .await
        .expect("registered agents keep working");

    // Metrics: bad range refused.
    assert_status(
        as_devops
            .get_agent_metrics(pb::GetAgentMetricsRequest {
                customer_id: acme.id,
                agent_id: build.agent_id,
                start_time: Some(prost_types::Timestamp {
                    seconds: 2_000_000_000,
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: 1_000_000_000,
                    nanos: 0,
                }),
            })
            .await,
        Code::InvalidArgument,
        "start_time",
    );
}

async fn agents_of_one_customer_are_invisible_to_another(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let techstart = server.create_customer("techstart").await;
    let token = server.create_registration_token(acme.id).await;
    let acme_agent = server
        .register_agent(acme.id, "acme-001", &token)
        .await
        .expect("register");
    let _stream = server
        .connect_agent("acme-001", &acme_agent.credential)
        .await
        .expect("connect");
    let tess = server.create_user("tess").await;
    server
        .add_member(techstart.id, tess.id, pb::Role::Admin)
        .await;
    let mut as_tess = server.agents(&tess.token);

    // With Acme's customer id: NOT_FOUND, exactly as for a customer that does not exist.
    let not_found = format!("customer {} not found", acme.id);
    assert_status(
        as_tess
            .list_agents(pb::ListAgentsRequest {
                customer_id: acme.id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &not_found,
    );
    assert_status(
        as_tess
            .get_agent(pb::GetAgentRequest {
                customer_id: acme.id,
                agent_id: acme_agent.agent_id,
            })
            .await,
        Code::NotFound,
        &not_found,
    );
    assert_status(
        as_tess
            .update_agent(pb::UpdateAgentRequest {
                customer_id: acme.id,
                agent_id: acme_agent.agent_id,
                enabled: Some(false),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &not_found,
    );
    assert_status(
        as_tess
            .delete_agent(pb::DeleteAgentRequest {
                customer_id: acme.id,
                agent_id: acme_agent.agent_id,
            })
            .await,
        Code::NotFound,
        &not_found,
    );
    assert_status(
        as_tess
            .get_agent_metrics(pb::GetAgentMetricsRequest {
                customer_id: acme.id,
                agent_id: acme_agent.agent_id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &not_found,
    );
    assert_status(
        as_tess
            .create_registration_token(pb::CreateRegistrationTokenRequest {
                customer_id: acme.id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &not_found,
    );
    assert_status(
        as_tess
            .list_registration_tokens(pb::ListRegistrationTokensRequest {
                customer_id: acme.id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &not_found,
    );
    assert_status(
        as_tess
            .revoke_registration_token(pb::RevokeRegistrationTokenRequest {
                customer_id: acme.id,
                token_id: 1,
            })
            .await,
        Code::NotFound,
        &not_found,
    );
    assert_status(
        server
            .customers(&tess.token)
            .list_activity(pb::ListActivityRequest {
                customer_id: acme.id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &not_found,
    );

    // With her own customer id and Acme's agent id: the agent does not exist there.
    let agent_not_found = format!("agent {} not found", acme_agent.agent_id);
    assert_status(
        as_tess
            .get_agent(pb::GetAgentRequest {
                customer_id: techstart.id,
                agent_id: acme_agent.agent_id,
            })
            .await,
        Code::NotFound,
        &agent_not_found,
    );
    assert_status(
        as_tess
            .update_agent(pb::UpdateAgentRequest {
                customer_id: techstart.id,
                agent_id: acme_agent.agent_id,
                enabled: Some(false),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &agent_not_found,
    );
    assert_status(
        as_tess
            .delete_agent(pb::DeleteAgentRequest {
                customer_id: techstart.id,
                agent_id: acme_agent.agent_id,
            })
            .await,
        Code::NotFound,
        &agent_not_found,
    );
    assert_status(
        as_tess
            .get_agent_metrics(pb::GetAgentMetricsRequest {
                customer_id: techstart.id,
                agent_id: acme_agent.agent_id,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &agent_not_found,
    );
    assert_status(
        as_tess
            .revoke_registration_token(pb::RevokeRegistrationTokenRequest {
                customer_id: techstart.id,
                token_id: 1,
            })
            .await,
        Code::NotFound,
        "registration token 1 not found",
    );
    let own = as_tess
        .list_agents(pb::ListAgentsRequest {
            customer_id: techstart.id,
            ..Default::default()
        })
        .await
        .expect("own list")
        .into_inner()
        .agents;
    assert!(own.is_empty());

    // And Acme's agent is untouched.
    let untouched = agent(&server, acme.id, acme_agent.agent_id).await;
    assert!(untouched.enabled);
    assert_eq!(untouched.status(), pb::AgentStatus::Online);
}

cygnet_testkit::backend_tests!(
    registration_refusals_write_nothing,
    reregistration_keeps_the_id_and_revokes_the_old_credential,
    stream_authentication_refuses_borrowed_credentials,
    heartbeats_liveness_and_history,
    operator_rpcs_and_roles,
    agents_of_one_customer_are_invisible_to_another,
);
