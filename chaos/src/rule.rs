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

/// The stable name of the rule `e` enforces (defined by the governance crate).
pub fn rule_name(e: &GovError) -> &'static str {
    e.rule()
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
