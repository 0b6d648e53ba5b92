//! Account keys: an ed25519 secret key as 64 hex digits, in a file only its
//! owner can read (0600, checked when read) or in the `NEUROSHARD_KEY`
//! environment variable.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use neuroshard_governance::AccountId;
use neuroshard_node::keys::read_hex_secret;

use crate::secret::write_secret;

/// Environment variable holding a secret key in hex (instead of a file).
pub const KEY_ENV: &str = "NEUROSHARD_KEY";

/// Which key signs, as the CLI flags give it.
#[derive(Clone, Debug, clap::Args)]
pub struct KeyArgs {
    /// File with the signing key (hex, mode 0600); or set NEUROSHARD_KEY
    /// to the hex key itself.
    #[arg(long, env = "NEUROSHARD_KEY_FILE", global = true)]
    pub key: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "no signing key: pass --key FILE (or NEUROSHARD_KEY_FILE), or set {KEY_ENV} to the hex key"
    )]
    Missing,
    #[error("{0}")]
    Read(#[from] neuroshard_node::keys::KeyError),
    #[error("{source_name}: an ed25519 secret key is 32 bytes (64 hex digits)")]
    Length { source_name: String },
    #[error("{KEY_ENV} is not hex: {0}")]
    EnvHex(String),
    #[error("{path} already exists; refusing to overwrite a key")]
    Exists { path: String },
    #[error("{path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn from_bytes(bytes: Vec<u8>, source_name: &str) -> Result<SigningKey, KeyFileError> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyFileError::Length {
        source_name: source_name.to_owned(),
    })?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Reads a key file (refusing files others can read).
pub fn read_key_file(path: &Path) -> Result<SigningKey, KeyFileError> {
    from_bytes(read_hex_secret(path)?, &path.display().to_string())
}

impl KeyArgs {
    /// The key from `--key`, else from `NEUROSHARD_KEY`.
    pub fn load(&self) -> Result<SigningKey, KeyFileError> {
        if let Some(path) = &self.key {
            return read_key_file(path);
        }
        match std::env::var(KEY_ENV) {
            Ok(text) => from_bytes(
                hex::decode(text.trim()).map_err(|e| KeyFileError::EnvHex(e.to_string()))?,
                KEY_ENV,
            ),
            Err(_) => Err(KeyFileError::Missing),
        }
    }
}

/// Creates a new key in `path` (mode 0600; an existing file is refused).
pub fn create_key_file(path: &Path) -> Result<(SigningKey, AccountId), KeyFileError> {
    if path.exists() {
        return Err(KeyFileError::Exists {
            path: path.display().to_string(),
        });
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    write_secret(path, hex::encode(key.to_bytes()).as_bytes()).map_err(|source| {
        KeyFileError::Write {
            path: path.display().to_string(),
            source,
        }
    })?;
    let account = AccountId(key.verifying_key().to_bytes());
    Ok((key, account))
}

pub fn account_of(key: &SigningKey) -> AccountId {
    AccountId(key.verifying_key().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_reads_back_and_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alice.key");
        let (key, account) = create_key_file(&path).expect("created");
        assert_eq!(account_of(&read_key_file(&path).expect("read")), account);
        assert_eq!(
            read_key_file(&path).expect("read").to_bytes(),
            key.to_bytes()
        );
        assert!(matches!(
            create_key_file(&path),
            Err(KeyFileError::Exists { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(matches!(read_key_file(&path), Err(KeyFileError::Read(_))));
        }
    }
}
