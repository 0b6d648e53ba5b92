//! The governance state machine on sled.
//!
//! The governance state itself lives in memory ([`GovernanceMachine`]); what
//! sled holds is enough to rebuild it exactly: the latest snapshot image (or
//! genesis) plus the entries applied since, which are read back from the
//! Raft log itself (its segment files, `wal.rs`): an entry is written to
//! disk once, by its append. Every applied batch writes the new
//! last-applied log id (one sled insert; with the membership in one sled
//! batch when that changed); a restart
//! replays the log's entries after the snapshot up to that id: nothing
//! applied twice, nothing skipped. The log never lacks them: the log
//! store's purge removes only entries the snapshot stored here covers
//! (openraft may ask to purge behind a snapshot it is still installing),
//! openraft truncates only entries that were never committed, so never
//! applied; and sled and the log are synced apart, but an entry is applied
//! (and its position recorded here) only once it is durable in the log:
//! `apply` waits for the log's durable mark (`store::durable_mark`;
//! a follower's appends are synced before openraft goes on anyway). A
//! recorded position past the log's end therefore means the log lost
//! entries it had acknowledged: the start is refused
//! ([`RecoveryError::MissingEntry`]). Building a snapshot stores it;
//! installing one replaces snapshot and last-applied id in one batch.
//!
//! A snapshot's bytes are a file of their own in `<dir>/snapshots/`,
//! written under a temporary name, synced, renamed and the directory
//! synced, all on a blocking thread, before sled's small batch names it
//! (`snap/file`); the file it replaced is removed once that batch is
//! durable, and files no record names are removed at open. Kept out of
//! sled because a multi-megabyte batch there held sled's global write
//! lock and filled its write buffers: every other sled write (the applied
//! position, the committed id) then waited tens of milliseconds for the
//! next flush (docs/chaos.md, "Checkpoints at a full state budget").
//!
//! Tree `state` keys: `applied`, `membership`, `snap/meta`, `snap/len`,
//! `snap/file` (the snapshot file's name). Stores written before the
//! snapshot files kept the bytes in sled under `snap/chunk/<u32 BE>`; they
//! are read from there until the next snapshot replaces them. Stores
//! written before issue 12 also kept a second copy of every applied entry
//! under `wal/<u64 BE log index>`; they are removed when such a store is
//! opened.

use std::path::{Path, PathBuf};
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
const KEY_SNAP_FILE: &[u8] = b"snap/file";
/// Where stores written before the snapshot files kept snapshot bytes.
const PREFIX_SNAP_CHUNK: &[u8] = b"snap/chunk/";
/// The store's directory of snapshot files.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// A snapshot file being written (removed at open if one is left).
const SNAPSHOT_TMP_SUFFIX: &str = ".tmp";
const PREFIX_WAL: &[u8] = b"wal/";
/// Entries replayed per `apply_batch` when the state is rebuilt at start.
const REPLAY_CHUNK_ENTRIES: usize = 64;

fn sm_write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn sm_read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

