//! Attack (c): replayed nonces and identical retries. The attacker
//! applies a transfer, then sends its identical bytes again to every
//! validator (each must answer with the original receipt: same log index,
//! same receipt), sends a different command under the used nonce (refused
//! as `nonce_replay`, before the log), replays its own older commands
//! (original receipt while remembered, `nonce_replay` after), replays an
//! apply refusal (the same refusal at the same index), and replays the
//! honest clients' acknowledged commands byte for byte (their original
//! receipt, or `nonce_replay`; never applied twice — the honest balances
//! are checked at the end).

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use neuroshard_governance::limits::MAX_REMEMBERED_OUTCOMES;
use neuroshard_governance::{AccountId, Amount, Command, SignedCommand, NEURO};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::client::{self, Kind, Pool, Reply};
use super::honest::describe;
use super::report::AttackReport;
use super::Ctx;

pub const TIMEOUT: Duration = Duration::from_secs(5);

/// One applied (or apply-refused) command of the attacker.
struct Sent {
    nonce: u64,
    bytes: Vec<u8>,
    /// What it got the first time: a receipt (index, JSON) or a refusal
    /// (rule, index).
    first: Reply,
}

fn same_answer(a: &Reply, b: &Reply) -> bool {
    match (a, b) {
        (
            Reply::Applied {
                log_index: i,
                receipt_json: x,
                ..
            },
            Reply::Applied {
                log_index: j,
                receipt_json: y,
                ..
            },
        ) => i == j && x == y,
        // A remembered refusal keeps its entry's index.
        (Reply::Refused(x), Reply::Refused(y)) => {
            x.rule == y.rule && x.kind == y.kind && x.log_index == y.log_index
        }
        _ => false,
    }
}

pub async fn run(ctx: &Ctx, pool: &Pool, key: &SigningKey, duration: Duration) -> AttackReport {
    let started = Instant::now();
    let mut report = AttackReport::new(vec![vec!["nonce_replay"]]);
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed ^ 0x5EED);
    let account = AccountId(key.verifying_key().to_bytes());
    let Some(view) = client::account(pool, 0, &account, TIMEOUT).await else {
        report.finding("the attacker's account could not be read".into());
        return report;
    };
    let mut nonce = view.next_nonce;
    let sink = AccountId(
        SigningKey::from_bytes(&rng.gen())
            .verifying_key()
            .to_bytes(),
    );
    let n = pool.len();
    let mut history: Vec<Sent> = Vec::new();
    let (mut retries_ok, mut replays_refused, mut honest_replays) = (0u64, 0u64, 0u64);
    let mut round = 0u64;
    while started.elapsed() < duration {
        round += 1;
        // Every tenth command is one the state refuses (more than the
        // balance): its replay must get the same refusal at the same index.
        let amount = if round.is_multiple_of(10) {
            Amount(u64::MAX / 4)
        } else {
            Amount(NEURO / 100 + round)
        };
        let signed = SignedCommand::sign(
            &ctx.chain_id,
            key,
            nonce,
            Command::Transfer { to: sink, amount },
        );
        let Ok(bytes) = postcard::to_stdvec(&signed) else {
            break;
        };
        let first = client::submit_bytes(pool, round as usize, bytes.clone(), TIMEOUT).await;
        report.count(&first);
        match &first {
            Reply::Applied { .. } => {}
            Reply::Refused(r) if r.kind == Kind::Apply => {}
            other => {
                // Not ordered (or unknown): nothing to replay this round.
                if let Reply::Unknown { .. } = other {
                    if let Some(v) = client::account(pool, 0, &account, TIMEOUT).await {
                        nonce = v.next_nonce;
                    }
                } else {
                    report.finding(format!("attacker transfer {nonce}: {}", describe(other)));
                }
                continue;
            }
        }
        // Identical retries, to every validator at once.
        let retries = futures_all(
            (0..n)
                .map(|i| client::submit_bytes(pool, i, bytes.clone(), TIMEOUT))
                .collect(),
        )
        .await;
        for (i, again) in retries.iter().enumerate() {
            report.count(again);
            if same_answer(&first, again) {
                retries_ok += 1;
            } else {
                report.finding(format!(
                    "identical retry of nonce {nonce} at validator {i}: first {}, then {}",
                    describe(&first),
                    describe(again)
                ));
            }
        }
        // A different command under the used nonce.
        let other = SignedCommand::sign(
            &ctx.chain_id,
            key,
            nonce,
            Command::Transfer {
                to: sink,
                amount: Amount(amount.0.wrapping_add(1)),
            },
        );
        let reply = client::submit(pool, round as usize + 1, &other, TIMEOUT).await;
        report.count(&reply);
        match &reply {
            Reply::Refused(r) if r.rule == "nonce_replay" && r.kind == Kind::Admission => {
                replays_refused += 1
            }
            _ => report.finding(format!(
                "a different command under used nonce {nonce} (expected [nonce_replay] before the log): {}",
                describe(&reply)
            )),
        }
        history.push(Sent {
            nonce,
            bytes,
            first,
        });
        nonce += 1;
        // One of its own older commands, remembered or not.
        if history.len() > 1 {
            let old = &history[rng.gen_range(0..history.len() - 1)];
            let again =
                client::submit_bytes(pool, round as usize + 2, old.bytes.clone(), TIMEOUT).await;
            report.count(&again);
            let remembered = nonce - 1 - old.nonce < MAX_REMEMBERED_OUTCOMES as u64;
            let fine = match &again {
                _ if same_answer(&old.first, &again) => true,
                Reply::Refused(r) => {
                    !remembered && r.rule == "nonce_replay" && r.kind == Kind::Admission
                }
                _ => false,
            };
            if !fine {
                report.finding(format!(
                    "replay of its nonce {} ({}remembered): first {}, now {}",
                    old.nonce,
                    if remembered { "" } else { "no longer " },
                    describe(&old.first),
                    describe(&again)
                ));
            }
        }
        // The honest clients' recent acknowledged commands, byte for byte.
        for (bytes, log_index, receipt_json) in ctx.honest.recent(2) {
            let again = client::submit_bytes(pool, rng.gen_range(0..n), bytes, TIMEOUT).await;
            report.count(&again);
            honest_replays += 1;
            match &again {
                Reply::Applied {
                    log_index: i,
                    receipt_json: j,
                    ..
                } if *i == log_index && *j == receipt_json => {}
                Reply::Refused(r) if r.rule == "nonce_replay" && r.kind == Kind::Admission => {}
                Reply::Unknown { .. } => {}
                other => report.finding(format!(
                    "replay of an honest command acknowledged at {log_index}: {}",
                    describe(other)
                )),
            }
        }
    }
    report.elapsed = started.elapsed();
    report.notes.push(format!(
        "{} attacker commands ordered; {retries_ok} identical retries answered with the original answer; {replays_refused} different commands under a used nonce refused; {honest_replays} honest commands replayed",
        history.len()
    ));
    report.check_expected();
    report
}

/// Runs futures concurrently, results in order.
async fn futures_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
