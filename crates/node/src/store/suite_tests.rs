//! openraft's storage conformance suite on both stores, plus the recovery
//! properties the suite does not check: a restart rebuilds exactly the state
//! at the stored last-applied id, and a snapshot moves a replica's state.

use std::sync::OnceLock;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder};

use neuroshard_governance::testkit::{self, TestConfig};
use neuroshard_governance::{Command, Entry as GovEntry, Genesis, GovernanceState, SignedCommand};

use super::*;
use crate::types::{RaftEntry, StorageError, TypeConfig};

fn committee() -> &'static (Genesis, neuroshard_certificate::DealtKeys) {
    static COMMITTEE: OnceLock<(Genesis, neuroshard_certificate::DealtKeys)> = OnceLock::new();
    COMMITTEE.get_or_init(|| testkit::genesis(&TestConfig::default()))
}

fn genesis() -> &'static Genesis {
    &committee().0
}

/// Captures the machine's current state as a checkpoint and certifies it
/// with the test committee's keys (t + 1 shares), as the checkpoint
/// exchange does at checkpoint indexes: snapshots are built only from
/// certified checkpoints.
pub(crate) fn certify_current(machine: &SharedMachine) {
    let mut m = machine.write();
    if m.last_applied.is_none()
        || m.checkpoints.certified_index() >= m.last_applied.map(|l| l.index)
    {
        return;
    }
    m.capture_now();
    let c = m.checkpoints.captured.back().cloned().expect("captured");
    let payload = crate::checkpoint::CheckpointPayload::new(
        m.state.chain(),
        c.log_id,
        &c.membership,
        c.state_hash,
    )
    .expect("payload");
    let message = payload.signing_message();
    let dealt = &committee().1;
    let keys = &dealt.public_key_set;
    let scheme = keys.scheme().scheme();
    let shares: Vec<_> = (0..=keys.threshold())
        .map(|i| {
            let share = scheme
                .sign_share(&dealt.secret_key_shares[i as usize], &message)
                .expect("sign");
            (neuroshard_certificate::ShareIndex(i), share)
        })
        .collect();
    let signature = scheme.combine(keys, &shares, &message).expect("combine");
    assert!(m
        .checkpoints
        .certify(c.log_id.index, signature.to_bytes().to_vec()));
}

/// A store's state machine whose snapshot builder first certifies the
/// current state (openraft's suite builds snapshots at arbitrary indexes).
struct Certifying<SM> {
    inner: SM,
    machine: SharedMachine,
}

impl<SM: RaftStateMachine<TypeConfig>> RaftStateMachine<TypeConfig> for Certifying<SM> {
    type SnapshotBuilder = SM::SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<crate::types::LogId>, crate::types::StoredMembership), StorageError> {
        self.inner.applied_state().await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<crate::types::Applied>, StorageError>
    where
        I: IntoIterator<Item = RaftEntry> + Send,
        I::IntoIter: Send,
    {
        self.inner.apply(entries).await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        certify_current(&self.machine);
        self.inner.get_snapshot_builder().await
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotBuffer>, StorageError> {
        self.inner.begin_receiving_snapshot().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &crate::types::SnapshotMeta,
        snapshot: Box<SnapshotBuffer>,
    ) -> Result<(), StorageError> {
        self.inner.install_snapshot(meta, snapshot).await
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<crate::types::Snapshot>, StorageError> {
        self.inner.get_current_snapshot().await
    }
}

fn certifying<SM>(inner: SM, machine: SharedMachine) -> Certifying<SM> {
    Certifying { inner, machine }
}

fn genesis_state() -> GovernanceState {
    GovernanceState::from_genesis(genesis()).expect("test genesis is valid")
}

struct MemBuilder;

impl StoreBuilder<TypeConfig, MemLogStore, Certifying<MemStateMachine>, ()> for MemBuilder {
    async fn build(&self) -> Result<((), MemLogStore, Certifying<MemStateMachine>), StorageError> {
        // The log and the state machine on one simulated disk, as the
        // simulation runs them.
        let (log, sm) = mem::open(genesis_state(), MemDiskOptions::default());
        let machine = sm.shared();
        Ok(((), log, certifying(sm, machine)))
    }
}

struct SledBuilder;

impl StoreBuilder<TypeConfig, SledLogStore, Certifying<SledStateMachine>, tempfile::TempDir>
    for SledBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            SledLogStore,
            Certifying<SledStateMachine>,
        ),
        StorageError,
    > {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, sm, _durable) = open_sled(
            &dir.path().join("store"),
            genesis_state(),
            genesis().checkpoint_interval,
        )
        .expect("open sled store");
        let machine = sm.shared();
        Ok((dir, log, certifying(sm, machine)))
    }
}

