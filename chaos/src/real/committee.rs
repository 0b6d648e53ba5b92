//! The committee of one scenario: the genesis ceremony run by the real
//! binary (`neuroshard keygen`), then the files adjusted for the run:
//! governance periods short enough to vote across a deadline in seconds,
//! each validator's own address in its namespace, a fast tick.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use neuroshard_certificate::CommitteeInfo;
use neuroshard_governance::genesis::ParamInput;
use neuroshard_governance::Genesis;
use neuroshard_node::config::PeerConfig;
use neuroshard_node::keys::read_hex_secret;
use neuroshard_node::NodeConfig;

use super::cmd;
use super::error::RealError;

/// Governance timing of a run's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// `gov.day_ms`.
    pub day_ms: u64,
    pub review_days: u64,
    pub voting_days: u64,
    /// `ticks.tick_interval_ms` of every validator.
    pub tick_interval_ms: u64,
}

/// Where validator `i` listens and how the others reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub peer: String,
    pub api: String,
}

/// What the ceremony produced, as the run uses it.
pub struct Committee {
    pub chain_id: String,
    pub info: CommitteeInfo,
    pub configs: Vec<PathBuf>,
    pub ca: PathBuf,
    pub treasury: SigningKey,
    /// `gov.max_clock_skew_ms` of the genesis.
    pub max_clock_skew_ms: u64,
}

fn read(path: &Path) -> Result<String, RealError> {
    std::fs::read_to_string(path).map_err(RealError::io(path))
}

fn write(path: &Path, text: &str) -> Result<(), RealError> {
    std::fs::write(path, text).map_err(RealError::io(path))
}

/// Runs `binary keygen` into `dir` and rewrites the genesis and node
/// configs for `addresses` and `timing`.
pub fn prepare(
    binary: &Path,
    dir: &Path,
    chain_id: &str,
    addresses: &[Address],
    timing: Timing,
) -> Result<Committee, RealError> {
    let n = addresses.len();
    let out = dir.display().to_string();
    let validators = n.to_string();
    let day_ms = timing.day_ms.to_string();
    cmd::run(
        &binary.display().to_string(),
        &[
            "keygen",
            "--validators",
            &validators,
            "--out",
            &out,
            "--chain-id",
            chain_id,
            "--day-ms",
            &day_ms,
            // The runs move the peer and API listeners to their own
            // addresses; a metrics listener on keygen's fixed ports could
            // collide with them.
            "--no-metrics",
        ],
    )?;

    let genesis_path = dir.join("genesis.toml");
    let mut genesis = Genesis::from_toml(&read(&genesis_path)?)
        .map_err(|e| RealError::invalid(genesis_path.display().to_string(), e))?;
    for (key, days) in [
        ("gov.review_days", timing.review_days),
        ("gov.voting_days", timing.voting_days),
        // The workload's NEPs ask for a one-day grace period.
        ("gov.grace_min_days", 1),
    ] {
        let days = i64::try_from(days)
            .map_err(|_| RealError::invalid(key, format!("{days} days is too large")))?;
        genesis
            .parameters
            .insert(key.to_owned(), ParamInput::Integer(days));
    }
    let params = genesis
        .parameter_set()
        .map_err(|e| RealError::invalid("genesis parameters", e))?;
    let max_clock_skew_ms = params.gov().max_clock_skew_ms;
    let text = genesis
        .to_toml()
        .map_err(|e| RealError::invalid("genesis", e))?;
    write(&genesis_path, &text)?;

    let mut configs = Vec::with_capacity(n);
    for (i, address) in addresses.iter().enumerate() {
        let path = dir.join(format!("validator-{i}")).join("node.toml");
        let mut config = NodeConfig::parse(&read(&path)?)
            .map_err(|e| RealError::invalid(path.display().to_string(), e))?;
        config.peer_listen = address.peer.clone();
        config.api_listen = address.api.clone();
        config.peers = addresses
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, a)| PeerConfig {
                id: j as u64,
                addr: a.peer.clone(),
            })
            .collect();
        config.ticks.tick_interval_ms = timing.tick_interval_ms;
        config.ticks.clock_offset_ms = 0;
        config
            .validate()
            .map_err(|e| RealError::invalid(path.display().to_string(), e))?;
        let body = config
            .to_toml()
            .map_err(|e| RealError::invalid(path.display().to_string(), e))?;
        write(&path, &body)?;
        configs.push(path);
    }

    let committee_path = dir.join("committee.json");
    let info = CommitteeInfo::from_json(read(&committee_path)?.as_bytes())
        .map_err(|e| RealError::invalid(committee_path.display().to_string(), e))?;
    let treasury_path = dir.join("treasury.key");
    let secret = read_hex_secret(&treasury_path)
        .map_err(|e| RealError::invalid(treasury_path.display().to_string(), e))?;
    let secret: [u8; 32] = secret.as_slice().try_into().map_err(|_| {
        RealError::invalid(
            treasury_path.display().to_string(),
            "an ed25519 secret key is 32 bytes",
        )
    })?;
    Ok(Committee {
        chain_id: chain_id.to_owned(),
        info,
        configs,
        ca: dir.join("ca.pem"),
        treasury: SigningKey::from_bytes(&secret),
        max_clock_skew_ms,
    })
}
