//! In-memory log store and state machine on a simulated disk: the sled
//! stores' durability contract without a disk, for the deterministic
//! simulation (turmoil) and for tests.
//!
//! The simulated disk ([`MemDisk`]) keeps two images of what the durable
//! store would hold — the Raft log and its metadata (vote, committed hint,
//! purged id) and the state machine's records (last-applied id,
//! membership, the stored snapshot) — in one durability domain. The real
//! store has two (the log's segment files and sled, `store::open_sled`),
//! synced apart; what it acknowledges waits for the log's sync in both,
//! and an entry is applied only after it, so the states the real store can
//! come back in after a power loss are the ones simulated here plus sled's
//! records being older (up to the sled-sync thread's 50 ms), which a
//! restart handles by replaying more of the log. The simulation does not
//! produce that case; `chaos/powerloss` (real processes) does:
//!
//! * **durable**: what survives a power loss;
//! * **current**: durable plus every write since the last sync (what reads
//!   see, like sled's page cache). The writes since the last sync are kept
//!   in order (the volatile layer).
//!
//! Only a simulated `fdatasync` moves writes to the durable image: what
//! sled's own flush does (`sync_file_range(2)`, which neither flushes the
//! drive's write cache nor persists the file size) counts as volatile here.
//! A sync is performed asynchronously by a group-commit task, like
//! `durability::GroupCommit`'s thread: it takes every request queued, waits
//! [`MemDiskOptions::sync_delay`] (the fdatasync's duration: writes made
//! meanwhile wait for the next sync) and makes durable exactly the writes
//! made before it started. What waits for a sync mirrors the sled stores
//! (`sled_log.rs`, `sled_sm.rs`):
//!
//! * an append's openraft callback fires only after the sync that covers
//!   it, except a leader's own appends under `raft.replicate_before_sync`
//!   (fired at once; the state machine waits for the durable mark, which
//!   each sync sets to the durable image's last entry: `store::durable_mark`); a vote and a truncation return only after their sync; a purge
//!   syncs first, then removes (only what the stored snapshot covers);
//!   installing a snapshot stores it and then syncs;
//! * the committed hint, the state machine's last-applied id (and
//!   membership) and a built snapshot are written and not synced on their
//!   own: they become durable with the next sync.
//!
//! [`MemDisk::power_loss`] (the machine lost power: every process on it
//! died) drops the volatile layer, counting what it drops by its encoded
//! size; [`MemStateMachine::reopen`] then rebuilds the governance state as
//! `sled_sm::open` does: the stored snapshot (or genesis) plus the log's
//! entries after it up to the stored last-applied id.
//!
//! Not modelled: a power loss that keeps part of the volatile layer (sled
//! recovers a prefix of its writes; here a sync is all or nothing, so what
//! survives is always such a prefix, but never a partial one), torn or
//! corrupted writes, failing syncs (the sled store exits on one).
//!
//! [`MemDiskOptions::unsynced_acks`] is for tests only: it removes the
//! fdatasync (appends, votes and truncations are acknowledged at once and
//! nothing ever becomes durable), so a test can show that the chaos
//! checkers catch what that loses.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, EntryPayload, LogState, RaftLogId, RaftLogReader, RaftSnapshotBuilder, StorageIOError,
};
use tokio::sync::{mpsc, oneshot};

use neuroshard_governance::GovernanceState;

use crate::checkpoint::{restore_stored, CheckpointError};
use crate::codec;
use crate::store::machine::{GovernanceMachine, SharedMachine};
use crate::store::snapshot::{certified_snapshot, install_image};
use crate::store::SnapshotBuffer;
use crate::types::{
    Applied, LogId, RaftEntry, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
    Vote,
};

/// How the simulated disk syncs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemDiskOptions {
    /// How long one simulated fdatasync takes (tokio time: simulated time
    /// in turmoil). Zero: the sync task still runs on its own, after the
    /// writer yields.
    pub sync_delay: Duration,
    /// TEST ONLY: acknowledge appends, votes and truncations at once and
    /// never make anything durable — what deleting the fdatasync would do.
    /// A power loss then drops everything. No configuration file reaches
    /// it; only tests and the chaos harness set it.
    pub unsynced_acks: bool,
}

/// What the simulated disk did, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Writes (appends, votes, positions, snapshots, …).
    pub writes: u64,
    /// Completed simulated fdatasyncs.
    pub syncs: u64,
    /// Power losses suffered.
    pub power_losses: u64,
    /// Writes dropped by power losses.
    pub writes_dropped: u64,
    /// Encoded bytes of what power losses dropped (the records the sled
    /// store would have written: entry records, metadata, positions,
    /// snapshot chunks; a removal counts its key).
    pub bytes_dropped: u64,
    /// Appended log entries dropped by power losses.
    pub entries_dropped: u64,
    /// Of those, entries whose append had been acknowledged to openraft as
    /// durable: always 0 unless [`MemDiskOptions::unsynced_acks`]. (A
    /// leader's own appends acknowledged before their sync are not
    /// counted: nothing is applied or told to others before that sync.)
    pub acknowledged_entries_dropped: u64,
}

