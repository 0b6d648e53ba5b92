//! Signatures, nonces, replays and identical retries; batch verification.

use neuroshard_governance::testkit::{account_of, user_key};
use neuroshard_governance::{Amount, Command, CommandSignature, Entry, GovError, SignedCommand};

use crate::support::*;

fn stake(amount: u64) -> Command {
    Command::Stake {
        amount: Amount(amount),
    }
}

#[test]
fn nonce_rules_table() {
    let mut c = chain();
    let key = user_key(1);
    let chain_id = c.genesis.chain_id.clone();
    let first = SignedCommand::sign(&chain_id, &key, 1, stake(5));
    let receipt = ok(c.apply(Entry::Command(first.clone())));
    let staked_after_first = c.state.account(&user(1)).unwrap().staked;

    // (name, command, expected)
    let cases: Vec<(&str, SignedCommand, Result<(), GovError>)> = vec![
        // The identical command again: the original receipt, not re-applied.
        ("identical retry", first.clone(), Ok(())),
        (
            "same nonce, different command",
            SignedCommand::sign(&chain_id, &key, 1, stake(6)),
            Err(GovError::NonceReplay {
                account: user(1),
                nonce: 1,
                expected: 2,
            }),
        ),
        (
            "gap",
            SignedCommand::sign(&chain_id, &key, 3, stake(5)),
            Err(GovError::NonceOutOfOrder {
                account: user(1),
                nonce: 3,
                expected: 2,
            }),
        ),
        (
            "nonce zero",
            SignedCommand::sign(&chain_id, &key, 0, stake(5)),
            Err(GovError::NonceReplay {
                account: user(1),
                nonce: 0,
                expected: 2,
            }),
        ),
        (
            "signed for another chain",
            SignedCommand::sign("other-chain", &key, 2, stake(5)),
            Err(GovError::BadSignature { author: user(1) }),
        ),
        (
            "signature of another key",
            SignedCommand {
                author: user(1),
                ..SignedCommand::sign(&chain_id, &user_key(2), 2, stake(5))
            },
            Err(GovError::BadSignature { author: user(1) }),
        ),
        (
            "unknown account",
            SignedCommand::sign(&chain_id, &user_key(77), 1, stake(5)),
            Err(GovError::UnknownAccount {
                account: account_of(&user_key(77)),
            }),
        ),
    ];
    for (name, cmd, expected) in cases {
        let got = c.apply(Entry::Command(cmd));
        match expected {
            Ok(()) => assert_eq!(got, Ok(receipt.clone()), "{name}"),
            Err(e) => assert_eq!(got, Err(e), "{name}"),
        }
    }
    assert_eq!(
        c.state.account(&user(1)).unwrap().staked,
        staked_after_first
    );
    assert_eq!(c.state.account(&user(1)).unwrap().next_nonce, 2);
    ok(c.apply(Entry::Command(SignedCommand::sign(
        &chain_id,
        &key,
        2,
        stake(5),
    ))));
}

#[test]
fn a_refused_command_uses_its_nonce_and_a_retry_gets_the_same_refusal() {
    let mut c = chain();
    let chain_id = c.genesis.chain_id.clone();
    let too_much = SignedCommand::sign(&chain_id, &user_key(1), 1, stake(u64::MAX / 2));
    let first = c.apply(Entry::Command(too_much.clone()));
    assert!(matches!(first, Err(GovError::InsufficientBalance { .. })));
    assert_eq!(c.apply(Entry::Command(too_much)), first);
    assert_eq!(c.state.account(&user(1)).unwrap().next_nonce, 2);
}

#[test]
fn tampered_signature_bytes_are_refused() {
    let mut c = chain();
    let mut cmd = SignedCommand::sign(&c.genesis.chain_id, &user_key(1), 1, stake(5));
    cmd.signature = CommandSignature([0u8; 64]);
    assert_eq!(
        c.apply(Entry::Command(cmd)),
        Err(GovError::BadSignature { author: user(1) })
    );
}

