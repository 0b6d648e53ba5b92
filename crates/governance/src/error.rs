//! Why an entry was refused. Every variant names the rule it enforces and the
//! values involved, so a client can act on it without reading replica logs.

use serde::{Deserialize, Serialize};

use crate::proposal::Stage;
use crate::types::{AccountId, Amount, NepId, Timestamp};
use crate::validation::ContentError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum GovError {
    // --- authentication and ordering ---------------------------------------
    #[error("signature of account {author} does not verify for this chain")]
    BadSignature { author: AccountId },
    #[error(
        "account {account} does not exist (it needs a genesis allocation or a transfer first)"
    )]
    UnknownAccount { account: AccountId },
    #[error("nonce {nonce} of {account} was already used by a different command (next nonce is {expected})")]
    NonceReplay {
        account: AccountId,
        nonce: u64,
        expected: u64,
    },
    #[error("nonce {nonce} of {account} is out of order: the next nonce is {expected}")]
    NonceOutOfOrder {
        account: AccountId,
        nonce: u64,
        expected: u64,
    },
    #[error("the command encodes to {bytes} bytes, more than MAX_COMMAND_BYTES = {max}")]
    CommandTooLarge { bytes: usize, max: usize },
    #[error("log index {index} is not after the last applied index {last}")]
    LogIndexNotIncreasing { index: u64, last: u64 },

    // --- balances and stake -------------------------------------------------
    #[error("amount must be greater than zero")]
    ZeroAmount,
    #[error("{account} cannot transfer to itself")]
    SelfTransfer { account: AccountId },
    #[error("balance of {account} is {available}, {needed} needed")]
    InsufficientBalance {
        account: AccountId,
        needed: Amount,
        available: Amount,
    },
    #[error("staked amount of {account} is {staked}, {needed} needed")]
    InsufficientStake {
        account: AccountId,
        needed: Amount,
        staked: Amount,
    },
    #[error("{account} cannot unstake {requested}: {locked} is locked by its vote on {nep} until that vote ends at {until_ms}, only {unlocked} is free")]
    StakeLocked {
        account: AccountId,
        requested: Amount,
        unlocked: Amount,
        locked: Amount,
        nep: NepId,
        until_ms: Timestamp,
    },
    #[error("{account} is not a usable ed25519 public key: not a curve point (nobody could sign for it) or of small order (anybody could)")]
    InvalidAccountKey { account: AccountId },
    #[error("{account} would exceed the largest representable amount")]
    AmountOverflow { account: AccountId },
    #[error("{account} does not exist and cannot be created: the state holds {accounts} accounts (limit {max})")]
    TooManyAccounts {
        account: AccountId,
        accounts: usize,
        max: usize,
    },

    #[error("this would grow the state by {needed} bytes to {would_be}, above the limit of {limit} bytes for it (gov.state_budget_bytes = {budget}; new accounts and drafts stop 1/16 below it)")]
    StateBudgetExceeded {
        needed: u64,
        would_be: u64,
        /// The limit this growth is held to: the growth limit for new
        /// accounts and drafts, the budget itself for ballots and stake.
        limit: u64,
        budget: u64,
    },

    // --- proposals ------------------------------------------------------------
    #[error("{nep} does not exist")]
    UnknownNep { nep: NepId },
    #[error("{account} is not the author of {nep}")]
    NotAuthor { nep: NepId, account: AccountId },
    #[error("{nep} is {stage}; this needs {expected}")]
    WrongStage {
        nep: NepId,
        stage: Stage,
        expected: String,
    },
    #[error("invalid NEP content: {0}")]
    InvalidContent(#[from] ContentError),
    #[error("emergency NEPs are submitted with SubmitEmergency by a validator, not as drafts")]
    EmergencyNotDraftable,
    #[error("only EMERG NEPs can be submitted with SubmitEmergency, this is {nep_type}")]
    NotEmergency { nep_type: crate::nep::NepType },
    #[error("{account} already holds {open} drafts or proposals in review (limit {max})")]
    TooManyOpenDrafts {
        account: AccountId,
        open: usize,
        max: usize,
    },
    #[error("{open} proposals are open (limit {max}); wait until some are decided")]
    TooManyOpenProposals { open: usize, max: usize },
    #[error("{open} emergency NEPs await approval (limit {max})")]
    TooManyPendingEmergencies { open: usize, max: usize },

    // --- voting -------------------------------------------------------------------
    #[error("voting on {nep} closed at {deadline_ms}; committed time is {committed_ms}")]
    VotingClosed {
        nep: NepId,
        deadline_ms: Timestamp,
        committed_ms: Timestamp,
    },
    #[error("{nep} is {stage}: no vote is open on it")]
    VotingNotOpen { nep: NepId, stage: Stage },
    #[error("{account} had no stake at the snapshot of {nep} (or has none left), so it has no voting power")]
    NoVotingPower { nep: NepId, account: AccountId },

    // --- emergency track --------------------------------------------------------
    #[error("{account} is not a committee validator identity")]
    NotValidator { account: AccountId },
    #[error("validator {validator} already approved {nep}")]
    AlreadyApproved { nep: NepId, validator: u32 },
    #[error(
        "the approval window of {nep} closed at {deadline_ms}; committed time is {committed_ms}"
    )]
    EmergencyWindowClosed {
        nep: NepId,
        deadline_ms: Timestamp,
        committed_ms: Timestamp,
    },

    // --- certificates ------------------------------------------------------------
    #[error("no certificate with sequence {sequence} has been decided")]
    UnknownCertificate { sequence: u64 },
    #[error("certificate {sequence} was already issued")]
    CertificateAlreadyIssued { sequence: u64 },
    #[error(
        "certificate {sequence} carries a payload that differs from the one this replica decided"
    )]
    CertificatePayloadMismatch { sequence: u64 },
    #[error("certificate {sequence} does not verify against the committee: {reason}")]
    CertificateInvalid { sequence: u64, reason: String },
}

