//! The fault schedule of a simulated run, planned from the seed relative to
//! the first NEP's vote deadline and applied between simulation steps.
//!
//! Each seed picks one primary fault and, in about a third of the seeds, a
//! second one of another kind; each starts at an offset from the deadline
//! (before, at, or after the closing tick) and lasts a seeded duration.
//! Partitions hold messages on the link (turmoil's hold) and release them
//! when healed, which is what TCP's retransmission does across a partition
//! that heals within seconds. Overlapping faults on one link are combined
//! (held while any fault holds it; the largest latency; the largest loss).

use std::collections::BTreeMap;
use std::fmt;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::history::{Event, Fault, Heal};
use crate::sim::clock::Skews;
use crate::sim::journal::Journal;
use crate::sim::net::NetControl;
use crate::sim::pki::host_name;
use crate::sim::validator::{power_cut, DiskSlot, Registry, Withholds};

/// Host name of the simulated machine the clients run on.
pub const CLIENTS_HOST: &str = "clients";
/// Fault start offsets from the first NEP's deadline (the closing tick is
/// the first tick at or past it, within one tick interval).
pub const OFFSETS_MS: [i64; 11] = [-400, -200, -100, -50, -20, 0, 20, 50, 100, 200, 400];
/// Shortest and longest fault.
pub const MIN_FAULT_MS: u64 = 200;
pub const MAX_FAULT_MS: u64 = 2_500;
/// Link latency without faults: turmoil draws each message's latency from
/// an exponential curve between these.
pub const BASE_MIN_LATENCY_MS: u64 = 1;
pub const BASE_MAX_LATENCY_MS: u64 = 20;
/// Most faults one run plans.
pub const MAX_FAULTS: usize = 2;

/// Which validator a fault hits, chosen when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Leader,
    Follower,
    /// Every validator (only the hand-written cases' sabotage runs plan it
    /// — a clock or a withholding that no honest follower can notice — and
    /// the power-loss runs: a power cut of the whole committee).
    All,
}

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The leader is cut off from every other validator (and, if
    /// `clients_too`, from the clients).
    IsolateLeader { clients_too: bool },
    /// One follower is cut off: the majority keeps going.
    MinorityPartition,
    /// Two against two, the leader on one side: no side has a majority.
    SplitBrain,
    /// The leader's links to the other validators go down and up.
    Flapping { period_ms: u64 },
    /// Every link gets slow (latency up to `max_latency_ms`).
    Delay { max_latency_ms: u64 },
    /// Every link loses messages: retransmission latency, and connection
    /// resets at `reset_per_mille` per write.
    Loss {
        reset_per_mille: u32,
        max_latency_ms: u64,
    },
    /// A validator's process dies and its machine loses power (its disk
    /// drops what it had not synced); it restarts from its disk when
    /// healed. `Target::All`: the whole committee's power fails at once
    /// (never in a seed's random plan; [`power_cut_plan`]).
    Crash { target: Target },
    /// A validator's clock runs `skew_ms` off until healed.
    ClockSkew { target: Target, skew_ms: i64 },
    /// A validator proposes no ticks while it leads (it keeps heartbeating
    /// and leading) until healed: `Environment::withhold_ticks`. Never in
    /// a seed's random plan; the `leader-withholds-ticks` case plans it.
    WithholdTicks { target: Target },
}

