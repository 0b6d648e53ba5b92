//! A NEP on the committee's record: its content plus where it is in the
//! lifecycle (DESIGN §4).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hashing::{digest_of, Cached, Hash, StateEntry};
use crate::nep::NepContent;
use crate::params::ParamValue;
use crate::tally::VoteBox;
use crate::types::{AccountId, Amount, NepId, ProtocolVersion, Timestamp};

/// Lifecycle stage.
///
/// ```text
/// DRAFT ─► REVIEW ─► VOTING ─► SCHEDULED ─► ACTIVE
///   │        │          └─► REJECTED          ▲
///   └─► WITHDRAWN ◄─┘                         │
/// EMERG: AWAITING_APPROVAL ─► SCHEDULED ─► ACTIVE ─► RATIFIED | REVOKED
///                  └─► REJECTED     └─► CANCELLED (normal NEPs, by an EMERG)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Stage {
    Draft,
    Review,
    Voting,
    AwaitingApproval,
    Scheduled,
    Active,
    Ratified,
    Revoked,
    Rejected,
    Withdrawn,
    Cancelled,
}

impl Stage {
    /// The transitions of the lifecycle diagram; nothing else is allowed.
    pub fn can_move_to(self, next: Stage) -> bool {
        use Stage::*;
        matches!(
            (self, next),
            (Draft, Review)
                | (Draft, Withdrawn)
                | (Review, Voting)
                | (Review, Withdrawn)
                | (Voting, Scheduled)
                | (Voting, Rejected)
                | (AwaitingApproval, Scheduled)
                | (AwaitingApproval, Rejected)
                | (Scheduled, Active)
                | (Scheduled, Cancelled)
                | (Active, Ratified)
                | (Active, Revoked)
        )
    }

    /// No further transition is possible (for EMERG, ACTIVE is not final:
    /// ratification follows).
    pub fn is_final(self, emergency: bool) -> bool {
        use Stage::*;
        match self {
            Ratified | Revoked | Rejected | Withdrawn | Cancelled => true,
            Active => !emergency,
            _ => false,
        }
    }

    pub fn name(self) -> &'static str {
        use Stage::*;
        match self {
            Draft => "DRAFT",
            Review => "REVIEW",
            Voting => "VOTING",
            AwaitingApproval => "AWAITING_APPROVAL",
            Scheduled => "SCHEDULED",
            Active => "ACTIVE",
            Ratified => "RATIFIED",
            Revoked => "REVOKED",
            Rejected => "REJECTED",
            Withdrawn => "WITHDRAWN",
            Cancelled => "CANCELLED",
        }
    }

    /// Parses the names above, case-insensitively.
    pub fn parse(s: &str) -> Option<Stage> {
        use Stage::*;
        let all = [
            Draft,
            Review,
            Voting,
            AwaitingApproval,
            Scheduled,
            Active,
            Ratified,
            Revoked,
            Rejected,
            Withdrawn,
            Cancelled,
        ];
        all.into_iter()
            .find(|st| st.name().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a NEP was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// Participation below `quorum_bps` of the snapshot power.
    NoQuorum,
    /// `yes` below `approval_bps` of `yes + no`, or no `yes` at all.
    NotApproved,
    /// Approved, but a key no longer holds `expected_old`, or is reserved by
    /// another scheduled change; `with` names that change if any.
    Conflict {
        key: String,
        with: Option<NepId>,
        expected_old: ParamValue,
        current: ParamValue,
    },
    /// An emergency NEP without a Byzantine quorum of approvals
    /// (`quorum::byzantine_quorum`) when its window closed.
    EmergencyWindowExpired { approvals: u32, threshold: u32 },
}

/// A NEP with its lifecycle record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: NepId,
    pub author: AccountId,
    pub content: NepContent,
    pub content_hash: [u8; 32],
    pub stage: Stage,
    pub created_ms: Timestamp,
    /// DRAFT → REVIEW (normal) or emergency submission.
    pub submitted_ms: Option<Timestamp>,
    /// When REVIEW ends (normal NEPs).
    pub review_ends_ms: Option<Timestamp>,
    /// The vote: the normal vote, or an EMERG NEP's ratification vote.
    pub vote: Option<VoteBox>,
    /// EMERG: validator indices that approved, and when the window closes.
    pub approvals: BTreeSet<u32>,
    pub window_ends_ms: Option<Timestamp>,
    /// When the deciding tick was applied.
    pub decided_ms: Option<Timestamp>,
    /// SCHEDULED: when it takes effect.
    pub activation_ms: Option<Timestamp>,
    /// The version its activation certificate assigned.
    pub version_after: Option<ProtocolVersion>,
    /// EMERG after activation: each changed key's value before it, restored
    /// on revocation.
    pub previous_values: Vec<(String, ParamValue)>,
    pub rejection: Option<RejectReason>,
    /// Sequences of the certificates issued about this NEP, in order.
    pub certificates: Vec<u64>,
    /// The draft deposit locked by this NEP (zero once refunded or burned,
    /// and for emergency NEPs).
    pub deposit: Amount,
    /// WITHDRAWN and REJECTED NEPs keep only their hash, title, type, stage,
    /// times and vote (tally and ballots): the content's texts and parameter
    /// changes are dropped.
    pub compacted: bool,
    /// Digest of every field but the vote (`StateEntry`), kept so a ballot
    /// does not re-hash the content; not serialized.
    #[serde(skip)]
    pub(crate) core_digest: Cached<Option<Hash>>,
}

