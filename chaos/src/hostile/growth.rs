//! Attack (d): growth loops, each driven until the attacker's price (its
//! balance: `insufficient_balance`), a structural limit
//! (`too_many_open_drafts`, `too_many_accounts`) or the state budget
//! (`state_budget_exceeded`, at ≥ 90 % of `gov.state_budget_bytes`) stops
//! it, then kept pushing against that wall until the phase's minimum
//! time. A loop that nothing stops within its time bound is a finding.
//!
//! * `drafts-withdraw`: CreateDraft of a largest valid content, Withdraw,
//!   again — each withdrawal burns the draft's deposit;
//! * `fresh-voters`: a transfer of one base unit to a fresh account (the
//!   account-creation fee is burned), whose vote is then refused (no
//!   voting power); with it, a vote from a fresh account nobody funded;
//! * `max-drafts`: largest valid drafts up to the per-author limit;
//! * `fresh-accounts`: several attackers transferring one base unit to
//!   fresh accounts (a fee each), until the state budget refuses.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use neuroshard_governance::{AccountId, Amount, Command, Effect, SignedCommand, VoteChoice, NEURO};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::client::{self, Kind, Pool, Reply};
use super::content::largest_valid_content;
use super::honest::describe;
use super::report::AttackReport;
use super::Ctx;

pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Refusals that stop a growth loop.
pub const STOP_RULES: &[&str] = &[
    "insufficient_balance",
    "state_budget_exceeded",
    "too_many_open_drafts",
    "too_many_open_proposals",
    "too_many_accounts",
];
/// Once stopped, how often the attacker tries again.
pub const AFTER_STOP_PACE: Duration = Duration::from_millis(50);
/// The budget must not refuse growth before this share of it is used.
pub const BUDGET_SHARE_BPS: u64 = 9_000;

/// Which loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loop {
    DraftsWithdraw,
    FreshVoters,
    MaxDrafts,
    FreshAccounts,
}

impl Loop {
    pub fn name(self) -> &'static str {
        match self {
            Loop::DraftsWithdraw => "growth: drafts+withdraw",
            Loop::FreshVoters => "growth: fresh voters",
            Loop::MaxDrafts => "growth: max drafts",
            Loop::FreshAccounts => "growth: fresh accounts",
        }
    }
}

/// One attacker account sending one command at a time.
struct Attacker<'a> {
    pool: &'a Pool,
    chain_id: &'a str,
    key: SigningKey,
    nonce: u64,
    /// Spreads the sends over the validators.
    turn: usize,
}

impl<'a> Attacker<'a> {
    async fn new(pool: &'a Pool, chain_id: &'a str, key: SigningKey) -> Option<Attacker<'a>> {
        let account = AccountId(key.verifying_key().to_bytes());
        let view = client::account(pool, 0, &account, TIMEOUT).await?;
        Some(Self {
            pool,
            chain_id,
            key,
            nonce: view.next_nonce,
            turn: 0,
        })
    }

    /// Signs `command` with the next nonce and sends it until its outcome
    /// is known (identical bytes); the nonce moves on when it was ordered.
    async fn send(&mut self, command: Command) -> Reply {
        let signed = SignedCommand::sign(self.chain_id, &self.key, self.nonce, command);
        let mut reply = Reply::Unknown {
            rule: "not_sent".into(),
            message: String::new(),
        };
        for _ in 0..6 {
            self.turn += 1;
            reply = client::submit(self.pool, self.turn, &signed, TIMEOUT).await;
            if !matches!(reply, Reply::Unknown { .. }) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match &reply {
            Reply::Applied { .. } => self.nonce += 1,
            Reply::Refused(r) if r.kind == Kind::Apply => self.nonce += 1,
            Reply::Unknown { .. } => {
                let account = AccountId(self.key.verifying_key().to_bytes());
                if let Some(v) = client::account(self.pool, 0, &account, TIMEOUT).await {
                    self.nonce = v.next_nonce;
                }
            }
            Reply::Refused(_) => {}
        }
        reply
    }
}

/// How a loop ended.
#[derive(Default)]
struct Progress {
    iterations: u64,
    burned: u64,
    stopped: Option<(String, u64)>,
}

impl Progress {
    /// Notes a stopping refusal; true when `reply` is one.
    fn stop_on(&mut self, reply: &Reply) -> bool {
        if let Reply::Refused(r) = reply {
            if STOP_RULES.contains(&r.rule.as_str()) {
                if self.stopped.is_none() {
                    self.stopped = Some((r.rule.clone(), self.iterations));
                }
                return true;
            }
        }
        false
    }
}

fn fresh(rng: &mut ChaCha8Rng) -> SigningKey {
    SigningKey::from_bytes(&rng.gen())
}

fn account_of(key: &SigningKey) -> AccountId {
    AccountId(key.verifying_key().to_bytes())
}

