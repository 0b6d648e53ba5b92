//! Drafts, amendments, submission with fee burn, withdrawal, and content
//! validation (namespaces, parity, grace bounds, limits).

use neuroshard_governance::economic_parity::ParityError;
use neuroshard_governance::limits::{
    MAX_OPEN_DRAFTS_PER_AUTHOR, MAX_PARAMETER_CHANGES, MAX_SPEC_BYTES, MAX_TITLE_BYTES,
};
use neuroshard_governance::params::ParamError;
use neuroshard_governance::testkit::{user_key, TestChain, TestConfig};
use neuroshard_governance::validation::ContentError;
use neuroshard_governance::{
    Amount, Command, Effect, GovError, Micro, NepContent, NepId, NepType, ParamValue, Stage,
};

use crate::support::*;

/// The deposit a draft with `content` locks under the default parameters.
fn deposit_of(content: &NepContent) -> Amount {
    neuroshard_governance::budget::draft_deposit(content, Amount(10 * NEURO), Amount(NEURO))
}

fn draft(c: &mut TestChain, author: usize, content: NepContent) -> Result<NepId, GovError> {
    c.exec(&user_key(author), Command::CreateDraft { content })
        .map(|r| match r.effect {
            Effect::DraftCreated { nep, .. } => nep,
            other => panic!("unexpected effect {other:?}"),
        })
}

