//! The emergency track: approvals, window expiry, cancellation,
//! ratification and revocation.

use neuroshard_governance::testkit::{account_of, user_key, validator_key, TestChain};
use neuroshard_governance::{
    CertificateKind, Command, Effect, GovError, NepContent, NepId, NepType, ParamValue,
    ProtocolVersion, RejectReason, Stage, VoteChoice,
};

use crate::support::*;

fn emergency(changes: Vec<neuroshard_governance::ParameterChange>, grace_days: u32) -> NepContent {
    nep(NepType::Emerg, changes, grace_days, true)
}

fn submit_emergency(c: &mut TestChain, content: NepContent) -> NepId {
    match ok(c.exec(&validator_key(0), Command::SubmitEmergency { content })).effect {
        Effect::EmergencySubmitted { nep, .. } => nep,
        other => panic!("unexpected {other:?}"),
    }
}

fn approve(c: &mut TestChain, validators: std::ops::Range<u32>, nep: NepId) {
    for v in validators {
        ok(c.exec(&validator_key(v), Command::EmergencyApprove { nep }));
    }
}

#[test]
fn two_f_approvals_expire_and_two_f_plus_one_schedule() {
    // n = 4, f = 1: 2f = 2 is not enough, 2f + 1 = 3 is.
    for (approvals, expected) in [(2u32, Stage::Rejected), (3, Stage::Scheduled)] {
        let mut c = chain();
        let nep = submit_emergency(
            &mut c,
            emergency(vec![int_change("net.gossip_fanout", 8, 16)], 1),
        );
        approve(&mut c, 0..approvals, nep);
        let window = c.state.proposal(nep).unwrap().window_ends_ms.unwrap();
        ok(c.tick_at(window.0 - 1));
        if approvals < 3 {
            assert_eq!(stage(&c, nep), Stage::AwaitingApproval);
            ok(c.tick_at(window.0));
            assert_eq!(
                c.state.proposal(nep).unwrap().rejection,
                Some(RejectReason::EmergencyWindowExpired {
                    approvals,
                    threshold: 3
                })
            );
            // An approval after the closing tick is refused by name.
            assert!(matches!(
                err(c.exec(&validator_key(3), Command::EmergencyApprove { nep })),
                GovError::EmergencyWindowClosed { deadline_ms, .. } if deadline_ms == window
            ));
        }
        assert_eq!(stage(&c, nep), expected, "{approvals} approvals");
    }
}

#[test]
fn every_committee_size_needs_its_byzantine_quorum_of_approvals() {
    // The count certificates need (t + 1): n = 3 needs 2 approvals (one
    // validator alone no longer decides), n = 5 needs 4 (two disjoint-enough
    // groups of 3 could decide differently), n = 7 needs 5.
    for (n, needed) in [(1u32, 1u32), (2, 2), (3, 2), (4, 3), (5, 4), (6, 4), (7, 5)] {
        assert_eq!(neuroshard_governance::byzantine_quorum(n), needed);
        for approvals in [needed - 1, needed] {
            let mut c = TestChain::new(&neuroshard_governance::testkit::TestConfig {
                validators: n,
                ..Default::default()
            });
            assert_eq!(c.state.emergency_approvals_needed(), needed, "n = {n}");
            assert_eq!(c.genesis.committee.info.t + 1, needed, "n = {n}: t + 1");
            let nep = submit_emergency(
                &mut c,
                emergency(vec![int_change("net.gossip_fanout", 8, 16)], 1),
            );
            approve(&mut c, 0..approvals, nep);
            let window = c.state.proposal(nep).unwrap().window_ends_ms.unwrap();
            ok(c.tick_at(window.0));
            let expected = if approvals < needed {
                Stage::Rejected
            } else {
                Stage::Scheduled
            };
            assert_eq!(stage(&c, nep), expected, "n = {n}, {approvals} approvals");
            if approvals < needed {
                assert_eq!(
                    c.state.proposal(nep).unwrap().rejection,
                    Some(RejectReason::EmergencyWindowExpired {
                        approvals,
                        threshold: needed
                    })
                );
            }
        }
    }
}

