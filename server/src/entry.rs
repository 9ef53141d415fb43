//! What `cygnet-server` does once its command line is parsed: load the configuration, start
//! logging and the runtime, run the command. The binary is this and nothing else, so tests that
//! need a real server process (one they can SIGKILL) run exactly this code.

use std::process::ExitCode;

use tokio::net::TcpListener;

use crate::cli::{Cli, Command, MigrateAction};
use crate::store::{MigrationCommand, Store};
use crate::{App, ServerConfig, telemetry, tls};

/// Runs the command `cli` names to its end; the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    let config = match ServerConfig::load(cli.config.as_deref(), &cli.overrides()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("cygnet-server: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cygnet-server: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Migrate { action } => migrate(config, action).await,
            Command::RebuildRollups => rebuild_rollups(config).await,
            Command::Backup { file } => backup(config, &file).await,
            Command::Restore { file } => restore(config, &file).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("cygnet-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", config.listen))?;
    let app = App::start(config).await?;
    app.serve(listener, shutdown_signal()).await
}

async fn migrate(config: ServerConfig, action: MigrateAction) -> anyhow::Result<()> {
    tls::install_crypto_provider();
    let store = Store::connect(&config.database).await?;
    match action {
        MigrateAction::Up => {
            store.migrate(MigrationCommand::Up).await?;
            println!("all migrations applied");
        }
        MigrateAction::Down { steps } => {
            store.migrate(MigrationCommand::Down { steps }).await?;
            println!("reverted {steps} migration(s)");
        }
        MigrateAction::Status => {
            for (name, applied) in store.migration_status().await? {
                println!("{} {name}", if applied { "applied" } else { "pending" });
            }
        }
    }
    store.close().await?;
    Ok(())
}

async fn rebuild_rollups(config: ServerConfig) -> anyhow::Result<()> {
    tls::install_crypto_provider();
    let store = Store::connect(&config.database).await?;
    let rows = store.rebuild_execution_rollups().await?;
    println!("execution figures recounted: {rows} rollup row(s)");
    store.close().await?;
    Ok(())
}

async fn backup(config: ServerConfig, file: &std::path::Path) -> anyhow::Result<()> {
    tls::install_crypto_provider();
    let summary = crate::backup::backup(&config, file).await?;
    if summary.artifacts_in_object_store {
        println!(
            "artifacts are in the S3-compatible store and not in the archive: back the bucket up \
             with the store's own tools (docs/deploy.md)"
        );
    }
    println!(
        "backup written to {}: the database, {} artifact file(s){}",
        file.display(),
        summary.artifacts,
        if summary.secret_key_included {
            ", the secret key (keep the archive as secret as the key)"
        } else {
            "; the secret key is configured outside the data directory: keep it with the backup"
        }
    );
    Ok(())
}

async fn restore(config: ServerConfig, file: &std::path::Path) -> anyhow::Result<()> {
    let summary = crate::backup::restore(&config, file).await?;
    println!(
        "restored {} into {}: the database, {} artifact file(s){}",
        file.display(),
        config.data_dir.display(),
        summary.artifacts,
        if summary.secret_key_restored {
            ", the secret key"
        } else {
            "; no secret key in the archive: start with the original CYGNET_SECRET_KEY"
        }
    );
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM; a second signal exits at once.
async fn shutdown_signal() {
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("cygnet-server: second signal, exiting immediately");
        std::process::exit(130);
    });
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