#[test]
fn content_rules_table() {
    let reward = |declared: i64, old: i64, new: i64| {
        let mut n = nep(
            NepType::Train,
            vec![int_change("train.reward_per_batch", old, new)],
            7,
            true,
        );
        n.economic_impact.training_reward_multiplier = Micro(declared);
        n
    };
    let with_grace = |t: NepType, days: u32| {
        nep(
            t,
            vec![int_change("train.batch_size", 512, 1024)],
            days,
            true,
        )
    };
    let mut long_title = heads(1, 4);
    long_title.title = "x".repeat(MAX_TITLE_BYTES + 1);
    let mut long_spec = heads(1, 4);
    long_spec.specification = "x".repeat(MAX_SPEC_BYTES + 1);
    let mut empty_title = heads(1, 4);
    empty_title.title = "  ".to_owned();
    let too_many = nep(
        NepType::Train,
        (0..=MAX_PARAMETER_CHANGES)
            .map(|i| int_change(&format!("train.k{i:03}"), 0, 1))
            .collect(),
        7,
        true,
    );
    let mut zero_efficiency = heads(1, 4);
    zero_efficiency
        .economic_impact
        .training_efficiency_multiplier = Micro(0);
    let mut unsorted = nep(
        NepType::Train,
        vec![
            int_change("train.prediction_heads", 1, 4),
            int_change("train.batch_size", 512, 1024),
        ],
        7,
        true,
    );
    let mut duplicate = unsorted.clone();
    duplicate.parameter_changes[1] = int_change("train.prediction_heads", 1, 2);
    unsorted.title = "unsorted".to_owned();
    let mut wrong_kind = heads(1, 4);
    wrong_kind.parameter_changes[0].new = ParamValue::Bool(true);

    type Check = fn(&GovError) -> bool;
    let cases: Vec<(&str, NepContent, Option<Check>)> = vec![
        ("valid", heads(1, 4), None),
        (
            "wrong namespace",
            nep(
                NepType::Train,
                vec![int_change("econ.proposal_fee", 10_000_000, 1)],
                7,
                true,
            ),
            Some(|e| {
                matches!(
                    e,
                    GovError::InvalidContent(ContentError::WrongNamespace { .. })
                )
            }),
        ),
        (
            "unknown key",
            nep(
                NepType::Train,
                vec![int_change("train.nope", 1, 2)],
                7,
                true,
            ),
            Some(|e| {
                matches!(
                    e,
                    GovError::InvalidContent(ContentError::Parameter {
                        source: ParamError::Unknown { .. },
                        ..
                    })
                )
            }),
        ),
        (
            "new value out of range",
            heads(1, 17),
            Some(|e| {
                matches!(
                    e,
                    GovError::InvalidContent(ContentError::Parameter {
                        source: ParamError::OutOfRange { .. },
                        ..
                    })
                )
            }),
        ),
        (
            "wrong value type",
            wrong_kind,
            Some(|e| {
                matches!(
                    e,
                    GovError::InvalidContent(ContentError::Parameter {
                        source: ParamError::KindMismatch { .. },
                        ..
                    })
                )
            }),
        ),
        (
            "no-op change",
            heads(1, 1),
            Some(|e| matches!(e, GovError::InvalidContent(ContentError::NoOpChange { .. }))),
        ),
        (
            "unsorted changes",
            unsorted,
            Some(|e| {
                matches!(
                    e,
                    GovError::InvalidContent(ContentError::ChangesNotSorted { .. })
                )
            }),
        ),
        (
            "duplicate key",
            duplicate,
            Some(|e| {
                matches!(
                    e,
                    GovError::InvalidContent(ContentError::DuplicateKey { .. })
                )
            }),
        ),
        (
            "too many changes",
            too_many,
            Some(|e| {
                matches!(
                    e,
                    GovError::InvalidContent(ContentError::TooManyChanges { .. })
                )
            }),
        ),
        (
            "title too long",
            long_title,
            Some(|e| matches!(e, GovError::InvalidContent(ContentError::TooLarge { .. }))),
        ),
        (
            "spec too long",
            long_spec,
            Some(|e| matches!(e, GovError::InvalidContent(ContentError::TooLarge { .. }))),
        ),
        (
            "empty title",
            empty_title,
            Some(|e| matches!(e, GovError::InvalidContent(ContentError::TitleEmpty))),
        ),
        (
            "zero multiplier",
            zero_efficiency,
            Some(|e| {
                matches!(
                    e,
                    GovError::InvalidContent(ContentError::Parity(
                        ParityError::NonPositiveMultiplier { .. }
                    ))
                )
            }),
        ),
        // Economic parity: reward 1.0 -> 1.5 NEURO per batch must declare 1.5.
        (
            "parity matches the diff",
            reward(1_500_000, 1_000_000, 1_500_000),
            None,
        ),
        (
            "parity contradicts the diff",
            reward(1_000_000, 1_000_000, 1_500_000),
            Some(|e| {
                matches!(
                    e,
                    GovError::InvalidContent(ContentError::Parity(
                        ParityError::RewardMultiplierMismatch { .. }
                    ))
                )
            }),
        ),
        (
            "reward multiplier without reward change",
            {
                let mut n = heads(1, 4);
                n.economic_impact.training_reward_multiplier = Micro(2_000_000);
                n
            },
            Some(|e| {
                matches!(
                    e,
                    GovError::InvalidContent(ContentError::Parity(
                        ParityError::RewardMultiplierWithoutRewardChange { .. }
                    ))
                )
            }),
        ),
        // Grace bounds [7, 30] days for normal NEPs.
        ("grace 7 (min)", with_grace(NepType::Train, 7), None),
        ("grace 30 (max)", with_grace(NepType::Train, 30), None),
        (
            "grace 6",
            with_grace(NepType::Train, 6),
            Some(|e| {
                matches!(
                    e,
                    GovError::InvalidContent(ContentError::GraceOutOfBounds {
                        days: 6,
                        min: 7,
                        max: 30
                    })
                )
            }),
        ),
        (
            "grace 31",
            with_grace(NepType::Train, 31),
            Some(|e| {
                matches!(
                    e,
                    GovError::InvalidContent(ContentError::GraceOutOfBounds {
                        days: 31,
                        min: 7,
                        max: 30
                    })
                )
            }),
        ),
        (
            "emergency as a draft",
            nep(
                NepType::Emerg,
                vec![int_change("train.batch_size", 512, 1024)],
                0,
                true,
            ),
            Some(|e| matches!(e, GovError::EmergencyNotDraftable)),
        ),
    ];
    for (name, content, expected) in cases {
        let mut c = chain();
        let got = draft(&mut c, 0, content);
        match (expected, got) {
            (None, Ok(_)) => {}
            (Some(check), Err(e)) => assert!(check(&e), "{name}: unexpected error {e:?}"),
            (None, Err(e)) => panic!("{name}: refused with {e:?}"),
            (Some(_), Ok(n)) => panic!("{name}: accepted as {n}"),
        }
    }
}

#[test]
fn proposer_stake_is_required_at_draft_and_at_submission() {
    let mut c = TestChain::new(&TestConfig {
        user_staked: Amount(100 * NEURO - 1),
        ..TestConfig::default()
    });
    assert_eq!(
        draft(&mut c, 0, heads(1, 4)),
        Err(GovError::InsufficientStake {
            account: user(0),
            needed: Amount(100 * NEURO),
            staked: Amount(100 * NEURO - 1),
        })
    );
    ok(c.exec(&user_key(0), Command::Stake { amount: Amount(1) }));
    let nep = draft(&mut c, 0, heads(1, 4)).unwrap();
    ok(c.exec(&user_key(0), Command::Unstake { amount: Amount(1) }));
    assert!(matches!(
        err(c.exec(&user_key(0), Command::Submit { nep })),
        GovError::InsufficientStake { .. }
    ));
    assert_eq!(stage(&c, nep), Stage::Draft);
}