impl FaultKind {
    /// The history's fault name.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::IsolateLeader { .. }
            | FaultKind::MinorityPartition
            | FaultKind::SplitBrain => "partition",
            FaultKind::Flapping { .. } => "flapping",
            FaultKind::Delay { .. } => "delay",
            FaultKind::Loss { .. } => "loss",
            FaultKind::Crash { .. } => "replica_crash",
            FaultKind::ClockSkew { .. } => "clock_skew",
            FaultKind::WithholdTicks { .. } => "withhold_ticks",
        }
    }

    fn family(&self) -> u8 {
        match self {
            FaultKind::IsolateLeader { .. } => 0,
            FaultKind::MinorityPartition => 1,
            FaultKind::SplitBrain => 2,
            FaultKind::Flapping { .. } => 3,
            FaultKind::Delay { .. } => 4,
            FaultKind::Loss { .. } => 5,
            FaultKind::Crash { .. } => 6,
            FaultKind::ClockSkew { .. } => 7,
            FaultKind::WithholdTicks { .. } => 8,
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::IsolateLeader { clients_too } => write!(
                f,
                "isolate-leader{}",
                if *clients_too { "+clients" } else { "" }
            ),
            FaultKind::MinorityPartition => write!(f, "minority-partition"),
            FaultKind::SplitBrain => write!(f, "split-2-2"),
            FaultKind::Flapping { period_ms } => write!(f, "flapping/{period_ms}ms"),
            FaultKind::Delay { max_latency_ms } => write!(f, "delay<={max_latency_ms}ms"),
            FaultKind::Loss {
                reset_per_mille,
                max_latency_ms,
            } => write!(
                f,
                "loss(reset {reset_per_mille}/1000, <={max_latency_ms}ms)"
            ),
            FaultKind::Crash { target } => write!(f, "crash-{}", target_name(*target)),
            FaultKind::ClockSkew { target, skew_ms } => {
                write!(f, "skew-{}{skew_ms:+}ms", target_name(*target))
            }
            FaultKind::WithholdTicks { target } => {
                write!(f, "withhold-ticks-{}", target_name(*target))
            }
        }
    }
}

/// `validator-3`, or `validators [0, 1, 2, 3]`.
fn validators_named(v: &[u32]) -> String {
    match v {
        [one] => format!("validator-{one}"),
        _ => format!("validators {v:?}"),
    }
}

fn target_name(t: Target) -> &'static str {
    match t {
        Target::Leader => "leader",
        Target::Follower => "follower",
        Target::All => "all",
    }
}

/// A fault as planned: what, when (relative to the deadline), how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedFault {
    pub id: u32,
    pub kind: FaultKind,
    pub offset_ms: i64,
    pub duration_ms: u64,
}

impl fmt::Display for PlannedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{:+}ms/{}ms",
            self.kind, self.offset_ms, self.duration_ms
        )
    }
}

fn random_kind(rng: &mut ChaCha8Rng, validators: u32) -> FaultKind {
    let target = |rng: &mut ChaCha8Rng| {
        if rng.gen_bool(0.5) {
            Target::Leader
        } else {
            Target::Follower
        }
    };
    match rng.gen_range(0..8) {
        0 => FaultKind::IsolateLeader {
            clients_too: rng.gen_bool(0.5),
        },
        1 => FaultKind::MinorityPartition,
        2 if validators >= 4 => FaultKind::SplitBrain,
        2 => FaultKind::MinorityPartition,
        3 => FaultKind::Flapping {
            period_ms: 50 * rng.gen_range(2..=8),
        },
        4 => FaultKind::Delay {
            max_latency_ms: 50 * rng.gen_range(2..=8),
        },
        5 => FaultKind::Loss {
            reset_per_mille: 10 * rng.gen_range(2..=15),
            max_latency_ms: 20 * rng.gen_range(3..=10),
        },
        6 => FaultKind::Crash {
            target: target(rng),
        },
        _ => {
            let magnitude = 500 * rng.gen_range(1..=8);
            FaultKind::ClockSkew {
                target: target(rng),
                skew_ms: if rng.gen_bool(0.5) {
                    magnitude
                } else {
                    -magnitude
                },
            }
        }
    }
}

fn random_timing(rng: &mut ChaCha8Rng) -> (i64, u64) {
    let offset = OFFSETS_MS[rng.gen_range(0..OFFSETS_MS.len())];
    let duration = 50 * rng.gen_range(MIN_FAULT_MS / 50..=MAX_FAULT_MS / 50);
    (offset, duration)
}

