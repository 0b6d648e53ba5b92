//! The honest workload that runs through the whole suite: a few clients,
//! each with its own account, sending one command at a time at a steady
//! pace — voters re-voting on the suite's open NEP, two accounts
//! transferring small amounts to each other. Every command is re-sent
//! with identical bytes until its outcome is known; its latency (first
//! send to known outcome) and outcome are recorded under the phase (the
//! attack) during which it was first sent.
//!
//! At the end every acknowledged command is looked for in the committee's
//! state ([`verify`]): its nonce consumed, its log index applied and in
//! nonce order, the last remembered ones answered again with the same
//! receipt when re-sent, and the transfer accounts' balances equal to what
//! the acknowledged transfers imply.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use neuroshard_governance::limits::MAX_REMEMBERED_OUTCOMES;
use neuroshard_governance::{AccountId, Amount, Command, NepId, SignedCommand, VoteChoice};

use super::client::{self, Kind, Pool, Reply, QUOTA_RULES};

/// Longest one send waits for its answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest an honest command is retried before it counts as unresolved.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Amount of each honest transfer (base units).
pub const TRANSFER_UNITS: u64 = 1_000;

/// What an honest client does.
#[derive(Clone, Debug)]
pub enum Role {
    /// Votes on `nep`, cycling yes / no / abstain (each vote replaces the
    /// previous ballot).
    Voter { nep: NepId },
    /// Transfers [`TRANSFER_UNITS`] to `to` (another honest account).
    Transfer { to: AccountId },
}

#[derive(Clone)]
pub struct HonestClient {
    pub key: SigningKey,
    pub role: Role,
    /// The account's balance at genesis (base units).
    pub genesis_balance: u64,
}

impl HonestClient {
    pub fn account(&self) -> AccountId {
        AccountId(self.key.verifying_key().to_bytes())
    }
}

/// How one honest command ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    Acked {
        log_index: u64,
        receipt_json: String,
    },
    Refused {
        rule: String,
        kind: Kind,
    },
    Unresolved {
        last: String,
    },
}

/// One honest command.
#[derive(Clone, Debug)]
pub struct Op {
    pub client: usize,
    pub phase: usize,
    pub nonce: u64,
    pub command: Command,
    pub bytes: Vec<u8>,
    /// When it was first sent (ms since the epoch).
    pub sent_ms: u64,
    pub latency: Duration,
    /// Sends until the outcome was known (1: answered at once).
    pub sends: u32,
    /// Whether its latency counts in its phase's percentiles (not while a
    /// row prepares, e.g. fills the state before its attack).
    pub measured: bool,
    pub outcome: Outcome,
}

/// What the honest clients share with the suite.
pub struct Honest {
    pub clients: Vec<HonestClient>,
    ops: Mutex<Vec<Op>>,
    phase: AtomicUsize,
    unmeasured: AtomicBool,
    stop: AtomicBool,
    /// Recently acknowledged commands (bytes, log index, receipt JSON), for
    /// the replay attack to send again.
    recent: Mutex<VecDeque<(Vec<u8>, u64, String)>>,
}

/// Recent acknowledged commands kept for the replay attack.
pub const RECENT: usize = 256;

impl Honest {
    pub fn new(clients: Vec<HonestClient>) -> Arc<Self> {
        Arc::new(Self {
            clients,
            ops: Mutex::new(Vec::new()),
            phase: AtomicUsize::new(0),
            unmeasured: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            recent: Mutex::new(VecDeque::new()),
        })
    }

    pub fn set_phase(&self, phase: usize) {
        self.phase.store(phase, Ordering::Relaxed);
        self.unmeasured.store(false, Ordering::Relaxed);
    }