#[derive(Clone)]
pub struct SledStateMachine {
    tree: sled::Tree,
    machine: SharedMachine,
    commit: GroupCommit,
    /// Serialises storing a built snapshot with installing a received one,
    /// so an older snapshot never replaces a newer one, and naming a
    /// snapshot file with reading or removing it.
    snapshot_lock: Arc<Mutex<()>>,
    snapshot_dir: Arc<PathBuf>,
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
    #[error("stored snapshot file {}: {error}", path.display())]
    SnapshotFile {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the store names snapshot file {name:?}, which is not a name this store writes; the store is damaged")]
    SnapshotName { name: String },
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
        let snapshot_dir = durable.dir().join(SNAPSHOT_DIR);
        open_snapshot_dir(&tree, &snapshot_dir)?;
        let mut machine = match read_snapshot(&tree, &snapshot_dir)? {
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
            snapshot_dir: Arc::new(snapshot_dir),
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

/// The snapshot file name the store records, if any.
fn stored_file_name(tree: &sled::Tree) -> Result<Option<String>, RecoveryError> {
    let Some(bytes) = tree.get(KEY_SNAP_FILE)? else {
        return Ok(None);
    };
    let name: String = codec::decode("snapshot file name", &bytes)?;
    if !is_snapshot_file_name(&name) {
        return Err(RecoveryError::SnapshotName { name });
    }
    Ok(Some(name))
}

/// `<20-digit index>-<16 hex digits>.snap`: the only names written here
/// (never a peer's snapshot id, which is text a leader chose).
fn is_snapshot_file_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".snap") else {
        return false;
    };
    let Some((index, unique)) = stem.split_once('-') else {
        return false;
    };
    index.len() == 20
        && index.bytes().all(|b| b.is_ascii_digit())
        && unique.len() == 16
        && unique.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A fresh file name for a snapshot at `index`.
fn new_snapshot_file_name(index: u64) -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{index:020}-{:016x}.snap",
        nanos ^ seq.rotate_left(48) ^ u64::from(std::process::id())
    )
}

/// Creates the snapshot directory (its entry made durable) and removes
/// every file in it the store does not name: a temporary file left by a
/// crash, a snapshot written but never recorded, one replaced before its
/// removal. Runs before anything else uses the store.
fn open_snapshot_dir(tree: &sled::Tree, dir: &Path) -> Result<(), RecoveryError> {
    let file_err = |path: &Path, error| RecoveryError::SnapshotFile {
        path: path.to_path_buf(),
        error,
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
        if let Some(parent) = dir.parent() {
            std::fs::File::open(parent)
                .and_then(|p| p.sync_all())
                .map_err(|e| file_err(parent, e))?;
        }
    }
    let keep = stored_file_name(tree)?;
    // The named file first: a store that lost it is refused before
    // anything else in the directory is removed.
    if let Some(name) = &keep {
        let path = dir.join(name);
        std::fs::metadata(&path).map_err(|e| file_err(&path, e))?;
    }
    let entries = std::fs::read_dir(dir).map_err(|e| file_err(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| file_err(dir, e))?;
        let name = entry.file_name();
        if keep
            .as_deref()
            .is_some_and(|k| name == std::ffi::OsStr::new(k))
        {
            continue;
        }
        let name = name.to_string_lossy();
        if is_snapshot_file_name(&name)
            || name
                .strip_suffix(SNAPSHOT_TMP_SUFFIX)
                .is_some_and(is_snapshot_file_name)
        {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| file_err(&path, e))?;
            tracing::info!(file = %path.display(), "removed a snapshot file the store does not name");
        }
    }
    Ok(())
}

/// The stored snapshot, its file opened but not read yet.
enum Stored {
    /// A pre-file store's snapshot, read from sled.
    Bytes(SnapshotMeta, Vec<u8>),
    /// Metadata, recorded length, the open file and its path.
    File(SnapshotMeta, u64, std::fs::File, PathBuf),
}

fn open_snapshot(tree: &sled::Tree, dir: &Path) -> Result<Option<Stored>, RecoveryError> {
    let Some(meta) = tree.get(KEY_SNAP_META)? else {
        return Ok(None);
    };
    let meta: SnapshotMeta = codec::decode("snapshot metadata", &meta)?;
    let expected: u64 = match tree.get(KEY_SNAP_LEN)? {
        Some(b) => codec::decode("snapshot length", &b)?,
        None => 0,
    };
    if let Some(name) = stored_file_name(tree)? {
        let path = dir.join(name);
        let file = std::fs::File::open(&path).map_err(|error| RecoveryError::SnapshotFile {
            path: path.clone(),
            error,
        })?;
        return Ok(Some(Stored::File(meta, expected, file, path)));
    }
    // A store from before the snapshot files.
    let mut data = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    for item in tree.scan_prefix(PREFIX_SNAP_CHUNK) {
        let (_, chunk) = item?;
        data.extend_from_slice(&chunk);
    }
    check_length(expected, &data)?;
    Ok(Some(Stored::Bytes(meta, data)))
}

