//! What an applied entry did: returned to the client (commands) and to the
//! node (ticks and certificates).

use serde::{Deserialize, Serialize};

use crate::command::VoteChoice;
use crate::error::GovError;
use crate::position::Position;
use crate::proposal::Stage;
use crate::types::{AccountId, Amount, NepId, Timestamp};

/// The result of applying one entry.
pub type Outcome = Result<Receipt, GovError>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Where the command that produced this receipt was applied (for a
    /// retried command: the original); a tick's or a certificate's entry
    /// has offset 0.
    pub position: Position,
    /// Committed time when it was applied.
    pub committed_ms: Timestamp,
    pub effect: Effect,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Transferred {
        from: AccountId,
        to: AccountId,
        amount: Amount,
        created_receiver: bool,
        /// `econ.account_creation_fee`, burned when the transfer created
        /// the receiver (zero otherwise).
        fee_burned: Amount,
    },
    Staked {
        account: AccountId,
        amount: Amount,
        staked: Amount,
    },
    Unstaked {
        account: AccountId,
        amount: Amount,
        staked: Amount,
    },
    DraftCreated {
        nep: NepId,
        content_hash: [u8; 32],
        /// Locked from the author's balance until the vote closes.
        deposit: Amount,
    },
    DraftAmended {
        nep: NepId,
        content_hash: [u8; 32],
        /// The deposit for the new content (the difference was locked or
        /// released).
        deposit: Amount,
    },
    Submitted {
        nep: NepId,
        fee_burned: Amount,
        review_ends_ms: Timestamp,
    },
    Withdrawn {
        nep: NepId,
        /// The draft deposit, burned.
        deposit_burned: Amount,
    },
    Voted {
        nep: NepId,
        choice: VoteChoice,
        power: Amount,
        replaced: Option<VoteChoice>,
    },
    EmergencySubmitted {
        nep: NepId,
        window_ends_ms: Timestamp,
    },
    EmergencyApproved {
        nep: NepId,
        validator: u32,
        approvals: u32,
        threshold: u32,
    },
    Ticked {
        transitions: Vec<Transition>,
    },
    CertificateRecorded {
        sequence: u64,
    },
}

/// One stage change made by a tick.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub nep: NepId,
    pub from: Stage,
    pub to: Stage,
    /// The certificate this transition decided, if any.
    pub certificate: Option<u64>,
}
