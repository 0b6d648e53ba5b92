//! Raft storage: the log and the governance state machine, on sled (durable
//! against power loss) and in memory on a simulated disk that loses what was
//! not synced when its power fails (simulation and tests).

pub mod durability;
pub mod durable_mark;
pub mod machine;
pub mod mem;
pub mod sled_log;
pub mod sled_sm;
mod snapshot;
mod snapshot_buffer;
pub mod wal;

use std::path::Path;

pub use durability::{DurableDb, GroupCommit};
pub use durable_mark::DurableMark;
pub use machine::{GovernanceMachine, SharedMachine, SnapshotImage};
pub use mem::{DiskStats, MemDisk, MemDiskOptions, MemLogStore, MemStateMachine, PowerLoss};
pub use sled_log::SledLogStore;
pub use sled_sm::{RecoveryError, SledStateMachine};
pub use snapshot_buffer::{SnapshotBuffer, MAX_SNAPSHOT_BYTES};

use neuroshard_governance::GovernanceState;

use crate::types::RaftEntry;

/// A log store that starts the signature checks of the client commands it
/// appends once their durable write is under way: the checks (ed25519, on
/// every replica) then run while the disk syncs and never hold up the
/// append. Before, a follower started them when an AppendEntries request
/// arrived, and a 2-core validator often ran them ahead of the append and
/// its sync (BENCHMARKS.md, "One command's hand-offs"). Wired by
/// `Node::start_with_boot` when `client.batch_entries` is on (off, apply
/// checks each command itself, as before).
pub trait ChecksOnAppend {
    /// From now on, check appended commands against `machine`'s chain
    /// (verdicts are memoized: the apply reuses them).
    fn check_on_append(&mut self, machine: SharedMachine);

    /// From now on, acknowledge this validator's own appends as leader
    /// (`me`) before their sync (`store::durable_mark`).
    fn replicate_before_sync(&mut self, me: crate::types::NodeId);

    /// The durable end of this log, shared with its state machine (which
    /// waits for it before applying) and with the peer clients (which
    /// clamp the committed id they send to it).
    fn durable_mark(&self) -> DurableMark;
}

/// The vote a validator writes to disk for `vote`: a vote committed for
/// `me` (it leads) is stored uncommitted when `me`'s own appends are
/// acknowledged before their sync; the store keeps the real one in
/// memory (for [`own_leader_append`]). openraft 0.9 reads the stored vote
/// once, at start, and would restart a validator whose stored vote is
/// committed for itself as leader *in the same term*: if a power cut took
/// entries it had already replicated, it would append different entries
/// under the same log ids, and followers, which compare entries by log id
/// only, would keep the old ones: two replicas applying different entries
/// at one index. Stored uncommitted, the vote makes it restart as a
/// follower that must win a new term — whatever its configuration or
/// binary at the next start. (The term and the candidate it voted for
/// are kept, so it never votes for less than before.)
pub fn stored_vote(
    me: Option<crate::types::NodeId>,
    vote: &crate::types::Vote,
) -> crate::types::Vote {
    match me {
        Some(me) if vote.is_committed() && vote.leader_id().voted_for() == Some(me) => {
            crate::types::Vote::new(vote.leader_id().get_term(), me)
        }
        _ => *vote,
    }
}

/// Whether `entries` are `me`'s own appends as leader: the vote is
/// committed for `me` and every entry is of that leader's term. Only
/// these may be acknowledged before their sync; a follower's appends
/// (entries of another leader, or of an earlier term) always wait.
pub fn own_leader_append(
    me: Option<crate::types::NodeId>,
    vote: Option<&crate::types::Vote>,
    entries: &[RaftEntry],
) -> bool {
    let (Some(me), Some(vote)) = (me, vote) else {
        return false;
    };
    vote.is_committed()
        && vote.leader_id().voted_for() == Some(me)
        && !entries.is_empty()
        && entries
            .iter()
            .all(|e| openraft::RaftLogId::get_log_id(e).leader_id == *vote.leader_id())
}

/// What [`ChecksOnAppend`] keeps: the chain id to check against, once set
/// (a genesis value: read once, so an append takes no lock).
#[derive(Clone, Default)]
pub struct AppendChecks(Option<std::sync::Arc<str>>);

impl AppendChecks {
    pub fn set(&mut self, machine: &SharedMachine) {
        self.0 = Some(machine.read().state.chain().chain_id.as_str().into());
    }

    /// Starts the checks of `entries`' commands in a task that owns them.
    /// Call it once the entries' sync was requested.
    pub fn start(&self, entries: Vec<RaftEntry>) {
        if let Some(chain_id) = &self.0 {
            crate::safety::check_entry_commands(chain_id.clone(), entries);
        }
    }

    /// Whether checks are on (the in-memory store copies the entries only
    /// then).
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }
}

/// Opens the durable log and state machine in `dir`: the log's entries in
/// their own segment files (`wal.rs`), everything else in one sled
/// database. A validator that diverged (`crate::boot::DIVERGED` in `dir`)
/// replays its log no further than where its state froze.
pub fn open_sled(
    dir: &Path,
    genesis_state: GovernanceState,
    checkpoint_interval: u64,
) -> Result<(SledLogStore, SledStateMachine, std::sync::Arc<DurableDb>), RecoveryError> {
    let log_dir = dir.join(wal::WAL_DIR);
    let log_existed = log_dir.exists();
    let durable = DurableDb::open(dir).map_err(|e| RecoveryError::Sled(sled::Error::Io(e)))?;
    // A store that holds a vote but lost its log directory is refused
    // instead of starting with an empty log.
    if !log_existed {
        let names = durable.db().tree_names();
        let has = |name: &str| names.iter().any(|t| t.as_ref() == name.as_bytes());
        // A store from before the log had its own files keeps it in sled.
        if has("raft_meta")
            && !has("raft_log")
            && durable.db().open_tree("raft_meta")?.get(b"vote")?.is_some()
        {
            return Err(RecoveryError::LogMissing { path: log_dir });
        }
    }
    let wal = std::sync::Arc::new(wal::Wal::open(dir)?);
    durable.attach_log(wal.clone());
    // Set to the log's end by `SledLogStore::open`.
    let mark = DurableMark::default();
    let commit = GroupCommit::start(durable.clone(), wal.clone(), mark)
        .map_err(|e| RecoveryError::Sled(sled::Error::Io(e)))?;
    let log = SledLogStore::open(&durable, wal.clone(), commit.clone())?;
    let diverged = crate::boot::read_divergence(dir).map_err(RecoveryError::Diverged)?;
    let sm = SledStateMachine::open(
        &durable,
        &wal,
        commit,
        genesis_state,
        checkpoint_interval,
        diverged,
    )?;
    Ok((log, sm, durable))
}

#[cfg(test)]
mod suite_tests;