impl DiskStats {
    pub fn add(&mut self, other: &DiskStats) {
        self.writes += other.writes;
        self.syncs += other.syncs;
        self.power_losses += other.power_losses;
        self.writes_dropped += other.writes_dropped;
        self.bytes_dropped += other.bytes_dropped;
        self.entries_dropped += other.entries_dropped;
        self.acknowledged_entries_dropped += other.acknowledged_entries_dropped;
    }
}

/// What one power loss dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PowerLoss {
    pub writes: u64,
    pub bytes: u64,
    pub entries: u64,
    pub acknowledged_entries: u64,
}

/// The rebuilt state machine is not what the durable image implies.
#[derive(Debug, thiserror::Error)]
pub enum MemRecoveryError {
    #[error("stored snapshot: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("the durable Raft log lacks entry {index}, which the state machine applied after its snapshot; the store is damaged")]
    MissingEntry { index: u64 },
}

#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Arc<Vec<u8>>,
}

/// One image of the disk: the trees of the sled database.
#[derive(Clone, Default)]
struct Image {
    entries: BTreeMap<u64, RaftEntry>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    applied: Option<LogId>,
    membership: Option<StoredMembership>,
    snapshot: Option<StoredSnapshot>,
}

/// One write, as the sled stores make it (one sled batch each).
enum Write {
    Append(Vec<RaftEntry>),
    Vote(Vote),
    Committed(Option<LogId>),
    /// Removes the entries from `from` on (`removed` of them).
    Truncate {
        from: u64,
        removed: u64,
    },
    /// Records the purged id and removes the entries up to `upto`.
    Purge {
        log_id: LogId,
        upto: Option<u64>,
        removed: u64,
    },
    Applied {
        last: LogId,
        membership: Option<StoredMembership>,
    },
    /// A built snapshot replaces the stored one.
    Snapshot(StoredSnapshot),
    /// An installed snapshot replaces the stored one and the position.
    Install(StoredSnapshot),
}

impl Image {
    fn apply(&mut self, write: &Write) {
        match write {
            Write::Append(entries) => {
                for e in entries {
                    self.entries.insert(e.get_log_id().index, e.clone());
                }
            }
            Write::Vote(v) => self.vote = Some(*v),
            Write::Committed(c) => self.committed = *c,
            Write::Truncate { from, .. } => {
                let _removed = self.entries.split_off(from);
            }
            Write::Purge { log_id, upto, .. } => {
                self.last_purged = Some(*log_id);
                if let Some(upto) = upto {
                    self.entries = self.entries.split_off(&(upto + 1));
                }
            }
            Write::Applied { last, membership } => {
                self.applied = Some(*last);
                if let Some(m) = membership {
                    self.membership = Some(m.clone());
                }
            }
            Write::Snapshot(s) => self.snapshot = Some(s.clone()),
            Write::Install(s) => {
                self.applied = s.meta.last_log_id;
                self.membership = Some(s.meta.last_membership.clone());
                self.snapshot = Some(s.clone());
            }
        }
    }
}

/// Key bytes of a removed record (a big-endian log index).
const KEY_BYTES: u64 = 8;

fn encoded<T: serde::Serialize>(value: &T) -> u64 {
    codec::encode("simulated disk record", value).map_or(0, |b| b.len() as u64)
}

fn snapshot_bytes(s: &StoredSnapshot) -> u64 {
    // `snap/meta`, `snap/len` and the bytes (`sled_sm::stage_snapshot`).
    s.data.len() as u64 + encoded(&s.meta) + encoded(&(s.data.len() as u64))
}

impl Write {
    /// The encoded size of the records this write makes (sled keys and
    /// values; a removal counts its key).
    fn bytes(&self) -> u64 {
        match self {
            Write::Append(entries) => entries
                .iter()
                .map(|e| {
                    KEY_BYTES
                        + codec::encode_entry("simulated disk record", e)
                            .map_or(0, |b| b.len() as u64)
                })
                .sum(),
            Write::Vote(v) => encoded(v),
            Write::Committed(c) => encoded(c),
            Write::Truncate { removed, .. } => removed * KEY_BYTES,
            Write::Purge {
                log_id, removed, ..
            } => encoded(log_id) + removed * KEY_BYTES,
            Write::Applied { last, membership } => {
                encoded(&Some(*last)) + membership.as_ref().map_or(0, encoded)
            }
            Write::Snapshot(s) => snapshot_bytes(s),
            Write::Install(s) => {
                snapshot_bytes(s) + encoded(&s.meta.last_log_id) + encoded(&s.meta.last_membership)
            }
        }
    }

