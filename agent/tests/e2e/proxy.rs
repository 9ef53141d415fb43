//! Agents behind nginx's gRPC proxy in its default configuration: nginx closes a proxied stream
//! on which the server sends nothing for 60 s (`grpc_read_timeout`; HTTP/2 pings do not count),
//! so idle agents flapped once a minute. The server's keepalive keeps them connected.
//!
//! The configuration is `examples/deploy/nginx-grpc.conf` (docs/deploy.md): nginx's defaults but
//! for `client_max_body_size 0`. An
//! agent's stream is one request whose body is everything the agent sends, its jobs' output
//! included, and nginx's default limit (1 MB) ended it at the first megabyte: a job printing
//! 2.9 MB never finished behind a default nginx. The test runs such a job after the idle time.
//!
//! Needs the `nginx` binary (Debian's package); skipped without it unless
//! `CYGNET_REQUIRE_NGINX=1` (CI sets it).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_testkit::{Backend, TestOptions, TestServer, eventually, final_execution, step};

use crate::common::*;

/// How long the agents stay idle behind the proxy: three of nginx's 60 s read timeouts.
const IDLE: Duration = Duration::from_secs(180);

/// An nginx of the test's own with the example configuration, proxying gRPC to `upstream`.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(binary: &Path, upstream: std::net::SocketAddr) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let root = dir.path().display();
        // The deployment guide's file, pointed at this test's server and port.
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy/nginx-grpc.conf"),
        )
        .expect("examples/deploy/nginx-grpc.conf");
        let site = example
            .replace("server 10.0.0.11:50051;", &format!("server {upstream};"))
            .replace("server 10.0.0.12:50051;", "")
            .replace(
                "listen 50051 http2;",
                &format!("listen 127.0.0.1:{port} http2;"),
            );
        assert!(
            site.contains(&format!("server {upstream};"))
                && site.contains(&format!(":{port} http2"))
        );
        let config = format!(
            "{user}worker_processes 1;\n\
             error_log {root}/error.log;\n\
             pid {root}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
               access_log {root}/access.log;\n\
               client_body_temp_path {root}/body;\n\
               {site}\n\
             }}\n",
            user = if running_as_root() {
                "user root;\n"
            } else {
                ""
            },
        );
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config).expect("write nginx.conf");
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config_path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn nginx");
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }

    async fn wait_ready(&self) {
        let address = format!("127.0.0.1:{}", self.port);
        eventually("nginx listening", Duration::from_secs(10), || {
            let address = address.clone();
            async move { tokio::net::TcpStream::connect(address).await.is_ok() }
        })
        .await;
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn nginx_binary() -> Option<std::path::PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|path| path.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_agents_behind_nginx_stay_connected_for_three_minutes() {
    let Some(binary) = nginx_binary() else {
        assert!(
            std::env::var_os("CYGNET_REQUIRE_NGINX").is_none(),
            "CYGNET_REQUIRE_NGINX is set but nginx is not installed"
        );
        eprintln!("nginx not installed: proxy test skipped");
        return;
    };
    // The production heartbeat interval (10 s): agent → server traffic as in the field.
    let server = TestServer::start_with(Backend::Sqlite, TestOptions::default()).await;
    let nginx = Nginx::start(&binary, server.address);
    nginx.wait_ready().await;
    let acme = server.create_customer("acme").await;
    let mut agents = Vec::new();
    for name in ["proxied-1", "proxied-2"] {
        let token = server.create_registration_token(acme.id).await;
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        let host = Host::with_settings(
            &server,
            acme.id,
            name,
            Some(&token),
            serde_json::json!({
                "ServerUrl": format!("http://127.0.0.1:{}", nginx.port),
                "MetricsListen": metrics.to_string(),
            }),
        );
        let child = host.spawn();
        agents.push((name, host, child, metrics));
    }
    for (name, _, _, metrics) in &agents {
        eventually(
            "agent online through nginx",
            Duration::from_secs(30),
            || is_online_with_figures(&server, acme.id, name),
        )
        .await;
        scrape_until(*metrics, "connected", |text| {
            value(text, "cygnet_agent_connected") == Some(1.0)
        })
        .await;
    }

    tokio::time::sleep(IDLE).await;

    for (name, _, _, metrics) in &agents {
        let text = scrape(*metrics).await.expect("agent metrics");
        assert_eq!(
            value(&text, "cygnet_agent_reconnects_total"),
            Some(0.0),
            "{name} reconnected while idle behind nginx"
        );
        assert_eq!(value(&text, "cygnet_agent_connected"), Some(1.0), "{name}");
        assert!(
            is_online_with_figures(&server, acme.id, name).await,
            "{name}"
        );
    }
    let activity = server.activity(acme.id).await;
    let flaps: Vec<_> = activity
        .iter()
        .filter(|event| event.kind == "agent.offline")
        .collect();
    assert!(flaps.is_empty(), "{flaps:?}");
    let online = activity
        .iter()
        .filter(|event| event.kind == "agent.online")
        .count();
    assert_eq!(online, agents.len(), "{activity:?}");

    // Output well past nginx's default body limit flows through.
    let pipeline = server
        .create_pipeline(
            acme.id,
            "chatty",
            vec![step("print", "seq 1 400000")],
            vec![],
        )
        .await;
    let execution = server.run_pipeline(acme.id, pipeline.id, &[]).await;
    let ended = final_execution(
        &server
            .watch_to_end(acme.id, execution.id, Duration::from_secs(60))
            .await,
    );
    assert_eq!(ended.status(), pb::ExecutionStatus::Succeeded, "{ended:?}");
    let printed: usize = server
        .logs(acme.id, execution.id)
        .await
        .iter()
        .filter(|chunk| chunk.stream() == pb::LogStream::Stdout)
        .map(|chunk| chunk.text.len())
        .sum();
    let expected: usize = (1..=400_000u32).map(|n| n.to_string().len() + 1).sum();
    assert_eq!(printed, expected);
    for (_, _, child, _) in agents {
        stop(child);
    }
}
