//! The deterministic simulation: the real validator code on turmoil.
//!
//! Four validators run `neuroshard_node::Node` — openraft on the in-memory
//! store, the tonic peer and public services, mutual TLS between
//! validators and server TLS for clients, ticks, certificate issuance — on
//! turmoil's simulated TCP and clock. The model's workload drives them
//! through the public API: voters stake, an author drafts and submits two
//! NEPs, voters vote continuously across each NEP's closing tick, retrying
//! every unanswered command with identical bytes. Faults planned from the
//! seed hit around the first NEP's closing tick ([`faults`]): the leader
//! isolated just before, at or just after it, minority and 2–2 splits,
//! flapping links, delay, loss, a crashed and restarted validator, a
//! skewed clock. Everything is recorded in the chaos history format and
//! judged by the same checkers as every other harness.
//!
//! Same seed, same history, byte for byte: the only inputs are the seed
//! (turmoil's network, the fault plan, the clients' choices, connection
//! resets: separate ChaCha8 streams of it) and the simulated clock.
//! docs/chaos.md lists what else had to be pinned for that to hold.

pub mod cases;
pub mod clients;
pub mod clock;
pub mod faults;
pub mod journal;
pub mod net;
pub mod pki;
pub mod recording;
pub mod recovery;
pub mod validator;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use neuroshard_governance::genesis::ParamInput;
use neuroshard_governance::testkit::{self, TestConfig};
use neuroshard_governance::{GenesisError, GovernanceState, NepId, ProposalFilter};
use neuroshard_node::store::{DiskStats, MemDiskOptions};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::history::{is_settled, CertificateSeen, Event, Header, History, HISTORY_FORMAT};
use crate::model::workload::nep_contents;
use crate::observe::{final_view, replica_payload, FinalObservation};

use clients::{ClientStats, ClientsSetup, MAX_CLIENTS};
use faults::{Actuators, PlannedFault, Schedule, CLIENTS_HOST};
use journal::Journal;
use net::{NetControl, SimNetwork};
use pki::{host_name, Pki, PkiError};
use validator::{Disk, DiskSlot, Registry, ValidatorSetup, Withholds};

/// Whether a seed reproduces its run exactly. turmoil seeds each simulated
/// host's tokio runtime (whose RNG picks `tokio::select!` branches and
/// the wake order of `watch` receivers, e.g. openraft's metrics) only
/// when tokio is built with `--cfg tokio_unstable`; otherwise each runtime
/// draws its seed from the OS and task interleavings differ run to run.
pub const DETERMINISTIC: bool = cfg!(tokio_unstable);

/// Validators of the simulated committee: n = 4, t + 1 = 3.
pub const SIM_VALIDATORS: u32 = 4;
/// A governance day in the simulated chain (`gov.day_ms`).
pub const SIM_DAY_MS: u64 = 1_000;
/// `gov.max_clock_skew_ms` of the simulated chain: small, so a skewed
/// clock fault can make validators refuse to sign for a while.
pub const SIM_MAX_CLOCK_SKEW_MS: i64 = 2_000;
/// Simulated time a run may take before it stops regardless (a run whose
/// NEPs never settle is then judged by the liveness checker).
pub const MAX_SIM_MS: u64 = 60_000;
/// How long a run continues after the last activation and the last heal,
/// so lagging replicas are observed catching up.
pub const TAIL_MS: u64 = 1_500;
/// Simulated time per turmoil step.
pub const STEP: Duration = Duration::from_millis(1);
/// Segments one simulated socket may buffer (turmoil panics beyond it; a
/// healed partition releases everything it held at once).
pub const MAX_SOCKET_SEGMENTS: usize = 1 << 16;
/// Most voters a run may have.
pub const MAX_SIM_VOTERS: usize = MAX_CLIENTS - 2;