/// The faults of one seed: a primary, and in about a third of the seeds a
/// second of another kind.
pub fn plan(rng: &mut ChaCha8Rng, validators: u32) -> Vec<PlannedFault> {
    let kind = random_kind(rng, validators);
    let (offset_ms, duration_ms) = random_timing(rng);
    let mut out = vec![PlannedFault {
        id: 1,
        kind,
        offset_ms,
        duration_ms,
    }];
    if rng.gen_bool(0.35) {
        let mut second = random_kind(rng, validators);
        while second.family() == kind.family() {
            second = random_kind(rng, validators);
        }
        let (offset_ms, duration_ms) = random_timing(rng);
        out.push(PlannedFault {
            id: 2,
            kind: second,
            offset_ms,
            duration_ms,
        });
    }
    out.truncate(MAX_FAULTS);
    out
}

/// A power cut of the whole committee (every validator crashes at once and
/// its disk drops what it had not synced), at an offset from NEP-1's
/// deadline and for a duration drawn from `rng` as a random plan's: the
/// power-loss crash points (`sim --power-cut`, `.ci/chaos`).
pub fn power_cut_plan(rng: &mut ChaCha8Rng) -> Vec<PlannedFault> {
    let (offset_ms, duration_ms) = random_timing(rng);
    vec![PlannedFault {
        id: 1,
        kind: FaultKind::Crash {
            target: Target::All,
        },
        offset_ms,
        duration_ms,
    }]
}

/// One end of a simulated link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    Validator(u32),
    Clients,
}

impl End {
    pub fn host(&self) -> String {
        match self {
            End::Validator(v) => host_name(*v),
            End::Clients => CLIENTS_HOST.to_owned(),
        }
    }
}

type Link = (End, End);

fn link(a: End, b: End) -> Link {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// What one active fault does to links.
#[derive(Clone, Debug, Default)]
struct LinkEffect {
    held: Vec<Link>,
    latency: Option<(Vec<Link>, u64)>,
    loss: Option<(Vec<Link>, u32)>,
}

/// What is applied to one link now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LinkState {
    held: bool,
    max_latency_ms: u64,
    reset_per_mille: u32,
}

/// Where a fault is in its life.
#[derive(Clone, Debug)]
enum Phase {
    Waiting,
    Active {
        started_ms: u64,
        targets: Vec<u32>,
        /// Flapping: when the links toggle next, and whether they are down.
        flap: Option<(u64, bool)>,
    },
    Healed,
}

/// Everything the schedule acts on.
pub struct Actuators<'s, 'a> {
    pub sim: &'s mut turmoil::Sim<'a>,
    pub registry: &'s Registry,
    pub skews: &'s Skews,
    pub withholds: &'s Withholds,
    pub net: &'s NetControl,
    pub journal: &'s Journal,
    /// Each validator's disk, by id.
    pub disks: &'s [DiskSlot],
}

/// The faults of a run and their progress.
pub struct Schedule {
    faults: Vec<(PlannedFault, Phase)>,
    effects: BTreeMap<u32, LinkEffect>,
    applied: BTreeMap<Link, LinkState>,
    ends: Vec<End>,
    validators: u32,
    /// Connection resets per thousand writes on the clients' links when no
    /// fault is on them: the clients' access network is never perfect.
    client_reset_per_mille: u32,
    rng: ChaCha8Rng,
    /// Validator processes restarted so far.
    pub restarts: u64,
    /// Faults started so far.
    pub started: u64,
    /// Crash faults started so far (a crash of every validator is one).
    pub crash_points: u64,
}

