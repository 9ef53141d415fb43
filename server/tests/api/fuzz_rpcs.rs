//! Every RPC of every service, called with random and extreme values in every field — by a member
//! of one customer and by strangers (no token, a forged one) — must answer without a panic,
//! without INTERNAL, and refuse with one of the precise codes a client can act on.
//!
//! The methods come from the file descriptor set the server serves for reflection; each needs a
//! line in [`call`], so a new RPC without one fails this test. Request messages are generated
//! from the same descriptors (`messages.rs`) with a fixed seed and decoded into the generated
//! types, so every field of every request, nested ones included, gets odd values.
//!
//! Streams: server streams are opened and read for at most [`STREAM_WAIT`] (the first message or
//! the status), then dropped. The agent RPCs (`Connect`, `UploadArtifact`, `FetchArtifact`) are
//! called by the member with a registered agent's credential, so their messages reach the
//! session; `Connect` sends the random messages after opening and reads what comes back within
//! the same bound. No RPC is skipped.

mod messages;

use std::sync::{Mutex, Once};
use std::time::Duration;

use cygnet_proto::v1 as pb;
use pb::agent_service_client::AgentServiceClient;
use pb::customer_service_client::CustomerServiceClient;
use pb::monitor_service_client::MonitorServiceClient;
use pb::pipeline_service_client::PipelineServiceClient;
use pb::release_service_client::ReleaseServiceClient;
use pb::user_service_client::UserServiceClient;
use pb::variable_service_client::VariableServiceClient;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use prost::Message;
use tonic::transport::Channel;
use tonic::{Code, Status};

use self::messages::{Aim, Method, Schema};
use crate::common::{Backend, TestOptions, TestServer};

/// Random requests per RPC from the member; strangers send [`STRANGER_CASES`] each.
const MEMBER_CASES: usize = 64;
const STRANGER_CASES: usize = 4;
/// How many calls of one RPC are in flight at once.
const IN_FLIGHT: usize = 8;
/// How long a stream is read before it is dropped.
const STREAM_WAIT: Duration = Duration::from_millis(300);
/// How long any one call may take.
const CALL_DEADLINE: Duration = Duration::from_secs(20);
/// The generator's seed, so a failure repeats; each RPC mixes its path in (see [`seed_of`]), so
/// its cases do not depend on which RPCs run before it.
const SEED: [u8; 32] = *b"cygnet-fuzz-rpcs-seed-0000000001";

/// The seed of one RPC's cases: [`SEED`] with the path's FNV-1a hash folded in.
fn seed_of(path: &str) -> [u8; 32] {
    let hash = path.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut seed = SEED;
    for (byte, mixed) in seed.iter_mut().zip(hash.to_le_bytes()) {
        *byte ^= mixed;
    }
    seed
}

/// RPCs that may take the member's own access away; they run last.
const RUN_LAST: [&str; 6] = [
    "cygnet.v1.AgentService/DeleteAgent",
    "cygnet.v1.CustomerService/UpdateMember",
    "cygnet.v1.CustomerService/RemoveMember",
    "cygnet.v1.CustomerService/DeactivateCustomer",
    "cygnet.v1.UserService/DeactivateUser",
    "cygnet.v1.UserService/RevokeApiToken",
];

/// RPCs an agent calls with its credential rather than a user's token.
const AGENT_RPCS: [&str; 3] = [
    "cygnet.v1.AgentService/Connect",
    "cygnet.v1.AgentService/UploadArtifact",
    "cygnet.v1.AgentService/FetchArtifact",
];

/// Who calls.
#[derive(Clone)]
enum Caller {
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
    fn is_member(&self) -> bool {
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
fn call(
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

/// Panics in this process outside test code (the server runs in it), since the hook was set.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records every panic but those of test code (another test's failed assertion, run alongside,
/// is that test's failure, not the server's).
fn record_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_test_code = info.location().is_some_and(|location| {
                location.file().contains("tests/") || location.file().contains("testkit/")
            });
            if !in_test_code {
                PANICS
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(info.to_string());
            }
            previous(info);
        }));
    });
}

/// Whether `code` is an answer a client can act on, for this caller and method.
fn precise(code: Code, caller: &Caller, method: &Method) -> bool {
    match code {
        Code::Ok => caller.is_member(),
        Code::InvalidArgument
        | Code::NotFound
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::FailedPrecondition
        | Code::ResourceExhausted
        | Code::AlreadyExists
        | Code::OutOfRange => true,
        Code::Unimplemented => method.client_streaming,
        _ => false,
    }
}

/// A few records in the member's customer, so that small ids name something and requests reach
/// the code that reads and changes it.
async fn seed_records(server: &TestServer, customer_id: i64) {
    let pipeline = server
        .create_pipeline(
            customer_id,
            "build",
            vec![crate::common::step("build", "true")],
            vec![],
        )
        .await;
    server.run_pipeline(customer_id, pipeline.id, &[]).await;
    server
        .create_monitor(pb::CreateMonitorRequest {
            customer_id,
            name: "database".into(),
            kind: pb::MonitorKind::Tcp.into(),
            target: "tcp://127.0.0.1:9".into(),
            ..Default::default()
        })
        .await;
    server
        .variables(crate::common::ADMIN_TOKEN)
        .create_variable_group(pb::CreateVariableGroupRequest {
            customer_id,
            name: "shared".into(),
            ..Default::default()
        })
        .await
        .expect("a variable group");
}

