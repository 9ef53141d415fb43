//! The real `cygnet-agent` process against a real server: registration from appsettings.json,
//! online with real figures, isolation, server restart, kill, SIGTERM, credential reuse.

use std::process::Stdio;
use std::time::{Duration, Instant};

use cygnet_proto::v1 as pb;
use cygnet_testkit::{Backend, TestServer, assert_status, eventually};
use tonic::Code;

use crate::common::*;

async fn agent_online_isolated_and_back_after_a_server_restart(backend: Backend) {
    let mut server = TestServer::start_with(backend, one_second_heartbeats()).await;
    let acme = server.create_customer("acme").await;
    let techstart = server.create_customer("techstart").await;
    let tess = server.create_user("tess").await;
    server
        .add_member(techstart.id, tess.id, pb::Role::Admin)
        .await;
    let token = server.create_registration_token(acme.id).await;
    let host = Host::new(&server, acme.id, "acme-001", Some(&token));

    let started = Instant::now();
    let mut agent = host.spawn();
    eventually(
        "agent online with memory figures",
        Duration::from_secs(10),
        || is_online_with_figures(&server, acme.id, "acme-001"),
    )
    .await;
    eprintln!("agent online {:?} after spawn", started.elapsed());
    let registered = find_agent(&server, acme.id, "acme-001")
        .await
        .expect("registered");
    assert_eq!(registered.name, "acme-001 agent");
    assert_eq!(registered.location, "Test rack");
    assert_eq!(registered.labels, ["linux", "test"]);
    assert!(!registered.hostname.is_empty() && !registered.os.is_empty());
    #[cfg(unix)]
    {
        assert_eq!(mode(&host.path("state/agent.json")), 0o600);
        assert_eq!(mode(&host.path(&format!("work/{}", acme.id))), 0o700);
    }

    // Another customer's member sees nothing of it.
    assert_status(
        server
            .agents(&tess.token)
            .get_agent(pb::GetAgentRequest {
                customer_id: acme.id,
                agent_id: registered.id,
            })
            .await,
        Code::NotFound,
        "not found",
    );
    assert_status(
        server
            .agents(&tess.token)
            .get_agent(pb::GetAgentRequest {
                customer_id: techstart.id,
                agent_id: registered.id,
            })
            .await,
        Code::NotFound,
        "not found",
    );
    let theirs = server
        .agents(&tess.token)
        .list_agents(pb::ListAgentsRequest {
            customer_id: techstart.id,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .agents;
    assert!(theirs.is_empty());

    // The server restarts; the same agent process comes back online by itself.
    server.restart().await;
    eventually(
        "agent back online after the server restart",
        Duration::from_secs(10),
        || is_online_with_figures(&server, acme.id, "acme-001"),
    )
    .await;
    assert!(
        agent.try_wait().expect("try_wait").is_none(),
        "the agent process kept running"
    );

    // Killed without a word: offline within three heartbeat intervals.
    agent.kill().expect("kill -9");
    let killed_at = Instant::now();
    eventually("killed agent offline", Duration::from_secs(3), || {
        is_offline(&server, acme.id, "acme-001")
    })
    .await;
    eprintln!("agent offline {:?} after kill", killed_at.elapsed());
    let _ = agent.wait();
    let offline = find_agent(&server, acme.id, "acme-001")
        .await
        .expect("agent");
    assert!(offline.last_seen_at.is_some(), "last_seen_at is kept");
}

async fn sigterm_closes_the_stream_and_a_restart_reuses_the_credential(backend: Backend) {
    let server = TestServer::start_with(backend, one_second_heartbeats()).await;
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;
    let host = Host::new(&server, acme.id, "acme-002", Some(&token));

    let agent = host.spawn();
    eventually("agent online", Duration::from_secs(10), || {
        is_online_with_figures(&server, acme.id, "acme-002")
    })
    .await;
    signal(&agent, "TERM");
    let status = wait_exit(agent.into_child(), Duration::from_secs(10));
    assert!(status.success(), "exit 0 on SIGTERM, got {status:?}");
    // The server learnt at once: no waiting for missed heartbeats.
    assert!(is_offline(&server, acme.id, "acme-002").await);
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
        activity[0]
            .message
            .contains("went offline (stream closed by the agent)"),
        "{:?}",
        activity[0]
    );

    // Revoke the registration token: the restarted agent does not need it, it reuses its
    // stored credential (the token is used once only).
    let tokens = server
        .admin_agents()
        .list_registration_tokens(pb::ListRegistrationTokensRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("tokens")
        .into_inner()
        .tokens;
    server
        .admin_agents()
        .revoke_registration_token(pb::RevokeRegistrationTokenRequest {
            customer_id: acme.id,
            token_id: tokens[0].id,
        })
        .await
        .expect("revoke");
    let agent = host.spawn();
    eventually("restarted agent online", Duration::from_secs(10), || {
        is_online_with_figures(&server, acme.id, "acme-002")
    })
    .await;
    signal(&agent, "INT");
    assert!(wait_exit(agent.into_child(), Duration::from_secs(10)).success());
    let tokens = server
        .admin_agents()
        .list_registration_tokens(pb::ListRegistrationTokensRequest {
            customer_id: acme.id,
            ..Default::default()
        })
        .await
        .expect("tokens")
        .into_inner()
        .tokens;
    assert_eq!(tokens[0].use_count, 1);
}

cygnet_testkit::backend_tests!(
    agent_online_isolated_and_back_after_a_server_restart,
    sigterm_closes_the_stream_and_a_restart_reuses_the_credential,
);

#[test]
fn configuration_errors_stop_start_up_with_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |text: &str| {
        let path = dir.path().join("appsettings.json");
        std::fs::write(&path, text).expect("write");
        path
    };
    let cases = [
        (
            r#"{"AgentConfiguration": {"AgentUuid": "a", "ServerUrl": "http://x"}}"#,
            "CustomerId is required",
        ),
        (
            r#"{"AgentConfiguration": {"CustomerId": "one", "AgentUuid": "a", "ServerUrl": "http://x"}}"#,
            "CustomerId must be an integer",
        ),
        (
            r#"{"AgentConfiguration": {"CustomerId": 1, "ServerUrl": "http://x"}}"#,
            "AgentUuid is required",
        ),
        (
            r#"{"AgentConfiguration": {"CustomerId": 1, "AgentUuid": "a"}}"#,
            "ServerUrl is required",
        ),
        // Valid, but nothing to register with and no stored credential.
        (
            &format!(
                r#"{{"AgentConfiguration": {{"CustomerId": 1, "AgentUuid": "a", "ServerUrl": "http://127.0.0.1:9", "WorkDirectory": "{0}/w", "StateDirectory": "{0}/s"}}}}"#,
                dir.path().display()
            ),
            "RegistrationToken is required",
        ),
    ];
    for (text, expected) in cases {
        let path = write(text);
        let output = agent_command()
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run agent");
        assert_eq!(output.status.code(), Some(2), "{expected}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{expected}: {stderr:?}");
        assert!(stderr.contains(expected), "{expected}: {stderr:?}");
    }
    let output = agent_command()
        .arg("--config")
        .arg(dir.path().join("missing.json"))
        .output()
        .expect("run agent");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn environment_overrides_in_the_dotnet_style() {
    // A wrong CustomerId from the environment beats the file and is reported by name.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("appsettings.json");
    std::fs::write(
        &path,
        r#"{"AgentConfiguration": {"CustomerId": 1, "AgentUuid": "a", "ServerUrl": "http://x"}}"#,
    )
    .expect("write");
    let output = agent_command()
        .arg("--config")
        .arg(&path)
        .env("AgentConfiguration__CustomerId", "-4")
        .output()
        .expect("run agent");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("CustomerId must be a positive id"));
}

/// With `tls.client_ca`, agents must present a certificate whose CN is their uuid; the real
/// agent does so from its `Tls` settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_binds_the_certificate_to_the_uuid() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

    let certs = tempfile::tempdir().expect("temp dir");
    cygnet_testkit::make_dev_certificates(certs.path(), "acme-tls");
    let read = |name: &str| std::fs::read(certs.path().join(name)).expect("certificate file");
    let ca = Certificate::from_pem(read("ca.pem"));
    let mut options = one_second_heartbeats();
    options.tls = Some(cygnet_server::config::TlsFiles {
        cert: certs.path().join("server.pem"),
        key: certs.path().join("server.key"),
        client_ca: Some(certs.path().join("ca.pem")),
    });
    options.client_tls = Some(
        ClientTlsConfig::new()
            .ca_certificate(ca.clone())
            .domain_name("localhost"),
    );
    let server = TestServer::start_with(Backend::Sqlite, options).await;
    let acme = server.create_customer("acme").await;
    let token = server.create_registration_token(acme.id).await;

    // No client certificate: refused, nothing registered.
    assert_status(
        server.register_agent(acme.id, "acme-tls", &token).await,
        Code::Unauthenticated,
        "client certificate",
    );
    // A certificate for acme-tls presented for another uuid: refused.
    let with_identity =
        Endpoint::from_shared(format!("https://localhost:{}", server.address.port()))
            .expect("endpoint")
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(ca)
                    .domain_name("localhost")
                    .identity(Identity::from_pem(read("agent.pem"), read("agent.key"))),
            )
            .expect("tls")
            .connect()
            .await
            .expect("mutual TLS connection");
    let mut as_agent =
        cygnet_proto::v1::agent_service_client::AgentServiceClient::new(with_identity.clone());
    assert_status(
        as_agent
            .register_agent(pb::RegisterAgentRequest {
                customer_id: acme.id,
                uuid: "acme-other".into(),
                registration_token: token.clone(),
                ..Default::default()
            })
            .await,
        Code::Unauthenticated,
        "does not match",
    );
    assert!(find_agent(&server, acme.id, "acme-other").await.is_none());
    // A stream needs the certificate too: register over mTLS, then connect without one.
    let registered = as_agent
        .register_agent(pb::RegisterAgentRequest {
            customer_id: acme.id,
            uuid: "acme-tls".into(),
            registration_token: token.clone(),
            ..Default::default()
        })
        .await
        .expect("matching certificate registers")
        .into_inner();
    assert_status(
        server
            .connect_agent("acme-tls", &registered.credential)
            .await,
        Code::Unauthenticated,
        "client certificate",
    );
    cygnet_testkit::ProtocolAgent::connect(with_identity, "acme-tls", &registered.credential)
        .await
        .expect("stream with the matching certificate");

    // The real daemon over https with its Tls settings. The uuid is registered already, so the
    // daemon needs the re-enrolment token an administrator issues for it.
    let reenrolment = server
        .admin_agents()
        .issue_reenrolment_token(pb::IssueReenrolmentTokenRequest {
            customer_id: acme.id,
            agent_id: registered.agent_id,
        })
        .await
        .expect("issue a re-enrolment token")
        .into_inner();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("reenrolment-token"), &reenrolment.secret)
        .expect("write the re-enrolment token");
    std::fs::write(
        dir.path().join("appsettings.json"),
        serde_json::json!({"AgentConfiguration": {
            "CustomerId": acme.id,
            "AgentUuid": "acme-tls",
            "ServerUrl": format!("https://localhost:{}", server.address.port()),
            "RegistrationToken": token,
            "ReenrolmentTokenFile": dir.path().join("reenrolment-token"),
            "WorkDirectory": dir.path().join("work"),
            "StateDirectory": dir.path().join("state"),
            "Tls": {
                "CaCertificate": certs.path().join("ca.pem"),
                "ClientCertificate": certs.path().join("agent.pem"),
                "ClientKey": certs.path().join("agent.key"),
            }
        }})
        .to_string(),
    )
    .expect("write");
    let agent = AgentProcess::new(
        agent_command()
            .arg("--config")
            .arg(dir.path().join("appsettings.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    eventually(
        "agent online over mutual TLS",
        Duration::from_secs(5),
        || is_online_with_figures(&server, acme.id, "acme-tls"),
    )
    .await;
    assert!(
        !dir.path().join("reenrolment-token").exists(),
        "the used re-enrolment token is deleted"
    );
    signal(&agent, "TERM");
    assert!(wait_exit(agent.into_child(), Duration::from_secs(10)).success());
}
