//! The events that need a certificate (DESIGN §5) and the payload bytes
//! validators sign. All payload building lives here.

use std::collections::BTreeSet;

use neuroshard_certificate::{proto, Envelope, ShareIndex, Verifier};
use serde::{Deserialize, Serialize};

use crate::genesis::CommitteeGenesis;
use crate::limits::MAX_CERTIFICATE_SHARES;

use crate::nep::{EconomicImpact, NepType, UpgradePath};
use crate::params::ParamValue;
use crate::types::{BasisPoints, NepId, ProtocolVersion, Timestamp};

/// Payload type named in every envelope.
pub use neuroshard_certificate::PAYLOAD_TYPE;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CertificateKind {
    /// The NEP became SCHEDULED.
    Activation,
    /// A SCHEDULED NEP was CANCELLED by an emergency NEP.
    Cancellation,
    /// An emergency NEP failed ratification; its keys return to old values.
    Revocation,
}

/// One parameter change as certified (for a revocation: old = the NEP's
/// value, new = the restored one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedChange {
    pub key: String,
    pub old: ParamValue,
    pub new: ParamValue,
}

/// The tally a certificate carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedTally {
    pub yes: u64,
    pub no: u64,
    pub abstain: u64,
    pub total_power: u64,
    pub quorum_bps: BasisPoints,
    pub approval_bps: BasisPoints,
    pub ballots: u64,
}

/// Everything the certificate payload states, as the state machine decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateEvent {
    pub chain_id: String,
    pub sequence: u64,
    pub previous_payload_hash: [u8; 32],
    pub kind: CertificateKind,
    pub nep: NepId,
    pub nep_type: NepType,
    pub content_hash: [u8; 32],
    pub title: String,
    /// Sorted by key.
    pub parameter_changes: Vec<CertifiedChange>,
    pub economic_impact: EconomicImpact,
    pub upgrade_path: UpgradePath,
    pub tally: CertifiedTally,
    pub decision_time_ms: Timestamp,
    pub decision_log_index: u64,
    pub activation_time_ms: Timestamp,
    pub activation_height: u64,
    pub version_before: ProtocolVersion,
    pub version_after: ProtocolVersion,
    pub parameters_hash: [u8; 32],
    pub committee_hash: [u8; 32],
    pub ballots_root: [u8; 32],
    /// Validator indices, ascending.
    pub emergency_approvals: Vec<u32>,
}

impl CertificateEvent {
    /// The protobuf payload (`proto/certificate.proto`).
    pub fn to_proto(&self) -> proto::CertificatePayload {
        let version = |v: ProtocolVersion| proto::ProtocolVersion {
            major: v.major,
            minor: v.minor,
        };
        proto::CertificatePayload {
            chain_id: self.chain_id.clone(),
            sequence: self.sequence,
            previous_payload_hash: self.previous_payload_hash.to_vec(),
            kind: match self.kind {
                CertificateKind::Activation => proto::CertificateKind::Activation,
                CertificateKind::Cancellation => proto::CertificateKind::Cancellation,
                CertificateKind::Revocation => proto::CertificateKind::Revocation,
            } as i32,
            nep_id: self.nep.0,
            nep_type: match self.nep_type {
                NepType::Arch => proto::NepType::Arch,
                NepType::Econ => proto::NepType::Econ,
                NepType::Train => proto::NepType::Train,
                NepType::Net => proto::NepType::Net,
                NepType::Gov => proto::NepType::Gov,
                NepType::Emerg => proto::NepType::Emerg,
            } as i32,
            content_hash: self.content_hash.to_vec(),
            title: self.title.clone(),
            parameter_changes: self
                .parameter_changes
                .iter()
                .map(|c| proto::ParameterChange {
                    key: c.key.clone(),
                    old_value: Some(proto_value(&c.old)),
                    new_value: Some(proto_value(&c.new)),
                })
                .collect(),
            economic_impact: Some(proto::EconomicImpact {
                training_efficiency_multiplier_micro: self
                    .economic_impact
                    .training_efficiency_multiplier
                    .0,
                training_reward_multiplier_micro: self.economic_impact.training_reward_multiplier.0,
                net_earnings_change_percent_micro: self
                    .economic_impact
                    .net_earnings_change_percent
                    .0,
                summary: self.economic_impact.summary.clone(),
            }),
            upgrade_path: Some(proto::UpgradePath {
                grace_period_days: self.upgrade_path.grace_period_days,
                backward_compatible: self.upgrade_path.backward_compatible,
            }),
            tally: Some(proto::Tally {
                yes: self.tally.yes,
                no: self.tally.no,
                abstain: self.tally.abstain,
                total_power: self.tally.total_power,
                quorum_bps: self.tally.quorum_bps.0,
                approval_bps: self.tally.approval_bps.0,
                ballots: self.tally.ballots,
            }),
            decision_time_ms: self.decision_time_ms.0,
            decision_log_index: self.decision_log_index,
            activation_time_ms: self.activation_time_ms.0,
            activation_height: self.activation_height,
            version_before: Some(version(self.version_before)),
            version_after: Some(version(self.version_after)),
            parameters_hash: self.parameters_hash.to_vec(),
            committee_hash: self.committee_hash.to_vec(),
            ballots_root: self.ballots_root.to_vec(),
            emergency_approvals: self.emergency_approvals.clone(),
        }
    }