/// Rules refused without using the command's nonce, at admission and at
/// apply (checked before the nonce): the author may sign a fixed command
/// with the same nonce. `nonce_replay` is not one of them: that nonce is
/// already used (by another command, or the command was applied earlier
/// and its outcome is no longer remembered) — read the account before
/// signing anything again.
pub const RULES_LEAVING_THE_NONCE_FREE: &[&str] = &[
    "bad_signature",
    "unknown_account",
    "nonce_out_of_order",
    "command_too_large",
    "log_index_not_increasing",
];

impl GovError {
    /// Whether the command's nonce is still free after this refusal (see
    /// [`RULES_LEAVING_THE_NONCE_FREE`]); for an admission refusal every
    /// rule but `nonce_replay` leaves it free.
    pub fn leaves_nonce_free(&self, at_admission: bool) -> bool {
        match self {
            Self::NonceReplay { .. } => false,
            _ if at_admission => true,
            e => RULES_LEAVING_THE_NONCE_FREE.contains(&e.rule()),
        }
    }

    /// The stable name of the rule this refusal enforces: the variant in snake
    /// case (`VotingClosed` → `voting_closed`). The public API puts it in
    /// `CommandError.rule`, and chaos histories record it, so clients and
    /// checkers never parse messages.
    pub fn rule(&self) -> &'static str {
        // An exhaustive match: a new variant must be named here.
        match self {
            Self::BadSignature { .. } => "bad_signature",
            Self::UnknownAccount { .. } => "unknown_account",
            Self::NonceReplay { .. } => "nonce_replay",
            Self::NonceOutOfOrder { .. } => "nonce_out_of_order",
            Self::CommandTooLarge { .. } => "command_too_large",
            Self::LogIndexNotIncreasing { .. } => "log_index_not_increasing",
            Self::ZeroAmount => "zero_amount",
            Self::SelfTransfer { .. } => "self_transfer",
            Self::InsufficientBalance { .. } => "insufficient_balance",
            Self::InsufficientStake { .. } => "insufficient_stake",
            Self::StakeLocked { .. } => "stake_locked",
            Self::InvalidAccountKey { .. } => "invalid_account_key",
            Self::AmountOverflow { .. } => "amount_overflow",
            Self::TooManyAccounts { .. } => "too_many_accounts",
            Self::StateBudgetExceeded { .. } => "state_budget_exceeded",
            Self::UnknownNep { .. } => "unknown_nep",
            Self::NotAuthor { .. } => "not_author",
            Self::WrongStage { .. } => "wrong_stage",
            Self::InvalidContent(_) => "invalid_content",
            Self::EmergencyNotDraftable => "emergency_not_draftable",
            Self::NotEmergency { .. } => "not_emergency",
            Self::TooManyOpenDrafts { .. } => "too_many_open_drafts",
            Self::TooManyOpenProposals { .. } => "too_many_open_proposals",
            Self::TooManyPendingEmergencies { .. } => "too_many_pending_emergencies",
            Self::VotingClosed { .. } => "voting_closed",
            Self::VotingNotOpen { .. } => "voting_not_open",
            Self::NoVotingPower { .. } => "no_voting_power",
            Self::NotValidator { .. } => "not_validator",
            Self::AlreadyApproved { .. } => "already_approved",
            Self::EmergencyWindowClosed { .. } => "emergency_window_closed",
            Self::UnknownCertificate { .. } => "unknown_certificate",
            Self::CertificateAlreadyIssued { .. } => "certificate_already_issued",
            Self::CertificatePayloadMismatch { .. } => "certificate_payload_mismatch",
            Self::CertificateInvalid { .. } => "certificate_invalid",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_the_snake_case_serde_variant() {
        let closed = GovError::VotingClosed {
            nep: NepId(1),
            deadline_ms: Timestamp(5),
            committed_ms: Timestamp(6),
        };
        assert_eq!(closed.rule(), "voting_closed");
        let json = serde_json::to_value(&closed).expect("error encodes");
        let variant = json
            .as_object()
            .and_then(|o| o.keys().next().cloned())
            .expect("externally tagged");
        let snake: String = variant
            .chars()
            .enumerate()
            .flat_map(|(i, c)| {
                let lower = c.to_ascii_lowercase();
                if c.is_ascii_uppercase() && i > 0 {
                    vec!['_', lower]
                } else {
                    vec![lower]
                }
            })
            .collect();
        assert_eq!(snake, closed.rule());
        assert_eq!(GovError::ZeroAmount.rule(), "zero_amount");
    }
}
