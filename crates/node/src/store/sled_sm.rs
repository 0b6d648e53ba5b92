//! The governance state machine on sled.
//!
//! The governance state itself lives in memory ([`GovernanceMachine`]); what
//! sled holds is enough to rebuild it exactly: the latest snapshot image (or
//! genesis) plus the governance entries applied since, keyed by log index.
//! Every applied batch writes its entries *and* the new last-applied log id
//! and membership in one atomic sled batch, so a restart rebuilds precisely
//! the state at the recorded last-applied id: nothing applied twice, nothing
//! skipped. Building a snapshot stores it and drops the entries it covers in
//! one batch; installing one replaces snapshot, entries and last-applied id
//! in one batch.
//!
//! Tree `state` keys: `applied`, `membership`, `snap/meta`, `snap/len`,
//! `snap/chunk/<u32 BE>` (snapshot bytes in chunks below sled's blob
//! threshold) and `wal/<u64 BE log index>` (a versioned entry record,
//! `codec::encode_entry`).

use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftLogId, RaftSnapshotBuilder, StorageIOError};

use neuroshard_governance::{Entry as GovEntry, GovernanceState};

use crate::codec;
use crate::store::durability::{written, DurableDb, GroupCommit};
use crate::store::machine::{GovernanceMachine, ImageError, SharedMachine, SnapshotImage};
use crate::store::snapshot::{
    image_build_error, install_image, new_snapshot_meta, snapshot_write_error,
};
use crate::store::SnapshotBuffer;
use crate::types::{
    Applied, LogId, RaftEntry, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

const KEY_APPLIED: &[u8] = b"applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
const KEY_SNAP_META: &[u8] = b"snap/meta";
const KEY_SNAP_LEN: &[u8] = b"snap/len";
const PREFIX_SNAP_CHUNK: &[u8] = b"snap/chunk/";
const PREFIX_WAL: &[u8] = b"wal/";

/// Snapshot bytes are stored in pieces of this size: below sled 0.34's blob
/// threshold (segment size / 4), so they live in sled's log file, which the
/// durability layer syncs.
pub const SNAPSHOT_STORE_CHUNK_BYTES: usize = 32 * 1024;

fn sm_write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn sm_read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

fn wal_key(index: u64) -> Vec<u8> {
    let mut k = PREFIX_WAL.to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn chunk_key(n: u32) -> Vec<u8> {
    let mut k = PREFIX_SNAP_CHUNK.to_vec();
    k.extend_from_slice(&n.to_be_bytes());
    k
}

#[derive(Clone)]
pub struct SledStateMachine {
    tree: sled::Tree,
    machine: SharedMachine,
    commit: GroupCommit,
    /// Serialises storing a built snapshot with installing a received one,
    /// so an older snapshot never replaces a newer one.
    snapshot_lock: Arc<Mutex<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored state: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("stored snapshot: {0}")]
    Image(#[from] crate::store::machine::ImageError),
    #[error("stored snapshot is {found} bytes but its length record says {expected}")]
    SnapshotLength { expected: u64, found: u64 },
    #[error("stored entry key {0} is not a log index")]
    BadKey(String),
}

impl SledStateMachine {
    /// Opens the state machine, rebuilding the in-memory governance state
    /// from the stored snapshot (or `genesis_state`) and the entries applied
    /// since.
    pub fn open(
        durable: &Arc<DurableDb>,
        commit: GroupCommit,
        genesis_state: GovernanceState,
    ) -> Result<Self, RecoveryError> {
        let tree = durable.db().open_tree("state")?;
        let mut machine = match read_snapshot(&tree)? {
            Some((_meta, data)) => GovernanceMachine::restore(SnapshotImage::decode(&data)?)?,
            None => GovernanceMachine::new(genesis_state),
        };
        let mut replay = Vec::new();
        for item in tree.scan_prefix(PREFIX_WAL) {
            let (key, value) = item?;
            let index = key
                .get(PREFIX_WAL.len()..)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| RecoveryError::BadKey(hex::encode(&key)))?;
            let entry: GovEntry = codec::decode_entry("applied governance entry", &value)?;
            replay.push((index, entry));
        }
        let replayed = replay.len();
        machine.replay(&replay);
        if let Some(bytes) = tree.get(KEY_APPLIED)? {
            machine.last_applied = codec::decode("last applied log id", &bytes)?;
        }
        if let Some(bytes) = tree.get(KEY_MEMBERSHIP)? {
            machine.membership = codec::decode("applied membership", &bytes)?;
        }
        tracing::info!(last_applied = ?machine.last_applied, replayed, "state machine recovered");
        Ok(Self {
            tree,
            machine: SharedMachine::new(machine),
            commit,
            snapshot_lock: Arc::default(),
        })
    }

    /// The machine, for status and queries.
    pub fn shared(&self) -> SharedMachine {
        self.machine.clone()
    }
}

fn read_snapshot(tree: &sled::Tree) -> Result<Option<(SnapshotMeta, Vec<u8>)>, RecoveryError> {
    let Some(meta) = tree.get(KEY_SNAP_META)? else {
        return Ok(None);
    };
    let meta: SnapshotMeta = codec::decode("snapshot metadata", &meta)?;
    let expected: u64 = match tree.get(KEY_SNAP_LEN)? {
        Some(b) => codec::decode("snapshot length", &b)?,
        None => 0,
    };
    let mut data = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    for item in tree.scan_prefix(PREFIX_SNAP_CHUNK) {
        let (_, chunk) = item?;
        data.extend_from_slice(&chunk);
    }
    if data.len() as u64 != expected {
        return Err(RecoveryError::SnapshotLength {
            expected,
            found: data.len() as u64,
        });
    }
    Ok(Some((meta, data)))
}

/// Adds "replace the stored snapshot with `meta`/`data`" to `batch`.
fn stage_snapshot(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<(), StorageError> {
    for key in tree.scan_prefix(PREFIX_SNAP_CHUNK).keys() {
        batch.remove(key.map_err(|e| snapshot_write_error(meta, &e))?);
    }
    for (n, chunk) in data.chunks(SNAPSHOT_STORE_CHUNK_BYTES).enumerate() {
        let n = u32::try_from(n).map_err(|e| snapshot_write_error(meta, &e))?;
        batch.insert(chunk_key(n), chunk);
    }
    let meta_bytes =
        codec::encode("snapshot metadata", meta).map_err(|e| snapshot_write_error(meta, &e))?;
    let len_bytes = codec::encode("snapshot length", &(data.len() as u64))
        .map_err(|e| snapshot_write_error(meta, &e))?;
    batch.insert(KEY_SNAP_META, meta_bytes);
    batch.insert(KEY_SNAP_LEN, len_bytes);
    Ok(())
}

/// Captures the image when openraft asks for a builder, so entries applied
/// while the snapshot is being stored do not leak into it.
pub struct SledSnapshotBuilder {
    /// The image captured when the builder was made (or why it could not
    /// be: reported when openraft builds the snapshot).
    image: Result<SnapshotImage, ImageError>,
    tree: sled::Tree,
    snapshot_lock: Arc<Mutex<()>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SledSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let image = self.image.as_ref().map_err(image_build_error)?;
        let meta = new_snapshot_meta(image.last_applied, image.membership.clone());
        let data = image
            .encode()
            .map_err(|e| snapshot_write_error(&meta, &e))?;
        let _serial = self.snapshot_lock.lock().unwrap_or_else(|p| p.into_inner());
        let stored: Option<SnapshotMeta> = match self.tree.get(KEY_SNAP_META) {
            Ok(Some(b)) => codec::decode("snapshot metadata", &b).ok(),
            Ok(None) => None,
            Err(e) => return Err(snapshot_write_error(&meta, &e)),
        };
        if stored
            .as_ref()
            .is_some_and(|s| s.last_log_id >= meta.last_log_id)
        {
            // A snapshot at least as new was installed meanwhile; keep it.
            tracing::info!(snapshot = %meta, "newer snapshot already stored; not replacing it");
            return Ok(Snapshot {
                meta,
                snapshot: Box::new(SnapshotBuffer::from_bytes(data)),
            });
        }
        let mut batch = sled::Batch::default();
        stage_snapshot(&self.tree, &mut batch, &meta, &data)?;
        // The snapshot now covers these entries; later ones stay for replay.
        if let Some(last) = image.last_applied {
            for key in self.tree.range(wal_key(0)..=wal_key(last.index)).keys() {
                batch.remove(key.map_err(|e| snapshot_write_error(&meta, &e))?);
            }
        }
        written("store a built snapshot", self.tree.apply_batch(batch));
        tracing::info!(snapshot = %meta, bytes = data.len(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotBuffer::from_bytes(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for SledStateMachine {
    type SnapshotBuilder = SledSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let m = self.machine.read();
        Ok((m.last_applied, m.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = RaftEntry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<RaftEntry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| *e.get_log_id()) else {
            return Ok(Vec::new());
        };
        let mut batch = sled::Batch::default();
        let mut membership = None;
        for entry in &entries {
            match &entry.payload {
                EntryPayload::Normal(gov) => {
                    let bytes = codec::encode_entry("applied governance entry", gov)
                        .map_err(sm_write_err)?;
                    batch.insert(wal_key(entry.get_log_id().index), bytes);
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(*entry.get_log_id()), m.clone()));
                }
                EntryPayload::Blank => {}
            }
        }
        batch.insert(
            KEY_APPLIED,
            codec::encode("last applied log id", &Some(last)).map_err(sm_write_err)?,
        );
        if let Some(m) = &membership {
            batch.insert(
                KEY_MEMBERSHIP,
                codec::encode("applied membership", m).map_err(sm_write_err)?,
            );
        }
        // Hold the machine's lock across the write so the stored and the
        // in-memory state never disagree for a reader.
        let mut machine = self.machine.write();
        written("store applied entries", self.tree.apply_batch(batch));
        Ok(machine.apply(entries))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SledSnapshotBuilder {
            image: self.machine.read().image(),
            tree: self.tree.clone(),
            snapshot_lock: self.snapshot_lock.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotBuffer>, StorageError> {
        Ok(Box::new(SnapshotBuffer::new()))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotBuffer>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_bytes();
        // Decode and check everything before touching the stored state.
        let machine = install_image(meta, &data)?;
        let mut batch = sled::Batch::default();
        stage_snapshot(&self.tree, &mut batch, meta, &data)?;
        for key in self.tree.scan_prefix(PREFIX_WAL).keys() {
            batch.remove(key.map_err(|e| snapshot_write_error(meta, &e))?);
        }
        let applied = codec::encode("last applied log id", &meta.last_log_id)
            .map_err(|e| snapshot_write_error(meta, &e))?;
        let membership = codec::encode("applied membership", &meta.last_membership)
            .map_err(|e| snapshot_write_error(meta, &e))?;
        batch.insert(KEY_APPLIED, applied);
        batch.insert(KEY_MEMBERSHIP, membership);
        {
            let _serial = self.snapshot_lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut current = self.machine.write();
            written("store an installed snapshot", self.tree.apply_batch(batch));
            *current = machine;
        }
        // openraft purges the log behind an installed snapshot next; the
        // purge syncs first, but make the install durable on its own too.
        self.commit
            .barrier()
            .await
            .map_err(|e| snapshot_write_error(meta, &e))?;
        tracing::info!(snapshot = %meta, bytes = data.len(), "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        match read_snapshot(&self.tree) {
            Ok(Some((meta, data))) => Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(SnapshotBuffer::from_bytes(data)),
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(sm_read_err(e)),
        }
    }
}
