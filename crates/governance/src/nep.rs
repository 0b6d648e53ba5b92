//! A NEP's content: what is voted on and what a certificate attests (DESIGN §3).

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::params::ParamValue;
use crate::types::Micro;

/// The kind of a NEP; each may change only its own namespace, EMERG any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum NepType {
    Arch,
    Econ,
    Train,
    Net,
    Gov,
    Emerg,
}

impl NepType {
    /// The namespace this type may change; `None` for EMERG (any).
    pub fn namespace(self) -> Option<&'static str> {
        match self {
            NepType::Arch => Some("arch"),
            NepType::Econ => Some("econ"),
            NepType::Train => Some("train"),
            NepType::Net => Some("net"),
            NepType::Gov => Some("gov"),
            NepType::Emerg => None,
        }
    }

    pub fn is_emergency(self) -> bool {
        self == NepType::Emerg
    }

    pub fn name(self) -> &'static str {
        match self {
            NepType::Arch => "ARCH",
            NepType::Econ => "ECON",
            NepType::Train => "TRAIN",
            NepType::Net => "NET",
            NepType::Gov => "GOV",
            NepType::Emerg => "EMERG",
        }
    }

    /// Accepts `TRAIN`, `train` and `NEP-TRAIN`.
    pub fn parse(s: &str) -> Option<NepType> {
        let upper = s.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("NEP-").unwrap_or(&upper);
        Some(match bare {
            "ARCH" => NepType::Arch,
            "ECON" => NepType::Econ,
            "TRAIN" => NepType::Train,
            "NET" => NepType::Net,
            "GOV" => NepType::Gov,
            "EMERG" => NepType::Emerg,
            _ => return None,
        })
    }
}

impl fmt::Display for NepType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One parameter change, applied with compare-and-set: it takes effect only
/// if the parameter still holds `expected_old`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterChange {
    pub key: String,
    pub expected_old: ParamValue,
    pub new: ParamValue,
}

/// The "Economic Parity" analysis every NEP must carry. Multipliers and the
/// percentage are fixed-point micro-units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EconomicImpact {
    pub training_efficiency_multiplier: Micro,
    pub training_reward_multiplier: Micro,
    pub net_earnings_change_percent: Micro,
    pub summary: String,
}

/// How and when the change rolls out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradePath {
    pub grace_period_days: u32,
    pub backward_compatible: bool,
}

/// Everything an author writes. Frozen once submitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NepContent {
    pub title: String,
    pub nep_type: NepType,
    pub motivation: String,
    pub specification: String,
    /// Sorted by key once validated (keys are unique).
    pub parameter_changes: Vec<ParameterChange>,
    pub economic_impact: EconomicImpact,
    pub upgrade_path: UpgradePath,
}

/// Domain tag of the content hash.
const CONTENT_HASH_DOMAIN: &[u8] = b"neuroshard/nep-content/v1";

impl NepContent {
    /// SHA-256 of `"neuroshard/nep-content/v1" || postcard(content)`:
    /// identifies what is voted on and what a certificate attests.
    pub fn content_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(CONTENT_HASH_DOMAIN);
        // Encoding a plain struct of strings, integers and vectors into a Vec
        // cannot fail.
        let bytes = postcard::to_allocvec(self).unwrap_or_default();
        h.update(&bytes);
        h.finalize().into()
    }

    /// The keys this NEP changes, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.parameter_changes.iter().map(|c| c.key.as_str())
    }
}
