//! Shared fixtures: a test chain, NEP content builders, and stage helpers.

use neuroshard_governance::testkit::{account_of, user_key, TestChain, TestConfig};
use neuroshard_governance::{
    Command, EconomicImpact, Effect, GovError, Micro, NepContent, NepId, NepType, Outcome,
    ParamValue, ParameterChange, Receipt, Stage, UpgradePath,
};

pub use neuroshard_governance::testkit;

pub const NEURO: u64 = neuroshard_governance::NEURO;

pub fn chain() -> TestChain {
    TestChain::new(&TestConfig::default())
}

pub fn chain_with(users: usize) -> TestChain {
    TestChain::new(&TestConfig {
        users,
        ..TestConfig::default()
    })
}

pub fn impact() -> EconomicImpact {
    EconomicImpact {
        training_efficiency_multiplier: Micro::ONE,
        training_reward_multiplier: Micro::ONE,
        net_earnings_change_percent: Micro(0),
        summary: "no economic change".to_owned(),
    }
}

pub fn int_change(key: &str, old: i64, new: i64) -> ParameterChange {
    ParameterChange {
        key: key.to_owned(),
        expected_old: ParamValue::Integer(old),
        new: ParamValue::Integer(new),
    }
}

/// A NEP of `nep_type` with the given changes and grace.
pub fn nep(
    nep_type: NepType,
    changes: Vec<ParameterChange>,
    grace_days: u32,
    backward_compatible: bool,
) -> NepContent {
    NepContent {
        title: format!("{nep_type} change"),
        nep_type,
        motivation: "because".to_owned(),
        specification: "do it".to_owned(),
        parameter_changes: changes,
        economic_impact: impact(),
        upgrade_path: UpgradePath {
            grace_period_days: grace_days,
            backward_compatible,
        },
    }
}

/// A TRAIN NEP changing `train.prediction_heads` from `old` to `new`.
pub fn heads(old: i64, new: i64) -> NepContent {
    nep(
        NepType::Train,
        vec![int_change("train.prediction_heads", old, new)],
        7,
        true,
    )
}

pub fn ok(outcome: Outcome) -> Receipt {
    match outcome {
        Ok(r) => r,
        Err(e) => panic!("expected success, got {e:?}"),
    }
}

pub fn err(outcome: Outcome) -> GovError {
    match outcome {
        Ok(r) => panic!("expected a refusal, got {r:?}"),
        Err(e) => e,
    }
}

/// User `author` drafts and submits `content`; returns its id.
pub fn submit(c: &mut TestChain, author: usize, content: NepContent) -> NepId {
    let key = user_key(author);
    let nep = match ok(c.exec(&key, Command::CreateDraft { content })).effect {
        Effect::DraftCreated { nep, .. } => nep,
        other => panic!("unexpected effect {other:?}"),
    };
    ok(c.exec(&key, Command::Submit { nep }));
    nep
}

/// Submits and ticks past REVIEW, so voting is open.
pub fn to_voting(c: &mut TestChain, author: usize, content: NepContent) -> NepId {
    let nep = submit(c, author, content);
    let review = c.state.params().gov().review_days;
    ok(c.advance_days(review));
    assert_eq!(stage(c, nep), Stage::Voting);
    nep
}

/// The voting deadline of `nep` (its vote must be open or closed).
pub fn vote_deadline(c: &TestChain, nep: NepId) -> u64 {
    c.state
        .proposal(nep)
        .unwrap()
        .vote
        .as_ref()
        .unwrap()
        .deadline_ms
        .0
}

/// Ticks to exactly the voting deadline of `nep`.
pub fn close_voting(c: &mut TestChain, nep: NepId) {
    let deadline = vote_deadline(c, nep);
    ok(c.tick_at(deadline));
}

pub fn stage(c: &TestChain, nep: NepId) -> Stage {
    c.state.proposal(nep).expect("nep exists").stage
}

pub fn vote(
    c: &mut TestChain,
    user: usize,
    nep: NepId,
    choice: neuroshard_governance::VoteChoice,
) -> Outcome {
    c.exec(&user_key(user), Command::Vote { nep, choice })
}

pub fn param(c: &TestChain, key: &str) -> ParamValue {
    c.state.params().get(key).cloned().expect("key exists")
}

pub fn user(i: usize) -> neuroshard_governance::AccountId {
    account_of(&user_key(i))
}
