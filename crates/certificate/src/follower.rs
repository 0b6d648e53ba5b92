//! A light node following the certificate log (DESIGN §5).
//!
//! The follower accepts certificates strictly in sequence order (gap-free
//! from 1), each naming the SHA-256 of the previous one's payload, and keeps
//! what a light node needs to answer "which parameters and which protocol
//! version are active at height h".
//!
//! Rules, as the governance state machine issues certificates:
//!
//! * ACTIVATION and REVOCATION are *effects*: their parameter changes
//!   (`key := new_value`; a revocation's changes restore the old values) and
//!   their `version_after` take effect at their `activation_height`.
//!   Effects take effect in sequence order, so the follower refuses an
//!   effect whose activation time or height is earlier than that of an
//!   earlier effect still standing.
//! * CANCELLATION removes a pending ACTIVATION of the same NEP with the same
//!   activation time, decided before that time; it never takes effect itself.
//! * Versions chain: every certificate's `version_before` is the previous
//!   certificate's `version_after` (the genesis version for sequence 1).
//!
//! Refusals: a gap, a replay (a sequence already accepted, same payload), a
//! fork (a sequence already accepted, other payload, or a broken hash link),
//! and anything the pinned [`Verifier`] refuses — including a certificate of
//! another committee or chain.

use std::collections::BTreeMap;

use crate::chain::ChainError;
use crate::envelope::Envelope;
use crate::merkle::Hash;
use crate::proto::{CertificateKind, CertificatePayload, ParameterValue, ProtocolVersion};
use crate::verifier::{VerifiedCertificate, Verifier, VerifyError};

/// Most certificates one follower keeps (their payload hashes, 32 bytes each,
/// detect forks and replays of any earlier sequence).
pub const MAX_FOLLOWED_CERTIFICATES: usize = 1_000_000;

/// Why the follower refuses a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("certificates in a run: {0}")]
    Chain(#[from] ChainError),
    #[error("certificate sequence {found} leaves a gap: expected {expected}")]
    Gap { expected: u64, found: u64 },
    #[error("certificate sequence {sequence} was already accepted with this payload (replay)")]
    Replay { sequence: u64 },
    #[error("certificate sequence {sequence} conflicts with the one already accepted (fork)")]
    Fork { sequence: u64 },
    #[error("certificate sequence {sequence} names previous payload hash {found}, but sequence {} has hash {expected} (fork)", sequence - 1)]
    BrokenLink {
        sequence: u64,
        expected: String,
        found: String,
    },
    #[error("certificate sequence {sequence} has version_before {found}, but the certified version is {expected}")]
    VersionMismatch {
        sequence: u64,
        expected: String,
        found: String,
    },
    #[error("certificate sequence {sequence} takes effect at {activation_time_ms} ms / height {activation_height}, before an earlier standing effect ({previous_time_ms} ms / height {previous_height})")]
    OutOfOrderActivation {
        sequence: u64,
        activation_time_ms: u64,
        activation_height: u64,
        previous_time_ms: u64,
        previous_height: u64,
    },
    #[error("cancellation sequence {sequence} names NEP {nep_id} at {activation_time_ms} ms, which has no pending activation then")]
    CancelsNothing {
        sequence: u64,
        nep_id: u64,
        activation_time_ms: u64,
    },
    #[error("certificate sequence {sequence} has kind {kind}, which is not ACTIVATION, CANCELLATION or REVOCATION")]
    UnknownKind { sequence: u64, kind: i32 },
    #[error("certificate sequence {sequence} changes {key:?} without a new value")]
    MissingValue { sequence: u64, key: String },
    #[error("the follower already holds {max} certificates")]
    Full { max: usize },
}

/// One standing effect (an ACTIVATION not cancelled, or a REVOCATION).
#[derive(Debug, Clone, PartialEq)]
struct Effect {
    sequence: u64,
    nep_id: u64,
    kind: CertificateKind,
    activation_time_ms: u64,
    activation_height: u64,
    decision_time_ms: u64,
    changes: Vec<(String, ParameterValue)>,
    version_after: ProtocolVersion,
}

