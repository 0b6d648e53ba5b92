//! The light-node verifier (DESIGN §5): trusts only the committee info it
//! was pinned with.
//!
//! `verify` checks, in this order, and stops at the first failure:
//! payload size, payload type, scheme, committee epoch, payload decoding,
//! the payload's committee hash, its chain id, and finally the threshold
//! signature over `PAE(payload_type, payload)` with the group key. The cheap
//! checks go first so a certificate meant for another chain or committee is
//! refused without a pairing, and with the reason that names it.

use crate::committee::{CommitteeError, CommitteeInfo};
use crate::envelope::{decode_payload, Envelope, EnvelopeError, PAYLOAD_TYPE};
use crate::merkle::Hash;
use crate::proto::CertificatePayload;
use crate::scheme::{GroupPublicKey, SchemeError, SchemeId, Signature, ThresholdScheme};

/// Why a certificate is refused. [`VerifyError::outcome`] gives the short
/// name the test vectors use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("payload is {len} bytes, more than the {max} allowed")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("payload type is {found:?}, expected {PAYLOAD_TYPE:?}")]
    WrongPayloadType { found: String },
    #[error("certificate is signed with scheme {found:?}, the pinned committee uses {expected}")]
    WrongScheme { expected: SchemeId, found: String },
    #[error("certificate names committee epoch {found}, the pinned committee is epoch {expected}")]
    WrongEpoch { expected: u64, found: u64 },
    #[error("certificate payload cannot be decoded: {0}")]
    BadPayload(EnvelopeError),
    #[error("payload names committee hash {found}, the pinned committee's is {expected}")]
    WrongCommittee { expected: String, found: String },
    #[error("payload is for chain {found:?}, the pinned committee's chain is {expected:?}")]
    WrongChain { expected: String, found: String },
    #[error("signature bytes are not a valid signature: {0}")]
    MalformedSignature(SchemeError),
    #[error("the signature does not verify under the pinned committee's group public key")]
    BadSignature,
}

impl VerifyError {
    /// The vector outcome name of this refusal.
    pub fn outcome(&self) -> &'static str {
        match self {
            VerifyError::PayloadTooLarge { .. } => "payload-too-large",
            VerifyError::WrongPayloadType { .. } => "wrong-payload-type",
            VerifyError::WrongScheme { .. } => "wrong-scheme",
            VerifyError::WrongEpoch { .. } | VerifyError::WrongCommittee { .. } => {
                "wrong-committee"
            }
            VerifyError::BadPayload(_) => "bad-payload",
            VerifyError::WrongChain { .. } => "wrong-chain",
            VerifyError::MalformedSignature(_) | VerifyError::BadSignature => "bad-signature",
        }
    }
}

/// A certificate that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCertificate {
    pub payload: CertificatePayload,
    /// SHA-256 of the payload bytes (the next certificate's previous hash).
    pub payload_hash: Hash,
}

/// Verifies certificates against one pinned committee.
#[derive(Debug, Clone)]
pub struct Verifier {
    committee: CommitteeInfo,
    committee_hash: Hash,
    group_key: GroupPublicKey,
}

/// What [`Verifier::check_unsigned`] hands to signature verification.
pub(crate) struct Unsigned {
    pub(crate) payload: CertificatePayload,
    pub(crate) signature: Signature,
    pub(crate) signed_bytes: Vec<u8>,
}

impl Verifier {
    /// Pins `committee` (validated: chain id, `t < n`, a valid group key).
    pub fn new(committee: CommitteeInfo) -> Result<Self, CommitteeError> {
        let group_key = committee.group_key()?;
        Ok(Self {
            committee_hash: committee.committee_hash(),
            committee,
            group_key,
        })
    }

    pub fn committee(&self) -> &CommitteeInfo {
        &self.committee
    }

    pub fn committee_hash(&self) -> Hash {
        self.committee_hash
    }

