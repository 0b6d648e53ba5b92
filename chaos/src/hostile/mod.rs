//! Hostile clients on real processes (issue 9, item 5): the `neuroshard`
//! binary as a committee of four validators on loopback (mutual TLS
//! between them, sled with fsync), an honest workload of votes and
//! transfers running throughout, and, one after the other after a
//! no-attack baseline, attacks by clients that do not play by the rules:
//! oversized commands, a flood of garbage and forged signatures,
//! replayed nonces and identical retries, growth loops driven until
//! their price or the state budget stops them, and (issue 10) floods of
//! idle connections and half-open TLS handshakes, of never-read
//! certificate streams and of reads. One table row per phase;
//! exit 1 when any pass criterion fails (docs/chaos.md, "Hostile
//! clients").
//!
//! The committee comes from the same ceremony and files as `chaos/run`
//! (`real::committee::prepare`, `real::processes::Validators`); the
//! genesis is then given the suite's accounts and its small state budget.

pub mod certs;
pub mod client;
pub mod connflood;
pub mod content;
pub mod cpu;
pub mod flood;
pub mod growth;
pub mod honest;
pub mod oversized;
pub mod reads;
pub mod replay;
pub mod report;
pub mod rss;
pub mod snapshots;
pub mod streams;
pub mod table;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use ed25519_dalek::SigningKey;
use neuroshard_governance::genesis::ParamInput;
use neuroshard_governance::{
    AccountId, Allocation, Amount, Command, Effect, Genesis, NepId, SignedCommand, NEURO,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::real::committee::{self, Timing};
use crate::real::error::RealError;
use crate::real::processes::Validators;
use crate::real::WorkDir;

use client::{Pool, Reply};
use growth::Loop;
use honest::{Honest, HonestClient, Role};
use report::AttackReport;
use table::Row;

/// Validators of the committee.
pub const VALIDATORS: usize = 4;
/// A 1 s governance day, a 1-day review, and a vote open for the whole
/// suite (365 days = 365 s), a tick every 100 ms.
pub const TIMING: Timing = Timing {
    day_ms: 1_000,
    review_days: 1,
    voting_days: 365,
    tick_interval_ms: 100,
};
/// Longest the committee may take to elect its first leader.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the whole suite may run, from keygen to verdict.
pub const MAX_SUITE: Duration = Duration::from_secs(290);
/// Longest a setup command is retried.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Honest traffic before the baseline, not measured (connections, the
/// first batches).
pub const WARM_UP: Duration = Duration::from_secs(3);
/// docs/operations.md: peak RSS ≤ 160 MiB + 64 MiB (sled cache) + 4 × B.
pub const RSS_BASE_MIB: u64 = 160;
pub const RSS_SLED_MIB: u64 = 64;

/// The documented peak RSS of a validator for state budget `budget`
/// (the registry's ceiling when the genesis sets none: a NEP may raise the
/// default up to it).
pub fn rss_bound_mib(budget: Option<u64>) -> u64 {
    let b = budget.unwrap_or(neuroshard_governance::limits::MAX_STATE_BYTES as u64);
    RSS_BASE_MIB + RSS_SLED_MIB + (4 * b).div_ceil(1024 * 1024)
}
/// Honest transfer accounts (they send to each other).
pub const TRANSFER_CLIENTS: usize = 2;
/// Attackers of the fresh-accounts loop (in parallel).
pub const FRESH_ACCOUNT_ATTACKERS: usize = 4;

/// One attack of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Attack {
    /// (a) commands above MAX_COMMAND_BYTES up to and past the transport limit.
    Oversized,
    /// (b) garbage bytes and forged signatures at ≥ 1 000 requests/s.
    Flood,
    /// (c) replayed nonces and identical retries.
    Replay,
    /// Idle TCP connections and half-open TLS handshakes against one
    /// validator's API and peer ports while another validator restarts.
    ConnFlood,
    /// StreamCertificates calls that never read, while a light node follows.
    StreamFlood,
    /// (d) CreateDraft/Withdraw loop.
    DraftsWithdraw,
    /// (d) fresh accounts funded to vote.
    FreshVoters,
    /// (d) largest drafts up to the per-author limit.
    MaxDrafts,
    /// (d) transfers to fresh accounts until the state budget refuses.
    FreshAccounts,
    /// ≥ 5 000 GetStatus/GetTally per second against a state at least
    /// half full.
    ReadFlood,
}

impl Attack {
    pub const ALL: [Attack; 10] = [
        Attack::Oversized,
        Attack::Flood,
        Attack::Replay,
        Attack::ConnFlood,
        Attack::StreamFlood,
        Attack::DraftsWithdraw,
        Attack::FreshVoters,
        Attack::MaxDrafts,
        Attack::FreshAccounts,
        Attack::ReadFlood,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attack::Oversized => "(a) oversized",
            Attack::Flood => "(b) garbage+bad sigs",
            Attack::Replay => "(c) replay/retries",
            Attack::ConnFlood => "conn flood+restart",
            Attack::StreamFlood => "stream flood",
            Attack::ReadFlood => "read flood",
            Attack::DraftsWithdraw => Loop::DraftsWithdraw.name(),
            Attack::FreshVoters => Loop::FreshVoters.name(),
            Attack::MaxDrafts => Loop::MaxDrafts.name(),
            Attack::FreshAccounts => Loop::FreshAccounts.name(),
        }
    }
}