#[test]
fn submission_burns_the_fee_and_needs_the_balance_for_it() {
    let deposit = deposit_of(&heads(1, 4));
    let mut c = TestChain::new(&TestConfig {
        user_balance: Amount(deposit.0 + 10 * NEURO - 1),
        ..TestConfig::default()
    });
    let nep = draft(&mut c, 0, heads(1, 4)).unwrap();
    assert_eq!(
        err(c.exec(&user_key(0), Command::Submit { nep })),
        GovError::InsufficientBalance {
            account: user(0),
            needed: Amount(10 * NEURO),
            available: Amount(10 * NEURO - 1),
        }
    );
    assert_eq!(c.state.supply().burned, 0);
    ok(c.exec(
        &user_key(1),
        Command::Transfer {
            to: user(0),
            amount: Amount(1),
        },
    ));
    let r = ok(c.exec(&user_key(0), Command::Submit { nep }));
    assert!(
        matches!(r.effect, Effect::Submitted { fee_burned, .. } if fee_burned == Amount(10 * NEURO))
    );
    assert_eq!(c.state.account(&user(0)).unwrap().balance, Amount(0));
    assert_eq!(c.state.supply().burned, 10 * NEURO);
    assert_eq!(stage(&c, nep), Stage::Review);
}

#[test]
fn amend_only_drafts_and_withdraw_only_before_voting() {
    let mut c = chain();
    let nep = draft(&mut c, 0, heads(1, 4)).unwrap();
    let before = c.state.proposal(nep).unwrap().content_hash;
    assert!(matches!(
        err(c.exec(
            &user_key(1),
            Command::AmendDraft {
                nep,
                content: heads(1, 2)
            }
        )),
        GovError::NotAuthor { .. }
    ));
    ok(c.exec(
        &user_key(0),
        Command::AmendDraft {
            nep,
            content: heads(1, 2),
        },
    ));
    assert_ne!(c.state.proposal(nep).unwrap().content_hash, before);
    ok(c.exec(&user_key(0), Command::Submit { nep }));
    // Content is frozen from submission on.
    assert!(matches!(
        err(c.exec(
            &user_key(0),
            Command::AmendDraft {
                nep,
                content: heads(1, 3)
            }
        )),
        GovError::WrongStage {
            stage: Stage::Review,
            ..
        }
    ));
    assert!(matches!(
        err(c.exec(&user_key(1), Command::Withdraw { nep })),
        GovError::NotAuthor { .. }
    ));
    ok(c.exec(&user_key(0), Command::Withdraw { nep }));
    assert_eq!(stage(&c, nep), Stage::Withdrawn);
    // The fee stays burned, and withdrawing burned the (amended) deposit too.
    let deposit = deposit_of(&heads(1, 2));
    assert_eq!(c.state.supply().burned, 10 * NEURO + deposit.0);
    // A withdrawn NEP never opens a vote.
    ok(c.advance_days(30));
    assert_eq!(stage(&c, nep), Stage::Withdrawn);

    let voting = to_voting(&mut c, 0, heads(1, 4));
    assert!(matches!(
        err(c.exec(&user_key(0), Command::Withdraw { nep: voting })),
        GovError::WrongStage {
            stage: Stage::Voting,
            ..
        }
    ));
}

#[test]
fn open_drafts_per_author_are_bounded() {
    let mut c = chain();
    for _ in 0..MAX_OPEN_DRAFTS_PER_AUTHOR {
        draft(&mut c, 0, heads(1, 4)).unwrap();
    }
    assert!(matches!(
        draft(&mut c, 0, heads(1, 4)),
        Err(GovError::TooManyOpenDrafts { open, max, .. }) if open == MAX_OPEN_DRAFTS_PER_AUTHOR && max == open
    ));
    // Another author is not affected.
    draft(&mut c, 1, heads(1, 4)).unwrap();
}

