//! The commands the attacks send, built to an exact encoded size: the
//! largest valid NEP content (every field at its limit, as far as the rules
//! allow one NEP to go), and signed commands of any size above
//! `MAX_COMMAND_BYTES` (a huge specification, or a huge `expected_old`
//! string in a parameter change).

use ed25519_dalek::SigningKey;
use neuroshard_governance::admission::encoded_len;
use neuroshard_governance::limits::{
    MAX_IMPACT_SUMMARY_BYTES, MAX_MOTIVATION_BYTES, MAX_PARAMETER_CHANGES, MAX_SPEC_BYTES,
    MAX_TEXT_VALUE_BYTES, MAX_TITLE_BYTES,
};
use neuroshard_governance::params::{spec, ParamKind, SCHEMA};
use neuroshard_governance::validation::validate_shape;
use neuroshard_governance::{
    Command, EconomicImpact, Micro, NepContent, NepId, NepType, ParamValue, ParameterChange,
    SignedCommand, UpgradePath,
};

/// A small valid content (the honest NEP, the growth loops' cheap drafts).
pub fn small_content(title: &str) -> NepContent {
    NepContent {
        title: title.to_owned(),
        nep_type: NepType::Train,
        motivation: "hostile-client suite".to_owned(),
        specification: "set train.prediction_heads to 4".to_owned(),
        parameter_changes: vec![ParameterChange {
            key: "train.prediction_heads".to_owned(),
            expected_old: ParamValue::Integer(1),
            new: ParamValue::Integer(4),
        }],
        economic_impact: EconomicImpact {
            training_efficiency_multiplier: Micro::ONE,
            training_reward_multiplier: Micro::ONE,
            net_earnings_change_percent: Micro(0),
            summary: "none".to_owned(),
        },
        upgrade_path: UpgradePath {
            grace_period_days: 1,
            backward_compatible: true,
        },
    }
}

/// `len` bytes of printable text derived from `seed` (so two contents with
/// different seeds differ).
pub fn filler(len: usize, seed: u64) -> String {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 ";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            alphabet[(x % alphabet.len() as u64) as usize] as char
        })
        .collect()
}

/// A value of `kind` for a parameter change, different from `other`
/// (text at `MAX_TEXT_VALUE_BYTES`), within the key's bounds.
fn value(kind: ParamKind, key: &str, seed: u64, second: bool) -> ParamValue {
    let s = spec(key).expect("key from the schema");
    match kind {
        ParamKind::String => ParamValue::String(filler(
            MAX_TEXT_VALUE_BYTES,
            seed ^ if second { 0xA5A5 } else { 0x5A5A },
        )),
        ParamKind::Bool => ParamValue::Bool(second),
        // The bounds' two ends: always different, always valid; the widest
        // varints of the range.
        ParamKind::Integer => ParamValue::Integer(if second { s.max } else { s.min }),
        ParamKind::FixedPoint => ParamValue::FixedPoint(Micro(if second { s.max } else { s.min })),
    }
}

/// Every parameter change a NEP of `nep_type` can make (one per key of its
/// namespace, sorted, at most `MAX_PARAMETER_CHANGES`), values at their
/// widest; reward parameters are left out (their ratio would have to match
/// the declared multiplier: kept at 1.0).
fn widest_changes(nep_type: NepType, seed: u64) -> Vec<ParameterChange> {
    let ns = nep_type.namespace().expect("a draftable type");
    SCHEMA
        .iter()
        .filter(|s| s.namespace() == ns && !s.reward)
        .take(MAX_PARAMETER_CHANGES)
        .map(|s| ParameterChange {
            key: s.key.to_owned(),
            expected_old: value(s.kind, s.key, seed, false),
            new: value(s.kind, s.key, seed, true),
        })
        .collect()
}

/// The largest content that passes validation: title, motivation,
/// specification and impact summary at their limits, and the namespace
/// whose changes encode largest (each key once — the rules allow no more —
/// text values at `MAX_TEXT_VALUE_BYTES`). `MAX_PARAMETER_CHANGES` changes
/// are only reachable by an emergency NEP, which cannot be drafted.
pub fn largest_valid_content(seed: u64) -> NepContent {
    let best = [
        NepType::Arch,
        NepType::Econ,
        NepType::Train,
        NepType::Net,
        NepType::Gov,
    ]
    .into_iter()
    .map(|t| (t, widest_changes(t, seed)))
    .filter(|(t, changes)| {
        // The namespace's changes must themselves validate (e.g. the
        // grace bounds are checked at the state, not here).
        validate_shape(&with_changes(*t, changes.clone(), seed)).is_ok()
    })
    .max_by_key(|(t, changes)| encoded_size(&with_changes(*t, changes.clone(), seed)))
    .expect("some namespace has valid changes");
    with_changes(best.0, best.1, seed)
}

