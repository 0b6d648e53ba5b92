//! Snapshots, state hashes and genesis loading.

use neuroshard_governance::testkit::{self, user_key, TestConfig};
use neuroshard_governance::{
    Amount, Command, Genesis, GenesisError, GovernanceState, SnapshotError, VoteChoice,
};

use crate::support::*;

#[test]
fn a_snapshot_restores_the_same_state_and_keeps_applying_identically() {
    let mut c = chain();
    let nep = to_voting(&mut c, 0, heads(1, 4));
    ok(vote(&mut c, 1, nep, VoteChoice::Yes));
    let bytes = c.state.to_snapshot_bytes().expect("snapshot encodes");
    let mut restored = GovernanceState::from_snapshot_bytes(&bytes).unwrap();
    assert_eq!(restored.state_hash(), c.state.state_hash());
    assert_eq!(restored, c.state);

    // The same next entries give the same states.
    let cmd = c.sign(
        &user_key(2),
        Command::Vote {
            nep,
            choice: VoteChoice::No,
        },
    );
    let entry = neuroshard_governance::Entry::Command(cmd);
    let index = c.next_index;
    assert_eq!(c.state.apply(index, &entry), restored.apply(index, &entry));
    assert_eq!(restored.state_hash(), c.state.state_hash());
    // Any change changes the hash.
    let before = restored.state_hash();
    restored
        .apply(
            index + 1,
            &neuroshard_governance::Entry::Tick {
                now_ms: c.now_ms + 1,
            },
        )
        .unwrap();
    assert_ne!(restored.state_hash(), before);
}

#[test]
fn corrupt_snapshots_are_refused() {
    let c = chain();
    let bytes = c.state.to_snapshot_bytes().expect("snapshot encodes");
    assert_eq!(
        GovernanceState::from_snapshot_bytes(b"nonsense"),
        Err(SnapshotError::BadHeader)
    );
    assert!(matches!(
        GovernanceState::from_snapshot_bytes(&bytes[..bytes.len() / 2]),
        Err(SnapshotError::Decode(_))
    ));
}

#[test]
fn genesis_round_trips_through_toml() {
    let (genesis, _) = testkit::genesis(&TestConfig::default());
    let text = genesis.to_toml().unwrap();
    let parsed = Genesis::from_toml(&text).unwrap();
    assert_eq!(parsed, genesis);
    assert_eq!(
        GovernanceState::from_genesis(&parsed).unwrap().state_hash(),
        GovernanceState::from_genesis(&genesis)
            .unwrap()
            .state_hash()
    );
}

#[test]
fn genesis_rules_table() {
    let (base, _) = testkit::genesis(&TestConfig::default());
    type Case = (&'static str, Genesis, fn(&GenesisError) -> bool);
    let mut cases: Vec<Case> = Vec::new();
    let mut g = base.clone();
    g.chain_id = "has space".to_owned();
    cases.push(("bad chain id", g, |e| {
        matches!(e, GenesisError::BadChainId { .. })
    }));
    let mut g = base.clone();
    g.allocations.push(g.allocations[0].clone());
    cases.push(("duplicate allocation", g, |e| {
        matches!(e, GenesisError::DuplicateAllocation { .. })
    }));
    let mut g = base.clone();
    g.allocations[0].balance = Amount(u64::MAX);
    cases.push(("supply overflow", g, |e| {
        matches!(e, GenesisError::SupplyOverflow { .. })
    }));
    // y = 2 is not the y-coordinate of any curve point: nobody could sign.
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2;
    let mut g = base.clone();
    g.allocations[0].account = neuroshard_governance::AccountId(off_curve);
    cases.push(("allocation to a non-point", g, |e| {
        matches!(e, GenesisError::BadAccountKey { .. })
    }));
    // The identity point (small order): anybody could sign for it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut g = base.clone();
    g.allocations[0].account = neuroshard_governance::AccountId(identity);
    cases.push(("allocation to a small-order key", g, |e| {
        matches!(e, GenesisError::BadAccountKey { .. })
    }));
    let mut g = base.clone();
    g.validators[0].identity = neuroshard_governance::AccountId(identity);
    cases.push(("small-order validator identity", g, |e| {
        matches!(e, GenesisError::BadAccountKey { .. })
    }));
    let mut g = base.clone();
    g.validators.pop();
    cases.push(("committee size", g, |e| {
        matches!(e, GenesisError::CommitteeSizeMismatch { .. })
    }));
    let mut g = base.clone();
    g.validators[1].index = 0;
    cases.push(("duplicate index", g, |e| {
        matches!(e, GenesisError::BadValidatorIndex { index: 0 })
    }));
    let mut g = base.clone();
    g.committee_hash = Some("00".repeat(32));
    cases.push(("committee hash", g, |e| {
        matches!(e, GenesisError::CommitteeHashMismatch { .. })
    }));
    let mut g = base.clone();
    g.committee.info.genesis_time_ms += 1;
    cases.push(("committee genesis time", g, |e| {
        matches!(e, GenesisError::CommitteeMismatch { .. })
    }));
    let mut g = base.clone();
    g.parameters.insert(
        "gov.quorum_bps".to_owned(),
        neuroshard_governance::genesis::ParamInput::Integer(20_000),
    );
    cases.push(("parameter out of range", g, |e| {
        matches!(e, GenesisError::Parameter(_))
    }));
    let mut g = base.clone();
    g.parameters.insert(
        "gov.grace_min_days".to_owned(),
        neuroshard_governance::genesis::ParamInput::Integer(31),
    );
    cases.push(("grace bounds inverted", g, |e| {
        matches!(e, GenesisError::GraceBoundsInverted { .. })
    }));
    for (name, g, check) in cases {
        match GovernanceState::from_genesis(&g) {
            Err(e) => assert!(check(&e), "{name}: {e:?}"),
            Ok(_) => panic!("{name}: accepted"),
        }
    }
    let mut g = base.clone();
    g.committee_hash = Some(hex::encode(base.committee.committee_hash()));
    GovernanceState::from_genesis(&g).unwrap();
}
