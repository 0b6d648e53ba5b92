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

use neuroshard_governance::{GovError, Position, QueryError};

use crate::api_proto as api;
use crate::error::{NodeError, QuotaRefusal};
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

/// A governance error as a status: a command the state machine refused
/// when the command at `position` was applied (an apply refusal,
/// `REFUSAL_KIND_APPLY`), or, without a position, a governance answer that
/// is no verdict on a command (an unknown certificate in a read).
pub fn gov_status(e: &GovError, position: Option<Position>) -> Status {
    let (_, error_json) = rule_and_json(e);
    let refusal = match position {
        Some(_) => api::RefusalKind::Apply,
        None => api::RefusalKind::Unspecified,
    };
    with_detail(
        gov_code(e),
        api::ErrorDetail {
            rule: e.rule().to_owned(),
            message: e.to_string(),
            error_json,
            log_index: position.map(|p| p.log_index),
            offset: position.map(|p| p.offset),
            leader_hint: None,
            refusal: refusal as i32,
        },
    )
}

/// An apply refusal: the command was ordered at `position` and refused
/// when applied (its nonce is consumed). Today's code mapping, the
/// position always set.
pub fn apply_status(e: &GovError, position: Position) -> Status {
    gov_status(e, Some(position))
}

/// The gRPC code of an admission refusal: `ALREADY_EXISTS` for a nonce
/// already consumed by another command, `PERMISSION_DENIED` for a
/// non-validator on the emergency track, `INVALID_ARGUMENT` for every rule
/// about the command's own size, fields and signature.
pub fn admission_code(e: &GovError) -> Code {
    match e {
        GovError::NonceReplay { .. } => Code::AlreadyExists,
        GovError::NotValidator { .. } => Code::PermissionDenied,
        _ => Code::InvalidArgument,
    }
}

/// A command refused before ordering by a governance rule (admission): no
/// log index, nonce not consumed.
pub fn admission_status(e: &GovError) -> Status {
    let (_, error_json) = rule_and_json(e);
    with_detail(
        admission_code(e),
        api::ErrorDetail {
            rule: e.rule().to_owned(),
            message: e.to_string(),
            error_json,
            refusal: api::RefusalKind::Admission as i32,
            ..Default::default()
        },
    )
}

/// A command refused before ordering by a pending quota:
/// `RESOURCE_EXHAUSTED`, the quota refusal as JSON.
pub fn quota_status(q: &QuotaRefusal) -> Status {
    with_detail(
        Code::ResourceExhausted,
        api::ErrorDetail {
            rule: q.rule().to_owned(),
            message: q.to_string(),
            error_json: serde_json::to_string(q).unwrap_or_default(),
            refusal: api::RefusalKind::Admission as i32,
            ..Default::default()
        },
    )
}

/// A `Submit` request that does not decode to a command: refused before
/// ordering (`invalid_argument`, kind admission).
pub fn admission_invalid(field: &str, message: impl std::fmt::Display) -> Status {
    with_detail(
        Code::InvalidArgument,
        api::ErrorDetail {
            rule: "invalid_argument".to_owned(),
            message: format!("{field}: {message}"),
            refusal: api::RefusalKind::Admission as i32,
            ..Default::default()
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
    match e {
        NodeError::Admission(g) => return admission_status(g),
        NodeError::Quota(q) => return quota_status(q),
        NodeError::Malformed(m) => return admission_invalid("command", m),
        _ => {}
    }
    let (code, rule, leader_hint) = match e {
        NodeError::NoLeader => (Code::Unavailable, "no_leader", None),
        NodeError::NotLeader { leader } => (Code::Unavailable, "not_leader", Some(*leader)),
        NodeError::Forward { leader, .. } => (Code::Unavailable, "forward_failed", Some(*leader)),
        NodeError::ShuttingDown => (Code::Unavailable, "shutting_down", None),
        NodeError::Overloaded { .. } => (Code::ResourceExhausted, "overloaded", None),
        NodeError::Timeout { .. } => (Code::DeadlineExceeded, "timeout", None),
        NodeError::Malformed(_) => (Code::InvalidArgument, "malformed", None),
        NodeError::Diverged { .. } => (Code::Unavailable, "replica_diverged", None),
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
        ReadError::Diverged { .. } => (Code::Unavailable, "replica_diverged"),
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
        let status = gov_status(&e, Some(Position::new(41, 0)));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let detail = detail_of(&status).expect("detail");
        assert_eq!(detail.rule, "voting_closed");
        assert_eq!(detail.log_index, Some(41));
        let back: GovError = serde_json::from_str(&detail.error_json).expect("typed error");
        assert_eq!(back, e);
        assert!(detail.message.contains("NEP-3"), "{}", detail.message);
    }

    #[test]
    fn the_two_kinds_of_refusal_are_distinct_and_typed() {
        use neuroshard_governance::AccountId;
        let account = AccountId([3; 32]);
        // Apply: ordered, today's code, always a log index.
        let replay = GovError::NonceReplay {
            account,
            nonce: 4,
            expected: 6,
        };
        let applied = apply_status(&replay, Position::entry(17));
        assert_eq!(applied.code(), Code::FailedPrecondition);
        let d = detail_of(&applied).expect("detail");
        assert_eq!(d.refusal, api::RefusalKind::Apply as i32);
        assert_eq!(d.log_index, Some(17));
        // Admission: never a log index; the codes of the issue.
        let cases = [
            (
                GovError::CommandTooLarge {
                    bytes: 4_194_299,
                    max: 1,
                },
                Code::InvalidArgument,
            ),
            (
                GovError::BadSignature { author: account },
                Code::InvalidArgument,
            ),
            (GovError::ZeroAmount, Code::InvalidArgument),
            (replay.clone(), Code::AlreadyExists),
            (GovError::NotValidator { account }, Code::PermissionDenied),
        ];
        for (e, code) in cases {
            let s = node_status(&NodeError::Admission(e.clone()));
            assert_eq!(s.code(), code, "{e:?}");
            let d = detail_of(&s).expect("detail");
            assert_eq!(d.refusal, api::RefusalKind::Admission as i32, "{e:?}");
            assert_eq!(d.log_index, None);
            assert_eq!(d.rule, e.rule());
            let back: GovError = serde_json::from_str(&d.error_json).expect("typed");
            assert_eq!(back, e);
        }
        let q = node_status(&NodeError::Quota(QuotaRefusal {
            quota: crate::error::Quota::Account(account),
            pending: 64,
            limit: 64,
        }));
        assert_eq!(q.code(), Code::ResourceExhausted);
        let d = detail_of(&q).expect("detail");
        assert_eq!(
            (d.rule.as_str(), d.refusal),
            (
                "too_many_pending_for_account",
                api::RefusalKind::Admission as i32
            )
        );
        // Not a verdict on the command.
        let d = detail_of(&node_status(&NodeError::Timeout { ms: 5 })).expect("detail");
        assert_eq!(d.refusal, api::RefusalKind::Unspecified as i32);
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
