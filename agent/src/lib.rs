//! `cygnet-agent`: the CygnetCI build-agent daemon.
//!
//! It reads the original system's `appsettings.json` shape (or TOML, or .NET-style environment
//! variables), registers once for its customer and keeps the credential in its state directory,
//! then holds one stream to the server: heartbeats with the host's real CPU/memory/disk figures
//! up, commands down. It reconnects forever with capped, jittered exponential backoff.

pub mod backoff;
pub mod client;
pub mod config;
pub mod exporter;
pub mod jobs;
pub mod mask;
pub mod metrics;
pub mod monitors;
pub mod session;
pub mod state;
pub mod step_exec;
pub mod step_groups;
pub mod step_user;
pub mod token_files;
pub mod workdir;
