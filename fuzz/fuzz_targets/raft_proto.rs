//! The peer listener's messages (`proto/raft.proto`), decoded with prost
//! and converted to openraft's types as `PeerService` and the peer client
//! do (`transport::convert`), plus forwarded command batches and their
//! results. The first byte picks the message; the rest is its protobuf.
//!
//! Checks: no panic; a converted message converts back to a wire message
//! that converts and re-encodes to the same wire message; forwarded
//! commands decode within `MAX_COMMAND_BYTES`; applied results round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;

use neuroshard_governance::admission::check_fields;
use neuroshard_governance::limits::MAX_COMMAND_BYTES;
use neuroshard_node::proto;
use neuroshard_node::store::machine::SnapshotImage;
use neuroshard_node::submit::{result_from_wire, result_to_wire};
use neuroshard_node::transport::api_service::decode_command;
use neuroshard_node::transport::convert;

fn decode<M: Message + Default>(bytes: &[u8]) -> Option<M> {
    M::decode(bytes).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 9 {
        0 => {
            let Some(wire) = decode::<proto::AppendEntriesRequest>(bytes) else {
                return;
            };
            let Ok(rpc) = convert::append_request_from(wire) else {
                return;
            };
            let wire = convert::append_request_to(&rpc).expect("a decoded request encodes");
            let again = convert::append_request_from(wire.clone()).expect("converts again");
            assert_eq!(again.entries, rpc.entries);
            assert_eq!(again.vote, rpc.vote);
            assert_eq!(again.prev_log_id, rpc.prev_log_id);
            assert_eq!(again.leader_commit, rpc.leader_commit);
            assert_eq!(convert::append_request_to(&again).expect("encodes"), wire);
        }
        1 => {
            let Some(wire) = decode::<proto::AppendEntriesResponse>(bytes) else {
                return;
            };
            let Ok(resp) = convert::append_response_from(wire) else {
                return;
            };
            let wire = convert::append_response_to(&resp);
            let again = convert::append_response_from(wire.clone()).expect("converts again");
            assert_eq!(again, resp);
        }
        2 => {
            let Some(wire) = decode::<proto::VoteRequest>(bytes) else {
                return;
            };
            let Ok(rpc) = convert::vote_request_from(wire) else {
                return;
            };
            let wire = convert::vote_request_to(&rpc);
            assert_eq!(
                convert::vote_request_from(wire).expect("converts again"),
                rpc
            );
        }
        3 => {
            let Some(wire) = decode::<proto::VoteResponse>(bytes) else {
                return;
            };
            let Ok(resp) = convert::vote_response_from(wire) else {
                return;
            };
            let wire = convert::vote_response_to(&resp);
            assert_eq!(
                convert::vote_response_from(wire).expect("converts again"),
                resp
            );
        }
        4 => {
            let Some(wire) = decode::<proto::InstallSnapshotRequest>(bytes) else {
                return;
            };
            let Ok(rpc) = convert::install_request_from(wire) else {
                return;
            };
            let wire = convert::install_request_to(&rpc);
            let again = convert::install_request_from(wire.clone()).expect("converts again");
            assert_eq!(again.meta, rpc.meta);
            assert_eq!(again.vote, rpc.vote);
            assert_eq!(convert::install_request_to(&again), wire);
            if rpc.offset == 0 && rpc.done {
                let _ = SnapshotImage::decode(&rpc.data);
            }
        }
        5 => {
            let Some(wire) = decode::<proto::ForwardCommandsRequest>(bytes) else {
                return;
            };
            for encoded in &wire.commands {
                if let Ok(command) = decode_command(encoded) {
                    assert!(encoded.len() <= MAX_COMMAND_BYTES);
                    let _ = check_fields(&command, encoded.len());
                }
            }
        }
        6 => {
            let Some(wire) = decode::<proto::ForwardCommandsResponse>(bytes) else {
                return;
            };
            for result in wire.results {
                let decoded = result_from_wire(result);
                let wire = result_to_wire(&decoded);
                if let Ok(submitted) = decoded {
                    let again = result_from_wire(wire).expect("an applied result reads back");
                    assert_eq!(again.position, submitted.position);
                    assert_eq!(again.outcome, submitted.outcome);
                }
            }
        }
        7 => {
            let Some(wire) = decode::<proto::LogEntry>(bytes) else {
                return;
            };
            let Ok(entry) = convert::entry_from(wire) else {
                return;
            };
            let wire = convert::entry_to(&entry).expect("a decoded entry encodes");
            assert_eq!(convert::entry_from(wire).expect("converts again"), entry);
        }
        _ => {
            let Some(wire) = decode::<proto::SnapshotMeta>(bytes) else {
                return;
            };
            let Ok(meta) = convert::snapshot_meta_from(Some(wire)) else {
                return;
            };
            let wire = convert::snapshot_meta_to(&meta);
            assert_eq!(
                convert::snapshot_meta_from(Some(wire)).expect("converts again"),
                meta
            );
        }
    }
});
