//! Servers in processes of their own, so their CPU and memory can be read apart from the
//! simulated agents': the bench's own binary run again in a hidden mode (`serve` runs the same
//! `App` as `cygnet-server`; `bare-streams` the bare stream server). A child prints
//! `listening <address>` once it accepts connections and stops when its stdin closes, so it
//! never outlives the bench.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin};

/// What a child process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A cygnet server on its own database.
    Serve,
    /// The bare stream server.
    BareStreams,
}

impl Mode {
    fn argument(self) -> &'static str {
        match self {
            Mode::Serve => "serve",
            Mode::BareStreams => "bare-streams",
        }
    }
}

/// A running child server.
pub struct ChildServer {
    pub address: SocketAddr,
    pub pid: u32,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl ChildServer {
    /// Starts `mode` in a new process and waits until it listens.
    pub async fn spawn(mode: Mode, database_url: Option<&str>) -> anyhow::Result<ChildServer> {
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command.arg(mode.argument());
        if let Some(url) = database_url {
            command.arg("--database-url").arg(url);
        }
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a child server")?;
        let pid = child.id().context("child exited at once")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await?;
        let address = line
            .trim()
            .strip_prefix("listening ")
            .with_context(|| format!("child {mode:?} did not start: {line:?}"))?
            .parse()?;
        let stdin = child.stdin.take();
        Ok(ChildServer {
            address,
            pid,
            child,
            stdin,
        })
    }

    /// Closes its stdin and waits for it to finish (killing it after 30 s).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => anyhow::ensure!(status?.success(), "child server failed"),
            Err(_) => {
                self.child.kill().await?;
                anyhow::bail!("child server did not stop within 30 s");
            }
        }
        Ok(())
    }
}

/// The child's side: serve `mode` until stdin closes.
pub async fn run(mode: Mode, database_url: Option<&str>) -> anyhow::Result<()> {
    // Blocking std stdin on a thread of its own (tokio's needs a feature the rest of the
    // workspace does not).
    let reader = tokio::task::spawn_blocking(|| {
        use std::io::Read;
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    });
    let stdin_closed = async {
        let _ = reader.await;
    };
    match mode {
        Mode::Serve => {
            let server = crate::harness::BenchServer::start(database_url).await?;
            println!("listening {}", server.address);
            stdin_closed.await;
            server.stop().await
        }
        Mode::BareStreams => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            println!("listening {}", listener.local_addr()?);
            crate::bare::serve_streams(listener, stdin_closed).await
        }
    }
}

/// Parses the hidden child modes from the command line: `Some` when this process is a child.
pub fn mode_from_args() -> Option<(Mode, Option<String>)> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.first().map(String::as_str) {
        Some("serve") => Mode::Serve,
        Some("bare-streams") => Mode::BareStreams,
        _ => return None,
    };
    let database_url = args
        .iter()
        .position(|arg| arg == "--database-url")
        .and_then(|index| args.get(index + 1))
        .cloned();
    Some((mode, database_url))
}