#[derive(Clone, Debug, Args)]
pub struct HostileArgs {
    /// The `neuroshard` binary to run as validators.
    #[arg(long)]
    pub binary: PathBuf,
    /// Attacks to run after the baseline (default: all), in the suite's order.
    #[arg(long = "attack", value_enum)]
    pub attacks: Vec<Attack>,
    /// Keep the committee, data and node logs here (default: a temporary
    /// directory removed at the end).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seeds every key and random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Length of the no-attack baseline.
    #[arg(long, default_value_t = 10)]
    pub baseline_secs: u64,
    /// Shortest time of each attack (the honest workload is measured over it).
    #[arg(long, default_value_t = 8)]
    pub attack_secs: u64,
    /// Longest a growth loop may run before "not stopped" is a failure.
    #[arg(long, default_value_t = 25)]
    pub growth_max_secs: u64,
    /// Requests per second of the garbage/forgery flood.
    #[arg(long, default_value_t = 1_200.0)]
    pub flood_rate: f64,
    /// Honest voters (plus two honest accounts transferring to each other).
    #[arg(long, default_value_t = 2)]
    pub honest_voters: usize,
    /// Pause between an honest client's commands.
    #[arg(long, default_value_t = 40)]
    pub honest_pace_ms: u64,
    /// Honest p99 under attack may be at most this many times the baseline's.
    #[arg(long, default_value_t = 3.0)]
    pub p99_factor: f64,
    /// Each validator's peak RSS bound (MiB), checked against VmHWM;
    /// default: docs/operations.md's formula for the suite's budget B,
    /// 160 MiB + 64 MiB (sled cache) + 4 × B.
    #[arg(long)]
    pub rss_bound_mib: Option<u64>,
    /// `gov.state_budget_bytes` of the suite's genesis (small, so the
    /// growth loops reach it in seconds; the registry's minimum is 1 MiB);
    /// 0 leaves the genesis default (for a validator binary without it).
    #[arg(long, default_value_t = 3 * 1024 * 1024)]
    pub state_budget_bytes: u64,
    /// Connection flood: idle TCP connections kept open per attacked port.
    #[arg(long, default_value_t = 2_000)]
    pub conn_idle: usize,
    /// Connection flood: half-open TLS handshakes kept open per attacked port.
    #[arg(long, default_value_t = 500)]
    pub conn_half_open: usize,
    /// Connection flood: pause before a closed connection is opened again.
    #[arg(long, default_value_t = 1_000)]
    pub conn_reconnect_ms: u64,
    /// Stream flood: never-reading StreamCertificates calls.
    #[arg(long, default_value_t = streams::DEFAULT_STREAMS)]
    pub streams: usize,
    /// Stream flood: an emergency (two certificates) this often while the
    /// attack runs.
    #[arg(long, default_value_t = streams::DEFAULT_ISSUE_EVERY_MS)]
    pub cert_every_ms: u64,
    /// `streams.slow_reader_timeout_ms` of the suite's validators (the
    /// default, 30 s, is longer than a row).
    #[arg(long, default_value_t = 2_000)]
    pub slow_reader_ms: u64,
    /// Read flood: GetStatus/GetTally calls per second.
    #[arg(long, default_value_t = 6_000.0)]
    pub read_rate: f64,
    /// Read flood: fill the state to this share of its budget first (0:
    /// read against whatever the state holds, the control experiment).
    #[arg(long, default_value_t = 50)]
    pub read_fill_percent: u64,
    /// Read flood: GetTally with `stale = true` (no read index) instead
    /// of the default linearizable read.
    #[arg(long)]
    pub read_tally_stale: bool,
    /// The validators' `raft.replicate_before_sync` (false: the leader
    /// syncs its own log before it replicates, for comparison).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub replicate_before_sync: bool,
}

/// Everything an attack needs to know.
pub struct Ctx {
    pub chain_id: String,
    pub api_addrs: Vec<String>,
    pub peer_addrs: Vec<String>,
    pub ca: PathBuf,
    /// The keygen output (identity keys, genesis, committee info).
    pub committee_dir: PathBuf,
    pub committee_info: neuroshard_certificate::CommitteeInfo,
    pub honest: Arc<Honest>,
    pub honest_nep: NepId,
    pub seed: u64,
}

impl Ctx {
    /// A pool of connections from `127.0.0.<octet>`.
    fn pool(&self, octet: u8, connections: usize) -> Result<Pool, RealError> {
        Pool::new(
            &self.api_addrs,
            &self.ca,
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, octet)),
            connections,
        )
    }
}

/// The suite's accounts.
struct Keys {
    author: SigningKey,
    voters: Vec<SigningKey>,
    transfer: Vec<SigningKey>,
    oversize: SigningKey,
    flood: SigningKey,
    replay: SigningKey,
    drafts_withdraw: SigningKey,
    fresh_voters: SigningKey,
    max_drafts: SigningKey,
    fresh_accounts: Vec<SigningKey>,
}

