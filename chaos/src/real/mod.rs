//! Real processes (issue 6, item 3): the `neuroshard` binary as four
//! validator hosts, each in its own network namespace on a private bridge,
//! faults injected across a vote's deadline — partitions (nftables or
//! iptables), a delayed and lossy link (tc netem), `kill -9`, SIGSTOP, a
//! skewed clock — while the workload client votes across the deadline.
//! Each scenario is recorded as a history in the chaos format and judged
//! by the same checkers as the model and the simulation.
//!
//! Everything a run creates is removed when it ends, also on an error,
//! a panic or Ctrl-C: the validators ([`processes::Validators`]), the
//! namespaces with their bridge and links ([`netns::Netns`]), the work
//! directory (unless `--out` names one to keep). Where namespaces cannot
//! be created (not root, no iproute2), the run falls back to loopback and
//! runs only the scenarios that need no network fault.

pub mod api;
pub mod cmd;
pub mod committee;
pub mod error;
pub mod finals;
pub mod journal;
pub mod netns;
pub mod processes;
pub mod sampler;
pub mod scenarios;
pub mod table;
pub mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;

use neuroshard_chaos::history::{Header, History, HISTORY_FORMAT};
use neuroshard_chaos::model::workload::{Role, LATE_WINDOW_MS};
use neuroshard_chaos::report::check;

use committee::{Address, Timing};
use error::RealError;
use journal::{now_ms, Journal};
use netns::{Netns, API_PORT, PEER_PORT};
use processes::Validators;
use sampler::Watch;
use scenarios::{Faults, Scenario};
use table::Row;
use workload::{Accounts, Shared, FIRST_VOTER_CLIENT};

/// Validators of every run: n = 4, t + 1 = 3.
pub const VALIDATORS: u32 = 4;
/// The chain's timing: a 1 s governance day, one day of review, five of
/// voting, a tick every 100 ms.
pub const TIMING: Timing = Timing {
    day_ms: 1_000,
    review_days: 1,
    voting_days: 5,
    tick_interval_ms: 100,
};
/// Longest the committee may take to elect its first leader.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the run goes on once everything settled, so lagging replicas
/// are sampled agreeing.
pub const TAIL: Duration = Duration::from_millis(600);
/// Longest the clients and samplers get to finish their current call.
pub const STOP_GRACE: Duration = Duration::from_secs(3);
/// Longest namespace name prefix accepted.
pub const MAX_NETNS_PREFIX: usize = 32;
/// Longest one scenario may take from keygen to verdict, whatever
/// happens (a run always stops by itself).
pub const MAX_SCENARIO: Duration = Duration::from_secs(180);
/// The liveness bound stated in every history's header.
pub const DEFAULT_LIVENESS_BOUND_MS: u64 = 10_000;

#[derive(Clone, Debug, Args)]
pub struct RealArgs {
    /// The `neuroshard` binary to run as validators (build it with
    /// `cargo build --release -p neuroshard-cli`).
    #[arg(long)]
    pub binary: PathBuf,
    /// Scenarios to run (default: all), in order.
    #[arg(long = "scenario", value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Keep every file of the run here (committees, data, node logs,
    /// histories); default: a temporary directory removed at the end.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seeds the workload's keys and choices (recorded in each header).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run on loopback without network namespaces (network faults skipped).
    #[arg(long, conflicts_with = "require_netns")]
    pub loopback: bool,
    /// Refuse to fall back to loopback: when network namespaces cannot be
    /// made, the run fails (exit 2) instead of skipping the network
    /// scenarios. `chaos/run` sets it under CI, where a skip would pass
    /// silently.
    #[arg(long)]
    pub require_netns: bool,
    #[arg(long, default_value_t = DEFAULT_LIVENESS_BOUND_MS)]
    pub liveness_bound_ms: u64,
    /// Names of the run's network namespaces start with this (default:
    /// `nschaos<pid>`); `chaos/run` passes one so its trap can remove
    /// whatever a killed run left behind.
    #[arg(long)]
    pub netns_prefix: Option<String>,
}

