//! What one command signature check costs, alone (`verify_one`; a lone
//! check through `verify_each`, as at admission, is the same single check)
//! and per signature in a batch of 64 (`verify_batch`: the signature
//! batcher, a forwarded batch, the check of an appended entry).
//!
//! Run: `cargo bench -p neuroshard-governance --bench signatures`. The
//! workspace builds curve25519-dalek's AVX-512 IFMA backend, chosen at run
//! time when the CPU has it (`.cargo/config.toml`); the AVX2 figure for
//! comparison, in a target directory of its own (a RUSTFLAGS variable
//! replaces the config's flags, and would rebuild the shared one):
//! `CARGO_TARGET_DIR=target/dalek-simd RUSTFLAGS="--cfg tokio_unstable --cfg
//! curve25519_dalek_backend=\"simd\"" cargo bench -p neuroshard-governance
//! --bench signatures`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::{Signer, SigningKey};
use neuroshard_governance::signature::{verify_batch, verify_one};
use neuroshard_governance::AccountId;

const BATCH: usize = 64;

struct Signed {
    authors: Vec<AccountId>,
    messages: Vec<Vec<u8>>,
    signatures: Vec<[u8; 64]>,
}

fn signed(n: usize) -> Signed {
    let mut s = Signed {
        authors: Vec::new(),
        messages: Vec::new(),
        signatures: Vec::new(),
    };
    for i in 0..n {
        let key = SigningKey::from_bytes(&[(i % 251) as u8 + 1; 32]);
        // About the size of a signed transfer's message.
        let message = format!("neuroshard bench message {i:>8} {}", "x".repeat(120)).into_bytes();
        s.signatures.push(key.sign(&message).to_bytes());
        s.authors.push(AccountId(key.verifying_key().to_bytes()));
        s.messages.push(message);
    }
    s
}

fn bench(c: &mut Criterion) {
    let s = signed(BATCH);
    let mut g = c.benchmark_group("signature");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one alone", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % BATCH;
            assert!(verify_one(&s.authors[i], &s.messages[i], &s.signatures[i]));
        })
    });
    g.throughput(Throughput::Elements(BATCH as u64));
    let items: Vec<_> = (0..BATCH)
        .map(|i| (&s.authors[i], s.messages[i].as_slice(), &s.signatures[i]))
        .collect();
    g.bench_function("batch of 64", |b| b.iter(|| assert!(verify_batch(&items))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
