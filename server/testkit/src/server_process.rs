//! A replica of a test server as a process of its own, which a test can kill with SIGKILL.
//!
//! The process is the test binary itself, run again with only [`SERVER_PROCESS_TEST`] selected
//! and the server's command line in an environment variable: that test calls
//! [`serve_if_asked`], which runs `cygnet_server::entry::run` — exactly what the `cygnet-server`
//! binary runs — and exits. (The binary of another package is not built for a package's tests;
//! the test binary always exists.) The replica reads a configuration file, such as
//! `examples/deploy/replica.toml`, with addresses, database, bucket and key set through
//! `CYGNET_*` variables as an operator would.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use cygnet_server::artifacts::ArtifactStorage;
use cygnet_server::cli::Cli;

use crate::TestServer;

/// The name of the test, at the root of a test binary, that calls [`serve_if_asked`].
pub const SERVER_PROCESS_TEST: &str = "server_process";

/// Carries the server's arguments to the re-run test binary, separated by newlines.
const ARGUMENTS: &str = "CYGNET_TESTKIT_SERVER_ARGUMENTS";

/// Runs `cygnet-server` with the arguments [`ServerProcess`] put in the environment, then ends
/// the process; returns at once when there are none (a normal test run).
pub fn serve_if_asked() {
    let Ok(arguments) = std::env::var(ARGUMENTS) else {
        return;
    };
    let cli = Cli::parse_from(std::iter::once("cygnet-server").chain(arguments.lines()));
    let code = cygnet_server::entry::run(cli);
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
}

/// A server process; killed (SIGKILL) when dropped.
pub struct ServerProcess {
    pub address: SocketAddr,
    child: Child,
    _temp_dir: tempfile::TempDir,
}

impl ServerProcess {
    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

impl TestServer {
    /// Starts a replica of this server — its database, secret key, artifact store, agent
    /// timings and rate limits — as a separate process configured by `config_file` and the
    /// environment; returns once it listens.
    pub async fn start_replica_process(&self, config_file: &Path) -> ServerProcess {
        let temp_dir = tempfile::tempdir().expect("temp dir");
        let mut command =
            Command::new(std::env::current_exe().expect("the test binary's own path"));
        command.args([
            SERVER_PROCESS_TEST,
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ]);
        for (name, _) in std::env::vars() {
            if name.starts_with("CYGNET_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        command.env(ARGUMENTS, format!("--config\n{}", config_file.display()));
        for (name, value) in self.replica_environment(temp_dir.path()) {
            command.env(name, value);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the replica process");
        let stderr = child.stderr.take().expect("stderr");
        let (found, address) = mpsc::channel();
        // Reads the log until the "listening" line, then drains it so the process never blocks
        // on a full pipe.
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(sender) = found.take_if(|_| line.contains("cygnet-server listening")) {
                    let _ = sender.send(listening_address(&line));
                }
            }
        });
        let address =
            tokio::task::spawn_blocking(move || address.recv_timeout(Duration::from_secs(60)))
                .await
                .expect("wait for the replica")
                .expect("the replica process listens within 60 s");
        ServerProcess {
            address,
            child,
            _temp_dir: temp_dir,
        }
    }

    fn replica_environment(&self, temp_dir: &Path) -> Vec<(String, String)> {
        let config = self.config();
        let secret_key =
            std::fs::read_to_string(self.data_dir.join(cygnet_server::secrets::KEY_FILE))
                .expect("this server's secret key file");
        let mut environment = vec![
            ("CYGNET_LISTEN", "127.0.0.1:0".to_owned()),
            (
                "CYGNET_DATA_DIR",
                temp_dir.join("data").display().to_string(),
            ),
            ("CYGNET_WEB_LISTEN", String::new()),
            ("CYGNET_METRICS_LISTEN", String::new()),
            ("CYGNET_LOG_FORMAT", "json".to_owned()),
            ("CYGNET_DATABASE_URL", self.database_url.clone()),
            ("CYGNET_SECRET_KEY", secret_key.trim().to_owned()),
            (
                "CYGNET_HEARTBEAT_INTERVAL_SECONDS",
                config.agents.heartbeat_interval.as_secs().to_string(),
            ),
            (
                "CYGNET_AGENT_GRACE_SECONDS",
                config.agents.grace.as_secs().to_string(),
            ),
            (
                "CYGNET_RATE_LIMITS__REQUESTS_PER_MINUTE_PER_TOKEN",
                config.rate_limits.requests_per_minute_per_token.to_string(),
            ),
            (
                "CYGNET_RATE_LIMITS__REQUESTS_PER_MINUTE_PER_ADDRESS",
                config
                    .rate_limits
                    .requests_per_minute_per_address
                    .to_string(),
            ),
        ];
        match &config.artifacts {
            ArtifactStorage::Local => {
                environment.push(("CYGNET_ARTIFACTS__STORE", "local".to_owned()));
            }
            ArtifactStorage::S3(s3) => {
                // The keys go through a shared-credentials file, as in the example.
                let credentials = temp_dir.join("s3-credentials");
                std::fs::write(
                    &credentials,
                    format!(
                        "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                        s3.access_key_id, s3.secret_access_key
                    ),
                )
                .expect("credentials file");
                environment.extend([
                    ("CYGNET_ARTIFACTS__STORE", "s3".to_owned()),
                    ("CYGNET_ARTIFACTS__BUCKET", s3.bucket.clone()),
                    ("CYGNET_ARTIFACTS__REGION", s3.region.clone()),
                    (
                        "CYGNET_ARTIFACTS__ENDPOINT",
                        s3.endpoint.clone().unwrap_or_default(),
                    ),
                    (
                        "CYGNET_ARTIFACTS__VIRTUAL_HOSTED_STYLE",
                        s3.virtual_hosted_style.to_string(),
                    ),
                    (
                        "CYGNET_ARTIFACTS__CREDENTIALS_FILE",
                        credentials.display().to_string(),
                    ),
                ]);
            }
        }
        environment
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect()
    }
}

/// The address in the JSON log line `cygnet-server listening`.
fn listening_address(line: &str) -> SocketAddr {
    let event: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    event["address"]
        .as_str()
        .and_then(|address| address.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line}"))
}
