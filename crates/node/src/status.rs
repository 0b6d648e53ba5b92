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
    /// Why this validator answers NOT_SERVING to gRPC health and 503 to
    /// `/readyz` (empty: serving): shutting down, no leader, catching up,
    /// recovering, diverged.
    #[serde(default)]
    pub not_serving: Vec<String>,
}

impl NodeStatus {
    /// The reasons this validator should not take traffic, from its own
    /// status (`stopping`: its shutdown started).
    pub fn not_serving_reasons(&self, stopping: bool) -> Vec<String> {
        let mut why = Vec::new();
        if stopping || self.role == "shutdown" {
            why.push("shutting down".to_owned());
        }
        if self.leader.is_none() {
            why.push("no leader".to_owned());
        }
        let committed = self.commit_index.unwrap_or(0);
        let applied = self.applied_index.unwrap_or(0);
        if committed.saturating_sub(applied) > crate::metrics::CATCHING_UP_ENTRIES {
            why.push(format!(
                "catching up: applied {applied} of {committed} committed"
            ));
        }
        if let Some(target) = self.recovering_until {
            why.push(format!("recovering until log index {target}"));
        }
        if !self.diverged.is_empty() {
            why.push("diverged from a certified checkpoint".to_owned());
        }
        why
    }
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
            not_serving: s.not_serving.clone(),
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
            not_serving: s.not_serving,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> NodeStatus {
        NodeStatus {
            node_id: 1,
            role: "follower".into(),
            leader: Some(0),
            term: 2,
            commit_index: Some(500),
            applied_index: Some(500),
            last_log_index: Some(500),
            snapshot_index: None,
            purged_index: None,
            members: vec![0, 1, 2, 3],
            state_hash: String::new(),
            committed_time_ms: 0,
            chain_id: "c".into(),
            state_bytes: 0,
            state_budget_bytes: 1,
            recovering_until: None,
            ignored: Vec::new(),
            safety_refusals: Default::default(),
            certified_checkpoint: None,
            diverged: String::new(),
            not_serving: Vec::new(),
        }
    }

    #[test]
    fn not_serving_names_every_reason() {
        assert!(healthy().not_serving_reasons(false).is_empty());
        assert_eq!(healthy().not_serving_reasons(true), ["shutting down"]);
        let mut s = healthy();
        s.leader = None;
        s.applied_index = Some(100);
        s.recovering_until = Some(600);
        s.diverged = "at checkpoint 4096".into();
        let why = s.not_serving_reasons(false);
        assert_eq!(why.len(), 4, "{why:?}");
        assert_eq!(why[0], "no leader");
        assert!(why[1].starts_with("catching up: applied 100 of 500"));
        assert!(why[2].starts_with("recovering"));
        assert!(why[3].starts_with("diverged"));
        // Within the catch-up allowance: serving.
        let mut s = healthy();
        s.applied_index = Some(500 - crate::metrics::CATCHING_UP_ENTRIES);
        assert!(s.not_serving_reasons(false).is_empty());
    }

    #[test]
    fn the_reasons_travel_in_the_status_response() {
        let mut s = healthy();
        s.not_serving = vec!["no leader".into()];
        let back = NodeStatus::from(proto::StatusResponse::from(&s));
        assert_eq!(back, s);
    }
}
