//! The Raft log and vote, durable against power loss.
//!
//! The entries are in the log's own segment files (`wal.rs`), each one the
//! entry record (`codec::encode_entry`: `ENTRY_FORMAT_VERSION`, then
//! postcard of the whole openraft entry, log id and payload; a record of a
//! version this binary cannot read is refused, naming both versions). sled
//! tree `raft_meta`: the vote, the last purged log id and the committed log
//! id. Appends are written at once (readable immediately) and acknowledged
//! by the group-commit thread after the log's sync, except the leader's
//! own appends under `raft.replicate_before_sync`, acknowledged at once
//! (`store::durable_mark`: what the state machine and the peers then wait
//! for); votes wait for their
//! sync before returning, truncations for their own; a purge first syncs
//! (so the snapshot that covers the purged entries is durable before they
//! disappear), then records the purged id durably, then deletes segments.
//!
//! Stores written before the log had its own files kept the entries in
//! sled tree `raft_log`: opening such a store moves them into the segment
//! files (synced) before it empties the tree.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogState, RaftLogId, RaftLogReader, StorageIOError,
};

use crate::codec;
use crate::store::durability::{written, DurableDb, GroupCommit};
use crate::store::wal::{Wal, WalError};
use crate::types::{LogId, NodeId, RaftEntry, StorageError, TypeConfig, Vote};

const KEY_VOTE: &[u8] = b"vote";
const KEY_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";

/// Most entries one read returns to a replication stream (openraft asks for
/// more when it needs them).
pub const MAX_ENTRIES_PER_READ: u64 = 4096;

#[derive(Clone)]
pub struct SledLogStore {
    wal: Arc<Wal>,
    meta: sled::Tree,
    /// The state machine's tree, read for the stored snapshot's index.
    state: sled::Tree,
    commit: GroupCommit,
    checks: crate::store::AppendChecks,
    /// The vote as last saved, committed or not (the appending handle's own
    /// copy: log readers never append). Read back uncommitted from disk
    /// after a restart when it was this validator's own
    /// (`store::stored_vote`).
    vote: Option<Vote>,
    /// `Some(this validator)` when its own appends as leader are
    /// acknowledged before their sync (`store::durable_mark`).
    early_as: Option<NodeId>,
}

impl crate::store::ChecksOnAppend for SledLogStore {
    fn check_on_append(&mut self, machine: crate::store::SharedMachine) {
        self.checks.set(&machine);
    }

    fn replicate_before_sync(&mut self, me: NodeId) {
        self.early_as = Some(me);
        self.commit.mark().enable();
    }

    fn durable_mark(&self) -> crate::store::DurableMark {
        self.commit.mark().clone()
    }
}

fn io_err(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn read_logs_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_logs_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

/// The sled tree that held the log's entries before they had their own
/// files (read once, to move them).
const LEGACY_LOG_TREE: &str = "raft_log";
/// Bytes of entries moved from that tree per write.
const LEGACY_MOVE_CHUNK_BYTES: usize = 8 * 1024 * 1024;

impl SledLogStore {
    pub fn open(
        durable: &Arc<DurableDb>,
        wal: Arc<Wal>,
        commit: GroupCommit,
    ) -> Result<Self, crate::store::RecoveryError> {
        move_legacy_log(durable, &wal)?;
        // What a killed process wrote is still in the page cache: synced
        // now, so the mark starts at the log's end.
        wal.sync()?;
        let mut this = Self {
            wal,
            meta: durable.db().open_tree("raft_meta")?,
            state: durable.db().open_tree("state")?,
            commit,
            checks: crate::store::AppendChecks::default(),
            vote: None,
            early_as: None,
        };
        this.vote = match this.meta.get(KEY_VOTE)? {
            None => None,
            Some(bytes) => Some(codec::decode("raft metadata", &bytes)?),
        };
        let purged: Option<LogId> = match this.meta.get(KEY_PURGED)? {
            None => None,
            Some(bytes) => Some(codec::decode("raft metadata", &bytes)?),
        };
        let last = match this.wal.last_index() {
            None => None,
            Some(last) => match this.wal.read(last, last + 1, 1)?.first() {
                Some(bytes) => {
                    Some(*codec::decode_entry::<RaftEntry>("log entry", bytes)?.get_log_id())
                }
                None => None,
            },
        };
        this.commit.mark().reset(last.max(purged));
        Ok(this)
    }

    /// Whether `entries` are this validator's own, appended while it leads
    /// (its vote committed for itself, the entries of that term): their
    /// callback may fire before their sync (`store::durable_mark`).
    fn own_leader_append(&self, entries: &[RaftEntry]) -> bool {
        crate::store::own_leader_append(self.early_as, self.vote.as_ref(), entries)
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &'static [u8],
    ) -> Result<Option<T>, StorageError> {
        match self.meta.get(key).map_err(read_logs_err)? {
            None => Ok(None),
            Some(bytes) => codec::decode("raft metadata", &bytes)
                .map(Some)
                .map_err(read_logs_err),
        }
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &'static [u8],
        value: &T,
    ) -> Result<(), StorageError> {
        let bytes = codec::encode("raft metadata", value).map_err(write_logs_err)?;
        written("write Raft metadata", self.meta.insert(key, bytes));
        Ok(())
    }

    /// The log's segment files.
    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }

    /// The id of the last entry held, if any.
    fn last_held(&self) -> Result<Option<LogId>, StorageError> {
        let Some(last) = self.wal.last_index() else {
            return Ok(None);
        };
        match self
            .wal
            .read(last, last + 1, 1)
            .map_err(read_logs_err)?
            .first()
        {
            Some(bytes) => Ok(Some(*decode_entry(bytes)?.get_log_id())),
            None => Ok(None),
        }
    }

    async fn barrier(&self, subject: ErrorSubject<u64>) -> Result<(), StorageError> {
        self.commit
            .barrier()
            .await
            .map_err(|e| io_err(subject, ErrorVerb::Write, e))
    }
}

