//! The typed protocol parameter registry (DESIGN §2).
//!
//! The set of keys, their types, bounds and genesis defaults is fixed by this
//! code (the schema); genesis may override defaults, and NEPs change values.
//! Values live in a `BTreeMap`, so iteration and encoding are in key order.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::limits::MAX_TEXT_VALUE_BYTES;
use crate::nep::NepType;
use crate::types::{BasisPoints, Micro, MICRO, NEURO};

/// The type of a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamKind {
    Integer,
    FixedPoint,
    Bool,
    String,
}

impl fmt::Display for ParamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamKind::Integer => "integer",
            ParamKind::FixedPoint => "fixed-point",
            ParamKind::Bool => "bool",
            ParamKind::String => "string",
        })
    }
}

/// A parameter value. Fixed-point values are micro-units.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ParamValue {
    Integer(i64),
    FixedPoint(Micro),
    Bool(bool),
    String(String),
}

impl ParamValue {
    pub fn kind(&self) -> ParamKind {
        match self {
            ParamValue::Integer(_) => ParamKind::Integer,
            ParamValue::FixedPoint(_) => ParamKind::FixedPoint,
            ParamValue::Bool(_) => ParamKind::Bool,
            ParamValue::String(_) => ParamKind::String,
        }
    }

    /// The numeric value in the unit bounds are written in: integers as they
    /// are, fixed-point values in micro-units.
    pub fn as_number(&self) -> Option<i64> {
        match self {
            ParamValue::Integer(v) => Some(*v),
            ParamValue::FixedPoint(m) => Some(m.0),
            _ => None,
        }
    }

    /// Canonical bytes: a kind tag, then the value (big-endian integers,
    /// length-prefixed UTF-8). Used by the parameters hash in certificates.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            ParamValue::Integer(v) => {
                out.push(1);
                out.extend_from_slice(&v.to_be_bytes());
            }
            ParamValue::FixedPoint(m) => {
                out.push(2);
                out.extend_from_slice(&m.0.to_be_bytes());
            }
            ParamValue::Bool(b) => {
                out.push(3);
                out.push(u8::from(*b));
            }
            ParamValue::String(s) => {
                out.push(4);
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Integer(v) => write!(f, "{v}"),
            ParamValue::FixedPoint(m) => write!(f, "{m}"),
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// The schema of one parameter.
#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    pub key: &'static str,
    pub kind: ParamKind,
    /// Genesis default (for strings: the text; numbers use `default_number`).
    pub default_number: i64,
    pub default_text: &'static str,
    /// Inclusive bounds for integer and fixed-point values (micro-units).
    pub min: i64,
    pub max: i64,
    /// Changing it changes training rewards: the NEP's declared
    /// `training_reward_multiplier` must equal new/old (economic parity).
    pub reward: bool,
    pub meaning: &'static str,
}

impl ParamSpec {
    pub fn default_value(&self) -> ParamValue {
        match self.kind {
            ParamKind::Integer => ParamValue::Integer(self.default_number),
            ParamKind::FixedPoint => ParamValue::FixedPoint(Micro(self.default_number)),
            ParamKind::Bool => ParamValue::Bool(self.default_number != 0),
            ParamKind::String => ParamValue::String(self.default_text.to_owned()),
        }
    }

    /// The namespace: the text before the first dot (`gov`, `econ`, …).
    pub fn namespace(&self) -> &'static str {
        namespace_of(self.key)
    }

    /// Checks type and bounds of a value for this key.
    pub fn check(&self, value: &ParamValue) -> Result<(), ParamError> {
        if value.kind() != self.kind {
            return Err(ParamError::KindMismatch {
                key: self.key.to_owned(),
                expected: self.kind,
                found: value.kind(),
            });
        }
        if let Some(n) = value.as_number() {
            if n < self.min || n > self.max {
                return Err(ParamError::OutOfRange {
                    key: self.key.to_owned(),
                    value: value.to_string(),
                    min: self.min,
                    max: self.max,
                });
            }
        }
        if let ParamValue::String(s) = value {
            if s.len() > MAX_TEXT_VALUE_BYTES {
                return Err(ParamError::TextTooLong {
                    key: self.key.to_owned(),
                    bytes: s.len(),
                    max: MAX_TEXT_VALUE_BYTES,
                });
            }
        }
        Ok(())
    }
}

