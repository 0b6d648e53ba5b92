//! The replicated state as both stores hold it in memory: the governance
//! state plus the Raft bookkeeping applied with it, and the snapshot image
//! that moves all three between replicas.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::{EntryPayload, RaftLogId};
use serde::{Deserialize, Serialize};

use neuroshard_governance::{Entry as GovEntry, GovernanceState};

use crate::codec::{self, CodecError};
use crate::types::{Applied, LogId, RaftEntry, StoredMembership};

/// Version of [`SnapshotImage`]'s layout; a replica refuses images of
/// another version instead of misreading them.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// What a [`SnapshotImage`] holds besides the governance snapshot bytes:
/// its format (a u32 varint), the last applied log id (three varints), the
/// membership (its log id, at most two configurations of at most
/// `MAX_VALIDATORS` ids and the node list: about 13 KiB at most, see the
/// test) and the length prefix of the governance bytes; rounded up.
pub const SNAPSHOT_IMAGE_OVERHEAD_BYTES: usize = 64 * 1024;

/// The one bound of a snapshot image, derived from the governance crate's
/// `limits::MAX_SNAPSHOT_BYTES`: `GovernanceState::to_snapshot_bytes`
/// refuses to produce more than that and `from_snapshot_bytes` to read
/// more, so this number reconciles the node's snapshot bound (what a
/// replica builds, buffers from a peer and decodes: `SnapshotBuffer`,
/// [`SnapshotImage::decode`]), the governance decoder's bound and the
/// encoder's ([`SnapshotImage::encode`]). A snapshot the state machine may
/// produce is always one every replica accepts.
pub const MAX_SNAPSHOT_IMAGE_BYTES: usize =
    neuroshard_governance::limits::MAX_SNAPSHOT_BYTES + SNAPSHOT_IMAGE_OVERHEAD_BYTES;

/// The governance state and the Raft position it corresponds to.
pub struct GovernanceMachine {
    pub state: GovernanceState,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// What a snapshot carries: enough to replace a replica's state machine.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotImage {
    pub format: u32,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// `GovernanceState::to_snapshot_bytes()`.
    pub governance: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("snapshot image format {found} is not the supported format {SNAPSHOT_FORMAT}")]
    Format { found: u32 },
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("governance snapshot bytes are invalid: {0}")]
    Governance(String),
}

impl GovernanceMachine {
    pub fn new(state: GovernanceState) -> Self {
        Self {
            state,
            last_applied: None,
            membership: StoredMembership::default(),
        }
    }

    /// Applies `entries` in log order and returns one result per entry.
    /// Governance entries go to the state machine as one batch (so it can
    /// verify their signatures together); blank and membership entries only
    /// move the Raft bookkeeping.
    pub fn apply(&mut self, entries: Vec<RaftEntry>) -> Vec<Applied> {
        let mut results = Vec::with_capacity(entries.len());
        let mut batch: Vec<(u64, GovEntry)> = Vec::new();
        // Position in `results` of each governance entry's answer.
        let mut slots = Vec::new();
        for entry in entries {
            let log_id = *entry.get_log_id();
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(gov) => {
                    slots.push(results.len());
                    batch.push((log_id.index, gov));
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m);
                }
            }
            results.push(Applied {
                log_index: log_id.index,
                outcomes: Vec::new(),
            });
            self.last_applied = Some(log_id);
        }
        if !batch.is_empty() {
            let outcomes = self.state.apply_batch(&batch);
            assert_eq!(
                outcomes.len(),
                batch.len(),
                "apply_batch returns one outcome per entry"
            );
            for (slot, outcome) in slots.into_iter().zip(outcomes) {
                results[slot].outcomes = outcome;
            }
        }
        results
    }

    /// Replays governance entries that were applied before a restart; their
    /// outcomes were already delivered.
    pub fn replay(&mut self, entries: &[(u64, GovEntry)]) {
        if !entries.is_empty() {
            self.state.apply_batch(entries);
        }
    }

    /// The image of the current state; fails only if the state's snapshot
    /// would exceed `limits::MAX_SNAPSHOT_BYTES` (a bug: the state budget
    /// bounds it).
    pub fn image(&self) -> Result<SnapshotImage, ImageError> {
        Ok(SnapshotImage {
            format: SNAPSHOT_FORMAT,
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            governance: self
                .state
                .to_snapshot_bytes()
                .map_err(|e| ImageError::Governance(e.to_string()))?,
        })
    }

    /// Replaces everything with the content of `image`.
    pub fn restore(image: SnapshotImage) -> Result<Self, ImageError> {
        if image.format != SNAPSHOT_FORMAT {
            return Err(ImageError::Format {
                found: image.format,
            });
        }
        let state = GovernanceState::from_snapshot_bytes(&image.governance)
            .map_err(|e| ImageError::Governance(e.to_string()))?;
        Ok(Self {
            state,
            last_applied: image.last_applied,
            membership: image.membership,
        })
    }
}

