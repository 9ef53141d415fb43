//! The CygnetCI gRPC contract, package `cygnet.v1`.
//!
//! Server, agent, tests, examples and benchmarks all use these generated types; nothing else
//! defines the wire format. What both ends must read alike beyond the messages lives here too:
//! metadata names, and how a monitor's target is parsed ([`monitor_target`]).

pub mod monitor_target;

pub use monitor_target::TCP_MONITOR_SCHEMES;

/// Generated messages, clients (`*_client`) and servers (`*_server`) of `cygnet.v1`.
#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("cygnet.v1");

    // Messages that may carry a secret value print without it.
    impl std::fmt::Debug for JobVariable {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let mut debug = f.debug_struct("JobVariable");
            debug
                .field("key", &self.key)
                .field("is_secret", &self.is_secret);
            if !self.is_secret {
                debug.field("value", &self.value);
            }
            debug.finish_non_exhaustive()
        }
    }

    impl std::fmt::Debug for VariableInput {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("VariableInput")
                .field("key", &self.key)
                .field("is_secret", &self.is_secret)
                .field("environment_id", &self.environment_id)
                .finish_non_exhaustive()
        }
    }

    impl std::fmt::Debug for SetVariableRequest {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SetVariableRequest")
                .field("customer_id", &self.customer_id)
                .field("group_id", &self.group_id)
                .field("key", &self.key)
                .field("is_secret", &self.is_secret)
                .field("environment_id", &self.environment_id)
                .finish_non_exhaustive()
        }
    }
}

/// The encoded `FileDescriptorSet` of every `cygnet.v1` file and its imports, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cygnet_descriptor.bin"));

/// The metadata naming the agent a credential is presented for (`authorization: Bearer <agent
/// credential>` comes with it), on the agent stream and the artifact RPCs.
pub const AGENT_UUID_METADATA: &str = "x-cygnet-agent-uuid";

/// A tonic interceptor that adds `authorization: Bearer <token>` to every call: how API clients
/// (and agents, with their credential) authenticate.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use cygnet_proto::{Bearer, v1::user_service_client::UserServiceClient};
/// let channel = tonic::transport::Endpoint::from_static("http://localhost:50051").connect().await?;
/// let mut users = UserServiceClient::with_interceptor(channel, Bearer::new("cyg_…")?);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    /// Fails when the token cannot be a header value (control characters, non-ASCII).
    pub fn new(token: &str) -> Result<Self, tonic::metadata::errors::InvalidMetadataValue> {
        Ok(Bearer(format!("Bearer {token}").parse()?))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}
