//! The genesis ceremony (`neuroshard keygen`): a dealer deals the BLS key
//! shares, every validator gets an ed25519 identity key and a TLS
//! certificate from a fresh committee CA, and the public genesis and
//! committee info are written. Output layout:
//!
//! ```text
//! DIR/genesis.toml  DIR/committee.json  DIR/ca.pem  DIR/ca.key (0600)
//! DIR/treasury.key (0600, unless --allocations)
//! DIR/validator-<i>/{node.toml, identity.key, bls_share.key, tls.pem, tls.key}
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};

use neuroshard_certificate::{CommitteeInfo, SchemeId};
use neuroshard_governance::genesis::ParamInput;
use neuroshard_governance::{AccountId, Allocation, Amount, Genesis, GenesisValidator, NEURO};
use neuroshard_node::config::{
    ClientSettings, KeyPaths, NodeConfig, PeerConfig, RaftSettings, TickSettings, TlsPaths,
};
use neuroshard_node::transport::tls::validator_dns_name;

use crate::secret::{write_public, write_secret};

/// Largest committee keygen deals for.
pub const MAX_KEYGEN_VALIDATORS: u32 = 100;
/// Default treasury balance of a demo/test genesis.
pub const DEFAULT_TREASURY_NEURO: u64 = 1_000_000_000;

#[derive(Clone, Debug)]
pub struct KeygenOptions {
    pub validators: u32,
    pub out: PathBuf,
    pub chain_id: String,
    pub day_ms: Option<u64>,
    /// `checkpoint_interval` of the genesis (default
    /// `DEFAULT_CHECKPOINT_INTERVAL`).
    pub checkpoint_interval: Option<u64>,
    /// First port; validator i listens on base+2i (peer) and base+2i+1 (API).
    pub base_port: u16,
    /// Address the validators listen on and are dialled at.
    pub host: String,
    /// One address per validator, each on its own machine (or container):
    /// validator i is dialled at `hosts[i]` on the base ports (peer
    /// `base_port`, API `base_port + 1`) and listens on `0.0.0.0`. Overrides
    /// `host`; its certificate names `hosts[i]`.
    pub hosts: Option<Vec<String>>,
    /// Initial accounts (TOML `[[allocations]]`); default one treasury.
    pub allocations: Option<PathBuf>,
    /// Raft / tick / client settings written into every node.toml.
    pub raft: RaftSettings,
    pub ticks: TickSettings,
    pub client: ClientSettings,
    /// Connection limits written into every node.toml.
    pub api_listener: neuroshard_node::config::ListenerSettings,
    pub peer_listener: neuroshard_node::config::ListenerSettings,
    pub streams: neuroshard_node::config::StreamSettings,
    pub safety: neuroshard_node::config::SafetySettings,
    /// Further genesis parameter overrides (`neuroshard bench run` opens
    /// its vote at once with `gov.review_days = 0`); `day_ms` wins for
    /// `gov.day_ms`.
    pub parameters: BTreeMap<String, ParamInput>,
    /// Metrics listeners (`[metrics] listen`): validator i on
    /// 127.0.0.1:base+i side by side, on 0.0.0.0:base in its own host
    /// (`hosts`, for a Prometheus on the containers' network). None: no
    /// metrics listener (the library default, so tests that reserve only
    /// the peer and API ports never collide; the CLI writes one).
    pub metrics_base_port: Option<u16>,
}

impl KeygenOptions {
    /// The CLI's default metrics base port: right after the peer and API
    /// ports (base + 2n side by side, base + 2 with `hosts`).
    pub fn default_metrics_base_port(&self) -> Option<u16> {
        let next = match self.hosts {
            Some(_) => u32::from(self.base_port) + 2,
            None => u32::from(self.base_port) + 2 * self.validators,
        };
        u16::try_from(next).ok()
    }

