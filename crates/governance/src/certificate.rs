//! The events that need a certificate (DESIGN §5) and the payload bytes
//! validators sign. All payload building lives here.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::nep::{EconomicImpact, NepType, UpgradePath};
use crate::params::ParamValue;
use crate::types::{BasisPoints, NepId, ProtocolVersion, Timestamp};

/// Payload type named in every envelope.
pub const PAYLOAD_TYPE: &str = "application/vnd.neuroshard.certificate.v1+protobuf";

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
    /// The payload bytes validators sign.
    pub fn encode_payload(&self) -> Vec<u8> {
        // Encoding a plain struct into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

/// SHA-256 of payload bytes: the `previous_payload_hash` of the next one.
pub fn payload_hash(payload: &[u8]) -> [u8; 32] {
    Sha256::digest(payload).into()
}

/// A validator's signature share, as carried in `CertificateIssued`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateShare {
    pub validator: u32,
    pub share: Vec<u8>,
}

/// A combined certificate the leader proposes for the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCertificate {
    pub sequence: u64,
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub scheme: String,
    pub committee_epoch: u64,
    /// Combined signature over the DSSE pre-authentication encoding.
    pub signature: Vec<u8>,
    /// The t+1 shares it was combined from, so each is attributable.
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

/// Checks a combined certificate against the committee before it is
/// recorded: envelope fields and share set.
pub fn verify_issued(
    committee: &crate::genesis::GenesisCommittee,
    c: &IssuedCertificate,
) -> Result<(), String> {
    if c.payload_type != PAYLOAD_TYPE {
        return Err(format!(
            "payload type {:?} is not {PAYLOAD_TYPE:?}",
            c.payload_type
        ));
    }
    if c.scheme != committee.scheme {
        return Err(format!(
            "scheme {:?} is not the committee's {:?}",
            c.scheme, committee.scheme
        ));
    }
    if c.committee_epoch != committee.epoch {
        return Err(format!(
            "epoch {} is not the committee's {}",
            c.committee_epoch, committee.epoch
        ));
    }
    if c.shares.len() > crate::limits::MAX_CERTIFICATE_SHARES {
        return Err(format!(
            "{} shares, more than {}",
            c.shares.len(),
            crate::limits::MAX_CERTIFICATE_SHARES
        ));
    }
    let needed = committee.t as usize + 1;
    let mut seen = std::collections::BTreeSet::new();
    for s in &c.shares {
        if s.validator >= committee.n || !seen.insert(s.validator) {
            return Err(format!(
                "share of validator {} is unknown or repeated",
                s.validator
            ));
        }
    }
    if seen.len() < needed {
        return Err(format!("{} shares, {needed} (t + 1) needed", seen.len()));
    }
    Ok(())
}
