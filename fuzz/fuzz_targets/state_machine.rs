//! Arbitrary sequences of signed commands, ticks and certificates applied
//! to a `GovernanceState` through the public apply path, starting from the
//! fixture chain at genesis, with a certificate pending, or later.
//! Commands come from `neuroshard_fuzz::command` (every kind, mostly valid
//! content, amounts and NEP ids near the interesting ones), signed by test
//! users, unknown accounts or validators with mostly the right nonce.
//!
//! Checks, besides no panic (the state's invariants are asserted after
//! every apply in this debug-assertion build):
//! * `apply_batch` over the same entries, cut into random batches, gives
//!   the same outcomes and the same state as `apply` one at a time;
//! * a command admission refuses is never applied successfully, and an
//!   identical retry admission answers gets exactly its original outcome;
//! * the author's nonce moves as the rule says (`leaves_nonce_free`);
//! * after the sequence the state snapshots and restores to an equal
//!   state with the same `state_hash` (and `from_snapshot_bytes` rechecks
//!   every invariant), and the API's reads of it answer.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

use neuroshard_fuzz::{command, fixture, issue, signer, testkit_accounts, Fixture};
use neuroshard_governance::admission::{self, Admitted};
use neuroshard_governance::{Entry, GovernanceState, Outcome, ProposalFilter, SignedCommand};
use neuroshard_node::transport::api_convert::{proposal_to_proto, BallotsRoot};

fn tick(u: &mut Unstructured<'_>, state: &GovernanceState) -> Result<Entry> {
    let gov = state.params().gov();
    let day = gov.day_ms;
    let now = state.committed_time_ms();
    let delta = match u.int_in_range(0u8..=9)? {
        0 => 0,
        1 => 1,
        2 => day / 2,
        3 => day,
        4 => gov.days_ms(gov.review_days),
        5 => gov.days_ms(gov.voting_days),
        6 => gov.days_ms(gov.grace_min_days),
        7 => gov.days_ms(30),
        8 => u64::from(u.arbitrary::<u32>()?),
        _ => {
            // Backwards: committed time never goes back.
            return Ok(Entry::Tick {
                now_ms: now.saturating_sub(u64::from(u.arbitrary::<u16>()?)),
            });
        }
    };
    Ok(Entry::Tick {
        now_ms: now.saturating_add(delta),
    })
}

fn signed(
    u: &mut Unstructured<'_>,
    state: &GovernanceState,
    chain_id: &str,
) -> Result<SignedCommand> {
    let key = signer(u.arbitrary()?);
    let author = neuroshard_governance::AccountId(key.verifying_key().to_bytes());
    let next = state.account(&author).map_or(1, |a| a.next_nonce);
    let nonce = match u.int_in_range(0u8..=19)? {
        0 => next.saturating_sub(1),
        1 => next + 1,
        2 => 0,
        3 => u64::MAX,
        _ => next,
    };
    let mut command = SignedCommand::sign(chain_id, &key, nonce, command(u)?);
    if u.ratio(1u8, 32)? {
        let bit: u16 = u.int_in_range(0..=511)?;
        command.signature.0[usize::from(bit / 8)] ^= 1 << (bit % 8);
    }
    Ok(command)
}