    fn entries(&self) -> u64 {
        match self {
            Write::Append(entries) => entries.len() as u64,
            _ => 0,
        }
    }
}

enum SyncRequest {
    /// Fire an append's callback (if still owed: a leader's own appends
    /// had theirs fired at once, `store::durable_mark`) once the writes up
    /// to `seq` are durable.
    Log {
        callback: Option<LogFlushed<TypeConfig>>,
        seq: u64,
    },
    /// Wake a caller once everything written before is durable.
    Barrier(oneshot::Sender<()>),
}

struct DiskState {
    durable: Image,
    current: Image,
    /// Writes since the last sync, in order, with their sequence numbers.
    volatile: Vec<(u64, Write)>,
    next_seq: u64,
    /// Appends up to this sequence number (exclusive) were acknowledged.
    acked_below: u64,
    /// Bumped by every power loss: a sync started before it is void.
    power_cycle: u64,
    stats: DiskStats,
    syncer: Option<mpsc::UnboundedSender<SyncRequest>>,
}

struct DiskShared {
    state: Mutex<DiskState>,
    options: MemDiskOptions,
    /// The last entry of the durable image's log (`store::durable_mark`).
    mark: crate::store::DurableMark,
}

/// The simulated disk under one validator's log and state machine.
#[derive(Clone)]
pub struct MemDisk {
    shared: Arc<DiskShared>,
}

impl Default for MemDisk {
    fn default() -> Self {
        Self::new(MemDiskOptions::default())
    }
}

impl MemDisk {
    pub fn new(options: MemDiskOptions) -> Self {
        Self {
            shared: Arc::new(DiskShared {
                state: Mutex::new(DiskState {
                    durable: Image::default(),
                    current: Image::default(),
                    volatile: Vec::new(),
                    next_seq: 0,
                    acked_below: 0,
                    power_cycle: 0,
                    stats: DiskStats::default(),
                    syncer: None,
                }),
                options,
                mark: crate::store::DurableMark::default(),
            }),
        }
    }

    pub fn options(&self) -> MemDiskOptions {
        self.shared.options
    }

    /// How far the log is durable on this disk.
    pub fn mark(&self) -> &crate::store::DurableMark {
        &self.shared.mark
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        lock_state(&self.shared)
    }

    /// What the disk did so far.
    pub fn stats(&self) -> DiskStats {
        self.lock().stats
    }

    /// Bytes written and not yet synced.
    pub fn volatile_bytes(&self) -> u64 {
        self.lock().volatile.iter().map(|(_, w)| w.bytes()).sum()
    }

    /// Records a write in the current image and the volatile layer;
    /// returns its sequence number.
    fn write(&self, write: Write) -> u64 {
        let mut s = self.lock();
        s.current.apply(&write);
        let seq = s.next_seq;
        s.next_seq += 1;
        s.stats.writes += 1;
        s.volatile.push((seq, write));
        seq
    }

    fn read<T>(&self, f: impl FnOnce(&Image) -> T) -> T {
        f(&self.lock().current)
    }