impl Keys {
    fn new(seed: u64, voters: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0405_711E);
        let mut key = || SigningKey::from_bytes(&rng.gen());
        Self {
            author: key(),
            voters: (0..voters).map(|_| key()).collect(),
            transfer: (0..TRANSFER_CLIENTS).map(|_| key()).collect(),
            oversize: key(),
            flood: key(),
            replay: key(),
            drafts_withdraw: key(),
            fresh_voters: key(),
            max_drafts: key(),
            fresh_accounts: (0..FRESH_ACCOUNT_ATTACKERS).map(|_| key()).collect(),
        }
    }

    /// Genesis allocations in NEURO: (key, balance, staked).
    fn allocations(&self) -> Vec<(&SigningKey, u64, u64)> {
        // The author also ratifies the emergency that shortens
        // ratification votes (certs.rs): most of the stake.
        let mut out = vec![(&self.author, 200, 2_000)];
        out.extend(self.voters.iter().map(|k| (k, 10, 1_000)));
        out.extend(self.transfer.iter().map(|k| (k, 10_000, 0)));
        out.extend([
            // Two largest drafts' deposits and more.
            (&self.oversize, 1_000, 100),
            (&self.flood, 10, 0),
            (&self.replay, 1_000, 0),
            // Some thirty CreateDraft/Withdraw rounds of the largest draft.
            (&self.drafts_withdraw, 3_000, 100),
            // Some three hundred fresh accounts at 1 NEURO each.
            (&self.fresh_voters, 300, 0),
            // Eight largest drafts' deposits with room to spare: the
            // per-author limit stops it, not the price.
            (&self.max_drafts, 2_000, 100),
        ]);
        // Enough to fill any budget: the budget stops them.
        out.extend(self.fresh_accounts.iter().map(|k| (k, 50_000, 0)));
        out
    }
}

fn account_of(key: &SigningKey) -> AccountId {
    AccountId(key.verifying_key().to_bytes())
}

/// Exit status of a run whose only failures were honest p99 bounds
/// ([`Row::failed_on_p99_alone`]); `chaos/hostile` runs the suite once
/// more on it.
pub const EXIT_P99_ONLY: u8 = 3;

