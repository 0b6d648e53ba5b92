//! Certified checkpoints: no validator installs a state the log did not
//! produce.
//!
//! At every log index that is a multiple of the genesis
//! `checkpoint_interval`, each replica captures the image of its state
//! (`GovernanceMachine::apply`) and signs, with its BLS key share,
//! [`CheckpointPayload`]: chain, committee, the log id, the membership and
//! the state hash — under its own payload type, so a checkpoint signature is
//! never a certificate signature and the reverse. Validators send their
//! shares to one another ([`exchange`]); t + 1 matching shares (a Byzantine
//! quorum, the certificate threshold) combine into the committee's
//! signature: the checkpoint is **certified**.
//!
//! Snapshots are built only from certified checkpoints and carry the
//! signature ([`CertifiedImage`]). A replica installs a received snapshot
//! only if [`verify_snapshot`] passes: the signature verifies under the
//! group key of the genesis committee *it* pinned, and the state the image
//! restores hashes (recomputed from scratch) to the certified state hash at
//! the certified log id and membership. The peer service runs that check
//! on the assembled snapshot (no chunk reaches openraft) and installs a
//! verified one whole, so a refused snapshot never reaches
//! the state machine.
//!
//! A replica whose own state hash at a checkpoint differs from a payload
//! that t + 1 validators signed is **diverged**: it stops signing
//! checkpoints and certificates and says so in its status and log.

pub mod exchange;
pub mod fetch;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use neuroshard_governance::ChainInfo;

use crate::codec::{self, CodecError};
use crate::store::machine::{
    GovernanceMachine, ImageError, SnapshotImage, MAX_SNAPSHOT_IMAGE_BYTES,
};
use crate::types::{LogId, SnapshotMeta, StoredMembership};

/// The payload type checkpoint signatures are made over (DSSE PAE), distinct
/// from the certificates' `PAYLOAD_TYPE`.
pub const CHECKPOINT_PAYLOAD_TYPE: &str = "application/vnd.neuroshard.checkpoint.v1+postcard";

/// Layout version of [`CertifiedImage`].
pub const CERTIFIED_IMAGE_FORMAT: u32 = 2;

/// Captured checkpoints kept while they wait for their certificate (the
/// oldest is dropped beyond it): each holds an image of the state.
pub const MAX_UNCERTIFIED_CHECKPOINTS: usize = 2;

/// Bytes a [`CertifiedImage`] adds around its image (format, signature and
/// length prefixes), rounded up.
pub const CERTIFIED_IMAGE_OVERHEAD_BYTES: usize = 1024;

/// The largest certified snapshot a replica builds or accepts.
pub const MAX_CERTIFIED_IMAGE_BYTES: usize =
    MAX_SNAPSHOT_IMAGE_BYTES + CERTIFIED_IMAGE_OVERHEAD_BYTES;

/// What every validator signs at a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CheckpointPayload {
    pub chain_id: String,
    /// SHA-256 of the genesis committee info.
    pub committee_hash: [u8; 32],
    /// The checkpoint's log id: term and node of the leader that wrote the
    /// entry, and its index.
    pub term: u64,
    pub leader: u64,
    pub index: u64,
    /// SHA-256 of the membership in effect (postcard).
    pub membership_sha256: [u8; 32],
    /// `GovernanceState::state_hash` after applying the entry at `index`.
    pub state_hash: [u8; 32],
}

impl CheckpointPayload {
    pub fn new(
        chain: &ChainInfo,
        log_id: LogId,
        membership: &StoredMembership,
        state_hash: [u8; 32],
    ) -> Result<Self, CodecError> {
        Ok(Self {
            chain_id: chain.chain_id.clone(),
            committee_hash: chain.committee_hash,
            term: log_id.leader_id.term,
            leader: log_id.leader_id.node_id,
            index: log_id.index,
            membership_sha256: membership_sha256(membership)?,
            state_hash,
        })
    }

    /// The bytes signed: `PAE(CHECKPOINT_PAYLOAD_TYPE, postcard(payload))`.
    pub fn signing_message(&self) -> Vec<u8> {
        let bytes = postcard::to_allocvec(self).expect("a checkpoint payload always encodes");
        neuroshard_certificate::pae(CHECKPOINT_PAYLOAD_TYPE, &bytes)
    }

