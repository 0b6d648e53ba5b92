//! Attack (a): oversized commands. Properly signed commands of every size
//! from `MAX_COMMAND_BYTES + 1` up to the validators' transport limit (a
//! `SubmitRequest` of `MAX_API_REQUEST_BYTES`) — both boundaries exactly,
//! random sizes in between — and past it up to the API's response limit
//! and beyond; each must be refused before the log (`command_too_large`;
//! above the transport limit, tonic's own refusal, counted as
//! `transport_limit`). Before them, the largest valid command (every
//! content field at its limit) must be accepted.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use neuroshard_governance::admission::encoded_len;
use neuroshard_governance::limits::MAX_COMMAND_BYTES;
use neuroshard_governance::{Command, Effect, NepId, SignedCommand};
use neuroshard_node::transport::api_service::{MAX_API_MESSAGE_BYTES, MAX_API_REQUEST_BYTES};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::client::{self, Kind, Pool, Reply};
use super::content::{command_of_size, largest_valid_content, Bulk};
use super::honest::describe;
use super::report::AttackReport;
use super::Ctx;

/// Longest one oversized request may take to be answered.
pub const TIMEOUT: Duration = Duration::from_secs(20);
/// Random sizes between the boundaries per round.
pub const RANDOM_SIZES: usize = 16;

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// The largest postcard command a `SubmitRequest` under the validators'
/// request limit can carry: field tag, length varint, bytes.
pub fn transport_max_command() -> usize {
    let mut p = MAX_API_REQUEST_BYTES;
    while 1 + varint_len(p) + p > MAX_API_REQUEST_BYTES {
        p -= 1;
    }
    p
}

/// The sizes of one round: the boundaries and random sizes between.
pub fn sizes(rng: &mut ChaCha8Rng, first_round: bool) -> Vec<usize> {
    let over = MAX_COMMAND_BYTES + 1;
    let limit = transport_max_command();
    let mut out = Vec::new();
    if first_round {
        out.extend([
            over,
            over + 1,
            over + 2,
            MAX_COMMAND_BYTES + 1024,
            limit - 1,
            limit,
            // Above the transport limit: just above, the bulk's length
            // varint step, the API's response limit and past it.
            limit + 1,
            limit + 2,
            (1 << 21) - 1,
            1 << 21,
            MAX_API_MESSAGE_BYTES,
            MAX_API_MESSAGE_BYTES + 1,
            2 * MAX_API_MESSAGE_BYTES,
        ]);
    }
    for _ in 0..RANDOM_SIZES {
        out.push(rng.gen_range(over..=limit));
    }
    for _ in 0..RANDOM_SIZES / 4 {
        out.push(rng.gen_range(limit + 1..=MAX_API_MESSAGE_BYTES));
    }
    out
}

async fn next_nonce(pool: &Pool, key: &SigningKey) -> Option<u64> {
    let account = neuroshard_governance::AccountId(key.verifying_key().to_bytes());
    for i in 0..pool.len() {
        if let Some(a) = client::account(pool, i, &account, TIMEOUT).await {
            return Some(a.next_nonce);
        }
    }
    None
}

/// Sends one command until its outcome is known (identical bytes).
pub async fn ensure(pool: &Pool, command: &SignedCommand, timeout: Duration) -> Reply {
    let mut last = Reply::Unknown {
        rule: "not_sent".into(),
        message: String::new(),
    };
    for attempt in 0..8 {
        last = client::submit(pool, attempt, command, timeout).await;
        if !matches!(last, Reply::Unknown { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last
}

pub async fn run(ctx: &Ctx, pool: &Pool, key: &SigningKey, min: Duration) -> AttackReport {
    let started = Instant::now();
    let mut report = AttackReport::new(vec![vec!["command_too_large"], vec!["transport_limit"]]);
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed ^ 0xA77A);
    let Some(mut nonce) = next_nonce(pool, key).await else {
        report.finding("the attacker's account could not be read".into());
        return report;
    };

    // The largest valid commands: a draft at every limit, then an
    // amendment of it at every limit (one NEP id more in the encoding).
    let mut nep = NepId(1);
    for (k, seed) in [ctx.seed, ctx.seed + 1].into_iter().enumerate() {
        let content = largest_valid_content(seed);
        let command = if k == 0 {
            Command::CreateDraft { content }
        } else {
            Command::AmendDraft { nep, content }
        };
        let signed = SignedCommand::sign(&ctx.chain_id, key, nonce, command);
        let size = encoded_len(&signed);
        let reply = ensure(pool, &signed, TIMEOUT).await;
        report.count(&reply);
        match &reply {
            Reply::Applied { receipt, .. } => {
                nonce += 1;
                if let Effect::DraftCreated { nep: id, .. } = receipt.effect {
                    nep = id;
                }
                report.notes.push(format!(
                    "largest valid {} ({size} bytes of MAX_COMMAND_BYTES = {MAX_COMMAND_BYTES}) accepted at index {}",
                    signed.command.name(),
                    receipt.position.log_index
                ));
            }
            other => {
                if matches!(other, Reply::Refused(r) if r.kind == Kind::Apply) {
                    nonce += 1;
                }
                report.finding(format!(
                    "the largest valid {} ({size} bytes) was not accepted: {}",
                    signed.command.name(),
                    describe(other)
                ));
            }
        }
    }

    let limit = transport_max_command();
    let mut round = 0usize;
    let mut biggest_refused = 0usize;
    let mut k = 0usize;
    while round == 0 || started.elapsed() < min {
        for size in sizes(&mut rng, round == 0) {
            let kind = Bulk::ALL[k % Bulk::ALL.len()];
            k += 1;
            let Some(signed) = command_of_size(&ctx.chain_id, key, nonce, kind, nep, size) else {
                report.finding(format!("could not build a {size}-byte {}", kind.name()));
                continue;
            };
            let reply = client::submit(pool, k, &signed, TIMEOUT).await;
            report.count(&reply);
            let want = if size <= limit {
                "command_too_large"
            } else {
                "transport_limit"
            };
            match &reply {
                Reply::Refused(r) if r.rule == want && r.kind == Kind::Admission => {
                    biggest_refused = biggest_refused.max(size);
                }
                Reply::Refused(r) => {
                    if r.kind == Kind::Apply {
                        // It was ordered: its nonce is used.
                        nonce = next_nonce(pool, key).await.unwrap_or(nonce + 1);
                    }
                    report.finding(format!(
                        "{size}-byte {} (expected [{want}] before the log): {}",
                        kind.name(),
                        describe(&reply)
                    ));
                }
                Reply::Applied { log_index, .. } => {
                    nonce += 1;
                    report.finding(format!(
                        "{size}-byte {} was APPLIED at index {log_index} (above MAX_COMMAND_BYTES = {MAX_COMMAND_BYTES})",
                        kind.name()
                    ));
                }
                Reply::Unknown { .. } => report.finding(format!(
                    "{size}-byte {} (expected [{want}]): {}",
                    kind.name(),
                    describe(&reply)
                )),
            }
        }
        round += 1;
    }
    report.notes.push(format!(
        "sizes {}..={limit} refused before the log, up to {} refused by the transport (requests above MAX_API_REQUEST_BYTES = {MAX_API_REQUEST_BYTES}); {} rounds",
        MAX_COMMAND_BYTES + 1,
        2 * MAX_API_MESSAGE_BYTES,
        round
    ));
    report.elapsed = started.elapsed();
    report.check_expected();
    report
}
