//! The genesis file: chain identity, initial accounts, the committee, and
//! parameter overrides. Loadable from TOML.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use neuroshard_certificate::CommitteeInfo;

use crate::limits::{
    MAX_CHAIN_ID_BYTES, MAX_GENESIS_ALLOCATIONS, MAX_GENESIS_FILE_BYTES, MAX_VALIDATORS,
};
use crate::params::{spec, ParamError, ParamKind, ParamValue, ParameterSet};
use crate::types::{AccountId, Amount, Micro, ProtocolVersion};

/// An initial account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    pub account: AccountId,
    #[serde(default)]
    pub balance: Amount,
    #[serde(default)]
    pub staked: Amount,
}

/// A committee validator: its index (its BLS share index, from 0) and its ed25519
/// identity key, which signs `SubmitEmergency` and `EmergencyApprove`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub index: u32,
    pub identity: AccountId,
}

/// What the state machine needs of the committee to verify certificates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitteeGenesis {
    /// The committee info light nodes pin; its hash is named by every payload.
    pub info: CommitteeInfo,
    /// The public key set (hex of `PublicKeySet::to_bytes`): when present,
    /// every signature share attached to a `CertificateIssued` entry is
    /// verified against its validator's public key share.
    ///
    /// Never `skip_serializing_if`: this struct is part of the state's
    /// postcard encoding (snapshots, `state_hash`), where a skipped field
    /// makes the decoder read the next field as this one (found by
    /// fuzzing: a state without the key set could not restore its own
    /// snapshot). TOML leaves a `None` field out anyway.
    #[serde(default, with = "opt_hex")]
    pub public_key_set: Option<Vec<u8>>,
}

impl CommitteeGenesis {
    /// SHA-256 of the committee info's canonical JSON.
    pub fn committee_hash(&self) -> [u8; 32] {
        self.info.committee_hash()
    }
}

mod opt_hex {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_some(&hex::encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| hex::decode(s).map_err(D::Error::custom))
            .transpose()
    }
}

/// A parameter override as written in TOML: converted by the key's type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamInput {
    Bool(bool),
    Integer(i64),
    Float(f64),
    Text(String),
}

impl ParamInput {
    /// Converts to the registry type of `key`. Fixed-point values may be
    /// written as numbers or decimal strings and convert exactly.
    pub fn to_value(&self, key: &str) -> Result<ParamValue, ParamError> {
        let s = spec(key).ok_or_else(|| ParamError::Unknown {
            key: key.to_owned(),
        })?;
        let mismatch = |found| ParamError::KindMismatch {
            key: key.to_owned(),
            expected: s.kind,
            found,
        };
        let value = match (s.kind, self) {
            (ParamKind::Integer, ParamInput::Integer(v)) => ParamValue::Integer(*v),
            (ParamKind::Bool, ParamInput::Bool(b)) => ParamValue::Bool(*b),
            (ParamKind::String, ParamInput::Text(t)) => ParamValue::String(t.clone()),
            (ParamKind::FixedPoint, ParamInput::Integer(v)) => ParamValue::FixedPoint(Micro(
                v.checked_mul(crate::types::MICRO)
                    .ok_or_else(|| ParamError::OutOfRange {
                        key: key.to_owned(),
                        value: v.to_string(),
                        min: s.min,
                        max: s.max,
                    })?,
            )),
            (ParamKind::FixedPoint, ParamInput::Float(f)) => {
                ParamValue::FixedPoint(Micro::from_f64(*f).map_err(|_| ParamError::OutOfRange {
                    key: key.to_owned(),
                    value: f.to_string(),
                    min: s.min,
                    max: s.max,
                })?)
            }
            (ParamKind::FixedPoint, ParamInput::Text(t)) => {
                ParamValue::FixedPoint(Micro::parse_decimal(t).map_err(|_| {
                    ParamError::OutOfRange {
                        key: key.to_owned(),
                        value: t.clone(),
                        min: s.min,
                        max: s.max,
                    }
                })?)
            }
            (_, ParamInput::Bool(_)) => return Err(mismatch(ParamKind::Bool)),
            (_, ParamInput::Integer(_)) => return Err(mismatch(ParamKind::Integer)),
            (_, ParamInput::Float(_)) => return Err(mismatch(ParamKind::FixedPoint)),
            (_, ParamInput::Text(_)) => return Err(mismatch(ParamKind::String)),
        };
        s.check(&value)?;
        Ok(value)
    }
}