impl Schedule {
    pub fn new(
        faults: Vec<PlannedFault>,
        validators: u32,
        client_reset_per_mille: u32,
        rng: ChaCha8Rng,
    ) -> Self {
        let mut ends: Vec<End> = (0..validators).map(End::Validator).collect();
        ends.push(End::Clients);
        Self {
            faults: faults.into_iter().map(|f| (f, Phase::Waiting)).collect(),
            effects: BTreeMap::new(),
            applied: BTreeMap::new(),
            ends,
            validators,
            client_reset_per_mille,
            rng,
            restarts: 0,
            started: 0,
            crash_points: 0,
        }
    }

    pub fn planned(&self) -> Vec<PlannedFault> {
        self.faults.iter().map(|(f, _)| *f).collect()
    }

    /// Whether every fault has started and been healed.
    pub fn all_healed(&self) -> bool {
        self.faults.iter().all(|(_, p)| matches!(p, Phase::Healed))
    }

    /// When the last fault will have healed, once the deadline is known.
    pub fn heal_by(&self, deadline_ms: u64) -> u64 {
        self.faults
            .iter()
            .map(|(f, p)| match p {
                Phase::Active { started_ms, .. } => started_ms + f.duration_ms,
                _ => deadline_ms.saturating_add_signed(f.offset_ms) + f.duration_ms,
            })
            .max()
            .unwrap_or(deadline_ms)
    }

    /// Starts, advances and heals faults at harness time `now_ms`.
    pub fn step(&mut self, now_ms: u64, deadline_ms: u64, act: &mut Actuators<'_, '_>) {
        for i in 0..self.faults.len() {
            let (fault, phase) = self.faults[i].clone();
            match phase {
                Phase::Waiting if now_ms >= deadline_ms.saturating_add_signed(fault.offset_ms) => {
                    let phase = self.start(&fault, now_ms, act);
                    self.faults[i].1 = phase;
                }
                Phase::Active {
                    started_ms,
                    targets,
                    flap,
                } => {
                    if now_ms >= started_ms + fault.duration_ms {
                        self.heal(&fault, &targets, now_ms, act);
                        self.faults[i].1 = Phase::Healed;
                    } else if let Some((next, down)) = flap.filter(|(next, _)| now_ms >= *next) {
                        let FaultKind::Flapping { period_ms } = fault.kind else {
                            continue;
                        };
                        let leader = targets.first().copied().unwrap_or(0);
                        let held = if down {
                            Vec::new()
                        } else {
                            self.peer_links(leader)
                        };
                        self.effects.entry(fault.id).or_default().held = held;
                        self.faults[i].1 = Phase::Active {
                            started_ms,
                            targets,
                            flap: Some((next + period_ms, !down)),
                        };
                        self.apply_links(act);
                    }
                }
                _ => {}
            }
        }
    }

    /// Links from `v` to every other validator.
    fn peer_links(&self, v: u32) -> Vec<Link> {
        (0..self.validators)
            .filter(|o| *o != v)
            .map(|o| link(End::Validator(v), End::Validator(o)))
            .collect()
    }

    fn all_links(&self) -> Vec<Link> {
        let mut out = Vec::new();
        for (i, a) in self.ends.iter().enumerate() {
            for b in &self.ends[i + 1..] {
                out.push(link(*a, *b));
            }
        }
        out
    }

    fn up_validators(&self, act: &mut Actuators<'_, '_>) -> Vec<u32> {
        (0..self.validators)
            .filter(|v| act.sim.is_host_running(host_name(*v)))
            .collect()
    }

    /// The leader now, or (during an election) the lowest running validator.
    fn leader(&self, act: &mut Actuators<'_, '_>) -> u32 {
        act.registry
            .leader()
            .or_else(|| self.up_validators(act).first().copied())
            .unwrap_or(0)
    }

    fn pick(&mut self, target: Target, act: &mut Actuators<'_, '_>) -> u32 {
        let leader = self.leader(act);
        match target {
            Target::Leader | Target::All => leader,
            Target::Follower => {
                let others: Vec<u32> = self
                    .up_validators(act)
                    .into_iter()
                    .filter(|v| *v != leader)
                    .collect();
                if others.is_empty() {
                    leader
                } else {
                    others[self.rng.gen_range(0..others.len())]
                }
            }
        }
    }

