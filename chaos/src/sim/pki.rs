//! The committee's TLS material for the simulation, made the way `keygen`
//! makes it (a committee CA, one certificate per validator naming
//! `validator-<id>.neuroshard.peer`, server and client auth) with one
//! difference: keys are Ed25519 from fixed seeds instead of fresh ECDSA
//! P-256 keys. Ed25519 signatures are deterministic and fixed-length and
//! rcgen derives the serial number from the key, so every certificate is
//! the same bytes in every run and every handshake sends messages of the
//! same sizes. (The handshake's random values and ephemeral keys still come
//! from the system RNG: they change bytes, never sizes or control flow.)

use std::sync::Arc;

use neuroshard_node::transport::tls::{validator_dns_name, TlsMaterial};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore};

/// The PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the 32-byte
/// seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Everything TLS in one simulated committee.
pub struct Pki {
    pub ca: CertificateDer<'static>,
    /// Per validator: its certificate chain and key.
    pub validators: Vec<TlsMaterial>,
}

/// The host name a validator has in the simulated network (its API
/// certificate names it, as production certificates name their host).
pub fn host_name(validator: u32) -> String {
    format!("validator-{validator}")
}

fn pkcs8(seed: [u8; 32]) -> PrivatePkcs8KeyDer<'static> {
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    PrivatePkcs8KeyDer::from(der)
}

fn seed(role: u8, index: u32) -> [u8; 32] {
    let mut s = [0x5e; 32];
    s[0] = role;
    s[1..5].copy_from_slice(&index.to_be_bytes());
    s
}

impl Pki {
    pub fn new(chain_id: &str, validators: u32) -> Result<Self, PkiError> {
        let ca_key =
            KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8(seed(0, 0)), &rcgen::PKCS_ED25519)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{chain_id} committee CA"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = ca_cert.der().clone();
        let mut out = Vec::new();
        for i in 0..validators {
            let mut params =
                CertificateParams::new(vec![validator_dns_name(u64::from(i)), host_name(i)])?;
            params
                .distinguished_name
                .push(DnType::CommonName, host_name(i));
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let der = pkcs8(seed(1, i));
            let key = KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)?;
            let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
            out.push(TlsMaterial {
                ca: vec![ca.clone()],
                chain: vec![cert.der().clone()],
                key: Arc::new(PrivateKeyDer::Pkcs8(der)),
            });
        }
        Ok(Self {
            ca,
            validators: out,
        })
    }

    /// A client of the public API: trusts the committee CA only, as
    /// `neuroshard` clients do.
    pub fn api_client_config(&self) -> Result<Arc<ClientConfig>, PkiError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}
