//! The Byzantine suite (issue 13, item 5): a real committee of four
//! `neuroshard` validators on loopback (mutual TLS, sled with fsync), an
//! honest workload of transfers and a light node following the certificate
//! stream throughout, certificates issued all along (emergencies), and a
//! faulty validator — the suite itself holding one validator's own key
//! files — trying, one scenario after the other, everything issue 13 names:
//! a forged snapshot to a lagging follower, a tick days ahead,
//! `Tick{u64::MAX}`, withheld ticks, a membership change, a
//! `CertificateIssued` with a bad or a foreign signature, shares for
//! payloads its replica did not derive, and equivocation. Every scenario
//! but equivocation must be refused (the rule named by the refusing
//! validators); equivocation must be detected at the first checkpoint
//! after it. Each scenario is recorded as a chaos history (every replica's
//! applied state hashes, the honest commands, the certificates, the attack
//! as a fault) and judged by the invariant checkers; one table row per
//! scenario (docs/chaos.md, "The Byzantine suite").

pub mod attacks;
pub mod faulty;
pub mod table;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use ed25519_dalek::SigningKey;
use neuroshard_governance::genesis::ParamInput;
use neuroshard_governance::{AccountId, Allocation, Amount, Genesis, NEURO};
use neuroshard_node::api_proto as api;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use neuroshard_chaos::history::{
    CommandSummary, Event, Header, History, Invoke, OpResult, OutcomeKind, HISTORY_FORMAT,
};
use neuroshard_chaos::report::check;

use crate::hostile::client::Pool;
use crate::hostile::honest::{self, Honest, HonestClient, Outcome as HonestOutcome, Role};
use crate::hostile::streams::{self, LightState};
use crate::hostile::{certs, OwnRuntime};
use crate::real::api::Endpoints;
use crate::real::committee::{self, Timing};
use crate::real::error::RealError;
use crate::real::journal::{now_ms, Journal};
use crate::real::processes::Validators;
use crate::real::sampler::{self, Watch};
use crate::real::WorkDir;

use attacks::Outcome;
use table::Row;

/// Validators of the committee: n = 4, t + 1 = 3, f = 1.
pub const VALIDATORS: usize = 4;
/// A 1 s governance day; an emergency's ratification vote of 2 days fails
/// for lack of quorum, so every emergency gives an ACTIVATION and, 2 s on,
/// a REVOCATION certificate; a tick every 100 ms.
pub const TIMING: Timing = Timing {
    day_ms: 1_000,
    review_days: 1,
    voting_days: 2,
    tick_interval_ms: 100,
};
/// Longest the whole suite may run, from keygen to verdict.
pub const MAX_SUITE: Duration = Duration::from_secs(340);
/// Honest transfer clients (in pairs, sending to each other).
pub const HONEST_CLIENTS: usize = 4;
/// After each attack, honest traffic before the row closes.
pub const SETTLE: Duration = Duration::from_millis(1_500);

/// One scenario of the suite, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    /// An InstallSnapshot of a made-up state to a lagging follower.
    ForgedSnapshot,
    /// A tick two days ahead.
    TickAhead,
    /// `Tick{u64::MAX}`.
    TickMax,
    /// The leader killed and played by the suite: heartbeats, no ticks.
    WithheldTicks,
    /// A membership with the faulty leader as the only voter.
    Membership,
    /// A `CertificateIssued` whose signature is corrupted.
    BadCertificate,
    /// A `CertificateIssued` validly signed by another chain's committee.
    ForeignCertificate,
    /// Certificate and checkpoint shares over made-up payloads.
    ForeignShares,
    /// Different entries at one index to different followers (last: its
    /// victim stays diverged).
    Equivocation,
}

