//! Conversions between the wire messages of `proto/raft.proto` and
//! openraft's types. Decoding never trusts the peer: a missing field or an
//! undecodable payload is an error naming the field.

use std::collections::BTreeSet;

use openraft::{CommittedLeaderId, EmptyNode, EntryPayload, Membership};

use crate::codec;
use crate::proto;
use crate::types::{LogId, NodeId, RaftEntry, SnapshotMeta, StoredMembership, TypeConfig, Vote};

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{field}`: {source}")]
    Payload {
        field: &'static str,
        #[source]
        source: codec::CodecError,
    },
    #[error("field `{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

pub fn vote_to(v: &Vote) -> proto::Vote {
    proto::Vote {
        term: v.leader_id.term,
        node_id: v.leader_id.node_id,
        committed: v.committed,
    }
}

pub fn vote_from(v: Option<proto::Vote>) -> Result<Vote, WireError> {
    let v = v.ok_or(WireError::Missing("vote"))?;
    Ok(if v.committed {
        Vote::new_committed(v.term, v.node_id)
    } else {
        Vote::new(v.term, v.node_id)
    })
}

pub fn log_id_to(id: &LogId) -> proto::LogId {
    proto::LogId {
        term: id.leader_id.term,
        node_id: id.leader_id.node_id,
        index: id.index,
    }
}

pub fn log_id_from(id: proto::LogId) -> LogId {
    LogId::new(CommittedLeaderId::new(id.term, id.node_id), id.index)
}

pub fn opt_log_id_to(id: &Option<LogId>) -> Option<proto::LogId> {
    id.as_ref().map(log_id_to)
}

pub fn opt_log_id_from(id: Option<proto::LogId>) -> Option<LogId> {
    id.map(log_id_from)
}

pub fn membership_to(m: &Membership<NodeId, EmptyNode>) -> proto::Membership {
    proto::Membership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|set| proto::NodeSet {
                ids: set.iter().copied().collect(),
            })
            .collect(),
        nodes: m.nodes().map(|(id, _)| *id).collect(),
    }
}

pub fn membership_from(
    m: Option<proto::Membership>,
) -> Result<Membership<NodeId, EmptyNode>, WireError> {
    let m = m.ok_or(WireError::Missing("membership"))?;
    let configs: Vec<BTreeSet<NodeId>> = m
        .configs
        .into_iter()
        .map(|s| s.ids.into_iter().collect())
        .collect();
    if configs.is_empty() {
        return Err(WireError::Invalid {
            field: "membership.configs",
            message: "no configuration".into(),
        });
    }
    let voters: BTreeSet<NodeId> = configs.iter().flatten().copied().collect();
    let nodes: BTreeSet<NodeId> = m.nodes.into_iter().collect();
    if !voters.is_subset(&nodes) {
        return Err(WireError::Invalid {
            field: "membership.nodes",
            message: "a voter is not listed as a node".into(),
        });
    }
    Ok(Membership::new(configs, nodes))
}

pub fn entry_to(e: &RaftEntry) -> Result<proto::LogEntry, codec::CodecError> {
    let payload = match &e.payload {
        EntryPayload::Blank => proto::log_entry::Payload::Blank(proto::Empty {}),
        EntryPayload::Normal(gov) => {
            proto::log_entry::Payload::Normal(codec::encode_entry("log entry payload", gov)?)
        }
        EntryPayload::Membership(m) => proto::log_entry::Payload::Membership(membership_to(m)),
    };
    Ok(proto::LogEntry {
        log_id: Some(log_id_to(&e.log_id)),
        payload: Some(payload),
    })
}

pub fn entry_from(e: proto::LogEntry) -> Result<RaftEntry, WireError> {
    let log_id = log_id_from(e.log_id.ok_or(WireError::Missing("entry.log_id"))?);
    let payload = match e.payload.ok_or(WireError::Missing("entry.payload"))? {
        proto::log_entry::Payload::Blank(_) => EntryPayload::Blank,
        proto::log_entry::Payload::Normal(bytes) => {
            EntryPayload::Normal(codec::decode_entry("log entry payload", &bytes).map_err(
                |source| WireError::Payload {
                    field: "entry.normal",
                    source,
                },
            )?)
        }
        proto::log_entry::Payload::Membership(m) => {
            EntryPayload::Membership(membership_from(Some(m))?)
        }
    };
    Ok(RaftEntry { log_id, payload })
}

