//! `cygnet-server`: parse the command line and run it (`cygnet_server::entry`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cygnet_server::entry::run(cygnet_server::cli::Cli::parse())
}