fn key_index(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// Moves the entries of a store written before the log had its own files
/// into them: written and synced before the old tree is emptied, and
/// entries the files already hold (a move cut short) are not written again.
fn move_legacy_log(durable: &DurableDb, wal: &Wal) -> Result<(), crate::store::RecoveryError> {
    if !durable
        .db()
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == LEGACY_LOG_TREE.as_bytes())
    {
        return Ok(());
    }
    let tree = durable.db().open_tree(LEGACY_LOG_TREE)?;
    if tree.is_empty() {
        // Dropped too: its presence turns off the missing-log check.
        durable.db().drop_tree(LEGACY_LOG_TREE)?;
        return Ok(());
    }
    let held = wal.last_index();
    let mut moved = 0usize;
    let mut chunk = Vec::new();
    let mut chunk_bytes = 0usize;
    for item in tree.iter() {
        let (key, value) = item?;
        let Some(index) = key_index(&key) else {
            continue;
        };
        if held.is_some_and(|h| index <= h) {
            continue;
        }
        chunk_bytes += value.len();
        chunk.push((index, value.to_vec()));
        // At most one value past LEGACY_MOVE_CHUNK_BYTES in memory.
        if chunk_bytes >= LEGACY_MOVE_CHUNK_BYTES {
            moved += chunk.len();
            chunk_bytes = 0;
            wal.append(&std::mem::take(&mut chunk))?;
        }
    }
    moved += chunk.len();
    wal.append(&chunk)?;
    wal.sync()?;
    durable.db().drop_tree(LEGACY_LOG_TREE)?;
    durable
        .sync()
        .map_err(|e| crate::store::RecoveryError::Sled(sled::Error::Io(e)))?;
    tracing::info!(
        moved,
        "moved the Raft log's entries from sled into their own files (raft-wal/)"
    );
    Ok(())
}

fn decode_entry(bytes: &[u8]) -> Result<RaftEntry, StorageError> {
    codec::decode_entry("log entry", bytes).map_err(read_logs_err)
}

impl RaftLogReader<TypeConfig> for SledLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<RaftEntry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        // Entries at or below the purged id may still be on disk (`purge`
        // keeps what the stored snapshot does not cover yet): never read.
        let purged: Option<LogId> = self.get_meta(KEY_PURGED)?;
        let start = match purged {
            Some(p) => start.max(p.index.saturating_add(1)),
            None => start,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        crate::hoptrace::mark("RD", start);
        let out = self
            .wal
            .read(start, end, usize::MAX)
            .map_err(read_logs_err)?
            .iter()
            .map(|bytes| decode_entry(bytes))
            .collect::<Result<Vec<_>, _>>()?;
        crate::hoptrace::mark("RD_end", out.len() as u64);
        Ok(out)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<RaftEntry>, StorageError> {
        let end = end.min(start.saturating_add(MAX_ENTRIES_PER_READ));
        self.try_get_log_entries(start..end).await
    }
}

