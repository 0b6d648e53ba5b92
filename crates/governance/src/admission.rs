//! Admission: what a validator checks before it proposes a client command to
//! the log (and the leader again for commands forwarded to it).
//!
//! Admission refuses only what is **final**: a command that no later state
//! could accept. That is every rule that depends on the command alone (its
//! encoded size, every field against [`crate::limits`], its signature, the
//! emergency commands' committee membership, which is fixed at genesis) and,
//! from a possibly stale view of the state, a nonce already consumed (nonces
//! only grow). Anything that could still become valid — an unknown author
//! who may receive a transfer, a nonce ahead of the account's, a balance too
//! small today — is admitted and decided by the log.
//!
//! An admission refusal is not ordered: no log entry, no nonce consumed; the
//! client may fix the command and send it again with the same nonce. An
//! identical retry of a command already applied (same nonce, same signed
//! bytes) is answered with its original outcome without entering the log.

use crate::command::{Command, SignedCommand};
use crate::error::GovError;
use crate::limits::MAX_COMMAND_BYTES;
use crate::nep::NepContent;
use crate::position::Position;
use crate::receipt::Outcome;
use crate::signature;
use crate::state::GovernanceState;
use crate::types::NepId;
use crate::validation::validate_shape;

/// What admission decided about a command it did not refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// Propose it to the log.
    New,
    /// An identical retry of a command this view already applied: its
    /// original outcome (receipt or apply refusal) and where it was
    /// applied, to answer directly.
    Retry {
        outcome: Outcome,
        position: Position,
    },
}

/// The postcard size of a signed command, without encoding it.
pub fn encoded_len(command: &SignedCommand) -> usize {
    // Measuring plain serde data cannot fail.
    postcard::experimental::serialized_size(command).unwrap_or(usize::MAX)
}

/// Checks that depend on the command alone: its size and every field.
/// The same checks run again at apply, so a command a faulty leader ordered
/// without admitting it is refused there with the same rule.
pub fn check_fields(command: &SignedCommand, encoded_len: usize) -> Result<(), GovError> {
    if encoded_len > MAX_COMMAND_BYTES {
        return Err(GovError::CommandTooLarge {
            bytes: encoded_len,
            max: MAX_COMMAND_BYTES,
        });
    }
    let author = command.author;
    match &command.command {
        Command::Transfer { to, amount } => {
            if amount.0 == 0 {
                return Err(GovError::ZeroAmount);
            }
            if *to == author {
                return Err(GovError::SelfTransfer { account: author });
            }
            if !signature::usable_account_key(to) {
                return Err(GovError::InvalidAccountKey { account: *to });
            }
        }
        Command::Stake { amount } | Command::Unstake { amount } => {
            if amount.0 == 0 {
                return Err(GovError::ZeroAmount);
            }
        }
        Command::CreateDraft { content } | Command::AmendDraft { content, .. } => {
            if content.nep_type.is_emergency() {
                return Err(GovError::EmergencyNotDraftable);
            }
            shape(content)?;
        }
        Command::SubmitEmergency { content } => {
            if !content.nep_type.is_emergency() {
                return Err(GovError::NotEmergency {
                    nep_type: content.nep_type,
                });
            }
            shape(content)?;
        }
        Command::Submit { .. }
        | Command::Withdraw { .. }
        | Command::Vote { .. }
        | Command::EmergencyApprove { .. } => {}
    }
    if let Some(nep) = nep_of(&command.command) {
        if nep.0 == 0 {
            return Err(GovError::UnknownNep { nep });
        }
    }
    Ok(())
}

fn shape(content: &NepContent) -> Result<(), GovError> {
    validate_shape(content).map_err(GovError::InvalidContent)
}

fn nep_of(command: &Command) -> Option<NepId> {
    match command {
        Command::AmendDraft { nep, .. }
        | Command::Submit { nep }
        | Command::Withdraw { nep }
        | Command::Vote { nep, .. }
        | Command::EmergencyApprove { nep } => Some(*nep),
        _ => None,
    }
}

/// Admission against `view`, a state this validator applied (possibly
/// behind the leader's). `encoded_len` is the size of the bytes the client
/// sent (see [`encoded_len`]). The signature is verified here; a validator
/// that admitted a command may say so when it applies it
/// (`GovernanceState::apply_batch` with its verdicts).
pub fn admit(
    view: &GovernanceState,
    command: &SignedCommand,
    encoded_len: usize,
) -> Result<Admitted, GovError> {
    check_fields(command, encoded_len)?;
    if matches!(
        command.command,
        Command::SubmitEmergency { .. } | Command::EmergencyApprove { .. }
    ) && !view.is_validator(&command.author)
    {
        return Err(GovError::NotValidator {
            account: command.author,
        });
    }
    let message = command.message(view.chain_id());
    // Remembered, so this validator's apply (and its check when the entry
    // arrives) reuses the verdict instead of checking again.
    if !signature::verify_one_remembered(&command.author, &message, &command.signature.0) {
        return Err(GovError::BadSignature {
            author: command.author,
        });
    }
    if let Some(account) = view.account_record(&command.author) {
        if command.nonce <= account.nonce {
            use sha2::{Digest, Sha256};
            let digest: [u8; 32] = Sha256::digest(&message).into();
            return match account.remembered(command.nonce) {
                Some(r) if r.digest == digest => Ok(Admitted::Retry {
                    outcome: r.outcome.clone(),
                    position: r.position,
                }),
                _ => Err(GovError::NonceReplay {
                    account: command.author,
                    nonce: command.nonce,
                    expected: account.nonce + 1,
                }),
            };
        }
    }
    Ok(Admitted::New)
}
