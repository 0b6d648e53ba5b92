//! What both stores share about snapshots: naming them, decoding and
//! checking a received image before it replaces the state machine.

use std::sync::atomic::{AtomicU64, Ordering};

use openraft::{AnyError, StorageIOError};

use crate::store::machine::{GovernanceMachine, ImageError, SnapshotImage};
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

/// The state could not be captured as an image (see
/// `GovernanceMachine::image`).
pub fn image_build_error(e: &ImageError) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::new(e)).into()
}

pub fn snapshot_write_error(
    meta: &SnapshotMeta,
    e: &(impl std::error::Error + 'static),
) -> StorageError {
    StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(e)).into()
}

#[derive(Debug, thiserror::Error)]
#[error(
    "snapshot {snapshot_id} says it covers up to {meta:?} but its image covers up to {image:?}"
)]
pub struct ImageMismatch {
    snapshot_id: String,
    meta: Option<LogId>,
    image: Option<LogId>,
}

/// Decodes a received snapshot and checks it is what its metadata claims,
/// before anything is replaced.
pub fn install_image(meta: &SnapshotMeta, data: &[u8]) -> Result<GovernanceMachine, StorageError> {
    let image = SnapshotImage::decode(data).map_err(|e| snapshot_read_error(meta, &e))?;
    if image.last_applied != meta.last_log_id {
        let e = ImageMismatch {
            snapshot_id: meta.snapshot_id.clone(),
            meta: meta.last_log_id,
            image: image.last_applied,
        };
        return Err(snapshot_read_error(meta, &e));
    }
    let mut machine =
        GovernanceMachine::restore(image).map_err(|e| snapshot_read_error(meta, &e))?;
    // The metadata's membership is authoritative for openraft.
    machine.membership = meta.last_membership.clone();
    Ok(machine)
}