    /// The payload bytes validators sign (deterministic protobuf).
    pub fn encode_payload(&self) -> Vec<u8> {
        neuroshard_certificate::encode_payload(&self.to_proto())
    }
}

fn proto_value(v: &ParamValue) -> proto::ParameterValue {
    use proto::parameter_value::Value;
    proto::ParameterValue {
        value: Some(match v {
            ParamValue::Integer(i) => Value::Integer(*i),
            ParamValue::FixedPoint(m) => Value::FixedMicro(m.0),
            ParamValue::Bool(b) => Value::Boolean(*b),
            ParamValue::String(t) => Value::Text(t.clone()),
        }),
    }
}

/// SHA-256 of payload bytes: the `previous_payload_hash` of the next one.
pub fn payload_hash(payload: &[u8]) -> [u8; 32] {
    neuroshard_certificate::payload_hash(payload)
}

/// A validator's signature share on `PAE(payload_type, payload)`, as
/// carried in `CertificateIssued` so every signature is attributable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateShare {
    /// Committee index (0-based).
    pub validator: u32,
    /// 96-byte compressed share.
    #[serde(with = "hex::serde")]
    pub share: Vec<u8>,
}

/// A combined certificate the leader proposes for the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCertificate {
    pub sequence: u64,
    pub envelope: Envelope,
    /// The t+1 shares the signature was combined from.
    pub shares: Vec<CertificateShare>,
}

/// A decided certificate on the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRecord {
    pub event: CertificateEvent,
    pub payload: Vec<u8>,
    pub payload_hash: [u8; 32],
    /// Set once a verified `CertificateIssued` entry was applied.
    pub issued: Option<IssuedCertificate>,
}

/// A certificate decided but not yet issued: what validators must sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCertificate {
    pub sequence: u64,
    pub payload: Vec<u8>,
    pub decision_time_ms: Timestamp,
}

/// Checks a combined certificate before it is recorded: the envelope
/// verifies against the committee's group key (the light-node verifier:
/// type, scheme, epoch, committee hash, chain id, BLS signature), and the
/// attached shares are t+1 distinct committee members' valid shares on the
/// same bytes, when the genesis carries the public key set.
///
/// The verdict is a pure function of its inputs, so it is memoized (the
/// last [`VERIFIED_MEMO`] verdicts, keyed by a hash of the committee and the
/// certificate): a validator verifies a certificate when the leader offers
/// it, before it is proposed (or else when its entry is appended), and the
/// apply that follows, under the state's lock, finds the verdict.
pub fn verify_issued(committee: &CommitteeGenesis, c: &IssuedCertificate) -> Result<(), String> {
    let key = memo_key(committee, c);
    if let Some(verdict) = memo_get(&key) {
        return verdict;
    }
    let verdict = verify_issued_uncached(committee, c);
    memo_put(key, verdict.clone());
    verdict
}