fn certificate(
    u: &mut Unstructured<'_>,
    state: &GovernanceState,
    bogus: bool,
) -> Result<Option<Entry>> {
    let fx = fixture();
    let pending = state.pending_certificates();
    if pending.is_empty() {
        return Ok(None);
    }
    let which = u.choose(&pending)?;
    let mut issued = issue(&fx.dealt, which);
    if bogus {
        match u.int_in_range(0u8..=4)? {
            0 => issued.sequence = issued.sequence.wrapping_add(1),
            1 => {
                issued.shares.pop();
            }
            2 => issued.envelope.committee_epoch += 1,
            3 => {
                let last = issued.envelope.signature.len() - 1;
                issued.envelope.signature[last] ^= 1;
            }
            _ => {
                if let Some(s) = issued.shares.first_mut() {
                    s.validator = s.validator.wrapping_add(7);
                }
            }
        }
    }
    Ok(Some(Entry::CertificateIssued(issued)))
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let fx = fixture();
    let start = match u.int_in_range(0u8..=2)? {
        0 => &fx.fresh,
        1 => &fx.pending,
        _ => &fx.certified,
    };
    let mut state = start.clone();
    let mut batched = start.clone();
    let mut batch: Vec<(u64, Entry)> = Vec::new();
    let mut expected: Vec<Outcome> = Vec::new();
    let mut index = Fixture::next_index(start);
    let mut last: Option<SignedCommand> = None;

    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        let entry = match u.int_in_range(0u8..=15)? {
            0..=2 => tick(&mut u, &state)?,
            3 => match certificate(&mut u, &state, false)? {
                Some(e) => e,
                None => continue,
            },
            4 => match certificate(&mut u, &state, true)? {
                Some(e) => e,
                None => continue,
            },
            5 => match &last {
                Some(c) => Entry::Command(c.clone()),
                None => continue,
            },
            _ => {
                let c = signed(&mut u, &state, &fx.chain_id)?;
                last = Some(c.clone());
                Entry::Command(c)
            }
        };

        let before = match &entry {
            Entry::Command(c) => Some((
                admission::admit(&state, c, admission::encoded_len(c)),
                state.account(&c.author).map(|a| a.next_nonce - 1),
            )),
            _ => None,
        };
        let outcome = state.apply(index, &entry);
        if let (Entry::Command(c), Some((admitted, nonce_before))) = (&entry, before) {
            match admitted {
                Err(refusal) => assert!(
                    outcome.is_err(),
                    "admission refused ({refusal:?}) what apply accepted: {outcome:?}"
                ),
                Ok(Admitted::Retry {
                    outcome: original, ..
                }) => assert_eq!(
                    original, outcome,
                    "a retry's answer is its original outcome"
                ),
                Ok(Admitted::New) => {}
            }
            let nonce_after = state.account(&c.author).map(|a| a.next_nonce - 1);
            let fresh = nonce_before.is_some_and(|n| c.nonce == n + 1);
            let consumed = match &outcome {
                Ok(_) => fresh,
                Err(e) => fresh && !e.leaves_nonce_free(false),
            };
            if consumed {
                assert_eq!(nonce_after, Some(c.nonce), "{outcome:?} uses the nonce");
            } else if nonce_before.is_some() {
                assert_eq!(nonce_after, nonce_before, "{outcome:?} leaves the nonce");
            }
        }
        batch.push((index, entry));
        expected.push(outcome);
        index += u64::from(u.int_in_range(1u8..=3)?);
        if u.ratio(1u8, 4)? {
            assert_eq!(flat(batched.apply_batch(&batch)), expected);
            batch.clear();
            expected.clear();
        }
    }
    assert_eq!(flat(batched.apply_batch(&batch)), expected);
    assert_eq!(batched.state_hash(), state.state_hash());
    assert!(
        batched == state,
        "apply and apply_batch reached different states"
    );

    let bytes = state.to_snapshot_bytes().expect("the state snapshots");
    let restored = GovernanceState::from_snapshot_bytes(&bytes)
        .unwrap_or_else(|e| panic!("its snapshot is refused: {e}"));
    assert_eq!(restored.state_hash(), state.state_hash());
    assert!(restored == state, "the restored state differs");

    let accounts = testkit_accounts();
    for p in state.proposals(&ProposalFilter::default()) {
        let _ = proposal_to_proto(&state, p, BallotsRoot::Include, None);
        let _ = state.tally(p.id);
        for a in accounts {
            let _ = state.vote_receipt(p.id, a);
        }
    }
    Ok(())
}

fuzz_target!(init: { fixture(); }, |data: &[u8]| {
    let _ = run(data);
});

/// Every outcome of a run of entries, in order.
fn flat(outcomes: Vec<Vec<neuroshard_governance::Outcome>>) -> Vec<neuroshard_governance::Outcome> {
    outcomes.into_iter().flatten().collect()
}