    /// Hands `request` to the group-commit task of the running process,
    /// starting one if the last one died with its process (a crash drops
    /// the runtime it ran on).
    fn request(&self, request: SyncRequest) {
        let mut s = self.lock();
        let request = match s.syncer.as_ref() {
            Some(tx) => match tx.send(request) {
                Ok(()) => return,
                Err(mpsc::error::SendError(request)) => request,
            },
            None => request,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _sent = tx.send(request);
        s.syncer = Some(tx);
        drop(s);
        tokio::spawn(group_commit(
            Arc::downgrade(&self.shared),
            rx,
            self.shared.options.sync_delay,
        ));
    }

    /// Fires `callback`, if one is given, once every write so far is
    /// durable (`last`: the last entry those writes appended).
    fn after_sync(&self, callback: Option<LogFlushed<TypeConfig>>, seq: u64, last: LogId) {
        if self.shared.options.unsynced_acks {
            self.lock().acked_below = seq + 1;
            // The lie this mode tells: the entries count as durable.
            self.shared
                .mark
                .set(Some(last).max(self.shared.mark.durable()));
            if let Some(callback) = callback {
                callback.log_io_completed(Ok(()));
            }
            return;
        }
        self.request(SyncRequest::Log { callback, seq });
    }

    /// Returns once every write so far is durable.
    async fn barrier(&self) {
        if self.shared.options.unsynced_acks {
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.request(SyncRequest::Barrier(tx));
        // The sender is dropped only if the process is dying.
        let _ = rx.await;
    }

    /// The machine lost power (every process on it is gone): every write
    /// not synced is dropped and the disk holds what was durable. The next
    /// process starts with [`MemStateMachine::reopen`].
    pub fn power_loss(&self) -> PowerLoss {
        let mut guard = self.lock();
        let s = &mut *guard;
        let mut loss = PowerLoss::default();
        for (seq, w) in &s.volatile {
            loss.writes += 1;
            loss.bytes += w.bytes();
            loss.entries += w.entries();
            if *seq < s.acked_below {
                loss.acknowledged_entries += w.entries();
            }
        }
        s.volatile.clear();
        s.current = s.durable.clone();
        self.shared.mark.set(last_entry(&s.durable));
        s.power_cycle += 1;
        s.syncer = None;
        s.stats.power_losses += 1;
        s.stats.writes_dropped += loss.writes;
        s.stats.bytes_dropped += loss.bytes;
        s.stats.entries_dropped += loss.entries;
        s.stats.acknowledged_entries_dropped += loss.acknowledged_entries;
        loss
    }
}

/// The durable mark of `image`: its log's last entry, or its purged id if
/// that is later (a snapshot installed past the log covers up to it).
fn last_entry(image: &Image) -> Option<LogId> {
    image
        .entries
        .values()
        .next_back()
        .map(|e| *e.get_log_id())
        .max(image.last_purged)
}

fn lock_state(shared: &DiskShared) -> MutexGuard<'_, DiskState> {
    shared
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The group-commit task: one sync for every request queued while the
/// previous sync ran, served in order (an append's callback never fires
/// before an earlier vote is durable).
async fn group_commit(
    disk: Weak<DiskShared>,
    mut rx: mpsc::UnboundedReceiver<SyncRequest>,
    delay: Duration,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(next) = rx.try_recv() {
            batch.push(next);
        }
        let Some(shared) = disk.upgrade() else { return };
        // The sync covers exactly the writes made before it starts.
        let (upto, cycle) = {
            let s = lock_state(&shared);
            (s.next_seq, s.power_cycle)
        };
        drop(shared);
        if delay.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(delay).await;
        }
        let Some(shared) = disk.upgrade() else { return };
        let mut acked = 0;
        {
            let mut s = lock_state(&shared);
            if s.power_cycle != cycle {
                // The power failed during this sync: nothing of it is
                // durable and nothing is acknowledged.
                return;
            }
            let done = s.volatile.partition_point(|(seq, _)| *seq < upto);
            let synced: Vec<(u64, Write)> = s.volatile.drain(..done).collect();
            for (_, w) in &synced {
                s.durable.apply(w);
            }
            // Before any callback: openraft may apply once one fires.
            shared.mark.set(last_entry(&s.durable));
            s.stats.syncs += 1;
            for r in &batch {
                if let SyncRequest::Log { seq, .. } = r {
                    acked = acked.max(seq + 1);
                }
            }
            s.acked_below = s.acked_below.max(acked);
        }
        for r in batch {
            match r {
                SyncRequest::Log {
                    callback: Some(callback),
                    ..
                } => callback.log_io_completed(Ok(())),
                SyncRequest::Log { callback: None, .. } => {}
                SyncRequest::Barrier(tx) => {
                    let _receiver_gone = tx.send(());
                }
            }
        }
    }
}

/// The Raft log on the simulated disk.
#[derive(Clone, Default)]
pub struct MemLogStore {
    disk: MemDisk,
    checks: crate::store::AppendChecks,
    /// `Some(this validator)` when its own appends as leader are
    /// acknowledged before their sync (`store::durable_mark`).
    early_as: Option<crate::types::NodeId>,
    /// The vote as this process last saved it (the disk may hold it
    /// uncommitted: `store::stored_vote`).
    vote: Option<Vote>,
}

impl crate::store::ChecksOnAppend for MemLogStore {
    fn check_on_append(&mut self, machine: SharedMachine) {
        self.checks.set(&machine);
    }

    fn replicate_before_sync(&mut self, me: crate::types::NodeId) {
        self.early_as = Some(me);
        self.disk.mark().enable();
    }

    fn durable_mark(&self) -> crate::store::DurableMark {
        self.disk.mark().clone()
    }
}

impl MemLogStore {
    /// A log on a disk of its own (tests that never lose power).
    pub fn new() -> Self {
        Self::default()
    }

