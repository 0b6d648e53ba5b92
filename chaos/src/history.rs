//! The recorded history of a chaos run: one JSON object per line
//! (docs/chaos.md describes every field).
//!
//! Every harness — the in-process model, the turmoil simulation, the
//! real-process runner — writes the same events, so one set of invariant
//! checkers judges them all. A history is append-only and written while the
//! run happens: a run that dies half-way still leaves every line it wrote.

use neuroshard_certificate::{CommitteeInfo, Envelope};
use neuroshard_governance::certificate::CertificateKind;
use neuroshard_governance::{AccountId, NepId, Stage, VoteChoice};
use serde::{Deserialize, Serialize};

mod reader;
mod recorder;

pub use reader::{HistoryError, HistoryReader, MAX_HISTORY_EVENTS, MAX_LINE_BYTES};
pub use recorder::Recorder;

/// Version of the line format; a reader refuses any other.
pub const HISTORY_FORMAT: u32 = 1;

/// One event of a history; the `"type"` field names the variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// First line: what ran and against which committee.
    Header(Header),
    /// A client sends (or re-sends) a command.
    Invoke(Invoke),
    /// What the client learned about one attempt.
    Result(OpResult),
    /// A replica reports its state after applying a log index.
    Applied(Applied),
    /// A certificate as issued, with every replica's own payload bytes.
    Certificate(CertificateSeen),
    /// A replica's view of a NEP at the end of the run.
    Final(Final),
    /// A fault is injected.
    Fault(Fault),
    /// A fault is removed.
    Heal(Heal),
}

impl Event {
    /// The harness time of the event (Unix milliseconds on the harness clock).
    pub fn time_ms(&self) -> u64 {
        match self {
            Event::Header(e) => e.started_ms,
            Event::Invoke(e) => e.time_ms,
            Event::Result(e) => e.time_ms,
            Event::Applied(e) => e.time_ms,
            Event::Certificate(e) => e.time_ms,
            Event::Final(e) => e.time_ms,
            Event::Fault(e) => e.time_ms,
            Event::Heal(e) => e.time_ms,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// [`HISTORY_FORMAT`].
    pub format: u32,
    /// Which harness wrote it: `model`, `simulation`, `processes`, or a test name.
    pub harness: String,
    /// The seed that reproduces the run, if the harness is deterministic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub chain_id: String,
    /// The committee every certificate must verify against.
    pub committee: CommitteeInfo,
    /// Number of replicas (validators) in the run.
    pub replicas: u32,
    /// Liveness: once the last fault is healed (and the vote's deadline has
    /// passed), every NEP must be settled and every decided certificate
    /// issued within this many milliseconds.
    pub liveness_bound_ms: u64,
    pub started_ms: u64,
}

/// What a command asks for, enough to judge votes without the signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSummary {
    /// `Command::name()`: `vote`, `stake`, `create-draft`, `submit`, ...
    pub kind: String,
    pub account: AccountId,
    pub nonce: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nep: Option<NepId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<VoteChoice>,
}

impl CommandSummary {
    pub fn is_vote(&self) -> bool {
        self.kind == "vote"
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoke {
    pub time_ms: u64,
    pub client: u32,
    /// Unique per client; every retry of the same signed command keeps it.
    pub op: u64,
    /// 0 for the first send, then 1, 2, ... for identical retries.
    #[serde(default)]
    pub attempt: u32,
    pub command: CommandSummary,
}

/// What a client knows about an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Applied; the receipt is known.
    Ok,
    /// Refused by a rule; the rule name is known.
    Error,
    /// No answer before the client's timeout: it may or may not have been applied.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpResult {
    pub time_ms: u64,
    pub client: u32,
    pub op: u64,
    #[serde(default)]
    pub attempt: u32,
    pub outcome: OutcomeKind,
    /// `ok`: the receipt's log index (for an identical retry, the original
    /// entry's). `error`: where the refused entry was applied, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
    /// Committed (tick) time of the receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_ms: Option<u64>,
    /// Votes: the power the ballot was counted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<u64>,
    /// Errors: the stable rule name, e.g. `voting_closed` ([`crate::rule_name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// SHA-256 state hash, hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StateHash(#[serde(with = "hex::serde")] pub [u8; 32]);

impl std::fmt::Debug for StateHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateHash({})", hex::encode(self.0))
    }
}

impl std::fmt::Display for StateHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub time_ms: u64,
    pub replica: u32,
    /// The state hash is the one after applying this index.
    pub index: u64,
    pub state_hash: StateHash,
    /// What the entry at `index` was and what it did on this replica, when
    /// the harness can see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<EntrySummary>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Command,
    Tick,
    CertificateIssued,
}

