//! What both stores share about snapshots: naming them, decoding and
//! checking a received image before it replaces the state machine.

use std::sync::atomic::{AtomicU64, Ordering};

use openraft::{AnyError, StorageIOError};

use crate::store::machine::{GovernanceMachine, ImageError};
use crate::types::{LogId, SnapshotMeta, StorageError, StoredMembership};

/// Distinguishes snapshots built by this process at the same log position
/// (openraft streams chunks per snapshot id).
static SNAPSHOT_SEQ: AtomicU64 = AtomicU64::new(0);

pub fn new_snapshot_meta(
    last_applied: Option<LogId>,
    membership: StoredMembership,
) -> SnapshotMeta {
    let seq = SNAPSHOT_SEQ.fetch_add(1, Ordering::Relaxed);
    let snapshot_id = match last_applied {
        Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, seq),
        None => format!("none-{seq}"),
    };
    SnapshotMeta {
        last_log_id: last_applied,
        last_membership: membership,
        snapshot_id,
    }
}

pub fn snapshot_read_error(
    meta: &SnapshotMeta,
    e: &(impl std::error::Error + 'static),
) -> StorageError {
    StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(e)).into()
}

#[derive(Debug, thiserror::Error)]
#[error("no certified checkpoint to build a snapshot from (snapshots are built only when a checkpoint is certified)")]
pub struct NoCertifiedCheckpoint;

/// The metadata and data of the snapshot `machine` can build now: of its
/// latest certified checkpoint. A machine that has applied nothing yet
/// builds the initial state with no signature (every validator holds that
/// state from genesis; openraft never asks for it, since snapshots are
/// only triggered by a certification, and no replica would install it).
pub fn certified_snapshot(
    machine: &GovernanceMachine,
) -> Result<(SnapshotMeta, Vec<u8>), StorageError> {
    let Some(certified) = machine.checkpoints.certified.as_ref() else {
        if machine.last_applied.is_none() {
            let meta = new_snapshot_meta(None, machine.membership.clone());
            let image = machine
                .image()
                .and_then(|i| i.encode().map_err(ImageError::from))
                .map_err(|e| snapshot_write_error(&meta, &e))?;
            let data = crate::checkpoint::CertifiedCheckpoint::encode_parts(&[], &image)
                .map_err(|e| snapshot_write_error(&meta, &e))?;
            return Ok((meta, data));
        }
        return Err(
            StorageIOError::write_snapshot(None, AnyError::new(&NoCertifiedCheckpoint)).into(),
        );
    };
    let c = &certified.checkpoint;
    let meta = new_snapshot_meta(Some(c.log_id), c.membership.clone());
    let data = certified
        .encode()
        .map_err(|e| snapshot_write_error(&meta, &e))?;
    Ok((meta, data))
}

pub fn snapshot_write_error(
    meta: &SnapshotMeta,
    e: &(impl std::error::Error + 'static),
) -> StorageError {
    StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(e)).into()
}

/// Decodes a received snapshot and checks that the committee certified it
/// (`crate::checkpoint::verify_snapshot`, against `current`'s pinned
/// genesis committee) before anything is replaced. The peer service runs
/// the same check on the assembled snapshot before openraft sees it, so a
/// refusal here is a bug, not a peer's doing.
pub fn install_image(
    meta: &SnapshotMeta,
    data: &[u8],
    current: &GovernanceMachine,
) -> Result<GovernanceMachine, StorageError> {
    let mut machine = crate::checkpoint::verify_snapshot(meta, data, current.state.chain())
        .map_err(|e| snapshot_read_error(meta, &e))?;
    machine.checkpoints.interval = current.checkpoints.interval;
    // A diverged replica stays diverged whatever it installs (the peer
    // service and the catch-up install nothing while it is).
    machine.checkpoints.diverged = current.checkpoints.diverged.clone();
    // The metadata's membership is authoritative for openraft (and equal to
    // the image's: checked).
    machine.membership = meta.last_membership.clone();
    Ok(machine)
}