/// `neuroshard-chaos hostile`: exit 0 when every row passed, 1 when any
/// failed on anything but its p99 bound, 3 ([`EXIT_P99_ONLY`]) when the
/// failing rows failed on their p99 bound alone, 2 when the suite could
/// not run.
pub fn main(args: HostileArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("neuroshard-chaos hostile: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            r = tokio::time::timeout(MAX_SUITE, run(&args)) => r.unwrap_or_else(|_| Err(RealError::Timeout {
                what: "the hostile-client suite".into(),
                waited_ms: MAX_SUITE.as_millis() as u64,
                last: "still running; stopped".into(),
            })),
            _ = async { match interrupt.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => Err(RealError::Interrupted("SIGINT")),
            _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => Err(RealError::Interrupted("SIGTERM")),
        }
    });
    // Stop every task (and with them the validators' owner) before exit.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(rows) if rows.iter().all(Row::passed) => ExitCode::SUCCESS,
        Ok(rows) if rows.iter().all(|r| r.passed() || r.failed_on_p99_alone()) => {
            ExitCode::from(EXIT_P99_ONLY)
        }
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("neuroshard-chaos hostile: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: &HostileArgs) -> Result<Vec<Row>, RealError> {
    let suite_started = Instant::now();
    let binary = std::fs::canonicalize(&args.binary).map_err(RealError::io(&args.binary))?;
    let attacks: Vec<Attack> = if args.attacks.is_empty() {
        Attack::ALL.to_vec()
    } else {
        let mut a = args.attacks.clone();
        a.sort();
        a.dedup();
        a
    };
    let work = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(RealError::io(dir))?;
            WorkDir {
                path: std::fs::canonicalize(dir).map_err(RealError::io(dir))?,
                remove: false,
            }
        }
        None => {
            let path = std::env::temp_dir()
                .join(format!("neuroshard-chaos-hostile-{}", std::process::id()));
            std::fs::create_dir_all(&path).map_err(RealError::io(&path))?;
            WorkDir { path, remove: true }
        }
    };
    let dir = work.path.join("committee");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(RealError::io(&dir))?;
    }
    let base = crate::real::free_ports(2 * VALIDATORS as u16)?;
    let addrs = crate::real::addresses(None, base);
    let chain_id = "hostile".to_owned();
    let committee = committee::prepare(&binary, &dir, &chain_id, &addrs, TIMING)?;
    let keys = Keys::new(args.seed, args.honest_voters);
    let budget = set_genesis(&dir.join("genesis.toml"), &keys, args.state_budget_bytes)?;
    match budget {
        Some(b) => println!("hostile: gov.state_budget_bytes = {b}"),
        None => println!(
            "hostile: gov.state_budget_bytes not set (--state-budget-bytes 0, or this build's registry has no such key)"
        ),
    }

    for path in &committee.configs {
        set_node_config(path, args.slow_reader_ms, args.replicate_before_sync)?;
    }
    // The attackers hold thousands of sockets: this process gets its hard
    // limit of open files; the validators keep the one it was given.
    let (soft_before, soft_now) = raise_open_files();
    println!(
        "hostile: open files (RLIMIT_NOFILE soft): {soft_before} for the validators, {soft_now} for the attackers"
    );

    let mut validators = Validators::new(
        &binary,
        committee.configs.clone(),
        vec![Vec::new(); VALIDATORS],
    );
    if soft_before > 0 {
        validators.set_open_files(soft_before);
    }
    for i in 0..VALIDATORS {
        validators.spawn(i)?;
    }
    let api_addrs: Vec<String> = addrs.iter().map(|a| a.api.clone()).collect();
    let admin = Pool::new(
        &api_addrs,
        &committee.ca,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        1,
    )?;
    wait_for_leader(&admin).await?;
    println!(
        "hostile: committee of {VALIDATORS} up on 127.0.0.1:{base}..{} in {:.1} s",
        base + 2 * VALIDATORS as u16 - 1,
        suite_started.elapsed().as_secs_f64()
    );

    // The honest NEP the voters vote on (open for the whole suite).
    let honest_nep = open_vote(&admin, &chain_id, &keys.author).await?;
    println!("hostile: NEP-{} in VOTING", honest_nep.0);

    let mut clients: Vec<HonestClient> = keys
        .voters
        .iter()
        .map(|k| HonestClient {
            key: k.clone(),
            role: Role::Voter { nep: honest_nep },
            genesis_balance: 10 * NEURO,
        })
        .collect();
    for (i, k) in keys.transfer.iter().enumerate() {
        let partner = &keys.transfer[(i + 1) % keys.transfer.len()];
        clients.push(HonestClient {
            key: k.clone(),
            role: Role::Transfer {
                to: account_of(partner),
            },
            genesis_balance: 10_000 * NEURO,
        });
    }
    let honest = Honest::new(clients);
    let ctx = Ctx {
        chain_id: chain_id.clone(),
        api_addrs,
        peer_addrs: addrs.iter().map(|a| a.peer.clone()).collect(),
        ca: committee.ca.clone(),
        committee_dir: dir.clone(),
        committee_info: committee.info.clone(),
        honest: honest.clone(),
        honest_nep,
        seed: args.seed,
    };
    let mut issuer: Option<certs::Issuer> = None;
    // The honest clients run on a runtime (a thread) of their own, as the
    // separate programs they stand for: their latency must not include
    // waiting behind thousands of attacker tasks in this process's
    // scheduler (the CPU itself is still shared, as on one machine).
    let honest_rt = OwnRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("honest")
            .enable_all()
            .build()
            .map_err(RealError::io(Path::new("honest clients' runtime")))?,
    ));
    let honest_handle = honest_rt.handle();
    let honest_pool = {
        // The channels' background tasks go to the honest runtime too.
        let _enter = honest_handle.enter();
        ctx.pool(10, 1)?
    };
    let mut honest_tasks = tokio::task::JoinSet::new();
    for id in 0..honest.clients.len() {
        honest_tasks.spawn_on(
            honest::run(
                honest.clone(),
                honest_pool.clone(),
                chain_id.clone(),
                id,
                Duration::from_millis(args.honest_pace_ms),
            ),
            &honest_handle,
        );
    }

    // The phases.
    let mut phases: Vec<(String, AttackReport, usize, Vec<Option<u64>>)> = Vec::new();
    let mut exited: Vec<usize> = Vec::new();
    // Phase 0 warms up (connections, the first batches) and has no row.
    let phase_names: Vec<String> = ["warm-up", "baseline (no attack)"]
        .into_iter()
        .map(str::to_owned)
        .chain(attacks.iter().map(|a| a.name().to_owned()))
        .collect();
    let min = Duration::from_secs(args.attack_secs);
    let growth_max = Duration::from_secs(args.growth_max_secs);
    for (p, name) in phase_names.iter().enumerate() {
        honest.set_phase(p);
        let pids: Vec<Option<u32>> = (0..VALIDATORS).map(|i| validators.pid(i)).collect();
        let reset = pids.iter().flatten().all(|&pid| rss::reset_peak(pid));
        let mut phase = Phase {
            validators: &mut validators,
            admin: &admin,
            issuer: &mut issuer,
        };
        println!(
            "hostile: {name}: running (from {} ms since the epoch)",
            crate::real::journal::now_ms()
        );
        let started = Instant::now();
        let started_ms = crate::real::journal::now_ms();
        let cpu_before: (u64, Vec<Option<u64>>) = (
            cpu::self_ms(),
            pids.iter().map(|p| p.and_then(cpu::process_ms)).collect(),
        );
        let mut report = match p {
            0 => {
                tokio::time::sleep(WARM_UP).await;
                AttackReport::default()
            }
            1 => {
                tokio::time::sleep(Duration::from_secs(args.baseline_secs)).await;
                AttackReport::default()
            }
            _ => {
                run_attack(
                    &ctx,
                    &keys,
                    attacks[p - 2],
                    args,
                    min,
                    growth_max,
                    &mut phase,
                )
                .await?
            }
        };
        if !reset {
            report
                .notes
                .push("peak RSS could not be reset: peaks since the start".into());
        }
        for (i, status) in validators.exited() {
            println!("hostile: validator {i} exited by itself ({status}); see its node.log");
            exited.push(i);
        }
        // A validator restarted during the phase: its new process's peak.
        let peaks = (0..VALIDATORS)
            .map(|i| validators.pid(i).and_then(rss::peak_kib))
            .collect::<Vec<_>>();
        let running = VALIDATORS - exited.len();
        // The state's charge at the end of the phase, as the validators
        // report it (the highest: a lagging replica reports less).
        let mut state = None;
        for i in 0..VALIDATORS {
            if let Some(s) = client::status(&admin, i, Duration::from_secs(2)).await {
                if s.state_budget_bytes > 0 {
                    let seen = (s.state_bytes, s.state_budget_bytes);
                    state = Some(state.map_or(seen, |x: (u64, u64)| x.max(seen)));
                }
            }
        }
        if let Some(s) = state {
            report.state_bytes = Some(s);
        }
        println!(
            "hostile: {name}: done in {:.1} s ({} requests, {} findings)",
            started.elapsed().as_secs_f64(),
            report.sent,
            report.findings.len()
        );
        // CPU used during the phase (a restarted validator: since its start).
        {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            let driver = cpu::self_ms().saturating_sub(cpu_before.0);
            let per: Vec<String> = (0..VALIDATORS)
                .map(|i| {
                    let now = validators.pid(i).and_then(cpu::process_ms);
                    let was = if validators.pid(i) == pids[i] {
                        cpu_before.1[i]
                    } else {
                        Some(0)
                    };
                    match (now, was) {
                        (Some(n), Some(w)) => {
                            format!("{:.2}", n.saturating_sub(w) as f64 / 1e3 / secs)
                        }
                        _ => "-".to_owned(),
                    }
                })
                .collect();
            report.notes.push(format!(
                "CPU (cores, of the machine's {}): driver (attackers and honest clients) {:.2}, validators {}",
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                driver as f64 / 1e3 / secs,
                per.join("/")
            ));
        }
        // The snapshots the validators built during the phase.
        for (i, config) in committee.configs.iter().enumerate() {
            let log = config.with_file_name("node.log");
            let now_ms = crate::real::journal::now_ms();
            for t in snapshots::built(&log) {
                if t >= started_ms && t < now_ms {
                    report.notes.push(format!(
                        "validator {i} built a snapshot (and purged its log) {:.1} s into the row",
                        (t - started_ms) as f64 / 1e3
                    ));
                }
            }
        }
        phases.push((name.clone(), report, running, peaks));
    }

    // Stop the honest clients, then look for every acknowledged command.
    honest.stop();
    let _ = tokio::time::timeout(honest::MAX_WAIT + Duration::from_secs(5), async {
        while honest_tasks.join_next().await.is_some() {}
    })
    .await;
    honest_tasks.abort_all();
    let (applied, mut verify_findings) = honest::verify(&honest, &admin).await;
    // A validator that exited while the last phase ended or during the
    // check fails the suite too (the last row's).
    for (i, status) in validators.exited() {
        println!("hostile: validator {i} exited by itself ({status}); see its node.log");
        verify_findings.push((
            None,
            format!("validator {i} exited by itself after the last phase ({status})"),
        ));
    }
    let ops = honest.ops();
    let stats = honest::phase_stats(&ops, &applied, phase_names.len());
    // CHAOS_HOSTILE_SLOWEST=N: each phase's N slowest measured commands,
    // with when they were sent (to lay beside the validators' logs).
    if let Some(n) = std::env::var("CHAOS_HOSTILE_SLOWEST")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        for (p, name) in phase_names.iter().enumerate() {
            let mut slow: Vec<&honest::Op> =
                ops.iter().filter(|o| o.phase == p && o.measured).collect();
            slow.sort_by_key(|o| std::cmp::Reverse(o.latency));
            for o in slow.iter().take(n) {
                println!(
                    "slowest: {name}: client {} sent at {} ms, {:.1} ms, {} send(s)",
                    o.client,
                    o.sent_ms,
                    o.latency.as_secs_f64() * 1e3,
                    o.sends
                );
            }
        }
    }
    let baseline_p99 = stats.get(1).and_then(|s| s.p99_ms);
    let rss_bound_mib = args.rss_bound_mib.unwrap_or_else(|| rss_bound_mib(budget));
    let mut rows: Vec<Row> = Vec::new();
    let mut warm_up = None;
    for (p, ((name, mut report, running, peaks), s)) in phases.into_iter().zip(stats).enumerate() {
        for (phase, finding) in &verify_findings {
            if phase.unwrap_or(phase_names.len() - 1) == p {
                report.finding(finding.clone());
            }
        }
        if p == 0 {
            warm_up = Some((report, s));
            continue;
        }
        if let Some((w, ws)) = warm_up.take() {
            // What went wrong while warming up is the baseline's.
            report.findings.extend(w.findings);
            if ws.applied < ws.acked {
                report.finding(format!(
                    "{} honest commands acknowledged while warming up not found applied",
                    ws.acked - ws.applied
                ));
            }
            if !ws.refused.is_empty() {
                report.finding(format!(
                    "honest commands refused while warming up: {:?}",
                    ws.refused
                ));
            }
            if ws.unresolved > 0 {
                report.finding(format!(
                    "{} honest commands sent while warming up unanswered for {} s",
                    ws.unresolved,
                    honest::MAX_WAIT.as_secs()
                ));
            }
        }
        if s.retried > 0 {
            report.notes.push(format!(
                "honest: {} of {} commands needed more than one send (at most {})",
                s.retried,
                s.acked + s.unresolved + s.refused.values().sum::<usize>(),
                s.max_sends
            ));
        }
        if s.unmeasured > 0 {
            report.notes.push(format!(
                "honest: {} commands sent while the row prepared are checked, not in its p99",
                s.unmeasured
            ));
        }
        let state = report.state_bytes.or(report.budget_refusal);
        let mut row = Row {
            name,
            report,
            honest: s,
            baseline_p99_ms: baseline_p99,
            p99_factor: args.p99_factor,
            running,
            validators: VALIDATORS,
            peak_kib: peaks,
            rss_bound_mib,
            state,
            is_baseline: p == 1,
            failures: Vec::new(),
            p99_failed: false,
        };
        row.judge();
        rows.push(row);
    }
    validators.kill_all();
    println!("\n{}", table::render(&rows));
    println!(
        "peak RSS bound: {rss_bound_mib} MiB{}",
        match (args.rss_bound_mib, budget) {
            (Some(_), _) => " (--rss-bound-mib)".to_owned(),
            (None, Some(b)) => format!(
                " = {RSS_BASE_MIB} MiB + {RSS_SLED_MIB} MiB + 4 × the {b}-byte state budget (docs/operations.md)"
            ),
            (None, None) => format!(
                " = {RSS_BASE_MIB} MiB + {RSS_SLED_MIB} MiB + 4 × the default state budget (docs/operations.md)"
            ),
        }
    );
    println!(
        "hostile: {} honest commands, {} acknowledged; suite {:.0} s",
        ops.len(),
        ops.iter()
            .filter(|o| matches!(o.outcome, honest::Outcome::Acked { .. }))
            .count(),
        suite_started.elapsed().as_secs_f64()
    );
    if let Some(dir) = &args.out {
        println!("committee, data and node logs: {}", dir.display());
    }
    Ok(rows)
}

