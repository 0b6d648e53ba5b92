//! Growth has a price and the state has one budget: deposits, the account
//! creation fee, compaction, `state_budget_exceeded`, and the bounds that
//! derive from `limits.rs`.

use neuroshard_governance::budget::{draft_deposit, ACCOUNT_CHARGE, BALLOT_CHARGE, LOCK_CHARGE};
use neuroshard_governance::genesis::ParamInput;
use neuroshard_governance::limits::{
    MAX_COMMAND_BYTES, MAX_IMPACT_SUMMARY_BYTES, MAX_MOTIVATION_BYTES, MAX_NEP_CONTENT_BYTES,
    MAX_PARAMETER_CHANGES, MAX_PARAMETER_KEY_BYTES, MAX_SPEC_BYTES, MAX_TEXT_VALUE_BYTES,
    MAX_TITLE_BYTES,
};
use neuroshard_governance::testkit::{account_of, user_key, TestChain, TestConfig};
use neuroshard_governance::{
    Amount, Command, Effect, GovError, GovernanceState, Micro, NepContent, NepId, NepType,
    ParamValue, ParameterChange, RejectReason, SignedCommand, Stage, VoteChoice,
};

use crate::support::*;

fn deposit_of(content: &NepContent) -> Amount {
    draft_deposit(content, Amount(10 * NEURO), Amount(NEURO))
}

fn small_budget(bytes: i64, users: usize) -> TestChain {
    TestChain::new(&TestConfig {
        users,
        user_balance: Amount(100_000 * NEURO),
        extra_parameters: vec![(
            "gov.state_budget_bytes".to_owned(),
            ParamInput::Integer(bytes),
        )],
        ..TestConfig::default()
    })
}

/// Every field at its size limit (keys and values need not exist in the
/// registry: this measures the size rules, not validity).
fn content_at_every_limit() -> NepContent {
    let text = |n: usize| "é".repeat(n / 2) + &"x".repeat(n % 2);
    NepContent {
        title: text(MAX_TITLE_BYTES),
        nep_type: NepType::Net,
        motivation: text(MAX_MOTIVATION_BYTES),
        specification: text(MAX_SPEC_BYTES),
        parameter_changes: (0..MAX_PARAMETER_CHANGES)
            .map(|i| ParameterChange {
                key: format!("{i:0>width$}", width = MAX_PARAMETER_KEY_BYTES),
                expected_old: ParamValue::String(text(MAX_TEXT_VALUE_BYTES)),
                new: ParamValue::String(text(MAX_TEXT_VALUE_BYTES)),
            })
            .collect(),
        economic_impact: neuroshard_governance::EconomicImpact {
            training_efficiency_multiplier: Micro(i64::MIN),
            training_reward_multiplier: Micro(i64::MIN),
            net_earnings_change_percent: Micro(i64::MIN),
            summary: text(MAX_IMPACT_SUMMARY_BYTES),
        },
        upgrade_path: neuroshard_governance::UpgradePath {
            grace_period_days: u32::MAX,
            backward_compatible: true,
        },
    }
}

#[test]
fn the_command_bound_covers_every_content_the_size_rules_allow() {
    let content = content_at_every_limit();
    let encoded = postcard::to_allocvec(&content).unwrap().len();
    assert!(
        encoded <= MAX_NEP_CONTENT_BYTES,
        "{encoded} > {MAX_NEP_CONTENT_BYTES}"
    );
    // The formula is tight: within 1 KiB of the largest content.
    assert!(MAX_NEP_CONTENT_BYTES - encoded < 1024);
    let key = user_key(0);
    let cmd = SignedCommand::sign(
        "neuroshard-test",
        &key,
        u64::MAX,
        Command::AmendDraft {
            nep: NepId(u64::MAX),
            content,
        },
    );
    let len = postcard::to_allocvec(&cmd).unwrap().len();
    assert_eq!(len, neuroshard_governance::admission::encoded_len(&cmd));
    assert!(len <= MAX_COMMAND_BYTES && MAX_COMMAND_BYTES - len <= 6 * 1024);
}

