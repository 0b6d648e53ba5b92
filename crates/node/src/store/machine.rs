//! The replicated state as both stores hold it in memory: the governance
//! state plus the Raft bookkeeping applied with it, and the snapshot image
//! that moves all three between replicas.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::{EntryPayload, RaftLogId};
use serde::{Deserialize, Serialize};

use neuroshard_governance::{Entry as GovEntry, GovernanceState};

use crate::checkpoint::{
    CertifiedCheckpoint, Checkpoint, CheckpointPayload, MAX_UNCERTIFIED_CHECKPOINTS,
};
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
    /// Checkpoints captured and certified (`crate::checkpoint`).
    pub checkpoints: Checkpoints,
}

/// This replica's checkpoints. Not part of the replicated state: every
/// replica captures the same ones from the same log, and a certificate is
/// the committee's, however a replica learnt it.
#[derive(Debug)]
pub struct Checkpoints {
    /// Genesis `checkpoint_interval`: a checkpoint at every multiple.
    pub interval: u64,
    /// Captured and not yet certified, oldest first, above `certified`.
    pub captured: VecDeque<Arc<Checkpoint>>,
    /// The latest certified checkpoint (what snapshots are built from).
    pub certified: Option<CertifiedCheckpoint>,
    /// Set when t + 1 validators signed a payload at a checkpoint index
    /// that differs from this replica's own.
    pub diverged: Option<Divergence>,
}

/// What made this replica diverged, and where its governance state
/// stopped. Kept in the data directory (`DIVERGED`, JSON) so a restart
/// stays diverged: the replay applies nothing after `frozen_at` either.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    /// The checkpoint index at which the committee certified another state.
    pub index: u64,
    pub own: Option<CheckpointPayload>,
    pub certified: CheckpointPayload,
    /// The last entry applied to the governance state: later entries are
    /// kept in the log and move the Raft position, but change nothing
    /// (reads answer from the state as it was here, marked diverged).
    pub frozen_at: Option<LogId>,
}

impl Divergence {
    /// Whether the governance state still takes the entry at `index`.
    pub fn applies(&self, index: u64) -> bool {
        self.frozen_at.is_some_and(|f| index <= f.index)
    }

    /// One line for the status and the refusals.
    pub fn describe(&self) -> String {
        let own = self
            .own
            .as_ref()
            .map_or("nothing".to_owned(), |o| o.describe());
        format!(
            "at checkpoint {}: this replica computed {own}, the committee certified {}; governance state frozen at log index {}",
            self.index,
            self.certified.describe(),
            self.frozen_at.map_or(0, |l| l.index)
        )
    }
}

impl Default for Checkpoints {
    fn default() -> Self {
        Self {
            interval: neuroshard_governance::genesis::DEFAULT_CHECKPOINT_INTERVAL,
            captured: VecDeque::new(),
            certified: None,
            diverged: None,
        }
    }
}

impl Checkpoints {
    /// Whether the entry at `index` is a checkpoint.
    pub fn is_checkpoint(&self, index: u64) -> bool {
        index > 0 && index.is_multiple_of(self.interval.max(1))
    }

    /// The captured checkpoint at `index`, if still kept.
    pub fn captured_at(&self, index: u64) -> Option<&Arc<Checkpoint>> {
        self.captured.iter().find(|c| c.log_id.index == index)
    }

    /// The certified checkpoint's log index.
    pub fn certified_index(&self) -> Option<u64> {
        self.certified.as_ref().map(|c| c.checkpoint.log_id.index)
    }

