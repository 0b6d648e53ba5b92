//! Economic parity: the impact analysis a NEP declares must agree with the
//! parameter diff it actually makes (DESIGN §3).
//!
//! For every changed reward parameter, `training_reward_multiplier` must equal
//! new/old within 1 ppm; a NEP that changes no reward parameter cannot change
//! rewards, so its declared multiplier must be exactly 1.0.

use serde::{Deserialize, Serialize};

use crate::nep::{EconomicImpact, ParameterChange};
use crate::params::{spec, ParamValue};
use crate::types::{Micro, MICRO};

/// Tolerance of the reward-multiplier check, in micro-units (1 ppm).
pub const REWARD_MULTIPLIER_TOLERANCE_MICRO: i64 = 1;

/// Lowest `net_earnings_change_percent`: nobody can lose more than everything.
pub const MIN_NET_EARNINGS_CHANGE_MICRO: i64 = -100 * MICRO;

/// Why the impact analysis was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ParityError {
    #[error("economic impact: {field} must be greater than 0, got {value}")]
    NonPositiveMultiplier { field: String, value: Micro },
    #[error("economic impact: net_earnings_change_percent {value} is below -100")]
    EarningsBelowTotalLoss { value: Micro },
    #[error(
        "economic impact contradicts the diff: training_reward_multiplier {declared} but reward parameter {key} changes {old} -> {new}"
    )]
    RewardMultiplierMismatch {
        key: String,
        declared: Micro,
        old: i64,
        new: i64,
    },
    #[error(
        "economic impact contradicts the diff: training_reward_multiplier {declared} but no reward parameter changes (must be 1.0)"
    )]
    RewardMultiplierWithoutRewardChange { declared: Micro },
}

/// Checks the declared impact against the changes.
pub fn check(impact: &EconomicImpact, changes: &[ParameterChange]) -> Result<(), ParityError> {
    for (field, value) in [
        (
            "training_efficiency_multiplier",
            impact.training_efficiency_multiplier,
        ),
        (
            "training_reward_multiplier",
            impact.training_reward_multiplier,
        ),
    ] {
        if value.0 <= 0 {
            return Err(ParityError::NonPositiveMultiplier {
                field: field.to_owned(),
                value,
            });
        }
    }
    if impact.net_earnings_change_percent.0 < MIN_NET_EARNINGS_CHANGE_MICRO {
        return Err(ParityError::EarningsBelowTotalLoss {
            value: impact.net_earnings_change_percent,
        });
    }
    let declared = impact.training_reward_multiplier;
    let mut any_reward = false;
    for change in changes {
        let is_reward = spec(&change.key).is_some_and(|s| s.reward);
        if !is_reward {
            continue;
        }
        any_reward = true;
        let (old, new) = match (&change.expected_old, &change.new) {
            (ParamValue::Integer(o), ParamValue::Integer(n)) => (*o, *n),
            (ParamValue::FixedPoint(o), ParamValue::FixedPoint(n)) => (o.0, n.0),
            // Kind errors are reported by content validation first.
            _ => continue,
        };
        if !ratio_matches(declared, old, new) {
            return Err(ParityError::RewardMultiplierMismatch {
                key: change.key.clone(),
                declared,
                old,
                new,
            });
        }
    }
    if !any_reward && declared != Micro::ONE {
        return Err(ParityError::RewardMultiplierWithoutRewardChange { declared });
    }
    Ok(())
}

/// `|declared/1e6 - new/old| <= 1e-6`, in exact integer arithmetic:
/// `|declared·old - new·1e6| <= tolerance·old`.
fn ratio_matches(declared: Micro, old: i64, new: i64) -> bool {
    if old <= 0 {
        // Reward parameters are bounded >= 1; a ratio against 0 is undefined.
        return false;
    }
    let lhs = i128::from(declared.0) * i128::from(old) - i128::from(new) * i128::from(MICRO);
    lhs.abs() <= i128::from(REWARD_MULTIPLIER_TOLERANCE_MICRO) * i128::from(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn impact(eff: i64, reward: i64, earnings: i64) -> EconomicImpact {
        EconomicImpact {
            training_efficiency_multiplier: Micro(eff),
            training_reward_multiplier: Micro(reward),
            net_earnings_change_percent: Micro(earnings),
            summary: String::new(),
        }
    }

    fn change(key: &str, old: i64, new: i64) -> ParameterChange {
        ParameterChange {
            key: key.to_owned(),
            expected_old: ParamValue::Integer(old),
            new: ParamValue::Integer(new),
        }
    }

    #[test]
    fn parity_table() {
        let reward = "train.reward_per_batch";
        let other = "train.prediction_heads";
        // (impact, changes, ok?)
        let cases: Vec<(EconomicImpact, Vec<ParameterChange>, bool)> = vec![
            (impact(MICRO, MICRO, 0), vec![change(other, 1, 4)], true),
            (impact(2 * MICRO, MICRO, 0), vec![change(other, 1, 4)], true),
            // Declares a reward change the diff does not make.
            (
                impact(MICRO, 1_500_000, 0),
                vec![change(other, 1, 4)],
                false,
            ),
            // Exact ratio 1.5.
            (
                impact(MICRO, 1_500_000, 0),
                vec![change(reward, 1_000_000, 1_500_000)],
                true,
            ),
            // Within 1 ppm: 1/3 declared as 0.333333.
            (
                impact(MICRO, 333_333, 0),
                vec![change(reward, 3_000_000, 1_000_000)],
                true,
            ),
            // 2 ppm off.
            (
                impact(MICRO, 333_331, 0),
                vec![change(reward, 3_000_000, 1_000_000)],
                false,
            ),
            // Declares 1.0 while halving the reward.
            (impact(MICRO, MICRO, 0), vec![change(reward, 2, 1)], false),
            // Two reward parameters with different ratios cannot both match.
            (
                impact(MICRO, 2 * MICRO, 0),
                vec![
                    change(reward, 1, 2),
                    change("train.reward_per_validation", 1, 3),
                ],
                false,
            ),
            (impact(0, MICRO, 0), vec![], false),
            (impact(MICRO, -MICRO, 0), vec![], false),
            (impact(MICRO, MICRO, -100 * MICRO), vec![], true),
            (impact(MICRO, MICRO, -100 * MICRO - 1), vec![], false),
        ];
        for (i, (imp, changes, ok)) in cases.into_iter().enumerate() {
            assert_eq!(
                check(&imp, &changes).is_ok(),
                ok,
                "case {i}: {:?}",
                check(&imp, &changes)
            );
        }
    }
}
