//! A light node: follows the certificate chain trusting only the committee
//! info it pinned (the certificate crate's `Follower`: signature, chain id,
//! committee hash, gap-free sequence, previous-payload links), and knows
//! which parameters are active at any height.
//!
//! The genesis parameters it starts from are either pinned too (a
//! genesis.toml whose committee matches the pinned one) or taken from any
//! validator; either way every certificate's `parameters_hash` (the hash of
//! the full parameter set once everything certified so far has taken
//! effect) is checked against the follower's own projection, so a validator
//! lying about genesis is caught at the first certificate.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use neuroshard_certificate::proto::{CertificateKind, CertificatePayload, NepType, ParameterValue};
use neuroshard_certificate::{CommitteeInfo, Envelope, FollowError, Follower, Verifier};
use neuroshard_governance::{Genesis, ParameterSet, ProtocolVersion};
use neuroshard_node::transport::api_convert::{value_from_proto, value_to_proto, version_to_proto};

#[derive(Debug, thiserror::Error)]
pub enum LightError {
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error("certificate {sequence} states parameters hash {certified}, but genesis plus the certified changes give {computed}: the genesis parameters are not this chain's")]
    ParametersHash {
        sequence: u64,
        certified: String,
        computed: String,
    },
    #[error("certificate {sequence} certifies activation height {certified} at {activation_time_ms} ms, but a block interval of {block_interval_ms} ms gives height {computed}: the block interval is not this chain's")]
    BlockInterval {
        sequence: u64,
        activation_time_ms: u64,
        certified: u64,
        computed: u64,
        block_interval_ms: u64,
    },
    #[error("genesis: {0}")]
    Genesis(String),
}

/// Where the genesis parameters came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GenesisSource {
    /// A genesis file whose committee is the pinned one.
    Pinned,
    /// A validator's answer, checked against each certificate.
    Validator,
}

/// The starting point of a light node.
#[derive(Clone, Debug)]
pub struct LightGenesis {
    pub parameters: BTreeMap<String, ParameterValue>,
    pub version: ProtocolVersion,
    pub genesis_time_ms: u64,
    pub block_interval_ms: u64,
    pub source: GenesisSource,
}

impl LightGenesis {
    /// From a genesis file; its committee must be the pinned one.
    pub fn from_genesis(genesis: &Genesis, pinned: &CommitteeInfo) -> Result<Self, LightError> {
        if genesis.committee.info.committee_hash() != pinned.committee_hash() {
            return Err(LightError::Genesis(
                "its committee is not the pinned committee info".into(),
            ));
        }
        let set = genesis
            .parameter_set()
            .map_err(|e| LightError::Genesis(e.to_string()))?;
        Ok(Self {
            parameters: set
                .iter()
                .map(|(k, v)| (k.to_owned(), value_to_proto(v)))
                .collect(),
            version: genesis.protocol_version,
            genesis_time_ms: genesis.genesis_time_ms,
            block_interval_ms: genesis.block_interval_ms,
            source: GenesisSource::Pinned,
        })
    }
}

pub struct LightNode {
    follower: Follower,
    genesis: LightGenesis,
}

fn kind_name(kind: i32) -> &'static str {
    match CertificateKind::try_from(kind) {
        Ok(CertificateKind::Activation) => "ACTIVATION",
        Ok(CertificateKind::Cancellation) => "CANCELLATION",
        Ok(CertificateKind::Revocation) => "REVOCATION",
        _ => "UNKNOWN",
    }
}

fn type_name(t: i32) -> &'static str {
    match NepType::try_from(t) {
        Ok(NepType::Arch) => "ARCH",
        Ok(NepType::Econ) => "ECON",
        Ok(NepType::Train) => "TRAIN",
        Ok(NepType::Net) => "NET",
        Ok(NepType::Gov) => "GOV",
        Ok(NepType::Emerg) => "EMERG",
        _ => "UNKNOWN",
    }
}

pub fn value_text(v: Option<&ParameterValue>) -> String {
    v.and_then(value_from_proto)
        .map_or_else(|| "?".to_owned(), |v| v.to_string())
}

fn version_text(v: Option<&neuroshard_certificate::proto::ProtocolVersion>) -> String {
    v.map_or_else(|| "?".to_owned(), |v| format!("{}.{}", v.major, v.minor))
}

#[derive(Clone, Debug, Serialize)]
pub struct ChangeOut {
    pub key: String,
    pub old: String,
    pub new: String,
}

