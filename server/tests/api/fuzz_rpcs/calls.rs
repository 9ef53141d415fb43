//! How each RPC is called: its path in the descriptor set → its generated client, with the
//! caller's credentials, every call bounded in time.

use std::time::Duration;

use cygnet_proto::v1 as pb;
use pb::agent_service_client::AgentServiceClient;
use pb::customer_service_client::CustomerServiceClient;
use pb::monitor_service_client::MonitorServiceClient;
use pb::pipeline_service_client::PipelineServiceClient;
use pb::release_service_client::ReleaseServiceClient;
use pb::user_service_client::UserServiceClient;
use pb::variable_service_client::VariableServiceClient;
use prost::Message;
use tonic::Status;
use tonic::transport::Channel;

/// How long a stream is read before it is dropped.
pub const STREAM_WAIT: Duration = Duration::from_millis(300);
/// How long any one call may take.
const CALL_DEADLINE: Duration = Duration::from_secs(20);

/// RPCs an agent calls with its credential rather than a user's token.
pub const AGENT_RPCS: [&str; 3] = [
    "cygnet.v1.AgentService/Connect",
    "cygnet.v1.AgentService/UploadArtifact",
    "cygnet.v1.AgentService/FetchArtifact",
];

/// Who calls.
#[derive(Clone)]
pub enum Caller {
    /// An admin of one customer; for the agent RPCs, that customer's registered agent.
    Member {
        token: String,
        agent_uuid: String,
        agent_credential: String,
    },
    NoToken,
    ForgedToken,
}

impl Caller {
    pub fn is_member(&self) -> bool {
        matches!(self, Caller::Member { .. })
    }

    fn request<T>(&self, message: T, path: &str) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(CALL_DEADLINE);
        let agent = AGENT_RPCS.contains(&path);
        let (bearer, uuid) = match self {
            Caller::Member {
                token,
                agent_uuid,
                agent_credential,
            } => {
                if agent {
                    (Some(agent_credential.clone()), Some(agent_uuid.clone()))
                } else {
                    (Some(token.clone()), None)
                }
            }
            Caller::NoToken => (None, None),
            Caller::ForgedToken => (
                Some(if agent { "cyga_forged" } else { "cyg_forged" }.to_owned()),
                agent.then(|| "fuzz-agent".to_owned()),
            ),
        };
        if let Some(bearer) = bearer {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {bearer}").parse().expect("ascii bearer"),
            );
        }
        if let Some(uuid) = uuid {
            request.metadata_mut().insert(
                cygnet_proto::AGENT_UUID_METADATA,
                uuid.parse().expect("ascii uuid"),
            );
        }
        request
    }
}

/// Reads a stream until its first message, its end or its status, for at most [`STREAM_WAIT`].
async fn read_briefly<T>(stream: &mut tonic::Streaming<T>) -> Result<(), Status> {
    match tokio::time::timeout(STREAM_WAIT, stream.message()).await {
        Ok(Ok(_)) | Err(_) => Ok(()),
        Ok(Err(status)) => Err(status),
    }
}

macro_rules! decode {
    ($request:ty, $bytes:expr) => {
        <$request>::decode(&$bytes[..]).expect(concat!(stringify!($request), " decodes"))
    };
}

macro_rules! unary {
    ($client:ident, $method:ident, $request:ty) => {
        |channel: Channel, bodies: Vec<Vec<u8>>, caller: Caller, path: String| async move {
            let message = decode!($request, bodies[0]);
            $client::new(channel)
                .$method(caller.request(message, &path))
                .await
                .map(|_| ())
        }
    };
}

macro_rules! watch {
    ($client:ident, $method:ident, $request:ty) => {
        |channel: Channel, bodies: Vec<Vec<u8>>, caller: Caller, path: String| async move {
            let message = decode!($request, bodies[0]);
            let mut stream = $client::new(channel)
                .$method(caller.request(message, &path))
                .await?
                .into_inner();
            read_briefly(&mut stream).await
        }
    };
}

