//! The follower: order, links, replays, forks, other committees, and the
//! parameters in force at a height.

mod common;

use std::collections::BTreeMap;

use common::*;
use neuroshard_certificate::proto::{CertificateKind, CertificatePayload};
use neuroshard_certificate::{
    encode_payload, payload_hash, Envelope, FollowError, Follower, SchemeId, Verifier, VerifyError,
};

const KEY: &str = "train.reward_per_batch";

fn follower(committee: &Committee) -> Follower {
    let mut genesis = BTreeMap::new();
    genesis.insert(KEY.to_string(), integer(100));
    genesis.insert("gov.quorum_bps".to_string(), integer(2000));
    Follower::new(
        Verifier::new(committee.info.clone()).unwrap(),
        genesis,
        version(1, 0),
    )
}

#[test]
fn accepts_in_order_and_answers_by_height() {
    for scheme in SchemeId::ALL {
        let committee = Committee::standard(scheme);
        let log = activation_log(&committee, 3);
        let mut f = follower(&committee);
        for (p, e) in &log {
            assert_eq!(&f.accept(e).unwrap(), p);
        }
        assert_eq!(f.next_sequence(), 4);
        let h = |i: usize| log[i].0.activation_height;
        assert_eq!(f.parameter_at(KEY, h(0) - 1), Some(integer(100)));
        assert_eq!(f.version_at(h(0) - 1), version(1, 0));
        assert_eq!(f.parameter_at(KEY, h(0)), Some(integer(101)));
        assert_eq!(f.version_at(h(0)), version(1, 1));
        assert_eq!(f.parameter_at(KEY, h(2) + 10), Some(integer(103)));
        let state = f.active_at(h(1));
        assert_eq!(state.version, version(1, 2));
        assert_eq!(state.parameters[KEY], integer(102));
        assert_eq!(state.parameters["gov.quorum_bps"], integer(2000));
        assert_eq!(f.pending_at(h(1)), vec![3]);
    }
}

#[test]
fn refuses_gap_replay_fork_and_other_committee() {
    let committee = Committee::standard(SchemeId::G2Rfc9380);
    let log = activation_log(&committee, 3);
    let mut f = follower(&committee);

    // Gap: sequence 2 before 1.
    assert_eq!(
        f.accept(&log[1].1),
        Err(FollowError::Gap {
            expected: 1,
            found: 2
        })
    );
    f.accept(&log[0].1).unwrap();
    // Replay of 1.
    assert_eq!(
        f.accept(&log[0].1),
        Err(FollowError::Replay { sequence: 1 })
    );
    // Fork: another, validly signed payload for sequence 1.
    let mut other = log[0].0.clone();
    other.title = "NEP-1: something else".into();
    let forked = committee.issue(&[1, 2, 3], &other);
    assert_eq!(f.accept(&forked), Err(FollowError::Fork { sequence: 1 }));
    // Fork by link: sequence 2 built on the other sequence 1.
    let mut next = log[1].0.clone();
    next.previous_payload_hash = payload_hash(&encode_payload(&other)).to_vec();
    let e = committee.issue(&[0, 1, 2], &next);
    assert!(matches!(
        f.accept(&e),
        Err(FollowError::BrokenLink { sequence: 2, .. })
    ));
    // Another committee's certificate (its own, correctly signed log).
    let stranger = Committee::new(SchemeId::G2Rfc9380, 2, 4, [0x99; 32]);
    let theirs = activation_log(&stranger, 2);
    assert!(matches!(
        f.accept(&theirs[1].1),
        Err(FollowError::Verify(VerifyError::WrongCommittee { .. }))
    ));
    // Nothing above changed the state: the real sequence 2 still follows.
    f.accept(&log[1].1).unwrap();
    f.accept(&log[2].1).unwrap();
    assert_eq!(f.next_sequence(), 4);
}

fn next_payload(
    committee: &Committee,
    prev: &CertificatePayload,
    kind: CertificateKind,
    nep_id: u64,
    activation_time_ms: u64,
    bump: bool,
) -> CertificatePayload {
    let before = prev.version_after.unwrap();
    let after = if bump {
        version(before.major, before.minor + 1)
    } else {
        before
    };
    let mut p = payload(
        &committee.info,
        prev.sequence + 1,
        payload_hash(&encode_payload(prev)),
        kind,
        nep_id,
        vec![change(KEY, 0, 500 + nep_id as i64)],
        activation_time_ms,
        before,
        after,
    );
    p.decision_time_ms = prev.decision_time_ms + 1;
    p
}