impl Scenario {
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

#[derive(Clone, Debug, Args)]
pub struct ByzantineArgs {
    /// The `neuroshard` binary to run as validators.
    #[arg(long)]
    pub binary: PathBuf,
    /// Scenarios to run (default: all), in the suite's order.
    #[arg(long = "scenario", value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Keep the committee, data, node logs and histories here (default: a
    /// temporary directory removed at the end).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seeds the honest accounts.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The genesis `checkpoint_interval`.
    #[arg(long, default_value_t = 50)]
    pub checkpoint_interval: u64,
    /// The genesis `gov.max_clock_skew_ms` (the withheld-ticks stall is
    /// about this plus the watchdog's grace and an election).
    #[arg(long, default_value_t = 3_000)]
    pub max_clock_skew_ms: u64,
    /// `safety.ignore_refused_leader_ms` of the validators (short, so one
    /// scenario's offender is heard again before the next).
    #[arg(long, default_value_t = 2_000)]
    pub ignore_ms: u64,
    /// Pause between an honest client's commands.
    #[arg(long, default_value_t = 50)]
    pub honest_pace_ms: u64,
}

/// `neuroshard-chaos byzantine`: exit 0 when every row passed, 1 when any
/// failed, 2 when the suite could not run.
pub fn main(args: ByzantineArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("neuroshard-chaos byzantine: tokio runtime: {e}");
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
                what: "the Byzantine suite".into(),
                waited_ms: MAX_SUITE.as_millis() as u64,
                last: "still running; stopped".into(),
            })),
            _ = async { match interrupt.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => Err(RealError::Interrupted("SIGINT")),
            _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => Err(RealError::Interrupted("SIGTERM")),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(rows) if !rows.is_empty() && rows.iter().all(Row::passed) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("neuroshard-chaos byzantine: {e}");
            ExitCode::from(2)
        }
    }
}

/// One scenario's recording: its history so far, its samplers' stop flag.
struct Recording {
    scenario: Scenario,
    path: PathBuf,
    journal: Arc<Journal>,
    started_ms: u64,
    ended_ms: u64,
    outcome: Outcome,
}

fn work_dir(out: &Option<PathBuf>) -> Result<WorkDir, RealError> {
    Ok(match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(RealError::io(dir))?;
            WorkDir {
                path: std::fs::canonicalize(dir).map_err(RealError::io(dir))?,
                remove: false,
            }
        }
        None => {
            let path = std::env::temp_dir()
                .join(format!("neuroshard-chaos-byzantine-{}", std::process::id()));
            std::fs::create_dir_all(&path).map_err(RealError::io(&path))?;
            WorkDir { path, remove: true }
        }
    })
}

/// The genesis of the suite: the honest accounts, the checkpoint interval,
/// the clock-skew bound.
fn set_genesis(
    path: &Path,
    honest: &[SigningKey],
    checkpoint_interval: u64,
    max_clock_skew_ms: u64,
) -> Result<Genesis, RealError> {
    let text = std::fs::read_to_string(path).map_err(RealError::io(path))?;
    let mut genesis =
        Genesis::from_toml(&text).map_err(|e| RealError::invalid(path.display().to_string(), e))?;
    for key in honest {
        genesis.allocations.push(Allocation {
            account: AccountId(key.verifying_key().to_bytes()),
            balance: Amount(10_000 * NEURO),
            staked: Amount(0),
        });
    }
    genesis.checkpoint_interval = checkpoint_interval;
    let skew = i64::try_from(max_clock_skew_ms)
        .map_err(|_| RealError::invalid("--max-clock-skew-ms", "too large"))?;
    genesis
        .parameters
        .insert("gov.max_clock_skew_ms".into(), ParamInput::Integer(skew));
    genesis
        .parameter_set()
        .map_err(|e| RealError::invalid("genesis parameters", e))?;
    let body = genesis
        .to_toml()
        .map_err(|e| RealError::invalid("genesis", e))?;
    std::fs::write(path, body).map_err(RealError::io(path))?;
    Ok(genesis)
}

