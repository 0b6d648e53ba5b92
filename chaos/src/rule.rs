//! Stable rule names of governance refusals, as histories record them.
//!
//! The name is the `GovError` variant in snake case (`VotingClosed` →
//! `voting_closed`), the same string the public API puts in
//! `CommandError.rule`, so histories from the model, the simulation and a
//! real cluster compare equal.

use neuroshard_governance::GovError;

/// The refusal every vote applied after its NEP's closing tick must get.
pub const VOTING_CLOSED: &str = "voting_closed";

/// Refusals decided before a command's rule runs (signature, account, nonce
/// order). A vote refused this way after the closing tick is not a vote
/// that was let through or mis-refused: it never reached the voting rule.
pub const PRE_EXECUTION_RULES: &[&str] = &[
    "bad_signature",
    "unknown_account",
    "nonce_replay",
    "nonce_out_of_order",
    "log_index_not_increasing",
];

/// The stable name of the rule `e` enforces.
pub fn rule_name(e: &GovError) -> &'static str {
    // An exhaustive match: a new error variant must be named here.
    match e {
        GovError::BadSignature { .. } => "bad_signature",
        GovError::UnknownAccount { .. } => "unknown_account",
        GovError::NonceReplay { .. } => "nonce_replay",
        GovError::NonceOutOfOrder { .. } => "nonce_out_of_order",
        GovError::LogIndexNotIncreasing { .. } => "log_index_not_increasing",
        GovError::ZeroAmount => "zero_amount",
        GovError::SelfTransfer { .. } => "self_transfer",
        GovError::InsufficientBalance { .. } => "insufficient_balance",
        GovError::InsufficientStake { .. } => "insufficient_stake",
        GovError::StakeLocked { .. } => "stake_locked",
        GovError::InvalidAccountKey { .. } => "invalid_account_key",
        GovError::AmountOverflow { .. } => "amount_overflow",
        GovError::UnknownNep { .. } => "unknown_nep",
        GovError::NotAuthor { .. } => "not_author",
        GovError::WrongStage { .. } => "wrong_stage",
        GovError::InvalidContent(_) => "invalid_content",
        GovError::EmergencyNotDraftable => "emergency_not_draftable",
        GovError::NotEmergency { .. } => "not_emergency",
        GovError::TooManyOpenDrafts { .. } => "too_many_open_drafts",
        GovError::TooManyOpenProposals { .. } => "too_many_open_proposals",
        GovError::TooManyPendingEmergencies { .. } => "too_many_pending_emergencies",
        GovError::VotingClosed { .. } => VOTING_CLOSED,
        GovError::VotingNotOpen { .. } => "voting_not_open",
        GovError::NoVotingPower { .. } => "no_voting_power",
        GovError::NotValidator { .. } => "not_validator",
        GovError::AlreadyApproved { .. } => "already_approved",
        GovError::EmergencyWindowClosed { .. } => "emergency_window_closed",
        GovError::UnknownCertificate { .. } => "unknown_certificate",
        GovError::CertificateAlreadyIssued { .. } => "certificate_already_issued",
        GovError::CertificatePayloadMismatch { .. } => "certificate_payload_mismatch",
        GovError::CertificateInvalid { .. } => "certificate_invalid",
    }
}

#[cfg(test)]
mod tests {
    use neuroshard_governance::{NepId, Timestamp};

    use super::*;

    #[test]
    fn names_are_the_snake_case_variant() {
        let closed = GovError::VotingClosed {
            nep: NepId(1),
            deadline_ms: Timestamp(5),
            committed_ms: Timestamp(6),
        };
        assert_eq!(rule_name(&closed), "voting_closed");
        // The serde name of the variant, snake-cased, is the rule name.
        let json = serde_json::to_value(&closed).expect("error encodes");
        let variant = json
            .as_object()
            .and_then(|o| o.keys().next().cloned())
            .expect("externally tagged");
        assert_eq!(variant, "VotingClosed");
        assert_eq!(rule_name(&GovError::ZeroAmount), "zero_amount");
    }
}