#[test]
fn nep_ids_count_up_from_one_across_both_tracks() {
    let mut c = chain();
    assert_eq!(draft(&mut c, 0, heads(1, 4)), Ok(NepId(1)));
    assert_eq!(draft(&mut c, 1, heads(1, 2)), Ok(NepId(2)));
    // A refused draft takes no id.
    assert!(draft(&mut c, 0, nep(NepType::Emerg, vec![], 0, true)).is_err());
    // Emergencies share the sequence.
    let emergency = nep(
        NepType::Emerg,
        vec![int_change("net.gossip_fanout", 8, 16)],
        0,
        true,
    );
    let r = ok(c.exec(
        &neuroshard_governance::testkit::validator_key(0),
        Command::SubmitEmergency { content: emergency },
    ));
    assert!(matches!(r.effect, Effect::EmergencySubmitted { nep, .. } if nep == NepId(3)));
    assert_eq!(draft(&mut c, 2, heads(1, 3)), Ok(NepId(4)));
    assert_eq!(NepId(4).to_string(), "NEP-4");
}

#[test]
fn withdrawing_a_draft_burns_its_deposit_and_frees_its_slot() {
    let mut c = chain();
    let balance = c.state.account(&user(0)).unwrap().balance;
    let deposit = deposit_of(&heads(1, 4));
    let nep = draft(&mut c, 0, heads(1, 4)).unwrap();
    let held = c.state.account(&user(0)).unwrap();
    assert_eq!(
        (held.balance.0, held.deposited),
        (balance.0 - deposit.0, deposit)
    );
    let r = ok(c.exec(&user_key(0), Command::Withdraw { nep }));
    assert!(matches!(r.effect,
        Effect::Withdrawn { nep: n, deposit_burned } if n == nep && deposit_burned == deposit));
    assert_eq!(stage(&c, nep), Stage::Withdrawn);
    // The deposit is burned (no fee: it was never submitted), the draft
    // slot is free again, and the record is compacted to its hash and title.
    assert_eq!(c.state.supply().burned, deposit.0);
    assert_eq!(c.state.supply().deposits, 0);
    let after = c.state.account(&user(0)).unwrap();
    assert_eq!(
        (after.balance.0, after.deposited),
        (balance.0 - deposit.0, Amount(0))
    );
    let p = c.state.proposal(nep).unwrap();
    assert!(p.compacted && p.content.specification.is_empty());
    assert!(p.content.parameter_changes.is_empty() && !p.content.title.is_empty());
    for _ in 0..MAX_OPEN_DRAFTS_PER_AUTHOR {
        draft(&mut c, 0, heads(1, 4)).unwrap();
    }
    // Withdrawn is final: no second withdrawal, no submission.
    assert!(matches!(
        err(c.exec(&user_key(0), Command::Withdraw { nep })),
        GovError::WrongStage {
            stage: Stage::Withdrawn,
            ..
        }
    ));
    assert!(matches!(
        err(c.exec(&user_key(0), Command::Submit { nep })),
        GovError::WrongStage {
            stage: Stage::Withdrawn,
            ..
        }
    ));
}

#[test]
fn a_nep_setting_a_time_parameter_below_its_floor_is_refused() {
    // (key, floor, the chain's current value): under refused with the
    // registry's typed error, at and over the floor accepted; an emergency
    // NEP (any namespace) is checked the same way.
    let floors = [
        ("gov.day_ms", 1_000i64, 2_000i64),
        ("gov.max_clock_skew_ms", 1_000, 30_000),
        ("gov.voting_days", 1, 7),
        ("gov.emergency_window_days", 1, 1),
    ];
    for (key, floor, current) in floors {
        let mut c = TestChain::new(&TestConfig {
            day_ms: 2_000,
            ..TestConfig::default()
        });
        assert_eq!(
            c.state.params().get(key),
            Some(&ParamValue::Integer(current))
        );
        let change = |new: i64| nep(NepType::Gov, vec![int_change(key, current, new)], 7, true);
        match draft(&mut c, 0, change(floor - 1)) {
            Err(GovError::InvalidContent(ContentError::Parameter {
                key: k,
                source: ParamError::OutOfRange { min, .. },
            })) => assert_eq!((k.as_str(), min), (key, floor)),
            other => panic!("{key} = {}: {other:?}", floor - 1),
        }
        let emergency = nep(
            NepType::Emerg,
            vec![int_change(key, current, floor - 1)],
            0,
            true,
        );
        assert!(matches!(
            c.exec(
                &neuroshard_governance::testkit::validator_key(0),
                Command::SubmitEmergency { content: emergency }
            ),
            Err(GovError::InvalidContent(ContentError::Parameter {
                source: ParamError::OutOfRange { .. },
                ..
            }))
        ));
        for new in [floor, floor + 1] {
            if new != current {
                draft(&mut c, 0, change(new)).unwrap_or_else(|e| panic!("{key} = {new}: {e:?}"));
            }
        }
    }
}