#[test]
fn openraft_suite_on_memory_store() -> Result<(), StorageError> {
    Suite::test_all(MemBuilder)
}

#[test]
fn openraft_suite_on_sled_store() -> Result<(), StorageError> {
    Suite::test_all(SledBuilder)
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(openraft::CommittedLeaderId::new(1, 0), index)
}

fn gov_entry(index: u64, entry: GovEntry) -> RaftEntry {
    RaftEntry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(entry),
    }
}

/// `count` transfers from test user 0 to fresh accounts, plus ticks: enough
/// state to make a snapshot of many chunks.
fn workload(count: u64) -> Vec<RaftEntry> {
    let key = testkit::user_key(0);
    let chain = &genesis().chain_id;
    let mut out = vec![gov_entry(
        1,
        GovEntry::Tick {
            now_ms: genesis().genesis_time_ms + 1,
        },
    )];
    for i in 0..count {
        let receiver = testkit::account_of(&testkit::user_key(1000 + i as usize));
        let cmd = SignedCommand::sign(
            chain,
            &key,
            i + 1,
            Command::Transfer {
                to: receiver,
                amount: neuroshard_governance::Amount(1_000),
            },
        );
        out.push(gov_entry(i + 2, GovEntry::Command(cmd)));
    }
    out
}

/// Opens the store at `path` again once the previous handles' group-commit
/// thread let go of it (it drops its handle just after the last sender).
async fn reopen(
    path: &std::path::Path,
) -> Result<(SledLogStore, SledStateMachine, std::sync::Arc<DurableDb>), RecoveryError> {
    let mut reopened = open_sled(path, genesis_state(), genesis().checkpoint_interval);
    for _ in 0..100 {
        if reopened.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        reopened = open_sled(path, genesis_state(), genesis().checkpoint_interval);
    }
    reopened
}

/// Writes `entries` to the Raft log's files as an append does (the state
/// machine replays them from there after a restart), and syncs.
fn append_to_log(log: &SledLogStore, entries: &[RaftEntry]) {
    let records: Vec<_> = entries
        .iter()
        .map(|e| {
            let bytes = crate::codec::encode_entry("log entry", e).expect("encodes");
            (e.log_id.index, bytes)
        })
        .collect();
    log.wal().append(&records).expect("append");
    log.wal().sync().expect("sync");
    // Synced: the state machine may apply them (`store::durable_mark`).
    use crate::store::ChecksOnAppend;
    if let Some(last) = entries.last() {
        log.durable_mark()
            .synced(last.log_id, log.durable_mark().epoch());
    }
}

/// Writes `entries` where stores kept them before the log had its own
/// files (sled tree `raft_log`), and syncs.
fn append_to_legacy_tree(durable: &DurableDb, entries: &[RaftEntry]) {
    let log = durable.db().open_tree("raft_log").expect("log tree");
    for e in entries {
        let bytes = crate::codec::encode_entry("log entry", e).expect("encodes");
        log.insert(e.log_id.index.to_be_bytes(), bytes)
            .expect("insert");
    }
    durable.sync().expect("sync");
}