#[test]
fn expected_old_is_bounded_like_new() {
    let mut c = chain();
    let mut content = nep(
        NepType::Net,
        vec![ParameterChange {
            key: "net.protocol_id".to_owned(),
            expected_old: ParamValue::String("x".repeat(MAX_TEXT_VALUE_BYTES + 1)),
            new: ParamValue::String("/neuroshard/2".to_owned()),
        }],
        7,
        true,
    );
    let refused = c.exec(
        &user_key(0),
        Command::CreateDraft {
            content: content.clone(),
        },
    );
    assert_eq!(err(refused).rule(), "invalid_content");
    // At the limit it is accepted.
    content.parameter_changes[0].expected_old =
        ParamValue::String("x".repeat(MAX_TEXT_VALUE_BYTES));
    ok(c.exec(&user_key(0), Command::CreateDraft { content }));
}

#[test]
fn a_draft_locks_its_deposit_until_the_vote_closes() {
    let mut c = chain();
    let content = heads(1, 4);
    let deposit = deposit_of(&content);
    let before = c.state.account(&user(0)).unwrap().balance;
    let nep = to_voting(&mut c, 0, content);
    let during = c.state.account(&user(0)).unwrap();
    // Locked: the deposit, and the fee burned at submission.
    assert_eq!(during.deposited, deposit);
    assert_eq!(during.balance.0, before.0 - deposit.0 - 10 * NEURO);
    assert_eq!(c.state.supply().deposits, deposit.0);
    ok(vote(&mut c, 1, nep, VoteChoice::Yes));
    close_voting(&mut c, nep);
    assert_eq!(stage(&c, nep), Stage::Scheduled);
    let after = c.state.account(&user(0)).unwrap();
    assert_eq!(after.deposited, Amount(0));
    assert_eq!(after.balance.0, before.0 - 10 * NEURO);
    assert_eq!(c.state.supply().deposits, 0);
    // An approved NEP keeps its content: explorers and light nodes read it.
    let p = c.state.proposal(nep).unwrap();
    assert!(!p.compacted && p.content == heads(1, 4));
}

#[test]
fn a_rejected_nep_gets_its_deposit_back_and_is_compacted_but_keeps_its_ballots() {
    let mut c = chain();
    let nep = to_voting(&mut c, 0, heads(1, 4));
    ok(vote(&mut c, 1, nep, VoteChoice::No));
    ok(vote(&mut c, 2, nep, VoteChoice::Yes));
    let root = c.state.tally(nep).unwrap().ballots_root;
    let charged = c.state.state_bytes();
    close_voting(&mut c, nep);
    assert_eq!(stage(&c, nep), Stage::Rejected);
    let p = c.state.proposal(nep).unwrap();
    assert_eq!(p.rejection, Some(RejectReason::NotApproved));
    assert!(p.compacted);
    assert!(p.content.parameter_changes.is_empty() && p.content.motivation.is_empty());
    assert_eq!(p.content.title, heads(1, 4).title);
    assert_eq!(p.content_hash, heads(1, 4).content_hash());
    let tally = c.state.tally(nep).unwrap();
    assert_eq!(tally.ballots_root, root);
    assert_eq!(tally.ballots, 2);
    assert!(tally.tally.participating() > 0);
    // A voter can still prove its ballot was counted.
    assert!(c.state.vote_receipt(nep, &user(1)).is_ok());
    // The content was refunded to the budget.
    assert!(c.state.state_bytes() < charged);
    assert_eq!(c.state.state_bytes(), c.state.recount_state_bytes());
    assert_eq!(c.state.account(&user(0)).unwrap().deposited, Amount(0));
}

#[test]
fn amending_moves_the_deposit_difference() {
    let mut c = chain();
    let small = heads(1, 4);
    let mut large = heads(1, 4);
    large.specification = "s".repeat(20 * 1024);
    let nep = match ok(c.exec(
        &user_key(0),
        Command::CreateDraft {
            content: small.clone(),
        },
    ))
    .effect
    {
        Effect::DraftCreated { nep, deposit, .. } => {
            assert_eq!(deposit, deposit_of(&small));
            nep
        }
        other => panic!("{other:?}"),
    };
    let balance = c.state.account(&user(0)).unwrap().balance;
    ok(c.exec(
        &user_key(0),
        Command::AmendDraft {
            nep,
            content: large.clone(),
        },
    ));
    let grown = deposit_of(&large);
    assert!(grown.0 >= deposit_of(&small).0 + 20 * NEURO);
    let a = c.state.account(&user(0)).unwrap();
    assert_eq!(a.deposited, grown);
    assert_eq!(a.balance.0, balance.0 - (grown.0 - deposit_of(&small).0));
    ok(c.exec(
        &user_key(0),
        Command::AmendDraft {
            nep,
            content: small.clone(),
        },
    ));
    assert_eq!(c.state.account(&user(0)).unwrap().balance, balance);
}

