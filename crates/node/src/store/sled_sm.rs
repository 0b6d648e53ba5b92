//! The governance state machine on sled.
//!
//! The governance state itself lives in memory ([`GovernanceMachine`]); what
//! sled holds is enough to rebuild it exactly: the latest snapshot image (or
//! genesis) plus the entries applied since, which are read back from the
//! Raft log itself (its segment files, `wal.rs`): an entry is written to
//! disk once, by its append. Every applied batch writes the new
//! last-applied log id (and membership) in one sled batch; a restart
//! replays the log's entries after the snapshot up to that id: nothing
//! applied twice, nothing skipped. The log never lacks them: the log
//! store's purge removes only entries the snapshot stored here covers
//! (openraft may ask to purge behind a snapshot it is still installing),
//! openraft truncates only entries that were never committed, so never
//! applied; and sled and the log are synced apart, but openraft 0.9 waits
//! for an append's sync before it goes on, so an entry is applied (and
//! its position recorded here) only once it is durable in the log. A
//! recorded position past the log's end therefore means the log lost
//! entries it had acknowledged: the start is refused
//! ([`RecoveryError::MissingEntry`]). Building a snapshot stores it;
//! installing one replaces snapshot and last-applied id in one batch.
//!
//! Tree `state` keys: `applied`, `membership`, `snap/meta`, `snap/len`,
//! `snap/chunk/<u32 BE>` (snapshot bytes in chunks below sled's blob
//! threshold). Stores written before issue 12 also kept a second copy of
//! every applied entry under `wal/<u64 BE log index>`; they are removed
//! when such a store is opened.

use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftLogId, RaftSnapshotBuilder, StorageIOError};

use neuroshard_governance::GovernanceState;

