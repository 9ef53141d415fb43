//! TLS for the gRPC listener (rustls with the ring provider).

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::TlsFiles;

/// Installs ring as rustls' process-wide crypto provider. Both tonic and sqlx use rustls with
/// ring; installing one provider explicitly avoids a panic when two are compiled in.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads the PEM files into a tonic TLS configuration. With a client CA, client certificates are
/// verified when presented but not required, since users authenticate with bearer tokens.
pub fn server_tls_config(files: &TlsFiles) -> anyhow::Result<ServerTlsConfig> {
    let read = |path: &std::path::Path, key: &str| {
        std::fs::read(path)
            .map_err(|error| anyhow::anyhow!("{key}: cannot read {}: {error}", path.display()))
    };
    let cert = read(&files.cert, "tls.cert")?;
    let key = read(&files.key, "tls.key")?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(client_ca) = &files.client_ca {
        config = config
            .client_ca_root(Certificate::from_pem(read(client_ca, "tls.client_ca")?))
            .client_auth_optional(true);
    }
    Ok(config)
}