const PROPOSAL_TAG: &[u8] = b"neuroshard/state/v2/proposal";
const PROPOSAL_CORE_TAG: &[u8] = b"neuroshard/state/v2/proposal-core";

impl Proposal {
    pub fn is_emergency(&self) -> bool {
        self.content.nep_type.is_emergency()
    }

    /// Moves to `next`, which must be allowed by the lifecycle diagram: a
    /// stage never moves backwards or sideways.
    pub(crate) fn set_stage(&mut self, next: Stage) {
        assert!(
            self.stage.can_move_to(next),
            "invariant: {} cannot move from {} to {}",
            self.id,
            self.stage,
            next
        );
        self.stage = next;
    }

    /// Digest of every field but the vote.
    fn core_digest(&self) -> Hash {
        // Every field: a new one must be added here (the compiler says so).
        let Proposal {
            id,
            author,
            content,
            content_hash,
            stage,
            created_ms,
            submitted_ms,
            review_ends_ms,
            vote: _,
            approvals,
            window_ends_ms,
            decided_ms,
            activation_ms,
            version_after,
            previous_values,
            rejection,
            certificates,
            deposit,
            compacted,
            core_digest: _,
        } = self;
        digest_of(
            PROPOSAL_CORE_TAG,
            &(
                (id, author, content, content_hash, stage, created_ms),
                (submitted_ms, review_ends_ms, approvals, window_ends_ms),
                (decided_ms, activation_ms, version_after, previous_values),
                (rejection, certificates, deposit, compacted),
            ),
        )
    }

    fn combine(core: &Hash, vote: Option<Hash>) -> Hash {
        digest_of(PROPOSAL_TAG, &(core, vote))
    }

    /// The vote that is open now, if any.
    pub fn open_vote(&self) -> Option<&VoteBox> {
        match self.stage {
            Stage::Voting => self.vote.as_ref(),
            Stage::Active if self.is_emergency() => self.vote.as_ref(),
            _ => None,
        }
    }
}

/// A proposal's digest is `SHA-256(tag ‖ core ‖ vote)`: a change recorded as
/// the vote's only (`HashedMap::get_mut_part`) re-hashes the vote's fixed
/// fields and takes its kept ballots root, never the content.
impl StateEntry for Proposal {
    fn digest(&mut self, whole: bool) -> Hash {
        let core = match self.core_digest.0 {
            Some(core) if !whole => core,
            _ => {
                let core = self.core_digest();
                self.core_digest.0 = Some(core);
                core
            }
        };
        let vote = self.vote.as_mut().map(VoteBox::digest);
        Self::combine(&core, vote)
    }

    fn digest_from_scratch(&self) -> Hash {
        let vote = self.vote.as_ref().map(VoteBox::digest_from_scratch);
        Self::combine(&self.core_digest(), vote)
    }
}