/// The text before the first dot of a key.
pub fn namespace_of(key: &str) -> &str {
    key.split_once('.').map(|(ns, _)| ns).unwrap_or(key)
}

/// Why a parameter value is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ParamError {
    #[error("unknown parameter {key:?}")]
    Unknown { key: String },
    #[error("parameter {key} is {expected}, not {found}")]
    KindMismatch {
        key: String,
        expected: ParamKind,
        found: ParamKind,
    },
    #[error("parameter {key} = {value} is outside its bounds [{min}, {max}]")]
    OutOfRange {
        key: String,
        value: String,
        min: i64,
        max: i64,
    },
    #[error("parameter {key}: text of {bytes} bytes exceeds {max}")]
    TextTooLong {
        key: String,
        bytes: usize,
        max: usize,
    },
}

const fn int(
    key: &'static str,
    default: i64,
    min: i64,
    max: i64,
    meaning: &'static str,
) -> ParamSpec {
    ParamSpec {
        key,
        kind: ParamKind::Integer,
        default_number: default,
        default_text: "",
        min,
        max,
        reward: false,
        meaning,
    }
}

const fn fixed(
    key: &'static str,
    default: i64,
    min: i64,
    max: i64,
    meaning: &'static str,
) -> ParamSpec {
    ParamSpec {
        key,
        kind: ParamKind::FixedPoint,
        default_number: default,
        default_text: "",
        min,
        max,
        reward: false,
        meaning,
    }
}

const fn flag(key: &'static str, default: bool, meaning: &'static str) -> ParamSpec {
    ParamSpec {
        key,
        kind: ParamKind::Bool,
        default_number: default as i64,
        default_text: "",
        min: 0,
        max: 1,
        reward: false,
        meaning,
    }
}

const fn text(key: &'static str, default: &'static str, meaning: &'static str) -> ParamSpec {
    ParamSpec {
        key,
        kind: ParamKind::String,
        default_number: 0,
        default_text: default,
        min: 0,
        max: 0,
        reward: false,
        meaning,
    }
}

const fn reward(spec: ParamSpec) -> ParamSpec {
    ParamSpec {
        reward: true,
        ..spec
    }
}

const DAY_MS: i64 = 86_400_000;
const MAX_DAYS: i64 = 365;

/// The floor of `gov.day_ms`. A governance day spans at least two ticks
/// (`ticks.tick_interval_ms` ≤ 500 ms in `node.toml`), so a vote of one
/// day can neither open and close within one tick nor end before a voter
/// whose command waits one tick can be counted; the chaos suites and the
/// demo run on 1 000 ms days.
pub const MIN_DAY_MS: i64 = 1_000;

/// The floor of `gov.max_clock_skew_ms`. Validators refuse to sign (and to
/// accept ticks) more than this ahead of their own clocks: 0 would turn
/// every clock difference and every tick's delay into a refusal, so no
/// certificate would ever be signed. 1 000 ms is twice the longest tick
/// interval a `node.toml` accepts; the simulation runs on 2 000 ms, real
/// committees on the 30 000 ms default.
pub const MIN_MAX_CLOCK_SKEW_MS: i64 = 1_000;