fn default_block_interval_ms() -> u64 {
    1_000
}

/// Default of [`Genesis::checkpoint_interval`].
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 4_096;
/// Bounds of [`Genesis::checkpoint_interval`].
pub const MIN_CHECKPOINT_INTERVAL: u64 = 8;
pub const MAX_CHECKPOINT_INTERVAL: u64 = 1_000_000;

fn default_checkpoint_interval() -> u64 {
    DEFAULT_CHECKPOINT_INTERVAL
}

fn default_version() -> ProtocolVersion {
    ProtocolVersion { major: 1, minor: 0 }
}

/// Unknown fields are refused, so a misspelt key is an error, not a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: String,
    pub genesis_time_ms: u64,
    #[serde(default = "default_block_interval_ms")]
    pub block_interval_ms: u64,
    #[serde(default = "default_version")]
    pub protocol_version: ProtocolVersion,
    #[serde(default)]
    pub allocations: Vec<Allocation>,
    pub validators: Vec<GenesisValidator>,
    pub committee: CommitteeGenesis,
    /// Optional: the expected committee hash (hex); refused if it differs
    /// from the hash of `committee.info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committee_hash: Option<String>,
    /// Overrides of the registry defaults, e.g. `"gov.day_ms" = 1000`.
    #[serde(default)]
    pub parameters: BTreeMap<String, ParamInput>,
    /// Log indexes between checkpoints: at every multiple of it each
    /// validator signs (term, index, membership, state hash) with its BLS
    /// share, and snapshots are built and installed only at certified
    /// checkpoints (docs/operations.md, "Checkpoints"). Part of the genesis
    /// every validator shares, so all of them sign at the same indexes.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: u64,
}

/// Why a genesis is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis file is {bytes} bytes, more than {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("genesis TOML: {0}")]
    Toml(String),
    #[error("the genesis state is charged {bytes} bytes, above gov.state_budget_bytes = {budget}")]
    OverStateBudget { bytes: u64, budget: u64 },
    #[error("chain id {chain_id:?} must be 1..={max} characters of [A-Za-z0-9._-]")]
    BadChainId { chain_id: String, max: usize },
    #[error("block_interval_ms must be greater than 0")]
    ZeroBlockInterval,
    #[error("checkpoint_interval = {interval} is outside {min}..={max}")]
    BadCheckpointInterval { interval: u64, min: u64, max: u64 },
    #[error("{count} allocations, more than {max}")]
    TooManyAllocations { count: usize, max: usize },
    #[error("account {account} is allocated twice")]
    DuplicateAllocation { account: AccountId },
    #[error("total genesis supply exceeds {max} base units")]
    SupplyOverflow { max: u64 },
    #[error("{count} validators; a committee needs 1..={max}")]
    BadValidatorCount { count: usize, max: usize },
    #[error("validator indices must be 0..n-1, each once (found {index})")]
    BadValidatorIndex { index: u32 },
    #[error("validator identity {identity} appears twice")]
    DuplicateValidator { identity: AccountId },
    #[error("account {account} is not a usable ed25519 public key (not a curve point, or of small order so anybody could sign for it)")]
    BadAccountKey { account: AccountId },
    #[error("committee n = {committee_n} but {validators} validators are listed")]
    CommitteeSizeMismatch { committee_n: u32, validators: usize },
    #[error("committee info: {0}")]
    Committee(String),
    #[error("committee threshold t + 1 = {signers} of n = {n} validators is not a Byzantine quorum: two sets of t + 1 signers must share at least f + 1 = {overlap} validators (f = ⌊(n − 1)/3⌋ = {faulty}), so t + 1 ≥ ⌊(n + f)/2⌋ + 1 = {needed}")]
    NotByzantineQuorum {
        /// t + 1 of the committee info (and of its public key set).
        signers: u32,
        n: u32,
        faulty: u32,
        overlap: u32,
        /// `quorum::byzantine_quorum(n)`.
        needed: u32,
    },
    #[error("committee info names {field} {found}, the genesis says {expected}")]
    CommitteeMismatch {
        field: String,
        found: String,
        expected: String,
    },
    #[error("committee hash {given} differs from the hash of the committee info, {computed}")]
    CommitteeHashMismatch { given: String, computed: String },
    #[error("parameter override: {0}")]
    Parameter(#[from] ParamError),
    #[error("gov.grace_min_days {min} exceeds gov.grace_max_days {max}")]
    GraceBoundsInverted { min: u64, max: u64 },
}

