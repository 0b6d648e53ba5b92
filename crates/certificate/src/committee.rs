//! Committee info (DESIGN §5, §8) and its committee hash.
//!
//! The committee info is what a light node pins: everything public about the
//! committee that signs certificates. Its **committee hash** is
//! `SHA-256(canonical JSON)`, where the canonical JSON is the object with
//! exactly the eight fields below, keys sorted by byte order, no whitespace,
//! integers in decimal and byte strings as lowercase hex:
//!
//! ```text
//! {"chain_id":"…","epoch":1,"genesis_time_ms":…,"group_public_key":"<96 hex>",
//!  "n":4,"scheme":"bls-threshold-g2-rfc9380","t":2,"validator_set_hash":"<64 hex>"}
//! ```
//!
//! (shown wrapped; the real bytes are one line). This is what Python's
//! `json.dumps(info, sort_keys=True, separators=(",", ":"))` prints for the
//! same eight fields, and it is RFC 8785 (JCS) canonical JSON because every
//! string is restricted to printable ASCII that needs no escaping
//! ([`MAX_CHAIN_ID_BYTES`], [`is_valid_chain_id`]). The encoder below writes
//! the bytes field by field rather than through a map, so no serde feature
//! elsewhere in a build (for example `preserve_order`) can change them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;
use crate::scheme::{GroupPublicKey, SchemeError, SchemeId, GROUP_PUBLIC_KEY_BYTES};

/// Longest chain id, in bytes.
pub const MAX_CHAIN_ID_BYTES: usize = 64;
/// Largest committee this crate accepts (validators, `n`).
pub const MAX_COMMITTEE_SIZE: u32 = 1024;
/// Longest committee info JSON document accepted from a file or a peer.
pub const MAX_COMMITTEE_INFO_JSON_BYTES: usize = 4096;

/// A chain id is 1..=64 bytes of `[A-Za-z0-9._-]`: no character JSON would
/// escape, so the canonical encoding is the same in every language.
pub fn is_valid_chain_id(chain_id: &str) -> bool {
    !chain_id.is_empty()
        && chain_id.len() <= MAX_CHAIN_ID_BYTES
        && chain_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why a committee info is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitteeError {
    #[error("committee info JSON is {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("committee info is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("chain id {chain_id:?} must be 1..={max} characters of [A-Za-z0-9._-]", max = MAX_CHAIN_ID_BYTES)]
    BadChainId { chain_id: String },
    #[error("threshold t = {t} must be below n = {n} (t + 1 of n validators sign)")]
    ThresholdNotBelowSize { t: u32, n: u32 },
    #[error("committee size n = {n} must be between 1 and {max}")]
    BadSize { n: u32, max: u32 },
    #[error("group public key is not a valid key of scheme {scheme}: {source}")]
    BadGroupKey {
        scheme: SchemeId,
        source: SchemeError,
    },
}

/// Public information about the committee that signs certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitteeInfo {
    pub chain_id: String,
    pub scheme: SchemeId,
    /// Compressed G1 point of the group public key (hex in JSON).
    #[serde(with = "hex::serde")]
    pub group_public_key: [u8; GROUP_PUBLIC_KEY_BYTES],
    /// Threshold: `t + 1` signature shares make a certificate.
    pub t: u32,
    /// Number of validators.
    pub n: u32,
    /// Committee epoch; the envelope's `committee_epoch` must name it.
    pub epoch: u64,
    pub genesis_time_ms: u64,
    /// SHA-256 over the validator set (defined by the keygen ceremony; opaque here).
    #[serde(with = "hex::serde")]
    pub validator_set_hash: Hash,
}

impl CommitteeInfo {
    /// Checks the rules of a committee info a light node may pin: chain id
    /// alphabet, `t < n <= MAX_COMMITTEE_SIZE`, and a group key that parses as
    /// a key of the named scheme.
    pub fn validate(&self) -> Result<(), CommitteeError> {
        self.group_key().map(|_| ())
    }

    /// Validates and returns the parsed group public key.
    pub fn group_key(&self) -> Result<GroupPublicKey, CommitteeError> {
        if !is_valid_chain_id(&self.chain_id) {
            return Err(CommitteeError::BadChainId {
                chain_id: self.chain_id.clone(),
            });
        }
        if self.n == 0 || self.n > MAX_COMMITTEE_SIZE {
            return Err(CommitteeError::BadSize {
                n: self.n,
                max: MAX_COMMITTEE_SIZE,
            });
        }
        if self.t >= self.n {
            return Err(CommitteeError::ThresholdNotBelowSize {
                t: self.t,
                n: self.n,
            });
        }
        GroupPublicKey::from_bytes(self.scheme, &self.group_public_key).map_err(|source| {
            CommitteeError::BadGroupKey {
                scheme: self.scheme,
                source,
            }
        })
    }