#[tokio::test]
async fn sled_restart_rebuilds_the_applied_state_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let entries = workload(200);
    let (first, rest) = entries.split_at(120);
    let (hash, applied) = {
        let (log, mut sm, _d) =
            open_sled(&path, genesis_state(), genesis().checkpoint_interval).expect("open");
        append_to_log(&log, &entries);
        let results = sm.apply(first.to_vec()).await.expect("apply");
        assert!(
            results
                .iter()
                .skip(1)
                .all(|r| matches!(r.outcomes.as_slice(), [Ok(_)])),
            "transfers succeed"
        );
        // A snapshot in the middle: later entries are replayed on top of it.
        certify_current(&sm.shared());
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
        sm.apply(rest.to_vec()).await.expect("apply rest");
        let m = sm.shared();
        let m = m.read();
        (m.state.state_hash(), m.last_applied)
    };
    let reopened = reopen(&path).await;
    let (_log, mut sm, _d) = reopened.expect("reopen");
    let (last, _) = sm.applied_state().await.expect("applied state");
    assert_eq!(last, applied);
    assert_eq!(
        sm.shared().read().state.state_hash(),
        hash,
        "same state after restart"
    );
}

/// A diverged replica (issue 13, item 2) keeps storing the log and moving
/// the Raft position, but its governance state stays where it diverged:
/// entries after `frozen_at` answer without an outcome and capture no
/// checkpoint; with the `DIVERGED` marker in the data directory the replay
/// after a restart stops at the same point, and a marker that does not
/// parse refuses the start.
#[tokio::test]
async fn a_diverged_replica_applies_nothing_after_its_frozen_state_across_a_restart() {
    use crate::store::machine::Divergence;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    // Index 0 as openraft's initialization writes it: the replay after
    // the restart starts there (no snapshot).
    let mut entries = vec![RaftEntry {
        log_id: log_id(0),
        payload: EntryPayload::Blank,
    }];
    entries.extend(workload(60));
    let (first, rest) = entries.split_at(31);
    let (frozen_hash, frozen_at, last) = {
        let (log, mut sm, _d) =
            open_sled(&path, genesis_state(), genesis().checkpoint_interval).expect("open");
        append_to_log(&log, &entries);
        sm.apply(first.to_vec()).await.expect("apply");
        let m = sm.shared();
        let (hash, frozen_at) = {
            let mut m = m.write();
            let frozen_at = m.last_applied;
            let payload = crate::checkpoint::CheckpointPayload {
                chain_id: genesis().chain_id.clone(),
                committee_hash: [0; 32],
                term: 1,
                leader: 0,
                index: 20,
                membership_sha256: [0; 32],
                state_hash: [9; 32],
            };
            let d = Divergence {
                index: 20,
                own: None,
                certified: payload,
                frozen_at,
            };
            crate::boot::write_marker(
                &crate::boot::marker(&path, crate::boot::DIVERGED),
                &serde_json::to_string(&d).expect("json"),
            )
            .expect("marker");
            m.checkpoints.diverged = Some(d);
            (m.state.state_hash(), frozen_at)
        };
        let results = sm.apply(rest.to_vec()).await.expect("apply the rest");
        assert!(
            results.iter().all(|r| r.outcomes.is_empty()),
            "nothing applied after the divergence"
        );
        let m = m.read();
        assert_eq!(m.state.state_hash(), hash, "the state is frozen");
        assert_eq!(m.state_position(), frozen_at);
        assert_eq!(m.last_applied, Some(log_id(entries.len() as u64 - 1)));
        (hash, frozen_at, m.last_applied)
    };
    let (_log, mut sm, _d) = reopen(&path).await.expect("reopen");
    let (applied, _) = sm.applied_state().await.expect("applied state");
    assert_eq!(applied, last, "the Raft position survives");
    let m = sm.shared();
    {
        let m = m.read();
        assert!(m.checkpoints.diverged.is_some(), "still diverged");
        assert_eq!(
            m.state.state_hash(),
            frozen_hash,
            "replayed to the frozen point only"
        );
        assert_eq!(m.state_position(), frozen_at);
    }
    drop((sm, _log, _d));
    std::fs::write(
        crate::boot::marker(&path, crate::boot::DIVERGED),
        "{not json",
    )
    .expect("write");
    let mut refused = reopen(&path).await;
    for _ in 0..3 {
        if matches!(refused, Err(RecoveryError::Diverged(_))) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        refused = reopen(&path).await;
    }
    match refused {
        Err(RecoveryError::Diverged(message)) => {
            assert!(message.contains("does not parse"), "{message}")
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a damaged divergence marker must refuse the start"),
    }
}

#[tokio::test]
async fn snapshot_of_a_large_state_installs_on_an_empty_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_log_a, mut a, _da) = open_sled(
        &dir.path().join("a"),
        genesis_state(),
        genesis().checkpoint_interval,
    )
    .expect("open a");
    a.apply(workload(300)).await.expect("apply");
    certify_current(&a.shared());
    let snap = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let size = snap.snapshot.as_bytes().len();
    assert!(
        size > 8 * 1024,
        "state must span many 1 KiB chunks, got {size} bytes"
    );

    let (mut log_b, mut b, _db) = open_sled(
        &dir.path().join("b"),
        genesis_state(),
        genesis().checkpoint_interval,
    )
    .expect("open b");
    let mut incoming = b.begin_receiving_snapshot().await.expect("begin");
    // Feed it the way openraft's chunked transport does: 1 KiB at a time.
    use tokio::io::AsyncWriteExt;
    for chunk in snap.snapshot.as_bytes().chunks(1024) {
        incoming.write_all(chunk).await.expect("write chunk");
    }
    b.install_snapshot(&snap.meta, incoming)
        .await
        .expect("install");
    assert_eq!(
        b.shared().read().state.state_hash(),
        a.shared().read().state.state_hash()
    );
    assert_eq!(
        b.applied_state().await.expect("state").0,
        snap.meta.last_log_id
    );
    let current = b
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("stored");
    assert_eq!(current.meta, snap.meta);
    // The log of b is untouched by the install (openraft purges it separately).
    assert_eq!(
        log_b.get_log_state().await.expect("log state").last_log_id,
        None
    );
}