    /// Records the committee's signature on the captured checkpoint at
    /// `index` (already verified by the caller) and forgets the older ones.
    /// Returns false if that checkpoint is no longer (or not yet) captured,
    /// or an equal or later one is certified.
    pub fn certify(&mut self, index: u64, signature: Vec<u8>) -> bool {
        if self.certified_index().is_some_and(|c| c >= index) {
            return false;
        }
        let Some(checkpoint) = self.captured_at(index).cloned() else {
            return false;
        };
        self.captured.retain(|c| c.log_id.index > index);
        self.certified = Some(CertifiedCheckpoint {
            checkpoint,
            signature,
        });
        true
    }
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
            checkpoints: Checkpoints::default(),
        }
    }

    /// Captures a checkpoint at the last applied entry whatever its index
    /// (tests certify it with the test committee's keys).
    #[cfg(test)]
    pub(crate) fn capture_now(&mut self) {
        self.capture();
    }

    /// Captures the checkpoint at the last applied entry: the state's image
    /// and hash. Called right after the entry at a checkpoint index is
    /// applied, before any later entry.
    fn capture(&mut self) {
        let Some(log_id) = self.last_applied else {
            return;
        };
        crate::hoptrace::mark("CP_start", log_id.index);
        let image = match self
            .image()
            .and_then(|i| i.encode().map_err(ImageError::from))
        {
            Ok(bytes) => bytes,
            Err(e) => {
                // The state budget bounds the image; this is a bug, and the
                // replica only loses this checkpoint.
                tracing::error!(index = log_id.index, error = %e, "cannot capture the checkpoint");
                return;
            }
        };
        let c = &mut self.checkpoints;
        while c.captured.len() >= MAX_UNCERTIFIED_CHECKPOINTS {
            c.captured.pop_front();
        }
        c.captured.push_back(Arc::new(Checkpoint {
            log_id,
            membership: self.membership.clone(),
            state_hash: self.state.state_hash(),
            image: Arc::new(image),
        }));
        crate::hoptrace::mark("CP_end", log_id.index);
    }

    /// Applies `entries` in log order and returns one result per entry.
    /// Governance entries go to the state machine as one batch (so it can
    /// verify their signatures together) up to each checkpoint index, where
    /// the state is captured ([`Self::capture`]); blank and membership
    /// entries only move the Raft bookkeeping.
    ///
    /// A diverged replica ([`Divergence`]) applies nothing after its
    /// `frozen_at`: the entries' answers carry no outcome (the submit path
    /// refuses with `replica_diverged`), and no checkpoint is captured.
    pub fn apply(&mut self, entries: Vec<RaftEntry>) -> Vec<Applied> {
        let mut results = Vec::with_capacity(entries.len());
        let mut batch: Vec<(u64, GovEntry)> = Vec::new();
        // Position in `results` of each governance entry's answer.
        let mut slots = Vec::new();
        for entry in entries {
            let log_id = *entry.get_log_id();
            let frozen = self
                .checkpoints
                .diverged
                .as_ref()
                .is_some_and(|d| !d.applies(log_id.index));
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(_) if frozen => {
                    crate::metrics::metrics().entries_not_applied_diverged.inc();
                }
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
            crate::metrics::metrics().entries_applied.inc();
            if self.checkpoints.is_checkpoint(log_id.index) && !frozen {
                self.apply_governance(&mut batch, &mut slots, &mut results);
                self.capture();
            }
        }
        self.apply_governance(&mut batch, &mut slots, &mut results);
        results
    }

    /// Applies the governance entries gathered in `batch` and files their
    /// outcomes at `slots` of `results`.
    fn apply_governance(
        &mut self,
        batch: &mut Vec<(u64, GovEntry)>,
        slots: &mut Vec<usize>,
        results: &mut [Applied],
    ) {
        if batch.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let outcomes = self.state.apply_batch(batch);
        assert_eq!(
            outcomes.len(),
            batch.len(),
            "apply_batch returns one outcome per entry"
        );
        let m = crate::metrics::metrics();
        crate::metrics::observe_since(&m.apply_seconds, started);
        for ((_, entry), outcome) in batch.iter().zip(&outcomes) {
            match entry {
                GovEntry::Commands(cs) => m.commands_per_entry.observe(cs.len() as f64),
                GovEntry::CertificateIssued(c) if outcome.iter().all(|o| o.is_ok()) => {
                    let kind = self
                        .state
                        .certificate(c.sequence)
                        .map_or("unknown".to_owned(), |r| {
                            format!("{:?}", r.event.kind).to_lowercase()
                        });
                    m.certificates_issued
                        .get_or_create(&crate::metrics::label("kind", kind))
                        .inc();
                }
                _ => {}
            }
            for refused in outcome.iter().filter_map(|o| o.as_ref().err()) {
                m.apply_refusals
                    .get_or_create(&crate::metrics::label("rule", refused.rule()))
                    .inc();
            }
        }
        for (slot, outcome) in slots.drain(..).zip(outcomes) {
            results[slot].outcomes = outcome;
        }
        batch.clear();
    }

    /// Replays entries that were applied before a restart (their outcomes
    /// were already delivered), capturing checkpoints on the way as
    /// [`Self::apply`] does.
    pub fn replay(&mut self, entries: Vec<RaftEntry>) {
        self.apply(entries);
    }

    /// The position of the governance state: the last applied entry, or
    /// where a diverged replica froze it.
    pub fn state_position(&self) -> Option<LogId> {
        match &self.checkpoints.diverged {
            Some(d) => d.frozen_at,
            None => self.last_applied,
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
            checkpoints: Checkpoints::default(),
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