fn check_length(expected: u64, data: &[u8]) -> Result<(), RecoveryError> {
    if data.len() as u64 != expected {
        return Err(RecoveryError::SnapshotLength {
            expected,
            found: data.len() as u64,
        });
    }
    Ok(())
}

/// Reads an opened snapshot file whole and checks its recorded length.
fn read_snapshot_file(
    mut file: std::fs::File,
    path: &Path,
    expected: u64,
) -> Result<Vec<u8>, RecoveryError> {
    use std::io::Read as _;
    // No more than one byte past the recorded length is read: a longer
    // file is refused without being read whole.
    let mut data = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    (&mut file)
        .take(expected.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|error| RecoveryError::SnapshotFile {
            path: path.to_path_buf(),
            error,
        })?;
    check_length(expected, &data)?;
    Ok(data)
}

fn read_snapshot(
    tree: &sled::Tree,
    dir: &Path,
) -> Result<Option<(SnapshotMeta, Vec<u8>)>, RecoveryError> {
    match open_snapshot(tree, dir)? {
        None => Ok(None),
        Some(Stored::Bytes(meta, data)) => Ok(Some((meta, data))),
        Some(Stored::File(meta, expected, file, path)) => {
            Ok(Some((meta, read_snapshot_file(file, &path, expected)?)))
        }
    }
}