#[tokio::test]
async fn a_snapshot_that_lies_about_its_position_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_l, mut a, _d) = open_sled(
        &dir.path().join("a"),
        genesis_state(),
        genesis().checkpoint_interval,
    )
    .expect("open");
    a.apply(workload(3)).await.expect("apply");
    certify_current(&a.shared());
    let snap = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let mut meta = snap.meta.clone();
    meta.last_log_id = Some(log_id(99));
    let (_l2, mut b, _d2) = open_sled(
        &dir.path().join("b"),
        genesis_state(),
        genesis().checkpoint_interval,
    )
    .expect("open");
    let before = b.shared().read().state.state_hash();
    let err = b
        .install_snapshot(&meta, snap.snapshot)
        .await
        .expect_err("must refuse");
    assert!(err.to_string().contains("says it covers"), "{err}");
    assert_eq!(
        b.shared().read().state.state_hash(),
        before,
        "nothing replaced"
    );
}

/// openraft may purge behind a snapshot it is still installing: the purge
/// keeps the entries the stored snapshot does not cover, so a crash before
/// the install is stored still restarts from the stored snapshot plus the
/// log (and nothing at or below the purged id is read again).
#[tokio::test]
async fn a_purge_ahead_of_the_stored_snapshot_keeps_what_replay_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let entries = workload(60);
    let (hash, applied) = {
        let (mut log, mut sm, _d) =
            open_sled(&path, genesis_state(), genesis().checkpoint_interval).expect("open");
        append_to_log(&log, &entries);
        sm.apply(entries[..20].to_vec()).await.expect("apply");
        certify_current(&sm.shared());
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot at 20");
        sm.apply(entries[20..40].to_vec()).await.expect("apply");
        // The purge a snapshot at 50 being installed would ask for.
        log.purge(log_id(50)).await.expect("purge");
        let state = log.get_log_state().await.expect("log state");
        assert_eq!(state.last_purged_log_id, Some(log_id(50)));
        let read = log.try_get_log_entries(0..70).await.expect("read");
        assert_eq!(read.first().map(|e| e.log_id.index), Some(51));
        let m = sm.shared();
        let m = m.read();
        (m.state.state_hash(), m.last_applied)
    };
    let reopened = reopen(&path).await;
    let (_log, mut sm, _d) =
        reopened.expect("reopens: the entries after the stored snapshot were kept");
    assert_eq!(sm.applied_state().await.expect("applied").0, applied);
    assert_eq!(sm.shared().read().state.state_hash(), hash);
}

