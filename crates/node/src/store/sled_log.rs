//! The Raft log and vote on sled, durable against power loss.
//!
//! Tree `raft_log`: big-endian log index -> the entry record
//! (`codec::encode_entry`: `ENTRY_FORMAT_VERSION`, then postcard of the whole
//! openraft entry, log id and payload; a record of a version this binary
//! cannot read is refused, naming both versions). Tree
//! `raft_meta`: the vote, the last purged log id and the committed log id.
//! Appends are written at once (readable immediately) and acknowledged by the
//! group-commit thread after the sync; votes and truncations wait for their
//! sync before returning; a purge first syncs (so the snapshot that covers
//! the purged entries is durable before they disappear).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogState, RaftLogId, RaftLogReader, StorageIOError,
};

use crate::codec;
use crate::store::durability::{written, DurableDb, GroupCommit};
use crate::types::{LogId, RaftEntry, StorageError, TypeConfig, Vote};

const KEY_VOTE: &[u8] = b"vote";
const KEY_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";

/// Most entries one read returns to a replication stream (openraft asks for
/// more when it needs them).
pub const MAX_ENTRIES_PER_READ: u64 = 4096;
/// Log entries removed per sled batch when the log is purged.
pub const PURGE_BATCH_ENTRIES: usize = 512;

#[derive(Clone)]
pub struct SledLogStore {
    log: sled::Tree,
    meta: sled::Tree,
    /// The state machine's tree, read for the stored snapshot's index.
    state: sled::Tree,
    commit: GroupCommit,
    checks: crate::store::AppendChecks,
}

impl crate::store::ChecksOnAppend for SledLogStore {
    fn check_on_append(&mut self, machine: crate::store::SharedMachine) {
        self.checks.set(&machine);
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

impl SledLogStore {
    pub fn open(durable: &Arc<DurableDb>, commit: GroupCommit) -> Result<Self, sled::Error> {
        Ok(Self {
            log: durable.db().open_tree("raft_log")?,
            meta: durable.db().open_tree("raft_meta")?,
            state: durable.db().open_tree("state")?,
            commit,
            checks: crate::store::AppendChecks::default(),
        })
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

    async fn barrier(&self, subject: ErrorSubject<u64>) -> Result<(), StorageError> {
        self.commit
            .barrier()
            .await
            .map_err(|e| io_err(subject, ErrorVerb::Write, e))
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
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
            Bound::Included(i) => Bound::Included(index_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        crate::hoptrace::mark("RD", start);
        for item in self.log.range((Bound::Included(index_key(start)), end)) {
            let (_, value) = item.map_err(read_logs_err)?;
            out.push(decode_entry(&value)?);
        }
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
        let last = match self.log.last().map_err(read_logs_err)? {
            Some((_, value)) => Some(*decode_entry(&value)?.get_log_id()).max(last_purged),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote)?;
        self.barrier(ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    /// Not synced on its own: it is a hint for re-applying after a restart,
    /// and it becomes durable with the next append or vote.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        crate::hoptrace::mark("SC", 0);
        self.put_meta(KEY_COMMITTED, &committed)
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
        let mut batch = sled::Batch::default();
        for entry in &entries {
            crate::hoptrace::mark("LA", entry.get_log_id().index);
            // The same bound as the read above: a record that could not be
            // read back is refused here, before anything is written.
            let bytes = codec::encode_entry("log entry", entry).map_err(write_logs_err)?;
            batch.insert(&index_key(entry.get_log_id().index), bytes);
        }
        written("append to the Raft log", self.log.apply_batch(batch));
        crate::hoptrace::mark("LA_w", 0);
        let synced = self
            .commit
            .after_sync(callback)
            .await
            .map_err(write_logs_err);
        // The sync is requested: the signature checks run while it lasts.
        self.checks.start(entries);
        crate::metrics::observe_since(&crate::metrics::metrics().append_seconds, started);
        synced
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // One atomic batch: a crash leaves the whole suffix or none of it.
        let keys: Vec<_> = self
            .log
            .range(index_key(log_id.index)..)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(write_logs_err)?;
        let mut batch = sled::Batch::default();
        for key in &keys {
            batch.remove(key);
        }
        written("truncate the Raft log", self.log.apply_batch(batch));
        self.barrier(ErrorSubject::Logs).await
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
        // id; the next purge removes them).
        let covered =
            crate::store::sled_sm::stored_snapshot_index(&self.state).map_err(write_logs_err)?;
        let upto = match covered {
            Some(c) => c.min(log_id.index),
            None => return Ok(()),
        };
        // In bounded batches: one batch of every purged key (thousands of
        // entries at a snapshot) held a large transient allocation.
        loop {
            let keys: Vec<_> = self
                .log
                .range(..=index_key(upto))
                .keys()
                .take(PURGE_BATCH_ENTRIES)
                .collect::<Result<_, _>>()
                .map_err(write_logs_err)?;
            if keys.is_empty() {
                return Ok(());
            }
            let mut batch = sled::Batch::default();
            for key in &keys {
                debug_assert!(key_index(key).is_some_and(|i| i <= upto));
                batch.remove(key);
            }
            written("purge the Raft log", self.log.apply_batch(batch));
        }
    }
}
