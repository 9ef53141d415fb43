//! `TestServer`'s shortcuts that create and read data as the platform administrator, and speak
//! for agents.

use cygnet_proto::v1 as pb;
use cygnet_proto::v1::agent_service_client::AgentServiceClient;
use tonic::Status;

use crate::{ProtocolAgent, TestServer, TestUser};

impl TestServer {
    /// Creates a pipeline as the platform administrator.
    pub async fn create_pipeline(
        &self,
        customer_id: i64,
        name: &str,
        steps: Vec<pb::Step>,
        parameters: Vec<pb::Parameter>,
    ) -> pb::Pipeline {
        self.admin_pipelines()
            .create_pipeline(pb::CreatePipelineRequest {
                customer_id,
                name: name.into(),
                steps,
                parameters,
                ..Default::default()
            })
            .await
            .expect("create pipeline")
            .into_inner()
            .pipeline
            .expect("pipeline")
    }

    /// Creates, as the platform administrator, a one-step pipeline whose runs need agents
    /// carrying `labels` (none such: they stay queued).
    pub async fn create_pipeline_needing(
        &self,
        customer_id: i64,
        name: &str,
        labels: &[&str],
    ) -> pb::Pipeline {
        self.admin_pipelines()
            .create_pipeline(pb::CreatePipelineRequest {
                customer_id,
                name: name.into(),
                steps: vec![crate::step("run", "true")],
                agent_selector: Some(pb::AgentSelector {
                    labels: labels.iter().map(|label| label.to_string()).collect(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("create pipeline")
            .into_inner()
            .pipeline
            .expect("pipeline")
    }

    /// Runs a pipeline as the platform administrator.
    pub async fn run_pipeline(
        &self,
        customer_id: i64,
        pipeline_id: i64,
        parameters: &[(&str, &str)],
    ) -> pb::Execution {
        self.admin_pipelines()
            .run_pipeline(pb::RunPipelineRequest {
                customer_id,
                pipeline_id,
                parameters: parameters
                    .iter()
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect(),
                agent_id: 0,
            })
            .await
            .expect("run pipeline")
            .into_inner()
            .execution
            .expect("execution")
    }

    /// Follows an execution with WatchExecution until it ends; returns every update.
    pub async fn watch_to_end(
        &self,
        customer_id: i64,
        execution_id: i64,
        within: std::time::Duration,
    ) -> Vec<pb::watch_execution_response::Update> {
        let mut stream = self
            .admin_pipelines()
            .watch_execution(pb::WatchExecutionRequest {
                customer_id,
                execution_id,
                after_sequence: 0,
            })
            .await
            .expect("watch")
            .into_inner();
        let mut updates = Vec::new();
        let collect = async {
            while let Some(message) = stream.message().await.expect("watch stream") {
                if let Some(update) = message.update {
                    updates.push(update);
                }
            }
        };
        tokio::time::timeout(within, collect)
            .await
            .unwrap_or_else(|_| {
                panic!("execution {execution_id} did not finish within {within:?}")
            });
        updates
    }

    /// The execution with its steps.
    pub async fn execution(&self, customer_id: i64, execution_id: i64) -> pb::Execution {
        self.admin_pipelines()
            .get_execution(pb::GetExecutionRequest {
                customer_id,
                execution_id,
            })
            .await
            .expect("get execution")
            .into_inner()
            .execution
            .expect("execution")
    }

    /// Every log chunk of an execution, through GetExecutionLogs pages.
    pub async fn logs(&self, customer_id: i64, execution_id: i64) -> Vec<pb::LogChunk> {
        let mut chunks = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .admin_pipelines()
                .get_execution_logs(pb::GetExecutionLogsRequest {
                    customer_id,
                    execution_id,
                    page_size: 1000,
                    page_token: page_token.clone(),
                    ..Default::default()
                })
                .await
                .expect("logs")
                .into_inner();
            chunks.extend(page.chunks);
            if page.next_page_token.is_empty() {
                return chunks;
            }
            page_token = page.next_page_token;
        }
    }

    /// The customer's environments by name.
    pub async fn environments(
        &self,
        customer_id: i64,
    ) -> std::collections::HashMap<String, pb::Environment> {
        self.admin_releases()
            .list_environments(pb::ListEnvironmentsRequest {
                customer_id,
                ..Default::default()
            })
            .await
            .expect("environments")
            .into_inner()
            .environments
            .into_iter()
            .map(|environment| (environment.name.clone(), environment))
            .collect()
    }

    /// A release execution with its stages.
    pub async fn release_execution(
        &self,
        customer_id: i64,
        release_execution_id: i64,
    ) -> pb::ReleaseExecution {
        self.admin_releases()
            .get_release_execution(pb::GetReleaseExecutionRequest {
                customer_id,
                release_execution_id,
            })
            .await
            .expect("release execution")
            .into_inner()
            .release_execution
            .expect("release execution")
    }

    /// Creates a monitor as the platform administrator.
    pub async fn create_monitor(&self, request: pb::CreateMonitorRequest) -> pb::Monitor {
        self.admin_monitors()
            .create_monitor(request)
            .await
            .expect("create monitor")
            .into_inner()
            .monitor
            .expect("monitor")
    }

    /// The monitor as the platform administrator sees it.
    pub async fn monitor(&self, customer_id: i64, monitor_id: i64) -> pb::Monitor {
        self.admin_monitors()
            .get_monitor(pb::GetMonitorRequest {
                customer_id,
                monitor_id,
            })
            .await
            .expect("get monitor")
            .into_inner()
            .monitor
            .expect("monitor")
    }

    /// Waits until the monitor's status is `status` (polling; panics after `within`).
    pub async fn wait_for_monitor_status(
        &self,
        customer_id: i64,
        monitor_id: i64,
        status: pb::MonitorStatus,
        within: std::time::Duration,
    ) -> pb::Monitor {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let monitor = self.monitor(customer_id, monitor_id).await;
            if monitor.status == status as i32 {
                return monitor;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "monitor {monitor_id} not {status:?} within {within:?}: {monitor:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// The customer's activity, newest first (one page of up to 1000 events).
    pub async fn activity(&self, customer_id: i64) -> Vec<pb::ActivityEvent> {
        self.admin_customers()
            .list_activity(pb::ListActivityRequest {
                customer_id,
                page_size: 1000,
                ..Default::default()
            })
            .await
            .expect("list activity")
            .into_inner()
            .events
    }

    /// Creates a variable group holding one secret variable, as the platform administrator.
    pub async fn create_group_with_secret(
        &self,
        customer_id: i64,
        group: &str,
        key: &str,
        value: &str,
    ) -> pb::VariableGroup {
        let mut variables = self.variables(crate::ADMIN_TOKEN);
        let group = variables
            .create_variable_group(pb::CreateVariableGroupRequest {
                customer_id,
                name: group.into(),
                ..Default::default()
            })
            .await
            .expect("group")
            .into_inner()
            .group
            .expect("group");
        variables
            .set_variable(pb::SetVariableRequest {
                customer_id,
                group_id: group.id,
                key: key.into(),
                value: value.into(),
                is_secret: true,
                ..Default::default()
            })
            .await
            .expect("secret");
        group
    }

    /// Creates a registration token for the customer as the platform administrator.
    pub async fn create_registration_token(&self, customer_id: i64) -> String {
        self.admin_agents()
            .create_registration_token(pb::CreateRegistrationTokenRequest {
                customer_id,
                description: "test".into(),
                ..Default::default()
            })
            .await
            .expect("create registration token")
            .into_inner()
            .secret
    }

    /// Registers an agent the way `cygnet-agent` does.
    pub async fn register_agent(
        &self,
        customer_id: i64,
        uuid: &str,
        registration_token: &str,
    ) -> Result<pb::RegisterAgentResponse, Status> {
        AgentServiceClient::new(self.channel())
            .register_agent(pb::RegisterAgentRequest {
                customer_id,
                uuid: uuid.into(),
                name: uuid.into(),
                labels: vec!["linux".into()],
                hostname: "test-host".into(),
                os: "linux".into(),
                arch: "x86_64".into(),
                version: "test".into(),
                max_concurrent_jobs: 2,
                registration_token: registration_token.into(),
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Opens an agent stream with a credential, speaking the real protocol.
    pub async fn connect_agent(
        &self,
        uuid: &str,
        credential: &str,
    ) -> Result<ProtocolAgent, Status> {
        ProtocolAgent::connect(self.channel(), uuid, credential).await
    }

    /// Creates a customer as the platform administrator.
    pub async fn create_customer(&self, name: &str) -> pb::Customer {
        self.admin_customers()
            .create_customer(pb::CreateCustomerRequest {
                name: name.into(),
                display_name: format!("{name} display"),
                ..Default::default()
            })
            .await
            .expect("create customer")
            .into_inner()
            .customer
            .expect("customer")
    }

    /// Creates a user with a token, as the platform administrator.
    pub async fn create_user(&self, username: &str) -> TestUser {
        let user = self
            .admin_users()
            .create_user(pb::CreateUserRequest {
                username: username.into(),
                email: format!("{username}@example.com"),
                full_name: format!("{username} full name"),
                is_superuser: false,
            })
            .await
            .expect("create user")
            .into_inner()
            .user
            .expect("user");
        let token = self
            .admin_users()
            .create_api_token(pb::CreateApiTokenRequest {
                name: "test".into(),
                user_id: user.id,
                expires_at: None,
            })
            .await
            .expect("create token")
            .into_inner();
        TestUser {
            id: user.id,
            username: user.username,
            token: token.secret,
            token_id: token.token.expect("token").id,
        }
    }

    /// Adds a user to a customer as the platform administrator.
    /// Creates a user who is a member of `customer_id` with `role`, as the platform
    /// administrator.
    pub async fn create_member(
        &self,
        customer_id: i64,
        username: &str,
        role: pb::Role,
    ) -> TestUser {
        let user = self.create_user(username).await;
        self.add_member(customer_id, user.id, role).await;
        user
    }

    pub async fn add_member(&self, customer_id: i64, user_id: i64, role: pb::Role) -> pb::Member {
        self.admin_customers()
            .add_member(pb::AddMemberRequest {
                customer_id,
                user_id,
                role: role.into(),
            })
            .await
            .expect("add member")
            .into_inner()
            .member
            .expect("member")
    }
}