/// An entry is applied only once it is durable in the log (openraft 0.9
/// waits for an append's sync), so a recorded position past the log's end
/// means the log lost entries it had acknowledged: the start is refused,
/// naming the first one missing. A store that holds a vote but lost its
/// whole log directory is refused, saying what to do.
#[tokio::test]
async fn a_log_that_lost_applied_or_all_entries_is_refused() {
    let mut entries = vec![RaftEntry {
        log_id: log_id(0),
        payload: EntryPayload::Blank,
    }];
    entries.extend(workload(59));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    {
        let (mut log, mut sm, d) =
            open_sled(&path, genesis_state(), genesis().checkpoint_interval).expect("open");
        append_to_log(&log, &entries);
        sm.apply(entries.to_vec()).await.expect("apply");
        log.save_vote(&openraft::Vote::new(1, 1))
            .await
            .expect("vote");
        d.sync().expect("sync");
        log.wal()
            .truncate_from(entries[40].log_id.index)
            .expect("lose the tail");
    }
    let mut refused = reopen(&path).await;
    for _ in 0..100 {
        if !matches!(refused, Err(RecoveryError::Sled(_))) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        refused = reopen(&path).await;
    }
    match refused {
        Err(RecoveryError::MissingEntry { index }) => {
            assert_eq!(index, entries[40].log_id.index)
        }
        other => panic!("expected MissingEntry, got {:?}", other.err()),
    }
    std::fs::remove_dir_all(path.join(crate::store::wal::WAL_DIR)).expect("lose the log");
    // The refused open's group-commit thread lets go of sled's lock just
    // after it returns: retried while sled is still locked.
    let mut refused =
        crate::store::open_sled(&path, genesis_state(), genesis().checkpoint_interval);
    for _ in 0..100 {
        if !matches!(refused, Err(RecoveryError::Sled(_))) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        refused = crate::store::open_sled(&path, genesis_state(), genesis().checkpoint_interval);
    }
    match refused {
        Err(e @ RecoveryError::LogMissing { .. }) => {
            let text = e.to_string();
            assert!(text.contains("move the data directory aside"), "{text}");
            assert!(text.contains("--recover"), "{text}");
        }
        other => panic!("expected LogMissing, got {:?}", other.err()),
    }
    assert!(
        !path.join(crate::store::wal::WAL_DIR).exists(),
        "a refused start creates nothing"
    );
}

/// A store written when the log's entries were kept in sled (tree
/// `raft_log`) is moved into the log's files when it is opened, once.
#[tokio::test]
async fn a_store_with_its_log_in_sled_moves_it_into_the_log_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let mut entries = vec![RaftEntry {
        log_id: log_id(0),
        payload: EntryPayload::Blank,
    }];
    entries.extend(workload(49));
    let (hash, applied) = {
        let (_log, mut sm, d) =
            open_sled(&path, genesis_state(), genesis().checkpoint_interval).expect("open");
        append_to_legacy_tree(&d, &entries);
        sm.apply(entries[..30].to_vec()).await.expect("apply");
        d.sync().expect("sync");
        let m = sm.shared();
        let m = m.read();
        (m.state.state_hash(), m.last_applied)
    };
    for round in 0..2 {
        let (mut log, mut sm, d) = reopen(&path).await.expect("reopens");
        assert_eq!(sm.applied_state().await.expect("applied").0, applied);
        assert_eq!(sm.shared().read().state.state_hash(), hash);
        let read = log.try_get_log_entries(0..1000).await.expect("read");
        assert_eq!(read.len(), entries.len(), "round {round}");
        assert_eq!(
            read.last().map(|e| e.log_id),
            entries.last().map(|e| e.log_id)
        );
        assert!(
            !d.db()
                .tree_names()
                .iter()
                .any(|n| n.as_ref() == b"raft_log"),
            "the old tree is gone"
        );
    }
}

