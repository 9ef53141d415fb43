//! The seed's three customers, live: a real server with SQLite, real agents running real steps,
//! real monitors, so the dashboard has something to show.
//!
//! ```text
//! cargo run --example demo [-- --listen 127.0.0.1:50051 --web-listen 127.0.0.1:8080 --data-dir ./cygnet-demo]
//! ```
//!
//! `-- --help` lists the options (parsed in `cli.rs`).
//!
//! It starts `cygnet-server` in this process, creates Acme Corporation, TechStart Inc and
//! GlobalCo through the public API (users, memberships, pipelines, releases, monitors), starts
//! their agents in this process (the same code as `cygnet-agent`), runs pipelines and deploys,
//! prints every customer's dashboard figures and the users' tokens, and keeps serving until
//! Ctrl-C, with the web dashboard on `--web-listen`. `--seed-only` stops after printing. The data directory is recreated on every run;
//! the demo refuses to touch a directory it did not create.
//!
//! The monitors check services this process serves on 127.0.0.1 (a healthy API, a slow cache
//! endpoint, a database port) and one port nobody listens on, so each status shows up.

mod agents;
mod api;
mod cli;
mod monitors;
mod print;
mod releases;
mod seed;
mod seed_data;

use anyhow::Context;
use clap::Parser;
use cygnet_proto::v1 as pb;
use cygnet_server::config::{AgentSettings, LogFormat, ServerConfig};
use cygnet_server::store::DatabaseOptions;
use cygnet_server::{App, auth::token};
use tokio::net::TcpListener;

use crate::api::{Api, token_for};
use crate::cli::{Options, fresh_data_dir};
use crate::monitors::{closed_port, open_port, seed_monitors, serve_demo_services};
use crate::print::{print_dashboard, write_tokens};
use crate::releases::{seed_acme_releases, seed_single_stage_release};
use crate::seed::seed_customer;
use crate::seed_data::SEEDS;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    fresh_data_dir(&options.data_dir)?;
    let admin_token = token::generate("cyg_").secret;
    let config = ServerConfig {
        listen: options.listen,
        data_dir: options.data_dir.clone(),
        database: DatabaseOptions {
            url: format!(
                "sqlite://{}?mode=rwc",
                options.data_dir.join("cygnet.db").display()
            ),
            max_connections: 8,
        },
        bootstrap_token: Some(admin_token.clone()),
        log_format: LogFormat::Plain,
        tls: None,
        shutdown_grace_seconds: 5,
        metrics_listen: None,
        web_listen: Some(options.web_listen),
        secret_key: None,
        secret_key_previous: None,
        agents: AgentSettings::default(),
        quotas: Default::default(),
        rate_limits: Default::default(),
        retention: Default::default(),
        artifacts: Default::default(),
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    let app = App::start(config).await?;
    let web_address = app.web_address().context("the dashboard's address")?;
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let mut admin = Api::new(channel.clone(), &admin_token)?;

    let services = serve_demo_services().await?;
    let closed = closed_port().await?;
    let database = open_port().await?;
    let consultant = admin
        .users
        .create_user(pb::CreateUserRequest {
            username: "consultant".into(),
            email: "consultant@cygnet.example".into(),
            full_name: "Consultant working for every customer".into(),
            is_superuser: false,
        })
        .await?
        .into_inner()
        .user
        .context("consultant")?;
    let consultant_token = token_for(&mut admin, consultant.id).await?;

    let mut seeded = Vec::new();
    for seed in SEEDS {
        println!("creating {} …", seed.display_name);
        seeded.push(
            seed_customer(&mut admin, address, &options.data_dir, seed, consultant.id).await?,
        );
    }
    let acme = &seeded[0];
    let ops_token = acme
        .tokens
        .iter()
        .find(|(_, role, _)| *role == pb::Role::Devops)
        .map(|(_, _, token)| token.clone())
        .context("acme's ops user")?;
    let mut ops = Api::new(channel.clone(), &ops_token)?;
    seed_acme_releases(&mut admin, &mut ops, acme).await?;
    seed_single_stage_release(&mut admin, &seeded[1], "Mobile 3.0", "Mobile App", "QA").await?;
    let health = format!("http://{services}/health");
    seed_monitors(
        &mut admin,
        acme.customer.id,
        &[
            ("API Health Check", pb::MonitorKind::Http, health.clone()),
            (
                "Database Monitor",
                pb::MonitorKind::Tcp,
                format!("postgres://{database}"),
            ),
            (
                "Redis Cache",
                pb::MonitorKind::Http,
                format!("http://{services}/slow"),
            ),
            (
                "External Partner API",
                pb::MonitorKind::Http,
                format!("http://{closed}/status"),
            ),
        ],
    )
    .await?;
    seed_monitors(
        &mut admin,
        seeded[1].customer.id,
        &[("Status Page", pb::MonitorKind::Http, health.clone())],
    )
    .await?;
    seed_monitors(
        &mut admin,
        seeded[2].customer.id,
        &[("Website", pb::MonitorKind::Http, health)],
    )
    .await?;

    for customer in &seeded {
        print_dashboard(&mut admin, customer).await?;
    }
    let tokens_file = write_tokens(&options.data_dir, &admin_token, &consultant_token, &seeded)?;
    println!();
    println!("Dashboard: http://{web_address}/ (sign in with a token from the file below)");
    println!("Users and their tokens: {}", tokens_file.display());
    println!("Try, with a token from that file:");
    println!(
        "  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"customer_id\": {}}}' {address} cygnet.v1.CustomerService/GetCustomerStats",
        acme.customer.id
    );
    println!(
        "  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"customer_id\": {}}}' {address} cygnet.v1.CustomerService/WatchActivity",
        acme.customer.id
    );

    if !options.seed_only {
        println!();
        println!("Serving on {address} with the demo agents; Ctrl-C stops.");
        tokio::signal::ctrl_c().await?;
    }
    for customer in seeded {
        for agent in customer.agents {
            agent.stop().await;
        }
    }
    let _ = shutdown.send(());
    server.await??;
    Ok(())
}
