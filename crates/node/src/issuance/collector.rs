//! The leader's side of issuance: collect validators' signature shares,
//! verify each against that validator's public key share and the payload
//! the leader's own replica decided, and combine t+1 of them into the
//! certificate it proposes as a `CertificateIssued` entry.
//!
//! Bounded: shares are kept only for a window of sequences above the lowest
//! pending one, at most one per validator and sequence (a later share from
//! the same validator replaces the earlier one), and everything is dropped
//! when this node stops leading (a new leader collects again: validators
//! re-send, and BLS shares are deterministic).

use std::collections::BTreeMap;
use std::time::Duration;

// The runtime's clock, not the OS's: a simulation drives time.
use tokio::time::Instant;

use neuroshard_certificate::{
    signing_message, Envelope, PublicKeySet, ShareIndex, SignatureShare, ThresholdScheme,
};
use neuroshard_governance::certificate::CertificateShare;
use neuroshard_governance::{IssuedCertificate, PendingCertificate};

/// Sequences above the lowest pending one for which shares are kept.
pub const MAX_COLLECT_WINDOW: u64 = 64;

/// Why a share was not kept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShareRefusal {
    #[error("validator {from} is not in the committee of {n}")]
    UnknownValidator { from: u64, n: u32 },
    #[error("share for certificate {sequence} is outside the collection window {low}..{high}")]
    OutsideWindow { sequence: u64, low: u64, high: u64 },
    #[error("validator {from} signed payload {found} for certificate {sequence}, but this replica decided payload {expected}")]
    OtherPayload {
        from: u32,
        sequence: u64,
        found: String,
        expected: String,
    },
    #[error("share of validator {from} for certificate {sequence} does not verify: {message}")]
    Invalid {
        from: u32,
        sequence: u64,
        message: String,
    },
}

impl ShareRefusal {
    /// The validator whose share it was, for the `peer` field.
    pub fn peer(&self) -> u64 {
        match self {
            ShareRefusal::UnknownValidator { from, .. } => *from,
            ShareRefusal::OtherPayload { from, .. } | ShareRefusal::Invalid { from, .. } => {
                u64::from(*from)
            }
            ShareRefusal::OutsideWindow { .. } => u64::MAX,
        }
    }

    /// The certificate's sequence, for the `sequence` field.
    pub fn sequence(&self) -> Option<u64> {
        match self {
            ShareRefusal::UnknownValidator { .. } => None,
            ShareRefusal::OutsideWindow { sequence, .. }
            | ShareRefusal::OtherPayload { sequence, .. }
            | ShareRefusal::Invalid { sequence, .. } => Some(*sequence),
        }
    }

    /// A bounded name for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ShareRefusal::UnknownValidator { .. } => "unknown_validator",
            ShareRefusal::OutsideWindow { .. } => "outside_window",
            ShareRefusal::OtherPayload { .. } => "other_payload",
            ShareRefusal::Invalid { .. } => "invalid",
        }
    }
}

#[derive(Default)]
struct Collection {
    /// Received, not yet checked against the payload (it may arrive before
    /// this replica has applied the deciding entry).
    unverified: BTreeMap<u32, ([u8; 32], Vec<u8>)>,
    verified: BTreeMap<u32, SignatureShare>,
    proposed_at: Option<Instant>,
}

pub struct Collector {
    keys: PublicKeySet,
    scheme: &'static dyn ThresholdScheme,
    epoch: u64,
    /// t + 1.
    needed: usize,
    n: u32,
    collections: BTreeMap<u64, Collection>,
    /// How long a proposed certificate may stay uncommitted before it is
    /// proposed again.
    repropose_after: Duration,
}

impl Collector {
    pub fn new(keys: PublicKeySet, epoch: u64, repropose_after: Duration) -> Self {
        let scheme = keys.scheme().scheme();
        Self {
            needed: keys.threshold() as usize + 1,
            n: keys.size(),
            keys,
            scheme,
            epoch,
            collections: BTreeMap::new(),
            repropose_after,
        }
    }

    /// Keeps a received share for later verification. `low` is the lowest
    /// sequence this replica knows to be pending (or the next to be
    /// decided).
    pub fn receive(
        &mut self,
        from: u64,
        sequence: u64,
        payload_sha256: [u8; 32],
        share: Vec<u8>,
        low: u64,
    ) -> Result<(), ShareRefusal> {
        let index = u32::try_from(from)
            .ok()
            .filter(|i| *i < self.n)
            .ok_or(ShareRefusal::UnknownValidator { from, n: self.n })?;
        let high = low.saturating_add(MAX_COLLECT_WINDOW);
        if sequence < low || sequence >= high {
            return Err(ShareRefusal::OutsideWindow {
                sequence,
                low,
                high,
            });
        }
        let c = self.collections.entry(sequence).or_default();
        if !c.verified.contains_key(&index) {
            c.unverified.insert(index, (payload_sha256, share));
        }
        Ok(())
    }

