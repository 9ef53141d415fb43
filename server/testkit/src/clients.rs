//! Clients of every service with a bearer token, and the users tests create.

use cygnet_proto::v1::agent_service_client::AgentServiceClient;
use cygnet_proto::v1::customer_service_client::CustomerServiceClient;
use cygnet_proto::v1::monitor_service_client::MonitorServiceClient;
use cygnet_proto::v1::pipeline_service_client::PipelineServiceClient;
use cygnet_proto::v1::release_service_client::ReleaseServiceClient;
use cygnet_proto::v1::user_service_client::UserServiceClient;
use cygnet_proto::v1::variable_service_client::VariableServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::{ADMIN_TOKEN, TestServer};

/// A user created for a test, with a live token.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub username: String,
    pub token: String,
    pub token_id: i64,
}

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: &str) -> Self {
        Bearer(format!("Bearer {token}").parse().ok())
    }

    /// No authorization metadata at all.
    pub fn none() -> Self {
        Bearer(None)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type MonitorClient = MonitorServiceClient<InterceptedService<Channel, Bearer>>;
pub type VariableClient = VariableServiceClient<InterceptedService<Channel, Bearer>>;
pub type ReleaseClient = ReleaseServiceClient<InterceptedService<Channel, Bearer>>;
pub type PipelineClient = PipelineServiceClient<InterceptedService<Channel, Bearer>>;
pub type AgentClient = AgentServiceClient<InterceptedService<Channel, Bearer>>;
pub type CustomerClient = CustomerServiceClient<InterceptedService<Channel, Bearer>>;
pub type UserClient = UserServiceClient<InterceptedService<Channel, Bearer>>;

impl TestServer {
    pub fn customers(&self, token: &str) -> CustomerClient {
        CustomerServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn users(&self, token: &str) -> UserClient {
        UserServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn agents(&self, token: &str) -> AgentClient {
        AgentServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn pipelines(&self, token: &str) -> PipelineClient {
        PipelineServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn admin_pipelines(&self) -> PipelineClient {
        self.pipelines(ADMIN_TOKEN)
    }

    pub fn releases(&self, token: &str) -> ReleaseClient {
        ReleaseServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn admin_releases(&self) -> ReleaseClient {
        self.releases(ADMIN_TOKEN)
    }

    pub fn monitors(&self, token: &str) -> MonitorClient {
        MonitorServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn admin_monitors(&self) -> MonitorClient {
        self.monitors(ADMIN_TOKEN)
    }

    pub fn variables(&self, token: &str) -> VariableClient {
        VariableServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    pub fn admin_agents(&self) -> AgentClient {
        self.agents(ADMIN_TOKEN)
    }

    pub fn admin_customers(&self) -> CustomerClient {
        self.customers(ADMIN_TOKEN)
    }

    pub fn admin_users(&self) -> UserClient {
        self.users(ADMIN_TOKEN)
    }
}
