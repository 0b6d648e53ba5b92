//! What reads cost against a state with many accounts and one large open
//! vote (`state_hash`, `tally`, `vote_receipt`: what GetStatus, GetTally,
//! GetProposal and GetVoteReceipt call), and what apply costs when a batch
//! adds ballots to a vote that already holds many.
//!
//! Run: `cargo bench -p neuroshard-governance --bench reads`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use neuroshard_governance::testkit::{account_of, user_key, TestChain, TestConfig};
use neuroshard_governance::{
    Amount, Command, Entry, GovernanceState, NepContent, NepId, SignedCommand, VoteChoice,
};

/// Voters (accounts with stake) in the fixture.
const VOTERS: usize = 16_384;
/// Entries per `apply_batch` call.
const BATCH: usize = 512;

struct Fixture {
    /// Every voter but the last `BATCH` has voted.
    state: GovernanceState,
    nep: NepId,
    /// The last `BATCH` voters' votes (new ballots on the large vote).
    new_votes: Vec<(u64, Entry)>,
    /// Re-votes of `BATCH` voters who already voted (leaves replaced).
    re_votes: Vec<(u64, Entry)>,
}

fn heads() -> NepContent {
    neuroshard_governance::proposal_file::parse(include_str!(
        "../../../examples/neps/multi-token-prediction.toml"
    ))
    .expect("example parses")
}

fn fixture() -> Fixture {
    let mut chain = TestChain::new(&TestConfig {
        users: VOTERS + 1,
        user_balance: Amount(100 * neuroshard_governance::NEURO),
        user_staked: Amount(1_000 * neuroshard_governance::NEURO),
        ..TestConfig::default()
    });
    let author = user_key(VOTERS);
    let nep = match chain.exec(&author, Command::CreateDraft { content: heads() }) {
        Ok(r) => match r.effect {
            neuroshard_governance::Effect::DraftCreated { nep, .. } => nep,
            other => panic!("{other:?}"),
        },
        Err(e) => panic!("{e}"),
    };
    chain
        .exec(&author, Command::Submit { nep })
        .expect("submit");
    chain.advance_days(7).expect("tick");
    let chain_id = chain.genesis.chain_id.clone();
    let mut index = chain.next_index;
    let mut votes: Vec<(u64, Entry)> = (0..VOTERS)
        .map(|i| {
            let choice = [VoteChoice::Yes, VoteChoice::No, VoteChoice::Abstain][i % 3];
            let cmd =
                SignedCommand::sign(&chain_id, &user_key(i), 1, Command::Vote { nep, choice });
            index += 1;
            (index, Entry::Command(cmd))
        })
        .collect();
    let new_votes = votes.split_off(VOTERS - BATCH);
    let mut state = chain.state;
    for chunk in votes.chunks(BATCH) {
        for o in state.apply_batch(chunk).into_iter().flatten() {
            o.expect("vote applies");
        }
    }
    // The new votes come after the re-votes in the log: renumber them.
    let re_votes: Vec<(u64, Entry)> = (0..BATCH)
        .map(|i| {
            let cmd = SignedCommand::sign(
                &chain_id,
                &user_key(i * 7),
                2,
                Command::Vote {
                    nep,
                    choice: VoteChoice::No,
                },
            );
            (index + 1 + i as u64, Entry::Command(cmd))
        })
        .collect();
    let new_votes = new_votes
        .into_iter()
        .enumerate()
        .map(|(i, (_, e))| (index + 1 + i as u64, e))
        .collect();
    Fixture {
        state,
        nep,
        new_votes,
        re_votes,
    }
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    let voter = account_of(&user_key(VOTERS / 2));
    println!(
        "fixture: {} accounts, one open vote with {} ballots, snapshot {} bytes",
        VOTERS + 5,
        f.state.tally(f.nep).expect("tally").ballots,
        f.state.to_snapshot_bytes().expect("snapshot").len()
    );
    let mut reads = c.benchmark_group("reads");
    reads.bench_function("state_hash", |b| b.iter(|| f.state.state_hash()));
    reads.bench_function("tally", |b| b.iter(|| f.state.tally(f.nep).expect("tally")));
    reads.bench_function("vote_receipt", |b| {
        b.iter(|| f.state.vote_receipt(f.nep, &voter).expect("receipt"))
    });
    reads.finish();
    let mut apply = c.benchmark_group("apply_into_large_vote");
    apply.throughput(Throughput::Elements(BATCH as u64));
    apply.sample_size(20);
    apply.bench_function(format!("new_ballots/{BATCH}"), |b| {
        b.iter_batched(
            || f.state.clone(),
            |mut state| {
                let outcomes = state.apply_batch(&f.new_votes);
                assert!(outcomes.iter().flatten().all(|o| o.is_ok()));
                state
            },
            BatchSize::LargeInput,
        )
    });
    apply.bench_function(format!("re_votes/{BATCH}"), |b| {
        b.iter_batched(
            || f.state.clone(),
            |mut state| {
                let outcomes = state.apply_batch(&f.re_votes);
                assert!(outcomes.iter().flatten().all(|o| o.is_ok()));
                state
            },
            BatchSize::LargeInput,
        )
    });
    apply.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