    /// Commands first sent from now until the next [`Honest::set_phase`]
    /// or `set_measured(true)` are checked but their latency is not
    /// measured (a row preparing its attack).
    pub fn set_measured(&self, measured: bool) {
        self.unmeasured.store(!measured, Ordering::Relaxed);
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Up to `n` recently acknowledged commands.
    pub fn recent(&self, n: usize) -> Vec<(Vec<u8>, u64, String)> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().rev().take(n).cloned().collect()
    }

    fn record(&self, op: Op) {
        if let Outcome::Acked {
            log_index,
            receipt_json,
        } = &op.outcome
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.push_back((op.bytes.clone(), *log_index, receipt_json.clone()));
            while recent.len() > RECENT {
                recent.pop_front();
            }
        }
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((25u64 << attempt.min(4)).min(400))
}

/// One honest client until the suite stops it. Its account has used no
/// nonce before (genesis accounts).
pub async fn run(honest: Arc<Honest>, pool: Pool, chain_id: String, id: usize, pace: Duration) {
    let me = honest.clients[id].clone();
    let n = pool.len();
    let mut nonce = 1u64;
    let mut k = 0usize;
    while !honest.stopped() {
        let command = match &me.role {
            Role::Voter { nep } => Command::Vote {
                nep: *nep,
                choice: [VoteChoice::Yes, VoteChoice::No, VoteChoice::Abstain][k % 3],
            },
            Role::Transfer { to } => Command::Transfer {
                to: *to,
                amount: Amount(TRANSFER_UNITS),
            },
        };
        k += 1;
        let signed = SignedCommand::sign(&chain_id, &me.key, nonce, command.clone());
        let Ok(bytes) = postcard::to_stdvec(&signed) else {
            return;
        };
        let phase = honest.phase.load(Ordering::Relaxed);
        let measured = !honest.unmeasured.load(Ordering::Relaxed);
        let started = Instant::now();
        let sent_ms = crate::real::journal::now_ms();
        let mut sends = 0u32;
        let outcome = loop {
            let replica = (id + sends as usize) % n;
            sends += 1;
            let last =
                match client::submit_bytes(&pool, replica, bytes.clone(), ATTEMPT_TIMEOUT).await {
                    Reply::Applied {
                        log_index,
                        receipt_json,
                        ..
                    } => {
                        break Outcome::Acked {
                            log_index,
                            receipt_json,
                        }
                    }
                    Reply::Refused(r) if !QUOTA_RULES.contains(&r.rule.as_str()) => {
                        break Outcome::Refused {
                            rule: r.rule,
                            kind: r.kind,
                        }
                    }
                    Reply::Refused(r) => (format!("{}: {}", r.rule, r.message), false),
                    Reply::Unknown { rule, message } => {
                        // No answer and no status from a validator: the
                        // connection itself failed (a validator down or
                        // restarting).
                        let unreachable = rule == "status_unavailable";
                        (format!("{rule}: {message}"), unreachable)
                    }
                };
            let (last, unreachable) = last;
            if started.elapsed() > MAX_WAIT {
                break Outcome::Unresolved { last };
            }
            // As a client with a list of validators does: one it cannot
            // reach is skipped at once, the back-off comes after a round.
            if unreachable && !(sends as usize).is_multiple_of(n) {
                continue;
            }
            tokio::time::sleep(backoff(sends)).await;
        };
        let latency = started.elapsed();
        match &outcome {
            Outcome::Acked { .. }
            | Outcome::Refused {
                kind: Kind::Apply, ..
            } => nonce += 1,
            // Not ordered: the nonce is still free.
            Outcome::Refused { .. } => {}
            Outcome::Unresolved { .. } => {
                // As a real client must: ask which nonce is next.
                for r in 0..n {
                    if let Some(a) =
                        client::account(&pool, (id + r) % n, &me.account(), ATTEMPT_TIMEOUT).await
                    {
                        nonce = a.next_nonce;
                        break;
                    }
                }
            }
        }
        honest.record(Op {
            client: id,
            phase,
            nonce: signed.nonce,
            command,
            bytes,
            sent_ms,
            latency,
            sends,
            measured,
            outcome,
        });
        tokio::time::sleep(pace).await;
    }
}