    /// Short form for logs: index, term and the state hash's first bytes.
    pub fn describe(&self) -> String {
        format!(
            "checkpoint {} (term {}, state {})",
            self.index,
            self.term,
            hex::encode(&self.state_hash[..8])
        )
    }
}

pub fn membership_sha256(membership: &StoredMembership) -> Result<[u8; 32], CodecError> {
    Ok(Sha256::digest(codec::encode("checkpoint membership", membership)?).into())
}

/// What a replica captured at a checkpoint index.
#[derive(Debug)]
pub struct Checkpoint {
    pub log_id: LogId,
    pub membership: StoredMembership,
    pub state_hash: [u8; 32],
    /// The encoded [`SnapshotImage`] of the state at `log_id`.
    pub image: Arc<Vec<u8>>,
}

/// A checkpoint and the committee's signature on it.
#[derive(Clone, Debug)]
pub struct CertifiedCheckpoint {
    pub checkpoint: Arc<Checkpoint>,
    pub signature: Vec<u8>,
}

impl CertifiedCheckpoint {
    /// The snapshot data that carries it.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        Self::encode_parts(&self.signature, &self.checkpoint.image)
    }

    /// A [`CertifiedImage`] of `signature` and `image`, encoded.
    pub fn encode_parts(signature: &[u8], image: &[u8]) -> Result<Vec<u8>, CodecError> {
        // Serialises exactly as `CertifiedImage` (a slice and a Vec of
        // bytes are both a length and the bytes in postcard), without
        // copying the image.
        #[derive(Serialize)]
        struct Borrowed<'a> {
            format: u32,
            signature: &'a [u8],
            image: &'a [u8],
        }
        codec::encode_bounded(
            "certified snapshot",
            &Borrowed {
                format: CERTIFIED_IMAGE_FORMAT,
                signature,
                image,
            },
            MAX_CERTIFIED_IMAGE_BYTES,
        )
    }
}

/// A snapshot's data as it is stored and sent: the image of the state at a
/// certified checkpoint and the committee's signature on the checkpoint.
#[derive(Debug, Serialize, Deserialize)]
pub struct CertifiedImage {
    pub format: u32,
    /// The combined BLS signature on the [`CheckpointPayload`].
    pub signature: Vec<u8>,
    /// The encoded [`SnapshotImage`].
    pub image: Vec<u8>,
}

