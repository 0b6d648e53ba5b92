//! Deciding certificates (sequence, chain link, version, projected
//! parameters) and recording issued ones (DESIGN §5).

use neuroshard_certificate::merkle::empty_root;

use crate::certificate::{
    payload_hash, verify_issued, CertificateEvent, CertificateKind, CertificateRecord,
    CertifiedChange, CertifiedTally, IssuedCertificate, PendingCertificate,
};
use crate::error::GovError;
use crate::params::ParameterSet;
use crate::position::Position;
use crate::receipt::{Effect, Outcome};
use crate::state::{EffectKind, GovernanceState, PendingEffect};
use crate::tally::VoteBox;
use crate::types::{NepId, ProtocolVersion, Timestamp};

/// What a transition hands to `decide_certificate`.
pub(crate) struct Decision {
    pub kind: CertificateKind,
    pub nep: NepId,
    pub log_index: u64,
    pub effective_ms: Timestamp,
    pub changes: Vec<CertifiedChange>,
    /// `Some` when this certificate also schedules an effect.
    pub effect: Option<EffectKind>,
    /// Bump the version (activation, revocation) or not (cancellation).
    pub bump: Option<bool>,
}

fn certified_tally(vote: Option<&VoteBox>) -> (CertifiedTally, [u8; 32]) {
    match vote {
        None => (CertifiedTally::default(), empty_root()),
        Some(v) => (
            CertifiedTally {
                // Powers are stake, and total stake never exceeds the u64
                // genesis supply, so each sum fits in u64.
                yes: u64::try_from(v.tally.yes).unwrap_or(u64::MAX),
                no: u64::try_from(v.tally.no).unwrap_or(u64::MAX),
                abstain: u64::try_from(v.tally.abstain).unwrap_or(u64::MAX),
                total_power: u64::try_from(v.tally.total_power).unwrap_or(u64::MAX),
                quorum_bps: v.quorum_bps,
                approval_bps: v.approval_bps,
                ballots: v.ballot_count(),
            },
            v.ballots_root(),
        ),
    }
}

impl GovernanceState {
    /// Latest time any pending effect takes effect (activation order =
    /// certificate order).
    pub(crate) fn latest_pending_effect_ms(&self) -> Timestamp {
        self.effects
            .values()
            .map(|e| e.effective_ms)
            .max()
            .unwrap_or_default()
    }

    /// The parameters once every pending effect has taken effect.
    fn projected_parameters(&self) -> ParameterSet {
        let mut params = self.params.clone();
        for effect in self.effects.values() {
            let p = &self.proposals[&effect.nep];
            match effect.kind {
                EffectKind::Activate => {
                    for c in &p.content.parameter_changes {
                        // Values were schema-checked at validation.
                        let _ = params.set(&c.key, c.new.clone());
                    }
                }
                EffectKind::Revoke => {
                    for (key, value) in &p.previous_values {
                        let _ = params.set(key, value.clone());
                    }
                }
            }
        }
        params
    }

    /// Assigns the next sequence, links it to the previous payload, and
    /// records the certificate (and its effect, if any). Returns the sequence.
    pub(crate) fn decide_certificate(&mut self, d: Decision) -> u64 {
        let sequence = self.certificates.keys().next_back().map_or(1, |s| s + 1);
        let previous_payload_hash = self
            .certificates
            .values()
            .next_back()
            .map_or([0u8; 32], |r| r.payload_hash);
        let version_before = self.certified_version;
        let version_after = match d.bump {
            Some(backward_compatible) => version_before.bump(backward_compatible),
            None => version_before,
        };
        if let Some(kind) = d.effect {
            self.effects.insert(
                sequence,
                PendingEffect {
                    nep: d.nep,
                    kind,
                    effective_ms: d.effective_ms,
                    version_after,
                },
            );
        }
        let parameters_hash = self.projected_parameters().hash();
        let p = &self.proposals[&d.nep];
        let (tally, ballots_root) = certified_tally(p.vote.as_ref());
        let event = CertificateEvent {
            chain_id: self.chain.chain_id.clone(),
            sequence,
            previous_payload_hash,
            kind: d.kind,
            nep: d.nep,
            nep_type: p.content.nep_type,
            content_hash: p.content_hash,
            title: p.content.title.clone(),
            parameter_changes: d.changes,
            economic_impact: p.content.economic_impact.clone(),
            upgrade_path: p.content.upgrade_path,
            tally,
            decision_time_ms: self.committed_ms,
            decision_log_index: d.log_index,
            activation_time_ms: d.effective_ms,
            activation_height: self.chain.height_at(d.effective_ms),
            version_before,
            version_after,
            parameters_hash,
            committee_hash: self.chain.committee_hash,
            ballots_root,
            emergency_approvals: p.approvals.iter().copied().collect(),
        };
        let payload = event.encode_payload();
        let record = CertificateRecord {
            payload_hash: payload_hash(&payload),
            payload,
            event,
            issued: None,
        };
        self.certificates.insert(sequence, record);
        self.certified_version = version_after;
        self.proposal_mut(d.nep).certificates.push(sequence);
        sequence
    }

    /// Certificates decided but not yet issued, ascending by sequence.
    pub fn pending_certificates(&self) -> Vec<PendingCertificate> {
        self.certificates
            .values()
            .filter(|r| r.issued.is_none())
            .map(|r| PendingCertificate {
                sequence: r.event.sequence,
                payload: r.payload.clone(),
                decision_time_ms: r.event.decision_time_ms,
            })
            .collect()
    }

    /// Applies a `CertificateIssued` entry: the certificate must be one this
    /// replica decided, with the same payload bytes, and its combined
    /// signature must verify against the committee's group key.
    pub(crate) fn record_issued(&mut self, log_index: u64, c: &IssuedCertificate) -> Outcome {
        let record = self
            .certificates
            .get(&c.sequence)
            .ok_or(GovError::UnknownCertificate {
                sequence: c.sequence,
            })?;
        if record.issued.is_some() {
            return Err(GovError::CertificateAlreadyIssued {
                sequence: c.sequence,
            });
        }
        if record.payload != c.envelope.payload {
            return Err(GovError::CertificatePayloadMismatch {
                sequence: c.sequence,
            });
        }
        verify_issued(&self.chain.committee, c).map_err(|reason| GovError::CertificateInvalid {
            sequence: c.sequence,
            reason,
        })?;
        if let Some(r) = self.certificates.get_mut(&c.sequence) {
            r.issued = Some(c.clone());
        }
        Ok(self.receipt(
            Position::entry(log_index),
            Effect::CertificateRecorded {
                sequence: c.sequence,
            },
        ))
    }

    /// The version the last decided certificate leads to.
    pub fn certified_version(&self) -> ProtocolVersion {
        self.certified_version
    }
}
