//! The proposal file format (TOML): how an author writes a NEP.
//!
//! ```toml
//! title = "Add Multi-Token Prediction Training"
//! nep_type = "NEP-TRAIN"          # or "TRAIN"
//! motivation = "..."
//! specification = "..."
//!
//! [[parameter_changes]]
//! key = "train.prediction_heads"
//! expected_old = 1                 # typed by the registry: integer, fixed-point
//! new = 4                          # (number or "decimal" string), bool, string
//!
//! [economic_impact]
//! training_efficiency_multiplier = 2.0
//! training_reward_multiplier = 1.0
//! net_earnings_change_percent = 0.0
//! summary = "..."
//!
//! [upgrade_path]
//! grace_period_days = 14
//! backward_compatible = true
//! ```
//!
//! Numbers convert to fixed point exactly (at most 6 decimal places).
//! Parameter changes may be written in any order; they are sorted by key.

use serde::{Deserialize, Serialize};

use crate::genesis::ParamInput;
use crate::limits::MAX_PROPOSAL_FILE_BYTES;
use crate::nep::{EconomicImpact, NepContent, NepType, ParameterChange, UpgradePath};
use crate::params::{GovParams, ParamError, ParamValue};
use crate::types::Micro;
use crate::validation::{validate_content, ContentError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposalFile {
    title: String,
    nep_type: String,
    #[serde(default)]
    motivation: String,
    #[serde(default)]
    specification: String,
    #[serde(default)]
    parameter_changes: Vec<ChangeFile>,
    economic_impact: ImpactFile,
    upgrade_path: UpgradePath,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeFile {
    key: String,
    expected_old: ParamInput,
    new: ParamInput,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum NumberInput {
    Integer(i64),
    Float(f64),
    Text(String),
}

impl NumberInput {
    fn to_micro(&self, field: &str) -> Result<Micro, ProposalFileError> {
        let bad = |reason: String| ProposalFileError::BadNumber {
            field: field.to_owned(),
            reason,
        };
        match self {
            NumberInput::Integer(v) => v
                .checked_mul(crate::types::MICRO)
                .map(Micro)
                .ok_or_else(|| bad(format!("{v} is out of range"))),
            NumberInput::Float(f) => Micro::from_f64(*f).map_err(bad),
            NumberInput::Text(t) => Micro::parse_decimal(t).map_err(bad),
        }
    }

    fn from_micro(m: Micro) -> NumberInput {
        // Written as a decimal string would be unusual in TOML; a float is
        // exact for every value with at most 6 decimals that round-trips.
        NumberInput::Text(m.to_string())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImpactFile {
    training_efficiency_multiplier: NumberInput,
    training_reward_multiplier: NumberInput,
    net_earnings_change_percent: NumberInput,
    #[serde(default)]
    summary: String,
}

/// Why a proposal file was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposalFileError {
    #[error("proposal file is {bytes} bytes, more than {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("proposal TOML: {0}")]
    Toml(String),
    #[error("nep_type {0:?} is not one of ARCH, ECON, TRAIN, NET, GOV, EMERG")]
    UnknownType(String),
    #[error("{field}: {reason}")]
    BadNumber { field: String, reason: String },
    #[error("parameter change: {0}")]
    Parameter(#[from] ParamError),
    #[error(transparent)]
    Invalid(#[from] ContentError),
}

/// Parses a proposal file into NEP content (sorted, typed by the registry),
/// without checking it against governance parameters.
pub fn parse(text: &str) -> Result<NepContent, ProposalFileError> {
    if text.len() > MAX_PROPOSAL_FILE_BYTES {
        return Err(ProposalFileError::TooLarge {
            bytes: text.len(),
            max: MAX_PROPOSAL_FILE_BYTES,
        });
    }
    let file: ProposalFile =
        toml::from_str(text).map_err(|e| ProposalFileError::Toml(e.to_string()))?;
    let nep_type = NepType::parse(&file.nep_type)
        .ok_or_else(|| ProposalFileError::UnknownType(file.nep_type.clone()))?;
    let mut parameter_changes = file
        .parameter_changes
        .iter()
        .map(|c| {
            Ok(ParameterChange {
                key: c.key.clone(),
                expected_old: typed_loose(&c.key, &c.expected_old)?,
                new: typed_loose(&c.key, &c.new)?,
            })
        })
        .collect::<Result<Vec<_>, ProposalFileError>>()?;
    parameter_changes.sort_by(|a, b| a.key.cmp(&b.key));
    let impact = &file.economic_impact;
    Ok(NepContent {
        title: file.title,
        nep_type,
        motivation: file.motivation,
        specification: file.specification,
        parameter_changes,
        economic_impact: EconomicImpact {
            training_efficiency_multiplier: impact
                .training_efficiency_multiplier
                .to_micro("economic_impact.training_efficiency_multiplier")?,
            training_reward_multiplier: impact
                .training_reward_multiplier
                .to_micro("economic_impact.training_reward_multiplier")?,
            net_earnings_change_percent: impact
                .net_earnings_change_percent
                .to_micro("economic_impact.net_earnings_change_percent")?,
            summary: impact.summary.clone(),
        },
        upgrade_path: file.upgrade_path,
    })
}

/// Converts by the key's registry type; the range is not checked here
/// (`expected_old` only has to have the right type).
fn typed_loose(key: &str, input: &ParamInput) -> Result<ParamValue, ProposalFileError> {
    match input.to_value(key) {
        Ok(v) => Ok(v),
        Err(ParamError::OutOfRange { .. }) => {
            // Re-type without the bounds check so validation reports the
            // rule with context (new values are range-checked there).
            let spec = crate::params::spec(key).ok_or_else(|| ParamError::Unknown {
                key: key.to_owned(),
            })?;
            Ok(match (spec.kind, input) {
                (crate::params::ParamKind::Integer, ParamInput::Integer(v)) => {
                    ParamValue::Integer(*v)
                }
                (crate::params::ParamKind::FixedPoint, ParamInput::Integer(v)) => {
                    ParamValue::FixedPoint(Micro(v.saturating_mul(crate::types::MICRO)))
                }
                (crate::params::ParamKind::FixedPoint, ParamInput::Float(f)) => {
                    ParamValue::FixedPoint(Micro::from_f64(*f).map_err(|reason| {
                        ProposalFileError::BadNumber {
                            field: key.to_owned(),
                            reason,
                        }
                    })?)
                }
                (crate::params::ParamKind::FixedPoint, ParamInput::Text(t)) => {
                    ParamValue::FixedPoint(Micro::parse_decimal(t).map_err(|reason| {
                        ProposalFileError::BadNumber {
                            field: key.to_owned(),
                            reason,
                        }
                    })?)
                }
                _ => {
                    return Err(input
                        .to_value(key)
                        .err()
                        .map_or_else(|| ProposalFileError::Toml(key.to_owned()), Into::into))
                }
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Parses and validates against the given governance parameters (the CLI
/// uses the live ones; tests use the genesis defaults).
pub fn parse_and_validate(text: &str, gov: &GovParams) -> Result<NepContent, ProposalFileError> {
    let content = parse(text)?;
    validate_content(&content, gov)?;
    Ok(content)
}

fn input_of(v: &ParamValue) -> ParamInput {
    match v {
        ParamValue::Integer(i) => ParamInput::Integer(*i),
        ParamValue::FixedPoint(m) => ParamInput::Text(m.to_string()),
        ParamValue::Bool(b) => ParamInput::Bool(*b),
        ParamValue::String(s) => ParamInput::Text(s.clone()),
    }
}

/// Writes content back in the file format (parses back to the same content).
pub fn to_toml(content: &NepContent) -> String {
    let file = ProposalFile {
        title: content.title.clone(),
        nep_type: format!("NEP-{}", content.nep_type),
        motivation: content.motivation.clone(),
        specification: content.specification.clone(),
        parameter_changes: content
            .parameter_changes
            .iter()
            .map(|c| ChangeFile {
                key: c.key.clone(),
                expected_old: input_of(&c.expected_old),
                new: input_of(&c.new),
            })
            .collect(),
        economic_impact: ImpactFile {
            training_efficiency_multiplier: NumberInput::from_micro(
                content.economic_impact.training_efficiency_multiplier,
            ),
            training_reward_multiplier: NumberInput::from_micro(
                content.economic_impact.training_reward_multiplier,
            ),
            net_earnings_change_percent: NumberInput::from_micro(
                content.economic_impact.net_earnings_change_percent,
            ),
            summary: content.economic_impact.summary.clone(),
        },
        upgrade_path: content.upgrade_path,
    };
    // A struct of strings, numbers and arrays always serialises to TOML.
    toml::to_string_pretty(&file).unwrap_or_default()
}
