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
/// is refused. Accounts are never deleted; each is charged
/// `budget::ACCOUNT_CHARGE` (1 KiB) against the state budget, so this is the
/// most the largest budget holds.
pub const MAX_ACCOUNTS: usize = MAX_STATE_BYTES / 1024;
/// Genesis allocations: with every validator's identity account, a genesis
/// never starts above `MAX_ACCOUNTS`.
pub const MAX_GENESIS_ALLOCATIONS: usize = MAX_ACCOUNTS - MAX_VALIDATORS;

/// Entries verified in one ed25519 batch; larger batches are split.
pub const MAX_VERIFY_BATCH: usize = 1024;

/// Largest postcard encoding of a [`crate::NepContent`] that passes the
/// size rules above: every string at its limit (with its varint length),
/// every parameter change with a key and two text values at their limits,
/// the numbers at their longest varints. A unit test builds that content and
/// checks it encodes to exactly this bound or less.
pub const MAX_NEP_CONTENT_BYTES: usize = (MAX_TITLE_BYTES + 3)
    + 1 // nep_type
    + (MAX_MOTIVATION_BYTES + 3)
    + (MAX_SPEC_BYTES + 3)
    + 5 // number of parameter changes
    + MAX_PARAMETER_CHANGES * MAX_PARAMETER_CHANGE_BYTES
    + 3 * 10 // economic impact multipliers (i64 varints)
    + (MAX_IMPACT_SUMMARY_BYTES + 3)
    + 5 + 1; // upgrade path

/// Largest encoding of one parameter change: a key and two values.
pub const MAX_PARAMETER_CHANGE_BYTES: usize =
    (MAX_PARAMETER_KEY_BYTES + 1) + 2 * (1 + MAX_TEXT_VALUE_BYTES + 2);

/// Largest postcard encoding of a `SignedCommand` a validator admits and a
/// replica applies: the largest valid command (an `AmendDraft` with content at
/// [`MAX_NEP_CONTENT_BYTES`]: author 32, nonce and NEP id varints 10 each,
/// two variant tags, the signature 1 + 64) plus 4 KiB of margin, rounded to a
/// KiB. Every other bound that carries a command derives from it: the API's
/// request limit, forwarded batches, log entries.
pub const MAX_COMMAND_BYTES: usize =
    (MAX_NEP_CONTENT_BYTES + 32 + 10 + 10 + 2 + 65 + 4096).div_ceil(1024) * 1024;

/// Largest encoded log entry payload (a command, a tick or an issued
/// certificate) the node writes or reads.
pub const MAX_LOG_ENTRY_BYTES: usize = {
    let cert = MAX_CERTIFICATE_PAYLOAD_BYTES + MAX_CERTIFICATE_SHARES * 256 + 1024;
    if cert > MAX_COMMAND_BYTES {
        cert + 64
    } else {
        MAX_COMMAND_BYTES + 64
    }
};

/// Most client commands the leader puts in one log entry
/// (`Entry::Commands`); followers refuse a batch above it before Raft.
pub const MAX_COMMANDS_PER_ENTRY: usize = 1024;

/// Most bytes of commands (the sum of their postcard encodings) in one
/// batched entry: what fits a log entry of [`MAX_LOG_ENTRY_BYTES`] beside
/// the variant tag and the length varint. A single command always fits.
pub const MAX_BATCH_BYTES: usize = MAX_LOG_ENTRY_BYTES - 16;

/// The hard ceiling of the state budget (`gov.state_budget_bytes` may only be
/// set at or below it): the most bytes the rules let the state charge for
/// (see `GovernanceState::state_bytes`).
pub const MAX_STATE_BYTES: usize = 256 * 1024 * 1024;

/// What the encoding of a state may hold beyond the bytes it charges to its
/// budget: the fixed fields' varints growing, the headers of its collections,
/// and the committee's own records (parameters, certificate records'
/// fixed parts). Checked after every apply in tests (`state_bytes` invariant).
pub const STATE_ENCODING_SLACK_BYTES: usize = 1024 * 1024;

/// The one bound every snapshot encoder and decoder of the project uses: a
/// state at its largest budget plus the slack, plus the snapshot header.
pub const MAX_SNAPSHOT_BYTES: usize = MAX_STATE_BYTES + STATE_ENCODING_SLACK_BYTES + 4096;

/// Largest page a list query returns.
pub const MAX_QUERY_PAGE: usize = 1000;

/// Largest certificate payload the state machine produces or accepts.
pub const MAX_CERTIFICATE_PAYLOAD_BYTES: usize = 256 * 1024;
/// Largest signature share list accepted in a `CertificateIssued` entry.
pub const MAX_CERTIFICATE_SHARES: usize = MAX_VALIDATORS;

// The bounds agree: a command fits a log entry, a snapshot at the largest
// budget fits the one snapshot bound every encoder and decoder uses.
const _: () = assert!(MAX_COMMAND_BYTES < MAX_LOG_ENTRY_BYTES);
const _: () = assert!(MAX_COMMAND_BYTES <= MAX_BATCH_BYTES);
const _: () = assert!(MAX_STATE_BYTES + STATE_ENCODING_SLACK_BYTES < MAX_SNAPSHOT_BYTES);
