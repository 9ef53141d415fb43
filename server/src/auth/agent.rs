//! Agent credentials → [`AuthenticatedAgent`], and the optional mTLS check.

use tonic::metadata::MetadataMap;

use super::{AuthError, token};
use crate::domain::agent_identity::agent_was_deleted;
use crate::domain::{AgentId, CustomerId};
use crate::store::Store;

/// Prefix of agent credentials, distinct from user tokens so neither is accepted as the other.
pub const AGENT_CREDENTIAL_PREFIX: &str = "cyga_";
/// Metadata naming the agent a credential is presented for.
pub use cygnet_proto::AGENT_UUID_METADATA;

/// Proof that a stream belongs to one agent of one customer; made only here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedAgent {
    agent_id: AgentId,
    customer_id: CustomerId,
    uuid: String,
    name: String,
}

impl AuthenticatedAgent {
    pub(crate) fn new(
        agent_id: AgentId,
        customer_id: CustomerId,
        uuid: String,
        name: String,
    ) -> Self {
        Self {
            agent_id,
            customer_id,
            uuid,
            name,
        }
    }

    pub fn agent_id(&self) -> AgentId {
        self.agent_id
    }

    /// The customer this agent belongs to; everything it does is scoped to it.
    pub fn customer_id(&self) -> CustomerId {
        self.customer_id
    }

    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Checks agent credentials and, when the server verifies client certificates, that the
/// certificate's CN is the agent's uuid.
#[derive(Clone)]
pub struct AgentAuthenticator {
    store: Store,
    require_client_certificate: bool,
}

impl AgentAuthenticator {
    pub fn new(store: Store, require_client_certificate: bool) -> Self {
        Self {
            store,
            require_client_certificate,
        }
    }

    /// With mTLS configured, the presented certificate's CN must equal `uuid`.
    pub fn check_client_certificate(
        &self,
        certificate_cn: Option<&str>,
        uuid: &str,
    ) -> Result<(), AuthError> {
        if !self.require_client_certificate {
            return Ok(());
        }
        match certificate_cn {
            None => Err(AuthError::Unauthenticated(
                "a client certificate issued by the server's client CA is required".into(),
            )),
            Some(cn) if cn == uuid => Ok(()),
            Some(cn) => Err(AuthError::Unauthenticated(format!(
                "client certificate CN {cn:?} does not match agent uuid {uuid:?}"
            ))),
        }
    }

    /// Authenticates a Connect stream from `authorization: Bearer <credential>` and
    /// `x-cygnet-agent-uuid`. A credential presented for another agent's uuid is refused.
    pub async fn authenticate(
        &self,
        metadata: &MetadataMap,
        certificate_cn: Option<&str>,
    ) -> Result<AuthenticatedAgent, AuthError> {
        let secret = super::authenticate::bearer_secret(metadata)?;
        let claimed_uuid = metadata
            .get(AGENT_UUID_METADATA)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| {
                AuthError::Unauthenticated(format!("missing {AGENT_UUID_METADATA} metadata"))
            })?;
        let presented_hash = token::hash(secret);
        let found = self
            .store
            .find_agent_by_credential(&presented_hash)
            .await?
            .filter(|found| token::hashes_equal(&found.credential_hash, &presented_hash))
            .ok_or_else(|| AuthError::Unauthenticated("agent credential is not valid".into()))?;
        if found.agent.uuid() != claimed_uuid {
            return Err(AuthError::Unauthenticated(
                "agent credential does not belong to this agent uuid".into(),
            ));
        }
        if found.deleted {
            return Err(AuthError::PermissionDenied(
                agent_was_deleted(claimed_uuid).message().to_owned(),
            ));
        }
        self.check_client_certificate(certificate_cn, claimed_uuid)?;
        Ok(found.agent)
    }
}

/// The subject CN of a DER certificate.
pub fn certificate_common_name(der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let common_name = certificate
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(common_name)
}
