//! Raft storage: the log and the governance state machine, on sled (durable
//! against power loss) and in memory on a simulated disk that loses what was
//! not synced when its power fails (simulation and tests).

pub mod durability;
pub mod machine;
pub mod mem;
pub mod sled_log;
pub mod sled_sm;
mod snapshot;
mod snapshot_buffer;

use std::path::Path;

pub use durability::{DurableDb, GroupCommit};
pub use machine::{GovernanceMachine, SharedMachine, SnapshotImage};
pub use mem::{DiskStats, MemDisk, MemDiskOptions, MemLogStore, MemStateMachine, PowerLoss};
pub use sled_log::SledLogStore;
pub use sled_sm::{RecoveryError, SledStateMachine};
pub use snapshot_buffer::{SnapshotBuffer, MAX_SNAPSHOT_BYTES};

use neuroshard_governance::GovernanceState;

/// Opens the durable log and state machine in `dir` (one sled database, so
/// one sync covers both). A validator that diverged (`crate::boot::DIVERGED`
/// in `dir`) replays its log no further than where its state froze.
pub fn open_sled(
    dir: &Path,
    genesis_state: GovernanceState,
    checkpoint_interval: u64,
) -> Result<(SledLogStore, SledStateMachine, std::sync::Arc<DurableDb>), RecoveryError> {
    let durable = DurableDb::open(dir).map_err(|e| RecoveryError::Sled(sled::Error::Io(e)))?;
    let commit =
        GroupCommit::start(durable.clone()).map_err(|e| RecoveryError::Sled(sled::Error::Io(e)))?;
    let log = SledLogStore::open(&durable, commit.clone())?;
    let diverged = crate::boot::read_divergence(dir).map_err(RecoveryError::Diverged)?;
    let sm = SledStateMachine::open(
        &durable,
        commit,
        genesis_state,
        checkpoint_interval,
        diverged,
    )?;
    Ok((log, sm, durable))
}

#[cfg(test)]
mod suite_tests;