#[test]
fn only_validators_submit_and_approve_once() {
    let mut c = chain();
    let content = emergency(vec![int_change("net.gossip_fanout", 8, 16)], 0);
    assert_eq!(
        err(c.exec(
            &user_key(0),
            Command::SubmitEmergency {
                content: content.clone()
            }
        )),
        GovError::NotValidator { account: user(0) }
    );
    assert!(matches!(
        err(c.exec(
            &validator_key(0),
            Command::SubmitEmergency {
                content: heads(1, 4)
            }
        )),
        GovError::NotEmergency {
            nep_type: NepType::Train
        }
    ));
    let nep = submit_emergency(&mut c, content);
    assert_eq!(
        err(c.exec(&user_key(0), Command::EmergencyApprove { nep })),
        GovError::NotValidator { account: user(0) }
    );
    ok(c.exec(&validator_key(1), Command::EmergencyApprove { nep }));
    assert_eq!(
        err(c.exec(&validator_key(1), Command::EmergencyApprove { nep })),
        GovError::AlreadyApproved { nep, validator: 1 }
    );
    // No stake was needed and no fee was burned.
    assert_eq!(c.state.supply().burned, 0);
    // Emergency grace is bounded by gov.emergency_grace_max_days (1).
    assert!(matches!(
        err(c.exec(
            &validator_key(0),
            Command::SubmitEmergency {
                content: emergency(vec![int_change("net.gossip_fanout", 8, 16)], 2)
            }
        )),
        GovError::InvalidContent(_)
    ));
    let _ = account_of(&validator_key(0));
}

#[test]
fn an_emergency_cancels_a_scheduled_nep_on_the_same_key() {
    let mut c = chain();
    let normal = to_voting(
        &mut c,
        0,
        nep(
            NepType::Net,
            vec![int_change("net.gossip_fanout", 8, 12)],
            7,
            true,
        ),
    );
    ok(vote(&mut c, 1, normal, VoteChoice::Yes));
    close_voting(&mut c, normal);
    assert_eq!(stage(&c, normal), Stage::Scheduled);
    assert_eq!(
        c.state.proposal(normal).unwrap().version_after,
        Some(ProtocolVersion { major: 1, minor: 1 })
    );

    let e = submit_emergency(
        &mut c,
        emergency(vec![int_change("net.gossip_fanout", 8, 16)], 0),
    );
    approve(&mut c, 0..3, e);
    ok(c.advance_ms(1));
    assert_eq!(stage(&c, normal), Stage::Cancelled);
    // Grace 0 and nothing else pending: active at the same tick.
    assert_eq!(stage(&c, e), Stage::Active);
    assert_eq!(param(&c, "net.gossip_fanout"), ParamValue::Integer(16));
    // The cancelled NEP's reserved version 1.1 is skipped.
    assert_eq!(
        c.state.protocol_version(),
        ProtocolVersion { major: 1, minor: 2 }
    );
    let kinds: Vec<CertificateKind> = c
        .state
        .certificates(1, 10)
        .iter()
        .map(|r| r.event.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            CertificateKind::Activation,
            CertificateKind::Cancellation,
            CertificateKind::Activation
        ]
    );
    let cancel = &c.state.certificate(2).unwrap().event;
    assert_eq!(
        (cancel.nep, cancel.version_before, cancel.version_after),
        (normal, cancel.version_before, cancel.version_before)
    );
    // The cancelled NEP never activates later (the emergency is ratified).
    ok(vote(&mut c, 1, e, VoteChoice::Yes));
    ok(c.advance_days(40));
    assert_eq!(stage(&c, e), Stage::Ratified);
    assert_eq!(stage(&c, normal), Stage::Cancelled);
    assert_eq!(param(&c, "net.gossip_fanout"), ParamValue::Integer(16));
}

#[test]
fn failed_ratification_reverts_exactly_the_emergency_keys() {
    let mut c = chain();
    let e = submit_emergency(
        &mut c,
        emergency(
            vec![
                int_change("econ.slashing_bps", 500, 1000),
                int_change("net.gossip_fanout", 8, 16),
            ],
            1,
        ),
    );
    approve(&mut c, 1..4, e);
    ok(c.advance_ms(1));
    assert_eq!(stage(&c, e), Stage::Scheduled);
    ok(c.advance_days(1));
    assert_eq!(stage(&c, e), Stage::Active);
    assert_eq!(
        c.state.protocol_version(),
        ProtocolVersion { major: 1, minor: 1 }
    );
    assert_eq!(param(&c, "net.gossip_fanout"), ParamValue::Integer(16));

    // The ratification vote opens at activation: vote it down.
    ok(vote(&mut c, 1, e, VoteChoice::No));
    ok(vote(&mut c, 2, e, VoteChoice::No));
    // Meanwhile a normal NEP on another key goes through review; the tick
    // that opens its vote also ends the ratification.
    let other = to_voting(&mut c, 0, heads(1, 4));
    assert_eq!(stage(&c, e), Stage::Revoked);
    ok(vote(&mut c, 3, other, VoteChoice::Yes));
    close_voting(&mut c, other);
    ok(c.advance_days(7));
    assert_eq!(stage(&c, other), Stage::Active);

    // Exactly the emergency's keys are back; the other change stays.
    assert_eq!(param(&c, "econ.slashing_bps"), ParamValue::Integer(500));
    assert_eq!(param(&c, "net.gossip_fanout"), ParamValue::Integer(8));
    assert_eq!(param(&c, "train.prediction_heads"), ParamValue::Integer(4));
    // Versions: emergency 1.1, revocation 1.2, the other NEP 1.3.
    assert_eq!(
        c.state.protocol_version(),
        ProtocolVersion { major: 1, minor: 3 }
    );
    let revocation = c
        .state
        .certificates(1, 10)
        .into_iter()
        .find(|r| r.event.kind == CertificateKind::Revocation)
        .unwrap();
    assert_eq!(revocation.event.nep, e);
    assert_eq!(
        revocation.event.version_after,
        ProtocolVersion { major: 1, minor: 2 }
    );
    assert_eq!(revocation.event.parameter_changes.len(), 2);
    assert_eq!(
        revocation.event.parameter_changes[1].old,
        ParamValue::Integer(16)
    );
    assert_eq!(
        revocation.event.parameter_changes[1].new,
        ParamValue::Integer(8)
    );
    assert_eq!(revocation.event.tally.no, 2000 * NEURO);
}

