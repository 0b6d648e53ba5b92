//! Quorum, approval, abstain, the closing tick, snapshot power, re-votes.

use neuroshard_governance::testkit::user_key;
use neuroshard_governance::{
    Amount, Command, Effect, GovError, RejectReason, Stage, Timestamp, VoteChoice,
};

use crate::support::*;

/// Sets user `i`'s stake to exactly `units` (before the snapshot).
fn set_stake(c: &mut testkit::TestChain, i: usize, units: u64) {
    let staked = c.state.account(&user(i)).unwrap().staked.0;
    let key = user_key(i);
    if units < staked {
        ok(c.exec(
            &key,
            Command::Unstake {
                amount: Amount(staked - units),
            },
        ));
    } else if units > staked {
        ok(c.exec(
            &key,
            Command::Stake {
                amount: Amount(units - staked),
            },
        ));
    }
}

#[test]
fn quorum_approval_and_abstain_boundaries() {
    use VoteChoice::*;
    // Five users; user 0 proposes. (stakes of users 1..=4 before the
    // snapshot, their votes, expected outcome). User 0 keeps 1000 NEURO.
    type Case = (
        &'static str,
        [u64; 4],
        [Option<VoteChoice>; 4],
        Result<(), RejectReason>,
    );
    let n = NEURO;
    let cases: Vec<Case> = vec![
        // total 5000: 1000 yes is exactly 20%.
        (
            "quorum exactly 20%",
            [1000 * n; 4],
            [Some(Yes), None, None, None],
            Ok(()),
        ),
        // total 5000 - 1 unit, 1000 - 1 unit yes: one unit under 20%.
        (
            "quorum one unit under",
            [1000 * n - 1, 1000 * n, 1000 * n, 1000 * n],
            [Some(Yes), None, None, None],
            Err(RejectReason::NoQuorum),
        ),
        // yes 660, no 340: exactly 66%.
        (
            "approval exactly 66%",
            [660 * n, 340 * n, 1000 * n, 1000 * n],
            [Some(Yes), Some(No), None, None],
            Ok(()),
        ),
        (
            "approval one unit under",
            [660 * n - 1, 340 * n + 1, 1000 * n, 1000 * n],
            [Some(Yes), Some(No), None, None],
            Err(RejectReason::NotApproved),
        ),
        // 100 yes of 4100 is under quorum on its own ...
        (
            "yes alone below quorum",
            [100 * n, 1000 * n, 1000 * n, 1000 * n],
            [Some(Yes), None, None, None],
            Err(RejectReason::NoQuorum),
        ),
        // ... abstain brings quorum but does not count against approval.
        (
            "abstain counts for quorum only",
            [100 * n, 1000 * n, 1000 * n, 1000 * n],
            [Some(Yes), Some(Abstain), None, None],
            Ok(()),
        ),
        (
            "only abstain: quorum, no approval",
            [1000 * n; 4],
            [Some(Abstain), Some(Abstain), None, None],
            Err(RejectReason::NotApproved),
        ),
        (
            "nobody votes",
            [1000 * n; 4],
            [None; 4],
            Err(RejectReason::NoQuorum),
        ),
    ];
    for (name, stakes, votes, expected) in cases {
        let mut c = chain_with(5);
        for (i, s) in stakes.iter().enumerate() {
            set_stake(&mut c, i + 1, *s);
        }
        let nep = to_voting(&mut c, 0, heads(1, 4));
        for (i, v) in votes.iter().enumerate() {
            if let Some(choice) = v {
                ok(vote(&mut c, i + 1, nep, *choice));
            }
        }
        close_voting(&mut c, nep);
        let p = c.state.proposal(nep).unwrap();
        match expected {
            Ok(()) => assert_eq!(p.stage, Stage::Scheduled, "{name}: {:?}", p.rejection),
            Err(reason) => {
                assert_eq!(p.stage, Stage::Rejected, "{name}");
                assert_eq!(p.rejection.as_ref(), Some(&reason), "{name}");
            }
        }
    }
}