    /// `target`'s validators: one, or every validator for `Target::All`.
    fn pick_all(&mut self, target: Target, act: &mut Actuators<'_, '_>) -> Vec<u32> {
        match target {
            Target::All => (0..self.validators).collect(),
            _ => vec![self.pick(target, act)],
        }
    }

    fn start(&mut self, fault: &PlannedFault, now_ms: u64, act: &mut Actuators<'_, '_>) -> Phase {
        self.started += 1;
        let mut effect = LinkEffect::default();
        let mut flap = None;
        let (targets, what) = match fault.kind {
            FaultKind::IsolateLeader { clients_too } => {
                let leader = self.leader(act);
                effect.held = self.peer_links(leader);
                if clients_too {
                    effect.held.push(link(End::Validator(leader), End::Clients));
                }
                (vec![leader], format!("leader validator-{leader} cut off"))
            }
            FaultKind::MinorityPartition => {
                let v = self.pick(Target::Follower, act);
                effect.held = self.peer_links(v);
                (vec![v], format!("follower validator-{v} cut off"))
            }
            FaultKind::SplitBrain => {
                let leader = self.leader(act);
                let mut others: Vec<u32> = (0..self.validators).filter(|v| *v != leader).collect();
                let partner = others.remove(self.rng.gen_range(0..others.len()));
                for a in [leader, partner] {
                    for b in &others {
                        effect
                            .held
                            .push(link(End::Validator(a), End::Validator(*b)));
                    }
                }
                (
                    vec![leader, partner],
                    format!("validators {leader},{partner} | {others:?}"),
                )
            }
            FaultKind::Flapping { period_ms } => {
                let leader = self.leader(act);
                effect.held = self.peer_links(leader);
                flap = Some((now_ms + period_ms, true));
                (
                    vec![leader],
                    format!("leader validator-{leader}'s links flap every {period_ms} ms"),
                )
            }
            FaultKind::Delay { max_latency_ms } => {
                effect.latency = Some((self.all_links(), max_latency_ms));
                (Vec::new(), format!("latency up to {max_latency_ms} ms"))
            }
            FaultKind::Loss {
                reset_per_mille,
                max_latency_ms,
            } => {
                let links = self.all_links();
                effect.latency = Some((links.clone(), max_latency_ms));
                effect.loss = Some((links, reset_per_mille));
                (
                    Vec::new(),
                    format!(
                        "resets {reset_per_mille}/1000 writes, latency up to {max_latency_ms} ms"
                    ),
                )
            }
            FaultKind::Crash { target } => {
                self.crash_points += 1;
                let targets = self.pick_all(target, act);
                let mut dropped = Vec::new();
                for v in &targets {
                    let Some(disk) = act.disks.get(*v as usize) else {
                        continue;
                    };
                    let loss = power_cut(act.sim, act.net, act.registry, disk, *v);
                    dropped.push(format!(
                        "validator-{v}'s disk dropped {} unsynced writes ({} bytes, {} log entries)",
                        loss.writes, loss.bytes, loss.entries
                    ));
                }
                (
                    targets.clone(),
                    format!(
                        "{} ({}) killed, power cut: {}",
                        validators_named(&targets),
                        target_name(target),
                        dropped.join(", ")
                    ),
                )
            }
            FaultKind::ClockSkew { target, skew_ms } => {
                let targets = self.pick_all(target, act);
                for v in &targets {
                    act.skews.set(*v, skew_ms);
                }
                (
                    targets.clone(),
                    format!(
                        "{} ({})'s clock {skew_ms:+} ms",
                        validators_named(&targets),
                        target_name(target)
                    ),
                )
            }
            FaultKind::WithholdTicks { target } => {
                let targets = self.pick_all(target, act);
                for v in &targets {
                    act.withholds.set(*v, true);
                }
                (
                    targets.clone(),
                    format!(
                        "{} ({}) proposes no ticks while leading",
                        validators_named(&targets),
                        target_name(target)
                    ),
                )
            }
        };
        self.effects.insert(fault.id, effect);
        self.apply_links(act);
        act.journal.record(Event::Fault(Fault {
            time_ms: now_ms,
            id: fault.id,
            fault: fault.kind.name().to_owned(),
            targets: targets.clone(),
            detail: format!(
                "{what}; {} ms from NEP-1's deadline, for {} ms",
                fault.offset_ms, fault.duration_ms
            ),
        }));
        Phase::Active {
            started_ms: now_ms,
            targets,
            flap,
        }
    }