/// What the honest clients saw during one phase.
#[derive(Clone, Debug, Default)]
pub struct PhaseStats {
    pub acked: usize,
    /// Acknowledged and found applied.
    pub applied: usize,
    pub refused: BTreeMap<String, usize>,
    pub unresolved: usize,
    /// The last answer of each unresolved command.
    pub unresolved_last: Vec<String>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Commands that needed more than one send, and the most sends.
    pub retried: usize,
    pub max_sends: u32,
    /// Commands whose latency is not measured (sent while the row prepared).
    pub unmeasured: usize,
}

/// The `q`-quantile (nearest rank) of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Per-phase statistics; `applied[i]` says whether op i was found applied.
pub fn phase_stats(ops: &[Op], applied: &[bool], phases: usize) -> Vec<PhaseStats> {
    let mut stats = vec![PhaseStats::default(); phases];
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); phases];
    for (op, ok) in ops.iter().zip(applied) {
        let Some(s) = stats.get_mut(op.phase) else {
            continue;
        };
        if op.sends > 1 {
            s.retried += 1;
        }
        s.max_sends = s.max_sends.max(op.sends);
        match &op.outcome {
            Outcome::Acked { .. } => {
                s.acked += 1;
                if *ok {
                    s.applied += 1;
                }
                if op.measured {
                    latencies[op.phase].push(op.latency.as_secs_f64() * 1e3);
                } else {
                    s.unmeasured += 1;
                }
            }
            Outcome::Refused { rule, .. } => *s.refused.entry(rule.clone()).or_default() += 1,
            Outcome::Unresolved { last } => {
                s.unresolved += 1;
                s.unresolved_last.push(last.clone());
            }
        }
    }
    for (s, mut l) in stats.iter_mut().zip(latencies) {
        l.sort_by(f64::total_cmp);
        s.p50_ms = quantile(&l, 0.50);
        s.p99_ms = quantile(&l, 0.99);
        s.max_ms = l.last().copied();
    }
    stats
}

