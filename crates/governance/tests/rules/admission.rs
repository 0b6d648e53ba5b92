//! Admission: what a validator may refuse before the log (only what is
//! final), and identical retries answered with their original outcome.

use neuroshard_governance::admission::{admit, check_fields, encoded_len, Admitted};
use neuroshard_governance::limits::MAX_COMMAND_BYTES;
use neuroshard_governance::testkit::{account_of, user_key, validator_key};
use neuroshard_governance::{Amount, Command, CommandSignature, GovError, SignedCommand};

use crate::support::*;

const CHAIN: &str = "neuroshard-test";

fn signed(i: usize, nonce: u64, command: Command) -> SignedCommand {
    SignedCommand::sign(CHAIN, &user_key(i), nonce, command)
}

fn transfer(amount: u64) -> Command {
    Command::Transfer {
        to: user(3),
        amount: Amount(amount),
    }
}

#[test]
fn final_refusals_are_refused_and_everything_that_may_still_pass_is_admitted() {
    let mut c = chain();
    let fresh = signed(0, 1, transfer(5));
    assert_eq!(
        admit(&c.state, &fresh, encoded_len(&fresh)),
        Ok(Admitted::New)
    );
    // Not final: a nonce ahead (earlier commands may still land), an author
    // who does not exist yet (a transfer may create it), a balance too small.
    let ahead = signed(0, 7, transfer(5));
    assert_eq!(
        admit(&c.state, &ahead, encoded_len(&ahead)),
        Ok(Admitted::New)
    );
    let stranger = signed(999, 1, transfer(5));
    assert_eq!(
        admit(&c.state, &stranger, encoded_len(&stranger)),
        Ok(Admitted::New)
    );
    let too_much = signed(0, 1, transfer(u64::MAX / 2));
    assert_eq!(
        admit(&c.state, &too_much, encoded_len(&too_much)),
        Ok(Admitted::New)
    );
    // Final: a forged signature, a field no state accepts, an emergency
    // command from a key that is not in the committee.
    let mut forged = fresh.clone();
    forged.signature = CommandSignature([7; 64]);
    assert_eq!(
        admit(&c.state, &forged, encoded_len(&forged)),
        Err(GovError::BadSignature { author: user(0) })
    );
    let zero = signed(0, 1, transfer(0));
    assert_eq!(
        admit(&c.state, &zero, encoded_len(&zero)),
        Err(GovError::ZeroAmount)
    );
    let mut emergency = heads(1, 4);
    emergency.nep_type = neuroshard_governance::NepType::Emerg;
    let not_validator = signed(0, 1, Command::SubmitEmergency { content: emergency });
    assert_eq!(
        admit(&c.state, &not_validator, encoded_len(&not_validator)).map_err(|e| e.rule()),
        Err("not_validator")
    );
    let approve = SignedCommand::sign(
        CHAIN,
        &validator_key(0),
        1,
        Command::EmergencyApprove {
            nep: neuroshard_governance::NepId(1),
        },
    );
    assert_eq!(
        admit(&c.state, &approve, encoded_len(&approve)),
        Ok(Admitted::New)
    );

    // Applied: an identical retry is answered with its original outcome;
    // another command under the used nonce is a final replay.
    let outcome = c.apply(neuroshard_governance::Entry::Command(fresh.clone()));
    let receipt = outcome.clone().expect("transfer applies");
    let position = receipt.position;
    assert_eq!(
        admit(&c.state, &fresh, encoded_len(&fresh)),
        Ok(Admitted::Retry {
            outcome: Ok(receipt),
            position
        })
    );
    let other = signed(0, 1, transfer(6));
    assert_eq!(
        admit(&c.state, &other, encoded_len(&other)).map_err(|e| e.rule()),
        Err("nonce_replay")
    );
    // An applied refusal is answered as it was, with its log index.
    let refused = signed(0, 2, transfer(u64::MAX / 2));
    let refused_at = c.state.last_applied_index().unwrap() + 1;
    let original = c.apply(neuroshard_governance::Entry::Command(refused.clone()));
    assert!(original.is_err());
    assert_eq!(
        admit(&c.state, &refused, encoded_len(&refused)),
        Ok(Admitted::Retry {
            outcome: original,
            position: neuroshard_governance::Position::entry(refused_at)
        })
    );
}

#[test]
fn the_size_bound_is_checked_at_under_and_over() {
    let cmd = signed(0, 1, transfer(1));
    let len = encoded_len(&cmd);
    assert_eq!(check_fields(&cmd, MAX_COMMAND_BYTES), Ok(()));
    assert_eq!(check_fields(&cmd, MAX_COMMAND_BYTES - 1), Ok(()));
    assert_eq!(
        check_fields(&cmd, MAX_COMMAND_BYTES + 1),
        Err(GovError::CommandTooLarge {
            bytes: MAX_COMMAND_BYTES + 1,
            max: MAX_COMMAND_BYTES
        })
    );
    assert!(len < 200);
    // A draft whose encoding passes the bound is refused at apply too, on
    // every replica, whatever a faulty leader admitted.
    let mut c = chain();
    let mut content = heads(1, 4);
    content.specification = "s".repeat(MAX_COMMAND_BYTES);
    let big = signed(0, 1, Command::CreateDraft { content });
    assert!(encoded_len(&big) > MAX_COMMAND_BYTES);
    assert_eq!(
        check_fields(&big, encoded_len(&big)).map_err(|e| e.rule()),
        Err("command_too_large")
    );
    let applied = c.apply(neuroshard_governance::Entry::Command(big));
    assert_eq!(applied.map_err(|e| e.rule()), Err("command_too_large"));
    // Refused before its nonce: the author's next command still uses 1.
    assert_eq!(
        c.state
            .account(&account_of(&user_key(0)))
            .unwrap()
            .next_nonce,
        1
    );
}