pub fn append_request_to(
    req: &openraft::raft::AppendEntriesRequest<TypeConfig>,
) -> Result<proto::AppendEntriesRequest, codec::CodecError> {
    Ok(proto::AppendEntriesRequest {
        vote: Some(vote_to(&req.vote)),
        prev_log_id: opt_log_id_to(&req.prev_log_id),
        entries: req.entries.iter().map(entry_to).collect::<Result<_, _>>()?,
        leader_commit: opt_log_id_to(&req.leader_commit),
    })
}

pub fn append_request_from(
    req: proto::AppendEntriesRequest,
) -> Result<openraft::raft::AppendEntriesRequest<TypeConfig>, WireError> {
    Ok(openraft::raft::AppendEntriesRequest {
        vote: vote_from(req.vote)?,
        prev_log_id: opt_log_id_from(req.prev_log_id),
        entries: req
            .entries
            .into_iter()
            .map(entry_from)
            .collect::<Result<_, _>>()?,
        leader_commit: opt_log_id_from(req.leader_commit),
    })
}

pub fn append_response_to(
    resp: &openraft::raft::AppendEntriesResponse<NodeId>,
) -> proto::AppendEntriesResponse {
    use openraft::raft::AppendEntriesResponse as R;
    use proto::append_entries_response::Result as P;
    let result = match resp {
        R::Success => P::Success(proto::Empty {}),
        R::PartialSuccess(m) => P::PartialSuccess(proto::PartialSuccess {
            matching: opt_log_id_to(m),
        }),
        R::Conflict => P::Conflict(proto::Empty {}),
        R::HigherVote(v) => P::HigherVote(vote_to(v)),
    };
    proto::AppendEntriesResponse {
        result: Some(result),
    }
}

pub fn append_response_from(
    resp: proto::AppendEntriesResponse,
) -> Result<openraft::raft::AppendEntriesResponse<NodeId>, WireError> {
    use openraft::raft::AppendEntriesResponse as R;
    use proto::append_entries_response::Result as P;
    Ok(match resp.result.ok_or(WireError::Missing("result"))? {
        P::Success(_) => R::Success,
        P::PartialSuccess(p) => R::PartialSuccess(opt_log_id_from(p.matching)),
        P::Conflict(_) => R::Conflict,
        P::HigherVote(v) => R::HigherVote(vote_from(Some(v))?),
    })
}

pub fn vote_request_to(req: &openraft::raft::VoteRequest<NodeId>) -> proto::VoteRequest {
    proto::VoteRequest {
        vote: Some(vote_to(&req.vote)),
        last_log_id: opt_log_id_to(&req.last_log_id),
    }
}

pub fn vote_request_from(
    req: proto::VoteRequest,
) -> Result<openraft::raft::VoteRequest<NodeId>, WireError> {
    Ok(openraft::raft::VoteRequest {
        vote: vote_from(req.vote)?,
        last_log_id: opt_log_id_from(req.last_log_id),
    })
}

pub fn vote_response_to(resp: &openraft::raft::VoteResponse<NodeId>) -> proto::VoteResponse {
    proto::VoteResponse {
        vote: Some(vote_to(&resp.vote)),
        vote_granted: resp.vote_granted,
        last_log_id: opt_log_id_to(&resp.last_log_id),
    }
}

pub fn vote_response_from(
    resp: proto::VoteResponse,
) -> Result<openraft::raft::VoteResponse<NodeId>, WireError> {
    Ok(openraft::raft::VoteResponse {
        vote: vote_from(resp.vote)?,
        vote_granted: resp.vote_granted,
        last_log_id: opt_log_id_from(resp.last_log_id),
    })
}

pub fn snapshot_meta_to(meta: &SnapshotMeta) -> proto::SnapshotMeta {
    proto::SnapshotMeta {
        last_log_id: opt_log_id_to(&meta.last_log_id),
        last_membership_log_id: opt_log_id_to(meta.last_membership.log_id()),
        last_membership: Some(membership_to(meta.last_membership.membership())),
        snapshot_id: meta.snapshot_id.clone(),
    }
}

/// Longest snapshot id accepted from a peer.
pub const MAX_SNAPSHOT_ID_BYTES: usize = 256;

pub fn snapshot_meta_from(meta: Option<proto::SnapshotMeta>) -> Result<SnapshotMeta, WireError> {
    let meta = meta.ok_or(WireError::Missing("meta"))?;
    if meta.snapshot_id.len() > MAX_SNAPSHOT_ID_BYTES {
        return Err(WireError::Invalid {
            field: "meta.snapshot_id",
            message: format!(
                "{} bytes, more than MAX_SNAPSHOT_ID_BYTES = {MAX_SNAPSHOT_ID_BYTES}",
                meta.snapshot_id.len()
            ),
        });
    }
    Ok(SnapshotMeta {
        last_log_id: opt_log_id_from(meta.last_log_id),
        last_membership: StoredMembership::new(
            opt_log_id_from(meta.last_membership_log_id),
            membership_from(meta.last_membership)?,
        ),
        snapshot_id: meta.snapshot_id,
    })
}

