//! Conversions between the wire (protobuf messages of `cygnet-proto`) and the domain, in one
//! place for everything that speaks to clients and agents: the gRPC handlers and the
//! dashboard, and the dispatcher and monitor scheduler that send agents their work.
//!
//! `TryFrom<&pb::…Request>` validates on receipt (INVALID_ARGUMENT naming the field comes from
//! here); `From<domain::…> for pb::…` converts on the way out.

pub mod agent;
pub mod common;
pub mod monitor;
pub mod pipeline;
pub mod quota;
pub mod release;
pub mod usage;
pub mod variable;
