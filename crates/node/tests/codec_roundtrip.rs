//! Every kind of value the node stores or sends, written and read back:
//! log entries (the governance payload and the whole openraft record),
//! votes, applied outcomes, log ids, memberships, snapshot images and the
//! governance state. For random values, with sizes around every bound: an
//! encoder either writes bytes its decoder reads back to the same value, or
//! refuses — and it refuses exactly what the decoder would refuse.

use std::collections::BTreeSet;

use neuroshard_governance::limits::MAX_COMMAND_BYTES;
use neuroshard_governance::testkit::{user_key, TestChain, TestConfig};
use neuroshard_governance::{
    Amount, Command, EconomicImpact, Entry, Micro, NepContent, NepId, NepType, ParamValue,
    ParameterChange, SignedCommand, UpgradePath, VoteChoice,
};
use neuroshard_node::codec::{self, CodecError, MAX_ENCODED_VALUE_BYTES};
use neuroshard_node::store::machine::{SnapshotImage, MAX_SNAPSHOT_IMAGE_BYTES, SNAPSHOT_FORMAT};
use neuroshard_node::types::{Applied, LogId, RaftEntry, StoredMembership, Vote};
use openraft::{CommittedLeaderId, EntryPayload, Membership};
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};

/// `encode` then `decode`: the same value back, or a refusal the decoder
/// agrees with (the bytes it would be given are over the same bound).
fn round_trip<T: PartialEq + std::fmt::Debug>(
    value: &T,
    limit: usize,
    encode: impl Fn(&T) -> Result<Vec<u8>, CodecError>,
    decode: impl Fn(&[u8]) -> Result<T, String>,
    unbounded_len: usize,
) -> Result<(), TestCaseError> {
    match encode(value) {
        Ok(bytes) => {
            prop_assert!(bytes.len() <= limit);
            prop_assert_eq!(bytes.len(), unbounded_len);
            let back = decode(&bytes).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&back, value);
        }
        Err(CodecError::TooLarge { len, limit: l, .. }) => {
            prop_assert_eq!(l, limit);
            prop_assert_eq!(len, unbounded_len);
            prop_assert!(len > limit);
        }
        Err(e) => return Err(TestCaseError::fail(format!("unexpected refusal: {e}"))),
    }
    Ok(())
}

fn plain<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    value: &T,
) -> Result<(), TestCaseError> {
    let len = postcard::to_stdvec(value).unwrap().len();
    round_trip(
        value,
        MAX_ENCODED_VALUE_BYTES,
        |v| codec::encode("value", v),
        |b| codec::decode::<T>("value", b).map_err(|e| e.to_string()),
        len,
    )
}

fn versioned<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    value: &T,
) -> Result<(), TestCaseError> {
    let len = postcard::to_stdvec(value).unwrap().len() + 1;
    round_trip(
        value,
        MAX_ENCODED_VALUE_BYTES,
        |v| codec::encode_entry("entry", v),
        |b| codec::decode_entry::<T>("entry", b).map_err(|e| e.to_string()),
        len,
    )
}

fn text(max: usize) -> impl Strategy<Value = String> {
    // Multi-byte characters too, so byte and char counts differ.
    (0..=max, any::<bool>()).prop_map(|(n, wide)| {
        if wide {
            "ß".repeat(n / 2)
        } else {
            "x".repeat(n)
        }
    })
}

fn content() -> impl Strategy<Value = NepContent> {
    (
        text(300),
        text(2 * MAX_COMMAND_BYTES),
        text(2048),
        proptest::collection::vec((text(80), text(1500)), 0..40),
        any::<i64>(),
        any::<u32>(),
    )
        .prop_map(|(title, spec, summary, changes, m, grace)| NepContent {
            title,
            nep_type: NepType::Net,
            motivation: "m".to_owned(),
            specification: spec,
            parameter_changes: changes
                .into_iter()
                .map(|(key, value)| ParameterChange {
                    key,
                    new: ParamValue::Integer(value.len() as i64),
                    expected_old: ParamValue::String(value),
                })
                .collect(),
            economic_impact: EconomicImpact {
                training_efficiency_multiplier: Micro(m),
                training_reward_multiplier: Micro::ONE,
                net_earnings_change_percent: Micro(m / 2),
                summary,
            },
            upgrade_path: UpgradePath {
                grace_period_days: grace,
                backward_compatible: grace % 2 == 0,
            },
        })
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (any::<[u8; 32]>(), any::<u64>()).prop_map(|(to, amount)| Command::Transfer {
            to: neuroshard_governance::AccountId(to),
            amount: Amount(amount),
        }),
        any::<u64>().prop_map(|amount| Command::Stake {
            amount: Amount(amount)
        }),
        content().prop_map(|content| Command::CreateDraft { content }),
        (any::<u64>(), content()).prop_map(|(nep, content)| Command::AmendDraft {
            nep: NepId(nep),
            content
        }),
        (any::<u64>(), 0usize..3).prop_map(|(nep, c)| Command::Vote {
            nep: NepId(nep),
            choice: [VoteChoice::Yes, VoteChoice::No, VoteChoice::Abstain][c],
        }),
        any::<u64>().prop_map(|nep| Command::Withdraw { nep: NepId(nep) }),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        (0usize..8, any::<u64>(), command()).prop_map(|(user, nonce, cmd)| {
            Entry::Command(SignedCommand::sign(
                "neuroshard-test",
                &user_key(user),
                nonce,
                cmd,
            ))
        }),
        any::<u64>().prop_map(|now_ms| Entry::Tick { now_ms }),
    ]
}