    fn heal(
        &mut self,
        fault: &PlannedFault,
        targets: &[u32],
        now_ms: u64,
        act: &mut Actuators<'_, '_>,
    ) {
        self.effects.remove(&fault.id);
        self.apply_links(act);
        let detail = match fault.kind {
            FaultKind::Crash { .. } => {
                for v in targets {
                    act.sim.bounce(host_name(*v));
                    self.restarts += 1;
                }
                format!("{} restarted from its disk", validators_named(targets))
            }
            FaultKind::ClockSkew { .. } => {
                for v in targets {
                    act.skews.set(*v, 0);
                }
                format!("{}'s clock corrected", validators_named(targets))
            }
            FaultKind::WithholdTicks { .. } => {
                for v in targets {
                    act.withholds.set(*v, false);
                }
                format!("{} ticks again", validators_named(targets))
            }
            _ => "links healed".to_owned(),
        };
        act.journal.record(Event::Heal(Heal {
            time_ms: now_ms,
            id: fault.id,
            detail,
        }));
    }

    /// A link without faults.
    fn healthy(&self, l: Link) -> LinkState {
        let clients = l.0 == End::Clients || l.1 == End::Clients;
        LinkState {
            held: false,
            max_latency_ms: BASE_MAX_LATENCY_MS,
            reset_per_mille: if clients {
                self.client_reset_per_mille
            } else {
                0
            },
        }
    }

    /// Sets up the links before the run starts.
    pub fn init(&mut self, act: &mut Actuators<'_, '_>) {
        self.apply_links(act);
    }

    /// Brings every link to the combination of the active faults.
    fn apply_links(&mut self, act: &mut Actuators<'_, '_>) {
        for l in self.all_links() {
            let mut want = self.healthy(l);
            for e in self.effects.values() {
                want.held |= e.held.contains(&l);
                if let Some((links, ms)) = &e.latency {
                    if links.contains(&l) {
                        want.max_latency_ms = want.max_latency_ms.max(*ms);
                    }
                }
                if let Some((links, per_mille)) = &e.loss {
                    if links.contains(&l) {
                        want.reset_per_mille = want.reset_per_mille.max(*per_mille);
                    }
                }
            }
            // turmoil starts every link at the base latency, no loss.
            let have = self.applied.get(&l).copied().unwrap_or(LinkState {
                held: false,
                max_latency_ms: BASE_MAX_LATENCY_MS,
                reset_per_mille: 0,
            });
            if want == have {
                continue;
            }
            let (a, b) = (l.0.host(), l.1.host());
            if want.held != have.held {
                if want.held {
                    act.sim.hold(a.as_str(), b.as_str());
                } else {
                    act.sim.release(a.as_str(), b.as_str());
                }
            }
            if want.max_latency_ms != have.max_latency_ms {
                act.sim.set_link_max_message_latency(
                    a.as_str(),
                    b.as_str(),
                    std::time::Duration::from_millis(want.max_latency_ms),
                );
            }
            if want.reset_per_mille != have.reset_per_mille {
                act.net.set_loss(
                    act.sim.lookup(a.as_str()),
                    act.sim.lookup(b.as_str()),
                    want.reset_per_mille,
                );
            }
            self.applied.insert(l, want);
        }
    }
}
