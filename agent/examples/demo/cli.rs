//! The demo's command line and its data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Parser;

/// Marks a data directory as the demo's own, so a rerun may recreate it.
const MARKER: &str = ".cygnet-demo";

/// The seed's three customers, live: a server with real agents, executions, releases and monitors,
/// and the web dashboard, until Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "demo", args_override_self = true)]
pub(crate) struct Options {
    /// Address the gRPC server listens on.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:50051",
        allow_hyphen_values = true
    )]
    pub(crate) listen: SocketAddr,
    /// Address the web dashboard listens on.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080",
        allow_hyphen_values = true
    )]
    pub(crate) web_listen: SocketAddr,
    /// Data directory (database, agents, tokens.txt), recreated on every run; a directory the
    /// demo did not make is refused.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "cygnet-demo",
        allow_hyphen_values = true
    )]
    pub(crate) data_dir: PathBuf,
    /// Stop after seeding and printing instead of serving until Ctrl-C.
    #[arg(long)]
    pub(crate) seed_only: bool,
}

/// Creates the data directory afresh: an existing one must be an earlier demo's.
pub(crate) fn fresh_data_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        if !dir.join(MARKER).is_file() {
            bail!(
                "{} exists and was not made by the demo; remove it or pass --data-dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by the cygnet demo; rerunning it recreates this directory\n",
    )?;
    Ok(())
}