#[test]
fn a_draft_the_author_cannot_pay_the_deposit_for_is_refused() {
    let mut c = TestChain::new(&TestConfig {
        user_balance: Amount(10 * NEURO),
        ..TestConfig::default()
    });
    let content = heads(1, 4);
    assert_eq!(
        err(c.exec(
            &user_key(0),
            Command::CreateDraft {
                content: content.clone()
            }
        )),
        GovError::InsufficientBalance {
            account: user(0),
            needed: deposit_of(&content),
            available: Amount(10 * NEURO),
        }
    );
}

/// An account with balance B creates at most B / fee accounts, and
/// create/withdraw loops stop when the deposits burned exhaust B.
#[test]
fn growth_loops_stop_at_the_attackers_price() {
    let mut c = TestChain::new(&TestConfig {
        user_balance: Amount(100 * NEURO),
        ..TestConfig::default()
    });
    let attacker = user_key(0);
    let mut created = 0u64;
    for i in 0.. {
        let to = account_of(&user_key(1000 + i));
        match c.exec(
            &attacker,
            Command::Transfer {
                to,
                amount: Amount(1),
            },
        ) {
            Ok(_) => created += 1,
            Err(GovError::InsufficientBalance { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    // Each account cost 1 base unit sent plus 1 NEURO burned.
    assert_eq!(created, 100 * NEURO / (NEURO + 1));
    let mut c = TestChain::new(&TestConfig {
        user_balance: Amount(100 * NEURO),
        ..TestConfig::default()
    });
    let mut cycles = 0u64;
    loop {
        let nep = match c.exec(
            &attacker,
            Command::CreateDraft {
                content: heads(1, 4),
            },
        ) {
            Ok(r) => match r.effect {
                Effect::DraftCreated { nep, .. } => nep,
                other => panic!("{other:?}"),
            },
            Err(GovError::InsufficientBalance { .. }) => break,
            Err(e) => panic!("{e}"),
        };
        ok(c.exec(&attacker, Command::Withdraw { nep }));
        cycles += 1;
    }
    assert_eq!(cycles, 100 * NEURO / deposit_of(&heads(1, 4)).0);
    assert_eq!(c.state.supply().burned, cycles * deposit_of(&heads(1, 4)).0);
}

#[test]
fn the_state_budget_refuses_growth_at_its_limit_and_nothing_else() {
    let budget = 1024 * 1024;
    let mut c = small_budget(budget, 4);
    assert_eq!(c.state.state_budget(), budget as u64);
    // A vote is open before the attack: voting on it must survive it.
    let nep = to_voting(&mut c, 0, heads(1, 4));
    let start = c.state.state_bytes();
    let rich = user_key(0);
    let mut created = 0u64;
    let refusal = loop {
        let to = account_of(&user_key(10_000 + created as usize));
        match c.exec(
            &rich,
            Command::Transfer {
                to,
                amount: Amount(1),
            },
        ) {
            Ok(_) => created += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(refusal.rule(), "state_budget_exceeded");
    assert_eq!(
        created,
        (c.state.growth_limit() - start) / ACCOUNT_CHARGE,
        "accounts until the growth limit"
    );
    assert_eq!(c.state.growth_limit(), budget as u64 - budget as u64 / 16);
    assert!(c.state.state_bytes() <= c.state.growth_limit());
    assert_eq!(c.state.state_bytes(), c.state.recount_state_bytes());
    c.state.check_encoding_within_charge().unwrap();
    // Growth of every kind is refused now...
    assert_eq!(
        err(c.exec(
            &rich,
            Command::CreateDraft {
                content: heads(1, 4)
            }
        ))
        .rule(),
        "state_budget_exceeded"
    );
    // ...but moving NEURO between existing accounts goes on,
    ok(c.exec(
        &rich,
        Command::Transfer {
            to: user(1),
            amount: Amount(5),
        },
    ));
    ok(c.exec(&user_key(1), Command::Stake { amount: Amount(5) }));
    ok(c.exec(&user_key(1), Command::Unstake { amount: Amount(5) }));
    // the open vote takes ballots in the headroom,
    ok(vote(&mut c, 1, nep, VoteChoice::Yes));
    ok(vote(&mut c, 2, nep, VoteChoice::Yes));
    // and the committee can still submit an emergency (to raise the budget
    // or the prices): charged, never refused.
    let raise = nep_content_raising_budget(budget * 2);
    let r = ok(c.exec(
        &neuroshard_governance::testkit::validator_key(0),
        Command::SubmitEmergency { content: raise },
    ));
    assert!(matches!(r.effect, Effect::EmergencySubmitted { .. }));
    assert_eq!(c.state.state_bytes(), c.state.recount_state_bytes());
    // When the vote closes, its locks end and their charge comes back.
    let before_close = c.state.state_bytes();
    close_voting(&mut c, nep);
    assert!(c.state.state_bytes() < before_close);
    for u in [1, 2] {
        assert!(c
            .state
            .account_record(&user(u))
            .unwrap()
            .vote_locks
            .is_empty());
    }
}

fn nep_content_raising_budget(bytes: i64) -> NepContent {
    nep(
        NepType::Emerg,
        vec![ParameterChange {
            key: "gov.state_budget_bytes".to_owned(),
            expected_old: ParamValue::Integer(bytes / 2),
            new: ParamValue::Integer(bytes),
        }],
        0,
        true,
    )
}

#[test]
fn ballots_and_locks_are_charged_and_a_full_budget_refuses_new_ballots() {
    let mut c = chain_with(6);
    let nep = to_voting(&mut c, 0, heads(1, 4));
    let before = c.state.state_bytes();
    ok(vote(&mut c, 1, nep, VoteChoice::Yes));
    assert_eq!(c.state.state_bytes(), before + BALLOT_CHARGE + LOCK_CHARGE);
    // A re-vote replaces the ballot: no new charge.
    ok(vote(&mut c, 1, nep, VoteChoice::No));
    assert_eq!(c.state.state_bytes(), before + BALLOT_CHARGE + LOCK_CHARGE);
    c.state.check_encoding_within_charge().unwrap();
}

#[test]
fn a_genesis_above_its_budget_is_refused() {
    let config = TestConfig {
        users: 2000,
        extra_parameters: vec![(
            "gov.state_budget_bytes".to_owned(),
            ParamInput::Integer(1024 * 1024),
        )],
        ..TestConfig::default()
    };
    let (genesis, _) = neuroshard_governance::testkit::genesis(&config);
    assert!(matches!(
        GovernanceState::from_genesis(&genesis),
        Err(neuroshard_governance::GenesisError::OverStateBudget { .. })
    ));
}

/// The account charge bounds an account at its largest: four remembered
/// refusals naming two 64-byte keys each, every amount at its longest.
#[test]
fn the_account_charge_bounds_the_largest_account() {
    let mut c = chain();
    let author = user_key(0);
    for i in 0..6u8 {
        let key = char::from(b'a' + i).to_string().repeat(64);
        let content = nep(
            NepType::Train,
            vec![ParameterChange {
                key: key.clone(),
                expected_old: ParamValue::Integer(i64::MIN),
                new: ParamValue::Integer(i64::MAX),
            }],
            7,
            true,
        );
        let refused = c.exec(&author, Command::CreateDraft { content });
        assert_eq!(err(refused).rule(), "invalid_content");
    }
    let record = c.state.account_record(&user(0)).unwrap().clone();
    assert_eq!(record.recent.len(), 4);
    let mut worst = record;
    worst.balance = Amount(u64::MAX);
    worst.staked = Amount(u64::MAX);
    worst.deposited = Amount(u64::MAX);
    worst.nonce = u64::MAX;
    for r in &mut worst.recent {
        r.nonce = u64::MAX;
    }
    let size = postcard::to_allocvec(&worst).unwrap().len() as u64;
    // key + open_drafts entry (32 + 5) on top of the record.
    assert!(
        size + 37 <= ACCOUNT_CHARGE,
        "{size} + 37 > {ACCOUNT_CHARGE}"
    );
}