/// Certifies the machine's current state and builds its snapshot.
async fn certify_and_build(sm: &mut SledStateMachine) -> crate::types::Snapshot {
    certify_current(&sm.shared());
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot")
}

/// The `.snap` files in a store's snapshot directory, sorted.
fn snapshot_files(store: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store.join(sled_sm::SNAPSHOT_DIR))
        .expect("snapshot dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A snapshot's bytes live in one file of the store's snapshot directory,
/// not in sled: a second snapshot replaces the first file, a restart reads
/// the one the store names and removes every file it does not name (a
/// temporary left by a crash, a snapshot written but never recorded).
#[tokio::test]
async fn snapshot_bytes_live_in_one_file_that_the_next_snapshot_replaces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let entries = workload(120);
    let (first, rest) = entries.split_at(60);
    let hash = {
        let (log, mut sm, durable) =
            open_sled(&path, genesis_state(), genesis().checkpoint_interval).expect("open");
        append_to_log(&log, &entries);
        assert!(snapshot_files(&path).is_empty(), "no snapshot yet");
        sm.apply(first.to_vec()).await.expect("apply");
        let one = certify_and_build(&mut sm).await;
        let after_one = snapshot_files(&path);
        assert_eq!(after_one.len(), 1, "one file: {after_one:?}");
        let on_disk =
            std::fs::read(path.join(sled_sm::SNAPSHOT_DIR).join(&after_one[0])).expect("read");
        assert_eq!(on_disk, one.snapshot.as_bytes(), "the file holds the bytes");
        // sled holds only the small records.
        let tree = durable.db().open_tree("state").expect("tree");
        let largest = tree
            .iter()
            .map(|kv| kv.expect("kv").1.len())
            .max()
            .unwrap_or(0);
        assert!(largest < 1024, "sled value of {largest} bytes");

        sm.apply(rest.to_vec()).await.expect("apply rest");
        let two = certify_and_build(&mut sm).await;
        let after_two = snapshot_files(&path);
        assert_eq!(
            after_two.len(),
            1,
            "the first file was removed: {after_two:?}"
        );
        assert_ne!(after_two, after_one);
        let current = sm
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("stored");
        assert_eq!(current.meta, two.meta);
        assert_eq!(current.snapshot.as_bytes(), two.snapshot.as_bytes());
        (sm.shared().read().state.state_hash(), after_two)
    };
    let (hash, recorded) = hash;
    // What a crash can leave: a temporary file, and a complete file that
    // no record names.
    let snaps = path.join(sled_sm::SNAPSHOT_DIR);
    let stray = "00000000000000000007-00000000000000ab.snap";
    std::fs::write(snaps.join(stray), b"never recorded").expect("stray");
    std::fs::write(
        snaps.join("00000000000000000009-00000000000000cd.snap.tmp"),
        b"half written",
    )
    .expect("tmp");
    // Not a name the store writes: left alone.
    std::fs::write(snaps.join("operator-notes.txt"), b"keep").expect("notes");
    let (_log, mut sm, _d) = reopen(&path).await.expect("reopen");
    assert_eq!(sm.shared().read().state.state_hash(), hash);
    let left = snapshot_files(&path);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"operator-notes.txt".to_string()));
    assert!(!left.contains(&stray.to_string()));
    assert!(left.contains(&recorded[0]), "the recorded file is kept");
    assert!(sm.get_current_snapshot().await.expect("read").is_some());
}

