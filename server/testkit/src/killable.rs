//! A replica that can die the way a killed process does: it runs on a tokio runtime of its own,
//! and `kill` shuts that runtime down without waiting, dropping every task it runs at once —
//! connection handlers, agent sessions, background tasks, pooled database connections. Nothing
//! of the graceful shutdown runs (no offline marks, no last save, no goodbye to agents), and the
//! peers see their connections close, as after SIGKILL.

use std::net::SocketAddr;

use cygnet_server::App;
use tokio::net::TcpListener;

use crate::TestServer;

/// See the module docs.
pub struct KillableReplica {
    pub address: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    _temp_dir: tempfile::TempDir,
}

impl KillableReplica {
    /// Dies at once, as after SIGKILL.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for KillableReplica {
    fn drop(&mut self) {
        self.kill();
    }
}

impl TestServer {
    /// Starts a replica on this server's database (meaningful on PostgreSQL) that the test can
    /// kill (see the module docs).
    pub async fn start_killable_replica(&self) -> KillableReplica {
        let (temp_dir, config) = self.sibling_config();
        // Its own runtime is built and entered on a thread of its own: a runtime cannot be
        // started from within the test's.
        let (runtime, address) = tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("replica runtime");
            let address = runtime.block_on(async move {
                let listener = TcpListener::bind(config.listen).await.expect("bind");
                let address = listener.local_addr().expect("address");
                let app = App::start(config).await.expect("replica starts");
                tokio::spawn(app.serve(listener, std::future::pending()));
                address
            });
            (runtime, address)
        })
        .await
        .expect("replica start-up thread");
        KillableReplica {
            address,
            runtime: Some(runtime),
            _temp_dir: temp_dir,
        }
    }
}
