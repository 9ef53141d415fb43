//! Connected agents: the in-memory hub of open streams and latest figures, and the background
//! task that persists figures, expires silent agents and prunes history.

mod hub;
mod liveness;
mod session;

pub use hub::{AgentHub, CommandSender, SessionTicket, WorkSettings};
pub use liveness::spawn_liveness_task;
pub use session::{AgentSessions, Outbound};
