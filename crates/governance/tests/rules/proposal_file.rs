//! The proposal file format and the committed example.

use neuroshard_governance::params::ParameterSet;
use neuroshard_governance::proposal_file::{self, ProposalFileError};
use neuroshard_governance::{Micro, NepType, ParamValue};

const EXAMPLE: &str = include_str!("../../../../examples/neps/multi-token-prediction.toml");

#[test]
fn the_multi_token_prediction_example_parses_and_validates() {
    let gov = ParameterSet::genesis_defaults().gov();
    let content = proposal_file::parse_and_validate(EXAMPLE, &gov).unwrap();
    assert_eq!(content.title, "Add Multi-Token Prediction Training");
    assert_eq!(content.nep_type, NepType::Train);
    assert_eq!(
        content.economic_impact.training_efficiency_multiplier,
        Micro(2_000_000)
    );
    assert_eq!(
        content.economic_impact.training_reward_multiplier,
        Micro(1_000_000)
    );
    assert_eq!(
        content.economic_impact.net_earnings_change_percent,
        Micro(0)
    );
    assert_eq!(content.upgrade_path.grace_period_days, 14);
    assert!(content.upgrade_path.backward_compatible);
    assert_eq!(content.parameter_changes.len(), 1);
    assert!(content.parameter_changes[0].key.starts_with("train."));
    assert_eq!(content.parameter_changes[0].new, ParamValue::Integer(4));
    // Writing it back gives the same content.
    let again = proposal_file::parse(&proposal_file::to_toml(&content)).unwrap();
    assert_eq!(again, content);
    assert_eq!(again.content_hash(), content.content_hash());
}

#[test]
fn file_errors_name_the_problem() {
    type Case = (&'static str, String, fn(&ProposalFileError) -> bool);
    let cases: Vec<Case> = vec![
        (
            "unknown field",
            EXAMPLE.replace("title =", "titel ="),
            |e| matches!(e, ProposalFileError::Toml(_)),
        ),
        (
            "unknown type",
            EXAMPLE.replace("NEP-TRAIN", "NEP-FOOD"),
            |e| matches!(e, ProposalFileError::UnknownType(_)),
        ),
        (
            "too precise",
            EXAMPLE.replace(
                "training_efficiency_multiplier = 2.0",
                "training_efficiency_multiplier = 2.0000001",
            ),
            |e| matches!(e, ProposalFileError::BadNumber { .. }),
        ),
        (
            "wrong value type",
            EXAMPLE.replace("new = 4", "new = true"),
            |e| matches!(e, ProposalFileError::Parameter(_)),
        ),
        (
            "contradicting impact",
            EXAMPLE.replace(
                "training_reward_multiplier = 1.0",
                "training_reward_multiplier = 1.2",
            ),
            |e| matches!(e, ProposalFileError::Invalid(_)),
        ),
        (
            "grace out of bounds",
            EXAMPLE.replace("grace_period_days = 14", "grace_period_days = 31"),
            |e| matches!(e, ProposalFileError::Invalid(_)),
        ),
    ];
    let gov = ParameterSet::genesis_defaults().gov();
    for (name, text, check) in cases {
        match proposal_file::parse_and_validate(&text, &gov) {
            Err(e) => assert!(check(&e), "{name}: {e:?}"),
            Ok(c) => panic!("{name}: accepted {c:?}"),
        }
    }
}

#[test]
fn fixed_point_values_convert_exactly() {
    let text = EXAMPLE.replace(
        "key = \"train.prediction_heads\"\nexpected_old = 1\nnew = 4",
        "key = \"train.learning_rate\"\nexpected_old = 0.0003\nnew = \"0.00025\"",
    );
    let content = proposal_file::parse(&text).unwrap();
    assert_eq!(
        content.parameter_changes[0].expected_old,
        ParamValue::FixedPoint(Micro(300))
    );
    assert_eq!(
        content.parameter_changes[0].new,
        ParamValue::FixedPoint(Micro(250))
    );
}