#[test]
fn a_vote_before_the_closing_tick_counts_and_one_after_is_refused() {
    let mut c = chain();
    let nep = to_voting(&mut c, 0, heads(1, 4));
    let deadline = c
        .state
        .proposal(nep)
        .unwrap()
        .vote
        .as_ref()
        .unwrap()
        .deadline_ms;
    // A tick one millisecond before the deadline keeps voting open.
    ok(c.tick_at(deadline.0 - 1));
    assert_eq!(stage(&c, nep), Stage::Voting);
    // Committed before the closing tick: counts.
    ok(vote(&mut c, 1, nep, VoteChoice::Yes));
    ok(c.tick_at(deadline.0));
    assert_eq!(stage(&c, nep), Stage::Scheduled);
    assert_eq!(
        c.state.tally(nep).unwrap().tally.yes,
        u128::from(1000 * NEURO)
    );
    // Committed after it: refused, naming the deadline and committed time.
    assert_eq!(
        err(vote(&mut c, 2, nep, VoteChoice::No)),
        GovError::VotingClosed {
            nep,
            deadline_ms: deadline,
            committed_ms: Timestamp(deadline.0),
        }
    );
    assert_eq!(c.state.tally(nep).unwrap().tally.no, 0);
}

#[test]
fn ticks_that_skip_past_the_deadline_close_at_the_first_tick_past_it() {
    let mut c = chain();
    let nep = to_voting(&mut c, 0, heads(1, 4));
    ok(vote(&mut c, 1, nep, VoteChoice::Yes));
    let deadline = c
        .state
        .proposal(nep)
        .unwrap()
        .vote
        .as_ref()
        .unwrap()
        .deadline_ms;
    // The node was down: the next tick is days past the deadline (but
    // before the activation time).
    ok(c.tick_at(deadline.0 + 5 * c.day_ms()));
    assert_eq!(stage(&c, nep), Stage::Scheduled);
    // Activation is measured from the deadline, not from the late tick.
    let p = c.state.proposal(nep).unwrap();
    let grace = u64::from(p.content.upgrade_path.grace_period_days) * c.day_ms();
    assert_eq!(p.activation_ms, Some(Timestamp(deadline.0 + grace)));
}

#[test]
fn voting_power_is_the_stake_at_the_snapshot() {
    let mut c = chain_with(5);
    // A newcomer funded before the vote, staking only after the snapshot.
    let newcomer = testkit::user_key(99);
    ok(c.exec(
        &user_key(4),
        Command::Transfer {
            to: testkit::account_of(&newcomer),
            amount: Amount(500 * NEURO),
        },
    ));
    let nep = to_voting(&mut c, 0, heads(1, 4));
    ok(c.exec(
        &newcomer,
        Command::Stake {
            amount: Amount(500 * NEURO),
        },
    ));
    assert_eq!(
        err(c.exec(
            &newcomer,
            Command::Vote {
                nep,
                choice: VoteChoice::Yes
            }
        )),
        GovError::NoVotingPower {
            nep,
            account: testkit::account_of(&newcomer)
        }
    );
    // User 1 doubles its stake after the snapshot: still votes with 1000.
    ok(c.exec(
        &user_key(1),
        Command::Stake {
            amount: Amount(1000 * NEURO),
        },
    ));
    let r = ok(vote(&mut c, 1, nep, VoteChoice::Yes));
    assert!(matches!(r.effect, Effect::Voted { power, .. } if power == Amount(1000 * NEURO)));
    // The snapshot total is the stake at the snapshot, not now.
    assert_eq!(
        c.state.tally(nep).unwrap().tally.total_power,
        u128::from(5000 * NEURO)
    );
}

#[test]
fn stake_withdrawn_after_the_snapshot_cannot_be_voted_with() {
    let mut c = chain();
    let nep = to_voting(&mut c, 0, heads(1, 4));
    ok(c.exec(
        &user_key(1),
        Command::Unstake {
            amount: Amount(600 * NEURO),
        },
    ));
    let r = ok(vote(&mut c, 1, nep, VoteChoice::Yes));
    assert!(matches!(r.effect, Effect::Voted { power, .. } if power == Amount(400 * NEURO)));
}

