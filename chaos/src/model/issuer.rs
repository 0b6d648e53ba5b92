//! Certificate issuance as the node does it: every validator signs the
//! payload its own replica derived, the leader checks each share against
//! its own payload and that validator's public key share, combines t+1,
//! and proposes `CertificateIssued` with the shares attached.

use std::collections::BTreeSet;

use neuroshard_certificate::scheme::{DealtKeys, ThresholdScheme};
use neuroshard_certificate::{signing_message, Envelope, ShareIndex, SignatureShare};
use neuroshard_governance::certificate::{CertificateShare, IssuedCertificate};

use super::replica::Replica;
use super::ModelError;

/// The committee's epoch in the test genesis.
const COMMITTEE_EPOCH: u64 = 1;

pub struct Issuer {
    keys: DealtKeys,
    /// Sequences already proposed. The model never loses a proposal; one
    /// that is refused when applied stays unissued, which liveness reports.
    proposed: BTreeSet<u64>,
}

impl Issuer {
    pub fn new(keys: DealtKeys) -> Self {
        Self {
            keys,
            proposed: BTreeSet::new(),
        }
    }

    pub fn scheme(&self) -> &'static dyn ThresholdScheme {
        self.keys.public_key_set.scheme().scheme()
    }

    /// The next certificate the leader can issue now, if t+1 validators
    /// whose replicas are up have decided it with the leader's payload.
    pub fn next(
        &mut self,
        leader: &Replica,
        replicas: &[Replica],
    ) -> Result<Option<IssuedCertificate>, ModelError> {
        let Some(pending) = leader
            .state
            .pending_certificates()
            .into_iter()
            .find(|p| !self.proposed.contains(&p.sequence))
        else {
            return Ok(None);
        };
        let scheme = self.scheme();
        let keys = &self.keys.public_key_set;
        let needed = keys.threshold() as usize + 1;
        let leader_message = signing_message(&pending.payload);
        let mut shares: Vec<(ShareIndex, SignatureShare)> = Vec::new();
        for r in replicas.iter().filter(|r| r.up) {
            // An honest validator signs only what its own replica derived.
            let Some(own) = r.state.certificate(pending.sequence) else {
                continue;
            };
            let secret = self
                .keys
                .secret_key_shares
                .get(r.id as usize)
                .ok_or(ModelError::NoKeyShare { validator: r.id })?;
            let share = scheme.sign_share(secret, &signing_message(&own.payload))?;
            let index = ShareIndex(r.id);
            // The leader keeps only shares on its own payload.
            if scheme
                .verify_share(keys, index, &share, &leader_message)
                .is_ok()
            {
                shares.push((index, share));
            }
            if shares.len() == needed {
                break;
            }
        }
        if shares.len() < needed {
            return Ok(None);
        }
        let envelope = Envelope::combine(keys, &shares, pending.payload, COMMITTEE_EPOCH)?;
        self.proposed.insert(pending.sequence);
        Ok(Some(IssuedCertificate {
            sequence: pending.sequence,
            envelope,
            shares: shares
                .iter()
                .map(|(i, s)| CertificateShare {
                    validator: i.0,
                    share: s.to_bytes().to_vec(),
                })
                .collect(),
        }))
    }
}
