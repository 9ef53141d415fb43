//! The test harness shared by the integration tests: start a real server on 127.0.0.1:0 with a
//! fresh database (SQLite, or a PostgreSQL database of its own), make clients, create fixtures.

mod assertions;
mod backend;
mod clients;
mod fixtures;
mod private_postgres;
mod protocol_agent;
mod s3;
mod server;
mod server_helpers;
mod server_process;
pub mod web_client;

pub use assertions::{assert_invalid, assert_status, eventually, final_execution, log_text};
pub use backend::{Backend, EmptyDatabase};
pub use clients::{
    AgentClient, Bearer, CustomerClient, MonitorClient, PipelineClient, ReleaseClient, TestUser,
    UserClient, VariableClient,
};
pub use fixtures::{heartbeat, make_dev_certificates, repository_root, step};
pub use private_postgres::PrivatePostgres;
pub use protocol_agent::ProtocolAgent;
pub use s3::S3Server;
pub use server::{TestOptions, TestServer};
pub use server_process::{SERVER_PROCESS_TEST, ServerProcess, serve_if_asked};

/// The token every test server's platform administrator has.
pub const ADMIN_TOKEN: &str = "test-bootstrap-token-0123456789";