    /// The log on `disk` (share it with the state machine: [`open`]).
    pub fn on(disk: MemDisk) -> Self {
        Self {
            disk,
            checks: crate::store::AppendChecks::default(),
            early_as: None,
            vote: None,
        }
    }

    pub fn disk(&self) -> &MemDisk {
        &self.disk
    }
}

impl RaftLogReader<TypeConfig> for MemLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<RaftEntry>, StorageError> {
        Ok(self.disk.read(|img| {
            // Entries at or below the purged id may still be stored (a
            // purge keeps what the stored snapshot does not cover): never
            // read, as in the sled store.
            let floor = img.last_purged.map(|p| p.index);
            img.entries
                .range(range)
                .filter(|(i, _)| floor.is_none_or(|f| **i > f))
                .map(|(_, e)| e.clone())
                .collect()
        }))
    }
}

impl RaftLogStorage<TypeConfig> for MemLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(self.disk.read(|img| {
            let last = img.entries.values().next_back().map(|e| *e.get_log_id());
            LogState {
                last_purged_log_id: img.last_purged,
                last_log_id: last.max(img.last_purged),
            }
        }))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        // A leader's own vote goes to disk uncommitted: `store::stored_vote`.
        self.disk
            .write(Write::Vote(crate::store::stored_vote(self.early_as, vote)));
        self.disk.barrier().await;
        self.vote = Some(*vote);
        Ok(())
    }

    /// openraft reads it once, at start: as stored (`store::stored_vote`).
    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.disk.read(|img| img.vote))
    }

    /// Not synced on its own (a hint for re-applying after a restart): it
    /// becomes durable with the next sync.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Never past the durable mark (as in the sled store).
        let committed = self.disk.mark().clamp(committed);
        self.disk.write(Write::Committed(committed));
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.disk.read(|img| img.committed))
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
        let entries: Vec<RaftEntry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| *e.get_log_id()) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let early = crate::store::own_leader_append(self.early_as, self.vote.as_ref(), &entries);
        let checked = self.checks.is_on().then(|| entries.clone());
        let seq = self.disk.write(Write::Append(entries));
        let callback = if early {
            // Readable now: openraft may replicate while the sync runs;
            // the apply waits for the mark.
            callback.log_io_completed(Ok(()));
            None
        } else {
            Some(callback)
        };
        self.disk.after_sync(callback, seq, last);
        // The sync is requested: the signature checks run while it lasts.
        if let Some(entries) = checked {
            self.checks.start(entries);
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let removed = self
            .disk
            .read(|img| img.entries.range(log_id.index..).count() as u64);
        self.disk.write(Write::Truncate {
            from: log_id.index,
            removed,
        });
        self.disk.barrier().await;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The snapshot that covers these entries must be durable before
        // they can go; entries the stored snapshot does not cover stay
        // (the state machine replays from its stored snapshot).
        self.disk.barrier().await;
        let (upto, removed) = self.disk.read(|img| {
            let covered = img
                .snapshot
                .as_ref()
                .map(|s| s.meta.last_log_id.map_or(0, |l| l.index));
            let upto = covered.map(|c| c.min(log_id.index));
            let removed = upto.map_or(0, |u| img.entries.range(..=u).count() as u64);
            (upto, removed)
        });
        self.disk.write(Write::Purge {
            log_id,
            upto,
            removed,
        });
        Ok(())
    }
}

/// The governance state machine on the simulated disk. The state itself is
/// the process's memory; the disk holds its last-applied id, membership and
/// stored snapshot.
#[derive(Clone)]
pub struct MemStateMachine {
    machine: SharedMachine,
    disk: MemDisk,
    genesis: Arc<GovernanceState>,
}

/// A log and a state machine sharing one simulated disk (one sled database).
pub fn open(
    genesis_state: GovernanceState,
    options: MemDiskOptions,
) -> (MemLogStore, MemStateMachine) {
    let disk = MemDisk::new(options);
    (
        MemLogStore::on(disk.clone()),
        MemStateMachine::on(disk, genesis_state),
    )
}

impl MemStateMachine {
    /// A state machine on a disk of its own (tests that never lose power).
    pub fn new(genesis_state: GovernanceState) -> Self {
        Self::on(MemDisk::default(), genesis_state)
    }

    /// The state machine on `disk` (share it with the log: [`open`]).
    pub fn on(disk: MemDisk, genesis_state: GovernanceState) -> Self {
        Self {
            machine: SharedMachine::new(GovernanceMachine::new(genesis_state.clone())),
            disk,
            genesis: Arc::new(genesis_state),
        }
    }

    /// The machine, for status and queries.
    pub fn shared(&self) -> SharedMachine {
        self.machine.clone()
    }

    pub fn disk(&self) -> &MemDisk {
        &self.disk
    }

