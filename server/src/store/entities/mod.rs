//! sea-orm row types, one module per table. Only `store/` sees these.

pub mod activity_event;
pub mod agent;
pub mod agent_label;
pub mod agent_sample;
pub mod api_token;
pub mod artifact;
pub mod audit_entry;
pub mod customer;
pub mod environment;
pub mod execution;
pub mod log_chunk;
pub mod monitor;
pub mod monitor_result;
pub mod pipeline;
pub mod registration_token;
pub mod release;
pub mod release_execution;
pub mod release_execution_build;
pub mod release_pipeline;
pub mod release_stage;
pub mod stage_execution_record;
pub mod step_execution;
pub mod user;
pub mod user_customer;
pub mod variable;
pub mod variable_group;