/// A runtime owned inside another one: shut down without blocking when
/// dropped (dropping a runtime in async code panics).
pub(crate) struct OwnRuntime(pub(crate) Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    pub(crate) fn handle(&self) -> tokio::runtime::Handle {
        self.0.as_ref().expect("until dropped").handle().clone()
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// What some attacks need beyond the context: the validators (to restart
/// one), the admin client, the certificate issuer (made by the first
/// attack that needs it).
struct Phase<'a> {
    validators: &'a mut Validators,
    admin: &'a Pool,
    issuer: &'a mut Option<certs::Issuer>,
}

async fn run_attack(
    ctx: &Ctx,
    keys: &Keys,
    attack: Attack,
    args: &HostileArgs,
    min: Duration,
    growth_max: Duration,
    phase: &mut Phase<'_>,
) -> Result<AttackReport, RealError> {
    // Each attacker connects from its own loopback address.
    Ok(match attack {
        Attack::ConnFlood => {
            // Every attacker socket at once on both ports, and some room.
            let needed = 2 * (args.conn_idle + args.conn_half_open) as u64 + 512;
            let (_, soft) = raise_open_files();
            if soft < needed {
                let mut r = AttackReport::default();
                r.finding(format!(
                    "this process may open {soft} files (RLIMIT_NOFILE hard limit), the flood needs {needed}: raise the hard limit (ulimit -Hn) or lower --conn-idle/--conn-half-open"
                ));
                return Ok(r);
            }
            let size = connflood::FloodSize {
                idle: args.conn_idle,
                half_open: args.conn_half_open,
                reconnect: Duration::from_millis(args.conn_reconnect_ms),
            };
            connflood::run(
                ctx,
                phase.admin,
                phase.validators,
                &ctx.peer_addrs,
                size,
                min,
            )
            .await
        }
        Attack::StreamFlood => {
            let mut setup = Vec::new();
            if phase.issuer.is_none() {
                match start_issuer(ctx, &keys.author).await {
                    Ok((i, notes)) => {
                        *phase.issuer = Some(i);
                        setup = notes;
                    }
                    Err(e) => {
                        let mut r = AttackReport::default();
                        r.finding(format!("certificates could not be issued: {e}"));
                        return Ok(r);
                    }
                }
            }
            let follower = light_follower(ctx)?;
            let issuer = phase.issuer.as_mut().expect("made above");
            let mut r = streams::run(
                ctx,
                phase.admin,
                issuer,
                follower,
                streams::FloodSize {
                    streams: args.streams,
                    issue_every: Duration::from_millis(args.cert_every_ms),
                    // Longer than the slow-reader timeout: the validator
                    // ends the stream first, if it ends it.
                    hold: Duration::from_millis(2 * args.slow_reader_ms),
                },
                min,
            )
            .await;
            r.notes.splice(0..0, setup);
            r
        }
        Attack::ReadFlood => {
            // At least half the budget charged first (the growth rows
            // before it usually did that already).
            let mut fill_note = None;
            let now = state_of(phase.admin).await;
            let fill = |budget: u64| budget / 100 * args.read_fill_percent.min(100);
            if let Some((bytes, budget)) = now {
                if bytes < fill(budget) {
                    // Honest commands meanwhile are checked, not measured.
                    ctx.honest.set_measured(false);
                    let pool = ctx.pool(9, 1)?;
                    let (reached, sent) = growth::fill_to(
                        ctx,
                        &pool,
                        phase.admin,
                        &keys.fresh_accounts,
                        fill(budget),
                        growth_max,
                    )
                    .await;
                    ctx.honest.set_measured(true);
                    fill_note = Some(format!(
                        "state filled from {} to {} KiB of {} KiB with {sent} transfers to fresh accounts before the reads",
                        bytes / 1024,
                        reached / 1024,
                        budget / 1024
                    ));
                }
            }
            let now = state_of(phase.admin).await;
            let mut r = reads::run(ctx, args.read_rate, args.read_tally_stale, min).await;
            if let Some((bytes, budget)) = now {
                r.notes.insert(
                    0,
                    format!(
                        "reads against a state charged {} KiB of its {} KiB budget ({:.0} %)",
                        bytes / 1024,
                        budget / 1024,
                        bytes as f64 * 100.0 / budget.max(1) as f64
                    ),
                );
                if bytes < fill(budget) {
                    r.finding(format!(
                        "the state was charged only {bytes} of {budget} bytes, less than {} %",
                        args.read_fill_percent
                    ));
                }
            }
            if let Some(n) = fill_note {
                r.notes.insert(0, n);
            }
            r
        }
        Attack::Oversized => {
            let pool = ctx.pool(2, 1)?;
            oversized::run(ctx, &pool, &keys.oversize, min).await
        }
        Attack::Flood => {
            let pool = ctx.pool(3, 2)?;
            flood::run(ctx, &pool, &keys.flood, args.flood_rate, min).await
        }
        Attack::Replay => {
            let pool = ctx.pool(4, 1)?;
            replay::run(ctx, &pool, &keys.replay, min).await
        }
        Attack::DraftsWithdraw => {
            let pool = ctx.pool(5, 1)?;
            let k = [keys.drafts_withdraw.clone()];
            growth::run(ctx, &pool, Loop::DraftsWithdraw, &k, min, growth_max).await
        }
        Attack::FreshVoters => {
            let pool = ctx.pool(6, 1)?;
            let k = [keys.fresh_voters.clone()];
            growth::run(ctx, &pool, Loop::FreshVoters, &k, min, growth_max).await
        }
        Attack::MaxDrafts => {
            let pool = ctx.pool(7, 1)?;
            let k = [keys.max_drafts.clone()];
            growth::run(ctx, &pool, Loop::MaxDrafts, &k, min, growth_max).await
        }
        Attack::FreshAccounts => {
            let pool = ctx.pool(8, 1)?;
            growth::run(
                ctx,
                &pool,
                Loop::FreshAccounts,
                &keys.fresh_accounts,
                min,
                growth_max,
            )
            .await
        }
    })
}

/// The highest (state bytes, budget) any validator reports.
async fn state_of(admin: &Pool) -> Option<(u64, u64)> {
    let mut best: Option<(u64, u64)> = None;
    for i in 0..admin.len() {
        if let Some(s) = client::status(admin, i, Duration::from_secs(2)).await {
            if s.state_budget_bytes > 0 {
                let seen = (s.state_bytes, s.state_budget_bytes);
                best = Some(best.map_or(seen, |b| b.max(seen)));
            }
        }
    }
    best
}

/// The genesis of the suite's committee.
fn genesis_of(ctx: &Ctx) -> Result<Genesis, RealError> {
    genesis_in(&ctx.committee_dir)
}

/// The genesis in a keygen directory.
pub(crate) fn genesis_in(committee_dir: &Path) -> Result<Genesis, RealError> {
    let path = committee_dir.join("genesis.toml");
    let text = std::fs::read_to_string(&path).map_err(RealError::io(&path))?;
    Genesis::from_toml(&text).map_err(|e| RealError::invalid(path.display().to_string(), e))
}

/// A light node's follower at genesis, pinned to the committee info.
fn light_follower(ctx: &Ctx) -> Result<neuroshard_certificate::follower::Follower, RealError> {
    light_follower_of(&ctx.committee_dir, &ctx.committee_info)
}

/// A light node's follower at the genesis in `committee_dir`, pinned to
/// `info`.
pub(crate) fn light_follower_of(
    committee_dir: &Path,
    info: &neuroshard_certificate::CommitteeInfo,
) -> Result<neuroshard_certificate::follower::Follower, RealError> {
    use neuroshard_node::transport::api_convert::{value_to_proto, version_to_proto};
    let genesis = genesis_in(committee_dir)?;
    let set = genesis
        .parameter_set()
        .map_err(|e| RealError::invalid("genesis parameters", e))?;
    let verifier = neuroshard_certificate::verifier::Verifier::new(info.clone())
        .map_err(|e| RealError::invalid("committee info", e))?;
    Ok(neuroshard_certificate::follower::Follower::new(
        verifier,
        set.iter()
            .map(|(k, v)| (k.to_owned(), value_to_proto(v)))
            .collect(),
        version_to_proto(genesis.protocol_version),
    ))
}

/// The certificate issuer (certs.rs): the validators' identity keys, and
/// the emergency that makes ratification votes short, ratified by
/// `ratifier`. Returns it with notes for the row.
async fn start_issuer(
    ctx: &Ctx,
    ratifier: &SigningKey,
) -> Result<(certs::Issuer, Vec<String>), String> {
    let started = Instant::now();
    let identities = identity_keys(&ctx.committee_dir, VALIDATORS)?;
    let genesis = genesis_of(ctx).map_err(|e| e.to_string())?;
    let set = genesis.parameter_set().map_err(|e| e.to_string())?;
    let voting_days = match set.get("gov.voting_days") {
        Some(neuroshard_governance::ParamValue::Integer(d)) => *d,
        other => return Err(format!("gov.voting_days is {other:?}")),
    };
    let pool = ctx.pool(13, 1).map_err(|e| e.to_string())?;
    let lookup = |k: &str| set.get(k).cloned();
    let mut issuer = certs::Issuer::new(pool, &ctx.chain_id, identities, &lookup).await?;
    let nep = certs::shorten_ratification(&mut issuer, ratifier, voting_days).await?;
    Ok((
        issuer,
        vec![format!(
            "setup: NEP-{} (emergency) set gov.voting_days {voting_days} -> {} and was voted to ratify, in {:.1} s: every later emergency gives an ACTIVATION and, 2 s on, a REVOCATION certificate",
            nep.0,
            certs::RATIFICATION_DAYS,
            started.elapsed().as_secs_f64()
        )],
    ))
}

/// The identity keys of the `n` validators in a keygen directory.
pub(crate) fn identity_keys(committee_dir: &Path, n: usize) -> Result<Vec<SigningKey>, String> {
    let mut identities = Vec::new();
    for i in 0..n {
        let path = committee_dir
            .join(format!("validator-{i}"))
            .join("identity.key");
        let secret = neuroshard_node::keys::read_hex_secret(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let secret: [u8; 32] = secret
            .as_slice()
            .try_into()
            .map_err(|_| format!("{}: not a 32-byte key", path.display()))?;
        identities.push(SigningKey::from_bytes(&secret));
    }
    Ok(identities)
}

/// Sets the suite's node.toml keys: `streams.slow_reader_timeout_ms` and
/// `raft.replicate_before_sync`.
fn set_node_config(
    path: &Path,
    slow_reader_ms: u64,
    replicate_before_sync: bool,
) -> Result<(), RealError> {
    let text = std::fs::read_to_string(path).map_err(RealError::io(path))?;
    let mut config = neuroshard_node::NodeConfig::parse(&text)
        .map_err(|e| RealError::invalid(path.display().to_string(), e))?;
    config.streams.slow_reader_timeout_ms = slow_reader_ms;
    config.raft.replicate_before_sync = replicate_before_sync;
    config
        .validate()
        .map_err(|e| RealError::invalid(path.display().to_string(), e))?;
    let body = config
        .to_toml()
        .map_err(|e| RealError::invalid(path.display().to_string(), e))?;
    std::fs::write(path, body).map_err(RealError::io(path))
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (CI
/// machines may start with a soft limit of 1 024); returns the soft limit
/// before and after.
// rlim_t is u64 here but not on every target.
#[allow(clippy::unnecessary_cast)]
pub fn raise_open_files() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on this process with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        let before = lim.rlim_cur as u64;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return (before, before);
        }
        (before, lim.rlim_cur as u64)
    }
}

/// Adds the suite's accounts to the genesis and sets its state budget
/// (when the registry has `gov.state_budget_bytes`). Returns the budget.
fn set_genesis(path: &Path, keys: &Keys, budget: u64) -> Result<Option<u64>, RealError> {
    let text = std::fs::read_to_string(path).map_err(RealError::io(path))?;
    let mut genesis =
        Genesis::from_toml(&text).map_err(|e| RealError::invalid(path.display().to_string(), e))?;
    for (key, balance, staked) in keys.allocations() {
        genesis.allocations.push(Allocation {
            account: account_of(key),
            balance: Amount(balance * NEURO),
            staked: Amount(staked * NEURO),
        });
    }
    let key = "gov.state_budget_bytes";
    let set = budget > 0 && neuroshard_governance::params::spec(key).is_some();
    if set {
        let value = i64::try_from(budget)
            .map_err(|_| RealError::invalid(key, format!("{budget} is too large")))?;
        genesis
            .parameters
            .insert(key.to_owned(), ParamInput::Integer(value));
    }
    genesis
        .parameter_set()
        .map_err(|e| RealError::invalid("genesis parameters", e))?;
    let body = genesis
        .to_toml()
        .map_err(|e| RealError::invalid("genesis", e))?;
    std::fs::write(path, body).map_err(RealError::io(path))?;
    Ok(set.then_some(budget))
}

pub(crate) async fn wait_for_leader(pool: &Pool) -> Result<(), RealError> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < STARTUP_TIMEOUT {
        for i in 0..pool.len() {
            if let Some(s) = client::status(pool, i, Duration::from_secs(1)).await {
                if s.role == "leader" {
                    return Ok(());
                }
                last = format!("validator {i}: {} term {}", s.role, s.term);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(RealError::Timeout {
        what: "the first leader".into(),
        waited_ms: started.elapsed().as_millis() as u64,
        last,
    })
}

/// A setup command: identical bytes until applied; a refusal stops the
/// suite (setup is not under test).
async fn ensure(
    pool: &Pool,
    signed: &SignedCommand,
) -> Result<neuroshard_governance::Receipt, RealError> {
    let started = Instant::now();
    let mut attempt = 0usize;
    loop {
        match client::submit(pool, attempt, signed, Duration::from_secs(5)).await {
            Reply::Applied { receipt, .. } => return Ok(receipt),
            Reply::Refused(r) => {
                return Err(RealError::SetupRefused {
                    command: signed.command.name().to_owned(),
                    message: format!("{} [{}]", r.message, r.rule),
                })
            }
            Reply::Unknown { rule, message } => {
                if started.elapsed() > SETUP_TIMEOUT {
                    return Err(RealError::Timeout {
                        what: format!("setup command {}", signed.command.name()),
                        waited_ms: started.elapsed().as_millis() as u64,
                        last: format!("{rule}: {message}"),
                    });
                }
            }
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The author drafts and submits a small NEP; returns it once in VOTING.
async fn open_vote(pool: &Pool, chain_id: &str, author: &SigningKey) -> Result<NepId, RealError> {
    let draft = SignedCommand::sign(
        chain_id,
        author,
        1,
        Command::CreateDraft {
            content: content::small_content("hostile suite: the honest vote"),
        },
    );
    let receipt = ensure(pool, &draft).await?;
    let Effect::DraftCreated { nep, .. } = receipt.effect else {
        return Err(RealError::invalid(
            "create-draft",
            format!("receipt names no draft: {:?}", receipt.effect),
        ));
    };
    ensure(
        pool,
        &SignedCommand::sign(chain_id, author, 2, Command::Submit { nep }),
    )
    .await?;
    let started = Instant::now();
    loop {
        let request = neuroshard_node::api_proto::GetProposalRequest {
            nep: nep.0,
            read: Some(neuroshard_node::api_proto::ReadOptions { stale: false }),
        };
        let mut c = pool.client(0);
        if let Ok(Ok(p)) =
            tokio::time::timeout(Duration::from_secs(2), c.get_proposal(request)).await
        {
            if p.into_inner().vote.is_some() {
                return Ok(nep);
            }
        }
        if started.elapsed() > SETUP_TIMEOUT {
            return Err(RealError::Timeout {
                what: format!("NEP-{} in VOTING", nep.0),
                waited_ms: started.elapsed().as_millis() as u64,
                last: "not yet".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