/// Runs one loop with `keys` (one attacker for every loop but
/// `FreshAccounts`, which runs them all in parallel).
pub async fn run(
    ctx: &Ctx,
    pool: &Pool,
    which: Loop,
    keys: &[SigningKey],
    min: Duration,
    max: Duration,
) -> AttackReport {
    let started = Instant::now();
    let mut report = AttackReport::new(vec![STOP_RULES.to_vec()]);
    let deadline = started + max;
    let floor = started + min;
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed ^ which as u64 ^ 0x6E0);
    let mut progress = Progress::default();
    match which {
        Loop::FreshAccounts => {
            let mut tasks = tokio::task::JoinSet::new();
            for (k, key) in keys.iter().enumerate() {
                let (pool, chain_id, key) = (pool.clone(), ctx.chain_id.clone(), key.clone());
                let seed = ctx.seed ^ ((k as u64 + 1) << 32);
                tasks.spawn(async move {
                    let mut report = AttackReport::default();
                    let mut progress = Progress::default();
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    let Some(mut a) = Attacker::new(&pool, &chain_id, key).await else {
                        report.finding("an attacker's account could not be read".into());
                        return (report, progress);
                    };
                    while Instant::now() < deadline
                        && (progress.stopped.is_none() || Instant::now() < floor)
                    {
                        let to = account_of(&fresh(&mut rng));
                        let reply = a
                            .send(Command::Transfer {
                                to,
                                amount: Amount(1),
                            })
                            .await;
                        report.count(&reply);
                        progress.iterations += 1;
                        progress.burned += burned(&reply);
                        if progress.stop_on(&reply) {
                            tokio::time::sleep(AFTER_STOP_PACE).await;
                        }
                    }
                    (report, progress)
                });
            }
            let mut stops = Vec::new();
            while let Some(done) = tasks.join_next().await {
                let Ok((r, p)) = done else { continue };
                merge(&mut report, r);
                progress.iterations += p.iterations;
                progress.burned += p.burned;
                stops.push(p.stopped.clone());
                if progress.stopped.is_none() {
                    progress.stopped = p.stopped;
                }
            }
            if stops.iter().any(Option::is_none) {
                // Every attacker must have been stopped.
                progress.stopped = None;
            }
        }
        _ => {
            let Some(mut a) = Attacker::new(pool, &ctx.chain_id, keys[0].clone()).await else {
                report.finding("the attacker's account could not be read".into());
                return report;
            };
            while Instant::now() < deadline
                && (progress.stopped.is_none() || Instant::now() < floor)
            {
                progress.iterations += 1;
                let seed = ctx
                    .seed
                    .wrapping_add(1_000 * which as u64 + progress.iterations);
                match which {
                    Loop::DraftsWithdraw | Loop::MaxDrafts => {
                        let reply = a
                            .send(Command::CreateDraft {
                                content: largest_valid_content(seed),
                            })
                            .await;
                        report.count(&reply);
                        if progress.stop_on(&reply) {
                            tokio::time::sleep(AFTER_STOP_PACE).await;
                            continue;
                        }
                        let nep = match &reply {
                            Reply::Applied { receipt, .. } => match receipt.effect {
                                Effect::DraftCreated { nep, .. } => nep,
                                _ => continue,
                            },
                            other => {
                                report.finding(format!("create-draft: {}", describe(other)));
                                continue;
                            }
                        };
                        if which == Loop::DraftsWithdraw {
                            let reply = a.send(Command::Withdraw { nep }).await;
                            report.count(&reply);
                            match &reply {
                                Reply::Applied { .. } => progress.burned += burned(&reply),
                                other => {
                                    progress.stop_on(other);
                                    report.finding(format!("withdraw: {}", describe(other)));
                                }
                            }
                        }
                    }
                    Loop::FreshVoters => {
                        let voter = fresh(&mut rng);
                        let reply = a
                            .send(Command::Transfer {
                                to: account_of(&voter),
                                amount: Amount(1),
                            })
                            .await;
                        report.count(&reply);
                        if progress.stop_on(&reply) {
                            tokio::time::sleep(AFTER_STOP_PACE).await;
                            continue;
                        }
                        progress.burned += burned(&reply);
                        let vote = Command::Vote {
                            nep: ctx.honest_nep,
                            choice: VoteChoice::No,
                        };
                        // The funded fresh account votes (no power at the
                        // vote's snapshot), and so does one nobody funded.
                        let funded = SignedCommand::sign(&ctx.chain_id, &voter, 1, vote.clone());
                        let unfunded =
                            SignedCommand::sign(&ctx.chain_id, &fresh(&mut rng), 1, vote);
                        let turn = progress.iterations as usize;
                        let (x, y) = tokio::join!(
                            client::submit(pool, turn, &funded, TIMEOUT),
                            client::submit(pool, turn + 1, &unfunded, TIMEOUT)
                        );
                        report.count(&x);
                        report.count(&y);
                        for r in [&x, &y] {
                            if let Reply::Applied { log_index, .. } = r {
                                report.finding(format!(
                                    "a vote of a fresh account without stake was applied at {log_index}"
                                ));
                            }
                        }
                    }
                    Loop::FreshAccounts => unreachable!("handled above"),
                }
            }
        }
    }
    report.elapsed = started.elapsed();
    let burned = format!("{:.2} NEURO burned", progress.burned as f64 / NEURO as f64);
    match &progress.stopped {
        Some((rule, at)) => {
            report.notes.push(format!(
                "stopped by [{rule}] after {at} iterations ({} in all, {burned})",
                progress.iterations
            ));
            if rule == "state_budget_exceeded" {
                if let Some((bytes, budget)) = report.budget_refusal {
                    report.notes.push(format!(
                        "the budget refused at {bytes} of {budget} charged bytes ({:.1} %)",
                        bytes as f64 * 100.0 / budget.max(1) as f64
                    ));
                    if bytes * 10_000 < budget * BUDGET_SHARE_BPS {
                        report.finding(format!(
                            "the state budget refused growth at {bytes} of {budget} bytes, below {}%",
                            BUDGET_SHARE_BPS / 100
                        ));
                    }
                }
            }
        }
        None => report.finding(format!(
            "not stopped by price, a limit or the state budget within {:.0} s: {} iterations, {burned}",
            max.as_secs_f64(),
            progress.iterations
        )),
    }
    report.check_expected();
    report
}

