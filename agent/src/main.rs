//! `cygnet-agent`: parse configuration, initialise logging, run until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cygnet_agent::config::AgentConfig;
use cygnet_agent::metrics::HostMetrics;
use cygnet_agent::session::Agent;
use cygnet_agent::workdir::prepare_customer_directory;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// CygnetCI build agent.
#[derive(Debug, Parser)]
#[command(name = "cygnet-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    options: Options,
}

#[derive(Debug, clap::Args, Clone)]
struct Options {
    /// Configuration file: appsettings.json (JSON) or a .toml file, with an "AgentConfiguration"
    /// (or "Agent") section. Default: ./appsettings.json when it exists. Environment variables
    /// such as AgentConfiguration__CustomerId=1 override it.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Log format: plain or json.
    #[arg(long, default_value = "plain", value_parser = ["plain", "json"], global = true)]
    log_format: String,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Register if needed, connect and run jobs until SIGINT/SIGTERM (the default).
    Run,
    /// Validate the configuration and print the effective settings (secrets hidden); exits
    /// non-zero when it is invalid.
    CheckConfig,
    /// Internal: how the agent starts a step as the RunStepsAs user (switch groups, gid and
    /// uid, then exec the command).
    #[command(hide = true)]
    ExecStep {
        #[arg(long)]
        uid: u32,
        #[arg(long)]
        gid: u32,
        /// Comma-separated group ids.
        #[arg(long, default_value = "")]
        groups: String,
        /// The program and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
}

/// Runs `exec-step`: returns only when the step could not be started.
fn exec_step(uid: u32, gid: u32, groups: &str, command: Vec<std::ffi::OsString>) -> ExitCode {
    let problem = match cygnet_agent::step_exec::parse_groups(groups) {
        Ok(groups) => cygnet_agent::step_exec::exec_step(&cygnet_agent::step_exec::ExecStep {
            uid,
            gid,
            groups,
            command,
        }),
        Err(problem) => problem,
    };
    eprintln!("cygnet-agent exec-step: {problem}");
    // The shell's "cannot execute" status: the step fails with it.
    ExitCode::from(126)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::ExecStep {
        uid,
        gid,
        groups,
        command,
    }) = cli.command
    {
        return exec_step(uid, gid, &groups, command);
    }
    let file = cli.options.config.clone().or_else(|| {
        let default = PathBuf::from("appsettings.json");
        default.is_file().then_some(default)
    });
    let config = match AgentConfig::load(file.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(error) if file.is_none() => {
            // Say where a file was looked for: "CustomerId is required" alone sends the reader
            // to the wrong place.
            let here = std::env::current_dir()
                .map(|dir| dir.join("appsettings.json").display().to_string())
                .unwrap_or_else(|_| "./appsettings.json".to_owned());
            eprintln!(
                "cygnet-agent: {error} (no configuration file: {here} does not exist and no --config FILE was given; AgentConfiguration__* variables alone must then set every required key)"
            );
            return ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("cygnet-agent: {error}");
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, Some(Command::CheckConfig)) {
        // Written without println!, so a closed pipe (`| head`) ends the output quietly.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = match &file {
            Some(file) => writeln!(
                out,
                "# {} (and AgentConfiguration__* variables)",
                file.display()
            ),
            None => writeln!(out, "# AgentConfiguration__* variables only"),
        };
        for (key, value) in config.describe() {
            if writeln!(out, "{key} = {value}").is_err() {
                break;
            }
        }
        for warning in config.warnings(file.as_deref()) {
            eprintln!("cygnet-agent: warning: {warning}");
        }
        // Start-up refuses a step user it cannot switch to; say so now.
        if let Some(name) = &config.run_steps_as
            && let Err(problem) = cygnet_agent::step_user::StepUser::resolve(name)
        {
            eprintln!("cygnet-agent: warning: AgentConfiguration:RunStepsAs {problem}");
        }
        return ExitCode::SUCCESS;
    }
    init_logging(&cli.options.log_format);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let work_directory =
        match prepare_customer_directory(&config.work_directory, config.customer_id) {
            Ok(path) => path,
            Err(error) => {
                eprintln!(
                    "cygnet-agent: AgentConfiguration:WorkDirectory {}: {error}",
                    config.work_directory.display()
                );
                return ExitCode::from(2);
            }
        };
    let metrics = match HostMetrics::new(&work_directory) {
        Ok(metrics) => metrics,
        Err(error) => {
            eprintln!("cygnet-agent: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        customer_id = config.customer_id,
        uuid = %config.agent_uuid,
        server = %config.server_url,
        work_directory = %work_directory.display(),
        "cygnet-agent starting"
    );
    let warnings = config.warnings(file.as_deref());
    let agent = match Agent::new(config, metrics) {
        Ok(agent) => agent,
        Err(error) => {
            eprintln!("cygnet-agent: {error}");
            return ExitCode::from(2);
        }
    };
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cygnet-agent: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received, closing the stream");
            let _ = stop.send(true);
            wait_for_signal().await;
            eprintln!("cygnet-agent: second signal, exiting immediately");
            std::process::exit(130);
        });
        agent.run(stopped).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("cygnet-agent: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: &str) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,h2=warn,hyper=warn,tower=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if format == "json" {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .flatten_event(true),
            )
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_target(false),
            )
            .try_init()
    };
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
