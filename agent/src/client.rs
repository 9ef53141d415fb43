//! Connections to the server, plaintext or TLS (with optional client certificate).

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::AgentConfig;

/// The endpoints of `ServerUrl` (one per address it lists), each as [`endpoint`] makes it.
pub fn endpoints(config: &AgentConfig) -> anyhow::Result<Vec<(String, Endpoint)>> {
    config
        .server_urls()
        .map(|url| Ok((url.to_owned(), endpoint(config, url)?)))
        .collect()
}

/// The endpoint for one server address, with keep-alives so a dead server is noticed within
/// seconds.
pub fn endpoint(config: &AgentConfig, server_url: &str) -> anyhow::Result<Endpoint> {
    let mut endpoint = Endpoint::from_shared(server_url.to_owned())
        .map_err(|error| anyhow::anyhow!("ServerUrl {server_url:?}: {error}"))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if server_url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        tls = match &config.tls.ca_certificate {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(std::fs::read(ca).map_err(
                |error| anyhow::anyhow!("Tls:CaCertificate {}: {error}", ca.display()),
            )?)),
            None => tls.with_native_roots(),
        };
        if let (Some(certificate), Some(key)) =
            (&config.tls.client_certificate, &config.tls.client_key)
        {
            let certificate = std::fs::read(certificate).map_err(|error| {
                anyhow::anyhow!("Tls:ClientCertificate {}: {error}", certificate.display())
            })?;
            let key = std::fs::read(key)
                .map_err(|error| anyhow::anyhow!("Tls:ClientKey {}: {error}", key.display()))?;
            tls = tls.identity(Identity::from_pem(certificate, key));
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    Ok(endpoint)
}

/// Opens a connection.
pub async fn connect(endpoint: &Endpoint) -> Result<Channel, tonic::transport::Error> {
    endpoint.connect().await
}