use crate::checkpoint::restore_stored;
use crate::codec;
use crate::store::durability::{written, DurableDb, GroupCommit};
use crate::store::machine::{GovernanceMachine, SharedMachine};
use crate::store::snapshot::{certified_snapshot, install_image, snapshot_write_error};
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
/// Entries replayed per `apply_batch` when the state is rebuilt at start.
const REPLAY_CHUNK_ENTRIES: usize = 64;

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
    #[error("{0}")]
    Wal(#[from] crate::store::wal::WalError),
    #[error("the store holds a Raft vote but its log directory {} is missing: the log was lost; move the data directory aside (keep it for inspection) and start this validator with --recover on an empty one (docs/operations.md, \"Recovering a validator\")", path.display())]
    LogMissing { path: std::path::PathBuf },
    #[error("stored state: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("stored snapshot: {0}")]
    Image(#[from] crate::store::machine::ImageError),
    #[error("stored snapshot: {0}")]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("stored snapshot is {found} bytes but its length record says {expected}")]
    SnapshotLength { expected: u64, found: u64 },
    #[error("the Raft log lacks entry {index}, which the state machine applied after its snapshot; the store is damaged")]
    MissingEntry { index: u64 },
    #[error("divergence marker: {0}")]
    Diverged(String),
}

impl SledStateMachine {
    /// Opens the state machine, rebuilding the in-memory governance state
    /// from the stored snapshot (or `genesis_state`) and the entries applied
    /// since.
    pub fn open(
        durable: &Arc<DurableDb>,
        wal: &crate::store::wal::Wal,
        commit: GroupCommit,
        genesis_state: GovernanceState,
        checkpoint_interval: u64,
        diverged: Option<crate::store::machine::Divergence>,
    ) -> Result<Self, RecoveryError> {
        let tree = durable.db().open_tree("state")?;
        let mut machine = match read_snapshot(&tree)? {
            Some((_meta, data)) => restore_stored(&data)?,
            None => GovernanceMachine::new(genesis_state),
        };
        machine.checkpoints.interval = checkpoint_interval;
        if let Some(d) = diverged {
            tracing::error!(divergence = %d.describe(), "this validator diverged before it stopped: it signs nothing and applies nothing after its frozen state (docs/operations.md, \"A diverged validator\")");
            machine.checkpoints.diverged = Some(d);
        }
        let from = machine.last_applied.map_or(0, |l| l.index + 1);
        let applied: Option<LogId> = match tree.get(KEY_APPLIED)? {
            Some(bytes) => codec::decode("last applied log id", &bytes)?,
            None => None,
        };
        // Replayed in chunks of entries: a batched entry holds up to
        // MAX_COMMANDS_PER_ENTRY commands, so the whole tail at once could
        // be large.
        let mut replay = Vec::new();
        let mut replayed = 0usize;
        if let Some(applied) = applied.filter(|a| a.index >= from) {
            let mut expected = from;
            while expected <= applied.index {
                let chunk = wal.read(expected, applied.index + 1, REPLAY_CHUNK_ENTRIES)?;
                if chunk.is_empty() {
                    return Err(RecoveryError::MissingEntry { index: expected });
                }
                for bytes in &chunk {
                    let entry: RaftEntry = codec::decode_entry("log entry", bytes)?;
                    if entry.get_log_id().index != expected {
                        return Err(RecoveryError::MissingEntry { index: expected });
                    }
                    expected += 1;
                    replay.push(entry);
                }
                replayed += replay.len();
                machine.replay(std::mem::take(&mut replay));
            }
        }
        if applied.is_some() {
            machine.last_applied = applied.max(machine.last_applied);
        }
        if let Some(bytes) = tree.get(KEY_MEMBERSHIP)? {
            machine.membership = codec::decode("applied membership", &bytes)?;
        }
        // A store written before issue 12 kept a copy of applied entries.
        let legacy: Vec<sled::IVec> = tree
            .scan_prefix(PREFIX_WAL)
            .keys()
            .collect::<Result<_, _>>()?;
        if !legacy.is_empty() {
            let mut batch = sled::Batch::default();
            for key in &legacy {
                batch.remove(key);
            }
            tree.apply_batch(batch)?;
            tracing::info!(
                removed = legacy.len(),
                "removed the old copy of applied entries (wal/)"
            );
        }
        tracing::info!(
            index = machine.last_applied.map(|l| l.index),
            term = machine.last_applied.map(|l| l.leader_id.term),
            replayed,
            "state machine recovered"
        );
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

/// The last log index the stored snapshot covers, if one is stored.
pub fn stored_snapshot_index(tree: &sled::Tree) -> Result<Option<u64>, RecoveryError> {
    match tree.get(KEY_SNAP_META)? {
        None => Ok(None),
        Some(bytes) => {
            let meta: SnapshotMeta = codec::decode("snapshot metadata", &bytes)?;
            Ok(Some(meta.last_log_id.map_or(0, |l| l.index)))
        }
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

/// Takes the latest certified checkpoint when openraft asks for a builder:
/// snapshots are built only from certified checkpoints.
pub struct SledSnapshotBuilder {
    built: Result<(SnapshotMeta, Vec<u8>), StorageError>,
    tree: sled::Tree,
    snapshot_lock: Arc<Mutex<()>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SledSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let _timer = crate::metrics::Timer::new(&crate::metrics::metrics().snapshot_build_seconds);
        let (meta, data) = std::mem::replace(
            &mut self.built,
            Err(
                StorageIOError::write_snapshot(None, AnyError::error("snapshot already built"))
                    .into(),
            ),
        )?;
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
            tracing::info!(index = meta.last_log_id.map(|l| l.index), term = meta.last_log_id.map(|l| l.leader_id.term), snapshot = %meta, "newer snapshot already stored; not replacing it");
            return Ok(Snapshot {
                meta,
                snapshot: Box::new(SnapshotBuffer::from_bytes(data)),
            });
        }
        crate::hoptrace::mark("SB_start", data.len() as u64);
        let mut batch = sled::Batch::default();
        stage_snapshot(&self.tree, &mut batch, &meta, &data)?;
        written("store a built snapshot", self.tree.apply_batch(batch));
        crate::hoptrace::mark("SB_end", 0);
        tracing::info!(index = meta.last_log_id.map(|l| l.index), term = meta.last_log_id.map(|l| l.leader_id.term), snapshot = %meta, bytes = data.len(), "snapshot built");
        crate::metrics::metrics()
            .snapshot_bytes
            .set(i64::try_from(data.len()).unwrap_or(i64::MAX));
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
        crate::hoptrace::mark("SM_apply", last.index);
        // The entries themselves are in the Raft log already (written and
        // synced by their append); only the position moves here.
        let mut batch = sled::Batch::default();
        let membership = entries.iter().rev().find_map(|entry| match &entry.payload {
            EntryPayload::Membership(m) => {
                Some(StoredMembership::new(Some(*entry.get_log_id()), m.clone()))
            }
            _ => None,
        });
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
        written("store the applied position", self.tree.apply_batch(batch));
        let r = machine.apply(entries);
        crate::hoptrace::mark("SM_done", last.index);
        Ok(r)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SledSnapshotBuilder {
            built: certified_snapshot(&self.machine.read()),
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
        let _timer =
            crate::metrics::Timer::new(&crate::metrics::metrics().snapshot_install_seconds);
        let data = snapshot.into_bytes();
        // Decode and check everything before touching the stored state.
        let machine = install_image(meta, &data, &self.machine.read())?;
        let mut batch = sled::Batch::default();
        stage_snapshot(&self.tree, &mut batch, meta, &data)?;
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
        // openraft may purge the log behind this snapshot before it is
        // stored; the purge keeps what the stored snapshot does not cover
        // (sled_log.rs). Make the install durable on its own too.
        self.commit
            .barrier()
            .await
            .map_err(|e| snapshot_write_error(meta, &e))?;
        tracing::info!(index = meta.last_log_id.map(|l| l.index), term = meta.last_log_id.map(|l| l.leader_id.term), snapshot = %meta, bytes = data.len(), "snapshot installed");
        crate::metrics::metrics()
            .snapshot_bytes
            .set(i64::try_from(data.len()).unwrap_or(i64::MAX));
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
