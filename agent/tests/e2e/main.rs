//! End-to-end tests: the real `cygnet-agent` binary against a real server on 127.0.0.1:0.

mod backup;
mod cli;
mod common;
mod credentials;
mod daemon;
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