/// The validators' node.toml: a short ignore (each scenario starts with
/// the last offender heard again) and little log kept behind a snapshot
/// (a follower that was down needs one: the forged-snapshot scenario).
fn set_node_config(path: &Path, ignore_ms: u64) -> Result<(), RealError> {
    let text = std::fs::read_to_string(path).map_err(RealError::io(path))?;
    let mut config = neuroshard_node::NodeConfig::parse(&text)
        .map_err(|e| RealError::invalid(path.display().to_string(), e))?;
    config.safety.ignore_refused_leader_ms = ignore_ms;
    config.raft.logs_to_keep_after_snapshot = 5;
    config
        .validate()
        .map_err(|e| RealError::invalid(path.display().to_string(), e))?;
    let body = config
        .to_toml()
        .map_err(|e| RealError::invalid(path.display().to_string(), e))?;
    std::fs::write(path, body).map_err(RealError::io(path))
}

async fn run(args: &ByzantineArgs) -> Result<Vec<Row>, RealError> {
    let suite_started = Instant::now();
    let binary = std::fs::canonicalize(&args.binary).map_err(RealError::io(&args.binary))?;
    let scenarios: Vec<Scenario> = if args.scenarios.is_empty() {
        Scenario::value_variants().to_vec()
    } else {
        let mut s = args.scenarios.clone();
        s.sort();
        s.dedup();
        s
    };
    let work = work_dir(&args.out)?;
    let dir = work.path.join("committee");
    let foreign_dir = work.path.join("foreign");
    for d in [&dir, &foreign_dir] {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(RealError::io(d))?;
        }
    }
    let base = crate::real::free_ports(2 * VALIDATORS as u16)?;
    let addrs = crate::real::addresses(None, base);
    let chain_id = "byzantine".to_owned();
    let committee = committee::prepare(&binary, &dir, &chain_id, &addrs, TIMING)?;
    // Another chain's committee (never started): the foreign signatures.
    let foreign_addrs = crate::real::addresses(None, base.wrapping_add(1_000));
    let foreign = committee::prepare(
        &binary,
        &foreign_dir,
        "byzantine-foreign",
        &foreign_addrs,
        TIMING,
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0xB1_2A_47);
    let honest_keys: Vec<SigningKey> = (0..HONEST_CLIENTS)
        .map(|_| SigningKey::from_bytes(&rng.gen()))
        .collect();
    let genesis = set_genesis(
        &dir.join("genesis.toml"),
        &honest_keys,
        args.checkpoint_interval,
        args.max_clock_skew_ms,
    )?;
    let foreign_genesis = crate::hostile::genesis_in(&foreign_dir)?;
    for path in &committee.configs {
        set_node_config(path, args.ignore_ms)?;
    }
    let api_addrs: Vec<String> = addrs.iter().map(|a| a.api.clone()).collect();
    let keys = faulty::Keys {
        configs: committee.configs.clone(),
        ca: committee.ca.clone(),
        api_addrs: api_addrs.clone(),
    };
    let foreign_keys = faulty::Keys {
        configs: foreign.configs.clone(),
        ca: foreign.ca.clone(),
        api_addrs: foreign_addrs.iter().map(|a| a.api.clone()).collect(),
    };

    let mut validators = Validators::new(
        &binary,
        committee.configs.clone(),
        vec![Vec::new(); VALIDATORS],
    );
    for i in 0..VALIDATORS {
        validators.spawn(i)?;
    }
    let admin = Pool::new(
        &api_addrs,
        &committee.ca,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        1,
    )?;
    crate::hostile::wait_for_leader(&admin).await?;
    println!(
        "byzantine: committee of {VALIDATORS} up on 127.0.0.1:{base}..{} in {:.1} s (checkpoint_interval {}, gov.max_clock_skew_ms {})",
        base + 2 * VALIDATORS as u16 - 1,
        suite_started.elapsed().as_secs_f64(),
        args.checkpoint_interval,
        args.max_clock_skew_ms
    );

    // The honest transfers, on a runtime of their own (hostile's clients).
    let clients: Vec<HonestClient> = honest_keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let partner = &honest_keys[i ^ 1];
            HonestClient {
                key: k.clone(),
                role: Role::Transfer {
                    to: AccountId(partner.verifying_key().to_bytes()),
                },
                genesis_balance: 10_000 * NEURO,
            }
        })
        .collect();
    let honest = Honest::new(clients);
    let honest_rt = OwnRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("honest")
            .enable_all()
            .build()
            .map_err(RealError::io(Path::new("honest clients' runtime")))?,
    ));
    let handle = honest_rt.handle();
    let honest_pool = {
        let _enter = handle.enter();
        Pool::new(
            &api_addrs,
            &committee.ca,
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10)),
            1,
        )?
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
            &handle,
        );
    }

    // The light node, pinned to the committee info, from genesis.
    let light = Arc::new(Mutex::new(LightState::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let follower = crate::hostile::light_follower_of(&dir, &committee.info)?;
    let light_pool = Pool::new(
        &api_addrs,
        &committee.ca,
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)),
        1,
    )?;
    let light_task = tokio::spawn(streams::light_node(
        light_pool,
        follower,
        light.clone(),
        stop_rx,
    ));

    // Certificates all along: an emergency after the other.
    let identities = crate::hostile::identity_keys(&dir, VALIDATORS)
        .map_err(|e| RealError::invalid("identity keys", e))?;
    let issuer_stop = Arc::new(AtomicBool::new(false));
    // Paused at the end of each scenario so every NEP settles and its final
    // view can be recorded; `idle` once no emergency is in flight.
    let issuer_pause = Arc::new(AtomicBool::new(false));
    let issuer_idle = Arc::new(AtomicBool::new(false));
    let issuer_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let issuer_task = {
        let set = genesis
            .parameter_set()
            .map_err(|e| RealError::invalid("genesis parameters", e))?;
        let pool = Pool::new(
            &api_addrs,
            &committee.ca,
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 13)),
            1,
        )?;
        let lookup = move |k: &str| set.get(k).cloned();
        let mut issuer = certs::Issuer::new(pool, &chain_id, identities, &lookup)
            .await
            .map_err(|e| RealError::invalid("certificate issuer", e))?;
        let (stop, errors) = (issuer_stop.clone(), issuer_errors.clone());
        let (pause, idle) = (issuer_pause.clone(), issuer_idle.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if pause.load(Ordering::Relaxed) {
                    idle.store(true, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                idle.store(false, Ordering::Relaxed);
                if let Err(e) = issuer.next().await {
                    errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                }
                tokio::time::sleep(Duration::from_millis(1_000)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    let endpoints = Endpoints::new(&api_addrs, &committee.ca)?;
    let mut recordings: Vec<Recording> = Vec::new();
    for (k, &scenario) in scenarios.iter().enumerate() {
        let name = scenario.name();
        if let Err(e) = attacks::quiet(&keys, Duration::from_secs(30)).await {
            println!("byzantine: {name}: {e}");
        }
        honest.set_phase(k + 1);
        let path = work.path.join(format!("{name}.jsonl"));
        let header = Header {
            format: HISTORY_FORMAT,
            harness: "byzantine".to_owned(),
            seed: Some(args.seed),
            chain_id: chain_id.clone(),
            committee: committee.info.clone(),
            replicas: VALIDATORS as u32,
            liveness_bound_ms: 30_000,
            started_ms: now_ms(),
        };
        let journal = Arc::new(Journal::create(&path, &header)?);
        let watch = Watch::new(VALIDATORS);
        let stop = Arc::new(AtomicBool::new(false));
        let mut samplers = tokio::task::JoinSet::new();
        for i in 0..VALIDATORS as u32 {
            samplers.spawn(sampler::sample(
                i,
                endpoints.clone(),
                journal.clone(),
                watch.clone(),
                stop.clone(),
            ));
        }
        println!("byzantine: {name}: running");
        let started = Instant::now();
        let started_ms = now_ms();
        let fault = journal.fault(
            "byzantine",
            Vec::new(),
            format!("the faulty validator: {name}"),
        );
        let mut ctx = attacks::Ctx {
            keys: &keys,
            admin: &admin,
            validators: &mut validators,
            genesis: &genesis,
            treasury: &committee.treasury,
            foreign_genesis: &foreign_genesis,
            foreign_keys: &foreign_keys,
            checkpoint_interval: args.checkpoint_interval,
        };
        let mut outcome = match scenario {
            Scenario::ForgedSnapshot => attacks::forged_snapshot(&mut ctx).await,
            Scenario::TickAhead => attacks::tick_ahead(&mut ctx).await,
            Scenario::TickMax => attacks::tick_max(&mut ctx).await,
            Scenario::WithheldTicks => attacks::withheld_ticks(&mut ctx).await,
            Scenario::Membership => attacks::membership(&mut ctx).await,
            Scenario::BadCertificate => attacks::bad_certificate(&mut ctx, false).await,
            Scenario::ForeignCertificate => attacks::bad_certificate(&mut ctx, true).await,
            Scenario::ForeignShares => attacks::foreign_shares(&mut ctx).await,
            Scenario::Equivocation => attacks::equivocation(&mut ctx).await,
        };
        if outcome.faulty.is_some() && outcome.delivered_ms.is_none() {
            outcome
                .findings
                .push("the attack never reached a validator".into());
        }
        journal.heal(fault, "the faulty validator stopped".into());
        tokio::time::sleep(SETTLE).await;
        // Every NEP settles (the issuer paused) so its final view, and with
        // it every certificate's tally, can be checked.
        issuer_pause.store(true, Ordering::Relaxed);
        let skip = outcome.excluded.map(|(v, _)| v);
        let settle_by = Instant::now() + Duration::from_secs(20);
        let neps = loop {
            let (done, neps) = settled(&watch, skip);
            if issuer_idle.load(Ordering::Relaxed) && done {
                break neps;
            }
            if Instant::now() > settle_by {
                outcome.findings.push(format!(
                    "NEPs not settled on every replica within 20 s: {}",
                    watch.describe()
                ));
                break neps;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for (i, status) in validators.exited() {
            outcome.findings.push(format!(
                "validator {i} exited by itself ({status}); see its node.log"
            ));
            validators.spawn(i)?;
        }
        stop.store(true, Ordering::Relaxed);
        while samplers.join_next().await.is_some() {}
        let contradictions =
            crate::real::finals::record(&endpoints, &journal, &watch, &neps, &[]).await;
        outcome.findings.extend(contradictions);
        issuer_pause.store(false, Ordering::Relaxed);
        println!(
            "byzantine: {name}: {} in {:.1} s{}",
            if outcome.verdict.is_empty() {
                "no verdict"
            } else {
                &outcome.verdict
            },
            started.elapsed().as_secs_f64(),
            if outcome.findings.is_empty() {
                String::new()
            } else {
                format!(": {}", outcome.findings.join("; "))
            }
        );
        recordings.push(Recording {
            scenario,
            path,
            journal,
            started_ms,
            ended_ms: now_ms(),
            outcome,
        });
    }

    // Stop everything, then judge.
    issuer_stop.store(true, Ordering::Relaxed);
    honest.stop();
    let _ = tokio::time::timeout(honest::MAX_WAIT + Duration::from_secs(5), async {
        while honest_tasks.join_next().await.is_some() {}
    })
    .await;
    honest_tasks.abort_all();
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), light_task).await;
    issuer_task.abort();
    let (applied, verify_findings) = honest::verify(&honest, &admin).await;
    let ops = honest.ops();
    let stats = honest::phase_stats(&ops, &applied, scenarios.len() + 1);
    let derived = honest_payloads(&admin, &recordings).await;
    let accepted = light
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .accepted
        .clone();
    let light_errors = light
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .errors
        .clone();

    let mut rows = Vec::new();
    for (k, rec) in recordings.into_iter().enumerate() {
        let phase = k + 1;
        let phase_ops: Vec<&honest::Op> = ops.iter().filter(|o| o.phase == phase).collect();
        record_ops(&rec.journal, &honest, &phase_ops);
        rec.journal.finish()?;
        let mut history = History::load(&rec.path)?;
        let mut notes = rec.outcome.notes.clone();
        if let Some((victim, from)) = rec.outcome.excluded {
            let before = history.events.len();
            exclude(&mut history, victim as u32, from);
            notes.push(format!(
                "validator {victim}'s samples from index {from} on (diverged, detected) left out of replicas_agree: {} events",
                before - history.events.len()
            ));
        }
        let report = check(&history);
        if !report.is_clean() {
            println!(
                "{}: history {}\n{}",
                rec.scenario.name(),
                rec.path.display(),
                report.table()
            );
        }
        // The light node's certificates accepted during the scenario, and
        // those whose payload no honest validator derived.
        let mine: Vec<&(u64, [u8; 32], u64)> = accepted
            .iter()
            .filter(|(_, _, at)| *at >= rec.started_ms && *at < rec.ended_ms)
            .collect();
        let foreign: Vec<u64> = mine
            .iter()
            .filter(|(seq, hash, _)| derived.get(seq) != Some(hash))
            .map(|(seq, _, _)| *seq)
            .collect();
        let mut findings = rec.outcome.findings.clone();
        if !foreign.is_empty() {
            findings.push(format!(
                "the light node accepted certificates {foreign:?} that no honest validator derived"
            ));
        }
        if let Some(hash) = attacks::made_up_payload(&rec.outcome) {
            if accepted
                .iter()
                .any(|(_, h, _)| hex::encode(&h[..8]) == hash)
            {
                findings.push("a certificate carries the made-up payload".into());
            }
        }
        for (p, f) in &verify_findings {
            if p.unwrap_or(usize::MAX) == phase {
                findings.push(f.clone());
            }
        }
        let s = stats.get(phase).cloned().unwrap_or_default();
        if s.unresolved > 0 {
            findings.push(format!(
                "{} honest commands never resolved: {:?}",
                s.unresolved, s.unresolved_last
            ));
        }
        let all_ops: Vec<&honest::Op> = ops.iter().collect();
        let stall_ms = stall(&all_ops, rec.started_ms, rec.ended_ms);
        rows.push(Row {
            name: rec.scenario.name(),
            outcome: rec.outcome,
            violations: report.violation_count(),
            honest_acked: s.acked,
            honest_applied: s.applied,
            stall_ms,
            light_accepted: mine.len(),
            light_foreign: foreign.len(),
            seconds: (rec.ended_ms - rec.started_ms) as f64 / 1e3,
            findings,
            notes,
        });
    }
    validators.kill_all();
    println!("\n{}", table::render(&rows));
    let issuer_errors = issuer_errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    println!(
        "byzantine: light node accepted {} certificates in all ({} errors{}); issuer: {} failed emergencies",
        accepted.len(),
        light_errors.len(),
        light_errors
            .first()
            .map(|e| format!(", first: {e}"))
            .unwrap_or_default(),
        issuer_errors.len()
    );
    println!(
        "byzantine: {} honest commands, {} acknowledged; suite {:.0} s",
        ops.len(),
        ops.iter()
            .filter(|o| matches!(o.outcome, HonestOutcome::Acked { .. }))
            .count(),
        suite_started.elapsed().as_secs_f64()
    );
    if let Some(dir) = &args.out {
        println!(
            "committee, data, node logs and histories: {}",
            dir.display()
        );
    }
    Ok(rows)
}

/// The payload hash of every certificate the honest validators derived:
/// read from a validator that no scenario left diverged.
async fn honest_payloads(admin: &Pool, recordings: &[Recording]) -> BTreeMap<u64, [u8; 32]> {
    let diverged: Vec<usize> = recordings
        .iter()
        .filter_map(|r| r.outcome.excluded.map(|(v, _)| v))
        .collect();
    let mut out = BTreeMap::new();
    for i in (0..admin.len()).filter(|i| !diverged.contains(i)) {
        let mut from = 1;
        loop {
            let request = api::ListCertificatesRequest {
                from_sequence: from,
                limit: 64,
                read: Some(api::ReadOptions { stale: true }),
            };
            let mut c = admin.client(i);
            let Ok(Ok(list)) =
                tokio::time::timeout(Duration::from_secs(3), c.list_certificates(request)).await
            else {
                break;
            };
            let list = list.into_inner().certificates;
            if list.is_empty() {
                break;
            }
            for c in &list {
                out.entry(c.sequence)
                    .or_insert_with(|| neuroshard_certificate::payload_hash(&c.payload));
                from = c.sequence + 1;
            }
        }
        if !out.is_empty() {
            break;
        }
    }
    out
}

/// The honest commands of one scenario as `invoke`/`result` events (one
/// attempt each: identical bytes re-sent until the outcome was known).
fn record_ops(journal: &Journal, honest: &Honest, ops: &[&honest::Op]) {
    for (n, op) in ops.iter().enumerate() {
        let client = op.client as u32;
        journal.record(Event::Invoke(Invoke {
            time_ms: op.sent_ms,
            client,
            op: n as u64,
            attempt: 0,
            command: CommandSummary {
                kind: op.command.name().to_owned(),
                account: honest.clients[op.client].account(),
                nonce: op.nonce,
                nep: None,
                choice: None,
            },
        }));
        let time_ms = op.sent_ms + op.latency.as_millis() as u64;
        let (outcome, log_index, rule) = match &op.outcome {
            HonestOutcome::Acked { log_index, .. } => (OutcomeKind::Ok, Some(*log_index), None),
            HonestOutcome::Refused { rule, .. } => (OutcomeKind::Error, None, Some(rule.clone())),
            HonestOutcome::Unresolved { .. } => (OutcomeKind::Unknown, None, None),
        };
        journal.record(Event::Result(OpResult {
            time_ms,
            client,
            op: n as u64,
            attempt: 0,
            outcome,
            log_index,
            committed_ms: None,
            power: None,
            rule,
            message: None,
        }));
    }
}

/// Whether every replica but `skip` saw every NEP any replica knows
/// settled and every decided certificate issued; the NEPs.
fn settled(watch: &Watch, skip: Option<usize>) -> (bool, Vec<neuroshard_governance::NepId>) {
    let o = watch.lock();
    let ids: std::collections::BTreeSet<u64> = o
        .replicas
        .iter()
        .flat_map(|r| r.stages.keys().copied())
        .collect();
    let done = o
        .replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != skip)
        .all(|(_, r)| {
            ids.iter().all(|n| r.settled_ms.contains_key(n))
                && r.status.as_ref().is_some_and(|s| {
                    s.pending_certificates == 0 && r.issued_through >= s.certificates
                })
        });
    (
        done,
        ids.into_iter().map(neuroshard_governance::NepId).collect(),
    )
}

/// Leaves out a replica's samples from index `from` on (and its payloads).
fn exclude(history: &mut History, replica: u32, from: u64) {
    history.events.retain(|e| match e {
        Event::Applied(a) => !(a.replica == replica && a.index >= from),
        Event::Final(f) => f.replica != replica,
        _ => true,
    });
    for e in history.events.iter_mut() {
        if let Event::Certificate(c) = e {
            c.replica_payloads.retain(|p| p.replica != replica);
        }
    }
}

/// The longest time without an honest command acknowledged within
/// [`from`, `to`] (ms).
fn stall(ops: &[&honest::Op], from: u64, to: u64) -> u64 {
    let mut acks: Vec<u64> = ops
        .iter()
        .filter(|o| matches!(o.outcome, HonestOutcome::Acked { .. }))
        .map(|o| o.sent_ms + o.latency.as_millis() as u64)
        .filter(|t| (from..=to).contains(t))
        .collect();
    acks.sort_unstable();
    let mut last = from;
    let mut worst = 0;
    for t in acks.into_iter().chain([to]) {
        worst = worst.max(t.saturating_sub(last));
        last = t;
    }
    worst
}
