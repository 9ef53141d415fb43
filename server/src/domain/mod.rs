//! Validated domain types: what the rest of the server reasons about.
//!
//! Wire types (protobuf) are converted into these at the gRPC edge, where validation turns bad
//! input into INVALID_ARGUMENT; rows are converted into these inside `store/`.

pub mod activity;
pub mod agent;
pub mod agent_identity;
pub mod customer;
pub mod execution;
pub mod ids;
pub mod monitor;
pub mod page;
pub mod pipeline;
pub mod quota;
pub mod refusal;
pub mod release;
pub mod release_flow;
pub mod role;
pub mod schedule;
pub mod snapshot;
pub mod usage;
pub mod user;
pub mod validate;
pub mod variable;
pub mod webhook;

pub use activity::{ActivityEvent, NewActivity};
pub use agent::{
    Agent, AgentFigures, AgentFilter, AgentPatch, AgentRegistration, AgentStatus,
    NewRegistrationToken, RegistrationToken,
};
pub use customer::{Customer, CustomerPatch, NewCustomer};
pub use ids::{
    AgentId, CustomerId, EnvironmentId, ExecutionId, InvitationId, MonitorId, PipelineId,
    RegistrationTokenId, ReleaseExecutionId, ReleaseId, ScheduleId, StageExecutionId, TokenId,
    UserId, VariableGroupId, WebhookDeliveryId, WebhookId,
};
pub use page::{Page, PageRequest};
pub use quota::{Quota, QuotaExceeded, QuotaLimits};
pub use refusal::Refusal;
pub use role::Role;
pub use user::{ApiToken, Invitation, Membership, NewApiToken, NewUser, User};
pub use validate::{ValidationError, shorten};
