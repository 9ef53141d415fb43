//! A CygnetCI client in Rust, on the `cygnet-proto` crate: authenticates with an API token,
//! lists the caller's customers and each one's agents, runs a pipeline and follows its log live
//! until it ends. Exits 0 when the run succeeded.
//!
//! ```text
//! cargo run --example client -- --server localhost:50051 \
//!     --token "$TOKEN" --pipeline 1 [--customer 1] [--param NAME=VALUE ...]
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use cygnet_proto::Bearer;
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::agent_service_client::AgentServiceClient;
use cygnet_proto::v1::pipeline_service_client::PipelineServiceClient;
use cygnet_proto::v1::user_service_client::UserServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Authed = InterceptedService<Channel, Bearer>;

struct Args {
    server: String,
    token: String,
    customer: i64,
    pipeline: i64,
    parameters: HashMap<String, String>,
}

const USAGE: &str = "\
Runs a CygnetCI pipeline and follows its log (exit 0 when the run succeeded).

Usage: client --token TOKEN --pipeline ID [--server ADDRESS] [--customer ID] [--param NAME=VALUE]...

Options:
  --server ADDRESS    host:port or http(s)://host:port [default: localhost:50051]
  --token TOKEN       an API token [env: CYGNET_TOKEN]
  --pipeline ID       the pipeline to run
  --customer ID       its customer [default: the token's user's default customer]
  --param NAME=VALUE  a run parameter (repeatable)
  -h, --help          this text";

/// The parsed command line; `None` when help was asked for.
fn args() -> Result<Option<Args>, String> {
    let mut args = Args {
        server: "http://localhost:50051".into(),
        token: std::env::var("CYGNET_TOKEN").unwrap_or_default(),
        customer: 0,
        pipeline: 0,
        parameters: HashMap::new(),
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || given.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--server" => args.server = value()?,
            "--token" => args.token = value()?,
            "--customer" => args.customer = value()?.parse().map_err(|_| "--customer: a number")?,
            "--pipeline" => args.pipeline = value()?.parse().map_err(|_| "--pipeline: a number")?,
            "--param" => {
                let pair = value()?;
                let (name, value) = pair.split_once('=').ok_or("--param NAME=VALUE")?;
                args.parameters.insert(name.into(), value.into());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.token.is_empty() {
        return Err("--token (or CYGNET_TOKEN) is required".into());
    }
    if args.pipeline <= 0 {
        return Err("--pipeline is required".into());
    }
    // grpcurl's host:port works here too.
    if !args.server.contains("://") {
        args.server = format!("http://{}", args.server);
    }
    Ok(Some(args))
}

/// An error with its causes: "transport error" alone does not say that the connection was
/// refused or the name did not resolve.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("client: {problem}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(status) => {
            eprintln!("client: {:?}: {}", status.code(), status.message());
            ExitCode::from(2)
        }
    }
}

/// Whether the run succeeded.
async fn run(args: Args) -> Result<bool, tonic::Status> {
    let channel = Channel::from_shared(args.server.clone())
        .map_err(|error| tonic::Status::invalid_argument(format!("--server: {error}")))?
        .connect()
        .await
        .map_err(|error| {
            tonic::Status::unavailable(format!("{}: {}", args.server, with_causes(&error)))
        })?;
    let bearer = Bearer::new(&args.token)
        .map_err(|_| tonic::Status::invalid_argument("--token: not a valid header value"))?;
    let mut users: UserServiceClient<Authed> =
        UserServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut agents = AgentServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut pipelines = PipelineServiceClient::with_interceptor(channel, bearer);

    let me = users
        .get_current_user(pb::GetCurrentUserRequest {})
        .await?
        .into_inner();
    let username = me.user.as_ref().map_or("?", |user| user.username.as_str());
    println!("signed in as {username}");
    for membership in &me.memberships {
        let (Some(customer), Some(grant)) = (&membership.customer, &membership.membership) else {
            continue;
        };
        let default = if grant.is_default { " (default)" } else { "" };
        println!(
            "customer {} {}: {}{default}",
            customer.id,
            customer.name,
            grant.role().as_str_name()
        );
        let listed = agents
            .list_agents(pb::ListAgentsRequest {
                customer_id: customer.id,
                ..Default::default()
            })
            .await?
            .into_inner();
        for agent in listed.agents {
            let cpu = agent
                .latest
                .as_ref()
                .map_or(0.0, |sample| sample.cpu_percent);
            println!(
                "  agent {} {} cpu={cpu:.0}%",
                agent.name,
                agent.status().as_str_name()
            );
        }
    }

    let customer_id = if args.customer > 0 {
        args.customer
    } else {
        me.default_customer_id
    };
    let execution = pipelines
        .run_pipeline(pb::RunPipelineRequest {
            customer_id,
            pipeline_id: args.pipeline,
            parameters: args.parameters,
            agent_id: 0,
        })
        .await?
        .into_inner()
        .execution
        .ok_or_else(|| tonic::Status::internal("no execution in the answer"))?;
    println!("execution {} queued", execution.id);

    let mut updates = pipelines
        .watch_execution(pb::WatchExecutionRequest {
            customer_id,
            execution_id: execution.id,
            after_sequence: 0,
        })
        .await?
        .into_inner();
    let mut last = execution;
    let mut stdout = std::io::stdout();
    while let Some(update) = updates.message().await? {
        match update.update {
            Some(pb::watch_execution_response::Update::Log(chunk)) => {
                let _ = stdout.write_all(chunk.text.as_bytes());
            }
            Some(pb::watch_execution_response::Update::Execution(execution)) => last = execution,
            _ => {}
        }
    }
    println!("execution {} {}", last.id, last.status().as_str_name());
    Ok(last.status() == pb::ExecutionStatus::Succeeded)
}
