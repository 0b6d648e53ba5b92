//! Attack (b): a flood of garbage bytes and forged signatures at a fixed
//! rate (default 1 200 requests/s, half each), many requests in flight,
//! spread over every validator. Garbage must be refused before the log as
//! undecodable (`invalid_argument`, which the validators name a `Submit`
//! whose bytes do not decode; `malformed` is accepted too), forged
//! commands as `bad_signature`, before the log; nothing may be applied.
//!
//! Garbage never decodes by accident: shorter than the smallest signed
//! command, or with an over-long nonce varint right after the author.
//! Forgeries are well-formed votes and transfers: random signature bytes
//! on the attacker's own funded account, one flipped bit of a valid
//! signature, a valid signature for another chain id, and fresh authors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use neuroshard_governance::{
    AccountId, Amount, Command, CommandSignature, NepId, SignedCommand, VoteChoice,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::client::{self, Kind, Pool, Reply};
use super::honest::describe;
use super::report::AttackReport;
use super::Ctx;

/// Requests in flight at once.
pub const IN_FLIGHT: usize = 96;
/// Longest one request may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The rules garbage may be refused under.
pub const GARBAGE_RULES: &[&str] = &["invalid_argument", "malformed"];
/// The rate the attack must reach.
pub const MIN_RATE: f64 = 1_000.0;

/// Garbage request `k`: never a decodable `SignedCommand`.
pub fn garbage(k: u64, rng: &mut ChaCha8Rng) -> Vec<u8> {
    if k.is_multiple_of(3) {
        // A plausible author, then a nonce varint of eleven 0xff bytes
        // (longer than any u64).
        let mut bytes: Vec<u8> = (0..32).map(|_| rng.gen()).collect();
        bytes.extend(std::iter::repeat_n(0xff, 11));
        let tail = rng.gen_range(0..2048);
        bytes.extend((0..tail).map(|_| rng.gen::<u8>()));
        bytes
    } else {
        // Shorter than the smallest signed command (author 32, nonce,
        // tag, NEP id, signature 65).
        let len = rng.gen_range(0..96);
        (0..len).map(|_| rng.gen()).collect()
    }
}

/// Forged command `k` (well-formed, signature wrong for this chain).
pub fn forgery(
    chain_id: &str,
    k: u64,
    attacker: &SigningKey,
    nep: NepId,
    rng: &mut ChaCha8Rng,
) -> SignedCommand {
    let sink = AccountId(
        SigningKey::from_bytes(&rng.gen())
            .verifying_key()
            .to_bytes(),
    );
    let command = if k.is_multiple_of(2) {
        Command::Vote {
            nep,
            choice: VoteChoice::Yes,
        }
    } else {
        Command::Transfer {
            to: sink,
            amount: Amount(1),
        }
    };
    let nonce = rng.gen_range(1..1_000_000);
    match (k / 2) % 4 {
        0 => {
            let mut c = SignedCommand::sign(chain_id, attacker, nonce, command);
            let mut sig = [0u8; 64];
            rng.fill(&mut sig[..]);
            c.signature = CommandSignature(sig);
            c
        }
        1 => {
            let mut c = SignedCommand::sign(chain_id, attacker, nonce, command);
            let bit = rng.gen_range(0..512);
            c.signature.0[bit / 8] ^= 1 << (bit % 8);
            c
        }
        2 => SignedCommand::sign("another-chain", attacker, nonce, command),
        _ => {
            let fresh = SigningKey::from_bytes(&rng.gen());
            let mut c = SignedCommand::sign(chain_id, &fresh, nonce, command);
            c.signature.0[0] ^= 0x80;
            c
        }
    }
}

pub async fn run(
    ctx: &Ctx,
    pool: &Pool,
    attacker: &SigningKey,
    rate: f64,
    duration: Duration,
) -> AttackReport {
    let report = Arc::new(Mutex::new(AttackReport::new(vec![
        GARBAGE_RULES.to_vec(),
        vec!["bad_signature"],
    ])));
    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let total = (duration.as_secs_f64() * rate) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..IN_FLIGHT {
        let (pool, next, report) = (pool.clone(), next.clone(), report.clone());
        let (chain_id, attacker, nep) = (ctx.chain_id.clone(), attacker.clone(), ctx.honest_nep);
        let seed = ctx.seed ^ ((w as u64) << 20);
        workers.spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total {
                    break;
                }
                let slot = started + period.mul_f64(k as f64);
                tokio::time::sleep_until(slot.into()).await;
                let is_garbage = k.is_multiple_of(2);
                let bytes = if is_garbage {
                    garbage(k / 2, &mut rng)
                } else {
                    let c = forgery(&chain_id, k / 2, &attacker, nep, &mut rng);
                    match postcard::to_stdvec(&c) {
                        Ok(b) => b,
                        Err(_) => continue,
                    }
                };
                let reply = client::submit_bytes(&pool, k as usize, bytes, TIMEOUT).await;
                let want: &[&str] = if is_garbage {
                    GARBAGE_RULES
                } else {
                    &["bad_signature"]
                };
                let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                r.count(&reply);
                match &reply {
                    Reply::Refused(x)
                        if want.contains(&x.rule.as_str()) && x.kind == Kind::Admission => {}
                    Reply::Applied { log_index, .. } => r.finding(format!(
                        "a {} request was APPLIED at index {log_index}",
                        if is_garbage { "garbage" } else { "forged" }
                    )),
                    // Counted; summarized below.
                    Reply::Refused(_) | Reply::Unknown { .. } => {}
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let mut report = Arc::try_unwrap(report)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_else(|arc| arc.lock().unwrap_or_else(|p| p.into_inner()).clone());
    report.elapsed = started.elapsed();
    let rate_seen = report.rate();
    if rate_seen < MIN_RATE {
        report.finding(format!(
            "the flood reached {rate_seen:.0} requests/s, below the {MIN_RATE:.0}/s the attack must reach (target {rate:.0}/s)"
        ));
    }
    for (rule, n) in report.after_log.clone() {
        report.finding(format!(
            "{n} requests reached the log and were refused only when applied [{rule}]"
        ));
    }
    for (rule, n) in report.refusals.clone() {
        if !GARBAGE_RULES.contains(&rule.as_str()) && rule != "bad_signature" {
            report.finding(format!(
                "{n} requests refused as [{rule}], expected {} or bad_signature",
                GARBAGE_RULES.join("/")
            ));
        }
    }
    let unknown: u64 = report.unknown.values().sum();
    if unknown > 0 {
        report.notes.push(format!(
            "{unknown} requests unanswered: {:?}",
            report.unknown
        ));
    }
    let _ = describe;
    report.notes.push(format!(
        "{} requests in {:.1} s = {rate_seen:.0}/s (target {rate:.0}/s, {IN_FLIGHT} in flight)",
        report.sent,
        report.elapsed.as_secs_f64()
    ));
    report.check_expected();
    report
}