pub fn install_request_to(
    req: &openraft::raft::InstallSnapshotRequest<TypeConfig>,
) -> proto::InstallSnapshotRequest {
    proto::InstallSnapshotRequest {
        vote: Some(vote_to(&req.vote)),
        meta: Some(snapshot_meta_to(&req.meta)),
        offset: req.offset,
        data: req.data.clone(),
        done: req.done,
    }
}

pub fn install_request_from(
    req: proto::InstallSnapshotRequest,
) -> Result<openraft::raft::InstallSnapshotRequest<TypeConfig>, WireError> {
    Ok(openraft::raft::InstallSnapshotRequest {
        vote: vote_from(req.vote)?,
        meta: snapshot_meta_from(req.meta)?,
        offset: req.offset,
        data: req.data,
        done: req.done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_messages_round_trip() {
        let vote = Vote::new_committed(7, 2);
        assert_eq!(vote_from(Some(vote_to(&vote))).expect("vote"), vote);
        let m = Membership::new(vec![[0u64, 1, 2, 3].into_iter().collect()], ());
        let entries = vec![
            RaftEntry {
                log_id: LogId::new(CommittedLeaderId::new(1, 0), 1),
                payload: EntryPayload::Blank,
            },
            RaftEntry {
                log_id: LogId::new(CommittedLeaderId::new(1, 0), 2),
                payload: EntryPayload::Membership(m),
            },
            RaftEntry {
                log_id: LogId::new(CommittedLeaderId::new(2, 1), 3),
                payload: EntryPayload::Normal(neuroshard_governance::Entry::Tick { now_ms: 42 }),
            },
        ];
        let req = openraft::raft::AppendEntriesRequest::<TypeConfig> {
            vote,
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(1, 3), 0)),
            entries,
            leader_commit: None,
        };
        let back = append_request_from(append_request_to(&req).expect("encode")).expect("decode");
        assert_eq!(back.vote, req.vote);
        assert_eq!(back.prev_log_id, req.prev_log_id);
        assert_eq!(back.entries, req.entries);
    }

    #[test]
    fn missing_and_inconsistent_fields_are_named() {
        let err = vote_from(None).expect_err("missing vote");
        assert!(err.to_string().contains("`vote`"), "{err}");
        let bad = proto::Membership {
            configs: vec![proto::NodeSet { ids: vec![1, 2] }],
            nodes: vec![1],
        };
        let err = membership_from(Some(bad)).expect_err("voter not a node");
        assert!(err.to_string().contains("membership.nodes"), "{err}");
        let err = entry_from(proto::LogEntry {
            log_id: Some(proto::LogId {
                term: 1,
                node_id: 0,
                index: 1,
            }),
            payload: Some(proto::log_entry::Payload::Normal(vec![0xff, 0xff, 0xff])),
        })
        .expect_err("garbage payload");
        assert!(err.to_string().contains("entry.normal"), "{err}");
    }

    #[test]
    fn entry_payloads_are_versioned_and_unknown_versions_refused() {
        use neuroshard_governance::format::ENTRY_FORMAT_VERSION;
        let entry = RaftEntry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), 3),
            payload: EntryPayload::Normal(neuroshard_governance::Entry::Tick { now_ms: 42 }),
        };
        let wire = entry_to(&entry).expect("encode");
        let Some(proto::log_entry::Payload::Normal(bytes)) = wire.payload.clone() else {
            panic!("a normal payload: {wire:?}");
        };
        assert_eq!(bytes[0], ENTRY_FORMAT_VERSION);
        assert_eq!(entry_from(wire.clone()).expect("decode"), entry);
        // The same payload under another version is refused, naming both.
        let mut newer = bytes.clone();
        newer[0] = ENTRY_FORMAT_VERSION + 1;
        let err = entry_from(proto::LogEntry {
            payload: Some(proto::log_entry::Payload::Normal(newer)),
            ..wire
        })
        .expect_err("unknown version");
        let text = err.to_string();
        assert!(
            text.contains(&format!("format version {}", ENTRY_FORMAT_VERSION + 1))
                && text.contains(&format!("writes {ENTRY_FORMAT_VERSION}")),
            "{text}"
        );
    }
}
