//! TLS for both listeners, on rustls with the `ring` provider.
//!
//! * Peer listener: mutual TLS. Only certificates issued by the committee CA
//!   are accepted, in both directions; a client without a certificate, or
//!   with one from any other CA, fails the handshake. The certificate names
//!   its validator as the DNS name `validator-<id>.neuroshard.peer`, which
//!   the server reads after the handshake ([`validator_id_of`]) and checks
//!   against the sender named in every request.
//! * API listener: server TLS with the same validator certificate; clients
//!   verify it against the committee CA (`ca.pem`).

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::types::NodeId;

/// Suffix of the DNS name that identifies a validator in its certificate.
pub const PEER_NAME_SUFFIX: &str = ".neuroshard.peer";
/// Largest PEM file this crate reads (certificates, keys).
pub const MAX_PEM_FILE_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {len} bytes, more than MAX_PEM_FILE_BYTES = {MAX_PEM_FILE_BYTES}")]
    TooLarge { path: String, len: u64 },
    #[error("{path}: no {what} found in the PEM file")]
    Missing { path: String, what: &'static str },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// The DNS name a validator's certificate carries and peers dial it by.
pub fn validator_dns_name(id: NodeId) -> String {
    format!("validator-{id}{PEER_NAME_SUFFIX}")
}

/// The validator id a (CA-verified) certificate names, if exactly one.
pub fn validator_id_of(cert: &CertificateDer<'_>) -> Option<NodeId> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    let mut ids = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => dns
                .strip_suffix(PEER_NAME_SUFFIX)?
                .strip_prefix("validator-")?
                .parse::<NodeId>()
                .ok(),
            _ => None,
        });
    let id = ids.next()?;
    // A certificate naming two validators identifies neither.
    ids.next().is_none().then_some(id)
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| TlsError::Read {
        path: shown.clone(),
        source,
    })?;
    if meta.len() > MAX_PEM_FILE_BYTES {
        return Err(TlsError::TooLarge {
            path: shown,
            len: meta.len(),
        });
    }
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: shown,
        source,
    })
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            path: path.display().to_string(),
            what: "certificate",
        });
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsError::Missing {
            path: path.display().to_string(),
            what: "private key",
        })
}

fn roots(ca: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in ca {
        store.add(cert.clone())?;
    }
    Ok(Arc::new(store))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The PEM material of one validator.
#[derive(Clone)]
pub struct TlsMaterial {
    pub ca: Vec<CertificateDer<'static>>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl TlsMaterial {
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            ca: load_certs(ca)?,
            chain: load_certs(cert)?,
            key: Arc::new(load_key(key)?),
        })
    }

    /// The peer listener: client certificates from the committee CA required.
    pub fn peer_server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots(&self.ca)?, provider())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// Dialling other validators: their certificate must come from the
    /// committee CA and name the validator dialled; ours goes along.
    pub fn peer_client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let verifier = WebPkiServerVerifier::builder_with_provider(roots(&self.ca)?, provider())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// The API listener: server authentication only.
    pub fn api_server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A client of the API listener (CLI, tests): trusts the committee CA only.
pub fn api_client_config(ca: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let ca = load_certs(ca)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(&ca)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The name a TLS client checks the server certificate against.
pub fn server_name_for(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned())
        .map_err(|e| TlsError::Verifier(format!("server name {host:?}: {e}")))
}
