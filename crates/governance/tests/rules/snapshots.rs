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

/// A genesis for a committee of `n` whose BLS keys are dealt with
/// threshold `t` (t + 1 signers), public key set and committee info agreeing.
fn genesis_with_threshold(n: u32, t: u32) -> Genesis {
    let (mut g, _) = testkit::genesis(&TestConfig {
        validators: n,
        ..TestConfig::default()
    });
    let dealt = g
        .committee
        .info
        .scheme
        .scheme()
        .deal(t, n, &[9; 32])
        .expect("deal");
    g.committee.info.t = t;
    g.committee.info.group_public_key = dealt.public_key_set.group_public_key().to_bytes();
    g.committee.public_key_set = Some(dealt.public_key_set.to_bytes());
    g
}

#[test]
fn genesis_refuses_a_threshold_below_the_byzantine_quorum() {
    // (n, t + 1 needed, f): at the quorum accepted, one under refused
    // naming the rule and the numbers, one over (fewer crash faults
    // tolerated, still safe) accepted.
    for (n, needed, f) in [
        (1u32, 1u32, 0u32),
        (2, 2, 0),
        (3, 2, 0),
        (4, 3, 1),
        (5, 4, 1),
        (6, 4, 1),
        (7, 5, 2),
        (10, 7, 3),
    ] {
        GovernanceState::from_genesis(&genesis_with_threshold(n, needed - 1))
            .unwrap_or_else(|e| panic!("n = {n}, t + 1 = {needed}: {e}"));
        if needed > 1 {
            let e = GovernanceState::from_genesis(&genesis_with_threshold(n, needed - 2))
                .expect_err("under the quorum");
            assert_eq!(
                e,
                GenesisError::NotByzantineQuorum {
                    signers: needed - 1,
                    n,
                    faulty: f,
                    overlap: f + 1,
                    needed,
                },
                "n = {n}"
            );
            let text = e.to_string();
            assert!(
                text.contains("not a Byzantine quorum")
                    && text.contains(&format!("≥ ⌊(n + f)/2⌋ + 1 = {needed}")),
                "{text}"
            );
        }
        if needed < n {
            GovernanceState::from_genesis(&genesis_with_threshold(n, needed))
                .unwrap_or_else(|e| panic!("n = {n}, t + 1 = {}: {e}", needed + 1));
        }
    }
    // The old ceremony's n = 3 committee (t + 1 = 1: one validator signs)
    // and n = 5 (t + 1 = 3) are refused, also through TOML.
    for (n, old_t) in [(3u32, 0u32), (5, 2)] {
        let g = genesis_with_threshold(n, old_t);
        let text = g.to_toml().unwrap();
        let parsed = Genesis::from_toml(&text).unwrap();
        assert!(matches!(
            parsed.validate(),
            Err(GenesisError::NotByzantineQuorum { n: m, .. }) if m == n
        ));
    }
}

#[test]
fn genesis_refuses_a_time_parameter_below_its_floor() {
    use neuroshard_governance::genesis::ParamInput;
    use neuroshard_governance::params::ParamError;
    for (key, floor) in [
        ("gov.day_ms", 1_000i64),
        ("gov.max_clock_skew_ms", 1_000),
        ("gov.voting_days", 1),
        ("gov.emergency_window_days", 1),
    ] {
        for (value, accepted) in [(floor - 1, false), (floor, true), (floor + 1, true)] {
            let (mut g, _) = testkit::genesis(&TestConfig::default());
            g.parameters
                .insert(key.to_owned(), ParamInput::Integer(value));
            match (GovernanceState::from_genesis(&g), accepted) {
                (Ok(_), true) => {}
                (
                    Err(GenesisError::Parameter(ParamError::OutOfRange { key: k, min, .. })),
                    false,
                ) => assert_eq!((k.as_str(), min), (key, floor)),
                (other, _) => panic!("{key} = {value}: {:?}", other.map(|_| ())),
            }
        }
    }
}
