//! Apply throughput of signed votes, including ed25519 verification in
//! batches (the path the node takes with `apply_batch`), and the memory one
//! stored ballot costs.
//!
//! Run: `cargo bench -p neuroshard-governance --bench apply_votes`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use neuroshard_governance::testkit::{account_of, user_key, TestChain, TestConfig};
use neuroshard_governance::{
    Amount, Command, Entry, GovernanceState, NepContent, NepId, SignedCommand, VoteChoice,
};

/// Counts live heap bytes so the memory per ballot can be measured.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Voters in the fixture; each casts one vote per measured batch.
const VOTERS: usize = 4096;
/// Entries per `apply_batch` call (what the node applies per Raft batch).
const BATCH: usize = 512;

struct Fixture {
    state: GovernanceState,
    nep: NepId,
    votes: Vec<(u64, Entry)>,
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
    let first_index = chain.next_index;
    let votes = (0..VOTERS)
        .map(|i| {
            let choice = [VoteChoice::Yes, VoteChoice::No, VoteChoice::Abstain][i % 3];
            let cmd =
                SignedCommand::sign(&chain_id, &user_key(i), 1, Command::Vote { nep, choice });
            (first_index + i as u64, Entry::Command(cmd))
        })
        .collect();
    Fixture {
        state: chain.state,
        nep,
        votes,
    }
}

fn memory_per_ballot(f: &Fixture) {
    let mut state = f.state.clone();
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    for chunk in f.votes.chunks(BATCH) {
        for outcome in state.apply_batch(chunk).into_iter().flatten() {
            outcome.expect("vote applies");
        }
    }
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    let tally = state.tally(f.nep).expect("tally");
    assert_eq!(tally.ballots as usize, VOTERS);
    let per_vote = (after - before) as f64 / VOTERS as f64;
    // The ballots alone: the heap a copy of the NEP's ballot map takes.
    let ballots = &state
        .proposal(f.nep)
        .expect("nep")
        .vote
        .as_ref()
        .expect("vote")
        .ballots;
    let before_copy = LIVE_BYTES.load(Ordering::Relaxed);
    let copy = ballots.clone();
    let per_ballot = (LIVE_BYTES.load(Ordering::Relaxed) - before_copy) as f64 / copy.len() as f64;
    drop(copy);
    println!(
        "memory: {per_ballot:.0} bytes per stored ballot (B-tree of account -> choice, power)"
    );
    // The ballot itself: its B-tree entry in the NEP's vote box.
    let ballot_entry = std::mem::size_of::<neuroshard_governance::AccountId>()
        + std::mem::size_of::<neuroshard_governance::tally::Ballot>();
    println!(
        "memory: {per_vote:.0} bytes of state per applied vote ({VOTERS} votes: ballot + vote lock + remembered receipt); \
         ballot key+value {ballot_entry} bytes before B-tree overhead; snapshot grows {:.0} bytes per vote",
        (state.to_snapshot_bytes().expect("snapshot").len() - f.state.to_snapshot_bytes().expect("snapshot").len()) as f64 / VOTERS as f64
    );
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    memory_per_ballot(&f);
    let mut group = c.benchmark_group("apply_signed_votes");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(format!("apply_batch/{BATCH}"), |b| {
        b.iter_batched(
            || f.state.clone(),
            |mut state| {
                let outcomes = state.apply_batch(&f.votes[..BATCH]);
                assert!(outcomes.iter().flatten().all(|o| o.is_ok()));
                state
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function(format!("apply_one_by_one/{BATCH}"), |b| {
        b.iter_batched(
            || f.state.clone(),
            |mut state| {
                for (index, entry) in &f.votes[..BATCH] {
                    assert!(state.apply(*index, entry).is_ok());
                }
                state
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
    let _ = account_of(&user_key(0));
}

criterion_group!(benches, bench);
criterion_main!(benches);
