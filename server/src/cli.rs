//! Command line of `cygnet-server`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Overrides;

/// CygnetCI control plane: a multi-tenant gRPC server.
#[derive(Debug, Parser)]
#[command(name = "cygnet-server", version, about)]
pub struct Cli {
    /// TOML configuration file (keys as in CYGNET_* without the prefix, e.g. listen, data_dir).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:50051; env: CYGNET_LISTEN].
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory for the SQLite database and admin token [default: ./cygnet-data; env: CYGNET_DATA_DIR].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL, sqlite:… or postgres://… [default: SQLite in the data directory; env: CYGNET_DATABASE_URL].
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Log format: plain or json [default: plain; env: CYGNET_LOG_FORMAT].
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Manage the database schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Recount the execution figures (counts by status per pipeline) from the execution rows.
    /// The server keeps them itself; this is for an operator who doubts them, and is safe while
    /// servers run.
    RebuildRollups,
    /// Write a backup of a running (or stopped) embedded server to FILE: a consistent copy of
    /// its SQLite database, its secret key file and its artifacts, as one tar archive.
    Backup {
        /// The archive to write; it must not exist.
        file: std::path::PathBuf,
    },
    /// Restore a backup written by `backup` into this configuration's data directory, which
    /// must not have a database yet. Start the server afterwards.
    Restore {
        /// The archive to read.
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert applied migrations, newest first.
    Down {
        /// How many migrations to revert.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

impl Cli {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            log_format: self.log_format.clone(),
        }
    }
}