    /// Rebuilds the governance state from the disk, as a process starting
    /// on it does (`sled_sm::open`): the stored snapshot (or genesis) plus
    /// the log's entries after it up to the stored last-applied id. After
    /// [`MemDisk::power_loss`] that is what was durable; without one (a
    /// process killed, the page cache kept) it is everything written.
    /// Returns the last-applied index it rebuilt.
    pub fn reopen(&self) -> Result<Option<u64>, MemRecoveryError> {
        let (snapshot, applied, membership) = self
            .disk
            .read(|img| (img.snapshot.clone(), img.applied, img.membership.clone()));
        let mut machine = match &snapshot {
            Some(s) => restore_stored(&s.data)?,
            None => GovernanceMachine::new((*self.genesis).clone()),
        };
        // The genesis checkpoint interval (the node sets it at start).
        machine.checkpoints.interval = self.machine.read().checkpoints.interval;
        let from = machine.last_applied.map_or(0, |l| l.index + 1);
        if let Some(applied) = applied.filter(|a| a.index >= from) {
            let entries: Vec<(u64, RaftEntry)> = self.disk.read(|img| {
                img.entries
                    .range(from..=applied.index)
                    .map(|(i, e)| (*i, e.clone()))
                    .collect()
            });
            let mut expected = from;
            let mut replay = Vec::new();
            for (index, entry) in entries {
                if index != expected {
                    return Err(MemRecoveryError::MissingEntry { index: expected });
                }
                expected += 1;
                replay.push(entry);
            }
            if expected != applied.index + 1 {
                return Err(MemRecoveryError::MissingEntry { index: expected });
            }
            machine.replay(replay);
        }
        if applied.is_some() {
            machine.last_applied = applied.max(machine.last_applied);
        }
        if let Some(m) = membership {
            machine.membership = m;
        }
        let last = machine.last_applied.map(|l| l.index);
        *self.machine.write() = machine;
        Ok(last)
    }
}