#[test]
fn batches_give_the_same_outcomes_as_single_applies() {
    let mut single = chain();
    let mut batched = chain();
    let chain_id = single.genesis.chain_id.clone();
    let mut entries = Vec::new();
    for i in 0..4usize {
        for nonce in 1..=3u64 {
            entries.push(Entry::Command(SignedCommand::sign(
                &chain_id,
                &user_key(i),
                nonce,
                stake(nonce),
            )));
        }
    }
    entries.push(Entry::Tick {
        now_ms: single.now_ms + 5,
    });
    // One forged command in the middle: only it is refused.
    let mut forged = SignedCommand::sign(&chain_id, &user_key(0), 4, stake(1));
    forged.signature.0[5] ^= 1;
    entries.insert(6, Entry::Command(forged));
    let indexed: Vec<(u64, Entry)> = entries
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, e))
        .collect();
    let one_by_one: Vec<_> = indexed
        .iter()
        .map(|(i, e)| single.state.apply(*i, e))
        .collect();
    let in_batch = batched
        .state
        .apply_batch(&indexed)
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    assert_eq!(one_by_one, in_batch);
    assert_eq!(in_batch[6], Err(GovError::BadSignature { author: user(0) }));
    assert_eq!(in_batch.iter().filter(|o| o.is_err()).count(), 1);
    assert_eq!(single.state.state_hash(), batched.state.state_hash());
}

#[test]
fn log_indices_must_increase() {
    let mut c = chain();
    ok(c.state.apply(5, &Entry::Tick { now_ms: 1 }));
    assert_eq!(
        c.state.apply(5, &Entry::Tick { now_ms: 2 }),
        Err(GovError::LogIndexNotIncreasing { index: 5, last: 5 })
    );
}

#[test]
fn a_forged_command_after_a_tick_in_a_batch_is_refused() {
    // Entries that are not commands (ticks) carry no signature; the batch
    // verdicts must still line up with the commands they belong to.
    let mut single = chain();
    let mut batched = chain();
    let chain_id = single.genesis.chain_id.clone();
    let mut forged = SignedCommand::sign(&chain_id, &user_key(0), 1, stake(1));
    forged.signature.0[5] ^= 1;
    let entries = [
        Entry::Tick {
            now_ms: single.now_ms + 1,
        },
        Entry::Command(forged),
        Entry::Command(SignedCommand::sign(&chain_id, &user_key(1), 1, stake(2))),
        Entry::Tick {
            now_ms: single.now_ms + 2,
        },
        Entry::Command(SignedCommand::sign(&chain_id, &user_key(2), 1, stake(3))),
    ];
    let indexed: Vec<(u64, Entry)> = entries
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, e))
        .collect();
    let one_by_one: Vec<_> = indexed
        .iter()
        .map(|(i, e)| single.state.apply(*i, e))
        .collect();
    let in_batch = batched
        .state
        .apply_batch(&indexed)
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    assert_eq!(in_batch[1], Err(GovError::BadSignature { author: user(0) }));
    assert_eq!(in_batch.iter().filter(|o| o.is_err()).count(), 1);
    assert_eq!(one_by_one, in_batch);
    assert_eq!(single.state.state_hash(), batched.state.state_hash());
}

/// A batched entry (`Entry::Commands`): one outcome per command at
/// position (index, offset); a bad signature or a replay refuses only its
/// own command; an identical retry in a later batch answers with the
/// original's position; `apply_entry` and `apply_batch` agree.
#[test]
fn a_batch_answers_each_command_at_its_own_position() {
    use neuroshard_governance::Position;
    let mut c = chain();
    let (k0, k1) = (user_key(0), user_key(1));
    let a = c.sign(&k0, stake(5));
    let mut forged = c.sign(&k1, stake(6));
    forged.signature.0[3] ^= 1;
    let b = c.sign(&k0, stake(7));
    let index = c.next_index;
    let mut twin = c.state.clone();
    let batch = Entry::Commands(vec![a, forged, b.clone()]);
    let outcomes = c.state.apply_entry(index, &batch);
    let twin_outcomes = twin.apply_batch(&[(index, batch)]);
    assert_eq!(outcomes.len(), 3);
    assert_eq!(ok(outcomes[0].clone()).position, Position::new(index, 0));
    assert_eq!(outcomes[1], Err(GovError::BadSignature { author: user(1) }));
    assert_eq!(ok(outcomes[2].clone()).position, Position::new(index, 2));
    assert_eq!(twin_outcomes, vec![outcomes.clone()]);
    assert_eq!(twin.state_hash(), c.state.state_hash());
    // The retry of `b` alone in a later batch: its original position.
    let later = c.state.apply_entry(index + 3, &Entry::Commands(vec![b]));
    assert_eq!(ok(later[0].clone()).position, Position::new(index, 2));
    // An empty batch applies nothing and answers nothing.
    assert!(c
        .state
        .apply_entry(index + 4, &Entry::Commands(vec![]))
        .is_empty());
    assert_eq!(c.state.last_applied_index(), Some(index + 4));
}
