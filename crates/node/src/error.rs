//! Errors of the node's public operations, each naming what failed and the
//! value involved.

use crate::proto;
use crate::types::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("genesis {path}: {message}")]
    Genesis { path: String, message: String },
    #[error("TLS: {0}")]
    Tls(#[from] crate::transport::tls::TlsError),
    #[error("storage in {path}: {message}")]
    Storage { path: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("raft: {0}")]
    Raft(String),
    #[error("no leader is known at the moment; retry")]
    NoLeader,
    #[error("node {leader} is the leader now; retry there or through any node")]
    NotLeader { leader: NodeId },
    #[error("{pending} commands are waiting at this node, the limit is {limit}; retry later")]
    Overloaded { pending: usize, limit: usize },
    #[error("the command was not applied within {ms} ms; it may still be applied (retry with the same nonce and signature)")]
    Timeout { ms: u64 },
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("forwarding to leader {leader} failed: {message}")]
    Forward { leader: NodeId, message: String },
    #[error("validator {node} is not a committee member")]
    UnknownPeer { node: NodeId },
    #[error("internal: {0}")]
    Internal(String),
}

impl NodeError {
    /// The wire form of a refused client command.
    pub fn to_rejected(&self) -> proto::Rejected {
        use proto::RejectReason as R;
        let (reason, leader_hint) = match self {
            NodeError::NoLeader => (R::NoLeader, None),
            NodeError::NotLeader { leader } => (R::NotLeader, Some(*leader)),
            NodeError::Overloaded { .. } => (R::Overloaded, None),
            NodeError::Timeout { .. } => (R::Timeout, None),
            NodeError::Malformed(_) => (R::Malformed, None),
            NodeError::ShuttingDown => (R::ShuttingDown, None),
            NodeError::Forward { leader, .. } => (R::NotLeader, Some(*leader)),
            _ => (R::Internal, None),
        };
        proto::Rejected {
            reason: reason as i32,
            message: self.to_string(),
            leader_hint,
        }
    }

    /// The error a refusal received from another node stands for.
    pub fn from_rejected(r: &proto::Rejected) -> Self {
        use proto::RejectReason as R;
        match R::try_from(r.reason).unwrap_or(R::Unspecified) {
            R::NoLeader => NodeError::NoLeader,
            R::NotLeader => match r.leader_hint {
                Some(leader) => NodeError::NotLeader { leader },
                None => NodeError::NoLeader,
            },
            R::Overloaded => NodeError::Overloaded {
                pending: 0,
                limit: 0,
            },
            R::Timeout => NodeError::Timeout { ms: 0 },
            R::Malformed => NodeError::Malformed(r.message.clone()),
            R::ShuttingDown => NodeError::ShuttingDown,
            R::Internal | R::Unspecified => NodeError::Internal(r.message.clone()),
        }
    }

    /// Whether asking again (possibly another node) can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NodeError::NoLeader
                | NodeError::NotLeader { .. }
                | NodeError::Overloaded { .. }
                | NodeError::Timeout { .. }
                | NodeError::Forward { .. }
                | NodeError::ShuttingDown
        )
    }
}