/// Shape of a simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Regular voters (plus one latecomer and one author).
    pub voters: usize,
    /// Inject the seed's faults.
    pub faults: bool,
    /// Run these faults instead of the seed's plan (for regression seeds
    /// and hand-written scenarios).
    pub plan: Option<Vec<PlannedFault>>,
    pub liveness_bound_ms: u64,
    /// Time between two decisions of a client.
    pub client_step_ms: u64,
    /// Chance per step that an idle voter votes, in thousandths.
    pub vote_per_mille: u32,
    /// Sends of one vote before the voter gives it up.
    pub max_attempts: u32,
    /// Connection resets per thousand writes on the clients' links, all
    /// run long (with faults on): requests and answers get lost, so
    /// clients retry, and some retries reach the log after the close.
    pub client_reset_per_mille: u32,
    /// `gov.voting_days` of the chain (2; the time cases use a longer vote
    /// so that a vote closed early by more than `gov.max_clock_skew_ms`
    /// is possible at all).
    pub voting_days: i64,
    /// The validators' simulated disks (`validator::disk_options`; the
    /// test-only `unsynced_acks` removes the fdatasync).
    pub disk: MemDiskOptions,
}

/// The liveness bound of the simulation: after the last heal, a NEP must
/// settle and its certificate be issued within it. It covers an election
/// (timeout 300 ms plus a split vote or two), a missed tick, the share
/// re-send interval of issuance (1 s) after a leader change, and a skewed
/// clock's wait (a skew of up to 4 s against `gov.max_clock_skew_ms` =
/// 2 s holds signatures back for up to 2 s).
pub const SIM_LIVENESS_BOUND_MS: u64 = 5_000;

impl SimConfig {
    /// The default workload for `seed`, faults on.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            voters: 6,
            faults: true,
            plan: None,
            liveness_bound_ms: SIM_LIVENESS_BOUND_MS,
            client_step_ms: 50,
            vote_per_mille: 300,
            max_attempts: 6,
            client_reset_per_mille: 15,
            voting_days: 2,
            disk: validator::disk_options(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("the simulation configuration is invalid: {0}")]
    Config(String),
    #[error("test genesis refused: {0}")]
    Genesis(#[from] GenesisError),
    #[error("TLS material: {0}")]
    Pki(#[from] PkiError),
    #[error("a simulated host failed: {0}")]
    Host(String),
    #[error("the run recorded more than {max} events")]
    TooManyEvents { max: usize },
}

/// What a run did, for the summary line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Simulated time the run took.
    pub sim_ms: u64,
    /// Highest log index any replica applied.
    pub entries: u64,
    pub clients: ClientStats,
    pub certificates: u64,
    pub faults: u64,
    /// Crash faults (each a power cut of one validator, or of all).
    pub crash_points: u64,
    pub restarts: u64,
    pub snapshots_installed: u64,
    pub connection_resets: u64,
    pub leader_changes: u64,
    /// Whether every replica settled every NEP before the run stopped.
    pub settled: bool,
    /// Refusals before Raft by rule (`NodeStatus::safety_refusals`),
    /// summed over the validators running at the end.
    pub safety_refusals: BTreeMap<String, u64>,
    /// The leaders in the order they led, with the harness time each was
    /// first seen leading.
    pub leaders: Vec<(u64, u32)>,
    /// The validators' simulated disks, summed: syncs, power losses and
    /// what they dropped.
    pub disk: DiskStats,
}

pub struct SimRun {
    pub history: History,
    pub stats: SimStats,
    /// The faults the seed planned, in words.
    pub scenario: String,
}

fn validate(c: &SimConfig) -> Result<(), SimError> {
    let bad = |what: String| Err(SimError::Config(what));
    if c.voters == 0 || c.voters > MAX_SIM_VOTERS {
        return bad(format!(
            "voters must be 1..={MAX_SIM_VOTERS}, got {}",
            c.voters
        ));
    }
    if c.client_step_ms == 0 {
        return bad("client_step_ms must be positive".to_owned());
    }
    if !(1..=30).contains(&c.voting_days) {
        return bad(format!("voting_days must be 1..=30, got {}", c.voting_days));
    }
    if c.max_attempts == 0 {
        return bad("max_attempts must be at least 1".to_owned());
    }
    if c.client_reset_per_mille > net::MAX_RESET_PER_MILLE {
        return bad(format!(
            "client_reset_per_mille is {}, more than {}",
            c.client_reset_per_mille,
            net::MAX_RESET_PER_MILLE
        ));
    }
    if c.vote_per_mille > 1000 {
        return bad(format!(
            "vote_per_mille is {}, more than 1000",
            c.vote_per_mille
        ));
    }
    Ok(())
}

/// A ChaCha8 stream of the seed: one per consumer, so adding draws to one
/// never shifts another.
fn stream(seed: u64, n: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(n);
    rng
}

/// The faults `seed` plans (what `run` injects unless told otherwise).
pub fn planned_faults(seed: u64) -> Vec<PlannedFault> {
    faults::plan(&mut stream(seed, 1), SIM_VALIDATORS)
}

/// The power-loss crash point of `seed`: the whole committee's power cut
/// at an offset from NEP-1's deadline and for a duration drawn from the
/// seed (`faults::power_cut_plan`), in place of the seed's plan.
pub fn power_cut_faults(seed: u64) -> Vec<PlannedFault> {
    faults::power_cut_plan(&mut stream(seed, 5))
}

/// Runs the simulation and returns its history.
pub fn run(config: &SimConfig) -> Result<SimRun, SimError> {
    validate(config)?;
    let n = SIM_VALIDATORS;
    let test = TestConfig {
        chain_id: "neuroshard-sim".to_owned(),
        users: config.voters + 2,
        validators: n,
        day_ms: SIM_DAY_MS as i64,
        extra_parameters: vec![
            ("gov.review_days".to_owned(), ParamInput::Integer(1)),
            (
                "gov.voting_days".to_owned(),
                ParamInput::Integer(config.voting_days),
            ),
            ("gov.grace_min_days".to_owned(), ParamInput::Integer(1)),
            (
                "gov.max_clock_skew_ms".to_owned(),
                ParamInput::Integer(SIM_MAX_CLOCK_SKEW_MS),
            ),
        ],
        ..TestConfig::default()
    };
    let (genesis, dealt) = testkit::genesis(&test);
    let epoch_ms = genesis.genesis_time_ms;
    let plan = match (&config.plan, config.faults) {
        (_, false) => Vec::new(),
        (Some(plan), true) => plan.clone(),
        (None, true) => planned_faults(config.seed),
    };
    let scenario = if plan.is_empty() {
        "no faults".to_owned()
    } else {
        plan.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" + ")
    };