// Every time parameter's floor, and why (a NEP or genesis below one is
// refused with `ParamError::OutOfRange`):
// * `gov.day_ms` ≥ MIN_DAY_MS, `gov.max_clock_skew_ms` ≥
//   MIN_MAX_CLOCK_SKEW_MS (above).
// * `gov.voting_days` ≥ 1: 0 would close a vote at the tick that opens it,
//   before any ballot (the same for an emergency's ratification vote).
// * `gov.emergency_window_days` ≥ 1: 0 would expire an emergency NEP at
//   the first tick after its submission, before any approval is ordered.
// * `gov.review_days` ≥ 0: a REVIEW of 0 ends at the next tick and the vote
//   (at least one day) still gives every holder time to read and vote.
// * `gov.grace_min_days`, `gov.grace_max_days`,
//   `gov.emergency_grace_max_days` ≥ 0: a grace of 0 activates at the vote's
//   deadline (an emergency at once, its purpose); nothing waits on it.
// * `econ.unbonding_days` ≥ 0: read by the shard network, not by these
//   rules (voting power is the stake snapshot taken when a vote opens).
const NEURO_I: i64 = NEURO as i64;
const BPS: i64 = crate::types::BPS_ONE as i64;

/// The schema, sorted by key (checked by a test).
pub const SCHEMA: &[ParamSpec] = &[
    int(
        "arch.context_length",
        8192,
        128,
        1 << 20,
        "tokens of context the model attends to",
    ),
    int(
        "arch.hidden_size",
        4096,
        64,
        1 << 16,
        "width of the model's hidden layers",
    ),
    int("arch.num_experts", 8, 1, 1024, "mixture-of-experts count"),
    int("arch.num_layers", 32, 1, 1024, "transformer layers"),
    int(
        "arch.shard_count",
        64,
        1,
        1 << 16,
        "model shards served across the network",
    ),
    int(
        "econ.account_creation_fee",
        NEURO_I,
        1,
        i64::MAX,
        "base units burned from the sender of a transfer that creates an account",
    ),
    int(
        "econ.draft_deposit_base",
        10 * NEURO_I,
        1,
        i64::MAX,
        "base units locked per draft, refunded when its vote closes, burned on withdrawal",
    ),
    int(
        "econ.draft_deposit_per_kib",
        NEURO_I,
        1,
        i64::MAX,
        "base units locked per started KiB of a draft's encoded content, with the base",
    ),
    int(
        "econ.min_proposer_stake",
        100 * NEURO_I,
        0,
        i64::MAX,
        "base units a proposer must have staked",
    ),
    int(
        "econ.proposal_fee",
        10 * NEURO_I,
        0,
        i64::MAX,
        "base units burned when a NEP is submitted",
    ),
    int(
        "econ.slashing_bps",
        500,
        0,
        BPS,
        "share of stake slashed for a proven fault",
    ),
    int(
        "econ.unbonding_days",
        14,
        0,
        MAX_DAYS,
        "governance days before unstaked NEURO is spendable by the network (0 allowed: governance votes on snapshot stake)",
    ),
    int(
        "econ.validator_commission_bps",
        1_000,
        0,
        BPS,
        "validators' share of rewards they distribute",
    ),
    int(
        "gov.approval_bps",
        6_600,
        1,
        BPS,
        "yes / (yes + no) needed to approve",
    ),
    int(
        "gov.day_ms",
        DAY_MS,
        MIN_DAY_MS,
        366 * DAY_MS,
        "length of one governance day in milliseconds (at least 1 000: a day spans two ticks or more)",
    ),
    int(
        "gov.emergency_grace_max_days",
        1,
        0,
        MAX_DAYS,
        "longest grace of an EMERG NEP (0 allowed: an emergency may activate at once)",
    ),
    int(
        "gov.emergency_window_days",
        1,
        1,
        MAX_DAYS,
        "time for the committee to approve an EMERG NEP (at least 1: 0 would expire it before any approval)",
    ),
    int(
        "gov.grace_max_days",
        30,
        0,
        MAX_DAYS,
        "longest grace_period_days of a normal NEP (0 allowed: activation at the vote's deadline)",
    ),
    int(
        "gov.grace_min_days",
        7,
        0,
        MAX_DAYS,
        "shortest grace_period_days of a normal NEP (0 allowed: activation at the vote's deadline)",
    ),
    int(
        "gov.max_clock_skew_ms",
        30_000,
        MIN_MAX_CLOCK_SKEW_MS,
        DAY_MS,
        "how far a committed tick may run ahead of a validator's clock before it refuses to sign (at least 1 000: 0 would refuse every tick)",
    ),
    int(
        "gov.quorum_bps",
        2_000,
        0,
        BPS,
        "participating power / snapshot total power needed",
    ),
    int(
        "gov.review_days",
        7,
        0,
        MAX_DAYS,
        "length of REVIEW (0 allowed: the vote, at least a day, follows at the next tick)",
    ),
    int(
        "gov.state_budget_bytes",
        crate::limits::MAX_STATE_BYTES as i64 / 2,
        1024 * 1024,
        crate::limits::MAX_STATE_BYTES as i64,
        "bytes the state may charge (accounts, proposals, ballots, certificates) before growth is refused",
    ),
    int(
        "gov.voting_days",
        7,
        1,
        MAX_DAYS,
        "length of VOTING and of an emergency ratification vote (at least 1: 0 would close a vote at the tick that opens it)",
    ),
    int(
        "net.gossip_fanout",
        8,
        1,
        256,
        "peers each message is gossiped to",
    ),
    int(
        "net.max_message_bytes",
        4 * 1024 * 1024,
        1024,
        1 << 30,
        "largest peer-to-peer message",
    ),
    text(
        "net.protocol_id",
        "/neuroshard/1",
        "libp2p protocol id of the shard network",
    ),
    flag("net.require_tls", true, "peers must authenticate with TLS"),
    int(
        "train.batch_size",
        512,
        1,
        1 << 20,
        "sequences per training batch",
    ),
    fixed(
        "train.gradient_clip",
        MICRO,
        1,
        1_000 * MICRO,
        "global gradient-norm clip",
    ),
    fixed(
        "train.learning_rate",
        300,
        1,
        MICRO,
        "optimizer learning rate",
    ),
    int(
        "train.prediction_heads",
        1,
        1,
        16,
        "tokens predicted per position (multi-token prediction)",
    ),
    reward(int(
        "train.reward_per_batch",
        NEURO_I,
        1,
        1_000_000 * NEURO_I,
        "base units paid per verified training batch",
    )),
    reward(int(
        "train.reward_per_validation",
        NEURO_I / 10,
        1,
        1_000_000 * NEURO_I,
        "base units paid per verified validation run",
    )),
];

