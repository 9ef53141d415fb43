//! Agents running in this process, the same code as `cygnet-agent`.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use cygnet_agent::config::AgentConfig;
use cygnet_agent::metrics::HostMetrics;
use cygnet_agent::session::Agent;
use cygnet_agent::workdir::prepare_customer_directory;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// An agent running in this process, stopped by its watch.
pub(crate) struct RunningAgent {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningAgent {
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts an agent the way `cygnet-agent` does, configured like the seed's appsettings.json.
pub(crate) fn start_agent(
    server: SocketAddr,
    data_dir: &Path,
    customer_id: i64,
    uuid: &str,
    labels: &[&str],
    registration_token: &str,
) -> anyhow::Result<RunningAgent> {
    let home = data_dir.join("agents").join(uuid);
    let settings = [
        ("CustomerId", customer_id.to_string()),
        ("AgentUuid", uuid.to_owned()),
        ("ServerUrl", format!("http://{server}")),
        ("Name", uuid.to_owned()),
        ("Location", "demo host".to_owned()),
        ("RegistrationToken", registration_token.to_owned()),
        ("WorkDirectory", home.join("work").display().to_string()),
        ("StateDirectory", home.join("state").display().to_string()),
    ];
    let mut variables: Vec<(String, String)> = settings
        .into_iter()
        .map(|(key, value)| (format!("AgentConfiguration__{key}"), value))
        .collect();
    variables.push(("AgentConfiguration__Labels".into(), labels.join(",")));
    let config = AgentConfig::load(None, variables).context("agent configuration")?;
    let work = prepare_customer_directory(&config.work_directory, config.customer_id)?;
    let agent = Agent::new(config, HostMetrics::new(&work)?)?;
    let (stop, stopped) = watch::channel(false);
    let uuid = uuid.to_owned();
    let task = tokio::spawn(async move {
        if let Err(error) = agent.run(stopped).await {
            eprintln!("agent {uuid}: {error}");
        }
    });
    Ok(RunningAgent { stop, task })
}