/// A store whose recorded snapshot file is gone, or that names a file
/// outside its own naming, refuses to start with an error that says so.
#[tokio::test]
async fn a_missing_or_misnamed_snapshot_file_refuses_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    {
        let (_log, mut sm, _d) =
            open_sled(&path, genesis_state(), genesis().checkpoint_interval).expect("open");
        sm.apply(workload(5)).await.expect("apply");
        certify_current(&sm.shared());
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
    }
    let name = snapshot_files(&path).pop().expect("one file");
    let file = path.join(sled_sm::SNAPSHOT_DIR).join(&name);
    let bytes = std::fs::read(&file).expect("read");
    std::fs::remove_file(&file).expect("remove");
    // An older snapshot file the operator might still need: the refused
    // start removes nothing.
    let older = path
        .join(sled_sm::SNAPSHOT_DIR)
        .join("00000000000000000001-00000000000000aa.snap");
    std::fs::write(&older, b"older").expect("older");
    match reopen(&path).await {
        Err(e @ RecoveryError::SnapshotFile { .. }) => {
            assert!(e.to_string().contains(&name), "{e}");
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a missing snapshot file must refuse the start"),
    }
    assert!(older.exists(), "a refused start removes no snapshot file");
    // Back in place: starts again.
    std::fs::write(&file, &bytes).expect("restore");
    drop(reopen(&path).await.expect("reopen with the file back"));
    // A record naming a path outside the directory is refused, not read.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    {
        let durable = loop {
            match DurableDb::open(&path) {
                Ok(d) => break d,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        let tree = durable.db().open_tree("state").expect("tree");
        tree.insert(
            b"snap/file",
            crate::codec::encode("name", &"../../etc/passwd".to_string()).expect("encode"),
        )
        .expect("insert");
        durable.sync().expect("sync");
    }
    match reopen(&path).await {
        Err(RecoveryError::SnapshotName { name }) => assert_eq!(name, "../../etc/passwd"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a misnamed snapshot file must refuse the start"),
    }
}

/// A store written before the snapshot files kept the bytes in sled
/// chunks: it still starts from them, and its next snapshot moves to a
/// file and removes the chunks.
#[tokio::test]
async fn a_store_with_snapshot_chunks_in_sled_still_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let entries = workload(40);
    let (hash, meta) = {
        let (log, mut sm, durable) =
            open_sled(&path, genesis_state(), genesis().checkpoint_interval).expect("open");
        append_to_log(&log, &entries);
        sm.apply(entries.clone()).await.expect("apply");
        let snap = certify_and_build(&mut sm).await;
        // Rewrite it the way the older store kept it.
        let tree = durable.db().open_tree("state").expect("tree");
        tree.remove(b"snap/file").expect("remove");
        for (n, chunk) in snap.snapshot.as_bytes().chunks(32 * 1024).enumerate() {
            let mut key = b"snap/chunk/".to_vec();
            key.extend_from_slice(&(n as u32).to_be_bytes());
            tree.insert(key, chunk).expect("chunk");
        }
        durable.sync().expect("sync");
        (sm.shared().read().state.state_hash(), snap.meta)
    };
    let (_log, mut sm, durable) = reopen(&path).await.expect("reopen");
    assert!(
        snapshot_files(&path).is_empty(),
        "the unnamed file was removed at open"
    );
    assert_eq!(sm.shared().read().state.state_hash(), hash);
    let current = sm
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(current.meta, meta);
    // Next snapshot: a file, and the chunks go.
    sm.apply(vec![gov_entry(
        42,
        GovEntry::Tick {
            now_ms: genesis().genesis_time_ms + 2,
        },
    )])
    .await
    .expect("apply");
    certify_current(&sm.shared());
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    assert_eq!(snapshot_files(&path).len(), 1);
    let tree = durable.db().open_tree("state").expect("tree");
    assert_eq!(tree.scan_prefix(b"snap/chunk/").count(), 0);
}

/// The snapshot file is read up to one byte past its recorded length: a
/// file one byte shorter or longer than the record refuses the start
/// (`SnapshotLength`), the exact length starts.
#[tokio::test]
async fn a_snapshot_file_of_another_length_than_recorded_refuses_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    {
        let (_log, mut sm, _d) =
            open_sled(&path, genesis_state(), genesis().checkpoint_interval).expect("open");
        sm.apply(workload(5)).await.expect("apply");
        certify_and_build(&mut sm).await;
    }
    let name = snapshot_files(&path).pop().expect("one file");
    let file = path.join(sled_sm::SNAPSHOT_DIR).join(&name);
    let exact = std::fs::read(&file).expect("read");
    let mut longer = exact.clone();
    longer.push(0);
    for (what, bytes) in [
        ("one byte short", &exact[..exact.len() - 1]),
        ("one byte long", &longer[..]),
    ] {
        std::fs::write(&file, bytes).expect("rewrite");
        match reopen(&path).await {
            Err(RecoveryError::SnapshotLength { expected, found }) => {
                assert_eq!(expected, exact.len() as u64, "{what}");
                assert_eq!(found, bytes.len() as u64, "{what}");
            }
            Err(e) => panic!("{what}: unexpected error: {e}"),
            Ok(_) => panic!("{what}: a snapshot file of another length must refuse the start"),
        }
    }
    std::fs::write(&file, &exact).expect("restore");
    drop(reopen(&path).await.expect("the exact length starts"));
}

