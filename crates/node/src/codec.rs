//! The byte encodings this crate stores and sends, in one place, each with
//! its size bound checked before decoding.

use serde::{de::DeserializeOwned, Serialize};

/// Largest single encoded value this crate decodes from disk or a peer
/// (a log entry, a command, a membership record).
pub const MAX_ENCODED_VALUE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("{what}: {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("{what}: cannot decode: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: postcard::Error,
    },
    #[error("{what}: cannot encode: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: postcard::Error,
    },
}

/// postcard: compact, deterministic, and what the governance crate hashes.
pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_stdvec(value).map_err(|source| CodecError::Encode { what, source })
}

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    decode_bounded(what, bytes, MAX_ENCODED_VALUE_BYTES)
}

pub fn decode_bounded<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    limit: usize,
) -> Result<T, CodecError> {
    if bytes.len() > limit {
        return Err(CodecError::TooLarge {
            what,
            len: bytes.len(),
            limit,
        });
    }
    postcard::from_bytes(bytes).map_err(|source| CodecError::Decode { what, source })
}
