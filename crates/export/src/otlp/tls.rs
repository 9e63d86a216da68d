//! TLS material for the OTLP transports (and the gateway's https upstreams): the system's
//! roots, an extra CA, a client identity.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::BuildError;
use crate::config::TlsConfig;

fn tls_error(path: &Path, reason: impl Into<String>) -> BuildError {
    BuildError::Tls {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads a PEM file, checking it holds at least one PEM section (its contents are never shown).
pub(super) fn read_pem(path: &Path) -> Result<Vec<u8>, BuildError> {
    let bytes = std::fs::read(path).map_err(|e| tls_error(path, e.to_string()))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(tls_error(path, "no PEM section found"));
    }
    Ok(bytes)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, BuildError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(path, e.to_string()))?
        .collect();
    let certs = certs.map_err(|e| tls_error(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no certificate found"));
    }
    Ok(certs)
}

/// A rustls client configuration (ring provider): system roots, plus the extra CA and client
/// identity of `tls`. Errors name the file and what is wrong with it, never its contents.
pub fn client_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, BuildError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system certificate rustls cannot parse is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(ca) = &tls.ca_certificate {
        for cert in certificates(ca)? {
            roots
                .add(cert)
                .map_err(|e| tls_error(ca, format!("unusable CA certificate: {e}")))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_error(Path::new("-"), e.to_string()))?
    .with_root_certificates(roots);
    match (&tls.client_certificate, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert)?;
            let key_der =
                PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(key, e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| tls_error(cert, e.to_string()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}