/// Why a snapshot is refused. Every variant names what did not match.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("snapshot data: {0}")]
    Codec(#[from] CodecError),
    #[error("snapshot data is format {found}, not the certified format {CERTIFIED_IMAGE_FORMAT}")]
    Format { found: u32 },
    #[error("snapshot image: {0}")]
    Image(#[from] ImageError),
    #[error("the snapshot says it covers {meta:?} but its image covers {image:?}")]
    LogIdMismatch {
        meta: Option<LogId>,
        image: Option<LogId>,
    },
    #[error("the snapshot's metadata membership differs from its image's")]
    MembershipMismatch,
    #[error("the snapshot is of chain {found:?} (committee {found_committee}), not this validator's {expected:?} (committee {expected_committee})")]
    OtherChain {
        found: String,
        found_committee: String,
        expected: String,
        expected_committee: String,
    },
    #[error("the genesis committee has no usable group key: {0}")]
    NoGroupKey(String),
    #[error("the checkpoint signature does not verify under the genesis committee's group key for {payload}: {message}")]
    BadSignature { payload: String, message: String },
}

/// Checks a received snapshot against the committee this replica pinned
/// (`pinned`: its own genesis chain info) and returns the machine to
/// install, with the certified checkpoint it carries: the data is a
/// [`CertifiedImage`], its image restores a state whose recomputed hash,
/// with the log id and membership of the metadata, is the payload the
/// committee signed.
pub fn verify_snapshot(
    meta: &SnapshotMeta,
    data: &[u8],
    pinned: &ChainInfo,
) -> Result<GovernanceMachine, CheckpointError> {
    let certified = decode_certified(data)?;
    let image = SnapshotImage::decode(&certified.image)?;
    let Some(log_id) = image
        .last_applied
        .filter(|_| image.last_applied == meta.last_log_id)
    else {
        return Err(CheckpointError::LogIdMismatch {
            meta: meta.last_log_id,
            image: image.last_applied,
        });
    };
    if image.membership != meta.last_membership {
        return Err(CheckpointError::MembershipMismatch);
    }
    let machine = GovernanceMachine::restore(image)?;
    let chain = machine.state.chain();
    if chain.chain_id != pinned.chain_id || chain.committee_hash != pinned.committee_hash {
        return Err(CheckpointError::OtherChain {
            found: chain.chain_id.clone(),
            found_committee: hex::encode(chain.committee_hash),
            expected: pinned.chain_id.clone(),
            expected_committee: hex::encode(pinned.committee_hash),
        });
    }
    let state_hash = machine.state.recompute_state_hash();
    let payload = CheckpointPayload::new(pinned, log_id, &machine.membership, state_hash)?;
    verify_signature(pinned, &payload, &certified.signature)?;
    let mut machine = machine;
    machine.checkpoints.certified = Some(CertifiedCheckpoint {
        checkpoint: Arc::new(Checkpoint {
            log_id,
            membership: machine.membership.clone(),
            state_hash,
            image: Arc::new(certified.image),
        }),
        signature: certified.signature,
    });
    Ok(machine)
}

/// Decodes snapshot data as a [`CertifiedImage`] of the current format.
pub fn decode_certified(data: &[u8]) -> Result<CertifiedImage, CheckpointError> {
    let certified: CertifiedImage =
        codec::decode_bounded("certified snapshot", data, MAX_CERTIFIED_IMAGE_BYTES)?;
    if certified.format != CERTIFIED_IMAGE_FORMAT {
        return Err(CheckpointError::Format {
            found: certified.format,
        });
    }
    Ok(certified)
}

/// Restores a snapshot this replica stored itself (it was certified when it
/// was built or verified when it was installed): a [`CertifiedImage`], or
/// the plain image a store written before checkpoints holds.
pub fn restore_stored(data: &[u8]) -> Result<GovernanceMachine, CheckpointError> {
    let Ok(certified) = decode_certified(data) else {
        return Ok(GovernanceMachine::restore(SnapshotImage::decode(data)?)?);
    };
    let mut machine = GovernanceMachine::restore(SnapshotImage::decode(&certified.image)?)?;
    if let Some(log_id) = machine.last_applied {
        machine.checkpoints.certified = Some(CertifiedCheckpoint {
            checkpoint: Arc::new(Checkpoint {
                log_id,
                membership: machine.membership.clone(),
                state_hash: machine.state.state_hash(),
                image: Arc::new(certified.image),
            }),
            signature: certified.signature,
        });
    }
    Ok(machine)
}

/// Verifies the committee's signature on `payload` under the group key of
/// the pinned genesis committee.
pub fn verify_signature(
    pinned: &ChainInfo,
    payload: &CheckpointPayload,
    signature: &[u8],
) -> Result<(), CheckpointError> {
    let info = &pinned.committee.info;
    let scheme = info.scheme.scheme();
    let key = scheme
        .group_public_key_from_bytes(&info.group_public_key)
        .map_err(|e| CheckpointError::NoGroupKey(e.to_string()))?;
    let bad = |message: String| CheckpointError::BadSignature {
        payload: payload.describe(),
        message,
    };
    let signature = scheme
        .signature_from_bytes(signature)
        .map_err(|e| bad(e.to_string()))?;
    scheme
        .verify(&key, &payload.signing_message(), &signature)
        .map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::machine::GovernanceMachine;
    use neuroshard_certificate::{DealtKeys, ShareIndex};
    use neuroshard_governance::testkit::{self, TestConfig};
    use neuroshard_governance::{Allocation, Amount, GovernanceState};
    use openraft::{CommittedLeaderId, Membership};

    fn committee() -> (neuroshard_governance::Genesis, DealtKeys) {
        testkit::genesis(&TestConfig::default())
    }

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 0), index)
    }

    fn membership() -> StoredMembership {
        let voters: std::collections::BTreeSet<u64> = (0..4).collect();
        StoredMembership::new(Some(log_id(0, 0)), Membership::new(vec![voters], ()))
    }

    /// The machine of `genesis` as if it had applied up to `at`.
    fn machine_at(genesis: &neuroshard_governance::Genesis, at: LogId) -> GovernanceMachine {
        let mut m =
            GovernanceMachine::new(GovernanceState::from_genesis(genesis).expect("genesis"));
        m.last_applied = Some(at);
        m.membership = membership();
        m
    }

    /// t + 1 validators' shares on `message`, combined.
    fn committee_signs(dealt: &DealtKeys, message: &[u8]) -> Vec<u8> {
        let keys = &dealt.public_key_set;
        let scheme = keys.scheme().scheme();
        let shares: Vec<_> = (0..=keys.threshold())
            .map(|i| {
                let s = scheme
                    .sign_share(&dealt.secret_key_shares[i as usize], message)
                    .expect("sign");
                (ShareIndex(i), s)
            })
            .collect();
        scheme
            .combine(keys, &shares, message)
            .expect("combine")
            .to_bytes()
            .to_vec()
    }

    /// A snapshot of `m` with `signature`.
    fn snapshot(m: &GovernanceMachine, signature: Vec<u8>) -> (SnapshotMeta, Vec<u8>) {
        let image = m.image().expect("image").encode().expect("encode");
        let meta = SnapshotMeta {
            last_log_id: m.last_applied,
            last_membership: m.membership.clone(),
            snapshot_id: "test".into(),
        };
        let data = codec::encode_bounded(
            "certified snapshot",
            &CertifiedImage {
                format: CERTIFIED_IMAGE_FORMAT,
                signature,
                image,
            },
            MAX_CERTIFIED_IMAGE_BYTES,
        )
        .expect("encode");
        (meta, data)
    }

    fn certified(m: &GovernanceMachine, dealt: &DealtKeys) -> (SnapshotMeta, Vec<u8>) {
        let payload = CheckpointPayload::new(
            m.state.chain(),
            m.last_applied.expect("applied"),
            &m.membership,
            m.state.state_hash(),
        )
        .expect("payload");
        snapshot(m, committee_signs(dealt, &payload.signing_message()))
    }

    /// The refusal (the machine has no `Debug`).
    fn refused(meta: &SnapshotMeta, data: &[u8], pinned: &ChainInfo) -> CheckpointError {
        match verify_snapshot(meta, data, pinned) {
            Ok(_) => panic!("accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_certified_snapshot_installs_and_carries_its_certificate() {
        let (genesis, dealt) = committee();
        let m = machine_at(&genesis, log_id(3, 100));
        let (meta, data) = certified(&m, &dealt);
        let installed = verify_snapshot(&meta, &data, m.state.chain()).expect("certified");
        assert_eq!(installed.last_applied, Some(log_id(3, 100)));
        assert_eq!(installed.checkpoints.certified_index(), Some(100));
        assert_eq!(installed.state.state_hash(), m.state.state_hash());
    }

    /// The attack: genesis plus an account holding 10⁹ NEURO that
    /// no entry created, claimed far ahead, signed by one validator (or by
    /// anybody without t + 1 shares).
    #[test]
    fn a_made_up_state_is_refused_whoever_signed_it() {
        let (genesis, dealt) = committee();
        let honest = machine_at(&genesis, log_id(12, 1_000_000));
        let mut forged_genesis = genesis.clone();
        forged_genesis.allocations.push(Allocation {
            account: testkit::account_of(&testkit::user_key(99)),
            balance: Amount(1_000_000_000 * neuroshard_governance::NEURO),
            staked: Amount(0),
        });
        let forged = machine_at(&forged_genesis, log_id(12, 1_000_000));
        // Signed over the forged state by a full committee of another chain
        // is not possible here; what a faulty validator can do: reuse the
        // honest certificate, sign alone, or sign as a certificate.
        let honest_payload = CheckpointPayload::new(
            honest.state.chain(),
            log_id(12, 1_000_000),
            &honest.membership,
            honest.state.state_hash(),
        )
        .expect("payload");
        let reused = committee_signs(&dealt, &honest_payload.signing_message());
        let forged_payload = CheckpointPayload::new(
            honest.state.chain(),
            log_id(12, 1_000_000),
            &forged.membership,
            forged.state.state_hash(),
        )
        .expect("payload");
        let keys = &dealt.public_key_set;
        let scheme = keys.scheme().scheme();
        let alone = scheme
            .sign_share(
                &dealt.secret_key_shares[0],
                &forged_payload.signing_message(),
            )
            .expect("sign")
            .to_bytes()
            .to_vec();
        let as_certificate = committee_signs(
            &dealt,
            &neuroshard_certificate::signing_message(
                &postcard::to_allocvec(&forged_payload).expect("encode"),
            ),
        );
        for (what, signature) in [
            ("the honest checkpoint's signature", reused),
            ("one validator's share", alone),
            ("a certificate-domain signature", as_certificate),
            ("no signature", Vec::new()),
        ] {
            let (meta, data) = snapshot(&forged, signature);
            let err = verify_snapshot(&meta, &data, honest.state.chain())
                .err()
                .unwrap_or_else(|| panic!("{what}: a made-up state was accepted"));
            // The forged genesis changes the committee hash? No: only the
            // allocations differ, so the signature check is what refuses.
            assert!(
                matches!(err, CheckpointError::BadSignature { .. }),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn metadata_that_disagrees_with_the_image_is_refused() {
        let (genesis, dealt) = committee();
        let m = machine_at(&genesis, log_id(3, 100));
        let (mut meta, data) = certified(&m, &dealt);
        meta.last_log_id = Some(log_id(3, 200));
        let err = refused(&meta, &data, m.state.chain());
        assert!(
            matches!(err, CheckpointError::LogIdMismatch { .. }),
            "{err}"
        );
        let (mut meta, data) = certified(&m, &dealt);
        meta.last_membership = StoredMembership::default();
        let err = refused(&meta, &data, m.state.chain());
        assert!(matches!(err, CheckpointError::MembershipMismatch), "{err}");
    }

    #[test]
    fn another_chains_snapshot_and_garbage_are_refused() {
        let (genesis, dealt) = committee();
        let m = machine_at(&genesis, log_id(3, 100));
        let (other, other_dealt) = testkit::genesis(&TestConfig {
            chain_id: "another-chain".into(),
            ..TestConfig::default()
        });
        let theirs = machine_at(&other, log_id(3, 100));
        let (meta, data) = certified(&theirs, &other_dealt);
        let err = refused(&meta, &data, m.state.chain());
        assert!(matches!(err, CheckpointError::OtherChain { .. }), "{err}");
        let (meta, _) = certified(&m, &dealt);
        for garbage in [vec![], vec![2u8; 64], vec![0xff; 10]] {
            assert!(verify_snapshot(&meta, &garbage, m.state.chain()).is_err());
        }
        // An uncertified image of the old format is not installable.
        let plain = m.image().expect("image").encode().expect("encode");
        let err = refused(&meta, &plain, m.state.chain());
        assert!(
            matches!(
                err,
                CheckpointError::Format { .. } | CheckpointError::Codec(_)
            ),
            "{err}"
        );
    }

    #[test]
    fn checkpoint_and_certificate_messages_never_coincide() {
        let (genesis, _) = committee();
        let m = machine_at(&genesis, log_id(1, 8));
        let p = CheckpointPayload::new(m.state.chain(), log_id(1, 8), &m.membership, [7; 32])
            .expect("payload");
        let bytes = postcard::to_allocvec(&p).expect("encode");
        assert_ne!(
            p.signing_message(),
            neuroshard_certificate::signing_message(&bytes)
        );
        assert!(p.signing_message().starts_with(
            format!(
                "DSSEv1 {} {CHECKPOINT_PAYLOAD_TYPE} ",
                CHECKPOINT_PAYLOAD_TYPE.len()
            )
            .as_bytes()
        ));
    }
}