    /// Verifies what arrived for `pending` and, once t+1 valid shares are
    /// there and no proposal is in flight, combines them. Returns the
    /// certificate to propose and the refused shares (to log).
    pub fn ready(
        &mut self,
        pending: &PendingCertificate,
        payload_sha256: [u8; 32],
        now: Instant,
    ) -> (Option<IssuedCertificate>, Vec<ShareRefusal>) {
        let mut refused = Vec::new();
        let Some(c) = self.collections.get_mut(&pending.sequence) else {
            return (None, refused);
        };
        if !c.unverified.is_empty() {
            let message = signing_message(&pending.payload);
            let mut parsed = Vec::new();
            for (from, (hash, bytes)) in std::mem::take(&mut c.unverified) {
                if hash != payload_sha256 {
                    refused.push(ShareRefusal::OtherPayload {
                        from,
                        sequence: pending.sequence,
                        found: hex::encode(hash),
                        expected: hex::encode(payload_sha256),
                    });
                    continue;
                }
                match self.scheme.signature_share_from_bytes(&bytes) {
                    Ok(share) => parsed.push((ShareIndex(from), share)),
                    Err(e) => refused.push(ShareRefusal::Invalid {
                        from,
                        sequence: pending.sequence,
                        message: e.to_string(),
                    }),
                }
            }
            // Checked together (one pairing check for all of them); only
            // if that fails, one by one to refuse the invalid ones by name.
            let together: Vec<(ShareIndex, &SignatureShare)> =
                parsed.iter().map(|(i, s)| (*i, s)).collect();
            let all_valid = self
                .scheme
                .verify_shares(&self.keys, &together, &message)
                .is_ok();
            for (index, share) in parsed {
                let checked = if all_valid {
                    Ok(())
                } else {
                    self.scheme
                        .verify_share(&self.keys, index, &share, &message)
                };
                match checked {
                    Ok(()) => {
                        c.verified.insert(index.0, share);
                    }
                    Err(e) => refused.push(ShareRefusal::Invalid {
                        from: index.0,
                        sequence: pending.sequence,
                        message: e.to_string(),
                    }),
                }
            }
        }
        // In validator order, however they were found out.
        refused.sort_by_key(|r| match r {
            ShareRefusal::OtherPayload { from, .. } | ShareRefusal::Invalid { from, .. } => *from,
            _ => u32::MAX,
        });
        if c.verified.len() < self.needed {
            return (None, refused);
        }
        if c.proposed_at
            .is_some_and(|at| now.duration_since(at) < self.repropose_after)
        {
            return (None, refused);
        }
        // The t+1 lowest indices: any t+1 valid shares give the same
        // signature, so every leader combines the same set when it can.
        let shares: Vec<(ShareIndex, SignatureShare)> = c
            .verified
            .iter()
            .take(self.needed)
            .map(|(i, s)| (ShareIndex(*i), s.clone()))
            .collect();
        // Each was verified above (together with the others): combined
        // without checking them again. The proposal's own check
        // (`issuance::Offers::run`, before it is offered and proposed) and
        // every follower's verify the result.
        match Envelope::combine_verified(&self.keys, &shares, pending.payload.clone(), self.epoch) {
            Ok(envelope) => {
                c.proposed_at = Some(now);
                let shares = shares
                    .iter()
                    .map(|(i, s)| CertificateShare {
                        validator: i.0,
                        share: s.to_bytes().to_vec(),
                    })
                    .collect();
                (
                    Some(IssuedCertificate {
                        sequence: pending.sequence,
                        envelope,
                        shares,
                    }),
                    refused,
                )
            }
            Err(e) => {
                // Every share was verified, so this is a bug in the scheme
                // backend; keep the shares and report.
                refused.push(ShareRefusal::Invalid {
                    from: shares.first().map_or(0, |(i, _)| i.0),
                    sequence: pending.sequence,
                    message: format!("combining verified shares failed: {e}"),
                });
                (None, refused)
            }
        }
    }

    /// The proposal of `sequence` did not commit: it may be proposed again.
    pub fn proposal_failed(&mut self, sequence: u64) {
        if let Some(c) = self.collections.get_mut(&sequence) {
            c.proposed_at = None;
        }
    }

    /// Drops collections of certificates that are no longer pending and lie
    /// below `low` (issued); keeps early shares above it.
    pub fn retain(&mut self, low: u64, pending: &[u64]) {
        let highest_pending = pending.last().copied();
        self.collections.retain(|seq, _| {
            *seq >= low
                && (pending.binary_search(seq).is_ok() || highest_pending.is_none_or(|h| *seq > h))
        });
    }

    /// This node no longer leads: everything collected is dropped.
    pub fn clear(&mut self) {
        self.collections.clear();
    }

