//! The demo's calls: clients of every service as one caller, and waiting for what the server
//! and the agents do.

use std::time::Duration;

use anyhow::{Context, bail};
use cygnet_proto::Bearer;
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::agent_service_client::AgentServiceClient;
use cygnet_proto::v1::customer_service_client::CustomerServiceClient;
use cygnet_proto::v1::monitor_service_client::MonitorServiceClient;
use cygnet_proto::v1::pipeline_service_client::PipelineServiceClient;
use cygnet_proto::v1::release_service_client::ReleaseServiceClient;
use cygnet_proto::v1::user_service_client::UserServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub(crate) const WAIT: Duration = Duration::from_secs(60);

pub(crate) type Authed = InterceptedService<Channel, Bearer>;

/// Clients of every service, as one caller.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) customers: CustomerServiceClient<Authed>,
    pub(crate) users: UserServiceClient<Authed>,
    pub(crate) agents: AgentServiceClient<Authed>,
    pub(crate) pipelines: PipelineServiceClient<Authed>,
    pub(crate) releases: ReleaseServiceClient<Authed>,
    pub(crate) monitors: MonitorServiceClient<Authed>,
}

impl Api {
    pub(crate) fn new(channel: Channel, token: &str) -> anyhow::Result<Api> {
        let bearer = Bearer::new(token)?;
        Ok(Api {
            customers: CustomerServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            users: UserServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            agents: AgentServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            pipelines: PipelineServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            releases: ReleaseServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            monitors: MonitorServiceClient::with_interceptor(channel, bearer),
        })
    }
}

/// Asks `check` every 100 ms until it returns something (or fails), for up to [`WAIT`].
pub(crate) async fn poll<T, Fut>(what: &str, mut check: impl FnMut() -> Fut) -> anyhow::Result<T>
where
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what}: not within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the execution finished; returns its status.
pub(crate) async fn finish(api: &Api, customer_id: i64, execution_id: i64) -> anyhow::Result<i32> {
    poll(&format!("execution {execution_id} finished"), || {
        let mut api = api.clone();
        async move {
            let execution = api
                .pipelines
                .get_execution(pb::GetExecutionRequest {
                    customer_id,
                    execution_id,
                })
                .await?
                .into_inner()
                .execution
                .context("execution")?;
            Ok(execution.finished_at.is_some().then_some(execution.status))
        }
    })
    .await
}

/// Waits until a release execution satisfies `done`.
pub(crate) async fn release_until(
    api: &Api,
    customer_id: i64,
    release_execution_id: i64,
    done: impl Fn(&pb::ReleaseExecution) -> bool,
) -> anyhow::Result<pb::ReleaseExecution> {
    let done = &done;
    poll(&format!("release execution {release_execution_id}"), || {
        let mut api = api.clone();
        async move {
            let execution = api
                .releases
                .get_release_execution(pb::GetReleaseExecutionRequest {
                    customer_id,
                    release_execution_id,
                })
                .await?
                .into_inner()
                .release_execution
                .context("release execution")?;
            Ok(done(&execution).then_some(execution))
        }
    })
    .await
}

/// Waits until `count` agents of the customer are online.
pub(crate) async fn wait_online(api: &Api, customer_id: i64, count: usize) -> anyhow::Result<()> {
    poll(
        &format!("{count} agents of customer {customer_id} online"),
        || {
            let mut api = api.clone();
            async move {
                let agents = api
                    .agents
                    .list_agents(pb::ListAgentsRequest {
                        customer_id,
                        status: pb::AgentStatus::Online.into(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .agents;
                Ok((agents.len() >= count).then_some(()))
            }
        },
    )
    .await
}

/// A new API token of the user, made by the platform admin; the secret.
pub(crate) async fn token_for(admin: &mut Api, user_id: i64) -> anyhow::Result<String> {
    Ok(admin
        .users
        .create_api_token(pb::CreateApiTokenRequest {
            name: "demo".into(),
            user_id,
            expires_at: None,
        })
        .await?
        .into_inner()
        .secret)
}
