//! Power loss on real processes (`chaos/powerloss`, docs/chaos.md "Power
//! loss on real processes"): the `neuroshard` binary as a committee on
//! loopback (mutual TLS, the real sled store), each validator's data
//! directory on its own lazyfs mount (chaos/lazyfs: written bytes stay in
//! memory until fsync/fdatasync). Closed-loop clients transfer all the
//! time; at every crash point the whole machine loses power: every lazyfs
//! is armed to crash inside one of its next few writes, the first that
//! fires is followed at once by the others (each drops every unsynced byte
//! and fails every later operation with EIO), every validator is killed
//! with SIGKILL, the mounts come back with their durable bytes only, the
//! validators restart, and once a leader is elected every command the
//! clients saw acknowledged so far must be in the restarted state.
//!
//! Exit status: 0 every acknowledged command survived every crash point
//! and the crashes dropped bytes; 1 a command was lost, the state is
//! inconsistent, a validator did not come back, or nothing was dropped
//! (the test exercised no loss); 2 the run could not be carried out.

pub mod mounts;
pub mod workload;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use ed25519_dalek::SigningKey;
use neuroshard_governance::{AccountId, Allocation, Amount, Genesis, NEURO};
use neuroshard_node::NodeConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::hostile::client::{self, Pool, Reply};
use crate::real::committee::{self, Timing};
use crate::real::error::RealError;
use crate::real::processes::Validators;
use mounts::Mounts;
use workload::{Load, View};

#[derive(Args, Debug)]
pub struct PowerlossArgs {
    /// The `neuroshard` binary (the validators).
    #[arg(long)]
    pub binary: PathBuf,
    /// The `neuroshard-lazyfs` binary (chaos/lazyfs).
    #[arg(long)]
    pub lazyfs: PathBuf,
    /// Work directory (committee, lazyfs backing directories, logs); kept.
    /// Default: a temporary directory removed at the end.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Crash points (power losses of the whole committee).
    #[arg(long, default_value_t = 10)]
    pub crash_points: usize,
    /// Validators.
    #[arg(long, default_value_t = 3)]
    pub validators: usize,
    /// Closed-loop transfer clients.
    #[arg(long, default_value_t = 6)]
    pub clients: usize,
    /// Load between two crash points: uniformly random in
    /// [min, max] milliseconds.
    #[arg(long, default_value_t = 1_500)]
    pub load_min_ms: u64,
    #[arg(long, default_value_t = 3_000)]
    pub load_max_ms: u64,
    /// A crash fires inside one of the next 1..=N writes of a validator's
    /// disk after arming.
    #[arg(long, default_value_t = 16)]
    pub arm_writes: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Genesis `checkpoint_interval`: small, so checkpoints are certified,
    /// snapshot files written and replaced and the log purged throughout
    /// the run, and crash points land in those writes too.
    #[arg(long, default_value_t = 256)]
    pub checkpoint_interval: u64,
    /// Test of the test: from the last crash point's load on, every disk
    /// answers fsync/fdatasync without making anything durable (a drive
    /// that ignores cache flushes). The run must then report acknowledged
    /// commands lost (chaos/powerloss runs it and expects that).
    #[arg(long, hide = true)]
    pub sabotage_lying_disks: bool,
}

const TIMING: Timing = Timing {
    day_ms: 1_000,
    review_days: 1,
    voting_days: 365,
    tick_interval_ms: 100,
};
/// Longest the committee may take to elect a leader after a start.
const LEADER_TIMEOUT: Duration = Duration::from_secs(45);
/// Longest the whole run may take.
const MAX_RUN: Duration = Duration::from_secs(600);
/// Longest an armed crash may wait for a write before the driver crashes
/// every disk itself.
const ARM_TIMEOUT: Duration = Duration::from_secs(3);
/// Genesis balance of every client (NEURO).
const CLIENT_NEURO: u64 = 1_000_000;

/// One crash point's row.
struct Row {
    point: usize,
    load_ms: u64,
    acked: usize,
    acked_since: usize,
    fired: String,
    dropped_bytes: u64,
    dropped_files: u64,
    recovery_ms: u64,
    lost: usize,
    findings: Vec<String>,
}

