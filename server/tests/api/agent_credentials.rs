//! Attacks on agent identities, performed over the real protocol: a registration token alone
//! taking over an existing uuid, a deleted agent coming back, a uuid of another customer, and
//! bad input on the re-registration fields.

use cygnet_proto::v1 as pb;
use cygnet_proto::v1::agent_service_client::AgentServiceClient;
use cygnet_testkit::{Backend, TestServer, assert_status};
use tonic::Code;

/// RegisterAgent with the proofs a re-registration may carry.
async fn register_with(
    server: &TestServer,
    customer_id: i64,
    uuid: &str,
    registration_token: &str,
    current_credential: &str,
    reenrolment_token: &str,
) -> Result<pb::RegisterAgentResponse, tonic::Status> {
    AgentServiceClient::new(server.channel())
        .register_agent(pb::RegisterAgentRequest {
            customer_id,
            uuid: uuid.into(),
            registration_token: registration_token.into(),
            current_credential: current_credential.into(),
            reenrolment_token: reenrolment_token.into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn listed_ids(server: &TestServer, customer_id: i64) -> Vec<i64> {
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
        .iter()
        .map(|agent| agent.id)
        .collect()
}

async fn a_registration_token_alone_cannot_take_over_a_uuid(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;
    let victim = server
        .register_agent(acme.id, "acme-001", &token)
        .await
        .expect("victim registers");
    let rogue = server
        .register_agent(acme.id, "acme-rogue", &token)
        .await
        .expect("a step enrols a rogue agent of its own");

    // The token alone, a made-up credential, and the rogue agent's own credential: refused.
    for presented in ["", "cyga_made_up", rogue.credential.as_str()] {
        assert_status(
            register_with(&server, acme.id, "acme-001", &token, presented, "").await,
            Code::PermissionDenied,
            "needs its current_credential or a reenrolment_token",
        );
    }
    // The victim keeps its identity and its credential.
    let connected = server
        .connect_agent("acme-001", &victim.credential)
        .await
        .expect("the victim's credential still works");
    assert_eq!(connected.welcome.agent_id, victim.agent_id);
    // The rogue agent's credential does not open the victim's stream either.
    assert_status(
        server.connect_agent("acme-001", &rogue.credential).await,
        Code::Unauthenticated,
        "does not belong to this agent uuid",
    );
    let activity = server.activity(acme.id).await;
    assert!(
        !activity
            .iter()
            .any(|event| event.kind == "agent.reregistered"),
        "{activity:?}"
    );
}

async fn deleted_agents_stay_deleted_until_an_admin_reenrols_them(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;
    let developer = server.create_user("dev").await;
    server
        .add_member(acme.id, developer.id, pb::Role::Developer)
        .await;
    let first = server
        .register_agent(acme.id, "acme-001", &token)
        .await
        .expect("register");
    let connected = server
        .connect_agent("acme-001", &first.credential)
        .await
        .expect("connect");
    server
        .admin_agents()
        .delete_agent(pb::DeleteAgentRequest {
            customer_id: acme.id,
            agent_id: first.agent_id,
        })
        .await
        .expect("delete");
    let ended = connected.closed_with().await.expect("stream ended");
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
    assert!(ended.message().contains("deleted"), "{ended:?}");

    // The still-valid credential and the registration token no longer bring it back.
    assert_status(
        server.connect_agent("acme-001", &first.credential).await,
        Code::PermissionDenied,
        "was deleted",
    );
    assert_status(
        server.register_agent(acme.id, "acme-001", &token).await,
        Code::FailedPrecondition,
        "was deleted",
    );
    assert_status(
        register_with(&server, acme.id, "acme-001", &token, &first.credential, "").await,
        Code::FailedPrecondition,
        "was deleted",
    );
    assert!(listed_ids(&server, acme.id).await.is_empty());

    // Only the roles that manage agents issue re-enrolment tokens.
    assert_status(
        server
            .agents(&developer.token)
            .issue_reenrolment_token(pb::IssueReenrolmentTokenRequest {
                customer_id: acme.id,
                agent_id: first.agent_id,
            })
            .await,
        Code::PermissionDenied,
        "may not manage agents",
    );
    let issued = server
        .admin_agents()
        .issue_reenrolment_token(pb::IssueReenrolmentTokenRequest {
            customer_id: acme.id,
            agent_id: first.agent_id,
        })
        .await
        .expect("issue")
        .into_inner();
    assert!(issued.secret.starts_with("cyge_"));
    assert!(issued.expires_at.is_some());
    assert_status(
        register_with(&server, acme.id, "acme-001", &token, "", "cyge_wrong").await,
        Code::Unauthenticated,
        "reenrolment_token is not valid",
    );
    let restored = register_with(&server, acme.id, "acme-001", &token, "", &issued.secret)
        .await
        .expect("restored with the re-enrolment token");
    assert_eq!(restored.agent_id, first.agent_id, "same agent");
    assert_eq!(listed_ids(&server, acme.id).await, [first.agent_id]);
    server
        .connect_agent("acme-001", &restored.credential)
        .await
        .expect("the new credential works");
    assert_status(
        server.connect_agent("acme-001", &first.credential).await,
        Code::Unauthenticated,
        "not valid",
    );
    // The re-enrolment token was used up.
    assert_status(
        register_with(&server, acme.id, "acme-001", &token, "", &issued.secret).await,
        Code::Unauthenticated,
        "reenrolment_token is not valid",
    );
    assert!(
        server
            .activity(acme.id)
            .await
            .iter()
            .any(|event| event.kind == "agent.restored")
    );
}

async fn agent_uuids_are_unique_per_customer_and_reveal_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let techstart = server.create_customer("techstart").await;
    let acme_token = server.create_registration_token(acme.id).await;
    let techstart_token = server.create_registration_token(techstart.id).await;
    let acme_agent = server
        .register_agent(acme.id, "shared-01", &acme_token)
        .await
        .expect("acme's agent");

    // TechStart registers the same uuid exactly as it registers a fresh one: a new agent of its
    // own, nothing refused, nothing of Acme's touched.
    let theirs = server
        .register_agent(techstart.id, "shared-01", &techstart_token)
        .await
        .expect("the same uuid in another customer");
    let fresh = server
        .register_agent(techstart.id, "fresh-01", &techstart_token)
        .await
        .expect("a fresh uuid");
    assert_ne!(theirs.agent_id, acme_agent.agent_id);
    assert_eq!(
        theirs.heartbeat_interval_seconds,
        fresh.heartbeat_interval_seconds
    );
    assert_eq!(listed_ids(&server, acme.id).await, [acme_agent.agent_id]);
    let mut techstart_ids = listed_ids(&server, techstart.id).await;
    techstart_ids.sort_unstable();
    assert_eq!(techstart_ids, [theirs.agent_id, fresh.agent_id]);

    // Each credential opens only its own customer's agent of that uuid.
    let acme_stream = server
        .connect_agent("shared-01", &acme_agent.credential)
        .await
        .expect("acme connects");
    assert_eq!(acme_stream.welcome.customer_id, acme.id);
    let techstart_stream = server
        .connect_agent("shared-01", &theirs.credential)
        .await
        .expect("techstart connects");
    assert_eq!(techstart_stream.welcome.customer_id, techstart.id);
    assert_eq!(techstart_stream.welcome.agent_id, theirs.agent_id);

    // Re-registering with TechStart's credential cannot reach Acme's agent.
    let again = register_with(
        &server,
        techstart.id,
        "shared-01",
        &techstart_token,
        &theirs.credential,
        "",
    )
    .await
    .expect("techstart re-registers its own");
    assert_eq!(again.agent_id, theirs.agent_id);
    assert_status(
        register_with(
            &server,
            acme.id,
            "shared-01",
            &acme_token,
            &again.credential,
            "",
        )
        .await,
        Code::PermissionDenied,
        "needs its current_credential",
    );
}

async fn reregistration_input_is_checked_field_by_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let acme = server.create_customer("acme").await;
    let techstart = server.create_customer("techstart").await;
    let token = server.create_registration_token(acme.id).await;
    let registered = server
        .register_agent(acme.id, "acme-001", &token)
        .await
        .expect("register");
    let long = "x".repeat(257);
    for (current, reenrolment, field) in [
        (long.as_str(), "", "current_credential"),
        ("", long.as_str(), "reenrolment_token"),
    ] {
        assert_status(
            register_with(&server, acme.id, "acme-001", &token, current, reenrolment).await,
            Code::InvalidArgument,
            field,
        );
    }
    for (customer_id, agent_id, code, fragment) in [
        (acme.id, 0, Code::InvalidArgument, "agent_id"),
        (0, registered.agent_id, Code::InvalidArgument, "customer_id"),
        (acme.id, 999_999, Code::NotFound, "agent 999999 not found"),
        // Another customer's agent is not found, as any id it does not have.
        (
            techstart.id,
            registered.agent_id,
            Code::NotFound,
            "not found",
        ),
    ] {
        assert_status(
            server
                .admin_agents()
                .issue_reenrolment_token(pb::IssueReenrolmentTokenRequest {
                    customer_id,
                    agent_id,
                })
                .await,
            code,
            fragment,
        );
    }
}

cygnet_testkit::backend_tests!(
    a_registration_token_alone_cannot_take_over_a_uuid,
    deleted_agents_stay_deleted_until_an_admin_reenrols_them,
    agent_uuids_are_unique_per_customer_and_reveal_nothing,
    reregistration_input_is_checked_field_by_field,
);
