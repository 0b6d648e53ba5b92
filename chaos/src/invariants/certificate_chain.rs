//! Certificates form one chain a light node can follow: at most one per NEP
//! and kind, sequences gap-free from 1 and linked by previous-payload
//! hashes, every envelope verifies against the pinned committee info, and
//! every replica derived exactly the certified payload bytes.

use std::collections::{BTreeMap, BTreeSet};

use neuroshard_certificate::proto::{self, CertificatePayload};
use neuroshard_certificate::{decode_payload, payload_hash, Verifier};
use neuroshard_governance::certificate::CertificateKind;
use neuroshard_governance::NepId;

use crate::history::{CertificateSeen, History};

use super::Checked;

pub const NAME: &str = "certificate_chain";
pub const CLAIM: &str =
    "one certificate per NEP and kind, gap-free linked sequences, each verifies and matches every replica";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainFault {
    #[error("the header's committee info cannot verify anything: {reason}")]
    BadCommittee { reason: String },
    #[error("certificate {sequence}: payload does not decode: {reason}")]
    Undecodable { sequence: u64, reason: String },
    #[error("certificate {sequence} does not verify against the committee info: {reason}")]
    DoesNotVerify { sequence: u64, reason: String },
    #[error("two different certificates carry sequence {sequence}")]
    Conflicting { sequence: u64 },
    #[error("certificate event {sequence} says {field} {recorded}, its payload says {payload}")]
    EventMismatch {
        sequence: u64,
        field: &'static str,
        recorded: String,
        payload: String,
    },
    #[error("{nep} has {count} {kind:?} certificates (sequences {sequences:?})")]
    DuplicateForNep {
        nep: NepId,
        kind: CertificateKind,
        count: usize,
        sequences: Vec<u64>,
    },
    #[error("sequence {missing} is missing below the highest issued sequence {highest}")]
    SequenceGap { missing: u64, highest: u64 },
    #[error("certificate {sequence} names previous payload hash {found}, but certificate {previous} hashes to {expected}")]
    BrokenLink {
        sequence: u64,
        previous: u64,
        expected: String,
        found: String,
    },
    #[error("certificate {sequence}: replica {replica} derived different payload bytes")]
    ReplicaPayloadDiffers { sequence: u64, replica: u32 },
    #[error("certificate {sequence}: no replica's own payload was recorded to compare with")]
    NoReplicaPayload { sequence: u64 },
}

/// The governance kind of a payload's kind code.
pub fn payload_kind(p: &CertificatePayload) -> Option<CertificateKind> {
    match proto::CertificateKind::try_from(p.kind).ok()? {
        proto::CertificateKind::Activation => Some(CertificateKind::Activation),
        proto::CertificateKind::Cancellation => Some(CertificateKind::Cancellation),
        proto::CertificateKind::Revocation => Some(CertificateKind::Revocation),
        proto::CertificateKind::Unspecified => None,
    }
}

