//! Errors of the node's public operations, each naming what failed and the
//! value involved.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use neuroshard_governance::{AccountId, GovError};

use crate::proto;
use crate::types::NodeId;

/// Which pending-commands quota an admission refused a command under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quota {
    /// `client.max_pending_per_account`: commands of one author admitted
    /// by this validator and not yet answered.
    Account(AccountId),
    /// `client.max_pending_per_source`: commands from one source IP address
    /// of the API connection admitted and not yet answered.
    Source(IpAddr),
}

/// A command refused before ordering by a pending quota: not in the log,
/// nonce not consumed; the same bytes may be sent again once earlier
/// commands are answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaRefusal {
    pub quota: Quota,
    pub pending: u64,
    pub limit: u64,
}

impl QuotaRefusal {
    /// The rule name (`too_many_pending_for_account`, `..._for_source`).
    pub fn rule(&self) -> &'static str {
        match self.quota {
            Quota::Account(_) => "too_many_pending_for_account",
            Quota::Source(_) => "too_many_pending_for_source",
        }
    }
}

impl std::fmt::Display for QuotaRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.quota {
            Quota::Account(a) => write!(
                f,
                "account {a} already has {} commands pending at this validator (client.max_pending_per_account = {}); resend once they are answered",
                self.pending, self.limit
            ),
            Quota::Source(ip) => write!(
                f,
                "{ip} already has {} commands pending at this validator (client.max_pending_per_source = {}); resend once they are answered",
                self.pending, self.limit
            ),
        }
    }
}

impl std::error::Error for QuotaRefusal {}

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
    /// Refused before ordering by a governance rule (`admission::admit`):
    /// not in the log, nonce not consumed; fix the command and resend it.
    #[error("refused before ordering (not in the log, nonce not consumed; fix and resend): {0} [{rule}]", rule = .0.rule())]
    Admission(GovError),
    /// Refused before ordering by a pending quota: not in the log, nonce
    /// not consumed; resend the same bytes later.
    #[error("refused before ordering (not in the log, nonce not consumed; resend later): {0} [{rule}]", rule = .0.rule())]
    Quota(QuotaRefusal),
    #[error("forwarding to leader {leader} failed: {message}")]
    Forward { leader: NodeId, message: String },
    #[error("validator {node} is not a committee member")]
    UnknownPeer { node: NodeId },
    /// The data directory holds no store, and no first-boot marker says
    /// this is the validator's first start (docs/operations.md,
    /// "Recovering a validator").
    #[error("data directory {path} holds no store and no first-boot marker ({marker}): this validator ran before and its data was lost. Starting empty would forget what it acknowledged. Restart it with --recover (it catches up from the others before it votes), or, if this really is its first start, restore the marker that keygen wrote")]
    DataLost { path: String, marker: String },
    /// Another validator recorded that this one acknowledged more than its
    /// log holds: the data directory was rolled back (a restored backup or
    /// VM snapshot).
    #[error("data directory {path} was rolled back: validator {witness} recorded that this validator acknowledged log entry {acknowledged}, but its log ends at {have}. Restart it with --recover (it catches up from the others before it votes)")]
    RolledBack {
        path: String,
        witness: NodeId,
        acknowledged: String,
        have: String,
    },
    /// `--recover` cannot proceed.
    #[error("cannot recover: {0}")]
    Recovery(String),
    /// This replica diverged from a certified checkpoint: it orders and
    /// applies nothing (docs/operations.md, "A diverged validator").
    #[error("validator {node} diverged from the committee ({detail}); it orders and applies nothing: send the command to another validator")]
    Diverged { node: NodeId, detail: String },
    #[error("internal: {0}")]
    Internal(String),
}

impl NodeError {
    /// The wire form of a refused client command.
    pub fn to_rejected(&self) -> proto::Rejected {
        use proto::RejectReason as R;
        let mut gov_error_json = String::new();
        let mut quota_json = String::new();
        let (reason, leader_hint) = match self {
            NodeError::NoLeader => (R::NoLeader, None),
            NodeError::NotLeader { leader } => (R::NotLeader, Some(*leader)),
            NodeError::Overloaded { .. } => (R::Overloaded, None),
            NodeError::Timeout { .. } => (R::Timeout, None),
            NodeError::Malformed(_) => (R::Malformed, None),
            NodeError::ShuttingDown => (R::ShuttingDown, None),
            NodeError::Forward { leader, .. } => (R::NotLeader, Some(*leader)),
            NodeError::Admission(e) => match serde_json::to_string(e) {
                Ok(json) => {
                    gov_error_json = json;
                    (R::Admission, None)
                }
                Err(_) => (R::Internal, None),
            },
            NodeError::Quota(q) => match serde_json::to_string(q) {
                Ok(json) => {
                    quota_json = json;
                    (R::Quota, None)
                }
                Err(_) => (R::Internal, None),
            },
            _ => (R::Internal, None),
        };
        proto::Rejected {
            reason: reason as i32,
            message: self.to_string(),
            leader_hint,
            gov_error_json,
            quota_json,
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
            // A typed refusal whose payload does not parse is reported as
            // what it is, never guessed into another refusal.
            R::Admission => match serde_json::from_str(&r.gov_error_json) {
                Ok(e) => NodeError::Admission(e),
                Err(e) => NodeError::Internal(format!(
                    "admission refusal without a readable GovError ({e}): {}",
                    r.message
                )),
            },
            R::Quota => match serde_json::from_str(&r.quota_json) {
                Ok(q) => NodeError::Quota(q),
                Err(e) => NodeError::Internal(format!(
                    "quota refusal without a readable quota ({e}): {}",
                    r.message
                )),
            },
            R::Internal | R::Unspecified => NodeError::Internal(r.message.clone()),
        }
    }

    /// Whether this is an admission refusal: a verdict on the command made
    /// before ordering (not in the log, nonce not consumed).
    pub fn is_admission_refusal(&self) -> bool {
        matches!(self, NodeError::Admission(_) | NodeError::Quota(_))
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
                | NodeError::Quota(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: &NodeError) -> NodeError {
        NodeError::from_rejected(&e.to_rejected())
    }

    #[test]
    fn admission_refusals_cross_the_peer_wire_typed() {
        let too_large = GovError::CommandTooLarge {
            bytes: 4_194_299,
            max: 160 * 1024,
        };
        let e = NodeError::Admission(too_large.clone());
        let wire = e.to_rejected();
        assert_eq!(wire.reason, proto::RejectReason::Admission as i32);
        match round_trip(&e) {
            NodeError::Admission(back) => assert_eq!(back, too_large),
            other => panic!("not an admission refusal: {other:?}"),
        }
        assert!(!e.is_retryable());
        assert!(e.is_admission_refusal());
        let text = e.to_string();
        assert!(
            text.contains("refused before ordering") && text.contains("[command_too_large]"),
            "{text}"
        );

        let q = NodeError::Quota(QuotaRefusal {
            quota: Quota::Source("10.1.2.3".parse().expect("ip")),
            pending: 2048,
            limit: 2048,
        });
        match round_trip(&q) {
            NodeError::Quota(back) => assert_eq!(back.rule(), "too_many_pending_for_source"),
            other => panic!("not a quota refusal: {other:?}"),
        }
        assert!(q.is_retryable() && q.is_admission_refusal());
        assert!(
            q.to_string().contains("client.max_pending_per_source"),
            "{q}"
        );

        // A damaged payload is not turned into another verdict.
        let mut bad = e.to_rejected();
        bad.gov_error_json = "{".into();
        assert!(matches!(
            NodeError::from_rejected(&bad),
            NodeError::Internal(_)
        ));
    }
}