/// A change that activates while an emergency's ratification is open stays
/// when the ratification fails: the revocation restores the emergency's own
/// keys, not the parameter set from before the emergency.
#[test]
fn a_revocation_keeps_a_change_that_activated_during_the_ratification() {
    let mut c = chain();
    let day = c.day_ms();
    let other = to_voting(&mut c, 0, heads(1, 4));
    ok(vote(&mut c, 3, other, VoteChoice::Yes));
    let deadline = vote_deadline(&c, other);
    // Half a day before the TRAIN vote closes: an emergency on another key,
    // scheduled with one day of grace.
    ok(c.tick_at(deadline - day / 2));
    let e = submit_emergency(
        &mut c,
        emergency(vec![int_change("net.gossip_fanout", 8, 16)], 1),
    );
    approve(&mut c, 0..3, e);
    ok(c.advance_ms(1));
    assert_eq!(stage(&c, e), Stage::Scheduled);
    close_voting(&mut c, other);
    assert_eq!(stage(&c, other), Stage::Scheduled);
    // The emergency activates; its ratification runs for seven days.
    ok(c.advance_days(1));
    assert_eq!(stage(&c, e), Stage::Active);
    ok(vote(&mut c, 1, e, VoteChoice::No));
    ok(vote(&mut c, 2, e, VoteChoice::No));
    // Seven days after its vote closed, the TRAIN NEP activates: inside the
    // ratification window.
    ok(c.tick_at(deadline + 7 * day));
    assert_eq!(stage(&c, other), Stage::Active);
    assert_eq!(stage(&c, e), Stage::Active);
    assert_eq!(param(&c, "train.prediction_heads"), ParamValue::Integer(4));
    // The ratification fails: only the emergency's key goes back.
    ok(c.advance_days(1));
    assert_eq!(stage(&c, e), Stage::Revoked);
    assert_eq!(param(&c, "net.gossip_fanout"), ParamValue::Integer(8));
    assert_eq!(param(&c, "train.prediction_heads"), ParamValue::Integer(4));
}

#[test]
fn a_successful_ratification_keeps_the_change() {
    let mut c = chain();
    let e = submit_emergency(
        &mut c,
        emergency(vec![int_change("net.gossip_fanout", 8, 16)], 0),
    );
    approve(&mut c, 0..3, e);
    ok(c.advance_ms(1));
    assert_eq!(stage(&c, e), Stage::Active);
    ok(vote(&mut c, 1, e, VoteChoice::Yes));
    close_voting(&mut c, e);
    assert_eq!(stage(&c, e), Stage::Ratified);
    assert_eq!(param(&c, "net.gossip_fanout"), ParamValue::Integer(16));
    assert_eq!(c.state.certificates(1, 10).len(), 1);
}

#[test]
fn a_ratifying_emergency_reserves_its_keys() {
    let mut c = chain();
    // Written against the value the emergency will set; its vote opens
    // before the emergency activates and ends while it is being ratified.
    let n = to_voting(
        &mut c,
        0,
        nep(
            NepType::Net,
            vec![int_change("net.gossip_fanout", 16, 12)],
            7,
            true,
        ),
    );
    ok(c.advance_days(1));
    let e = submit_emergency(
        &mut c,
        emergency(vec![int_change("net.gossip_fanout", 8, 16)], 0),
    );
    approve(&mut c, 0..3, e);
    ok(c.advance_ms(1));
    assert_eq!(stage(&c, e), Stage::Active);
    ok(vote(&mut c, 1, n, VoteChoice::Yes));
    close_voting(&mut c, n);
    assert_eq!(stage(&c, e), Stage::Active);
    assert!(matches!(
        c.state.proposal(n).unwrap().rejection,
        Some(RejectReason::Conflict { with: Some(w), .. }) if w == e
    ));
}
