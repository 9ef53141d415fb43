//! Integration tests: a real `cygnet-server` on 127.0.0.1:0 with a fresh database and the real
//! migrations, driven through generated gRPC clients. Tests marked by `backend_tests!` run on
//! SQLite always and on PostgreSQL when `CYGNET_TEST_DATABASE_URL` is set.

/// The shared harness, under the name the test modules use.
mod common {
    pub use cygnet_testkit::*;
}

mod access_changes;
mod agent_credentials;
mod agents;
mod artifact_store;
mod authority;
mod bad_input;
mod bootstrap;
mod customers;
mod dashboard;
mod error_details;
mod execution_triggers;
mod fuzz_rpcs;
mod isolation;
mod metrics;
mod migrations;
mod monitors;
mod noisy_neighbours;
mod pipeline_versions;
mod pipelines;
mod process;
mod quotas;
mod releases;
mod rollups;
mod schedules;
mod tls;
mod usage;
mod users;
mod variables;
mod web;
mod web_edit;
mod web_manage;
mod web_releases;
mod web_security;
mod web_see;
mod web_webhooks;
mod webhooks;
