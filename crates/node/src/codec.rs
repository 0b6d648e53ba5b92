//! The byte encodings this crate stores and sends, in one place, each with
//! its size bound checked before decoding, and the same bound checked when
//! encoding: an encoder never writes a value its own decoder would refuse
//! (issue 9: a 4 194 305-byte log entry was written, then refused on every
//! read, and stopped each leader in turn).
//!
//! Governance log entries are versioned: [`encode_entry`] prefixes
//! `format::ENTRY_FORMAT_VERSION` and [`decode_entry`] refuses any version
//! this binary cannot read, naming both (never skipping the entry).

use serde::{de::DeserializeOwned, Serialize};

use neuroshard_governance::format::{self, FormatError};
use neuroshard_governance::limits::MAX_LOG_ENTRY_BYTES;

/// Largest single encoded value this crate encodes or decodes for disk or a
/// peer (a log entry, a command, a membership record). Snapshot images have
/// their own bound (`store::machine::MAX_SNAPSHOT_IMAGE_BYTES`).
pub const MAX_ENCODED_VALUE_BYTES: usize = 4 * 1024 * 1024;

/// What a stored or sent log record adds around a governance entry payload
/// of at most `MAX_LOG_ENTRY_BYTES`: the format version byte, openraft's log
/// id (term, node id and index: three varints of at most 10 bytes each),
/// the payload variant tag, and margin.
pub const RAFT_ENTRY_OVERHEAD_BYTES: usize = 1 + 3 * 10 + 1 + 32;

/// The largest valid governance entry, inside openraft's entry, is within
/// what this crate encodes and decodes: the state machine's bound and the
/// codec's bound cannot disagree.
const _: () = assert!(MAX_LOG_ENTRY_BYTES + RAFT_ENTRY_OVERHEAD_BYTES <= MAX_ENCODED_VALUE_BYTES);

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
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// postcard: compact, deterministic, and what the governance crate hashes.
/// Refuses (instead of returning) an encoding above
/// [`MAX_ENCODED_VALUE_BYTES`], which [`decode`] would refuse.
pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    encode_bounded(what, value, MAX_ENCODED_VALUE_BYTES)
}

/// [`encode`] with the bound of the matching [`decode_bounded`].
pub fn encode_bounded<T: Serialize>(
    what: &'static str,
    value: &T,
    limit: usize,
) -> Result<Vec<u8>, CodecError> {
    let bytes = postcard::to_stdvec(value).map_err(|source| CodecError::Encode { what, source })?;
    check_len(what, bytes.len(), limit)?;
    Ok(bytes)
}

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    decode_bounded(what, bytes, MAX_ENCODED_VALUE_BYTES)
}

pub fn decode_bounded<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    limit: usize,
) -> Result<T, CodecError> {
    check_len(what, bytes.len(), limit)?;
    postcard::from_bytes(bytes).map_err(|source| CodecError::Decode { what, source })
}

fn check_len(what: &'static str, len: usize, limit: usize) -> Result<(), CodecError> {
    if len > limit {
        return Err(CodecError::TooLarge { what, len, limit });
    }
    Ok(())
}

/// A log entry record: `ENTRY_FORMAT_VERSION` then postcard, at most
/// [`MAX_ENCODED_VALUE_BYTES`] in all. Used for the Raft log on disk (the
/// whole openraft entry), the applied entries of the state machine and the
/// entry payloads sent to peers.
pub fn encode_entry<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![format::ENTRY_FORMAT_VERSION];
    out = postcard::to_extend(value, out).map_err(|source| CodecError::Encode { what, source })?;
    check_len(what, out.len(), MAX_ENCODED_VALUE_BYTES)?;
    Ok(out)
}

/// Reads a record written by [`encode_entry`] (or by an older binary whose
/// version this one lists as readable). Any other version is refused with
/// an error naming it and the versions this binary reads.
pub fn decode_entry<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, CodecError> {
    check_len(what, bytes.len(), MAX_ENCODED_VALUE_BYTES)?;
    let body = format::entry_body(what, bytes)?;
    postcard::from_bytes(body).map_err(|source| CodecError::Decode { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_refuses_what_decode_would_refuse() {
        // One byte over the bound once encoded (a 4-byte length varint).
        let over = vec![7u8; MAX_ENCODED_VALUE_BYTES - 4 + 1];
        let err = encode("test value", &over).expect_err("over the bound");
        assert!(
            matches!(err, CodecError::TooLarge { len, limit, .. }
                if len == MAX_ENCODED_VALUE_BYTES + 1 && limit == MAX_ENCODED_VALUE_BYTES),
            "{err}"
        );
        // Exactly at the bound: written, and read back.
        let at = vec![7u8; MAX_ENCODED_VALUE_BYTES - 4];
        let bytes = encode("test value", &at).expect("at the bound");
        assert_eq!(bytes.len(), MAX_ENCODED_VALUE_BYTES);
        assert_eq!(
            decode::<Vec<u8>>("test value", &bytes).expect("decodes"),
            at
        );

        let err = encode_bounded("small", &vec![0u8; 10], 10).expect_err("11 > 10");
        assert!(
            err.to_string().contains("11 bytes exceeds the limit of 10"),
            "{err}"
        );
        assert_eq!(
            encode_bounded("small", &vec![0u8; 9], 10)
                .expect("10")
                .len(),
            10
        );
    }

    #[test]
    fn entries_carry_their_format_version() {
        use neuroshard_governance::Entry;
        let entry = Entry::Tick { now_ms: 5 };
        let bytes = encode_entry("log entry", &entry).expect("encodes");
        assert_eq!(bytes[0], format::ENTRY_FORMAT_VERSION);
        assert_eq!(
            decode_entry::<Entry>("log entry", &bytes).expect("decodes"),
            entry
        );
        // The unversioned encoding (or any unknown version) is refused, not
        // misread, and the error names both versions.
        let mut future = bytes.clone();
        future[0] = format::ENTRY_FORMAT_VERSION + 1;
        let err = decode_entry::<Entry>("log entry", &future).expect_err("unknown version");
        let text = err.to_string();
        assert!(matches!(err, CodecError::Format(_)), "{text}");
        assert!(
            text.contains(&format!(
                "format version {}",
                format::ENTRY_FORMAT_VERSION + 1
            )) && text.contains(&format!("writes {}", format::ENTRY_FORMAT_VERSION)),
            "{text}"
        );
        let err = decode_entry::<Entry>("log entry", &[]).expect_err("empty");
        assert!(err.to_string().contains("no format version"), "{err}");
        // An over-long record is refused before decoding, like any value.
        let huge = vec![format::ENTRY_FORMAT_VERSION; MAX_ENCODED_VALUE_BYTES + 1];
        assert!(matches!(
            decode_entry::<Entry>("log entry", &huge),
            Err(CodecError::TooLarge { .. })
        ));
    }
}
