//! Every validator's side of issuance: sign the payload its own replica
//! decided, with its BLS key share, unless the decision's committed time
//! runs ahead of this validator's clock by more than `gov.max_clock_skew_ms`.
//!
//! A refusal is not final: the certificate stays pending and is looked at
//! again, so a validator signs once its clock has caught up. A light node
//! therefore never sees a certificate whose decision time lies more than the
//! skew bound in the future of the validators that signed it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

// The runtime's clock, not the OS's: a simulation drives time.
use tokio::time::Instant;

use neuroshard_certificate::{signing_message, SecretKeyShare};
use neuroshard_governance::PendingCertificate;

use crate::clock::Clock;
use crate::types::NodeId;

/// Signed shares kept for re-sending (one per pending certificate).
pub const MAX_SIGNED_SHARES: usize = 256;

/// This validator's share on one pending certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnShare {
    pub sequence: u64,
    pub payload_sha256: [u8; 32],
    /// 96-byte compressed G2 point.
    pub share: Vec<u8>,
}

/// Why this validator does not sign (yet).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignRefusal {
    #[error("certificate {sequence}: its decision time {decision_ms} ms is {ahead_ms} ms ahead of this validator's clock ({now_ms} ms), more than gov.max_clock_skew_ms = {max_skew_ms}; signing when the clock catches up")]
    ClockSkew {
        sequence: u64,
        decision_ms: u64,
        now_ms: u64,
        ahead_ms: u64,
        max_skew_ms: u64,
    },
    #[error(
        "certificate {sequence}: {MAX_SIGNED_SHARES} shares are already kept (MAX_SIGNED_SHARES)"
    )]
    TooManyPending { sequence: u64 },
    #[error("certificate {sequence}: signing failed: {message}")]
    Scheme { sequence: u64, message: String },
}

/// The skew rule on its own: refuse when `decision_ms` is more than
/// `max_skew_ms` ahead of `now_ms`.
pub fn check_skew(
    sequence: u64,
    decision_ms: u64,
    now_ms: u64,
    max_skew_ms: u64,
) -> Result<(), SignRefusal> {
    let ahead_ms = decision_ms.saturating_sub(now_ms);
    if ahead_ms > max_skew_ms {
        return Err(SignRefusal::ClockSkew {
            sequence,
            decision_ms,
            now_ms,
            ahead_ms,
            max_skew_ms,
        });
    }
    Ok(())
}

/// Where and when a share was last sent.
#[derive(Clone, Copy, Debug)]
struct Sent {
    to: NodeId,
    at: Instant,
}

pub struct Signer {
    key: SecretKeyShare,
    clock: Arc<dyn Clock>,
    /// BLS shares are deterministic, so a share is computed once and re-sent
    /// as it is (to a new leader, or after `resend_every`).
    signed: BTreeMap<u64, (OwnShare, Option<Sent>)>,
    resend_every: Duration,
}

impl Signer {
    pub fn new(key: SecretKeyShare, clock: Arc<dyn Clock>, resend_every: Duration) -> Self {
        Self {
            key,
            clock,
            signed: BTreeMap::new(),
            resend_every,
        }
    }

    /// This validator's share on `pending`, signing it on first use.
    pub fn share_for(
        &mut self,
        pending: &PendingCertificate,
        payload_sha256: [u8; 32],
        max_skew_ms: u64,
    ) -> Result<OwnShare, SignRefusal> {
        let sequence = pending.sequence;
        if let Some((share, _)) = self.signed.get(&sequence) {
            if share.payload_sha256 == payload_sha256 {
                return Ok(share.clone());
            }
        }
        check_skew(
            sequence,
            pending.decision_time_ms.0,
            self.clock.now_ms(),
            max_skew_ms,
        )?;
        if self.signed.len() >= MAX_SIGNED_SHARES && !self.signed.contains_key(&sequence) {
            return Err(SignRefusal::TooManyPending { sequence });
        }
        let scheme = self.key.scheme().scheme();
        let share = scheme
            .sign_share(&self.key, &signing_message(&pending.payload))
            .map_err(|e| SignRefusal::Scheme {
                sequence,
                message: e.to_string(),
            })?;
        let own = OwnShare {
            sequence,
            payload_sha256,
            share: share.to_bytes().to_vec(),
        };
        self.signed.insert(sequence, (own.clone(), None));
        Ok(own)
    }

    /// Whether the share of `sequence` should go to `leader` now: never
    /// sent, sent to another leader, or last sent `resend_every` ago.
    pub fn due(&self, sequence: u64, leader: NodeId, now: Instant) -> bool {
        match self.signed.get(&sequence) {
            Some((_, None)) => true,
            Some((_, Some(sent))) => {
                sent.to != leader || now.duration_since(sent.at) >= self.resend_every
            }
            None => false,
        }
    }

    pub fn mark_sent(&mut self, sequence: u64, leader: NodeId, now: Instant) {
        if let Some((_, sent)) = self.signed.get_mut(&sequence) {
            *sent = Some(Sent {
                to: leader,
                at: now,
            });
        }
    }

    /// Forgets shares of certificates that are no longer pending.
    pub fn retain_pending(&mut self, pending: &[u64]) {
        self.signed
            .retain(|seq, _| pending.binary_search(seq).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_within_the_bound_is_signed_and_beyond_it_refused() {
        let cases = [
            // (decision, now, max skew, signs)
            (1_000, 1_000, 0, true),
            (1_000, 5_000, 0, true),
            (31_000, 1_000, 30_000, true),
            (31_001, 1_000, 30_000, false),
            (u64::MAX, 0, 30_000, false),
        ];
        for (decision, now, max, signs) in cases {
            let got = check_skew(7, decision, now, max);
            assert_eq!(
                got.is_ok(),
                signs,
                "decision {decision} now {now} max {max}"
            );
            if let Err(SignRefusal::ClockSkew { ahead_ms, .. }) = got {
                assert_eq!(ahead_ms, decision - now);
            }
        }
    }

    struct FixedClock(u64);
    impl Clock for FixedClock {
        fn now_ms(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn shares_are_signed_once_and_resent_on_leader_change_or_after_the_interval() {
        let dealt = neuroshard_certificate::SchemeId::G2Rfc9380
            .scheme()
            .deal(1, 3, &[9; 32])
            .expect("deal");
        let mut signer = Signer::new(
            dealt.secret_key_shares[0].clone(),
            Arc::new(FixedClock(10_000)),
            Duration::from_secs(1),
        );
        let pending = PendingCertificate {
            sequence: 1,
            payload: b"payload".to_vec(),
            decision_time_ms: neuroshard_governance::Timestamp(10_000),
        };
        let a = signer.share_for(&pending, [1; 32], 0).expect("signs");
        let b = signer.share_for(&pending, [1; 32], 0).expect("cached");
        assert_eq!(a, b);
        let t0 = Instant::now();
        assert!(signer.due(1, 2, t0));
        signer.mark_sent(1, 2, t0);
        assert!(!signer.due(1, 2, t0 + Duration::from_millis(10)));
        assert!(signer.due(1, 3, t0), "a new leader gets the share at once");
        assert!(signer.due(1, 2, t0 + Duration::from_secs(1)));
        signer.retain_pending(&[]);
        assert!(!signer.due(1, 2, t0), "an issued certificate is not resent");

        let future = PendingCertificate {
            decision_time_ms: neuroshard_governance::Timestamp(50_001),
            ..pending
        };
        assert!(matches!(
            signer.share_for(&future, [2; 32], 40_000),
            Err(SignRefusal::ClockSkew {
                ahead_ms: 40_001,
                ..
            })
        ));
    }
}
