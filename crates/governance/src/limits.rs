//! Every size and count the rules accept is bounded here, so that no command
//! can make a replica's state or work grow without limit.

/// Longest NEP title.
pub const MAX_TITLE_BYTES: usize = 200;
/// Longest motivation text.
pub const MAX_MOTIVATION_BYTES: usize = 16 * 1024;
/// Longest specification text.
pub const MAX_SPEC_BYTES: usize = 64 * 1024;
/// Longest free-text summary of the economic impact.
pub const MAX_IMPACT_SUMMARY_BYTES: usize = 8 * 1024;
/// Most parameter changes one NEP may carry.
pub const MAX_PARAMETER_CHANGES: usize = 32;
/// Longest parameter key.
pub const MAX_PARAMETER_KEY_BYTES: usize = 64;
/// Longest string parameter value.
pub const MAX_TEXT_VALUE_BYTES: usize = 1024;
/// Longest chain id.
pub const MAX_CHAIN_ID_BYTES: usize = 64;
/// Longest proposal file accepted by the TOML parser.
pub const MAX_PROPOSAL_FILE_BYTES: usize = 128 * 1024;
/// Longest genesis file accepted by the TOML parser.
pub const MAX_GENESIS_FILE_BYTES: usize = 16 * 1024 * 1024;

/// Drafts plus proposals in REVIEW that one author may hold at once.
pub const MAX_OPEN_DRAFTS_PER_AUTHOR: usize = 8;
/// Proposals not yet in a final stage, over all authors.
pub const MAX_OPEN_PROPOSALS: usize = 4096;
/// Emergency NEPs awaiting committee approval at once.
pub const MAX_PENDING_EMERGENCIES: usize = 16;

/// Outcomes remembered per account so an identical retry gets its original
/// answer; older nonces are refused as replays.
pub const MAX_REMEMBERED_OUTCOMES: usize = 4;

/// Validators in a committee.
pub const MAX_VALIDATORS: usize = 256;
/// Accounts the state holds at once; a transfer that would create one more
/// is refused. Accounts are never deleted, so without this bound transfers
/// of one base unit to fresh keys would grow every replica's memory and
/// snapshot without limit. An account encodes to at most ~550 bytes (key,
/// amounts, nonce, four remembered outcomes), so all of them take at most
/// ~275 MB of a snapshot: inside the node's 512 MiB snapshot bound with room
/// for proposals and ballots.
pub const MAX_ACCOUNTS: usize = 500_000;
/// Genesis allocations: with every validator's identity account, a genesis
/// never starts above `MAX_ACCOUNTS`.
pub const MAX_GENESIS_ALLOCATIONS: usize = MAX_ACCOUNTS - MAX_VALIDATORS;

/// Entries verified in one ed25519 batch; larger batches are split.
pub const MAX_VERIFY_BATCH: usize = 1024;

/// Largest snapshot `from_snapshot_bytes` will decode.
pub const MAX_SNAPSHOT_BYTES: usize = 2 * 1024 * 1024 * 1024;

/// Largest page a list query returns.
pub const MAX_QUERY_PAGE: usize = 1000;

/// Largest certificate payload the state machine produces or accepts.
pub const MAX_CERTIFICATE_PAYLOAD_BYTES: usize = 256 * 1024;
/// Largest signature share list accepted in a `CertificateIssued` entry.
pub const MAX_CERTIFICATE_SHARES: usize = MAX_VALIDATORS;
