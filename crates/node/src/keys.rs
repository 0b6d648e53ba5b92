//! A validator's secret key files, checked at startup against the genesis:
//! the ed25519 identity key must be the one genesis lists for this
//! validator, and the BLS key share must match this validator's public key
//! share in the committee's public key set.

use std::path::Path;

use neuroshard_certificate::{SecretKeyShare, ShareIndex};
use neuroshard_governance::{AccountId, Genesis};

use crate::types::NodeId;

/// Largest key file read (hex text).
pub const MAX_KEY_FILE_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("validator {node} is not in the genesis validator list ({count} validators)")]
    NotAValidator { node: NodeId, count: usize },
    #[error("{path}: identity key {found} is not validator {node}'s genesis identity {expected}")]
    WrongIdentity {
        path: String,
        node: NodeId,
        found: String,
        expected: String,
    },
    #[error(
        "{path}: BLS key share does not match validator {node}'s public key share in the genesis"
    )]
    WrongShare { path: String, node: NodeId },
}

/// Reads a hex key file, refusing files others can read (unix).
pub fn read_hex_secret(path: &Path) -> Result<Vec<u8>, KeyError> {
    let shown = path.display().to_string();
    let err = |message: String| KeyError::File {
        path: shown.clone(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(err(format!(
            "{} bytes, more than MAX_KEY_FILE_BYTES = {MAX_KEY_FILE_BYTES}",
            meta.len()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "mode {mode:o} lets others read a secret key; chmod 600 it"
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    hex::decode(text.trim()).map_err(|e| err(format!("not hex: {e}")))
}

/// The validator's keys, verified against the genesis.
pub struct ValidatorKeys {
    pub identity: ed25519_dalek::SigningKey,
    pub bls_share: SecretKeyShare,
}

pub fn load_validator_keys(
    node: NodeId,
    genesis: &Genesis,
    identity: &Path,
    bls_share: &Path,
) -> Result<ValidatorKeys, KeyError> {
    let validator = genesis
        .validators
        .iter()
        .find(|v| u64::from(v.index) == node)
        .ok_or(KeyError::NotAValidator {
            node,
            count: genesis.validators.len(),
        })?;
    let id_bytes: [u8; 32] = read_hex_secret(identity)?
        .try_into()
        .map_err(|_| KeyError::File {
            path: identity.display().to_string(),
            message: "an ed25519 secret key is 32 bytes".into(),
        })?;
    let key = ed25519_dalek::SigningKey::from_bytes(&id_bytes);
    let found = AccountId(key.verifying_key().to_bytes());
    if found != validator.identity {
        return Err(KeyError::WrongIdentity {
            path: identity.display().to_string(),
            node,
            found: hex::encode(found.0),
            expected: hex::encode(validator.identity.0),
        });
    }
    let share_err = |message: String| KeyError::File {
        path: bls_share.display().to_string(),
        message,
    };
    let scheme = genesis.committee.info.scheme.scheme();
    let share = scheme
        .secret_key_share_from_bytes(&read_hex_secret(bls_share)?)
        .map_err(|e| share_err(e.to_string()))?;
    if let Some(pks) = &genesis.committee.public_key_set {
        let set = scheme
            .public_key_set_from_bytes(pks)
            .map_err(|e| share_err(e.to_string()))?;
        let index = u32::try_from(node).map_err(|e| share_err(e.to_string()))?;
        let expected = set
            .public_key_share_bytes(ShareIndex(index))
            .map_err(|e| share_err(e.to_string()))?;
        if expected != share.public_key_share_bytes() {
            return Err(KeyError::WrongShare {
                path: bls_share.display().to_string(),
                node,
            });
        }
    }
    Ok(ValidatorKeys {
        identity: key,
        bls_share: share,
    })
}
