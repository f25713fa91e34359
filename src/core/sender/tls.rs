//! TLS client settings for HEP collectors: certificates are always
//! verified, against the CA certificates of a PEM file.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// Debian's bundle of the system's trusted CA certificates.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

pub fn client_config(ca_file: &Path) -> Result<Arc<ClientConfig>, String> {
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("cannot read CA file {}: {e}", ca_file.display()))?;
    config_with_roots(certs, &ca_file.display().to_string())
}

/// As `client_config`, with the CA certificates in `pem` itself (`what`
/// names them in errors).
pub fn client_config_from_pem(pem: &[u8], what: &str) -> Result<Arc<ClientConfig>, String> {
    config_with_roots(CertificateDer::pem_slice_iter(pem), what)
}

fn config_with_roots<E: std::fmt::Display>(
    certs: impl Iterator<Item = Result<CertificateDer<'static>, E>>,
    what: &str,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        let cert = cert.map_err(|e| format!("bad certificate in {what}: {e}"))?;
        roots.add(cert).map_err(|e| format!("unusable certificate in {what}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("no CA certificate in {what}"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name a collector's certificate must carry: the host of its URI, a
/// DNS name or an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("'{host}' cannot be checked in a certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_are_server_names() {
        assert!(matches!(server_name("homer.example.com"), Ok(ServerName::DnsName(_))));
        assert!(matches!(server_name("10.0.0.1"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
        assert!(server_name("bad name").is_err());
    }

    #[test]
    fn ca_file_must_hold_certificates() {
        let dir = std::env::temp_dir().join(format!("siptrace-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(client_config(&empty).unwrap_err().contains("no CA certificate"));
        assert!(client_config(&dir.join("missing.pem")).unwrap_err().contains("cannot read"));
        assert!(client_config_from_pem(b"", "a blob").unwrap_err().contains("no CA certificate in a blob"));
        if Path::new(SYSTEM_CA_FILE).exists() {
            client_config(Path::new(SYSTEM_CA_FILE)).unwrap();
            client_config_from_pem(&std::fs::read(SYSTEM_CA_FILE).unwrap(), "the bundle").unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