#[test]
fn cancellation_removes_a_pending_activation_and_revocation_reverts() {
    let committee = Committee::standard(SchemeId::G2Rfc9380);
    let mut f = follower(&committee);
    let log = activation_log(&committee, 1);
    let (p1, e1) = &log[0];
    f.accept(e1).unwrap();
    // NEP 2 scheduled later; then cancelled before it activates.
    let t2 = p1.activation_time_ms + 10 * DAY_MS;
    let p2 = next_payload(&committee, p1, CertificateKind::Activation, 2, t2, true);
    f.accept(&committee.issue(&[0, 1, 2], &p2)).unwrap();
    assert_eq!(
        f.parameter_at(KEY, p2.activation_height),
        Some(integer(502))
    );
    // A cancellation naming the wrong activation time cancels nothing.
    let mut wrong = next_payload(
        &committee,
        &p2,
        CertificateKind::Cancellation,
        2,
        t2 + 1,
        false,
    );
    wrong.decision_time_ms = p1.activation_time_ms;
    assert_eq!(
        f.accept(&committee.issue(&[0, 1, 2], &wrong)),
        Err(FollowError::CancelsNothing {
            sequence: 3,
            nep_id: 2,
            activation_time_ms: t2 + 1
        })
    );
    let mut p3 = next_payload(&committee, &p2, CertificateKind::Cancellation, 2, t2, false);
    p3.decision_time_ms = p1.activation_time_ms;
    f.accept(&committee.issue(&[0, 1, 2], &p3)).unwrap();
    assert_eq!(
        f.parameter_at(KEY, p2.activation_height + 100),
        Some(integer(101))
    );
    assert_eq!(f.version_at(p2.activation_height + 100), version(1, 1));
    // An emergency NEP 4 activates, then its revocation restores the key.
    let t4 = p1.activation_time_ms + DAY_MS;
    let p4 = next_payload(&committee, &p3, CertificateKind::Activation, 4, t4, true);
    f.accept(&committee.issue(&[1, 2, 3], &p4)).unwrap();
    let t5 = t4 + 3 * DAY_MS;
    let mut p5 = next_payload(&committee, &p4, CertificateKind::Revocation, 4, t5, true);
    p5.parameter_changes = vec![change(KEY, 504, 101)];
    f.accept(&committee.issue(&[0, 2, 3], &p5)).unwrap();
    assert_eq!(
        f.parameter_at(KEY, p4.activation_height),
        Some(integer(504))
    );
    assert_eq!(f.version_at(p4.activation_height), version(1, 3));
    assert_eq!(
        f.parameter_at(KEY, p5.activation_height),
        Some(integer(101))
    );
    assert_eq!(f.version_at(p5.activation_height), version(1, 4));
    // An effect earlier than a standing one is refused.
    let early = next_payload(
        &committee,
        &p5,
        CertificateKind::Activation,
        6,
        t5 - 1,
        true,
    );
    assert!(matches!(
        f.accept(&committee.issue(&[0, 1, 2], &early)),
        Err(FollowError::OutOfOrderActivation { sequence: 6, .. })
    ));
    // A version chain that skips is refused.
    let mut skip = next_payload(&committee, &p5, CertificateKind::Activation, 6, t5, true);
    skip.version_before = Some(version(2, 0));
    assert!(matches!(
        f.accept(&committee.issue(&[0, 1, 2], &skip)),
        Err(FollowError::VersionMismatch { sequence: 6, .. })
    ));
}

#[test]
fn accept_chain_batch_verifies_then_follows() {
    for scheme in SchemeId::ALL {
        let committee = Committee::standard(scheme);
        let log = activation_log(&committee, 6);
        let envelopes: Vec<Envelope> = log.iter().map(|(_, e)| e.clone()).collect();
        let mut f = follower(&committee);
        assert_eq!(f.accept_chain(&envelopes[..4]), Ok(4));
        assert_eq!(f.accept_chain(&envelopes[4..]), Ok(2));
        assert_eq!(f.next_sequence(), 7);
        let mut g = follower(&committee);
        assert!(matches!(
            g.accept_chain(&envelopes[1..]),
            Err(FollowError::Gap {
                expected: 1,
                found: 2
            })
        ));
    }
}