/// Verifies `c` now so that its apply finds the verdict (see
/// [`verify_issued`]).
pub fn preverify_issued(committee: &CommitteeGenesis, c: &IssuedCertificate) {
    let _verdict = verify_issued(committee, c);
}

/// Verdicts kept by [`verify_issued`].
pub const VERIFIED_MEMO: usize = 64;

type MemoKey = [u8; 32];

static MEMO: std::sync::Mutex<std::collections::VecDeque<(MemoKey, Result<(), String>)>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

fn memo_key(committee: &CommitteeGenesis, c: &IssuedCertificate) -> MemoKey {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"neuroshard/verify-issued/v1");
    h.update(postcard::to_allocvec(committee).unwrap_or_default());
    h.update(postcard::to_allocvec(c).unwrap_or_default());
    h.finalize().into()
}

fn memo_get(key: &MemoKey) -> Option<Result<(), String>> {
    let memo = MEMO.lock().unwrap_or_else(|p| p.into_inner());
    memo.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn memo_put(key: MemoKey, verdict: Result<(), String>) {
    let mut memo = MEMO.lock().unwrap_or_else(|p| p.into_inner());
    if memo.iter().any(|(k, _)| *k == key) {
        return;
    }
    if memo.len() >= VERIFIED_MEMO {
        memo.pop_front();
    }
    memo.push_back((key, verdict));
}

fn verify_issued_uncached(
    committee: &CommitteeGenesis,
    c: &IssuedCertificate,
) -> Result<(), String> {
    let verifier = Verifier::new(committee.info.clone()).map_err(|e| e.to_string())?;
    let Some(keys) = &committee.public_key_set else {
        // No key set to check shares against: the signature alone.
        verifier.verify(&c.envelope).map_err(|e| e.to_string())?;
        return check_share_list(committee, c);
    };
    let scheme = committee.info.scheme.scheme();
    let keys = scheme
        .public_key_set_from_bytes(keys)
        .map_err(|e| e.to_string())?;
    check_share_list(committee, c)?;
    let mut parsed = Vec::with_capacity(c.shares.len());
    for s in &c.shares {
        let share = scheme
            .signature_share_from_bytes(&s.share)
            .map_err(|e| format!("share of validator {}: {e}", s.validator))?;
        parsed.push((ShareIndex(s.validator), share));
    }
    // The envelope's checks, then one pairing check for the combined
    // signature and every share (the signature, or else the first invalid
    // share, is named when it fails).
    let together: Vec<(ShareIndex, &_)> = parsed.iter().map(|(i, s)| (*i, s)).collect();
    verifier
        .verify_with_shares(&c.envelope, &keys, &together)
        .map_err(|e| e.to_string())?
        .map_err(|e| match e {
            neuroshard_certificate::SchemeError::InvalidShare { index } => {
                format!("share of validator {}: {e}", index.0)
            }
            other => format!("shares: {other}"),
        })?;
    Ok(())
}

/// At most `MAX_CERTIFICATE_SHARES` shares, from distinct committee
/// members, at least t + 1 of them.
fn check_share_list(committee: &CommitteeGenesis, c: &IssuedCertificate) -> Result<(), String> {
    if c.shares.len() > MAX_CERTIFICATE_SHARES {
        return Err(format!(
            "{} shares, more than {MAX_CERTIFICATE_SHARES}",
            c.shares.len()
        ));
    }
    let info = &committee.info;
    let needed = info.t as usize + 1;
    let mut seen = BTreeSet::new();
    for s in &c.shares {
        if s.validator >= info.n || !seen.insert(s.validator) {
            return Err(format!(
                "share of validator {} is unknown or repeated",
                s.validator
            ));
        }
    }
    if seen.len() < needed {
        return Err(format!(
            "{} shares attached, {needed} (t + 1) needed",
            seen.len()
        ));
    }
    Ok(())
}
