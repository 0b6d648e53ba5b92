//! Format versions of what a validator stores and sends.
//!
//! Every log entry payload and every snapshot starts with its format
//! version. The policy (docs/operations.md, "Format versions"):
//!
//! * a binary writes only its own version, and reads its own version and
//!   every older one it lists in `READABLE_*`;
//! * a payload of any other version (newer, or retired) is refused with an
//!   error naming both versions; a replica never skips or guesses an entry,
//!   because a skipped entry would make it diverge. The validator stops
//!   applying and the operator upgrades the binary;
//! * a format change ships in a binary that can read the previous version,
//!   and starts writing the new one only once every validator runs it (the
//!   protocol version a NEP activates says when).

/// Version of a log entry payload (`neuroshard_governance::Entry`, postcard).
/// Version 1 was the unversioned encoding before deposits and the state
/// budget; it is not readable. Version 3 added `Entry::Commands` (batched
/// client commands, issue 12); a version-2 payload decodes unchanged as
/// version 3 (the new variant is last), so both are read.
pub const ENTRY_FORMAT_VERSION: u8 = 3;
/// Entry versions this binary reads.
pub const READABLE_ENTRY_FORMATS: &[u8] = &[2, 3];

/// Version of a snapshot of the governance state (after its magic).
///
/// Version 3 (issue 12) records a command's position (log index and offset
/// in its entry) in receipts and remembered outcomes; version-2 snapshots
/// are not readable (no committee
/// ran them in production: a validator of an older binary catches up from
/// the log or from a version-3 snapshot).
pub const SNAPSHOT_FORMAT_VERSION: u8 = 3;
/// Snapshot versions this binary reads.
pub const READABLE_SNAPSHOT_FORMATS: &[u8] = &[3];

/// Version of the definition of the state hash
/// (`GovernanceState::state_hash`; ARCHITECTURE.md, "The state hash"), also
/// named by its domain tag `neuroshard/state/v2`. Version 1 was SHA-256 over
/// the postcard encoding of the whole state; version 2 is a hash of the
/// header and of one Merkle root per collection, maintained as entries are
/// applied. Snapshot bytes are the same under both (the caches behind the
/// hash are not encoded), so `SNAPSHOT_FORMAT_VERSION` did not change; what
/// changed is the value replicas compare and, later, sign in checkpoint
/// certificates: a new definition is a new version and a new tag.
pub const STATE_HASH_VERSION: u8 = 2;

/// Why a versioned payload was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("{what} is empty: no format version")]
    Empty { what: &'static str },
    #[error("{what} has format version {found}; this binary reads {readable:?} (writes {writes}): upgrade the binary")]
    Unsupported {
        what: &'static str,
        found: u8,
        readable: &'static [u8],
        writes: u8,
    },
}

/// Splits the version byte off a log entry payload, refusing versions this
/// binary cannot read.
pub fn entry_body<'b>(what: &'static str, bytes: &'b [u8]) -> Result<&'b [u8], FormatError> {
    let (&v, body) = bytes.split_first().ok_or(FormatError::Empty { what })?;
    if READABLE_ENTRY_FORMATS.contains(&v) {
        Ok(body)
    } else {
        Err(FormatError::Unsupported {
            what,
            found: v,
            readable: READABLE_ENTRY_FORMATS,
            writes: ENTRY_FORMAT_VERSION,
        })
    }
}
