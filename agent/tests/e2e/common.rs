//! Helpers shared by the end-to-end tests: a build host directory with appsettings.json, the
//! real `cygnet-agent` process, waiting for it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cygnet_proto::v1 as pb;
use cygnet_testkit::{TestOptions, TestServer, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const AGENT: &str = env!("CARGO_BIN_EXE_cygnet-agent");

pub fn one_second_heartbeats() -> TestOptions {
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

/// A build host: a directory with appsettings.json, a state and a work directory.
pub struct Host {
    pub dir: tempfile::TempDir,
}

impl Host {
    pub fn new(
        server: &TestServer,
        customer_id: i64,
        uuid: &str,
        registration_token: Option<&str>,
    ) -> Host {
        Self::with_settings(
            server,
            customer_id,
            uuid,
            registration_token,
            serde_json::json!({}),
        )
    }

    /// A host whose appsettings.json also has the keys of `extra`.
    pub fn with_settings(
        server: &TestServer,
        customer_id: i64,
        uuid: &str,
        registration_token: Option<&str>,
        extra: serde_json::Value,
    ) -> Host {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut section = serde_json::json!({
            "CustomerId": customer_id,
            "AgentUuid": uuid,
            "ServerUrl": format!("http://{}", server.address),
            "Name": format!("{uuid} agent"),
            "Location": "Test rack",
            "Labels": ["linux", "test"],
            "WorkDirectory": dir.path().join("work"),
            "StateDirectory": dir.path().join("state"),
        });
        if let Some(token) = registration_token {
            section["RegistrationToken"] = token.into();
        }
        if let (Some(section), Some(extra)) = (section.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                section.insert(key.clone(), value.clone());
            }
        }
        std::fs::write(
            dir.path().join("appsettings.json"),
            serde_json::json!({ "AgentConfiguration": section }).to_string(),
        )
        .expect("write appsettings.json");
        Host { dir }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn spawn(&self) -> AgentProcess {
        AgentProcess::new(
            agent_command()
                .arg("--config")
                .arg(self.path("appsettings.json"))
                .stdout(Stdio::null())
                .stderr(if std::env::var_os("CYGNET_TEST_LOG").is_some() {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                })
                .spawn()
                .expect("spawn cygnet-agent"),
        )
    }
}

pub fn agent_command() -> Command {
    let mut command = Command::new(AGENT);
    for (key, _) in std::env::vars() {
        let upper = key.to_ascii_uppercase();
        if upper.starts_with("AGENTCONFIGURATION__") || upper.starts_with("AGENT__") {
            command.env_remove(key);
        }
    }
    command.env("RUST_LOG", "warn");
    command
}

pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits for the process to exit, with a deadline, without polling.
pub fn wait_exit(child: Child, within: Duration) -> std::process::ExitStatus {
    let (sender, receiver) = std::sync::mpsc::channel();
    let mut child = child;
    std::thread::spawn(move || {
        let _ = sender.send(child.wait());
    });
    receiver
        .recv_timeout(within)
        .expect("agent did not exit in time")
        .expect("wait")
}

pub async fn find_agent(server: &TestServer, customer_id: i64, uuid: &str) -> Option<pb::Agent> {
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
        .into_iter()
        .find(|agent| agent.uuid == uuid)
}

pub async fn is_online_with_figures(server: &TestServer, customer_id: i64, uuid: &str) -> bool {
    find_agent(server, customer_id, uuid)
        .await
        .is_some_and(|agent| {
            agent.status() == pb::AgentStatus::Online
                && agent.latest.is_some_and(|latest| {
                    latest.memory_total_bytes > 0 && latest.memory_used_bytes > 0
                })
        })
}

pub async fn is_offline(server: &TestServer, customer_id: i64, uuid: &str) -> bool {
    find_agent(server, customer_id, uuid)
        .await
        .is_some_and(|agent| agent.status() == pb::AgentStatus::Offline)
}

#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// A running `cygnet-agent`, killed when dropped so a failing test leaves no agent behind.
pub struct AgentProcess(Option<Child>);

impl AgentProcess {
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// The process, no longer killed on drop (the caller waits for it).
    pub fn into_child(mut self) -> Child {
        self.0.take().expect("process present")
    }
}

impl std::ops::Deref for AgentProcess {
    type Target = Child;

    fn deref(&self) -> &Child {
        self.0.as_ref().expect("process present")
    }
}

impl std::ops::DerefMut for AgentProcess {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("process present")
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One scrape of the agent's `/metrics`; none while it does not answer.
pub async fn scrape(address: std::net::SocketAddr) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: agent\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    Some(answer)
}

/// The value of one sample line of a scrape.
pub fn value(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Waits (at most 20 s) until a scrape satisfies `check`; returns it.
pub async fn scrape_until(
    address: std::net::SocketAddr,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(text) = scrape(address).await
            && check(&text)
        {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A customer with one online agent (the returned child) labelled linux/test.
pub async fn customer_with_agent(
    server: &TestServer,
    name: &str,
    extra: serde_json::Value,
) -> (pb::Customer, Host, AgentProcess) {
    let customer = server.create_customer(name).await;
    let token = server.create_registration_token(customer.id).await;
    let host = Host::with_settings(
        server,
        customer.id,
        &format!("{name}-agent"),
        Some(&token),
        extra,
    );
    let child = host.spawn();
    let uuid = format!("{name}-agent");
    eventually("agent online", Duration::from_secs(10), || {
        is_online_with_figures(server, customer.id, &uuid)
    })
    .await;
    (customer, host, child)
}

pub fn stop(mut child: AgentProcess) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The numbers `i` of the stdout lines `n=<i>` in `chunks`, in order.
pub fn counted_lines<'a>(chunks: impl IntoIterator<Item = &'a pb::LogChunk>) -> Vec<u32> {
    chunks
        .into_iter()
        .filter(|chunk| chunk.stream() == pb::LogStream::Stdout)
        .flat_map(|chunk| chunk.text.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|line| line.strip_prefix("n=").and_then(|n| n.parse().ok()))
        .collect()
}

/// Asserts that the execution's stored log has sequences 1, 2, 3… and holds every line `n=1` to
/// `n=<lines>` exactly once, in order: nothing lost or doubled.
pub async fn assert_every_line_once(
    server: &TestServer,
    customer_id: i64,
    execution_id: i64,
    lines: u32,
) {
    let chunks = server.logs(customer_id, execution_id).await;
    let sequences: Vec<i64> = chunks.iter().map(|chunk| chunk.sequence).collect();
    assert_eq!(sequences, (1..=chunks.len() as i64).collect::<Vec<_>>());
    assert_eq!(
        counted_lines(&chunks),
        (1..=lines).collect::<Vec<_>>(),
        "every line exactly once, in order"
    );
}

/// An artifact's whole content through DownloadArtifact.
pub async fn download(server: &TestServer, customer_id: i64, artifact_id: i64) -> Vec<u8> {
    let mut stream = server
        .admin_pipelines()
        .download_artifact(pb::DownloadArtifactRequest {
            customer_id,
            artifact_id,
        })
        .await
        .expect("download")
        .into_inner();
    let mut content = Vec::new();
    while let Some(message) = stream.message().await.expect("chunk") {
        content.extend(message.data);
    }
    content
}

/// The artifacts an execution uploaded.
pub async fn artifacts_of(
    server: &TestServer,
    customer_id: i64,
    execution_id: i64,
) -> Vec<pb::Artifact> {
    server
        .admin_pipelines()
        .list_artifacts(pb::ListArtifactsRequest {
            customer_id,
            execution_id,
        })
        .await
        .expect("artifacts")
        .into_inner()
        .artifacts
}
