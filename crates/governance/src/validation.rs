//! Static checks of a NEP's content against the registry and the current
//! governance parameters: sizes, keys, namespaces, value types, grace bounds,
//! economic parity. Run at draft, amend, submit and emergency submission.

use serde::{Deserialize, Serialize};

use crate::economic_parity::{self, ParityError};
use crate::limits::{
    MAX_IMPACT_SUMMARY_BYTES, MAX_MOTIVATION_BYTES, MAX_PARAMETER_CHANGES, MAX_PARAMETER_KEY_BYTES,
    MAX_SPEC_BYTES, MAX_TEXT_VALUE_BYTES, MAX_TITLE_BYTES,
};
use crate::nep::{NepContent, NepType};
use crate::params::{namespace_allowed, spec, GovParams, ParamError, ParamValue};

/// Why a NEP's content is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ContentError {
    #[error("the title is empty")]
    TitleEmpty,
    #[error("{field} is {bytes} bytes, more than the {max} allowed")]
    TooLarge {
        field: String,
        bytes: usize,
        max: usize,
    },
    #[error("{count} parameter changes, more than the {max} allowed")]
    TooManyChanges { count: usize, max: usize },
    #[error("an emergency NEP must change at least one parameter")]
    EmergencyWithoutChanges,
    #[error("parameter key {key:?} appears more than once")]
    DuplicateKey { key: String },
    #[error("parameter changes must be sorted by key: {key:?} comes after {previous:?}")]
    ChangesNotSorted { previous: String, key: String },
    #[error("a {nep_type} NEP may not change {key} (only {allowed}.*)")]
    WrongNamespace {
        key: String,
        nep_type: NepType,
        allowed: String,
    },
    #[error("parameter change {key}: {source}")]
    Parameter {
        key: String,
        #[source]
        source: ParamError,
    },
    #[error("parameter change {key} does not change anything (new equals expected_old)")]
    NoOpChange { key: String },
    #[error("grace_period_days {days} is outside [{min}, {max}]")]
    GraceOutOfBounds { days: u32, min: u64, max: u64 },
    #[error(transparent)]
    Parity(#[from] ParityError),
}

/// Validates content for a NEP of its declared type under the current
/// governance parameters: [`validate_shape`], then the grace bounds, which
/// NEPs may change.
pub fn validate_content(content: &NepContent, gov: &GovParams) -> Result<(), ContentError> {
    validate_shape(content)?;
    let days = content.upgrade_path.grace_period_days;
    let (min, max) = if content.nep_type.is_emergency() {
        (0, gov.emergency_grace_max_days)
    } else {
        (gov.grace_min_days, gov.grace_max_days)
    };
    if u64::from(days) < min || u64::from(days) > max {
        return Err(ContentError::GraceOutOfBounds { days, min, max });
    }
    Ok(())
}

/// Every check of the content that depends on the content alone (sizes,
/// counts, keys, namespaces, value types and bounds, economic parity): what
/// admission may refuse before the log, because no later state can accept it.
pub fn validate_shape(content: &NepContent) -> Result<(), ContentError> {
    if content.title.trim().is_empty() {
        return Err(ContentError::TitleEmpty);
    }
    for (field, bytes, max) in [
        ("title", content.title.len(), MAX_TITLE_BYTES),
        ("motivation", content.motivation.len(), MAX_MOTIVATION_BYTES),
        ("specification", content.specification.len(), MAX_SPEC_BYTES),
        (
            "economic_impact.summary",
            content.economic_impact.summary.len(),
            MAX_IMPACT_SUMMARY_BYTES,
        ),
    ] {
        if bytes > max {
            return Err(ContentError::TooLarge {
                field: field.to_owned(),
                bytes,
                max,
            });
        }
    }
    let changes = &content.parameter_changes;
    if changes.len() > MAX_PARAMETER_CHANGES {
        return Err(ContentError::TooManyChanges {
            count: changes.len(),
            max: MAX_PARAMETER_CHANGES,
        });
    }
    if content.nep_type.is_emergency() && changes.is_empty() {
        return Err(ContentError::EmergencyWithoutChanges);
    }
    for (i, change) in changes.iter().enumerate() {
        if change.key.len() > MAX_PARAMETER_KEY_BYTES {
            return Err(ContentError::TooLarge {
                field: "parameter key".to_owned(),
                bytes: change.key.len(),
                max: MAX_PARAMETER_KEY_BYTES,
            });
        }
        if i > 0 {
            let previous = &changes[i - 1].key;
            if *previous == change.key {
                return Err(ContentError::DuplicateKey {
                    key: change.key.clone(),
                });
            }
            if *previous > change.key {
                return Err(ContentError::ChangesNotSorted {
                    previous: previous.clone(),
                    key: change.key.clone(),
                });
            }
        }
        let param_err = |source| ContentError::Parameter {
            key: change.key.clone(),
            source,
        };
        let s = spec(&change.key).ok_or_else(|| {
            param_err(ParamError::Unknown {
                key: change.key.clone(),
            })
        })?;
        if !namespace_allowed(content.nep_type, &change.key) {
            return Err(ContentError::WrongNamespace {
                key: change.key.clone(),
                nep_type: content.nep_type,
                allowed: content.nep_type.namespace().unwrap_or("*").to_owned(),
            });
        }
        // The expected old value only needs the right type: whether it still
        // matches is decided at the compare-and-set when voting ends.
        // Text values are bounded on both sides: an unbounded `expected_old`
        // would let one draft carry megabytes into every replica.
        if let ParamValue::String(text) = &change.expected_old {
            if text.len() > MAX_TEXT_VALUE_BYTES {
                return Err(param_err(ParamError::TextTooLong {
                    key: change.key.clone(),
                    bytes: text.len(),
                    max: MAX_TEXT_VALUE_BYTES,
                }));
            }
        }
        if change.expected_old.kind() != s.kind {
            return Err(param_err(ParamError::KindMismatch {
                key: change.key.clone(),
                expected: s.kind,
                found: change.expected_old.kind(),
            }));
        }
        s.check(&change.new).map_err(param_err)?;
        if change.new == change.expected_old {
            return Err(ContentError::NoOpChange {
                key: change.key.clone(),
            });
        }
    }
    economic_parity::check(&content.economic_impact, changes)?;
    Ok(())
}