pub fn check(h: &History) -> Checked<ChainFault> {
    let mut out = Checked::default();
    let verifier = match Verifier::new(h.header.committee.clone()) {
        Ok(v) => Some(v),
        Err(e) => {
            out.violations.push(ChainFault::BadCommittee {
                reason: e.to_string(),
            });
            None
        }
    };
    // One certificate per sequence; the same one seen twice is fine.
    let mut by_sequence: BTreeMap<u64, (&CertificateSeen, CertificatePayload)> = BTreeMap::new();
    for c in h.certificates() {
        if let Some((first, _)) = by_sequence.get(&c.sequence) {
            if first.envelope.payload != c.envelope.payload {
                out.violations.push(ChainFault::Conflicting {
                    sequence: c.sequence,
                });
            }
            check_replicas(c, &mut out);
            continue;
        }
        out.checked += 1;
        let payload = match decode_payload(&c.envelope.payload) {
            Ok(p) => p,
            Err(e) => {
                out.violations.push(ChainFault::Undecodable {
                    sequence: c.sequence,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if let Some(v) = &verifier {
            if let Err(e) = v.verify(&c.envelope) {
                out.violations.push(ChainFault::DoesNotVerify {
                    sequence: c.sequence,
                    reason: e.to_string(),
                });
            }
        }
        check_event_fields(c, &payload, &mut out);
        check_replicas(c, &mut out);
        by_sequence.insert(c.sequence, (c, payload));
    }

    let mut per_nep: BTreeMap<(NepId, CertificateKind), Vec<u64>> = BTreeMap::new();
    for (seq, (_, p)) in &by_sequence {
        if let Some(kind) = payload_kind(p) {
            per_nep
                .entry((NepId(p.nep_id), kind))
                .or_default()
                .push(*seq);
        }
    }
    for ((nep, kind), sequences) in per_nep {
        if sequences.len() > 1 {
            out.violations.push(ChainFault::DuplicateForNep {
                nep,
                kind,
                count: sequences.len(),
                sequences,
            });
        }
    }

    let highest = by_sequence.keys().next_back().copied().unwrap_or(0);
    let present: BTreeSet<u64> = by_sequence.keys().copied().collect();
    for missing in (1..=highest).filter(|s| !present.contains(s)) {
        out.violations
            .push(ChainFault::SequenceGap { missing, highest });
    }
    for (seq, (_, p)) in &by_sequence {
        let previous = seq.saturating_sub(1);
        let expected = match previous {
            0 => Some([0u8; 32]),
            _ => by_sequence
                .get(&previous)
                .map(|(c, _)| payload_hash(&c.envelope.payload)),
        };
        // A missing predecessor is already a gap.
        if let Some(expected) = expected {
            if p.previous_payload_hash.as_slice() != expected.as_slice() {
                out.violations.push(ChainFault::BrokenLink {
                    sequence: *seq,
                    previous,
                    expected: hex::encode(expected),
                    found: hex::encode(&p.previous_payload_hash),
                });
            }
        }
    }
    out
}

fn check_event_fields(c: &CertificateSeen, p: &CertificatePayload, out: &mut Checked<ChainFault>) {
    let mut mismatch = |field, recorded: String, payload: String| {
        if recorded != payload {
            out.violations.push(ChainFault::EventMismatch {
                sequence: c.sequence,
                field,
                recorded,
                payload,
            });
        }
    };
    mismatch("sequence", c.sequence.to_string(), p.sequence.to_string());
    mismatch("nep", c.nep.0.to_string(), p.nep_id.to_string());
    mismatch(
        "kind",
        format!("{:?}", Some(c.kind)),
        format!("{:?}", payload_kind(p)),
    );
}

fn check_replicas(c: &CertificateSeen, out: &mut Checked<ChainFault>) {
    if c.replica_payloads.is_empty() {
        out.violations.push(ChainFault::NoReplicaPayload {
            sequence: c.sequence,
        });
    }
    for r in &c.replica_payloads {
        if r.payload != c.envelope.payload {
            out.violations.push(ChainFault::ReplicaPayloadDiffers {
                sequence: c.sequence,
                replica: r.replica,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Event;
    use crate::testing::certified_run;

    fn certificate(h: &mut History) -> &mut CertificateSeen {
        h.events
            .iter_mut()
            .find_map(|e| match e {
                Event::Certificate(c) => Some(c),
                _ => None,
            })
            .expect("the run issued a certificate")
    }

    #[test]
    fn an_issued_certificate_passes() {
        let h = certified_run();
        let c = check(&h);
        assert_eq!(c.violations, vec![]);
        assert_eq!(c.checked, 1);
    }

    #[test]
    fn flags_a_certificate_that_does_not_verify() {
        let mut h = certified_run();
        let sig = &mut certificate(&mut h).envelope.signature;
        sig[10] ^= 0x01;
        assert!(check(&h)
            .violations
            .iter()
            .any(|v| matches!(v, ChainFault::DoesNotVerify { sequence: 1, .. })));
    }

    #[test]
    fn flags_a_replica_that_derived_other_payload_bytes() {
        let mut h = certified_run();
        let c = certificate(&mut h);
        let last = c.replica_payloads.len() - 1;
        c.replica_payloads[last].payload.push(0);
        let replica = c.replica_payloads[last].replica;
        assert!(check(&h)
            .violations
            .contains(&ChainFault::ReplicaPayloadDiffers {
                sequence: 1,
                replica
            }));
    }

    #[test]
    fn flags_a_second_certificate_for_the_same_nep_and_kind_and_a_gap() {
        let mut h = certified_run();
        let mut second = certificate(&mut h).clone();
        // Sequence 3 with the same content: a duplicate, a gap at 2, and a
        // payload whose own sequence and link disagree.
        second.sequence = 3;
        h.events.push(Event::Certificate(second));
        let v = check(&h).violations;
        assert!(
            v.iter()
                .any(|v| matches!(v, ChainFault::DuplicateForNep { count: 2, .. })),
            "{v:?}"
        );
        assert!(v.contains(&ChainFault::SequenceGap {
            missing: 2,
            highest: 3
        }));
        assert!(v.iter().any(|v| matches!(
            v,
            ChainFault::EventMismatch {
                field: "sequence",
                ..
            }
        )));
    }

    #[test]
    fn flags_two_different_certificates_with_one_sequence() {
        let mut h = certified_run();
        let mut other = certificate(&mut h).clone();
        other.envelope.payload.push(0);
        h.events.push(Event::Certificate(other));
        assert!(check(&h)
            .violations
            .contains(&ChainFault::Conflicting { sequence: 1 }));
    }
}
