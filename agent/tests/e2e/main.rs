//! End-to-end tests: the real `cygnet-agent` binary against a real server on 127.0.0.1:0.

mod backup;
mod cli;
mod common;
mod credentials;
mod daemon;
mod dashboard_pages;
mod demo;
mod metrics;
mod monitors;
mod object_store;
mod outage;
mod pipelines;
mod proxy;
mod releases;
mod replicas;
mod variables;
mod web;

/// Not a check: the entry point of `cygnet_testkit::ServerProcess` (this binary, run again as a
/// `cygnet-server` process). Returns at once in a normal test run.
#[test]
fn server_process() {
    cygnet_testkit::serve_if_asked();
}