/// The parameters and protocol version in force at some height.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveState {
    pub parameters: BTreeMap<String, ParameterValue>,
    pub version: ProtocolVersion,
}

/// Follows one committee's certificate log.
#[derive(Debug, Clone)]
pub struct Follower {
    verifier: Verifier,
    genesis: ActiveState,
    /// Payload hash of sequence `i + 1` at index `i`.
    payload_hashes: Vec<Hash>,
    /// Effects in sequence order, cancelled ones removed.
    effects: Vec<Effect>,
    certified_version: ProtocolVersion,
}

fn show(v: &ProtocolVersion) -> String {
    format!("{}.{}", v.major, v.minor)
}

impl Follower {
    /// Starts at genesis: the parameters and version genesis sets, nothing accepted.
    pub fn new(
        verifier: Verifier,
        genesis_parameters: BTreeMap<String, ParameterValue>,
        genesis_version: ProtocolVersion,
    ) -> Self {
        Self {
            verifier,
            genesis: ActiveState {
                parameters: genesis_parameters,
                version: genesis_version,
            },
            payload_hashes: Vec::new(),
            effects: Vec::new(),
            certified_version: genesis_version,
        }
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The sequence the next certificate must have.
    pub fn next_sequence(&self) -> u64 {
        self.payload_hashes.len() as u64 + 1
    }

    /// Payload hash of the last accepted certificate (zeros before any).
    pub fn last_payload_hash(&self) -> Hash {
        self.payload_hashes.last().copied().unwrap_or([0; 32])
    }

    /// Verifies and accepts the next certificate; returns its payload.
    pub fn accept(&mut self, envelope: &Envelope) -> Result<CertificatePayload, FollowError> {
        // Sequence checks first need the payload, which only a verified
        // certificate may contribute: an unsigned junk certificate is
        // reported as such, never as a fork.
        let verified = self.verifier.verify(envelope)?;
        self.apply(verified)
    }

    /// Verifies a run of certificates with batch verification, then accepts
    /// them in order. Stops at the first refusal; the ones before stay accepted.
    pub fn accept_chain(&mut self, envelopes: &[Envelope]) -> Result<usize, FollowError> {
        let verified = self.verifier.verify_chain(envelopes)?;
        let count = verified.len();
        for v in verified {
            self.apply(v)?;
        }
        Ok(count)
    }

    fn apply(&mut self, verified: VerifiedCertificate) -> Result<CertificatePayload, FollowError> {
        let VerifiedCertificate {
            payload,
            payload_hash,
        } = verified;
        let sequence = payload.sequence;
        let next = self.next_sequence();
        if sequence < next && sequence >= 1 {
            let known = self.payload_hashes[(sequence - 1) as usize];
            return Err(if known == payload_hash {
                FollowError::Replay { sequence }
            } else {
                FollowError::Fork { sequence }
            });
        }
        if sequence != next {
            return Err(FollowError::Gap {
                expected: next,
                found: sequence,
            });
        }
        if self.payload_hashes.len() >= MAX_FOLLOWED_CERTIFICATES {
            return Err(FollowError::Full {
                max: MAX_FOLLOWED_CERTIFICATES,
            });
        }
        let link = self.last_payload_hash();
        if payload.previous_payload_hash != link {
            return Err(FollowError::BrokenLink {
                sequence,
                expected: hex::encode(link),
                found: hex::encode(&payload.previous_payload_hash),
            });
        }
        let before = payload.version_before.unwrap_or_default();
        if before != self.certified_version {
            return Err(FollowError::VersionMismatch {
                sequence,
                expected: show(&self.certified_version),
                found: show(&before),
            });
        }
        let kind =
            CertificateKind::try_from(payload.kind).map_err(|_| FollowError::UnknownKind {
                sequence,
                kind: payload.kind,
            })?;
        match kind {
            CertificateKind::Activation | CertificateKind::Revocation => {
                let effect = self.effect_of(&payload, kind)?;
                self.effects.push(effect);
            }
            CertificateKind::Cancellation => self.cancel(&payload)?,
            CertificateKind::Unspecified => {
                return Err(FollowError::UnknownKind {
                    sequence,
                    kind: payload.kind,
                })
            }
        }
        self.certified_version = payload.version_after.unwrap_or_default();
        self.payload_hashes.push(payload_hash);
        Ok(payload)
    }

    fn effect_of(
        &self,
        payload: &CertificatePayload,
        kind: CertificateKind,
    ) -> Result<Effect, FollowError> {
        let sequence = payload.sequence;
        if let Some(last) = self.effects.last() {
            if payload.activation_time_ms < last.activation_time_ms
                || payload.activation_height < last.activation_height
            {
                return Err(FollowError::OutOfOrderActivation {
                    sequence,
                    activation_time_ms: payload.activation_time_ms,
                    activation_height: payload.activation_height,
                    previous_time_ms: last.activation_time_ms,
                    previous_height: last.activation_height,
                });
            }
        }
        let changes = payload
            .parameter_changes
            .iter()
            .map(|c| {
                c.new_value
                    .clone()
                    .filter(|v| v.value.is_some())
                    .map(|v| (c.key.clone(), v))
                    .ok_or_else(|| FollowError::MissingValue {
                        sequence,
                        key: c.key.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Effect {
            sequence,
            nep_id: payload.nep_id,
            kind,
            activation_time_ms: payload.activation_time_ms,
            activation_height: payload.activation_height,
            decision_time_ms: payload.decision_time_ms,
            changes,
            version_after: payload.version_after.unwrap_or_default(),
        })
    }

    fn cancel(&mut self, payload: &CertificatePayload) -> Result<(), FollowError> {
        let victim = self.effects.iter().position(|e| {
            e.kind == CertificateKind::Activation
                && e.nep_id == payload.nep_id
                && e.activation_time_ms == payload.activation_time_ms
                && payload.decision_time_ms < e.activation_time_ms
        });
        match victim {
            Some(i) => {
                self.effects.remove(i);
                Ok(())
            }
            None => Err(FollowError::CancelsNothing {
                sequence: payload.sequence,
                nep_id: payload.nep_id,
                activation_time_ms: payload.activation_time_ms,
            }),
        }
    }

    /// The parameters and protocol version in force at block `height`:
    /// genesis, then every standing effect with `activation_height <= height`,
    /// in sequence order.
    pub fn active_at(&self, height: u64) -> ActiveState {
        let mut state = self.genesis.clone();
        for effect in self
            .effects
            .iter()
            .take_while(|e| e.activation_height <= height)
        {
            for (key, value) in &effect.changes {
                state.parameters.insert(key.clone(), value.clone());
            }
            state.version = effect.version_after;
        }
        state
    }

    /// One parameter's value at `height` (`None` if genesis never set it
    /// and no effect did).
    pub fn parameter_at(&self, key: &str, height: u64) -> Option<ParameterValue> {
        let mut value = self.genesis.parameters.get(key).cloned();
        for effect in self
            .effects
            .iter()
            .take_while(|e| e.activation_height <= height)
        {
            if let Some((_, v)) = effect.changes.iter().find(|(k, _)| k == key) {
                value = Some(v.clone());
            }
        }
        value
    }

    /// The protocol version at `height`.
    pub fn version_at(&self, height: u64) -> ProtocolVersion {
        self.effects
            .iter()
            .take_while(|e| e.activation_height <= height)
            .last()
            .map_or(self.genesis.version, |e| e.version_after)
    }

    /// Sequence numbers of the standing effects still pending at `height`
    /// (decided, not yet in force), in the order they will take effect.
    pub fn pending_at(&self, height: u64) -> Vec<u64> {
        self.effects
            .iter()
            .filter(|e| e.activation_height > height)
            .map(|e| e.sequence)
            .collect()
    }
}