fn log_id() -> impl Strategy<Value = LogId> {
    (any::<u64>(), any::<u64>(), any::<u64>())
        .prop_map(|(term, node, index)| LogId::new(CommittedLeaderId::new(term, node), index))
}

fn membership() -> impl Strategy<Value = StoredMembership> {
    (
        proptest::option::of(log_id()),
        proptest::collection::btree_set(any::<u64>(), 1..300),
    )
        .prop_map(|(id, voters)| {
            StoredMembership::new(id, Membership::new(vec![voters], BTreeSet::new()))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn governance_entries_and_commands(e in entry()) {
        versioned(&e)?;
        plain(&e)?;
        if let Entry::Command(c) = &e {
            plain(c)?;
        }
    }

    #[test]
    fn raft_records_votes_and_memberships(
        id in log_id(),
        e in entry(),
        m in membership(),
        kind in 0u8..3,
    ) {
        let payload = match kind {
            0 => EntryPayload::Normal(e),
            1 => EntryPayload::Membership(m.membership().clone()),
            _ => EntryPayload::Blank,
        };
        let record = RaftEntry { log_id: id, payload };
        versioned(&record)?;
        plain(&id)?;
        plain(&Some(id))?;
        plain(&m)?;
        let vote = Vote::new(id.leader_id.term, id.leader_id.node_id);
        plain(&vote)?;
        let mut committed = vote;
        committed.commit();
        plain(&committed)?;
    }

    #[test]
    fn applied_outcomes(index in any::<u64>(), user in 0usize..4, amount in 1u64..1_000_000) {
        let mut chain = TestChain::new(&TestConfig::default());
        let staked = chain.exec(&user_key(user), Command::Stake { amount: Amount(amount) });
        let refused = chain.exec(&user_key(user), Command::Stake { amount: Amount(0) });
        for outcomes in [vec![staked.clone()], vec![staked, refused], vec![]] {
            plain(&Applied { log_index: index, outcomes })?;
        }
    }

    #[test]
    fn snapshot_images_and_states(extra in 0usize..(2 * 1024 * 1024), m in membership()) {
        let chain = TestChain::new(&TestConfig::default());
        let governance = chain.state.to_snapshot_bytes().expect("a small state encodes");
        let back = neuroshard_governance::GovernanceState::from_snapshot_bytes(&governance)
            .expect("and reads back");
        prop_assert_eq!(back.state_hash(), chain.state.state_hash());
        let image = SnapshotImage {
            format: SNAPSHOT_FORMAT,
            last_applied: m.log_id().to_owned(),
            membership: m.clone(),
            governance,
        };
        let len = postcard::to_stdvec(&image).unwrap().len();
        round_trip(
            &image,
            MAX_SNAPSHOT_IMAGE_BYTES,
            |i| i.encode(),
            |b| SnapshotImage::decode(b).map_err(|e| e.to_string()),
            len,
        )?;
        // A governance blob of random size: the image bound decides alone.
        let big = SnapshotImage { governance: vec![1; extra], ..image };
        let len = postcard::to_stdvec(&big).unwrap().len();
        prop_assert_eq!(big.encode().is_ok(), len <= MAX_SNAPSHOT_IMAGE_BYTES);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Commands whose entries straddle the codec bound: written and read
    /// back below it, refused by both sides above it.
    #[test]
    fn entries_around_the_codec_bound(delta in 0usize..400, user in 0usize..4) {
        let mut content = NepContent {
            title: "t".to_owned(),
            nep_type: NepType::Net,
            motivation: String::new(),
            specification: String::new(),
            parameter_changes: Vec::new(),
            economic_impact: EconomicImpact {
                training_efficiency_multiplier: Micro::ONE,
                training_reward_multiplier: Micro::ONE,
                net_earnings_change_percent: Micro(0),
                summary: String::new(),
            },
            upgrade_path: UpgradePath {
                grace_period_days: 7,
                backward_compatible: true,
            },
        };
        content.specification = "s".repeat(MAX_ENCODED_VALUE_BYTES - 400 + delta);
        let e = Entry::Command(SignedCommand::sign(
            "neuroshard-test",
            &user_key(user),
            1,
            Command::CreateDraft { content },
        ));
        versioned(&e)?;
        plain(&e)?;
    }
}

/// Values right at and just over the codec bound, both ways.
#[test]
fn the_bound_is_the_same_for_encoders_and_decoders() {
    for len in [
        MAX_ENCODED_VALUE_BYTES - 6,
        MAX_ENCODED_VALUE_BYTES - 5,
        MAX_ENCODED_VALUE_BYTES - 4,
        MAX_ENCODED_VALUE_BYTES - 3,
    ] {
        let value = vec![9u8; len];
        let raw = postcard::to_stdvec(&value).unwrap();
        let written = codec::encode("blob", &value);
        let read = codec::decode::<Vec<u8>>("blob", &raw);
        assert_eq!(written.is_ok(), read.is_ok(), "plain, {len}");
        let versioned = codec::encode_entry("blob", &value);
        let mut with_version = vec![neuroshard_governance::format::ENTRY_FORMAT_VERSION];
        with_version.extend_from_slice(&raw);
        let read = codec::decode_entry::<Vec<u8>>("blob", &with_version);
        assert_eq!(versioned.is_ok(), read.is_ok(), "versioned, {len}");
    }
}