    /// Shares held (for tests and status).
    pub fn held(&self) -> usize {
        self.collections
            .values()
            .map(|c| c.unverified.len() + c.verified.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use neuroshard_certificate::{SchemeId, Verifier};
    use neuroshard_governance::Timestamp;

    fn setup() -> (
        neuroshard_certificate::DealtKeys,
        Collector,
        PendingCertificate,
    ) {
        let dealt = SchemeId::G2Rfc9380
            .scheme()
            .deal(2, 4, &[3; 32])
            .expect("deal");
        let collector = Collector::new(dealt.public_key_set.clone(), 1, Duration::from_secs(5));
        let pending = PendingCertificate {
            sequence: 1,
            payload: b"the payload".to_vec(),
            decision_time_ms: Timestamp(1),
        };
        (dealt, collector, pending)
    }

    fn share(dealt: &neuroshard_certificate::DealtKeys, i: usize, payload: &[u8]) -> Vec<u8> {
        SchemeId::G2Rfc9380
            .scheme()
            .sign_share(&dealt.secret_key_shares[i], &signing_message(payload))
            .expect("sign")
            .to_bytes()
            .to_vec()
    }

    #[test]
    fn combines_t_plus_one_verified_shares_once() {
        let (dealt, mut c, pending) = setup();
        let hash = neuroshard_certificate::payload_hash(&pending.payload);
        let now = Instant::now();
        for i in [3u64, 1] {
            c.receive(i, 1, hash, share(&dealt, i as usize, &pending.payload), 1)
                .expect("kept");
        }
        let (cert, refused) = c.ready(&pending, hash, now);
        assert!(cert.is_none() && refused.is_empty(), "two of three shares");
        // A repeated share of validator 1 does not count twice.
        c.receive(1, 1, hash, share(&dealt, 1, &pending.payload), 1)
            .expect("kept");
        assert!(c.ready(&pending, hash, now).0.is_none());
        c.receive(0, 1, hash, share(&dealt, 0, &pending.payload), 1)
            .expect("kept");
        let (cert, refused) = c.ready(&pending, hash, now);
        let cert = cert.expect("three shares combine");
        assert!(refused.is_empty());
        assert_eq!(
            cert.shares.iter().map(|s| s.validator).collect::<Vec<_>>(),
            vec![0, 1, 3]
        );
        let info = neuroshard_certificate::CommitteeInfo {
            chain_id: "c".into(),
            scheme: SchemeId::G2Rfc9380,
            group_public_key: dealt.public_key_set.group_public_key().to_bytes(),
            t: 2,
            n: 4,
            epoch: 1,
            genesis_time_ms: 0,
            validator_set_hash: [0; 32],
        };
        let verifier = Verifier::new(info).expect("committee");
        let sig = SchemeId::G2Rfc9380
            .scheme()
            .signature_from_bytes(&cert.envelope.signature)
            .expect("signature");
        SchemeId::G2Rfc9380
            .scheme()
            .verify(
                verifier.committee().group_key().as_ref().expect("key"),
                &cert.envelope.signed_bytes(),
                &sig,
            )
            .expect("the combined signature verifies under the group key");
        // In flight: not proposed again until it fails or the retry time passes.
        assert!(c.ready(&pending, hash, now).0.is_none());
        c.proposal_failed(1);
        assert!(c.ready(&pending, hash, now).0.is_some());
        assert!(c
            .ready(&pending, hash, now + Duration::from_secs(6))
            .0
            .is_some());
    }

    #[test]
    fn refuses_strangers_far_sequences_other_payloads_and_bad_shares() {
        let (dealt, mut c, pending) = setup();
        let hash = neuroshard_certificate::payload_hash(&pending.payload);
        assert_eq!(
            c.receive(4, 1, hash, vec![0; 96], 1),
            Err(ShareRefusal::UnknownValidator { from: 4, n: 4 })
        );
        assert!(matches!(
            c.receive(0, 1 + MAX_COLLECT_WINDOW, hash, vec![0; 96], 1),
            Err(ShareRefusal::OutsideWindow { .. })
        ));
        c.receive(0, 1, [9; 32], share(&dealt, 0, b"another payload"), 1)
            .expect("kept until checked");
        c.receive(1, 1, hash, share(&dealt, 2, &pending.payload), 1)
            .expect("kept until checked");
        c.receive(2, 1, hash, vec![1; 96], 1)
            .expect("kept until checked");
        let (cert, refused) = c.ready(&pending, hash, Instant::now());
        assert!(cert.is_none());
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(matches!(
            refused[0],
            ShareRefusal::OtherPayload { from: 0, .. }
        ));
        assert!(matches!(refused[1], ShareRefusal::Invalid { from: 1, .. }));
        assert!(matches!(refused[2], ShareRefusal::Invalid { from: 2, .. }));
        assert_eq!(c.held(), 0);
    }
}