    pub(crate) fn scheme(&self) -> &'static dyn ThresholdScheme {
        self.committee.scheme.scheme()
    }

    pub(crate) fn group_key(&self) -> &GroupPublicKey {
        &self.group_key
    }

    /// Verifies one certificate and returns its decoded payload.
    pub fn verify(&self, envelope: &Envelope) -> Result<VerifiedCertificate, VerifyError> {
        let unsigned = self.check_unsigned(envelope)?;
        self.scheme()
            .verify(&self.group_key, &unsigned.signed_bytes, &unsigned.signature)
            .map_err(|_| VerifyError::BadSignature)?;
        Ok(VerifiedCertificate {
            payload: unsigned.payload,
            payload_hash: envelope.payload_hash(),
        })
    }

    /// [`Self::verify`], and the threshold shares the signature was
    /// combined from (`keys`: the committee's public key set), with one
    /// pairing check for the signature and every share on the default
    /// scheme. The outer error is the envelope's (as [`Self::verify`]
    /// gives it, `BadSignature` included); the inner one names the first
    /// invalid share.
    pub fn verify_with_shares(
        &self,
        envelope: &Envelope,
        keys: &crate::scheme::PublicKeySet,
        shares: &[(crate::scheme::ShareIndex, &crate::scheme::SignatureShare)],
    ) -> Result<Result<VerifiedCertificate, crate::scheme::SchemeError>, VerifyError> {
        let unsigned = self.check_unsigned(envelope)?;
        if keys.group_public_key().to_bytes() != self.group_key.to_bytes() {
            return Ok(Err(crate::scheme::SchemeError::BadEncoding {
                what: "public key set of another committee",
            }));
        }
        match self.scheme().verify_signature_and_shares(
            keys,
            &unsigned.signature,
            shares,
            &unsigned.signed_bytes,
        ) {
            Ok(()) => Ok(Ok(VerifiedCertificate {
                payload: unsigned.payload,
                payload_hash: envelope.payload_hash(),
            })),
            Err(crate::scheme::SchemeError::BadSignature) => Err(VerifyError::BadSignature),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Every check but the pairing; returns what the pairing needs.
    pub(crate) fn check_unsigned(&self, envelope: &Envelope) -> Result<Unsigned, VerifyError> {
        let max = crate::envelope::MAX_PAYLOAD_BYTES;
        if envelope.payload.len() > max {
            return Err(VerifyError::PayloadTooLarge {
                len: envelope.payload.len(),
                max,
            });
        }
        if envelope.payload_type != PAYLOAD_TYPE {
            return Err(VerifyError::WrongPayloadType {
                found: envelope.payload_type.chars().take(128).collect(),
            });
        }
        if envelope.scheme != self.committee.scheme.as_str() {
            return Err(VerifyError::WrongScheme {
                expected: self.committee.scheme,
                found: envelope.scheme.chars().take(64).collect(),
            });
        }
        if envelope.committee_epoch != self.committee.epoch {
            return Err(VerifyError::WrongEpoch {
                expected: self.committee.epoch,
                found: envelope.committee_epoch,
            });
        }
        let payload = decode_payload(&envelope.payload).map_err(VerifyError::BadPayload)?;
        if payload.committee_hash.as_slice() != self.committee_hash.as_slice() {
            return Err(VerifyError::WrongCommittee {
                expected: hex::encode(self.committee_hash),
                found: hex::encode(&payload.committee_hash),
            });
        }
        if payload.chain_id != self.committee.chain_id {
            return Err(VerifyError::WrongChain {
                expected: self.committee.chain_id.clone(),
                found: payload.chain_id.chars().take(128).collect(),
            });
        }
        let signature = self
            .scheme()
            .signature_from_bytes(&envelope.signature)
            .map_err(VerifyError::MalformedSignature)?;
        Ok(Unsigned {
            payload,
            signature,
            signed_bytes: envelope.signed_bytes(),
        })
    }
}
