//! The CygnetCI control plane.
//!
//! Layers, outermost first (see `docs/architecture.md`): `grpc` (thin handlers) → `auth`
//! (principal, tenant scope) → `domain` (validated types) → `store` (the only sea-orm code).

pub mod activity_feed;
pub mod agents;
pub mod app;
pub mod artifacts;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod database_gate;
pub mod dispatch;
pub mod domain;
pub mod entry;
pub mod grpc;
pub mod metrics;
pub mod monitors;
pub mod rate_limit;
pub mod retention;
mod rollups;
pub mod run_to_completion;
pub mod scheduler;
pub mod secrets;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod web;
pub mod webhooks;
pub mod wire;

pub use app::App;
pub use config::ServerConfig;