impl SnapshotImage {
    /// Refuses an image above [`MAX_SNAPSHOT_IMAGE_BYTES`], which
    /// [`SnapshotImage::decode`] (and every peer) would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode_bounded("snapshot image", self, MAX_SNAPSHOT_IMAGE_BYTES)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ImageError> {
        let image: SnapshotImage =
            codec::decode_bounded("snapshot image", bytes, MAX_SNAPSHOT_IMAGE_BYTES)?;
        if image.format != SNAPSHOT_FORMAT {
            return Err(ImageError::Format {
                found: image.format,
            });
        }
        Ok(image)
    }
}

/// The machine shared between the storage (which applies entries) and the
/// node (which reads status and, later, serves queries). Readers never see a
/// half-applied batch: `apply` holds the write lock for the whole batch.
#[derive(Clone)]
pub struct SharedMachine(Arc<RwLock<GovernanceMachine>>);

impl SharedMachine {
    pub fn new(machine: GovernanceMachine) -> Self {
        Self(Arc::new(RwLock::new(machine)))
    }

    /// A panic while applying is a broken invariant of the state machine; the
    /// process is going down anyway, so later readers see the data as it was.
    pub fn read(&self) -> RwLockReadGuard<'_, GovernanceMachine> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, GovernanceMachine> {
        self.0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use neuroshard_governance::limits::MAX_VALIDATORS;
    use openraft::{CommittedLeaderId, Membership};

    /// The largest image overhead: every id and index at its longest
    /// varint, a joint membership of two full committees.
    #[test]
    fn the_image_overhead_bound_holds_for_the_largest_membership() {
        let far = LogId::new(CommittedLeaderId::new(u64::MAX, u64::MAX), u64::MAX);
        let ids = |from: u64| -> std::collections::BTreeSet<u64> {
            (0..MAX_VALIDATORS as u64)
                .map(|i| u64::MAX - from - i)
                .collect()
        };
        let membership = Membership::new(vec![ids(0), ids(MAX_VALIDATORS as u64)], ());
        let image = SnapshotImage {
            format: u32::MAX,
            last_applied: Some(far),
            membership: StoredMembership::new(Some(far), membership),
            governance: Vec::new(),
        };
        let overhead = image.encode().expect("encodes").len() + 5; // + the bytes' length varint growth
        assert!(
            overhead <= SNAPSHOT_IMAGE_OVERHEAD_BYTES,
            "{overhead} > {SNAPSHOT_IMAGE_OVERHEAD_BYTES}"
        );
    }

    #[test]
    fn an_image_over_the_bound_is_refused_when_encoded_and_decoded() {
        let image = SnapshotImage {
            format: SNAPSHOT_FORMAT,
            last_applied: None,
            membership: StoredMembership::default(),
            governance: vec![0; MAX_SNAPSHOT_IMAGE_BYTES],
        };
        let err = image.encode().expect_err("over the bound");
        assert!(
            matches!(err, CodecError::TooLarge { limit, .. } if limit == MAX_SNAPSHOT_IMAGE_BYTES),
            "{err}"
        );
        let err = SnapshotImage::decode(&vec![0; MAX_SNAPSHOT_IMAGE_BYTES + 1])
            .expect_err("over the bound");
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
    }
}