fn with_changes(nep_type: NepType, changes: Vec<ParameterChange>, seed: u64) -> NepContent {
    NepContent {
        title: filler(MAX_TITLE_BYTES, seed),
        nep_type,
        motivation: filler(MAX_MOTIVATION_BYTES, seed + 1),
        specification: filler(MAX_SPEC_BYTES, seed + 2),
        parameter_changes: changes,
        economic_impact: EconomicImpact {
            training_efficiency_multiplier: Micro(i64::MAX),
            training_reward_multiplier: Micro::ONE,
            net_earnings_change_percent: Micro(i64::MAX),
            summary: filler(MAX_IMPACT_SUMMARY_BYTES, seed + 3),
        },
        upgrade_path: UpgradePath {
            // Any u32 passes the shape; the state checks the grace bounds:
            // within [gov.grace_min_days, gov.grace_max_days] of the suite.
            grace_period_days: 7,
            backward_compatible: true,
        },
    }
}

pub fn encoded_size<T: serde::Serialize>(value: &T) -> usize {
    postcard::experimental::serialized_size(value).unwrap_or(usize::MAX)
}

/// How an oversized command carries its bulk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bulk {
    /// `CreateDraft` with a huge specification.
    CreateSpec,
    /// `AmendDraft` of an existing draft with a huge specification.
    AmendSpec,
    /// `CreateDraft` of a NET NEP whose `net.protocol_id` change carries a
    /// huge `expected_old` string.
    ExpectedOld,
}

impl Bulk {
    pub const ALL: [Bulk; 3] = [Bulk::CreateSpec, Bulk::AmendSpec, Bulk::ExpectedOld];

    pub fn name(self) -> &'static str {
        match self {
            Bulk::CreateSpec => "create-draft/specification",
            Bulk::AmendSpec => "amend-draft/specification",
            Bulk::ExpectedOld => "create-draft/expected_old",
        }
    }
}

/// A command whose bulk field holds `bulk` bytes and whose title `pad`
/// bytes (unsigned: the signature does not change the size).
fn bulky(kind: Bulk, nep: NepId, bulk: usize, pad: usize) -> Command {
    let mut content = small_content(&format!("oversized{}", "x".repeat(pad)));
    match kind {
        Bulk::CreateSpec | Bulk::AmendSpec => content.specification = "s".repeat(bulk),
        Bulk::ExpectedOld => {
            content.nep_type = NepType::Net;
            content.parameter_changes = vec![ParameterChange {
                key: "net.protocol_id".to_owned(),
                expected_old: ParamValue::String("o".repeat(bulk)),
                new: ParamValue::String("/hostile/1".to_owned()),
            }];
        }
    }
    match kind {
        Bulk::AmendSpec => Command::AmendDraft { nep, content },
        _ => Command::CreateDraft { content },
    }
}

/// A signed command that encodes to exactly `target` bytes (postcard), or
/// `None` when `target` is below the smallest such command.
pub fn command_of_size(
    chain_id: &str,
    key: &SigningKey,
    nonce: u64,
    kind: Bulk,
    nep: NepId,
    target: usize,
) -> Option<SignedCommand> {
    let size = |bulk: usize, pad: usize| {
        // The signature's bytes do not change the length: measure unsigned.
        encoded_len(&SignedCommand {
            author: neuroshard_governance::AccountId(key.verifying_key().to_bytes()),
            nonce,
            command: bulky(kind, nep, bulk, pad),
            signature: neuroshard_governance::CommandSignature([0; 64]),
        })
    };
    if size(0, 0) > target {
        return None;
    }
    // The largest bulk not above the target (size grows with bulk), then
    // the title makes up the one or two bytes a varint step skipped.
    let (mut lo, mut hi) = (0usize, target);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if size(mid, 0) <= target {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let short = target - size(lo, 0);
    if size(lo, short) != target {
        return None;
    }
    let signed = SignedCommand::sign(chain_id, key, nonce, bulky(kind, nep, lo, short));
    debug_assert_eq!(encoded_len(&signed), target);
    Some(signed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use neuroshard_governance::limits::{MAX_COMMAND_BYTES, MAX_NEP_CONTENT_BYTES};

    #[test]
    fn the_largest_valid_content_validates_and_fits() {
        let c = largest_valid_content(1);
        validate_shape(&c).expect("valid");
        let n = encoded_size(&c);
        assert!(n <= MAX_NEP_CONTENT_BYTES, "{n}");
        assert!(n > MAX_SPEC_BYTES + MAX_MOTIVATION_BYTES, "{n}");
    }

    #[test]
    fn commands_of_every_boundary_size() {
        let key = SigningKey::from_bytes(&[7; 32]);
        for kind in Bulk::ALL {
            for target in [
                MAX_COMMAND_BYTES + 1,
                MAX_COMMAND_BYTES + 2,
                // varint steps of the bulk's length
                (1 << 21) - 1,
                1 << 21,
                (1 << 21) + 1,
                (1 << 21) + 2,
                4 * 1024 * 1024 - 5,
            ] {
                let c = command_of_size("hostile", &key, 3, kind, NepId(1), target)
                    .unwrap_or_else(|| panic!("{kind:?} {target}"));
                assert_eq!(encoded_len(&c), target, "{kind:?}");
            }
        }
    }
}