/// The schema entry of a key.
pub fn spec(key: &str) -> Option<&'static ParamSpec> {
    SCHEMA
        .binary_search_by(|s| s.key.cmp(key))
        .ok()
        .map(|i| &SCHEMA[i])
}

/// Which namespace each NEP type may change.
pub fn namespace_allowed(nep_type: NepType, key: &str) -> bool {
    match nep_type.namespace() {
        Some(ns) => namespace_of(key) == ns,
        None => true,
    }
}

/// The current value of every parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterSet {
    values: BTreeMap<String, ParamValue>,
}

impl Default for ParameterSet {
    fn default() -> Self {
        Self::genesis_defaults()
    }
}

impl ParameterSet {
    /// Every key at its schema default.
    pub fn genesis_defaults() -> Self {
        Self {
            values: SCHEMA
                .iter()
                .map(|s| (s.key.to_owned(), s.default_value()))
                .collect(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&ParamValue> {
        self.values.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Sets a value after checking it against the schema.
    pub fn set(&mut self, key: &str, value: ParamValue) -> Result<(), ParamError> {
        let spec = spec(key).ok_or_else(|| ParamError::Unknown {
            key: key.to_owned(),
        })?;
        spec.check(&value)?;
        self.values.insert(key.to_owned(), value);
        Ok(())
    }

    /// Checks that every key is in the schema with a valid value, and every
    /// schema key is present (used on genesis and snapshot load).
    pub fn validate(&self) -> Result<(), ParamError> {
        for s in SCHEMA {
            let v = self.values.get(s.key).ok_or_else(|| ParamError::Unknown {
                key: s.key.to_owned(),
            })?;
            s.check(v)?;
        }
        if let Some(extra) = self.values.keys().find(|k| spec(k).is_none()) {
            return Err(ParamError::Unknown { key: extra.clone() });
        }
        Ok(())
    }

    /// SHA-256 over the canonical encoding: for each key in order,
    /// `u32 len || key || value` (see `ParamValue::encode_into`), after the
    /// domain tag `neuroshard/parameters/v1`.
    pub fn hash(&self) -> [u8; 32] {
        let mut buf = Vec::with_capacity(64 * self.values.len());
        buf.extend_from_slice(b"neuroshard/parameters/v1");
        for (k, v) in &self.values {
            buf.extend_from_slice(&(k.len() as u32).to_be_bytes());
            buf.extend_from_slice(k.as_bytes());
            v.encode_into(&mut buf);
        }
        Sha256::digest(&buf).into()
    }

    fn integer(&self, key: &str) -> i64 {
        match self.values.get(key) {
            Some(ParamValue::Integer(v)) => *v,
            // The schema guarantees every gov/econ key exists with its kind;
            // reaching this is a bug in the schema, not user input.
            other => panic!("registry invariant broken: {key} is {other:?}"),
        }
    }

    fn non_negative(&self, key: &str) -> u64 {
        u64::try_from(self.integer(key)).unwrap_or(0)
    }

    /// Typed reads of the governance parameters the rules use.
    pub fn gov(&self) -> GovParams {
        GovParams {
            day_ms: self.non_negative("gov.day_ms"),
            review_days: self.non_negative("gov.review_days"),
            voting_days: self.non_negative("gov.voting_days"),
            quorum_bps: BasisPoints(self.non_negative("gov.quorum_bps") as u32),
            approval_bps: BasisPoints(self.non_negative("gov.approval_bps") as u32),
            grace_min_days: self.non_negative("gov.grace_min_days"),
            grace_max_days: self.non_negative("gov.grace_max_days"),
            emergency_window_days: self.non_negative("gov.emergency_window_days"),
            emergency_grace_max_days: self.non_negative("gov.emergency_grace_max_days"),
            max_clock_skew_ms: self.non_negative("gov.max_clock_skew_ms"),
            min_proposer_stake: crate::types::Amount(self.non_negative("econ.min_proposer_stake")),
            proposal_fee: crate::types::Amount(self.non_negative("econ.proposal_fee")),
            account_creation_fee: crate::types::Amount(
                self.non_negative("econ.account_creation_fee"),
            ),
            draft_deposit_base: crate::types::Amount(self.non_negative("econ.draft_deposit_base")),
            draft_deposit_per_kib: crate::types::Amount(
                self.non_negative("econ.draft_deposit_per_kib"),
            ),
            state_budget_bytes: self.non_negative("gov.state_budget_bytes"),
        }
    }
}

/// The governance parameters, read once per use so a rule sees one
/// consistent set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GovParams {
    pub day_ms: u64,
    pub review_days: u64,
    pub voting_days: u64,
    pub quorum_bps: BasisPoints,
    pub approval_bps: BasisPoints,
    pub grace_min_days: u64,
    pub grace_max_days: u64,
    pub emergency_window_days: u64,
    pub emergency_grace_max_days: u64,
    pub max_clock_skew_ms: u64,
    pub min_proposer_stake: crate::types::Amount,
    pub proposal_fee: crate::types::Amount,
    pub account_creation_fee: crate::types::Amount,
    pub draft_deposit_base: crate::types::Amount,
    pub draft_deposit_per_kib: crate::types::Amount,
    pub state_budget_bytes: u64,
}

impl GovParams {
    /// `days` governance days in milliseconds, saturating.
    pub fn days_ms(&self, days: u64) -> u64 {
        days.saturating_mul(self.day_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_sorted_unique_and_defaults_are_valid() {
        for pair in SCHEMA.windows(2) {
            assert!(
                pair[0].key < pair[1].key,
                "{} before {}",
                pair[0].key,
                pair[1].key
            );
        }
        for s in SCHEMA {
            assert!(
                ["arch", "econ", "train", "net", "gov"].contains(&s.namespace()),
                "{} is in no namespace",
                s.key
            );
            s.check(&s.default_value()).unwrap();
            if s.reward {
                assert!(s.min >= 1, "reward parameter {} must stay positive", s.key);
            }
        }
        ParameterSet::genesis_defaults().validate().unwrap();
    }

    #[test]
    fn design_defaults_hold() {
        let g = ParameterSet::genesis_defaults().gov();
        assert_eq!(g.day_ms, 86_400_000);
        assert_eq!((g.review_days, g.voting_days), (7, 7));
        assert_eq!((g.quorum_bps.0, g.approval_bps.0), (2000, 6600));
        assert_eq!((g.grace_min_days, g.grace_max_days), (7, 30));
        assert_eq!(g.min_proposer_stake.0, 100 * NEURO);
        assert_eq!(g.proposal_fee.0, 10 * NEURO);
        assert_eq!(
            (g.emergency_window_days, g.emergency_grace_max_days),
            (1, 1)
        );
        assert_eq!(g.max_clock_skew_ms, 30_000);
        assert!(spec("train.reward_per_batch").unwrap().reward);
    }

    #[test]
    fn time_parameters_keep_their_floors_at_under_and_over() {
        // (key, floor): the value below is refused by name, the floor and
        // above accepted.
        let floors = [
            ("gov.day_ms", MIN_DAY_MS),
            ("gov.max_clock_skew_ms", MIN_MAX_CLOCK_SKEW_MS),
            ("gov.voting_days", 1),
            ("gov.emergency_window_days", 1),
        ];
        for (key, floor) in floors {
            assert_eq!(spec(key).unwrap().min, floor, "{key}");
            let mut p = ParameterSet::genesis_defaults();
            p.set(key, ParamValue::Integer(floor))
                .expect("at the floor");
            p.set(key, ParamValue::Integer(floor + 1))
                .expect("over the floor");
            match p.set(key, ParamValue::Integer(floor - 1)) {
                Err(ParamError::OutOfRange {
                    key: k, value, min, ..
                }) => {
                    assert_eq!((k.as_str(), min), (key, floor));
                    assert_eq!(value, (floor - 1).to_string());
                }
                other => panic!("{key} = {}: {other:?}", floor - 1),
            }
            assert!(matches!(
                p.set(key, ParamValue::Integer(0)),
                Err(ParamError::OutOfRange { .. })
            ));
        }
        assert_eq!(MIN_DAY_MS, 1_000);
        assert_eq!(MIN_MAX_CLOCK_SKEW_MS, 1_000);
        // The time parameters whose 0 is allowed (the comment above SCHEMA
        // says why).
        for key in [
            "gov.review_days",
            "gov.grace_min_days",
            "gov.grace_max_days",
            "gov.emergency_grace_max_days",
            "econ.unbonding_days",
        ] {
            assert_eq!(spec(key).unwrap().min, 0, "{key}");
        }
    }

    #[test]
    fn set_checks_kind_and_bounds() {
        let mut p = ParameterSet::genesis_defaults();
        assert!(matches!(
            p.set("gov.quorum_bps", ParamValue::Integer(10_001)),
            Err(ParamError::OutOfRange { .. })
        ));
        assert!(matches!(
            p.set("gov.quorum_bps", ParamValue::Bool(true)),
            Err(ParamError::KindMismatch { .. })
        ));
        assert!(matches!(
            p.set("gov.nope", ParamValue::Integer(1)),
            Err(ParamError::Unknown { .. })
        ));
        let before = p.hash();
        p.set("gov.quorum_bps", ParamValue::Integer(2_500)).unwrap();
        assert_ne!(before, p.hash());
    }
}
