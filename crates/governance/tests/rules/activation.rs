//! Scheduling, conflicts, activation with compare-and-set, version bumps.

use neuroshard_governance::{
    NepType, ParamValue, ProtocolVersion, RejectReason, Stage, Timestamp, VoteChoice,
};

use crate::support::*;

/// Runs `content` through a vote that passes; returns its id.
fn pass(
    c: &mut testkit::TestChain,
    content: neuroshard_governance::NepContent,
) -> neuroshard_governance::NepId {
    let nep = to_voting(c, 0, content);
    ok(vote(c, 1, nep, VoteChoice::Yes));
    close_voting(c, nep);
    nep
}

#[test]
fn two_approved_neps_on_one_key_the_second_is_a_conflict() {
    let mut c = chain();
    let a = submit(&mut c, 0, heads(1, 4));
    let b = submit(&mut c, 1, heads(1, 2));
    ok(c.advance_days(7));
    for nep in [a, b] {
        ok(vote(&mut c, 2, nep, VoteChoice::Yes));
        ok(vote(&mut c, 3, nep, VoteChoice::Yes));
    }
    close_voting(&mut c, a);
    // Both closed at the same tick; A (lower id) was decided first.
    assert_eq!(stage(&c, a), Stage::Scheduled);
    assert_eq!(stage(&c, b), Stage::Rejected);
    assert_eq!(
        c.state.proposal(b).unwrap().rejection,
        Some(RejectReason::Conflict {
            key: "train.prediction_heads".to_owned(),
            with: Some(a),
            expected_old: ParamValue::Integer(1),
            current: ParamValue::Integer(1),
        })
    );
}

#[test]
fn a_stale_expected_old_is_a_conflict() {
    let mut c = chain();
    let a = pass(&mut c, heads(1, 4));
    ok(c.advance_days(7));
    assert_eq!(stage(&c, a), Stage::Active);
    assert_eq!(param(&c, "train.prediction_heads"), ParamValue::Integer(4));
    // Written against the old value 1; the registry now holds 4.
    let b = pass(&mut c, heads(1, 2));
    assert_eq!(stage(&c, b), Stage::Rejected);
    assert!(matches!(
        c.state.proposal(b).unwrap().rejection,
        Some(RejectReason::Conflict {
            with: None,
            current: ParamValue::Integer(4),
            ..
        })
    ));
    assert_eq!(param(&c, "train.prediction_heads"), ParamValue::Integer(4));
}

#[test]
fn activation_applies_at_voting_end_plus_grace_and_bumps_the_version() {
    let mut c = chain();
    let minor = pass(&mut c, heads(1, 4));
    let p = c.state.proposal(minor).unwrap();
    let activation = p.activation_ms.unwrap();
    let deadline = p.vote.as_ref().unwrap().deadline_ms;
    assert_eq!(activation, Timestamp(deadline.0 + 7 * c.day_ms()));
    assert_eq!(
        p.version_after,
        Some(ProtocolVersion { major: 1, minor: 1 })
    );
    // Not yet: one millisecond before.
    ok(c.tick_at(activation.0 - 1));
    assert_eq!(stage(&c, minor), Stage::Scheduled);
    assert_eq!(
        c.state.protocol_version(),
        ProtocolVersion { major: 1, minor: 0 }
    );
    ok(c.tick_at(activation.0));
    assert_eq!(stage(&c, minor), Stage::Active);
    assert_eq!(
        c.state.protocol_version(),
        ProtocolVersion { major: 1, minor: 1 }
    );

    // Not backward compatible: major bump, minor reset.
    let major = pass(
        &mut c,
        nep(
            NepType::Arch,
            vec![int_change("arch.num_layers", 32, 48)],
            7,
            false,
        ),
    );
    assert_eq!(
        c.state.proposal(major).unwrap().version_after,
        Some(ProtocolVersion { major: 2, minor: 0 })
    );
    ok(c.advance_days(7));
    assert_eq!(stage(&c, major), Stage::Active);
    assert_eq!(
        c.state.protocol_version(),
        ProtocolVersion { major: 2, minor: 0 }
    );
    assert_eq!(param(&c, "arch.num_layers"), ParamValue::Integer(48));
}

#[test]
fn a_later_nep_with_a_shorter_grace_waits_for_the_earlier_one() {
    let mut c = chain();
    // A: grace 30 days; B, decided at the same tick after A: grace 7 days,
    // so it would otherwise activate first. It waits, keeping activation
    // order = certificate order.
    let a = submit(
        &mut c,
        0,
        nep(
            NepType::Train,
            vec![int_change("train.batch_size", 512, 1024)],
            30,
            true,
        ),
    );
    let b = submit(&mut c, 1, heads(1, 4));
    ok(c.advance_days(7));
    ok(vote(&mut c, 2, a, VoteChoice::Yes));
    ok(vote(&mut c, 2, b, VoteChoice::Yes));
    close_voting(&mut c, a);
    let pa = c.state.proposal(a).unwrap();
    let pb = c.state.proposal(b).unwrap();
    assert_eq!(pb.activation_ms, pa.activation_ms);
    assert!(pa.certificates[0] < pb.certificates[0]);
    assert_eq!(
        pa.version_after,
        Some(ProtocolVersion { major: 1, minor: 1 })
    );
    assert_eq!(
        pb.version_after,
        Some(ProtocolVersion { major: 1, minor: 2 })
    );
    ok(c.tick_at(pa.activation_ms.unwrap().0));
    assert_eq!((stage(&c, a), stage(&c, b)), (Stage::Active, Stage::Active));
    assert_eq!(
        c.state.protocol_version(),
        ProtocolVersion { major: 1, minor: 2 }
    );
}

#[test]
fn governance_parameters_changed_by_a_nep_apply_to_later_neps() {
    let mut c = chain();
    let g = pass(
        &mut c,
        nep(
            NepType::Gov,
            vec![int_change("gov.quorum_bps", 2000, 5000)],
            7,
            true,
        ),
    );
    ok(c.advance_days(7));
    assert_eq!(stage(&c, g), Stage::Active);
    // 1000 of 4000 NEURO is now below the 50% quorum.
    let n = to_voting(&mut c, 0, heads(1, 4));
    assert_eq!(c.state.tally(n).unwrap().quorum_bps.0, 5000);
    ok(vote(&mut c, 1, n, VoteChoice::Yes));
    close_voting(&mut c, n);
    assert_eq!(
        c.state.proposal(n).unwrap().rejection,
        Some(RejectReason::NoQuorum)
    );
}

#[test]
fn committed_time_never_moves_back() {
    let mut c = chain();
    ok(c.tick_at(c.now_ms + 5_000));
    let t = c.state.committed_time_ms();
    ok(c.tick_at(t - 4_000));
    assert_eq!(c.state.committed_time_ms(), t);
}