/// Where a run keeps its files; a temporary one is removed on drop (also
/// used by the hostile-client suite).
pub(crate) struct WorkDir {
    pub(crate) path: PathBuf,
    pub(crate) remove: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// `neuroshard-chaos real`: exit 0 when every scenario ran and kept every
/// invariant, 1 on any violation, 2 when a scenario could not run.
pub fn main(args: RealArgs) -> ExitCode {
    match run(args) {
        Ok(rows) => {
            if rows.iter().any(|r| r.error.is_some()) {
                ExitCode::from(2)
            } else if rows.iter().any(Row::failed) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("neuroshard-chaos real: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: RealArgs) -> Result<Vec<Row>, RealError> {
    let binary = std::fs::canonicalize(&args.binary).map_err(RealError::io(&args.binary))?;
    let scenarios = if args.scenarios.is_empty() {
        Scenario::all()
    } else {
        args.scenarios.clone()
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
            let path =
                std::env::temp_dir().join(format!("neuroshard-chaos-real-{}", std::process::id()));
            std::fs::create_dir_all(&path).map_err(RealError::io(&path))?;
            WorkDir { path, remove: true }
        }
    };
    let prefix = args
        .netns_prefix
        .clone()
        .unwrap_or_else(|| format!("nschaos{}", std::process::id()));
    if prefix.is_empty()
        || prefix.len() > MAX_NETNS_PREFIX
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(RealError::invalid(
            "--netns-prefix",
            format!("{prefix:?}: 1..={MAX_NETNS_PREFIX} ASCII letters, digits or '_'"),
        ));
    }
    let net = if args.loopback {
        println!("chaos real: --loopback: validators on 127.0.0.1, network faults skipped");
        None
    } else {
        match netns::probe(&prefix) {
            Ok(()) => Some(Netns::create(&prefix, VALIDATORS)?),
            Err(e) if args.require_netns => {
                return Err(RealError::invalid(
                    "--require-netns",
                    format!("network namespaces are unavailable: {e}"),
                ));
            }
            Err(e) => {
                println!(
                    "chaos real: network namespaces are unavailable ({e}); falling back to loopback: only kill -9, SIGSTOP and clock-skew scenarios run"
                );
                None
            }
        }
    };
    if let Some(n) = &net {
        println!(
            "chaos real: {VALIDATORS} validators in network namespaces {prefix}-v0..{} on bridge {prefix}-hub/br0 ({}.0/24), packet filter {:?}, link shaping {:?}",
            VALIDATORS - 1,
            netns::SUBNET,
            n.firewall,
            n.shaper
        );
        // Before any thread exists: the runtime's threads inherit it.
        n.enter_client()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RealError::io(Path::new("tokio runtime")))?;
    let rows = runtime.block_on(run_all(
        &args,
        &binary,
        &work.path,
        net.as_ref(),
        &scenarios,
    ));
    // Stop every task before the namespaces go away.
    drop(runtime);
    drop(net);
    let rows = rows?;
    println!("\n{}", table::render(&rows));
    if let Some(dir) = &args.out {
        println!("histories, committees and node logs: {}", dir.display());
    }
    Ok(rows)
}

async fn run_all(
    args: &RealArgs,
    binary: &Path,
    work: &Path,
    net: Option<&Netns>,
    scenarios: &[Scenario],
) -> Result<Vec<Row>, RealError> {
    let mut rows = Vec::new();
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(RealError::io(Path::new("SIGINT handler")))?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(RealError::io(Path::new("SIGTERM handler")))?;
    for (k, &scenario) in scenarios.iter().enumerate() {
        // A scenario asked for again gets its own directory and row.
        let repeat = scenarios[..k].iter().filter(|s| **s == scenario).count();
        let name = match repeat {
            0 => scenario.name(),
            r => format!("{}-{}", scenario.name(), r + 1),
        };
        if scenario.needs_network() && net.is_none() {
            println!("chaos real: {name}: skipped (needs network namespaces)");
            continue;
        }
        println!("chaos real: {name}: running");
        let started = Instant::now();
        let dir = work.join(&name);
        let seed = args.seed.wrapping_add(k as u64);
        let bounded = tokio::time::timeout(
            MAX_SCENARIO,
            run_scenario(args, binary, &dir, net, scenario, seed),
        );
        let outcome = tokio::select! {
            r = bounded => r.unwrap_or_else(|_| Err(RealError::Timeout {
                what: format!("scenario {name}"),
                waited_ms: MAX_SCENARIO.as_millis() as u64,
                last: "still running; stopped".into(),
            })),
            _ = interrupt.recv() => Err(RealError::Interrupted("SIGINT")),
            _ = terminate.recv() => Err(RealError::Interrupted("SIGTERM")),
        };
        if let Some(n) = net {
            if let Err(e) = n.clear_faults() {
                eprintln!("chaos real: {name}: clearing faults: {e}");
            }
        }
        let seconds = started.elapsed().as_secs();
        let row = match outcome {
            Ok((history, report, verdict)) => {
                let row = table::row(&name, &history, &report, &verdict, seconds);
                if !report.is_clean() {
                    println!(
                        "{name}: history {}\n{}",
                        dir.join("history.jsonl").display(),
                        report.table()
                    );
                }
                row
            }
            Err(e @ RealError::Interrupted(_)) => return Err(e),
            Err(e) => table::error_row(&name, seconds, e.to_string()),
        };
        println!(
            "chaos real: {name}: {} in {seconds} s",
            match (&row.error, row.violations) {
                (Some(_), _) => "ERROR".to_owned(),
                (None, 0) => "ok".to_owned(),
                (None, v) => format!("{v} violations"),
            }
        );
        rows.push(row);
    }
    Ok(rows)
}

/// Addresses of the validators: their own namespace's address, or
/// loopback ports from `base`.
pub(crate) fn addresses(net: Option<&Netns>, base: u16) -> Vec<Address> {
    (0..VALIDATORS)
        .map(|i| match net {
            Some(_) => Address {
                peer: format!("{}:{PEER_PORT}", netns::validator_ip(i)),
                api: format!("{}:{API_PORT}", netns::validator_ip(i)),
            },
            None => Address {
                peer: format!("127.0.0.1:{}", base + 2 * i as u16),
                api: format!("127.0.0.1:{}", base + 2 * i as u16 + 1),
            },
        })
        .collect()
}

/// A range of `count` consecutive free loopback ports.
pub(crate) fn free_ports(count: u16) -> Result<u16, RealError> {
    let mut candidate = 20_000 + (std::process::id() % 20_000) as u16;
    for _ in 0..200 {
        if (0..count).all(|i| std::net::TcpListener::bind(("127.0.0.1", candidate + i)).is_ok()) {
            return Ok(candidate);
        }
        candidate = 20_000 + (candidate - 20_000 + 97) % 30_000;
    }
    Err(RealError::invalid(
        "loopback ports",
        format!("no {count} consecutive free ports found"),
    ))
}

/// One scenario from keygen to verdict.
async fn run_scenario(
    args: &RealArgs,
    binary: &Path,
    dir: &Path,
    net: Option<&Netns>,
    scenario: Scenario,
    seed: u64,
) -> Result<(History, neuroshard_chaos::Report, scenarios::Verdict), RealError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(RealError::io(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(RealError::io(dir))?;
    let base = match net {
        Some(_) => PEER_PORT,
        None => free_ports(2 * VALIDATORS as u16)?,
    };
    let addrs = addresses(net, base);
    let chain_id = format!("chaos-{}", scenario.name());
    let committee = committee::prepare(binary, &dir.join("committee"), &chain_id, &addrs, TIMING)?;
    let launch = (0..VALIDATORS)
        .map(|i| net.map(|n| n.exec_prefix(i)).unwrap_or_default())
        .collect();
    let validators = Arc::new(Mutex::new(Validators::new(
        binary,
        committee.configs.clone(),
        launch,
    )));
    {
        let mut v = validators.lock().unwrap_or_else(|p| p.into_inner());
        for i in 0..VALIDATORS as usize {
            v.spawn(i)?;
        }
    }
    let history_path = dir.join("history.jsonl");
    let header = Header {
        format: HISTORY_FORMAT,
        harness: "processes".to_owned(),
        seed: Some(seed),
        chain_id: committee.chain_id.clone(),
        committee: committee.info.clone(),
        replicas: VALIDATORS,
        liveness_bound_ms: args.liveness_bound_ms,
        started_ms: now_ms(),
    };
    let journal = Arc::new(Journal::create(&history_path, &header)?);
    let api_addrs: Vec<String> = addrs.iter().map(|a| a.api.clone()).collect();
    let endpoints = api::Endpoints::new(&api_addrs, &committee.ca)?;
    let watch = Watch::new(VALIDATORS as usize);
    let stop = Arc::new(AtomicBool::new(false));
    let mut samplers = tokio::task::JoinSet::new();
    for i in 0..VALIDATORS {
        samplers.spawn(sampler::sample(
            i,
            endpoints.clone(),
            journal.clone(),
            watch.clone(),
            stop.clone(),
        ));
    }
    // Whatever happens next, the tasks stop when this guard goes.
    let _stop_guard = StopOnDrop(stop.clone());

    let start = now_ms();
    while watch.leader().is_none() {
        if now_ms().saturating_sub(start) > STARTUP_TIMEOUT.as_millis() as u64 {
            return Err(RealError::Timeout {
                what: "the first leader".into(),
                waited_ms: now_ms().saturating_sub(start),
                last: watch.describe(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let accounts = Accounts::new(seed);
    let shared = Shared {
        journal: journal.clone(),
        endpoints: endpoints.clone(),
        chain_id: committee.chain_id.clone(),
        open: Arc::new(Mutex::new(Vec::new())),
        neps: Arc::new(Mutex::new(Vec::new())),
        stop: stop.clone(),
    };
    workload::fund_and_stake(&shared, &committee.treasury, &accounts).await?;
    let expected_neps = neuroshard_chaos::model::workload::nep_contents().len();
    let mut clients = tokio::task::JoinSet::new();
    let author = tokio::spawn(workload::author(shared.clone(), accounts.author.clone()));
    let opener = tokio::spawn(workload::open_votes(
        shared.clone(),
        accounts.whale.clone(),
        expected_neps,
    ));
    for (k, (key, preference)) in accounts.voters.iter().enumerate() {
        clients.spawn(workload::voter(
            shared.clone(),
            FIRST_VOTER_CLIENT + k as u32,
            key.clone(),
            Role::Voter {
                preference: *preference,
            },
            seed,
        ));
    }
    clients.spawn(workload::voter(
        shared.clone(),
        FIRST_VOTER_CLIENT + accounts.voters.len() as u32,
        accounts.latecomer.clone(),
        Role::Latecomer,
        seed,
    ));

    // The first deadline, once its vote is open.
    let first_deadline = loop {
        if let Some(v) = shared
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
        {
            break v.deadline_ms;
        }
        if author.is_finished() || opener.is_finished() {
            // A setup failure ends the run with its own error below.
            if let Some(e) = finished_error(author, opener).await {
                return Err(e);
            }
            return Err(RealError::invalid("setup", "the first vote never opened"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let faults = Faults {
        validators: validators.clone(),
        net,
        journal: &journal,
        watch: &watch,
        endpoints: &endpoints,
        deadline_ms: first_deadline,
        max_clock_skew_ms: committee.max_clock_skew_ms,
    };
    let verdict = faults.run(scenario).await?;
    author
        .await
        .map_err(|e| RealError::invalid("author task", e))??;
    opener
        .await
        .map_err(|e| RealError::invalid("vote opener task", e))??;
    let neps = shared.nep_ids();
    let last_deadline = shared
        .open
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|v| v.deadline_ms)
        .max()
        .unwrap_or(first_deadline);

    // Until every replica settled every NEP and issued every certificate
    // (and the voters' late window is over), within the liveness bound.
    // Every schedule returns once healed: the last heal was just now.
    let from = last_deadline.max(now_ms());
    let limit = from + args.liveness_bound_ms + 2_000;
    let ids: Vec<u64> = neps.iter().map(|n| n.0).collect();
    loop {
        let now = now_ms();
        let late_window_over = now > last_deadline + LATE_WINDOW_MS + 400;
        if (late_window_over && watch.all_settled(&ids)) || now > limit {
            break;
        }
        let crashed = validators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .exited();
        for (i, status) in crashed {
            println!("chaos real: validator {i} exited by itself ({status}); see its node.log");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(TAIL).await;
    let mut verdict = verdict;
    if let Some(term) = verdict.stable_term {
        let (end, _) = watch.top_term(u32::MAX);
        verdict
            .notes
            .push(format!("term {term} at the heal, {end} at the end"));
        if end > term {
            verdict.findings.push(format!(
                "the heal forced a leader election: the term went from {term} (the majority's leader at the heal) to {end}"
            ));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while clients.join_next().await.is_some() {}
        while samplers.join_next().await.is_some() {}
    })
    .await;
    let contradictions = finals::record(
        &endpoints,
        &journal,
        &watch,
        &neps,
        &accounts.voting_accounts(),
    )
    .await;
    verdict.findings.extend(contradictions);
    journal.finish()?;
    validators
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .kill_all();
    let history = History::load(&history_path)?;
    let report = check(&history);
    Ok((history, report, verdict))
}

/// Sets the stop flag when dropped, so spawned tasks end with the scenario
/// however it ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn finished_error(
    author: tokio::task::JoinHandle<Result<(), RealError>>,
    opener: tokio::task::JoinHandle<Result<(), RealError>>,
) -> Option<RealError> {
    for handle in [author, opener] {
        if handle.is_finished() {
            match handle.await {
                Ok(Err(e)) => return Some(e),
                Err(e) => return Some(RealError::invalid("setup task", e)),
                Ok(Ok(())) => {}
            }
        }
    }
    None
}