    let journal = Journal::new(n as usize);
    let pki = Pki::new(&genesis.chain_id, n)?;
    let net = NetControl::new(stream(config.seed, 3));
    let network = SimNetwork::new(net.clone());
    let skews = clock::Skews::new(n as usize);
    let withholds = Withholds::new(n as usize);
    let registry = Registry::default();
    let disks = (0..n)
        .map(|_| {
            Ok(Disk::new(
                GovernanceState::from_genesis(&genesis)?,
                config.disk,
            ))
        })
        .collect::<Result<Vec<_>, GenesisError>>()?;
    let slots: Vec<DiskSlot> = disks
        .iter()
        .map(|d| Arc::new(Mutex::new(d.clone())))
        .collect();

    let mut sim = sim_builder(epoch_ms, Duration::from_millis(MAX_SIM_MS) * 2, config.seed).build();

    for v in 0..n {
        let setup = Arc::new(ValidatorSetup {
            id: v,
            config: validator::node_config(v, n),
            genesis: genesis.clone(),
            tls: pki.validators[v as usize].clone(),
            bls_share: dealt.secret_key_shares[v as usize].clone(),
            disk: slots[v as usize].clone(),
            boot: Arc::new(Mutex::new(neuroshard_node::boot::Boot::Auto)),
            withhold: withholds.flag(v),
            journal: journal.clone(),
            epoch_ms,
            skews: skews.clone(),
            network: network.clone(),
            registry: registry.clone(),
        });
        sim.host(host_name(v), move || validator::run(setup.clone()));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let client_stats = Arc::new(Mutex::new(ClientStats::default()));
    let contents = nep_contents();
    let clients = Arc::new(ClientsSetup {
        epoch_ms,
        chain_id: genesis.chain_id.clone(),
        seed: config.seed,
        validators: n,
        voters: config.voters,
        contents: contents.clone(),
        step_ms: config.client_step_ms,
        vote_per_mille: config.vote_per_mille,
        max_attempts: config.max_attempts,
        tls: pki.api_client_config()?,
        network,
        journal: journal.clone(),
        stop: stop.clone(),
        stats: client_stats.clone(),
    });
    sim.client(CLIENTS_HOST, clients::run(clients));

    let client_resets = if config.faults {
        config.client_reset_per_mille
    } else {
        0
    };
    let mut schedule = Schedule::new(plan, n, client_resets, stream(config.seed, 4));
    schedule.init(&mut Actuators {
        sim: &mut sim,
        registry: &registry,
        skews: &skews,
        withholds: &withholds,
        net: &net,
        journal: &journal,
        disks: &slots,
    });
    let mut stats = SimStats::default();
    let mut leader = None;
    let mut end_ms = None;
    let hard_stop = epoch_ms + MAX_SIM_MS;
    let now = loop {
        sim.step().map_err(|e| SimError::Host(e.to_string()))?;
        let now = clock::at(epoch_ms, sim.elapsed());
        if let Some(l) = registry.leader() {
            if leader.is_some_and(|old| old != l) {
                stats.leader_changes += 1;
            }
            if leader != Some(l) {
                stats.leaders.push((now, l));
            }
            leader = Some(l);
        }
        let votes = journal.votes();
        if let Some(first) = votes.get(&NepId(1)) {
            let mut act = Actuators {
                sim: &mut sim,
                registry: &registry,
                skews: &skews,
                withholds: &withholds,
                net: &net,
                journal: &journal,
                disks: &slots,
            };
            schedule.step(now, first.deadline_ms, &mut act);
            if end_ms.is_none() && votes.len() == contents.len() {
                let last_deadline = votes.values().map(|v| v.deadline_ms).max().unwrap_or(0);
                // Grace is one day: the run sees every activation.
                let activations = last_deadline + SIM_DAY_MS + TAIL_MS;
                end_ms = Some(activations.max(schedule.heal_by(first.deadline_ms) + TAIL_MS));
            }
        }
        if let Some(end) = end_ms {
            if now >= end && schedule.all_healed() {
                stats.settled = settled_everywhere(&mut sim, &disks);
                if stats.settled || now >= end + config.liveness_bound_ms {
                    break now;
                }
            }
        }
        if now >= hard_stop {
            break now;
        }
    };
    stop.store(true, Ordering::Relaxed);

    let up: Vec<bool> = (0..n).map(|v| sim.is_host_running(host_name(v))).collect();
    stats.safety_refusals = registry.safety_refusals();
    drop(sim);
    let dropped = journal.dropped();
    if dropped > 0 {
        return Err(SimError::TooManyEvents {
            max: journal::MAX_SIM_EVENTS,
        });
    }
    let mut events = journal.take_events();
    let issued = journal.issued_ms();
    for (sequence, issued_ms) in &issued {
        let Some(seen) = certificate_seen(&disks, &up, *sequence, *issued_ms) else {
            continue;
        };
        events.push(Event::Certificate(seen));
    }
    for (r, disk) in disks.iter().enumerate() {
        if !up[r] {
            continue;
        }
        let seen = journal.replica(r as u32);
        stats.snapshots_installed += seen.snapshots_installed;
        let shared = disk.machine.shared();
        let machine = shared.read();
        let state = &machine.state;
        stats.entries = stats.entries.max(state.last_applied_index().unwrap_or(0));
        for p in state.proposals(&ProposalFilter::default()) {
            let observed = FinalObservation {
                time_ms: now,
                settled_ms: seen.settled.get(&p.id).copied(),
                closing_index: seen
                    .closing
                    .get(&p.id)
                    .copied()
                    .or_else(|| p.vote.as_ref().and_then(|v| v.closed_index)),
            };
            if let Some(f) = final_view(state, r as u32, p.id, observed) {
                events.push(Event::Final(f));
            }
        }
    }
    stats.sim_ms = now - epoch_ms;
    stats.clients = *client_stats.lock().unwrap_or_else(|p| p.into_inner());
    stats.certificates = issued.len() as u64;
    stats.faults = schedule.started;
    stats.restarts = schedule.restarts;
    stats.crash_points = schedule.crash_points;
    for disk in &disks {
        stats.disk.add(&disk.stats());
    }
    stats.connection_resets = net.resets();
    let header = Header {
        format: HISTORY_FORMAT,
        harness: "simulation".to_owned(),
        seed: Some(config.seed),
        chain_id: genesis.chain_id.clone(),
        committee: genesis.committee.info.clone(),
        replicas: n,
        liveness_bound_ms: config.liveness_bound_ms,
        started_ms: epoch_ms,
    };
    Ok(SimRun {
        history: History { header, events },
        stats,
        scenario,
    })
}

/// Whether every validator runs and has settled every NEP and issued every
/// certificate it decided.
fn settled_everywhere(sim: &mut turmoil::Sim<'_>, disks: &[Disk]) -> bool {
    disks.iter().enumerate().all(|(v, disk)| {
        if !sim.is_host_running(host_name(v as u32)) {
            return false;
        }
        let shared = disk.machine.shared();
        let machine = shared.read();
        let state = &machine.state;
        state.pending_certificates().is_empty()
            && state
                .proposals(&ProposalFilter::default())
                .iter()
                .all(|p| is_settled(p.stage, p.is_emergency()))
    })
}

/// Certificate `sequence` as issued, with every running replica's own
/// payload for it.
fn certificate_seen(
    disks: &[Disk],
    up: &[bool],
    sequence: u64,
    issued_ms: u64,
) -> Option<CertificateSeen> {
    let mut seen: Option<CertificateSeen> = None;
    let mut payloads = Vec::new();
    for (r, disk) in disks.iter().enumerate() {
        if !up[r] {
            continue;
        }
        let shared = disk.machine.shared();
        let machine = shared.read();
        let state = &machine.state;
        if let Some(p) = replica_payload(state, r as u32, sequence) {
            payloads.push(p);
        }
        if seen.is_none() {
            if let Some(record) = state.certificate(sequence) {
                if let Some(issued) = &record.issued {
                    seen = Some(CertificateSeen {
                        time_ms: issued_ms,
                        sequence,
                        nep: record.event.nep,
                        kind: record.event.kind,
                        envelope: issued.envelope.clone(),
                        replica_payloads: Vec::new(),
                    });
                }
            }
        }
    }
    seen.map(|mut s| {
        s.replica_payloads = payloads;
        s
    })
}

/// The turmoil simulation every run and case uses: time from `epoch_ms`,
/// the base latencies, bounded sockets, random delivery order, all drawn
/// from `seed`.
pub(crate) fn sim_builder(epoch_ms: u64, duration: Duration, seed: u64) -> turmoil::Builder {
    // A snapshot's verification on an OS thread would finish after however
    // many simulated steps it takes in real time: inline, it takes none.
    neuroshard_node::blocking::run_inline(true);
    let mut builder = turmoil::Builder::new();
    builder
        .epoch(UNIX_EPOCH + Duration::from_millis(epoch_ms))
        .simulation_duration(duration)
        .tick_duration(STEP)
        .min_message_latency(Duration::from_millis(faults::BASE_MIN_LATENCY_MS))
        .max_message_latency(Duration::from_millis(faults::BASE_MAX_LATENCY_MS))
        .tcp_capacity(MAX_SOCKET_SEGMENTS)
        .enable_random_order()
        .rng_seed(rand::Rng::gen(&mut stream(seed, 2)));
    builder
}