/// One applied entry and its outcome on the reporting replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrySummary {
    pub kind: EntryKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandSummary>,
    /// Ticks: the proposed time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now_ms: Option<u64>,
    /// Certificates: the sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// `ok` or `error` (never `unknown`: the replica knows).
    pub outcome: OutcomeKind,
    /// `ok`: the receipt's log index; smaller than the entry's own index
    /// when the entry is an identical retry answered from memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Ticks: the stage changes this tick made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<TransitionSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionSummary {
    pub nep: NepId,
    pub from: Stage,
    pub to: Stage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<u64>,
}

/// A replica's own payload bytes for a certificate sequence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaPayload {
    pub replica: u32,
    #[serde(with = "hex::serde")]
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSeen {
    /// When the certificate was issued (its entry applied).
    pub time_ms: u64,
    pub sequence: u64,
    pub nep: NepId,
    pub kind: CertificateKind,
    /// The envelope exactly as issued (JSON form of the certificate crate).
    pub envelope: Envelope,
    /// Payload bytes each replica derived for this sequence from its own state.
    pub replica_payloads: Vec<ReplicaPayload>,
}

/// A counted ballot as a replica holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BallotRecord {
    pub account: AccountId,
    pub choice: VoteChoice,
    pub power: u64,
}

/// A vote's tally as a replica holds it. Powers are stake, and all stake
/// fits in the u64 supply, so u64 sums cannot overflow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallyRecord {
    pub yes: u64,
    pub no: u64,
    pub abstain: u64,
    pub total_power: u64,
    pub quorum_bps: u32,
    pub approval_bps: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Final {
    /// When this view was taken.
    pub time_ms: u64,
    pub replica: u32,
    pub nep: NepId,
    pub stage: Stage,
    /// EMERG NEPs (ACTIVE is not settled for them: ratification follows).
    #[serde(default)]
    pub emergency: bool,
    /// Harness time when this replica was first seen in a settled stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_ms: Option<u64>,
    /// The vote's deadline (committed time), if the NEP has a vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Log index of the tick that closed the vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing_index: Option<u64>,
    /// Counted ballots, in account order.
    #[serde(default)]
    pub ballots: Vec<BallotRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tally: Option<TallyRecord>,
    /// Sequences of the certificates decided about this NEP.
    #[serde(default)]
    pub certificates: Vec<u64>,
}

/// Settled: the NEP no longer waits on a vote or an approval window, so
/// liveness requires it to get here. (EMERG ACTIVE still has its
/// ratification vote open.)
pub fn is_settled(stage: Stage, emergency: bool) -> bool {
    match stage {
        Stage::Draft | Stage::Review | Stage::Voting | Stage::AwaitingApproval => false,
        Stage::Active => !emergency,
        Stage::Scheduled
        | Stage::Ratified
        | Stage::Revoked
        | Stage::Rejected
        | Stage::Withdrawn
        | Stage::Cancelled => true,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub time_ms: u64,
    /// Names this fault; its `heal` carries the same id.
    pub id: u32,
    /// e.g. `log_stall`, `replica_crash`, `partition`, `delay`, `clock_skew`.
    pub fault: String,
    /// Replicas affected.
    #[serde(default)]
    pub targets: Vec<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heal {
    pub time_ms: u64,
    pub id: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// A whole history in memory: the header plus every event in recording order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    pub header: Header,
    /// Every event after the header.
    pub events: Vec<Event>,
}