impl Genesis {
    /// Parses a genesis TOML document.
    pub fn from_toml(text: &str) -> Result<Genesis, GenesisError> {
        if text.len() > MAX_GENESIS_FILE_BYTES {
            return Err(GenesisError::TooLarge {
                bytes: text.len(),
                max: MAX_GENESIS_FILE_BYTES,
            });
        }
        toml::from_str(text).map_err(|e| GenesisError::Toml(e.to_string()))
    }

    pub fn to_toml(&self) -> Result<String, GenesisError> {
        toml::to_string_pretty(self).map_err(|e| GenesisError::Toml(e.to_string()))
    }

    /// The initial parameter set: defaults with the overrides applied.
    pub fn parameter_set(&self) -> Result<ParameterSet, GenesisError> {
        let mut params = ParameterSet::genesis_defaults();
        for (key, input) in &self.parameters {
            params.set(key, input.to_value(key)?)?;
        }
        let gov = params.gov();
        if gov.grace_min_days > gov.grace_max_days {
            return Err(GenesisError::GraceBoundsInverted {
                min: gov.grace_min_days,
                max: gov.grace_max_days,
            });
        }
        Ok(params)
    }

    /// Checks everything that does not depend on the parameter registry.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let id_ok = !self.chain_id.is_empty()
            && self.chain_id.len() <= MAX_CHAIN_ID_BYTES
            && self
                .chain_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !id_ok {
            return Err(GenesisError::BadChainId {
                chain_id: self.chain_id.clone(),
                max: MAX_CHAIN_ID_BYTES,
            });
        }
        if self.block_interval_ms == 0 {
            return Err(GenesisError::ZeroBlockInterval);
        }
        if !(MIN_CHECKPOINT_INTERVAL..=MAX_CHECKPOINT_INTERVAL).contains(&self.checkpoint_interval)
        {
            return Err(GenesisError::BadCheckpointInterval {
                interval: self.checkpoint_interval,
                min: MIN_CHECKPOINT_INTERVAL,
                max: MAX_CHECKPOINT_INTERVAL,
            });
        }
        if self.allocations.len() > MAX_GENESIS_ALLOCATIONS {
            return Err(GenesisError::TooManyAllocations {
                count: self.allocations.len(),
                max: MAX_GENESIS_ALLOCATIONS,
            });
        }
        let mut seen = BTreeSet::new();
        let mut total: u64 = 0;
        for a in &self.allocations {
            if !seen.insert(a.account) {
                return Err(GenesisError::DuplicateAllocation { account: a.account });
            }
            if !crate::signature::usable_account_key(&a.account) {
                return Err(GenesisError::BadAccountKey { account: a.account });
            }
            total = total
                .checked_add(a.balance.0)
                .and_then(|t| t.checked_add(a.staked.0))
                .ok_or(GenesisError::SupplyOverflow { max: u64::MAX })?;
        }
        let n = self.validators.len();
        if n == 0 || n > MAX_VALIDATORS {
            return Err(GenesisError::BadValidatorCount {
                count: n,
                max: MAX_VALIDATORS,
            });
        }
        let mut indices = BTreeSet::new();
        let mut identities = BTreeSet::new();
        for v in &self.validators {
            if v.index as usize >= n || !indices.insert(v.index) {
                return Err(GenesisError::BadValidatorIndex { index: v.index });
            }
            if !identities.insert(v.identity) {
                return Err(GenesisError::DuplicateValidator {
                    identity: v.identity,
                });
            }
            if !crate::signature::usable_account_key(&v.identity) {
                return Err(GenesisError::BadAccountKey {
                    account: v.identity,
                });
            }
        }
        let info = &self.committee.info;
        info.validate()
            .map_err(|e| GenesisError::Committee(e.to_string()))?;
        if info.n as usize != n {
            return Err(GenesisError::CommitteeSizeMismatch {
                committee_n: info.n,
                validators: n,
            });
        }
        // The threshold is a Byzantine quorum: no two certificates for one
        // NEP can both gather t + 1 shares while at most f validators lie.
        // (The public key set, when present, is checked to carry this t.)
        let needed = crate::quorum::byzantine_quorum(info.n);
        if info.t + 1 < needed {
            let faulty = crate::quorum::max_faulty(info.n);
            return Err(GenesisError::NotByzantineQuorum {
                signers: info.t + 1,
                n: info.n,
                faulty,
                overlap: faulty + 1,
                needed,
            });
        }
        if info.chain_id != self.chain_id {
            return Err(GenesisError::CommitteeMismatch {
                field: "chain_id".to_owned(),
                found: info.chain_id.clone(),
                expected: self.chain_id.clone(),
            });
        }
        if info.genesis_time_ms != self.genesis_time_ms {
            return Err(GenesisError::CommitteeMismatch {
                field: "genesis_time_ms".to_owned(),
                found: info.genesis_time_ms.to_string(),
                expected: self.genesis_time_ms.to_string(),
            });
        }
        if let Some(keys) = &self.committee.public_key_set {
            let parsed = info
                .scheme
                .scheme()
                .public_key_set_from_bytes(keys)
                .map_err(|e| GenesisError::Committee(format!("public key set: {e}")))?;
            if parsed.group_public_key().to_bytes() != info.group_public_key
                || parsed.size() != info.n
                || parsed.threshold() != info.t
            {
                return Err(GenesisError::Committee(
                    "public key set does not match the committee info (group key, t or n)"
                        .to_owned(),
                ));
            }
        }
        let computed = hex::encode(self.committee.committee_hash());
        if let Some(given) = &self.committee_hash {
            if !given.eq_ignore_ascii_case(&computed) {
                return Err(GenesisError::CommitteeHashMismatch {
                    given: given.clone(),
                    computed,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod checkpoint_interval_bounds {
    use super::*;
    use crate::testkit::{genesis, TestConfig};

    fn with_interval(interval: u64) -> Result<(), GenesisError> {
        let (mut g, _) = genesis(&TestConfig::default());
        g.checkpoint_interval = interval;
        g.validate()
    }

    #[test]
    fn at_under_and_over_both_bounds() {
        for ok in [
            MIN_CHECKPOINT_INTERVAL,
            MIN_CHECKPOINT_INTERVAL + 1,
            DEFAULT_CHECKPOINT_INTERVAL,
            MAX_CHECKPOINT_INTERVAL - 1,
            MAX_CHECKPOINT_INTERVAL,
        ] {
            assert!(with_interval(ok).is_ok(), "{ok} refused");
        }
        for bad in [
            0,
            MIN_CHECKPOINT_INTERVAL - 1,
            MAX_CHECKPOINT_INTERVAL + 1,
            u64::MAX,
        ] {
            match with_interval(bad) {
                Err(GenesisError::BadCheckpointInterval { interval, min, max }) => {
                    assert_eq!(
                        (interval, min, max),
                        (bad, MIN_CHECKPOINT_INTERVAL, MAX_CHECKPOINT_INTERVAL)
                    );
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
