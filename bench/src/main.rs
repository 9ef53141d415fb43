//! `cygnet-bench`: the numbers a CI operator cares about, measured against a real server with
//! simulated agents speaking the real protocol (see BENCHMARKS.md).
//!
//! ```text
//! cargo run --release -p cygnet-bench -- all [--quick] [--database-url postgres://…/test] [--json FILE]
//! ```

mod bare;
mod child;
mod dashboard;
mod fleet;
mod harness;
mod history;
mod noisy;
mod procfs;
mod real_agent;
mod scenarios;
mod stats;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// RunPipeline → job received by an agent, with 1, 100 and 1,000 agents connected.
    Dispatch,
    /// Trivial executions queued → succeeded per second with 100 agents; none lost or doubled.
    Throughput,
    /// Tenant-scoped reads at concurrency 64 against a bare tonic service in the same run.
    Api,
    /// 1,000 and 10,000 heartbeating agents: server CPU and RSS against bare streams.
    Fleet,
    /// One job printing 200 MB through a real cygnet-agent.
    Logs,
    /// A real idle cygnet-agent over 60 s.
    AgentFootprint,
    /// The web dashboard's server-side render with 10,000 executions in the customer.
    Dashboard,
    /// Customer B's dispatch latency alone and while customer A floods the queue.
    NoisyNeighbour,
    /// Every scenario above.
    All,
}

#[derive(Debug, Parser)]
#[command(name = "cygnet-bench", about = "Benchmarks of cygnet-server")]
struct Cli {
    /// Which scenario to run.
    #[arg(value_enum, default_value = "all")]
    scenario: Scenario,
    /// A short smoke run (seconds instead of minutes; the figures are not comparable).
    #[arg(long)]
    quick: bool,
    /// PostgreSQL server to create the bench database on (e.g. postgres://postgres@127.0.0.1:5432/test);
    /// SQLite in a temporary directory when unset.
    #[arg(long)]
    database_url: Option<String>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `CYGNET_BENCH_LOG=1` shows the in-process servers' log (filtered by RUST_LOG) on stderr.
    if std::env::var_os("CYGNET_BENCH_LOG").is_some() {
        cygnet_server::telemetry::init(cygnet_server::config::LogFormat::Plain);
    }
    if let Some((mode, database_url)) = child::mode_from_args() {
        return child::run(mode, database_url.as_deref()).await;
    }
    let cli = Cli::parse();
    let backend = if cli.database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let profile = if cfg!(debug_assertions) {
        "debug build: figures are not representative"
    } else {
        "release build"
    };
    println!(
        "cygnet-bench on {backend} ({profile}{})",
        if cli.quick { ", quick" } else { "" }
    );
    let options = scenarios::Options {
        quick: cli.quick,
        database_url: cli.database_url.clone(),
    };
    let mut results = Vec::new();
    let run = |scenario| cli.scenario == scenario || cli.scenario == Scenario::All;
    if run(Scenario::Dispatch) {
        results.extend(scenarios::dispatch(&options).await?);
    }
    if run(Scenario::Throughput) {
        results.extend(scenarios::throughput(&options).await?);
    }
    if run(Scenario::Api) {
        results.extend(scenarios::api(&options).await?);
    }
    if run(Scenario::Fleet) {
        results.extend(fleet::fleet(&options).await?);
    }
    if run(Scenario::Logs) {
        results.extend(real_agent::logs(&options).await?);
    }
    if run(Scenario::AgentFootprint) {
        results.extend(real_agent::agent_footprint(&options).await?);
    }
    if run(Scenario::Dashboard) {
        results.extend(dashboard::dashboard(&options).await?);
    }
    if run(Scenario::NoisyNeighbour) {
        results.extend(noisy::noisy_neighbour(&options).await?);
    }
    println!();
    println!("{:<44} {:>14} unit", "figure", "value");
    for result in &results {
        println!("{:<44} {:>14.3} {}", result.name, result.value, result.unit);
    }
    if let Some(path) = cli.json {
        let document = serde_json::json!({
            "backend": backend,
            "quick": cli.quick,
            "release": !cfg!(debug_assertions),
            "results": results,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&document)? + "\n")?;
        println!("written to {}", path.display());
    }
    Ok(())
}