    pub fn new(validators: u32, out: PathBuf) -> Self {
        Self {
            validators,
            out,
            chain_id: "neuroshard-local".to_owned(),
            day_ms: None,
            checkpoint_interval: None,
            base_port: 7100,
            host: "127.0.0.1".to_owned(),
            hosts: None,
            allocations: None,
            raft: RaftSettings::default(),
            ticks: TickSettings::default(),
            client: ClientSettings::default(),
            api_listener: neuroshard_node::config::ListenerSettings::api_default(),
            peer_listener: neuroshard_node::config::ListenerSettings::peer_default(),
            streams: Default::default(),
            safety: Default::default(),
            parameters: BTreeMap::new(),
            metrics_base_port: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("--validators {0}: a committee needs 1..={MAX_KEYGEN_VALIDATORS} validators")]
    BadCount(u32),
    #[error("--base-port {base}: {n} validators need ports up to {last}, above 65535")]
    Ports { base: u16, n: u32, last: u32 },
    #[error("{0} already holds a genesis.toml; choose an empty directory")]
    NotEmpty(String),
    #[error("--hosts: {given} addresses for {n} validators; give one per validator")]
    HostCount { given: usize, n: u32 },
    #[error("--hosts: {0:?} is not a DNS name or IPv4 address, or is given twice (one per validator, no port)")]
    BadHost(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeygenError + '_ {
    move |source| KeygenError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AllocationsFile {
    allocations: Vec<Allocation>,
}

/// What keygen produced, for callers that go on to start the committee.
#[derive(Clone, Debug)]
pub struct Ceremony {
    pub dir: PathBuf,
    pub genesis: Genesis,
    pub node_configs: Vec<PathBuf>,
    pub api_endpoints: Vec<String>,
    pub treasury_key: Option<PathBuf>,
}

/// Hash over the validator set as committee info names it: for each
/// validator in index order, its index (u32 big-endian) and its identity key.
pub fn validator_set_hash(validators: &[GenesisValidator]) -> [u8; 32] {
    let mut h = Sha256::new();
    for v in validators {
        h.update(v.index.to_be_bytes());
        h.update(v.identity.0);
    }
    h.finalize().into()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn run(opts: &KeygenOptions) -> Result<Ceremony, KeygenError> {
    let n = opts.validators;
    if n == 0 || n > MAX_KEYGEN_VALIDATORS {
        return Err(KeygenError::BadCount(n));
    }
    // Side by side on one host, validator i takes base+2i and base+2i+1;
    // one host each, all take base and base+1.
    let mut last = match opts.hosts {
        Some(_) => u32::from(opts.base_port) + 1,
        None => u32::from(opts.base_port) + 2 * n - 1,
    };
    if let Some(m) = opts.metrics_base_port {
        last = last.max(match opts.hosts {
            Some(_) => u32::from(m),
            None => u32::from(m) + n - 1,
        });
    }
    if last > 65535 {
        return Err(KeygenError::Ports {
            base: opts.base_port,
            n,
            last,
        });
    }
    if let Some(hosts) = &opts.hosts {
        if hosts.len() != n as usize {
            return Err(KeygenError::HostCount {
                given: hosts.len(),
                n,
            });
        }
        for (i, h) in hosts.iter().enumerate() {
            // A DNS name or an IPv4 address (written as host:port).
            let plain = !h.is_empty()
                && h.len() <= 253
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !plain || hosts[..i].contains(h) {
                return Err(KeygenError::BadHost(h.clone()));
            }
        }
    }
    let dir = &opts.out;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    if dir.join("genesis.toml").exists() {
        return Err(KeygenError::NotEmpty(dir.display().to_string()));
    }
    let mut rng = rand::rngs::OsRng;

    // BLS: t + 1 is the Byzantine quorum ⌊(n + f)/2⌋ + 1 with
    // f = ⌊(n − 1)/3⌋ (= 2f + 1 of n = 3f + 1; n = 3 → 2, n = 5 → 4), so two
    // sets of signers share at least f + 1 validators; genesis refuses less.
    let t = neuroshard_governance::byzantine_quorum(n) - 1;
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let scheme = SchemeId::G2Rfc9380;
    let dealt = scheme
        .scheme()
        .deal(t, n, &seed)
        .map_err(|e| KeygenError::Invalid(e.to_string()))?;
    seed.fill(0);

    let identities: Vec<ed25519_dalek::SigningKey> = (0..n)
        .map(|_| ed25519_dalek::SigningKey::generate(&mut rng))
        .collect();
    let validators: Vec<GenesisValidator> = identities
        .iter()
        .enumerate()
        .map(|(i, k)| GenesisValidator {
            index: i as u32,
            identity: AccountId(k.verifying_key().to_bytes()),
        })
        .collect();
    let genesis_time_ms = now_ms();
    let info = CommitteeInfo {
        chain_id: opts.chain_id.clone(),
        scheme,
        group_public_key: dealt.public_key_set.group_public_key().to_bytes(),
        t,
        n,
        epoch: 1,
        genesis_time_ms,
        validator_set_hash: validator_set_hash(&validators),
    };
    info.validate()
        .map_err(|e| KeygenError::Invalid(format!("committee info: {e}")))?;

    let (allocations, treasury) = match &opts.allocations {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(io(path))?;
            let file: AllocationsFile = toml::from_str(&text)
                .map_err(|e| KeygenError::Invalid(format!("{}: {e}", path.display())))?;
            (file.allocations, None)
        }
        None => {
            let key = ed25519_dalek::SigningKey::generate(&mut rng);
            let alloc = Allocation {
                account: AccountId(key.verifying_key().to_bytes()),
                balance: Amount(DEFAULT_TREASURY_NEURO * NEURO),
                staked: Amount(0),
            };
            (vec![alloc], Some(key))
        }
    };
    let mut parameters = opts.parameters.clone();
    if let Some(day) = opts.day_ms {
        let day = i64::try_from(day)
            .map_err(|_| KeygenError::Invalid(format!("--day-ms {day} is too large")))?;
        parameters.insert("gov.day_ms".to_owned(), ParamInput::Integer(day));
    }
    let genesis = Genesis {
        chain_id: opts.chain_id.clone(),
        genesis_time_ms,
        block_interval_ms: 1_000,
        protocol_version: neuroshard_governance::ProtocolVersion { major: 1, minor: 0 },
        allocations,
        validators: validators.clone(),
        committee: neuroshard_governance::genesis::CommitteeGenesis {
            info: info.clone(),
            public_key_set: Some(dealt.public_key_set.to_bytes()),
        },
        committee_hash: Some(hex::encode(info.committee_hash())),
        parameters,
        checkpoint_interval: opts
            .checkpoint_interval
            .unwrap_or(neuroshard_governance::genesis::DEFAULT_CHECKPOINT_INTERVAL),
    };
    genesis
        .validate()
        .map_err(|e| KeygenError::Invalid(format!("genesis: {e}")))?;
    let genesis_toml = genesis
        .to_toml()
        .map_err(|e| KeygenError::Invalid(e.to_string()))?;
    let genesis_path = dir.join("genesis.toml");
    write_public(&genesis_path, genesis_toml.as_bytes()).map_err(io(&genesis_path))?;
    let committee_path = dir.join("committee.json");
    write_public(&committee_path, info.to_json_pretty().as_bytes()).map_err(io(&committee_path))?;
    let treasury_key = match treasury {
        Some(key) => {
            let path = dir.join("treasury.key");
            write_secret(&path, hex::encode(key.to_bytes()).as_bytes()).map_err(io(&path))?;
            Some(path)
        }
        None => None,
    };

    // TLS: a committee CA and one certificate per validator.
    let tls_err = |e: rcgen::Error| KeygenError::Invalid(format!("TLS certificate: {e}"));
    let ca_key = rcgen::KeyPair::generate().map_err(tls_err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("{} committee CA", opts.chain_id),
    );
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_err)?;
    let ca_path = dir.join("ca.pem");
    write_public(&ca_path, ca_cert.pem().as_bytes()).map_err(io(&ca_path))?;
    let ca_key_path = dir.join("ca.key");
    write_secret(&ca_key_path, ca_key.serialize_pem().as_bytes()).map_err(io(&ca_key_path))?;

    // One machine for all (ports side by side) or one host each (same ports).
    let spread = u32::from(opts.hosts.is_none());
    let peer_port = |i: u32| u32::from(opts.base_port) + 2 * i * spread;
    let api_port = |i: u32| u32::from(opts.base_port) + 2 * i * spread + 1;
    // Plain HTTP: on loopback side by side; a validator on its own host
    // (container) listens on all its addresses for the monitoring network.
    let metrics_listen = |i: u32| {
        opts.metrics_base_port.map(|m| match &opts.hosts {
            Some(_) => format!("0.0.0.0:{m}"),
            None => format!("127.0.0.1:{}", u32::from(m) + i),
        })
    };
    let host = |i: u32| match &opts.hosts {
        Some(hosts) => hosts[i as usize].as_str(),
        None => opts.host.as_str(),
    };
    let listen_host = |i: u32| match &opts.hosts {
        Some(_) => "0.0.0.0",
        None => host(i),
    };
    let mut node_configs = Vec::new();
    let mut api_endpoints = Vec::new();
    for i in 0..n {
        let vdir = dir.join(format!("validator-{i}"));
        std::fs::create_dir_all(&vdir).map_err(io(&vdir))?;
        let mut names = vec![validator_dns_name(u64::from(i)), "localhost".to_owned()];
        if host(i).parse::<IpAddr>().is_err() && !names.iter().any(|n| n == host(i)) {
            names.push(host(i).to_owned());
        }
        let mut params = rcgen::CertificateParams::new(names).map_err(tls_err)?;
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        if let Ok(ip) = host(i).parse::<IpAddr>() {
            params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
        }
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("validator-{i}"));
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().map_err(tls_err)?;
        let cert = params.signed_by(&key, &ca_cert, &ca_key).map_err(tls_err)?;
        write_public(&vdir.join("tls.pem"), cert.pem().as_bytes()).map_err(io(&vdir))?;
        write_secret(&vdir.join("tls.key"), key.serialize_pem().as_bytes()).map_err(io(&vdir))?;
        write_secret(
            &vdir.join("identity.key"),
            hex::encode(identities[i as usize].to_bytes()).as_bytes(),
        )
        .map_err(io(&vdir))?;
        write_secret(
            &vdir.join("bls_share.key"),
            hex::encode(dealt.secret_key_shares[i as usize].to_bytes()).as_bytes(),
        )
        .map_err(io(&vdir))?;
        let config = NodeConfig {
            node_id: u64::from(i),
            data_dir: PathBuf::from("data"),
            genesis: PathBuf::from("../genesis.toml"),
            peer_listen: format!("{}:{}", listen_host(i), peer_port(i)),
            api_listen: format!("{}:{}", listen_host(i), api_port(i)),
            tls: TlsPaths {
                ca_cert: "../ca.pem".into(),
                cert: "tls.pem".into(),
                key: "tls.key".into(),
            },
            keys: KeyPaths {
                identity: "identity.key".into(),
                bls_share: "bls_share.key".into(),
            },
            peers: (0..n)
                .filter(|j| *j != i)
                .map(|j| PeerConfig {
                    id: u64::from(j),
                    addr: format!("{}:{}", host(j), peer_port(j)),
                })
                .collect(),
            raft: opts.raft.clone(),
            ticks: opts.ticks.clone(),
            client: opts.client.clone(),
            api_listener: opts.api_listener.clone(),
            peer_listener: opts.peer_listener.clone(),
            streams: opts.streams.clone(),
            safety: opts.safety.clone(),
            metrics: neuroshard_node::config::MetricsSettings {
                listen: metrics_listen(i),
            },
            log: Default::default(),
        };
        config
            .validate()
            .map_err(|e| KeygenError::Invalid(e.to_string()))?;
        let text = config
            .to_toml()
            .map_err(|e| KeygenError::Invalid(e.to_string()))?;
        let header = format!(
            "# Validator {i} of chain {}. Reference: docs/operations.md.\n# Paths are relative to this file.\n\n",
            opts.chain_id
        );
        let path = vdir.join("node.toml");
        write_public(&path, format!("{header}{text}").as_bytes()).map_err(io(&path))?;
        // The first start is told apart from a lost disk by this marker
        // (docs/operations.md, "Recovering a validator").
        let data_dir = vdir.join(&config.data_dir);
        neuroshard_node::boot::write_first_boot_marker(&data_dir, &opts.chain_id, u64::from(i))
            .map_err(io(&data_dir))?;
        node_configs.push(path);
        api_endpoints.push(format!("https://{}:{}", host(i), api_port(i)));
    }
    Ok(Ceremony {
        dir: dir.clone(),
        genesis,
        node_configs,
        api_endpoints,
        treasury_key,
    })
}