/// A certificate payload as people read it.
#[derive(Clone, Debug, Serialize)]
pub struct CertificateOut {
    pub sequence: u64,
    pub kind: String,
    pub nep: u64,
    pub nep_type: String,
    pub title: String,
    pub changes: Vec<ChangeOut>,
    pub yes: u64,
    pub no: u64,
    pub abstain: u64,
    pub total_power: u64,
    pub ballots: u64,
    pub decision_time_ms: u64,
    pub decision_log_index: u64,
    pub activation_time_ms: u64,
    pub activation_height: u64,
    pub version_before: String,
    pub version_after: String,
    pub emergency_approvals: Vec<u32>,
    pub ballots_root: String,
    pub parameters_hash: String,
    pub committee_hash: String,
    pub previous_payload_hash: String,
}

impl From<&CertificatePayload> for CertificateOut {
    fn from(p: &CertificatePayload) -> Self {
        let t = p.tally.unwrap_or_default();
        Self {
            sequence: p.sequence,
            kind: kind_name(p.kind).to_owned(),
            nep: p.nep_id,
            nep_type: type_name(p.nep_type).to_owned(),
            title: p.title.clone(),
            changes: p
                .parameter_changes
                .iter()
                .map(|c| ChangeOut {
                    key: c.key.clone(),
                    old: value_text(c.old_value.as_ref()),
                    new: value_text(c.new_value.as_ref()),
                })
                .collect(),
            yes: t.yes,
            no: t.no,
            abstain: t.abstain,
            total_power: t.total_power,
            ballots: t.ballots,
            decision_time_ms: p.decision_time_ms,
            decision_log_index: p.decision_log_index,
            activation_time_ms: p.activation_time_ms,
            activation_height: p.activation_height,
            version_before: version_text(p.version_before.as_ref()),
            version_after: version_text(p.version_after.as_ref()),
            emergency_approvals: p.emergency_approvals.clone(),
            ballots_root: hex::encode(&p.ballots_root),
            parameters_hash: hex::encode(&p.parameters_hash),
            committee_hash: hex::encode(&p.committee_hash),
            previous_payload_hash: hex::encode(&p.previous_payload_hash),
        }
    }
}

impl fmt::Display for CertificateOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "certificate #{} {} for NEP-{} ({}) \"{}\"",
            self.sequence, self.kind, self.nep, self.nep_type, self.title
        )?;
        for c in &self.changes {
            writeln!(f, "  {} : {} -> {}", c.key, c.old, c.new)?;
        }
        writeln!(
            f,
            "  takes effect at {} ms, block height {}; protocol {} -> {}",
            self.activation_time_ms,
            self.activation_height,
            self.version_before,
            self.version_after
        )?;
        if self.ballots > 0 || self.total_power > 0 {
            writeln!(
                f,
                "  tally yes {} no {} abstain {} of {} staked, {} ballots (root {})",
                crate::amount::show(self.yes),
                crate::amount::show(self.no),
                crate::amount::show(self.abstain),
                crate::amount::show(self.total_power),
                self.ballots,
                self.ballots_root
            )?;
        }
        if !self.emergency_approvals.is_empty() {
            writeln!(f, "  approved by validators {:?}", self.emergency_approvals)?;
        }
        writeln!(
            f,
            "  decided at {} ms (log index {}); committee {}",
            self.decision_time_ms, self.decision_log_index, self.committee_hash
        )
    }
}

/// The parameters and version a light node holds active at a height.
#[derive(Clone, Debug, Serialize)]
pub struct ActiveOut {
    pub height: u64,
    pub version: String,
    /// Every parameter, sorted by key.
    pub parameters: BTreeMap<String, String>,
    /// Parameters whose value differs from genesis.
    pub changed: BTreeMap<String, String>,
    /// Sequences of certified changes not yet in force at this height.
    pub pending: Vec<u64>,
}

impl fmt::Display for ActiveOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "active at height {}: protocol {}, {} parameters, {} changed from genesis{}",
            self.height,
            self.version,
            self.parameters.len(),
            self.changed.len(),
            if self.pending.is_empty() {
                String::new()
            } else {
                format!(", certificates {:?} pending", self.pending)
            }
        )?;
        for (k, v) in &self.changed {
            writeln!(f, "  {k} = {v}")?;
        }
        Ok(())
    }
}

impl LightNode {
    pub fn new(committee: CommitteeInfo, genesis: LightGenesis) -> Result<Self, LightError> {
        let verifier = Verifier::new(committee)
            .map_err(|e| LightError::Genesis(format!("committee info: {e}")))?;
        let follower = Follower::new(
            verifier,
            genesis.parameters.clone(),
            version_to_proto(genesis.version),
        );
        Ok(Self { follower, genesis })
    }

    pub fn next_sequence(&self) -> u64 {
        self.follower.next_sequence()
    }

    pub fn genesis_source(&self) -> GenesisSource {
        self.genesis.source
    }