async fn every_rpc_answers_bad_input_precisely(backend: Backend) {
    record_panics();
    let server = TestServer::start_with(
        backend,
        TestOptions {
            rate_limits: cygnet_server::config::RateLimits {
                requests_per_minute_per_token: 1_000_000,
                requests_per_minute_per_address: 1_000_000,
            },
            ..TestOptions::default()
        },
    )
    .await;
    let acme = server.create_customer("acme").await;
    let owner = server.create_user("owner").await;
    server.add_member(acme.id, owner.id, pb::Role::Admin).await;
    let registration = server.create_registration_token(acme.id).await;
    let agent = server
        .register_agent(acme.id, "fuzz-agent", &registration)
        .await
        .expect("the agent registers");
    seed_records(&server, acme.id).await;
    let member = Caller::Member {
        token: owner.token.clone(),
        agent_uuid: "fuzz-agent".into(),
        agent_credential: agent.credential.clone(),
    };
    // Half the cases odd in one field or two (reaching past validation), half odd throughout.
    let mostly_plain = Aim {
        customer_id: acme.id,
        odd_in_ten: 1,
    };
    let odd_throughout = Aim {
        customer_id: acme.id,
        odd_in_ten: 6,
    };

    let schema = Schema::load();
    let mut methods = schema.methods.clone();
    assert!(methods.len() >= 80, "the descriptor lists every RPC");
    methods.sort_by_key(|method| RUN_LAST.contains(&method.path.as_str()));
    // `CYGNET_FUZZ_ONLY=Service/Method` narrows a run to the RPCs whose path contains it.
    if let Ok(only) = std::env::var("CYGNET_FUZZ_ONLY") {
        methods.retain(|method| method.path.contains(&only));
    }
    let mut failures = Vec::new();
    // What the member's calls answered, per RPC: printed, to see how deep the cases reach.
    let mut member_codes: Vec<(String, std::collections::BTreeMap<String, usize>)> = Vec::new();
    let started = std::time::Instant::now();
    for method in &methods {
        let mut runner = TestRunner::new_with_rng(
            Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed_of(&method.path)),
        );
        let request = |aim| schema.message(&method.input_type, aim, 0);
        let bodies = proptest::prop_oneof![
            proptest::collection::vec(request(mostly_plain), 1..=3),
            proptest::collection::vec(request(odd_throughout), 1..=3),
        ];
        let callers = std::iter::repeat_n(member.clone(), MEMBER_CASES)
            .chain(std::iter::repeat_n(Caller::NoToken, STRANGER_CASES))
            .chain(std::iter::repeat_n(Caller::ForgedToken, STRANGER_CASES));
        let cases: Vec<(Caller, Vec<Vec<u8>>)> = callers
            .map(|caller| {
                let tree = bodies.new_tree(&mut runner).expect("a request");
                (caller, tree.current())
            })
            .collect();
        // One agent stream at a time: a second one would end the first (ABORTED).
        let in_flight = if method.client_streaming && method.server_streaming {
            1
        } else {
            IN_FLIGHT
        };
        let mut codes = std::collections::BTreeMap::new();
        for chunk in cases.chunks(in_flight) {
            let mut handles = Vec::new();
            for (caller, bodies) in chunk {
                let handle = call(
                    server.channel(),
                    &method.path,
                    bodies.clone(),
                    caller.clone(),
                );
                let Some(handle) = handle else {
                    panic!("{} has no case in fuzz_rpcs::call; add one", method.path);
                };
                handles.push((caller, bodies, handle));
            }
            for (caller, bodies, handle) in handles {
                let outcome = handle.await;
                let code = match &outcome {
                    Ok(Ok(())) => Code::Ok,
                    Ok(Err(status)) => status.code(),
                    Err(join_error) => {
                        failures.push(format!(
                            "{}: the client task failed: {join_error}",
                            method.path
                        ));
                        continue;
                    }
                };
                if caller.is_member() {
                    *codes.entry(format!("{code:?}")).or_insert(0) += 1;
                }
                if !precise(code, caller, method) {
                    let who = match caller {
                        Caller::Member { .. } => "member",
                        Caller::NoToken => "no token",
                        Caller::ForgedToken => "forged token",
                    };
                    let message = match &outcome {
                        Ok(Err(status)) => status.message().to_owned(),
                        _ => String::new(),
                    };
                    let sizes: Vec<usize> = bodies.iter().map(Vec::len).collect();
                    failures.push(format!(
                        "{} as {who}: {code:?} {message:?} (request bytes {sizes:?}, first {:?})",
                        method.path,
                        &bodies[0][..bodies[0].len().min(200)]
                    ));
                }
            }
        }
        member_codes.push((method.path.clone(), codes));
    }
    for (path, codes) in &member_codes {
        eprintln!("fuzz_rpcs: {path}: {codes:?}");
    }
    let panics = PANICS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    assert!(panics.is_empty(), "panics: {panics:#?}");
    assert!(
        failures.is_empty(),
        "{} imprecise answers:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The server still answers.
    server
        .admin_users()
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .expect("the server answers after the fuzzing");
    eprintln!(
        "fuzz_rpcs: {} RPCs, {} calls each, in {:?}",
        methods.len(),
        MEMBER_CASES + 2 * STRANGER_CASES,
        started.elapsed()
    );
}

cygnet_testkit::backend_tests!(every_rpc_answers_bad_input_precisely);