/// `raft.replicate_before_sync` on the sled store: the leader's own
/// appends move the durable mark once synced and are applied after it; a
/// reopened store starts its mark at the log's end, and a validator that
/// led restarts with its vote uncommitted (`store::stored_vote`).
#[tokio::test]
async fn a_leader_that_acknowledged_before_its_sync_restarts_as_a_follower() {
    use crate::store::ChecksOnAppend;
    use openraft::storage::RaftLogStorageExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let leader = openraft::Vote::new_committed(1, 0);
    let mut entries = vec![RaftEntry {
        log_id: log_id(0),
        payload: EntryPayload::Blank,
    }];
    entries.extend(workload(3));
    let last = entries.last().expect("entries").log_id;
    {
        let (mut log, mut sm, _d) =
            open_sled(&path, genesis_state(), genesis().checkpoint_interval).expect("open");
        log.replicate_before_sync(0);
        log.save_vote(&leader).await.expect("vote");
        // Entries of leader (term 1, validator 0): this validator's own.
        log.blocking_append(entries.clone()).await.expect("append");
        sm.apply(entries).await.expect("applied once durable");
        assert!(log.durable_mark().covers(last));
        // Not past the mark, so the hint is stored as given.
        log.save_committed(Some(last)).await.expect("hint");
        assert_eq!(log.read_committed().await.expect("read"), Some(last));
        assert_eq!(
            log.read_vote().await.expect("read"),
            Some(openraft::Vote::new(1, 0)),
            "a leader reads its vote back uncommitted"
        );
    }
    let (mut log, _sm, _d) = reopen(&path).await.expect("reopen");
    // Stored uncommitted: without the switch (or with an older binary)
    // it restarts as a follower too.
    assert_eq!(
        log.read_vote().await.expect("read"),
        Some(openraft::Vote::new(1, 0))
    );
    assert_eq!(log.durable_mark().durable(), Some(last));
    log.replicate_before_sync(0);
    assert_eq!(
        log.read_vote().await.expect("read"),
        Some(openraft::Vote::new(1, 0))
    );
    // Another leader's vote is read as stored.
    log.save_vote(&openraft::Vote::new_committed(2, 1))
        .await
        .expect("vote");
    assert_eq!(
        log.read_vote().await.expect("read"),
        Some(openraft::Vote::new_committed(2, 1))
    );
}