/// Writes `data` to a new snapshot file in `dir`, durable (file synced,
/// renamed from a temporary name, directory synced) when this returns, on
/// a blocking thread. Returns the file's name.
async fn write_snapshot_file(
    dir: Arc<PathBuf>,
    meta: &SnapshotMeta,
    data: Arc<Vec<u8>>,
) -> Result<String, StorageError> {
    let name = new_snapshot_file_name(meta.last_log_id.map_or(0, |l| l.index));
    let written_name = name.clone();
    let result = crate::blocking::run(move || -> std::io::Result<()> {
        use std::io::Write as _;
        let tmp = dir.join(format!("{written_name}{SNAPSHOT_TMP_SUFFIX}"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(&data)?;
        file.sync_data()?;
        drop(file);
        std::fs::rename(&tmp, dir.join(&written_name))?;
        std::fs::File::open(dir.as_path())?.sync_all()
    })
    .await;
    match result {
        Ok(Ok(())) => Ok(name),
        Ok(Err(e)) => crate::store::durability::disk_failed("write a snapshot file", &e),
        Err(e) => Err(snapshot_write_error(
            meta,
            &std::io::Error::other(format!("the snapshot file's write did not finish: {e}")),
        )),
    }
}

/// Adds "the stored snapshot is `meta`/`len` in file `name`" to `batch`,
/// removing a pre-file store's chunks.
fn stage_snapshot(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    meta: &SnapshotMeta,
    len: usize,
    name: &str,
) -> Result<(), StorageError> {
    for key in tree.scan_prefix(PREFIX_SNAP_CHUNK).keys() {
        batch.remove(key.map_err(|e| snapshot_write_error(meta, &e))?);
    }
    let meta_bytes =
        codec::encode("snapshot metadata", meta).map_err(|e| snapshot_write_error(meta, &e))?;
    let len_bytes = codec::encode("snapshot length", &(len as u64))
        .map_err(|e| snapshot_write_error(meta, &e))?;
    let name_bytes = codec::encode("snapshot file name", &name.to_string())
        .map_err(|e| snapshot_write_error(meta, &e))?;
    batch.insert(KEY_SNAP_META, meta_bytes);
    batch.insert(KEY_SNAP_LEN, len_bytes);
    batch.insert(KEY_SNAP_FILE, name_bytes);
    Ok(())
}

/// The file name the store records now (under the snapshot lock), for
/// removal once the record that replaces it is durable.
fn replaced_file(tree: &sled::Tree, meta: &SnapshotMeta) -> Result<Option<String>, StorageError> {
    stored_file_name(tree).map_err(|e| snapshot_write_error(meta, &e))
}

/// Removes `name` from `dir` once a durable record names another file.
fn remove_replaced(lock: &Mutex<()>, tree: &sled::Tree, dir: &Path, name: Option<String>) {
    let Some(name) = name else { return };
    let _serial = lock.lock().unwrap_or_else(|p| p.into_inner());
    match stored_file_name(tree) {
        Ok(Some(named)) if named == name => return,
        Ok(_) => {}
        // Not sure what is named: kept (the next open removes it if unnamed).
        Err(e) => {
            tracing::warn!(file = %name, error = %e, "cannot read the snapshot record; the replaced file is kept");
            return;
        }
    }
    let path = dir.join(&name);
    if let Err(e) = std::fs::remove_file(&path) {
        // Removed at the next open at the latest.
        tracing::warn!(file = %path.display(), error = %e, "could not remove a replaced snapshot file");
    }
}

/// Removes a snapshot file that was written but not recorded.
fn remove_unrecorded(dir: &Path, name: &str) {
    let path = dir.join(name);
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(file = %path.display(), error = %e, "could not remove an unrecorded snapshot file");
    }
}

/// Takes the latest certified checkpoint when openraft asks for a builder:
/// snapshots are built only from certified checkpoints.
pub struct SledSnapshotBuilder {
    built: Result<(SnapshotMeta, Vec<u8>), StorageError>,
    tree: sled::Tree,
    snapshot_lock: Arc<Mutex<()>>,
    snapshot_dir: Arc<PathBuf>,
    commit: GroupCommit,
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
        crate::hoptrace::mark("SB_start", data.len() as u64);
        // The file first, off the runtime's workers and outside every lock;
        // then the small record naming it.
        let data = Arc::new(data);
        let name = write_snapshot_file(self.snapshot_dir.clone(), &meta, data.clone()).await?;
        let replaced = {
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
                remove_unrecorded(&self.snapshot_dir, &name);
                tracing::info!(index = meta.last_log_id.map(|l| l.index), term = meta.last_log_id.map(|l| l.leader_id.term), snapshot = %meta, "newer snapshot already stored; not replacing it");
                return Ok(Snapshot {
                    meta,
                    snapshot: Box::new(SnapshotBuffer::from_bytes(unshare(data))),
                });
            }
            let replaced = replaced_file(&self.tree, &meta)?;
            let mut batch = sled::Batch::default();
            stage_snapshot(&self.tree, &mut batch, &meta, data.len(), &name)?;
            written("store a built snapshot", self.tree.apply_batch(batch));
            replaced
        };
        // The replaced file goes once the record naming the new one is
        // durable (a crash before leaves it, and the next open removes it).
        self.commit
            .barrier()
            .await
            .map_err(|e| snapshot_write_error(&meta, &e))?;
        remove_replaced(
            &self.snapshot_lock,
            &self.tree,
            &self.snapshot_dir,
            replaced,
        );
        crate::hoptrace::mark("SB_end", 0);
        let data = unshare(data);
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
        // A leader's own entries may be committed before its own sync
        // (`store::durable_mark`): nothing is applied before it is durable.
        let mark = self.commit.mark();
        if !mark.covers(last) {
            mark.wait_covers(last).await;
            crate::hoptrace::mark("SM_durable", last.index);
        }
        // The entries themselves are in the Raft log already (written and
        // synced by their append); only the position moves here.
        let membership = entries.iter().rev().find_map(|entry| match &entry.payload {
            EntryPayload::Membership(m) => {
                Some(StoredMembership::new(Some(*entry.get_log_id()), m.clone()))
            }
            _ => None,
        });
        let applied = codec::encode("last applied log id", &Some(last)).map_err(sm_write_err)?;
        // Hold the machine's lock across the write so the stored and the
        // in-memory state never disagree for a reader.
        let mut machine = self.machine.write();
        match &membership {
            // One key: a plain insert, which takes only the shared side
            // of sled's global lock (a batch takes the exclusive side).
            None => {
                written(
                    "store the applied position",
                    self.tree.insert(KEY_APPLIED, applied),
                );
            }
            Some(m) => {
                let mut batch = sled::Batch::default();
                batch.insert(KEY_APPLIED, applied);
                batch.insert(
                    KEY_MEMBERSHIP,
                    codec::encode("applied membership", m).map_err(sm_write_err)?,
                );
                written("store the applied position", self.tree.apply_batch(batch));
            }
        }
        let r = machine.apply(entries);
        crate::hoptrace::mark("SM_done", last.index);
        Ok(r)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SledSnapshotBuilder {
            built: certified_snapshot(&self.machine.read()),
            tree: self.tree.clone(),
            snapshot_lock: self.snapshot_lock.clone(),
            snapshot_dir: self.snapshot_dir.clone(),
            commit: self.commit.clone(),
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
        let data = Arc::new(data);
        let name = write_snapshot_file(self.snapshot_dir.clone(), meta, data.clone()).await?;
        let mut batch = sled::Batch::default();
        let applied = codec::encode("last applied log id", &meta.last_log_id)
            .map_err(|e| snapshot_write_error(meta, &e))?;
        let membership = codec::encode("applied membership", &meta.last_membership)
            .map_err(|e| snapshot_write_error(meta, &e))?;
        let replaced = {
            let _serial = self.snapshot_lock.lock().unwrap_or_else(|p| p.into_inner());
            stage_snapshot(&self.tree, &mut batch, meta, data.len(), &name)?;
            batch.insert(KEY_APPLIED, applied);
            batch.insert(KEY_MEMBERSHIP, membership);
            let replaced = replaced_file(&self.tree, meta)?;
            let mut current = self.machine.write();
            written("store an installed snapshot", self.tree.apply_batch(batch));
            *current = machine;
            replaced
        };
        // openraft may purge the log behind this snapshot before it is
        // stored; the purge keeps what the stored snapshot does not cover
        // (sled_log.rs). Make the install durable on its own too.
        self.commit
            .barrier()
            .await
            .map_err(|e| snapshot_write_error(meta, &e))?;
        remove_replaced(
            &self.snapshot_lock,
            &self.tree,
            &self.snapshot_dir,
            replaced,
        );
        tracing::info!(index = meta.last_log_id.map(|l| l.index), term = meta.last_log_id.map(|l| l.leader_id.term), snapshot = %meta, bytes = data.len(), "snapshot installed");
        crate::metrics::metrics()
            .snapshot_bytes
            .set(i64::try_from(data.len()).unwrap_or(i64::MAX));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        // The record read and the file opened under the lock (an open file
        // stays readable if a newer snapshot then removes it); the bytes
        // read on the blocking pool, outside it.
        let opened = {
            let _serial = self.snapshot_lock.lock().unwrap_or_else(|p| p.into_inner());
            open_snapshot(&self.tree, &self.snapshot_dir)
        };
        let read = match opened {
            Ok(None) => return Ok(None),
            Ok(Some(Stored::Bytes(meta, data))) => Ok((meta, data)),
            Ok(Some(Stored::File(meta, expected, file, path))) => {
                let shown = path.clone();
                crate::blocking::run(move || read_snapshot_file(file, &path, expected))
                    .await
                    .unwrap_or_else(|e| {
                        Err(RecoveryError::SnapshotFile {
                            path: shown,
                            error: std::io::Error::other(format!("the read did not finish: {e}")),
                        })
                    })
                    .map(|data| (meta, data))
            }
            Err(e) => Err(e),
        };
        match read {
            Ok((meta, data)) => Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(SnapshotBuffer::from_bytes(data)),
            })),
            Err(e) => Err(sm_read_err(e)),
        }
    }
}

/// The bytes of `data`, copied only if another holder is left (the write
/// thread's handle is gone once its write returned).
fn unshare(data: Arc<Vec<u8>>) -> Vec<u8> {
    Arc::try_unwrap(data).unwrap_or_else(|shared| shared.as_ref().clone())
}
