//! The server serves TLS from the files `certs/gen-dev-certs.sh` makes.

use cygnet_proto::v1 as pb;
use cygnet_proto::v1::user_service_client::UserServiceClient;
use cygnet_server::config::TlsFiles;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::common::{ADMIN_TOKEN, Backend, Bearer, TestOptions, TestServer, make_dev_certificates};

fn make_certificates(dir: &std::path::Path) {
    make_dev_certificates(dir, "acme-001");
}

async fn tls_client(
    server: &TestServer,
    tls: ClientTlsConfig,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("https://localhost:{}", server.address.port()))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_tls_and_optional_client_certificates() {
    let certs = tempfile::tempdir().expect("temp dir");
    make_certificates(certs.path());
    let server = TestServer::start_with(
        Backend::Sqlite,
        TestOptions {
            tls: Some(TlsFiles {
                cert: certs.path().join("server.pem"),
                key: certs.path().join("server.key"),
                client_ca: Some(certs.path().join("ca.pem")),
            }),
            ..TestOptions::default()
        },
    )
    .await;
    let ca = Certificate::from_pem(std::fs::read(certs.path().join("ca.pem")).expect("ca"));

    // A user trusting the CA connects without a client certificate and authenticates by token.
    let channel = tls_client(
        &server,
        ClientTlsConfig::new()
            .ca_certificate(ca.clone())
            .domain_name("localhost"),
    )
    .await
    .expect("TLS connection");
    let me = UserServiceClient::with_interceptor(channel, Bearer::new(ADMIN_TOKEN))
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("call over TLS")
        .into_inner();
    assert_eq!(me.user.expect("user").username, "admin");

    // An agent presenting its client certificate is accepted too.
    let identity = Identity::from_pem(
        std::fs::read(certs.path().join("agent.pem")).expect("agent cert"),
        std::fs::read(certs.path().join("agent.key")).expect("agent key"),
    );
    let channel = tls_client(
        &server,
        ClientTlsConfig::new()
            .ca_certificate(ca)
            .domain_name("localhost")
            .identity(identity),
    )
    .await
    .expect("mutual TLS connection");
    UserServiceClient::with_interceptor(channel, Bearer::new(ADMIN_TOKEN))
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("call over mutual TLS");

    // A client that does not trust the CA is refused during the handshake.
    let untrusted = tls_client(&server, ClientTlsConfig::new().domain_name("localhost")).await;
    let refused = match untrusted {
        Err(_) => true,
        Ok(channel) => UserServiceClient::with_interceptor(channel, Bearer::new(ADMIN_TOKEN))
            .get_current_user(pb::GetCurrentUserRequest {})
            .await
            .is_err(),
    };
    assert!(refused, "a client without the CA must not get through");

    // Plaintext HTTP/2 on the TLS port gets nowhere.
    let plaintext = Endpoint::from_shared(format!("http://127.0.0.1:{}", server.address.port()))
        .expect("endpoint")
        .connect()
        .await;
    let refused = match plaintext {
        Err(_) => true,
        Ok(channel) => UserServiceClient::with_interceptor(channel, Bearer::new(ADMIN_TOKEN))
            .get_current_user(pb::GetCurrentUserRequest {})
            .await
            .is_err(),
    };
    assert!(refused, "plaintext must not be served on a TLS listener");
}
