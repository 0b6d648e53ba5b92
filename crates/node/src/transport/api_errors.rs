//! Typed errors in gRPC status details.
//!
//! Every error status of the public API carries, in
//! `grpc-status-details-bin`, a `google.rpc.Status` whose single detail is a
//! `neuroshard.governance.v1.ErrorDetail` packed in a `google.protobuf.Any`.
//! That is the standard rich error model, so grpcurl prints the detail (it
//! resolves the type through reflection) and other gRPC clients decode it
//! with their usual helpers. The `rule` is the snake_case name of the
//! governance error variant (`voting_closed`), stable across releases.

use prost::Message;
use serde::Serialize;
use tonic::{Code, Status};

use neuroshard_governance::{GovError, QueryError};

use crate::api_proto as api;
use crate::error::NodeError;
use crate::reads::ReadError;

/// `google.rpc.Status` (google/rpc/status.proto), written out here because
/// it is the only message of that package this crate needs.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

pub const ERROR_DETAIL_TYPE_URL: &str = "type.googleapis.com/neuroshard.governance.v1.ErrorDetail";

/// `VotingClosed` → `voting_closed`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// The variant name of a serde enum value (externally tagged) and its JSON.
fn rule_and_json<T: Serialize>(value: &T) -> (String, String) {
    let json = serde_json::to_value(value).unwrap_or_default();
    let variant = match &json {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) => map.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    };
    (snake_case(&variant), json.to_string())
}

/// An error status carrying `detail`.
pub fn with_detail(code: Code, detail: api::ErrorDetail) -> Status {
    let message = detail.message.clone();
    let status = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: ERROR_DETAIL_TYPE_URL.to_owned(),
            value: detail.encode_to_vec(),
        }],
    };
    Status::with_details(code, message, status.encode_to_vec().into())
}

/// The `ErrorDetail` of an error status, if it carries one.
pub fn detail_of(status: &Status) -> Option<api::ErrorDetail> {
    let rpc = RpcStatus::decode(status.details()).ok()?;
    rpc.details
        .iter()
        .find(|a| a.type_url == ERROR_DETAIL_TYPE_URL)
        .and_then(|a| api::ErrorDetail::decode(a.value.as_slice()).ok())
}

/// The gRPC code of a refused command: what kind of rule it broke.
pub fn gov_code(e: &GovError) -> Code {
    use GovError::*;
    match e {
        BadSignature { .. }
        | ZeroAmount
        | SelfTransfer { .. }
        | InvalidAccountKey { .. }
        | InvalidContent(_)
        | EmergencyNotDraftable
        | NotEmergency { .. } => Code::InvalidArgument,
        UnknownAccount { .. } | UnknownNep { .. } | UnknownCertificate { .. } => Code::NotFound,
        NotAuthor { .. } | NotValidator { .. } => Code::PermissionDenied,
        TooManyAccounts { .. }
        | TooManyOpenDrafts { .. }
        | TooManyOpenProposals { .. }
        | TooManyPendingEmergencies { .. } => Code::ResourceExhausted,
        _ => Code::FailedPrecondition,
    }
}

/// A command the state machine refused (its entry is at `log_index`).
pub fn gov_status(e: &GovError, log_index: Option<u64>) -> Status {
    let (_, error_json) = rule_and_json(e);
    with_detail(
        gov_code(e),
        api::ErrorDetail {
            rule: e.rule().to_owned(),
            message: e.to_string(),
            error_json,
            log_index,
            leader_hint: None,
        },
    )
}

pub fn query_status(e: &QueryError) -> Status {
    let (rule, error_json) = rule_and_json(e);
    with_detail(
        Code::NotFound,
        api::ErrorDetail {
            rule,
            message: e.to_string(),
            error_json,
            ..Default::default()
        },
    )
}

pub fn node_status(e: &NodeError) -> Status {
    let (code, rule, leader_hint) = match e {
        NodeError::NoLeader => (Code::Unavailable, "no_leader", None),
        NodeError::NotLeader { leader } => (Code::Unavailable, "not_leader", Some(*leader)),
        NodeError::Forward { leader, .. } => (Code::Unavailable, "forward_failed", Some(*leader)),
        NodeError::ShuttingDown => (Code::Unavailable, "shutting_down", None),
        NodeError::Overloaded { .. } => (Code::ResourceExhausted, "overloaded", None),
        NodeError::Timeout { .. } => (Code::DeadlineExceeded, "timeout", None),
        NodeError::Malformed(_) => (Code::InvalidArgument, "malformed", None),
        _ => (Code::Internal, "internal", None),
    };
    with_detail(
        code,
        api::ErrorDetail {
            rule: rule.to_owned(),
            message: e.to_string(),
            leader_hint,
            ..Default::default()
        },
    )
}

pub fn read_status(e: &ReadError) -> Status {
    let (code, rule) = match e {
        ReadError::NoLeader => (Code::Unavailable, "no_leader"),
        ReadError::ReadIndex { .. } => (Code::Unavailable, "read_index_failed"),
        ReadError::Lagging { .. } => (Code::Unavailable, "replica_lagging"),
        ReadError::ShuttingDown => (Code::Unavailable, "shutting_down"),
    };
    with_detail(
        code,
        api::ErrorDetail {
            rule: rule.to_owned(),
            message: e.to_string(),
            ..Default::default()
        },
    )
}

/// A request field that does not parse.
pub fn invalid_argument(field: &str, message: impl std::fmt::Display) -> Status {
    with_detail(
        Code::InvalidArgument,
        api::ErrorDetail {
            rule: "invalid_argument".to_owned(),
            message: format!("{field}: {message}"),
            ..Default::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use neuroshard_governance::{NepId, Timestamp};

    #[test]
    fn a_refused_vote_carries_its_rule_values_and_log_index() {
        let e = GovError::VotingClosed {
            nep: NepId(3),
            deadline_ms: Timestamp(10),
            committed_ms: Timestamp(12),
        };
        let status = gov_status(&e, Some(41));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let detail = detail_of(&status).expect("detail");
        assert_eq!(detail.rule, "voting_closed");
        assert_eq!(detail.log_index, Some(41));
        let back: GovError = serde_json::from_str(&detail.error_json).expect("typed error");
        assert_eq!(back, e);
        assert!(detail.message.contains("NEP-3"), "{}", detail.message);
    }

    #[test]
    fn unit_variants_and_node_errors_have_rules() {
        let detail = detail_of(&gov_status(&GovError::ZeroAmount, None)).expect("detail");
        assert_eq!(detail.rule, "zero_amount");
        let s = node_status(&NodeError::NotLeader { leader: 2 });
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(detail_of(&s).and_then(|d| d.leader_hint), Some(2));
        assert_eq!(snake_case("NoVotingPower"), "no_voting_power");
        assert!(detail_of(&Status::internal("plain")).is_none());
    }
}
