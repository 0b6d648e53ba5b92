//! Both backends side by side: share sign, share verify, combine, verify,
//! and verify_chain over 1000 certificates against 1000 single verifies;
//! plus a raw `blst` verify of the same message, the yardstick for the
//! default scheme's verify.
//!
//! cargo bench -p neuroshard-certificate --bench certificate -- --warm-up-time 1 --measurement-time 3

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{activation_log, Committee};
use criterion::{criterion_group, criterion_main, Criterion};
use neuroshard_certificate::scheme::{ShareIndex, IETF_BASIC_DST};
use neuroshard_certificate::{signing_message, Envelope, SchemeId, Verifier};

const CHAIN_LENGTH: u64 = 1000;

fn bench_backends(c: &mut Criterion) {
    for id in SchemeId::ALL {
        let scheme = id.scheme();
        let committee = Committee::standard(id);
        let keys = &committee.keys;
        let (_, envelope) = activation_log(&committee, 1).remove(0);
        let msg = signing_message(&envelope.payload);
        let shares: Vec<_> = (0..3u32)
            .map(|i| {
                let s = scheme
                    .sign_share(&keys.secret_key_shares[i as usize], &msg)
                    .unwrap();
                (ShareIndex(i), s)
            })
            .collect();
        let sig = scheme.combine(&keys.public_key_set, &shares, &msg).unwrap();
        let group_key = keys.public_key_set.group_public_key();
        let verifier = Verifier::new(committee.info.clone()).unwrap();

        let mut g = c.benchmark_group(id.as_str());
        g.bench_function("share_sign", |b| {
            b.iter(|| {
                scheme
                    .sign_share(&keys.secret_key_shares[0], black_box(&msg))
                    .unwrap()
            })
        });
        g.bench_function("share_verify", |b| {
            b.iter(|| {
                scheme
                    .verify_share(
                        &keys.public_key_set,
                        ShareIndex(1),
                        &shares[1].1,
                        black_box(&msg),
                    )
                    .unwrap()
            })
        });
        g.bench_function("combine_3_of_4_with_share_checks", |b| {
            b.iter(|| {
                scheme
                    .combine(&keys.public_key_set, black_box(&shares), &msg)
                    .unwrap()
            })
        });
        g.bench_function("verify_signature", |b| {
            b.iter(|| scheme.verify(group_key, black_box(&msg), &sig).unwrap())
        });
        g.bench_function("verify_certificate", |b| {
            b.iter(|| verifier.verify(black_box(&envelope)).unwrap())
        });
        if id == SchemeId::G2Rfc9380 {
            // The yardstick: blst on its own, pinned key already parsed, the
            // signature decompressed and group-checked from its bytes.
            let pk = blst::min_pk::PublicKey::key_validate(&group_key.to_bytes()).unwrap();
            let sig_bytes = sig.to_bytes();
            g.bench_function("raw_blst_verify", |b| {
                b.iter(|| {
                    let s = blst::min_pk::Signature::from_bytes(black_box(&sig_bytes)).unwrap();
                    let r = s.verify(true, black_box(&msg), IETF_BASIC_DST, &[], &pk, false);
                    assert_eq!(r, blst::BLST_ERROR::BLST_SUCCESS);
                })
            });
        }
        g.finish();
    }
}

fn bench_chain(c: &mut Criterion) {
    for id in SchemeId::ALL {
        let committee = Committee::standard(id);
        let envelopes: Vec<Envelope> = activation_log(&committee, CHAIN_LENGTH)
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        let verifier = Verifier::new(committee.info.clone()).unwrap();
        let mut g = c.benchmark_group(format!("{}/chain_{CHAIN_LENGTH}", id.as_str()));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(if id == SchemeId::Tc04 {
            40
        } else {
            10
        }));
        g.bench_function("verify_chain", |b| {
            b.iter(|| verifier.verify_chain(black_box(&envelopes)).unwrap())
        });
        g.bench_function("verify_one_by_one", |b| {
            b.iter(|| {
                for e in &envelopes {
                    verifier.verify(black_box(e)).unwrap();
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench_backends, bench_chain);
criterion_main!(benches);
