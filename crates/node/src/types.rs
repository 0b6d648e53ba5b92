//! The openraft type configuration of the committee: what a log entry carries
//! and what applying it returns.

use serde::{Deserialize, Serialize};

use neuroshard_governance::Outcome;

use crate::store::SnapshotBuffer;

/// A validator's Raft node id: its index in the genesis validator list
/// (`validator-<id>` on disk, `validator-<id>.neuroshard.peer` in its TLS
/// certificate).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Log entries carry one governance [`neuroshard_governance::Entry`]
    /// each; applying one returns an [`Applied`]. Addresses are not part of
    /// the replicated membership (each validator's config maps ids to
    /// addresses), so nodes are [`openraft::EmptyNode`].
    pub TypeConfig:
        D = neuroshard_governance::Entry,
        R = Applied,
        NodeId = NodeId,
        Node = openraft::EmptyNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotBuffer,
        AsyncRuntime = openraft::TokioRuntime,
);

/// What applying one log entry produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Index of the applied log entry.
    pub log_index: u64,
    /// The governance results: one per command of a batch (outcome `k` is
    /// the command at position (`log_index`, `k`)), one for a tick or a
    /// certificate, none for blank and membership entries.
    pub outcomes: Vec<Outcome>,
}

pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type RaftEntry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::EmptyNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::EmptyNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Raft = openraft::Raft<TypeConfig>;