/// Takes the latest certified checkpoint when openraft asks for a builder:
/// snapshots are built only from certified checkpoints.
pub struct MemSnapshotBuilder {
    built: Result<(SnapshotMeta, Vec<u8>), StorageError>,
    disk: MemDisk,
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
        // Never replace a snapshot at least as new, installed meanwhile.
        let newer_stored = self.disk.read(|img| {
            img.snapshot
                .as_ref()
                .is_some_and(|s| s.meta.last_log_id >= meta.last_log_id)
        });
        if !newer_stored {
            // Stored, not synced: durable with the next sync (a purge
            // syncs before it removes anything this snapshot covers).
            self.disk.write(Write::Snapshot(StoredSnapshot {
                meta: meta.clone(),
                data: Arc::new(data.clone()),
            }));
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
        let entries: Vec<RaftEntry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| *e.get_log_id()) else {
            return Ok(Vec::new());
        };
        let membership = entries.iter().rev().find_map(|entry| match &entry.payload {
            EntryPayload::Membership(m) => {
                Some(StoredMembership::new(Some(*entry.get_log_id()), m.clone()))
            }
            _ => None,
        });
        // Nothing is applied before it is durable (`store::durable_mark`).
        let mark = self.disk.mark();
        if !mark.covers(last) {
            mark.wait_covers(last).await;
        }
        // Only the position is written (the entries are in the log); held
        // under the machine's lock as in the sled store.
        let mut machine = self.machine.write();
        self.disk.write(Write::Applied { last, membership });
        Ok(machine.apply(entries))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        MemSnapshotBuilder {
            built: certified_snapshot(&self.machine.read()),
            disk: self.disk.clone(),
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
        {
            let mut current = self.machine.write();
            self.disk.write(Write::Install(StoredSnapshot {
                meta: meta.clone(),
                data: Arc::new(data),
            }));
            *current = machine;
        }
        self.disk.barrier().await;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.disk.read(|img| {
            img.snapshot.as_ref().map(|s| Snapshot {
                meta: s.meta.clone(),
                snapshot: Box::new(SnapshotBuffer::from_bytes((*s.data).clone())),
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use neuroshard_governance::testkit::{self, TestConfig};
    use neuroshard_governance::Entry as GovEntry;

    use super::*;

    fn genesis_state() -> GovernanceState {
        let (genesis, _) = testkit::genesis(&TestConfig::default());
        GovernanceState::from_genesis(&genesis).expect("test genesis is valid")
    }

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 0), index)
    }

    fn tick(index: u64, now_ms: u64) -> RaftEntry {
        RaftEntry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(GovEntry::Tick { now_ms }),
        }
    }

    fn indexes(disk: &MemDisk) -> Vec<u64> {
        disk.read(|img| img.entries.keys().copied().collect())
    }

    fn slow() -> MemDiskOptions {
        MemDiskOptions {
            sync_delay: Duration::from_millis(1),
            unsynced_acks: false,
        }
    }

    #[tokio::test]
    async fn a_power_loss_drops_exactly_what_was_not_synced() {
        let disk = MemDisk::new(slow());
        let mut log = MemLogStore::on(disk.clone());
        disk.write(Write::Append(vec![tick(1, 1), tick(2, 2)]));
        // A vote returns once synced, and its sync covers the entries.
        log.save_vote(&Vote::new(1, 0)).await.expect("vote");
        disk.write(Write::Append(vec![tick(3, 3)]));
        log.save_committed(Some(log_id(2))).await.expect("hint");
        assert_eq!(indexes(&disk), vec![1, 2, 3], "reads see unsynced writes");
        assert!(disk.volatile_bytes() > 0);
        let loss = disk.power_loss();
        assert_eq!(loss.writes, 2);
        assert_eq!(loss.entries, 1);
        assert_eq!(loss.acknowledged_entries, 0);
        assert_eq!(
            loss.bytes,
            Write::Append(vec![tick(3, 3)]).bytes() + encoded(&Some(log_id(2)))
        );
        assert_eq!(indexes(&disk), vec![1, 2]);
        assert_eq!(log.read_vote().await.expect("read"), Some(Vote::new(1, 0)));
        assert_eq!(log.read_committed().await.expect("read"), None);
        let stats = disk.stats();
        assert_eq!((stats.power_losses, stats.entries_dropped), (1, 1));
        assert_eq!(stats.bytes_dropped, loss.bytes);
    }

    #[tokio::test]
    async fn a_sync_covers_only_the_writes_made_before_it_started() {
        let disk = MemDisk::new(slow());
        disk.write(Write::Append(vec![tick(1, 1)]));
        let (tx, rx) = oneshot::channel();
        disk.request(SyncRequest::Barrier(tx));
        // The sync task has taken the request and sleeps in its fdatasync.
        tokio::task::yield_now().await;
        disk.write(Write::Append(vec![tick(2, 2)]));
        rx.await.expect("synced");
        let loss = disk.power_loss();
        assert_eq!(loss.entries, 1);
        assert_eq!(indexes(&disk), vec![1]);
    }

    #[tokio::test]
    async fn without_the_fdatasync_nothing_survives_a_power_loss() {
        let disk = MemDisk::new(MemDiskOptions {
            unsynced_acks: true,
            ..slow()
        });
        let mut log = MemLogStore::on(disk.clone());
        disk.write(Write::Append(vec![tick(1, 1)]));
        disk.lock().acked_below = 1;
        log.save_vote(&Vote::new(1, 0)).await.expect("vote");
        let loss = disk.power_loss();
        assert_eq!((loss.entries, loss.acknowledged_entries), (1, 1));
        assert!(indexes(&disk).is_empty());
        assert_eq!(log.read_vote().await.expect("read"), None);
    }

    #[tokio::test]
    async fn the_state_machine_reopens_at_its_synced_position() {
        let (mut log, mut sm) = open(genesis_state(), slow());
        let genesis_hash = sm.shared().read().state.state_hash();
        let entries = vec![tick(0, 10), tick(1, 20), tick(2, 30)];
        log.disk().write(Write::Append(entries.clone()));
        log.save_vote(&Vote::new(1, 0)).await.expect("vote");
        sm.apply(entries.clone()).await.expect("apply");
        let applied_hash = sm.shared().read().state.state_hash();
        assert_ne!(applied_hash, genesis_hash);
        // The position was written, not synced: the power loss takes it.
        log.disk().power_loss();
        assert_eq!(sm.reopen().expect("reopen"), None);
        assert_eq!(sm.shared().read().state.state_hash(), genesis_hash);
        // Applied again and synced (the next vote), it survives.
        sm.apply(entries).await.expect("apply");
        log.save_vote(&Vote::new(2, 0)).await.expect("vote");
        log.disk().power_loss();
        assert_eq!(sm.reopen().expect("reopen"), Some(2));
        assert_eq!(sm.shared().read().state.state_hash(), applied_hash);
    }

    fn tick_of(leader: (u64, u64), index: u64, now_ms: u64) -> RaftEntry {
        RaftEntry {
            log_id: LogId::new(CommittedLeaderId::new(leader.0, leader.1), index),
            payload: EntryPayload::Normal(GovEntry::Tick { now_ms }),
        }
    }

    fn sync_takes(ms: u64) -> MemDiskOptions {
        MemDiskOptions {
            sync_delay: Duration::from_millis(ms),
            unsynced_acks: false,
        }
    }

    /// `raft.replicate_before_sync`: a leader's own append is acknowledged
    /// at once, its apply waits for the sync, and a power cut before the
    /// sync leaves nothing applied, acknowledged as durable or recorded as
    /// committed (`store::durable_mark`).
    #[tokio::test]
    async fn a_leaders_own_append_is_acknowledged_before_its_sync_and_applied_after_it() {
        use crate::store::ChecksOnAppend;
        use openraft::storage::RaftLogStorageExt;
        let (mut log, sm) = open(genesis_state(), sync_takes(200));
        log.replicate_before_sync(0);
        log.save_vote(&Vote::new_committed(1, 0))
            .await
            .expect("vote");
        let genesis_hash = sm.shared().read().state.state_hash();
        let entries = vec![tick_of((1, 0), 0, 10), tick_of((1, 0), 1, 20)];
        log.blocking_append(entries.clone()).await.expect("append");
        assert!(
            log.disk().volatile_bytes() > 0,
            "acknowledged before its sync"
        );
        assert_eq!(log.disk().mark().durable(), None);
        // Committed by openraft's count, but not durable here: the hint
        // stays at the mark.
        log.save_committed(Some(log_id(1))).await.expect("hint");
        assert_eq!(log.disk().read(|img| img.committed), None);
        let applying = {
            let mut sm = sm.clone();
            let entries = entries.clone();
            tokio::spawn(async move { sm.apply(entries).await })
        };
        tokio::task::yield_now().await;
        assert!(!applying.is_finished(), "the apply waits for the sync");
        assert_eq!(sm.shared().read().state.state_hash(), genesis_hash);
        applying.await.expect("task").expect("applied once durable");
        assert_eq!(log.disk().mark().durable(), Some(log_id(1)));
        assert!(
            log.disk().volatile_bytes() > 0,
            "the applied position is not synced yet"
        );

        // A power cut between the append and its sync: nothing applied.
        let (mut log, sm) = open(genesis_state(), sync_takes(200));
        log.replicate_before_sync(0);
        log.save_vote(&Vote::new_committed(1, 0))
            .await
            .expect("vote");
        log.blocking_append(entries.clone()).await.expect("append");
        let applying = {
            let mut sm = sm.clone();
            tokio::spawn(async move { sm.apply(entries).await })
        };
        tokio::task::yield_now().await;
        let loss = log.disk().power_loss();
        assert_eq!((loss.entries, loss.acknowledged_entries), (2, 0));
        applying.abort();
        assert_eq!(sm.reopen().expect("reopen"), None);
        assert_eq!(sm.shared().read().state.state_hash(), genesis_hash);
        assert_eq!(log.read_committed().await.expect("read"), None);
        // It restarts as a follower that must win a new term: as leader of
        // term 1 again it could write other entries under the log ids its
        // followers already hold.
        assert_eq!(log.read_vote().await.expect("read"), Some(Vote::new(1, 0)));
    }

    /// A follower's append (entries of another leader) is acknowledged only
    /// after its sync, with the switch on.
    #[tokio::test]
    async fn a_followers_append_waits_for_its_sync() {
        use crate::store::ChecksOnAppend;
        use openraft::storage::RaftLogStorageExt;
        let (mut log, _sm) = open(genesis_state(), sync_takes(200));
        log.replicate_before_sync(0);
        log.save_vote(&Vote::new_committed(2, 1))
            .await
            .expect("vote");
        // This validator's own entry of an earlier term is a follower's
        // append too (a later leader sends it back).
        log.blocking_append(vec![tick_of((1, 0), 0, 10)])
            .await
            .expect("append");
        assert_eq!(log.disk().volatile_bytes(), 0, "synced before the ack");
        log.blocking_append(vec![tick_of((2, 1), 1, 20)])
            .await
            .expect("append");
        assert_eq!(log.disk().volatile_bytes(), 0, "synced before the ack");
        // Its own vote, not yet committed (a candidate), acks after the sync.
        log.save_vote(&Vote::new(3, 0)).await.expect("vote");
        log.blocking_append(vec![tick_of((3, 0), 2, 30)])
            .await
            .expect("append");
        assert_eq!(log.disk().volatile_bytes(), 0, "synced before the ack");
    }

    #[tokio::test]
    async fn a_position_without_its_entries_is_refused() {
        let (log, sm) = open(genesis_state(), slow());
        log.disk().write(Write::Applied {
            last: log_id(2),
            membership: None,
        });
        let err = sm.reopen().expect_err("entries 1 and 2 are missing");
        assert!(
            matches!(err, MemRecoveryError::MissingEntry { index: 0 }),
            "{err}"
        );
    }
}