/// Looks for every acknowledged honest command in the committee's state.
/// Returns, per op, whether it was found applied, and the findings with
/// the phase of the op they are about (`None`: the end of the run).
pub async fn verify(honest: &Honest, pool: &Pool) -> (Vec<bool>, Vec<(Option<usize>, String)>) {
    let ops = honest.ops();
    let mut ok = vec![true; ops.len()];
    let mut findings = Vec::new();
    let n = pool.len();
    // The balance each transfer account should end with.
    let mut expected: BTreeMap<AccountId, i128> = honest
        .clients
        .iter()
        .map(|c| (c.account(), i128::from(c.genesis_balance)))
        .collect();
    let mut ambiguous: Vec<AccountId> = Vec::new();
    for op in &ops {
        let from = honest.clients[op.client].account();
        match (&op.outcome, &op.command) {
            (Outcome::Acked { .. }, Command::Transfer { to, amount }) => {
                *expected.entry(from).or_default() -= i128::from(amount.0);
                *expected.entry(*to).or_default() += i128::from(amount.0);
            }
            (Outcome::Unresolved { .. }, Command::Transfer { to, .. }) => {
                ambiguous.push(from);
                ambiguous.push(*to);
            }
            _ => {}
        }
    }
    for (id, c) in honest.clients.iter().enumerate() {
        let account = c.account();
        let mut view = None;
        for r in 0..n {
            view = client::account(pool, (id + r) % n, &account, ATTEMPT_TIMEOUT).await;
            if view.is_some() {
                break;
            }
        }
        let mine: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].client == id).collect();
        let Some(view) = view else {
            findings.push((
                None,
                format!(
                    "honest client {id}: no validator answered GetAccount; its commands cannot be checked"
                ),
            ));
            for &i in &mine {
                ok[i] = false;
            }
            continue;
        };
        let applied_index = view.read_point.as_ref().map_or(0, |p| p.applied_index);
        let mut last_index = 0u64;
        for &i in &mine {
            let op = &ops[i];
            if let Outcome::Acked { log_index, .. } = &op.outcome {
                let mut problems = Vec::new();
                if op.nonce >= view.next_nonce {
                    problems.push(format!(
                        "its nonce {} is not consumed (next nonce {})",
                        op.nonce, view.next_nonce
                    ));
                }
                if *log_index > applied_index {
                    problems.push(format!(
                        "log index {log_index} is beyond the applied index {applied_index}"
                    ));
                }
                if *log_index <= last_index {
                    problems.push(format!(
                        "log index {log_index} does not follow the previous command's {last_index}"
                    ));
                }
                last_index = *log_index;
                if !problems.is_empty() {
                    ok[i] = false;
                    findings.push((
                        Some(op.phase),
                        format!(
                            "honest client {id}, nonce {}: acknowledged at {log_index} but {}",
                            op.nonce,
                            problems.join("; ")
                        ),
                    ));
                }
            }
        }
        // The remembered outcomes: re-sent, each must get its receipt again.
        let last_nonce = view.next_nonce.saturating_sub(1);
        let oldest = last_nonce.saturating_sub(MAX_REMEMBERED_OUTCOMES as u64 - 1);
        for &i in &mine {
            let op = &ops[i];
            let Outcome::Acked {
                log_index,
                receipt_json,
            } = &op.outcome
            else {
                continue;
            };
            if op.nonce < oldest || op.nonce > last_nonce {
                continue;
            }
            // A diverged validator orders nothing and says so
            // (`replica_diverged`); an honest client sends the command to
            // the next validator, as the refusal tells it to.
            let mut again =
                client::submit_bytes(pool, i % n, op.bytes.clone(), ATTEMPT_TIMEOUT).await;
            for r in 1..n {
                if !matches!(&again, Reply::Unknown { rule, .. } if rule == "replica_diverged") {
                    break;
                }
                again = client::submit_bytes(pool, (i + r) % n, op.bytes.clone(), ATTEMPT_TIMEOUT)
                    .await;
            }
            match again {
                Reply::Applied {
                    log_index: again_index,
                    receipt_json: again_json,
                    ..
                } if again_index == *log_index && again_json == *receipt_json => {}
                other => {
                    ok[i] = false;
                    findings.push((
                        Some(op.phase),
                        format!(
                            "honest client {id}, nonce {}: acknowledged at {log_index}, re-sent at the end: {}",
                            op.nonce,
                            describe(&other)
                        ),
                    ));
                }
            }
        }
        // Balances: voters' never change; the transfer pair's follow the
        // acknowledged transfers.
        if ambiguous.contains(&account) {
            findings.push((
                None,
                format!(
                    "honest client {id}: a transfer stayed unresolved; its balance is not checked"
                ),
            ));
        } else {
            let want = expected.get(&account).copied().unwrap_or_default();
            if i128::from(view.balance) != want {
                findings.push((
                    None,
                    format!(
                        "honest client {id} ({}): balance {} but its acknowledged transfers imply {want}",
                        &account.to_hex()[..12],
                        view.balance
                    ),
                ));
                for &i in &mine {
                    ok[i] = false;
                }
            }
        }
    }
    (ok, findings)
}

/// A reply in one line.
pub fn describe(reply: &Reply) -> String {
    match reply {
        Reply::Applied { log_index, .. } => format!("applied at {log_index}"),
        Reply::Refused(r) => format!(
            "refused [{}] {:?}{}: {}",
            r.rule,
            r.kind,
            r.log_index
                .map(|i| format!(" at index {i}"))
                .unwrap_or_default(),
            r.message
        ),
        Reply::Unknown { rule, message } => format!("no answer [{rule}]: {message}"),
    }
}