    /// Verifies and accepts the next certificate.
    pub fn accept(&mut self, envelope: &Envelope) -> Result<CertificatePayload, LightError> {
        let payload = self.follower.accept(envelope)?;
        let projected = self.follower.active_at(u64::MAX);
        let mut set = ParameterSet::genesis_defaults();
        for (key, value) in &projected.parameters {
            if let Some(v) = value_from_proto(value) {
                // A key or value the registry refuses cannot be in a
                // certified set; the hash comparison below then fails.
                let _ = set.set(key, v);
            }
        }
        let computed = set.hash();
        if computed.as_slice() != payload.parameters_hash.as_slice() {
            return Err(LightError::ParametersHash {
                sequence: payload.sequence,
                certified: hex::encode(&payload.parameters_hash),
                computed: hex::encode(computed),
            });
        }
        // The block interval decides which changes are active "now"; when it
        // came from a validator rather than a pinned genesis, an interval
        // that contradicts a certified (time, height) pair is refused (a
        // lie within the range the pairs allow is not caught: docs/cli.md).
        let height = self.height_at(payload.activation_time_ms);
        if height != payload.activation_height {
            return Err(LightError::BlockInterval {
                sequence: payload.sequence,
                activation_time_ms: payload.activation_time_ms,
                certified: payload.activation_height,
                computed: height,
                block_interval_ms: self.genesis.block_interval_ms,
            });
        }
        Ok(payload)
    }

    /// Block height at wall-clock time `now_ms`.
    pub fn height_at(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.genesis.genesis_time_ms) / self.genesis.block_interval_ms.max(1)
    }

    pub fn active_at(&self, height: u64) -> ActiveOut {
        let active = self.follower.active_at(height);
        let parameters: BTreeMap<String, String> = active
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), value_text(Some(v))))
            .collect();
        let changed = parameters
            .iter()
            .filter(|(k, v)| {
                self.genesis
                    .parameters
                    .get(k.as_str())
                    .is_none_or(|g| &value_text(Some(g)) != *v)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ActiveOut {
            height,
            version: version_text(Some(&active.version)),
            parameters,
            changed,
            pending: self.follower.pending_at(height),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use neuroshard_governance::testkit::{user_key, TestChain, TestConfig};
    use neuroshard_governance::{proposal_file, Command, NepId, VoteChoice};

    /// A test chain whose first NEP (the multi-token-prediction example) is
    /// approved, with its ACTIVATION certificate issued.
    fn chain_with_a_certificate() -> (TestChain, Envelope) {
        let mut c = TestChain::new(&TestConfig::default());
        let content = proposal_file::parse(include_str!(
            "../../../examples/neps/multi-token-prediction.toml"
        ))
        .expect("example parses");
        let author = user_key(0);
        c.exec(&author, Command::CreateDraft { content })
            .expect("draft");
        let nep = NepId(1);
        c.exec(&author, Command::Submit { nep }).expect("submit");
        let gov = c.state.params().gov();
        c.advance_days(gov.review_days).expect("to voting");
        for u in 0..3 {
            let vote = Command::Vote {
                nep,
                choice: VoteChoice::Yes,
            };
            c.exec(&user_key(u), vote).expect("vote");
        }
        c.advance_days(gov.voting_days).expect("vote closes");
        for issued in c.issue_pending() {
            issued.expect("certificate issued");
        }
        let envelope = c
            .state
            .certificates(1, 1)
            .first()
            .and_then(|r| r.issued.as_ref())
            .map(|i| i.envelope.clone())
            .expect("certificate 1");
        (c, envelope)
    }

    #[test]
    fn a_block_interval_that_contradicts_a_certificate_is_refused() {
        let (c, envelope) = chain_with_a_certificate();
        let pinned = c.genesis.committee.info.clone();
        let genesis = LightGenesis::from_genesis(&c.genesis, &pinned).expect("genesis");

        let mut honest = LightNode::new(pinned.clone(), genesis.clone()).expect("light node");
        let payload = honest.accept(&envelope).expect("the certificate verifies");
        assert_eq!(payload.sequence, 1);

        // A validator that lies about the block interval (as `cert follow`
        // without --genesis would be told) is caught by the certified height.
        let lied = LightGenesis {
            block_interval_ms: genesis.block_interval_ms * 2,
            source: GenesisSource::Validator,
            ..genesis
        };
        let mut fooled = LightNode::new(pinned, lied).expect("light node");
        match fooled.accept(&envelope) {
            Err(LightError::BlockInterval {
                sequence,
                certified,
                computed,
                ..
            }) => {
                assert_eq!(sequence, 1);
                assert_eq!(certified, payload.activation_height);
                assert_ne!(computed, certified);
            }
            other => panic!("expected BlockInterval, got {other:?}"),
        }
    }
}
