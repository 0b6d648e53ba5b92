//! Everything a light node needs to trust a NeuroShard governance certificate,
//! and nothing more: no tokio, no crate of this workspace.

pub mod chain;
pub mod committee;
pub mod envelope;
pub mod follower;
pub mod merkle;
mod parallel;
pub mod proto;
pub mod scheme;
pub mod verifier;

pub use chain::{ChainError, MAX_CHAIN_CERTIFICATES};
pub use committee::{CommitteeError, CommitteeInfo};
pub use envelope::{
    decode_payload, encode_payload, pae, payload_hash, signing_message, Envelope, EnvelopeError,
    MAX_PAYLOAD_BYTES, PAYLOAD_TYPE,
};
pub use follower::{ActiveState, FollowError, Follower, MAX_FOLLOWED_CERTIFICATES};
pub use parallel::MAX_VERIFY_THREADS;
pub use scheme::{
    scheme_by_id, DealtKeys, GroupPublicKey, PublicKeySet, SchemeError, SchemeId, SecretKeyShare,
    ShareIndex, Signature, SignatureShare, ThresholdScheme,
};
pub use verifier::{VerifiedCertificate, Verifier, VerifyError};