pub fn main(args: PowerlossArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("neuroshard-chaos powerloss: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            r = tokio::time::timeout(MAX_RUN, run(&args)) => r.unwrap_or_else(|_| Err(RealError::Timeout {
                what: "the power-loss run".into(),
                waited_ms: MAX_RUN.as_millis() as u64,
                last: "still running; stopped".into(),
            })),
            _ = async { match interrupt.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => Err(RealError::Interrupted("SIGINT")),
            _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => Err(RealError::Interrupted("SIGTERM")),
        }
    });
    // Dropping the run's future dropped the validators, then the mounts.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("neuroshard-chaos powerloss: {e}");
            ExitCode::from(2)
        }
    }
}

/// The run's work directory: removed at the end unless `--out` named it
/// (after the mounts are gone: it holds their mount points).
struct Work {
    path: PathBuf,
    remove: bool,
}

impl Drop for Work {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn account_of(key: &SigningKey) -> AccountId {
    AccountId(key.verifying_key().to_bytes())
}

fn set_genesis(
    path: &Path,
    keys: &[SigningKey],
    sink: &SigningKey,
    checkpoint_interval: u64,
) -> Result<(), RealError> {
    let text = std::fs::read_to_string(path).map_err(RealError::io(path))?;
    let mut genesis =
        Genesis::from_toml(&text).map_err(|e| RealError::invalid(path.display().to_string(), e))?;
    genesis.checkpoint_interval = checkpoint_interval;
    for key in keys.iter().chain(std::iter::once(sink)) {
        genesis.allocations.push(Allocation {
            account: account_of(key),
            balance: Amount(CLIENT_NEURO * NEURO),
            staked: Amount(0),
        });
    }
    genesis
        .parameter_set()
        .map_err(|e| RealError::invalid("genesis parameters", e))?;
    let body = genesis
        .to_toml()
        .map_err(|e| RealError::invalid("genesis", e))?;
    std::fs::write(path, body).map_err(RealError::io(path))
}

fn data_dir(config: &Path) -> Result<PathBuf, RealError> {
    let text = std::fs::read_to_string(config).map_err(RealError::io(config))?;
    let parsed = NodeConfig::parse(&text)
        .map_err(|e| RealError::invalid(config.display().to_string(), e))?;
    Ok(if parsed.data_dir.is_relative() {
        config
            .parent()
            .unwrap_or(Path::new("."))
            .join(parsed.data_dir)
    } else {
        parsed.data_dir
    })
}

async fn wait_for_leader(pool: &Pool) -> Result<Duration, RealError> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < LEADER_TIMEOUT {
        for i in 0..pool.len() {
            if let Some(s) = client::status(pool, i, Duration::from_millis(500)).await {
                if s.role == "leader" {
                    return Ok(started.elapsed());
                }
                last = format!("validator {i}: {} term {}", s.role, s.term);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(RealError::Timeout {
        what: "a leader".into(),
        waited_ms: started.elapsed().as_millis() as u64,
        last,
    })
}

fn spawn_all(validators: &mut Validators, pids: &Path) -> Result<(), RealError> {
    for i in 0..validators.len() {
        validators.spawn(i)?;
        if let Some(pid) = validators.pid(i) {
            mounts::record_pid(pids, pid);
        }
    }
    Ok(())
}

/// The power loss: waits for an armed disk to crash (or crashes them all
/// after [`ARM_TIMEOUT`]), crashes every other disk, SIGKILLs every
/// validator. Returns which disk fired and what all of them dropped.
async fn power_loss(
    mounts: &Mounts,
    validators: &mut Validators,
    rng: &mut ChaCha8Rng,
    arm_writes: u64,
) -> Result<(String, u64, u64), RealError> {
    let mut armed = Vec::new();
    for i in 0..mounts.len() {
        let k = rng.gen_range(1..=arm_writes.max(1));
        mounts.request(i, &format!("arm {k}"))?;
        armed.push(k);
    }
    let started = Instant::now();
    let fired = loop {
        let mut fired = None;
        for i in 0..mounts.len() {
            if mounts.request(i, "status")?.get("crashed") == Some(&1) {
                fired = Some(i);
                break;
            }
        }
        if let Some(i) = fired {
            break format!("disk {i} (write {})", armed[i]);
        }
        if started.elapsed() > ARM_TIMEOUT {
            break "driver (no write)".to_owned();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    // Every other disk now, then every process.
    let mut bytes = 0;
    let mut files = 0;
    for i in 0..mounts.len() {
        let d = mounts.request(i, "crash")?;
        bytes += d.get("dropped_bytes").copied().unwrap_or(0);
        files += d.get("dropped_files").copied().unwrap_or(0);
    }
    for i in 0..validators.len() {
        if let Some(pid) = validators
            .pid(i)
            .and_then(|p| libc::pid_t::try_from(p).ok())
        {
            // SAFETY: kill(2) on a child the Validators own and have not
            // reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for i in 0..validators.len() {
        let _ = validators.kill9(i);
    }
    Ok((fired, bytes, files))
}

/// Reads every client's account (linearizable) from any validator.
async fn views(load: &Load, pool: &Pool) -> Vec<Option<View>> {
    let mut out = Vec::with_capacity(load.keys.len());
    for c in 0..load.keys.len() {
        let account = load.account(c);
        let mut view = None;
        let started = Instant::now();
        'retry: while started.elapsed() < Duration::from_secs(20) {
            for r in 0..pool.len() {
                if let Some(a) = client::account(
                    pool,
                    (c + r) % pool.len(),
                    &account,
                    workload::ATTEMPT_TIMEOUT,
                )
                .await
                {
                    view = Some(View {
                        next_nonce: a.next_nonce,
                        balance: a.balance,
                        applied_index: a.read_point.as_ref().map_or(0, |p| p.applied_index),
                    });
                    break 'retry;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        out.push(view);
    }
    out
}

/// Re-sends each client's last command acknowledged before the power
/// loss (`acks`: those): the answer must be its original receipt (same log
/// index, same receipt: same position). The clients are paused, so it is
/// still among the account's remembered outcomes.
async fn receipts(load: &Load, pool: &Pool, acks: &[workload::Ack]) -> Vec<String> {
    let mut findings = Vec::new();
    for c in 0..load.keys.len() {
        let Some(last) = acks.iter().rev().find(|a| a.client == c) else {
            continue;
        };
        let started = Instant::now();
        let mut answer = String::new();
        let mut same = false;
        while started.elapsed() < Duration::from_secs(20) {
            match client::submit_bytes(pool, c, last.bytes.clone(), workload::ATTEMPT_TIMEOUT).await
            {
                Reply::Applied {
                    log_index,
                    receipt_json,
                    ..
                } => {
                    same = log_index == last.log_index && receipt_json == last.receipt_json;
                    answer = format!("applied at {log_index}: {receipt_json}");
                    break;
                }
                Reply::Refused(r) => {
                    answer = format!("refused [{}]: {}", r.rule, r.message);
                    break;
                }
                Reply::Unknown { rule, message } => {
                    answer = format!("no answer [{rule}]: {message}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        if !same {
            findings.push(format!(
                "client {c} nonce {}: acknowledged at {} with {}, re-sent after the restart: {answer}",
                last.nonce, last.log_index, last.receipt_json
            ));
        }
    }
    findings
}

/// At most [`SHOWN_FINDINGS`] lines, then how many more.
fn print_findings(indent: &str, findings: &[String]) {
    for f in findings.iter().take(SHOWN_FINDINGS) {
        println!("{indent}! {f}");
    }
    if findings.len() > SHOWN_FINDINGS {
        println!("{indent}! ... and {} more", findings.len() - SHOWN_FINDINGS);
    }
}

/// Findings printed per crash point.
const SHOWN_FINDINGS: usize = 8;

async fn run(args: &PowerlossArgs) -> Result<bool, RealError> {
    let run_started = Instant::now();
    if args.validators < 3 {
        return Err(RealError::invalid("--validators", "at least 3"));
    }
    let binary = std::fs::canonicalize(&args.binary).map_err(RealError::io(&args.binary))?;
    let lazyfs = std::fs::canonicalize(&args.lazyfs).map_err(RealError::io(&args.lazyfs))?;
    let work = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(RealError::io(dir))?;
            Work {
                path: std::fs::canonicalize(dir).map_err(RealError::io(dir))?,
                remove: false,
            }
        }
        None => {
            let path =
                std::env::temp_dir().join(format!("neuroshard-powerloss-{}", std::process::id()));
            std::fs::create_dir_all(&path).map_err(RealError::io(&path))?;
            Work { path, remove: true }
        }
    };
    let dir = work.path.join("committee");
    if dir.exists() {
        return Err(RealError::invalid(
            dir.display().to_string(),
            "exists: give --out a fresh directory",
        ));
    }
    let pids = work.path.join("pids");
    let n = args.validators;
    let base = crate::real::free_ports(2 * n as u16)?;
    let addrs: Vec<committee::Address> = (0..n)
        .map(|i| committee::Address {
            peer: format!("127.0.0.1:{}", base + 2 * i as u16),
            api: format!("127.0.0.1:{}", base + 2 * i as u16 + 1),
        })
        .collect();
    let chain_id = "powerloss".to_owned();
    let committee = committee::prepare(&binary, &dir, &chain_id, &addrs, TIMING)?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x0905_E1055);
    let keys: Vec<SigningKey> = (0..args.clients)
        .map(|_| SigningKey::from_bytes(&rng.gen()))
        .collect();
    let sink = SigningKey::from_bytes(&rng.gen());
    set_genesis(
        &dir.join("genesis.toml"),
        &keys,
        &sink,
        args.checkpoint_interval,
    )?;

    let data_dirs = committee
        .configs
        .iter()
        .map(|c| data_dir(c))
        .collect::<Result<Vec<_>, _>>()?;
    // Field order of the drop: validators first, then the mounts under
    // them, then the work directory.
    let mounts = Mounts::start(&lazyfs, &data_dirs, &work.path, &pids)?;
    let mut validators = Validators::new(&binary, committee.configs.clone(), vec![Vec::new(); n]);
    spawn_all(&mut validators, &pids)?;
    let api_addrs: Vec<String> = addrs.iter().map(|a| a.api.clone()).collect();
    let pool = Pool::new(
        &api_addrs,
        &committee.ca,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        2,
    )?;
    let first = wait_for_leader(&pool).await?;
    println!(
        "powerloss: {n} validators (release binary, TLS, sled) on lazyfs mounts, leader after {:.1} s; {} clients transferring; {} crash points; checkpoint_interval {}",
        first.as_secs_f64(),
        args.clients,
        args.crash_points,
        args.checkpoint_interval
    );

    let load = Load::new(keys, account_of(&sink), CLIENT_NEURO * NEURO);
    let mut tasks = Vec::new();
    for id in 0..args.clients {
        tasks.push(tokio::spawn(workload::run(
            load.clone(),
            pool.clone(),
            chain_id.clone(),
            id,
        )));
    }

    let mut rows: Vec<Row> = Vec::new();
    let mut acked_before = 0usize;
    let mut fatal = Vec::new();
    println!(
        "{:>5} {:>8} {:>7} {:>6} {:<18} {:>13} {:>6} {:>9} {:>5}",
        "crash",
        "load ms",
        "acked",
        "new",
        "fired by",
        "bytes dropped",
        "files",
        "leader ms",
        "lost"
    );
    for point in 1..=args.crash_points {
        let load_ms = rng.gen_range(args.load_min_ms..=args.load_max_ms.max(args.load_min_ms));
        let lying = args.sabotage_lying_disks && point == args.crash_points;
        if lying {
            println!("      (sabotage: from here on every disk ignores fsync/fdatasync)");
            for i in 0..mounts.len() {
                mounts.request(i, "lie 1")?;
            }
        }
        tokio::time::sleep(Duration::from_millis(load_ms)).await;
        let (fired, dropped_bytes, dropped_files) =
            power_loss(&mounts, &mut validators, &mut rng, args.arm_writes).await?;
        if lying {
            for i in 0..mounts.len() {
                mounts.request(i, "lie 0")?;
            }
        }
        // The clients finish what they have in flight (answered after
        // the restart) and wait, so the restarted state is checked quiet.
        load.pause();
        let acked = load.acked();
        let before_crash = load.acks();
        for i in 0..mounts.len() {
            mounts.request(i, "restart")?;
        }
        spawn_all(&mut validators, &pids)?;
        let recovery = wait_for_leader(&pool).await?;
        let quiet = Instant::now();
        while load.idle() < args.clients {
            if quiet.elapsed() > Duration::from_secs(30) {
                return Err(RealError::Timeout {
                    what: "the clients' in-flight commands answered after the restart".into(),
                    waited_ms: quiet.elapsed().as_millis() as u64,
                    last: format!("{} of {} clients idle", load.idle(), args.clients),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let acks = load.acks();
        let views = views(&load, &pool).await;
        let verdict = workload::check(
            &acks,
            &views,
            load.genesis_balance,
            &load.refused_at_apply(),
        );
        let mut findings = verdict.findings;
        findings.extend(receipts(&load, &pool, &before_crash).await);
        for (i, status) in validators.exited() {
            findings.push(format!(
                "validator {i} exited after the restart ({status}): see its node.log"
            ));
        }
        let row = Row {
            point,
            load_ms,
            acked,
            acked_since: acked - acked_before,
            fired,
            dropped_bytes,
            dropped_files,
            recovery_ms: recovery.as_millis() as u64,
            lost: verdict.lost,
            findings,
        };
        acked_before = acked;
        println!(
            "{:>5} {:>8} {:>7} {:>6} {:<18} {:>13} {:>6} {:>9} {:>5}",
            row.point,
            row.load_ms,
            row.acked,
            row.acked_since,
            row.fired,
            row.dropped_bytes,
            row.dropped_files,
            row.recovery_ms,
            row.lost
        );
        print_findings("      ", &row.findings);
        rows.push(row);
        load.resume();
    }

    // The end: the clients stop, every acknowledged command once more.
    load.stop();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let acks = load.acks();
    let verdict = workload::check(
        &acks,
        &views(&load, &pool).await,
        load.genesis_balance,
        &load.refused_at_apply(),
    );
    fatal.extend(verdict.findings.iter().cloned());
    let total_dropped: u64 = rows.iter().map(|r| r.dropped_bytes).sum();
    let lost = rows
        .iter()
        .map(|r| r.lost)
        .max()
        .unwrap_or(0)
        .max(verdict.lost);
    let findings = rows.iter().map(|r| r.findings.len()).sum::<usize>() + fatal.len();
    println!(
        "powerloss: {} crash points, {} acknowledged commands (all checked after every crash point), {} bytes dropped in total, {} lost, {} findings; {:.1} s",
        rows.len(),
        acks.len(),
        total_dropped,
        lost,
        findings,
        run_started.elapsed().as_secs_f64()
    );
    print_findings("  ", &fatal);
    let mut pass = true;
    if lost > 0 || findings > 0 {
        println!("powerloss: FAIL: acknowledged commands lost or the restarted state inconsistent");
        pass = false;
    }
    if total_dropped == 0 {
        println!("powerloss: FAIL: no crash dropped any unsynced byte: the run exercised no loss");
        pass = false;
    }
    if acks.is_empty() {
        println!("powerloss: FAIL: no command was acknowledged");
        pass = false;
    }
    // Snapshot files the validators hold now (through their mounts): the
    // run must have written some, or it exercised no snapshot.
    let snapshot_files: Vec<usize> = data_dirs
        .iter()
        .map(|d| {
            std::fs::read_dir(d.join("snapshots")).map_or(0, |entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
                    .count()
            })
        })
        .collect();
    println!("powerloss: snapshot files held at the end, per validator: {snapshot_files:?}");
    if !args.sabotage_lying_disks && snapshot_files.iter().all(|&c| c == 0) {
        println!(
            "powerloss: FAIL: no validator holds a snapshot file: the run exercised no snapshot"
        );
        pass = false;
    }
    if pass {
        println!("powerloss: PASS");
    }
    drop(validators);
    drop(mounts);
    drop(work);
    Ok(pass)
}