#[test]
fn a_new_vote_replaces_the_earlier_one() {
    let mut c = chain();
    let nep = to_voting(&mut c, 0, heads(1, 4));
    ok(vote(&mut c, 1, nep, VoteChoice::Yes));
    let r = ok(vote(&mut c, 1, nep, VoteChoice::No));
    assert!(matches!(
        r.effect,
        Effect::Voted {
            replaced: Some(VoteChoice::Yes),
            ..
        }
    ));
    let t = c.state.tally(nep).unwrap();
    assert_eq!(
        (t.tally.yes, t.tally.no, t.ballots),
        (0, u128::from(1000 * NEURO), 1)
    );
}

#[test]
fn votes_outside_voting_are_refused() {
    let mut c = chain();
    let nep = submit(&mut c, 0, heads(1, 4));
    assert_eq!(
        err(vote(&mut c, 1, nep, VoteChoice::Yes)),
        GovError::VotingNotOpen {
            nep,
            stage: Stage::Review
        }
    );
    assert_eq!(
        err(vote(
            &mut c,
            1,
            neuroshard_governance::NepId(42),
            VoteChoice::Yes
        )),
        GovError::UnknownNep {
            nep: neuroshard_governance::NepId(42)
        }
    );
}

#[test]
fn voted_stake_is_locked_until_the_vote_ends() {
    let mut c = chain();
    let nep = to_voting(&mut c, 0, heads(1, 4));
    ok(vote(&mut c, 1, nep, VoteChoice::Yes));
    ok(c.exec(
        &user_key(1),
        Command::Stake {
            amount: Amount(100 * NEURO),
        },
    ));
    // 100 NEURO above the lock is free, one unit more is not.
    ok(c.exec(
        &user_key(1),
        Command::Unstake {
            amount: Amount(100 * NEURO),
        },
    ));
    let e = err(c.exec(&user_key(1), Command::Unstake { amount: Amount(1) }));
    assert!(
        matches!(e, GovError::StakeLocked { locked, unlocked, nep: n, .. } if locked == Amount(1000 * NEURO) && unlocked == Amount(0) && n == nep),
        "{e:?}"
    );
    assert_eq!(
        c.state.account(&user(1)).unwrap().locked,
        Amount(1000 * NEURO)
    );
    close_voting(&mut c, nep);
    ok(c.exec(
        &user_key(1),
        Command::Unstake {
            amount: Amount(1000 * NEURO),
        },
    ));
    assert_eq!(c.state.account(&user(1)).unwrap().locked, Amount(0));
}

#[test]
fn voting_opens_at_the_first_tick_at_or_past_the_end_of_review() {
    let mut c = chain();
    let nep = submit(&mut c, 0, heads(1, 4));
    let review_ends = c.state.proposal(nep).unwrap().review_ends_ms.unwrap();
    let submitted = c.state.proposal(nep).unwrap().submitted_ms.unwrap();
    let review_days = c.state.params().gov().review_days;
    assert_eq!(review_ends.0, submitted.0 + review_days * c.day_ms());

    // One millisecond before: still in review, and votes are refused.
    ok(c.tick_at(review_ends.0 - 1));
    assert_eq!(stage(&c, nep), Stage::Review);
    assert_eq!(
        err(vote(&mut c, 1, nep, VoteChoice::Yes)),
        GovError::VotingNotOpen {
            nep,
            stage: Stage::Review
        }
    );
    // Stake added before the opening tick is in the snapshot.
    ok(c.exec(
        &user_key(2),
        Command::Stake {
            amount: Amount(500 * NEURO),
        },
    ));
    let total_before_tick = u128::from(c.state.supply().staked);

    // The tick at the end of review opens the vote and takes the snapshot.
    ok(c.tick_at(review_ends.0));
    assert_eq!(stage(&c, nep), Stage::Voting);
    let t = c.state.tally(nep).unwrap();
    assert_eq!(t.tally.total_power, total_before_tick);
    assert_eq!(t.opened_ms, review_ends);
    let voting_days = c.state.params().gov().voting_days;
    assert_eq!(t.deadline_ms.0, review_ends.0 + voting_days * c.day_ms());
    let r = ok(vote(&mut c, 2, nep, VoteChoice::Yes));
    assert!(matches!(r.effect, Effect::Voted { power, .. } if power == Amount(1500 * NEURO)));
}
