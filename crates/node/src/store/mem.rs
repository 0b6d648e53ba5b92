//! In-memory log store and state machine: the same contract as the sled
//! stores without a disk, for the deterministic simulation (turmoil) and for
//! tests. "Persisted" here means "recorded in this process".

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{AnyError, LogState, RaftLogId, RaftLogReader, RaftSnapshotBuilder, StorageIOError};

use crate::store::machine::{GovernanceMachine, SharedMachine};
use crate::store::snapshot::{certified_snapshot, install_image};
use crate::store::SnapshotBuffer;
use crate::types::{
    Applied, LogId, RaftEntry, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
    Vote,
};

#[derive(Default)]
struct MemLog {
    entries: BTreeMap<u64, RaftEntry>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

/// The Raft log in memory.
#[derive(Clone, Default)]
pub struct MemLogStore {
    inner: Arc<Mutex<MemLog>>,
}

impl MemLogStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemLog> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RaftLogReader<TypeConfig> for MemLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<RaftEntry>, StorageError> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for MemLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let log = self.lock();
        let last = log.entries.values().next_back().map(|e| *e.get_log_id());
        Ok(LogState {
            last_purged_log_id: log.last_purged,
            last_log_id: last.or(log.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
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
        {
            let mut log = self.lock();
            for entry in entries {
                log.entries.insert(entry.get_log_id().index, entry);
            }
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut log = self.lock();
        let _removed = log.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut log = self.lock();
        log.last_purged = Some(log_id);
        let kept = log.entries.split_off(&(log_id.index + 1));
        log.entries = kept;
        Ok(())
    }
}

struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The governance state machine in memory.
#[derive(Clone)]
pub struct MemStateMachine {
    machine: SharedMachine,
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
}

impl MemStateMachine {
    pub fn new(genesis_state: neuroshard_governance::GovernanceState) -> Self {
        Self {
            machine: SharedMachine::new(GovernanceMachine::new(genesis_state)),
            snapshot: Arc::default(),
        }
    }

    /// The machine, for status and queries.
    pub fn shared(&self) -> SharedMachine {
        self.machine.clone()
    }

    fn stored(&self) -> MutexGuard<'_, Option<StoredSnapshot>> {
        self.snapshot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Takes the latest certified checkpoint when openraft asks for a builder:
/// snapshots are built only from certified checkpoints.
pub struct MemSnapshotBuilder {
    built: Result<(SnapshotMeta, Vec<u8>), StorageError>,
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for MemSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (meta, data) = std::mem::replace(
            &mut self.built,
            Err(
                StorageIOError::write_snapshot(None, AnyError::error("snapshot already built"))
                    .into(),
            ),
        )?;
        let mut stored = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        // Never replace a newer snapshot installed while this one was built.
        if stored
            .as_ref()
            .is_none_or(|s| s.meta.last_log_id < meta.last_log_id)
        {
            *stored = Some(StoredSnapshot {
                meta: meta.clone(),
                data: data.clone(),
            });
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotBuffer::from_bytes(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for MemStateMachine {
    type SnapshotBuilder = MemSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let m = self.machine.read();
        Ok((m.last_applied, m.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = RaftEntry> + Send,
        I::IntoIter: Send,
    {
        Ok(self.machine.write().apply(entries.into_iter().collect()))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        MemSnapshotBuilder {
            built: certified_snapshot(&self.machine.read()),
            snapshot: self.snapshot.clone(),
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
        let machine = install_image(meta, &data, &self.machine.read())?;
        let mut stored = self.stored();
        *self.machine.write() = machine;
        *stored = Some(StoredSnapshot {
            meta: meta.clone(),
            data,
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.stored().as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(SnapshotBuffer::from_bytes(s.data.clone())),
        }))
    }
}