impl RaftLogStorage<TypeConfig> for SledLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta(KEY_PURGED)?;
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: self.last_held()?.max(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        // A leader's own vote goes to disk uncommitted: `store::stored_vote`.
        self.put_meta(KEY_VOTE, &crate::store::stored_vote(self.early_as, vote))?;
        self.barrier(ErrorSubject::Vote).await?;
        self.vote = Some(*vote);
        Ok(())
    }

    /// openraft reads it once, at start: as stored (`store::stored_vote`).
    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    /// Not synced on its own: it is a hint for re-applying after a restart,
    /// and it becomes durable with the next sync of sled (the sled-sync
    /// thread's, within `SLED_SYNC_INTERVAL`, or a vote's or purge's).
    /// Never past the durable mark: a restart re-applies only entries its
    /// log kept.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        crate::hoptrace::mark("SC", 0);
        self.put_meta(KEY_COMMITTED, &self.commit.mark().clamp(committed))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = RaftEntry> + Send,
        I::IntoIter: Send,
    {
        let started = std::time::Instant::now();
        let entries: Vec<RaftEntry> = entries.into_iter().collect();
        let mut records = Vec::with_capacity(entries.len());
        for entry in &entries {
            crate::hoptrace::mark("LA", entry.get_log_id().index);
            // The same bound as the read above: a record that could not be
            // read back is refused here, before anything is written.
            let bytes = codec::encode_entry("log entry", entry).map_err(write_logs_err)?;
            records.push((entry.get_log_id().index, bytes));
        }
        match self.wal.append(&records) {
            Ok(()) => {}
            // openraft's own order broken: refused, nothing written.
            Err(e @ (WalError::OutOfOrder { .. } | WalError::TooLarge { .. })) => {
                return Err(write_logs_err(e))
            }
            Err(e) => crate::store::durability::disk_failed("append to the Raft log", &e),
        }
        crate::hoptrace::mark("LA_w", 0);
        let Some(last) = entries.last().map(|e| *e.get_log_id()) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let epoch = self.commit.mark().epoch();
        let callback = if self.own_leader_append(&entries) {
            // Readable now: openraft may replicate while the sync runs;
            // the apply waits for the mark (`store::durable_mark`).
            callback.log_io_completed(Ok(()));
            None
        } else {
            Some(callback)
        };
        let synced = self
            .commit
            .after_sync(callback, last, epoch)
            .await
            .map_err(write_logs_err);
        // The sync is requested: the signature checks run while it lasts.
        self.checks.start(entries);
        crate::metrics::observe_since(&crate::metrics::metrics().append_seconds, started);
        synced
    }

    /// Durable when it returns (the log removes the suffix from its end
    /// back, so a crash leaves a prefix).
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        written(
            "truncate the Raft log",
            self.wal.truncate_from(log_id.index),
        );
        // Everything left is durable (synced here, in case a leader's
        // appends were still waiting for theirs); syncs queued before do
        // not count.
        written("sync the Raft log", self.wal.sync());
        let purged: Option<LogId> = self.get_meta(KEY_PURGED)?;
        self.commit.mark().reset(self.last_held()?.max(purged));
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The snapshot and state machine that cover these entries must be
        // durable before the entries can go.
        self.barrier(ErrorSubject::Logs).await?;
        self.put_meta(KEY_PURGED, &log_id)?;
        // The state machine replays the log after its *stored* snapshot on
        // restart (sled_sm.rs), and openraft may purge behind a snapshot
        // it is still installing: entries the stored snapshot does not
        // cover yet stay on disk (openraft never reads below the purged
        // id; the next purge removes them). Read before the barrier below,
        // so what it covers is durable once that barrier returns: an
        // install recorded after the read is not counted, even if it is
        // visible (not yet durable) by the time the segments go.
        let covered =
            crate::store::sled_sm::stored_snapshot_index(&self.state).map_err(write_logs_err)?;
        // The purged id is durable before any segment goes: a restart never
        // finds the log starting past its purged id + 1.
        self.barrier(ErrorSubject::Logs).await?;
        // Everything up to it is committed and never read from this log
        // again (a snapshot covers it: openraft purges behind an applied or
        // installed one): after an installed snapshot the log may hold
        // nothing above it, and the mark must not stay at an older entry
        // (a committed id sent to a follower must be one of this log's).
        self.commit
            .mark()
            .synced(log_id, self.commit.mark().epoch());
        let upto = match covered {
            Some(c) => c.min(log_id.index),
            None => return Ok(()),
        };
        // Whole segments only: entries above `upto` in a segment keep it.
        written("purge the Raft log", self.wal.purge_upto(upto));
        Ok(())
    }
}
