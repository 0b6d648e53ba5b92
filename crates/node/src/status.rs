//! What `neuroshard status` shows about one replica.

use serde::{Deserialize, Serialize};

use crate::proto;
use crate::types::NodeId;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: NodeId,
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub role: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub last_log_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub members: Vec<NodeId>,
    /// Hex SHA-256 of the governance state at `applied_index`.
    pub state_hash: String,
    pub committed_time_ms: u64,
    pub chain_id: String,
    /// Bytes the governance state is charged, and `gov.state_budget_bytes`.
    pub state_bytes: u64,
    pub state_budget_bytes: u64,
    /// Recovering a data directory: the index it must apply before it
    /// votes again (`--recover`).
    #[serde(default)]
    pub recovering_until: Option<u64>,
    /// Validators ignored after a refusal: (id, ms left, rule).
    #[serde(default)]
    pub ignored: Vec<(NodeId, u64, String)>,
    /// Messages refused before Raft, by rule.
    #[serde(default)]
    pub safety_refusals: std::collections::BTreeMap<String, u64>,
    /// The latest checkpoint the committee certified.
    #[serde(default)]
    pub certified_checkpoint: Option<u64>,
    /// Why this replica is diverged (empty: it is not); it then signs
    /// nothing (`crate::checkpoint`).
    #[serde(default)]
    pub diverged: String,
}

impl From<&NodeStatus> for proto::StatusResponse {
    fn from(s: &NodeStatus) -> Self {
        proto::StatusResponse {
            node_id: s.node_id,
            role: s.role.clone(),
            leader: s.leader,
            term: s.term,
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            last_log_index: s.last_log_index,
            members: s.members.clone(),
            state_hash: hex::decode(&s.state_hash).unwrap_or_default(),
            committed_time_ms: s.committed_time_ms,
            chain_id: s.chain_id.clone(),
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
            state_bytes: s.state_bytes,
            state_budget_bytes: s.state_budget_bytes,
            recovering_until: s.recovering_until,
            ignored: s
                .ignored
                .iter()
                .map(|(id, ms, rule)| proto::IgnoredValidator {
                    node_id: *id,
                    remaining_ms: *ms,
                    rule: rule.clone(),
                })
                .collect(),
            safety_refusals: s.safety_refusals.clone().into_iter().collect(),
            certified_checkpoint: s.certified_checkpoint,
            diverged: s.diverged.clone(),
        }
    }
}

impl From<proto::StatusResponse> for NodeStatus {
    fn from(s: proto::StatusResponse) -> Self {
        NodeStatus {
            node_id: s.node_id,
            role: s.role,
            leader: s.leader,
            term: s.term,
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            last_log_index: s.last_log_index,
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
            members: s.members,
            state_hash: hex::encode(s.state_hash),
            committed_time_ms: s.committed_time_ms,
            chain_id: s.chain_id,
            state_bytes: s.state_bytes,
            state_budget_bytes: s.state_budget_bytes,
            recovering_until: s.recovering_until,
            ignored: s
                .ignored
                .into_iter()
                .map(|i| (i.node_id, i.remaining_ms, i.rule))
                .collect(),
            safety_refusals: s.safety_refusals.into_iter().collect(),
            certified_checkpoint: s.certified_checkpoint,
            diverged: s.diverged,
        }
    }
}