/// What an applied command burned, from its receipt's effect
/// (`fee_burned` of a transfer, `deposit_burned` of a withdrawal; 0 when
/// the receipt names none).
fn burned(reply: &Reply) -> u64 {
    let Reply::Applied { receipt_json, .. } = reply else {
        return 0;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(receipt_json) else {
        return 0;
    };
    let Some(effect) = v.get("effect").and_then(|e| e.as_object()) else {
        return 0;
    };
    effect
        .values()
        .filter_map(|fields| {
            ["fee_burned", "deposit_burned"]
                .iter()
                .find_map(|k| fields.get(*k).and_then(serde_json::Value::as_u64))
        })
        .sum()
}

fn merge(into: &mut AttackReport, from: AttackReport) {
    into.sent += from.sent;
    into.applied += from.applied;
    for (k, v) in from.refusals {
        *into.refusals.entry(k).or_default() += v;
    }
    for (k, v) in from.after_log {
        *into.after_log.entry(k).or_default() += v;
    }
    for (k, v) in from.unknown {
        *into.unknown.entry(k).or_default() += v;
    }
    into.findings.extend(from.findings);
    into.notes.extend(from.notes);
    if from.budget_refusal.is_some() {
        into.budget_refusal = from.budget_refusal;
    }
}

/// Fills the state to at least `target` charged bytes with transfers to
/// fresh accounts from `keys` (in parallel), checking the state's charge
/// (`GetStatus` of `admin`'s validators) every `CHECK_EVERY` transfers.
/// Returns the charge reached and the transfers sent; stops at `max`.
pub async fn fill_to(
    ctx: &Ctx,
    pool: &Pool,
    admin: &Pool,
    keys: &[SigningKey],
    target: u64,
    max: Duration,
) -> (u64, u64) {
    const CHECK_EVERY: u64 = 64;
    let state = || async {
        let mut best = 0;
        for i in 0..admin.len() {
            if let Some(s) = client::status(admin, i, Duration::from_secs(2)).await {
                best = best.max(s.state_bytes);
            }
        }
        best
    };
    let deadline = Instant::now() + max;
    let mut reached = state().await;
    let mut sent = 0u64;
    let mut attackers = Vec::new();
    for key in keys {
        if let Some(a) = Attacker::new(pool, &ctx.chain_id, key.clone()).await {
            attackers.push(a);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed ^ 0xF111);
    while reached < target && Instant::now() < deadline && !attackers.is_empty() {
        for _ in 0..CHECK_EVERY.div_ceil(attackers.len() as u64) {
            let sends = attackers.iter_mut().map(|a| {
                let to = account_of(&fresh(&mut rng));
                a.send(Command::Transfer {
                    to,
                    amount: Amount(1),
                })
            });
            let replies = futures_join_all(sends).await;
            sent += replies.len() as u64;
            if replies
                .iter()
                .any(|r| matches!(r, Reply::Refused(r) if STOP_RULES.contains(&r.rule.as_str())))
            {
                return (state().await, sent);
            }
        }
        reached = state().await;
    }
    (reached, sent)
}

/// Runs the futures concurrently (in one task) and collects their outputs.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
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