    /// The canonical JSON bytes the committee hash is taken over (see the module docs).
    pub fn canonical_json(&self) -> Vec<u8> {
        // Keys in byte order. Strings are written raw: `validate` guarantees
        // the chain id needs no escaping; the scheme id and hex never do.
        format!(
            concat!(
                "{{\"chain_id\":\"{}\",\"epoch\":{},\"genesis_time_ms\":{},",
                "\"group_public_key\":\"{}\",\"n\":{},\"scheme\":\"{}\",\"t\":{},",
                "\"validator_set_hash\":\"{}\"}}"
            ),
            self.chain_id,
            self.epoch,
            self.genesis_time_ms,
            hex::encode(self.group_public_key),
            self.n,
            self.scheme.as_str(),
            self.t,
            hex::encode(self.validator_set_hash),
        )
        .into_bytes()
    }

    /// SHA-256 of [`Self::canonical_json`]: what every certificate payload names.
    pub fn committee_hash(&self) -> Hash {
        Sha256::digest(self.canonical_json()).into()
    }

    /// Parses and validates a committee info JSON document (a pinned file).
    pub fn from_json(bytes: &[u8]) -> Result<Self, CommitteeError> {
        if bytes.len() > MAX_COMMITTEE_INFO_JSON_BYTES {
            return Err(CommitteeError::TooLarge {
                len: bytes.len(),
                max: MAX_COMMITTEE_INFO_JSON_BYTES,
            });
        }
        let info: Self =
            serde_json::from_slice(bytes).map_err(|e| CommitteeError::Json(e.to_string()))?;
        info.validate()?;
        Ok(info)
    }

    /// Pretty JSON for files (any key order parses; the hash uses the canonical form).
    pub fn to_json_pretty(&self) -> String {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> CommitteeInfo {
        let keys = SchemeId::G2Rfc9380.scheme().deal(2, 4, &[1; 32]).unwrap();
        CommitteeInfo {
            chain_id: "neuroshard-test".into(),
            scheme: SchemeId::G2Rfc9380,
            group_public_key: keys.public_key_set.group_public_key().to_bytes(),
            t: 2,
            n: 4,
            epoch: 1,
            genesis_time_ms: 1_700_000_000_000,
            validator_set_hash: [7; 32],
        }
    }

    #[test]
    fn canonical_json_is_sorted_compact_json_of_the_eight_fields() {
        let info = info();
        let canonical = info.canonical_json();
        // Reparse: the canonical bytes are the same document.
        let back: CommitteeInfo = serde_json::from_slice(&canonical).unwrap();
        assert_eq!(back, info);
        // Sorted keys, compact separators: re-serialising a sorted map gives the same bytes.
        let value: std::collections::BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&canonical).unwrap();
        assert_eq!(value.len(), 8);
        let mut again = String::from("{");
        for (i, (k, v)) in value.iter().enumerate() {
            if i > 0 {
                again.push(',');
            }
            again.push_str(&format!("{}:{}", serde_json::to_string(k).unwrap(), v));
        }
        again.push('}');
        assert_eq!(again.as_bytes(), canonical.as_slice());
        assert_eq!(
            info.committee_hash(),
            <[u8; 32]>::from(Sha256::digest(&canonical))
        );
    }

    #[test]
    fn pretty_json_round_trips_and_hash_ignores_layout() {
        let info = info();
        let parsed = CommitteeInfo::from_json(info.to_json_pretty().as_bytes()).unwrap();
        assert_eq!(parsed.committee_hash(), info.committee_hash());
        let mut other = info.clone();
        other.epoch += 1;
        assert_ne!(other.committee_hash(), info.committee_hash());
    }

    #[test]
    fn invalid_committees_are_refused() {
        let mut bad = info();
        bad.chain_id = "has space".into();
        assert!(matches!(
            bad.validate(),
            Err(CommitteeError::BadChainId { .. })
        ));
        let mut bad = info();
        bad.t = 4;
        assert_eq!(
            bad.validate(),
            Err(CommitteeError::ThresholdNotBelowSize { t: 4, n: 4 })
        );
        let mut bad = info();
        bad.n = MAX_COMMITTEE_SIZE + 1;
        assert!(matches!(
            bad.validate(),
            Err(CommitteeError::BadSize { .. })
        ));
        let mut bad = info();
        bad.group_public_key[5] ^= 1;
        assert!(matches!(
            bad.validate(),
            Err(CommitteeError::BadGroupKey { .. })
        ));
        let mut json = serde_json::to_value(info()).unwrap();
        json["extra"] = 1.into();
        assert!(matches!(
            CommitteeInfo::from_json(json.to_string().as_bytes()),
            Err(CommitteeError::Json(_))
        ));
        let huge = vec![b' '; MAX_COMMITTEE_INFO_JSON_BYTES + 1];
        assert!(matches!(
            CommitteeInfo::from_json(&huge),
            Err(CommitteeError::TooLarge { .. })
        ));
    }
}