macro_rules! upload {
    ($client:ident, $method:ident, $request:ty) => {
        |channel: Channel, bodies: Vec<Vec<u8>>, caller: Caller, path: String| async move {
            let messages: Vec<$request> =
                bodies.iter().map(|body| decode!($request, body)).collect();
            $client::new(channel)
                .$method(caller.request(tokio_stream::iter(messages), &path))
                .await
                .map(|_| ())
        }
    };
}

macro_rules! bidi {
    ($client:ident, $method:ident, $request:ty) => {
        |channel: Channel, bodies: Vec<Vec<u8>>, caller: Caller, path: String| async move {
            let messages: Vec<$request> =
                bodies.iter().map(|body| decode!($request, body)).collect();
            let mut stream = $client::new(channel)
                .$method(caller.request(tokio_stream::iter(messages), &path))
                .await?
                .into_inner();
            read_briefly(&mut stream).await?;
            read_briefly(&mut stream).await
        }
    };
}

/// Calls the RPC at `path` with the encoded request(s); `None` when this test has no case for
/// it (which fails the test).
pub fn call(
    channel: Channel,
    path: &str,
    bodies: Vec<Vec<u8>>,
    caller: Caller,
) -> Option<tokio::task::JoinHandle<Result<(), Status>>> {
    let path_owned = path.to_owned();
    macro_rules! spawn {
        ($call:expr) => {
            Some(tokio::spawn(async move {
                tokio::time::timeout(CALL_DEADLINE, ($call)(channel, bodies, caller, path_owned))
                    .await
                    .unwrap_or_else(|_| Err(Status::deadline_exceeded("no answer in time")))
            }))
        };
    }
    match path {
        "cygnet.v1.AgentService/CreateRegistrationToken" => spawn!(unary!(
            AgentServiceClient,
            create_registration_token,
            pb::CreateRegistrationTokenRequest
        )),
        "cygnet.v1.AgentService/ListRegistrationTokens" => spawn!(unary!(
            AgentServiceClient,
            list_registration_tokens,
            pb::ListRegistrationTokensRequest
        )),
        "cygnet.v1.AgentService/RevokeRegistrationToken" => spawn!(unary!(
            AgentServiceClient,
            revoke_registration_token,
            pb::RevokeRegistrationTokenRequest
        )),
        "cygnet.v1.AgentService/IssueReenrolmentToken" => spawn!(unary!(
            AgentServiceClient,
            issue_reenrolment_token,
            pb::IssueReenrolmentTokenRequest
        )),
        "cygnet.v1.AgentService/ListAgents" => spawn!(unary!(
            AgentServiceClient,
            list_agents,
            pb::ListAgentsRequest
        )),
        "cygnet.v1.AgentService/GetAgent" => {
            spawn!(unary!(AgentServiceClient, get_agent, pb::GetAgentRequest))
        }
        "cygnet.v1.AgentService/UpdateAgent" => spawn!(unary!(
            AgentServiceClient,
            update_agent,
            pb::UpdateAgentRequest
        )),
        "cygnet.v1.AgentService/DeleteAgent" => spawn!(unary!(
            AgentServiceClient,
            delete_agent,
            pb::DeleteAgentRequest
        )),
        "cygnet.v1.AgentService/GetAgentMetrics" => spawn!(unary!(
            AgentServiceClient,
            get_agent_metrics,
            pb::GetAgentMetricsRequest
        )),
        "cygnet.v1.AgentService/RegisterAgent" => spawn!(unary!(
            AgentServiceClient,
            register_agent,
            pb::RegisterAgentRequest
        )),
        "cygnet.v1.AgentService/Connect" => {
            spawn!(bidi!(AgentServiceClient, connect, pb::ConnectRequest))
        }
        "cygnet.v1.AgentService/UploadArtifact" => spawn!(upload!(
            AgentServiceClient,
            upload_artifact,
            pb::UploadArtifactRequest
        )),
        "cygnet.v1.AgentService/FetchArtifact" => spawn!(watch!(
            AgentServiceClient,
            fetch_artifact,
            pb::FetchArtifactRequest
        )),
        "cygnet.v1.CustomerService/CreateCustomer" => spawn!(unary!(
            CustomerServiceClient,
            create_customer,
            pb::CreateCustomerRequest
        )),
        "cygnet.v1.CustomerService/GetCustomer" => spawn!(unary!(
            CustomerServiceClient,
            get_customer,
            pb::GetCustomerRequest
        )),
        "cygnet.v1.CustomerService/ListCustomers" => spawn!(unary!(
            CustomerServiceClient,
            list_customers,
            pb::ListCustomersRequest
        )),
        "cygnet.v1.CustomerService/UpdateCustomer" => spawn!(unary!(
            CustomerServiceClient,
            update_customer,
            pb::UpdateCustomerRequest
        )),
        "cygnet.v1.CustomerService/DeactivateCustomer" => spawn!(unary!(
            CustomerServiceClient,
            deactivate_customer,
            pb::DeactivateCustomerRequest
        )),
        "cygnet.v1.CustomerService/ReactivateCustomer" => spawn!(unary!(
            CustomerServiceClient,
            reactivate_customer,
            pb::ReactivateCustomerRequest
        )),
        "cygnet.v1.CustomerService/AddMember" => spawn!(unary!(
            CustomerServiceClient,
            add_member,
            pb::AddMemberRequest
        )),
        "cygnet.v1.CustomerService/InviteMember" => spawn!(unary!(
            CustomerServiceClient,
            invite_member,
            pb::InviteMemberRequest
        )),
        "cygnet.v1.CustomerService/ListInvitations" => spawn!(unary!(
            CustomerServiceClient,
            list_invitations,
            pb::ListInvitationsRequest
        )),
        "cygnet.v1.CustomerService/RevokeInvitation" => spawn!(unary!(
            CustomerServiceClient,
            revoke_invitation,
            pb::RevokeInvitationRequest
        )),
        "cygnet.v1.CustomerService/UpdateMember" => spawn!(unary!(
            CustomerServiceClient,
            update_member,
            pb::UpdateMemberRequest
        )),
        "cygnet.v1.CustomerService/RemoveMember" => spawn!(unary!(
            CustomerServiceClient,
            remove_member,
            pb::RemoveMemberRequest
        )),
        "cygnet.v1.CustomerService/ListMembers" => spawn!(unary!(
            CustomerServiceClient,
            list_members,
            pb::ListMembersRequest
        )),
        "cygnet.v1.CustomerService/ListActivity" => spawn!(unary!(
            CustomerServiceClient,
            list_activity,
            pb::ListActivityRequest
        )),
        "cygnet.v1.CustomerService/WatchActivity" => spawn!(watch!(
            CustomerServiceClient,
            watch_activity,
            pb::WatchActivityRequest
        )),
        "cygnet.v1.CustomerService/GetCustomerStats" => spawn!(unary!(
            CustomerServiceClient,
            get_customer_stats,
            pb::GetCustomerStatsRequest
        )),
        "cygnet.v1.CustomerService/ListAuditLog" => spawn!(unary!(
            CustomerServiceClient,
            list_audit_log,
            pb::ListAuditLogRequest
        )),
        "cygnet.v1.CustomerService/GetCustomerQuotas" => spawn!(unary!(
            CustomerServiceClient,
            get_customer_quotas,
            pb::GetCustomerQuotasRequest
        )),
        "cygnet.v1.CustomerService/SetCustomerQuotas" => spawn!(unary!(
            CustomerServiceClient,
            set_customer_quotas,
            pb::SetCustomerQuotasRequest
        )),
        "cygnet.v1.CustomerService/GetCustomerUsage" => spawn!(unary!(
            CustomerServiceClient,
            get_customer_usage,
            pb::GetCustomerUsageRequest
        )),
        "cygnet.v1.MonitorService/CreateMonitor" => spawn!(unary!(
            MonitorServiceClient,
            create_monitor,
            pb::CreateMonitorRequest
        )),
        "cygnet.v1.MonitorService/GetMonitor" => spawn!(unary!(
            MonitorServiceClient,
            get_monitor,
            pb::GetMonitorRequest
        )),
        "cygnet.v1.MonitorService/ListMonitors" => spawn!(unary!(
            MonitorServiceClient,
            list_monitors,
            pb::ListMonitorsRequest
        )),
        "cygnet.v1.MonitorService/UpdateMonitor" => spawn!(unary!(
            MonitorServiceClient,
            update_monitor,
            pb::UpdateMonitorRequest
        )),
        "cygnet.v1.MonitorService/DeleteMonitor" => spawn!(unary!(
            MonitorServiceClient,
            delete_monitor,
            pb::DeleteMonitorRequest
        )),
        "cygnet.v1.MonitorService/GetMonitorHistory" => spawn!(unary!(
            MonitorServiceClient,
            get_monitor_history,
            pb::GetMonitorHistoryRequest
        )),
        "cygnet.v1.PipelineService/CreatePipeline" => spawn!(unary!(
            PipelineServiceClient,
            create_pipeline,
            pb::CreatePipelineRequest
        )),
        "cygnet.v1.PipelineService/GetPipeline" => spawn!(unary!(
            PipelineServiceClient,
            get_pipeline,
            pb::GetPipelineRequest
        )),
        "cygnet.v1.PipelineService/ListPipelines" => spawn!(unary!(
            PipelineServiceClient,
            list_pipelines,
            pb::ListPipelinesRequest
        )),
        "cygnet.v1.PipelineService/UpdatePipeline" => spawn!(unary!(
            PipelineServiceClient,
            update_pipeline,
            pb::UpdatePipelineRequest
        )),
        "cygnet.v1.PipelineService/DeletePipeline" => spawn!(unary!(
            PipelineServiceClient,
            delete_pipeline,
            pb::DeletePipelineRequest
        )),
        "cygnet.v1.PipelineService/CreateSchedule" => spawn!(unary!(
            PipelineServiceClient,
            create_schedule,
            pb::CreateScheduleRequest
        )),
        "cygnet.v1.PipelineService/ListSchedules" => spawn!(unary!(
            PipelineServiceClient,
            list_schedules,
            pb::ListSchedulesRequest
        )),
        "cygnet.v1.PipelineService/UpdateSchedule" => spawn!(unary!(
            PipelineServiceClient,
            update_schedule,
            pb::UpdateScheduleRequest
        )),
        "cygnet.v1.PipelineService/DeleteSchedule" => spawn!(unary!(
            PipelineServiceClient,
            delete_schedule,
            pb::DeleteScheduleRequest
        )),
        "cygnet.v1.PipelineService/CreateWebhook" => spawn!(unary!(
            PipelineServiceClient,
            create_webhook,
            pb::CreateWebhookRequest
        )),
        "cygnet.v1.PipelineService/ListWebhooks" => spawn!(unary!(
            PipelineServiceClient,
            list_webhooks,
            pb::ListWebhooksRequest
        )),
        "cygnet.v1.PipelineService/UpdateWebhook" => spawn!(unary!(
            PipelineServiceClient,
            update_webhook,
            pb::UpdateWebhookRequest
        )),
        "cygnet.v1.PipelineService/RotateWebhookSecret" => spawn!(unary!(
            PipelineServiceClient,
            rotate_webhook_secret,
            pb::RotateWebhookSecretRequest
        )),
        "cygnet.v1.PipelineService/DeleteWebhook" => spawn!(unary!(
            PipelineServiceClient,
            delete_webhook,
            pb::DeleteWebhookRequest
        )),
        "cygnet.v1.PipelineService/ListWebhookDeliveries" => spawn!(unary!(
            PipelineServiceClient,
            list_webhook_deliveries,
            pb::ListWebhookDeliveriesRequest
        )),
        "cygnet.v1.PipelineService/RunPipeline" => spawn!(unary!(
            PipelineServiceClient,
            run_pipeline,
            pb::RunPipelineRequest
        )),
        "cygnet.v1.PipelineService/GetExecution" => spawn!(unary!(
            PipelineServiceClient,
            get_execution,
            pb::GetExecutionRequest
        )),
        "cygnet.v1.PipelineService/ListExecutions" => spawn!(unary!(
            PipelineServiceClient,
            list_executions,
            pb::ListExecutionsRequest
        )),
        "cygnet.v1.PipelineService/CancelExecution" => spawn!(unary!(
            PipelineServiceClient,
            cancel_execution,
            pb::CancelExecutionRequest
        )),
        "cygnet.v1.PipelineService/RetryExecution" => spawn!(unary!(
            PipelineServiceClient,
            retry_execution,
            pb::RetryExecutionRequest
        )),
        "cygnet.v1.PipelineService/GetExecutionLogs" => spawn!(unary!(
            PipelineServiceClient,
            get_execution_logs,
            pb::GetExecutionLogsRequest
        )),
        "cygnet.v1.PipelineService/WatchExecution" => spawn!(watch!(
            PipelineServiceClient,
            watch_execution,
            pb::WatchExecutionRequest
        )),
        "cygnet.v1.PipelineService/ListArtifacts" => spawn!(unary!(
            PipelineServiceClient,
            list_artifacts,
            pb::ListArtifactsRequest
        )),
        "cygnet.v1.PipelineService/DownloadArtifact" => spawn!(watch!(
            PipelineServiceClient,
            download_artifact,
            pb::DownloadArtifactRequest
        )),
        "cygnet.v1.ReleaseService/CreateEnvironment" => spawn!(unary!(
            ReleaseServiceClient,
            create_environment,
            pb::CreateEnvironmentRequest
        )),
        "cygnet.v1.ReleaseService/ListEnvironments" => spawn!(unary!(
            ReleaseServiceClient,
            list_environments,
            pb::ListEnvironmentsRequest
        )),
        "cygnet.v1.ReleaseService/UpdateEnvironment" => spawn!(unary!(
            ReleaseServiceClient,
            update_environment,
            pb::UpdateEnvironmentRequest
        )),
        "cygnet.v1.ReleaseService/CreateRelease" => spawn!(unary!(
            ReleaseServiceClient,
            create_release,
            pb::CreateReleaseRequest
        )),
        "cygnet.v1.ReleaseService/GetRelease" => spawn!(unary!(
            ReleaseServiceClient,
            get_release,
            pb::GetReleaseRequest
        )),
        "cygnet.v1.ReleaseService/ListReleases" => spawn!(unary!(
            ReleaseServiceClient,
            list_releases,
            pb::ListReleasesRequest
        )),
        "cygnet.v1.ReleaseService/UpdateRelease" => spawn!(unary!(
            ReleaseServiceClient,
            update_release,
            pb::UpdateReleaseRequest
        )),
        "cygnet.v1.ReleaseService/ArchiveRelease" => spawn!(unary!(
            ReleaseServiceClient,
            archive_release,
            pb::ArchiveReleaseRequest
        )),
        "cygnet.v1.ReleaseService/DeployRelease" => spawn!(unary!(
            ReleaseServiceClient,
            deploy_release,
            pb::DeployReleaseRequest
        )),
        "cygnet.v1.ReleaseService/GetReleaseExecution" => spawn!(unary!(
            ReleaseServiceClient,
            get_release_execution,
            pb::GetReleaseExecutionRequest
        )),
        "cygnet.v1.ReleaseService/ListReleaseExecutions" => spawn!(unary!(
            ReleaseServiceClient,
            list_release_executions,
            pb::ListReleaseExecutionsRequest
        )),
        "cygnet.v1.ReleaseService/ApproveStage" => spawn!(unary!(
            ReleaseServiceClient,
            approve_stage,
            pb::ApproveStageRequest
        )),
        "cygnet.v1.ReleaseService/RejectStage" => spawn!(unary!(
            ReleaseServiceClient,
            reject_stage,
            pb::RejectStageRequest
        )),
        "cygnet.v1.ReleaseService/CancelReleaseExecution" => spawn!(unary!(
            ReleaseServiceClient,
            cancel_release_execution,
            pb::CancelReleaseExecutionRequest
        )),
        "cygnet.v1.ReleaseService/WatchReleaseExecution" => spawn!(watch!(
            ReleaseServiceClient,
            watch_release_execution,
            pb::WatchReleaseExecutionRequest
        )),
        "cygnet.v1.ReleaseService/ListReleaseArtifacts" => spawn!(unary!(
            ReleaseServiceClient,
            list_release_artifacts,
            pb::ListReleaseArtifactsRequest
        )),
        "cygnet.v1.UserService/CreateUser" => spawn!(unary!(
            UserServiceClient,
            create_user,
            pb::CreateUserRequest
        )),
        "cygnet.v1.UserService/GetUser" => {
            spawn!(unary!(UserServiceClient, get_user, pb::GetUserRequest))
        }
        "cygnet.v1.UserService/ListUsers" => {
            spawn!(unary!(UserServiceClient, list_users, pb::ListUsersRequest))
        }
        "cygnet.v1.UserService/DeactivateUser" => spawn!(unary!(
            UserServiceClient,
            deactivate_user,
            pb::DeactivateUserRequest
        )),
        "cygnet.v1.UserService/GetCurrentUser" => spawn!(unary!(
            UserServiceClient,
            get_current_user,
            pb::GetCurrentUserRequest
        )),
        "cygnet.v1.UserService/SetDefaultCustomer" => spawn!(unary!(
            UserServiceClient,
            set_default_customer,
            pb::SetDefaultCustomerRequest
        )),
        "cygnet.v1.UserService/CreateApiToken" => spawn!(unary!(
            UserServiceClient,
            create_api_token,
            pb::CreateApiTokenRequest
        )),
        "cygnet.v1.UserService/ListApiTokens" => spawn!(unary!(
            UserServiceClient,
            list_api_tokens,
            pb::ListApiTokensRequest
        )),
        "cygnet.v1.UserService/RevokeApiToken" => spawn!(unary!(
            UserServiceClient,
            revoke_api_token,
            pb::RevokeApiTokenRequest
        )),
        "cygnet.v1.UserService/ListMyInvitations" => spawn!(unary!(
            UserServiceClient,
            list_my_invitations,
            pb::ListMyInvitationsRequest
        )),
        "cygnet.v1.UserService/AcceptInvitation" => spawn!(unary!(
            UserServiceClient,
            accept_invitation,
            pb::AcceptInvitationRequest
        )),
        "cygnet.v1.UserService/DeclineInvitation" => spawn!(unary!(
            UserServiceClient,
            decline_invitation,
            pb::DeclineInvitationRequest
        )),
        "cygnet.v1.VariableService/CreateVariableGroup" => spawn!(unary!(
            VariableServiceClient,
            create_variable_group,
            pb::CreateVariableGroupRequest
        )),
        "cygnet.v1.VariableService/GetVariableGroup" => spawn!(unary!(
            VariableServiceClient,
            get_variable_group,
            pb::GetVariableGroupRequest
        )),
        "cygnet.v1.VariableService/ListVariableGroups" => spawn!(unary!(
            VariableServiceClient,
            list_variable_groups,
            pb::ListVariableGroupsRequest
        )),
        "cygnet.v1.VariableService/UpdateVariableGroup" => spawn!(unary!(
            VariableServiceClient,
            update_variable_group,
            pb::UpdateVariableGroupRequest
        )),
        "cygnet.v1.VariableService/DeleteVariableGroup" => spawn!(unary!(
            VariableServiceClient,
            delete_variable_group,
            pb::DeleteVariableGroupRequest
        )),
        "cygnet.v1.VariableService/SetVariable" => spawn!(unary!(
            VariableServiceClient,
            set_variable,
            pb::SetVariableRequest
        )),
        "cygnet.v1.VariableService/DeleteVariable" => spawn!(unary!(
            VariableServiceClient,
            delete_variable,
            pb::DeleteVariableRequest
        )),
        _ => None,
    }
}
