//! The counter-example of issue 11, item 6, on the real nodes in the
//! simulation, for a committee of n = 3, 4 or 5: an entry committed on a
//! bare majority that includes validator X while the others lag; X's disk
//! is wiped and the leader A that holds the entry crashes; a lagging
//! validator B campaigns.
//!
//! Roles, once a leader A is elected: X is the next validator, the
//! "holders" complete the bare majority M = {A, X, holders} (n/2 + 1
//! validators: none for n = 3, one for 4 and 5), the "laggers" are the rest
//! (B; B and D for n = 5). The phases:
//!
//! 1. Up to [`SETTLE_MS`]: the committee elects A and ticks.
//! 2. For [`LAG_MS`]: the laggers are cut off from M; M commits ticks.
//!    The entry E is the last one A applied at the end.
//! 3. X crashes and gets an empty disk (a new `MemLogStore` and a genesis
//!    `MemStateMachine`); A crashes. With `isolate_holders` the holders are
//!    cut off from everyone too (so nobody that holds E is reachable: a
//!    lagger can win an election with X's vote alone). The laggers' links
//!    heal; X restarts with `Boot::Recover` or (the old way) `Boot::Auto`,
//!    which takes an empty store for a first boot.
//! 4. For [`WITHOUT_A_MS`] the committee runs without A.
//! 5. The holders' links heal; A restarts from its disk (`Boot::Restart`:
//!    the rollback probe) unless the run keeps it down; the run waits until
//!    every running validator applied the same index at or past E, at most
//!    [`CONVERGE_MS`].
//!
//! The checks: no validator leads with a log shorter than E's index (a
//! leader elected without E); every replica that applies an index reports
//! the same state hash for it (`replicas_agree` on the recorded history:
//! a replica that applied something else at E's index lost E); every
//! validator running at the end applied E's index; with X recovering, the
//! recovery completed. With `Boot::Auto` for n = 3 and 5 the checks must
//! fail (`chaos/tests/sim_recovery.rs` asserts they do): the counter-example
//! is real. For n = 4 a bare majority is 3 of 4, so without A and with X
//! empty a lagger still needs a holder's vote, which it cannot get: even
//! the old way loses nothing.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use neuroshard_governance::genesis::ParamInput;
use neuroshard_governance::testkit::{self, TestConfig};
use neuroshard_governance::{GenesisError, GovernanceState};
use neuroshard_node::boot::Boot;

use crate::history::{Event, Header, History, HISTORY_FORMAT};
use crate::invariants::replicas_agree;
use crate::sim::clock::{self, Skews};
use crate::sim::journal::Journal;
use crate::sim::net::{NetControl, SimNetwork};
use crate::sim::pki::{host_name, Pki};
use crate::sim::validator::{self, slot, Disk, Registry, ValidatorSetup, Withholds};
use crate::sim::{stream, SimError, SIM_DAY_MS, SIM_MAX_CLOCK_SKEW_MS};

/// Phase 1 lasts at least this long (and until a leader applied 5 entries).
pub const SETTLE_MS: u64 = 1_000;
/// Phase 2: the laggers are cut off this long.
pub const LAG_MS: u64 = 1_500;
/// Phase 4: the committee runs without A this long (an election among the
/// rest can take a few election rounds while X refuses its vote).
pub const WITHOUT_A_MS: u64 = 4_000;
/// Phase 5: the longest wait for every validator to converge.
pub const CONVERGE_MS: u64 = 10_000;

/// One recovery scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryCase {
    pub validators: u32,
    /// How X restarts on its empty disk.
    pub x_boot: Boot,
    /// Cut the holders off in phases 3–4.
    pub isolate_holders: bool,
    /// Restart A and heal the holders in phase 5 (the old way, where E
    /// can be lost, keeps them away: their logs would conflict with what
    /// the others committed since).
    pub restart_a: bool,
    pub seed: u64,
}

/// Whether the old way can lose E: the laggers and an emptied X form a
/// majority (n = 3: B and X are 2 of 3; n = 5: B, D and X are 3 of 5; for
/// n = 4 B and X are 2 of 4 and a holder's vote is needed).
pub fn old_way_can_lose(validators: u32) -> bool {
    let majority = validators / 2 + 1;
    let laggers = validators - majority;
    laggers + 1 >= majority
}

impl RecoveryCase {
    /// X recovers (`Boot::Recover`); the holders are cut off as in the
    /// counter-example; A returns.
    pub fn recover(validators: u32) -> Self {
        Self {
            validators,
            x_boot: Boot::Recover,
            isolate_holders: true,
            restart_a: true,
            seed: 6,
        }
    }

    /// X recovers while the holders stay reachable: for n = 4 and 5 the
    /// recovery proceeds without A (⌈n/2⌉ answers); for n = 3 it needs A.
    pub fn recover_reaching_holders(validators: u32) -> Self {
        Self {
            isolate_holders: false,
            ..Self::recover(validators)
        }
    }

    /// The counter-example as it was: X restarts the old way
    /// (`Boot::Auto`). Where that can lose E ([`old_way_can_lose`]), A and
    /// the holders stay away (their logs would conflict with what the
    /// others committed since).
    pub fn old_way(validators: u32) -> Self {
        Self {
            x_boot: Boot::Auto,
            restart_a: !old_way_can_lose(validators),
            ..Self::recover(validators)
        }
    }

    pub fn name(&self) -> String {
        format!(
            "n={} X:{:?}{}{}",
            self.validators,
            self.x_boot,
            if self.isolate_holders {
                " holders-cut-off"
            } else {
                ""
            },
            if self.restart_a {
                ""
            } else {
                " A-and-holders-stay-away"
            }
        )
    }
}

/// What a recovery scenario did and found.
#[derive(Clone, Debug, Default)]
pub struct RecoveryRun {
    pub a: u32,
    pub x: u32,
    pub holders: Vec<u32>,
    pub laggers: Vec<u32>,
    /// E: the last index A applied before it crashed, and the laggers'
    /// longest log then.
    pub entry_index: u64,
    pub laggers_last_index: u64,
    /// Leaders after the crash, with harness ms since it.
    pub leaders_after_crash: Vec<(u64, u32, u64)>,
    /// ms from X's restart until its node ran (the recovery's probe wait)
    /// and until it finished recovering.
    pub x_started_after_ms: Option<u64>,
    pub x_recovered_after_ms: Option<u64>,
    /// Refusals of vote requests while recovering (`recovering`), on X.
    pub x_refused_votes: u64,
    /// ms from A's restart (phase 5) until every running validator agreed.
    pub converged_after_ms: Option<u64>,
    pub final_index: Option<u64>,
    /// Claims that failed, in words (a leader without E, a validator that
    /// never applied E, a recovery that never completed).
    pub violations: Vec<String>,
    /// `replicas_agree` on the recorded history.
    pub disagreements: Vec<replicas_agree::Disagreement>,
    pub history: Option<History>,
}

impl RecoveryRun {
    /// Whether the committed entry was lost or a validator led without it.
    pub fn lost_entry(&self) -> bool {
        !self.violations.is_empty() || !self.disagreements.is_empty()
    }

    pub fn summary(&self, case: &RecoveryCase) -> String {
        format!(
            "recovery {}: A={} X={} holders {:?} laggers {:?}; E = index {} (laggers at {}); leaders after the crash {}; X ran after {} and recovered after {} ({} votes refused while recovering); converged {} at index {}; {} violations, {} disagreements",
            case.name(),
            self.a,
            self.x,
            self.holders,
            self.laggers,
            self.entry_index,
            self.laggers_last_index,
            self.leaders_after_crash
                .iter()
                .map(|(ms, l, last)| format!("{l}@+{ms}ms(log {last})"))
                .collect::<Vec<_>>()
                .join(" "),
            ms(self.x_started_after_ms),
            ms(self.x_recovered_after_ms),
            self.x_refused_votes,
            ms(self.converged_after_ms),
            self.final_index.map_or("-".to_owned(), |i| i.to_string()),
            self.violations.len(),
            self.disagreements.len(),
        )
    }
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "never".to_owned(), |v| format!("{v} ms"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Settle,
    Lag { until: u64 },
    WithoutA { crashed: u64, until: u64 },
    Converge { crashed: u64, restarted: u64 },
}

/// Runs one scenario.
pub fn run(case: &RecoveryCase) -> Result<RecoveryRun, SimError> {
    let n = case.validators;
    if !(3..=7).contains(&n) {
        return Err(SimError::Config(format!(
            "the recovery scenario needs 3..=7 validators, got {n}"
        )));
    }
    let test = TestConfig {
        chain_id: "neuroshard-sim-recovery".to_owned(),
        users: 2,
        validators: n,
        day_ms: SIM_DAY_MS as i64,
        extra_parameters: vec![(
            "gov.max_clock_skew_ms".to_owned(),
            ParamInput::Integer(SIM_MAX_CLOCK_SKEW_MS),
        )],
        ..TestConfig::default()
    };
    let (genesis, dealt) = testkit::genesis(&test);
    let epoch_ms = genesis.genesis_time_ms;
    let journal = Journal::new(n as usize);
    let pki = Pki::new(&genesis.chain_id, n)?;
    let net = NetControl::new(stream(case.seed, 3));
    let network = SimNetwork::new(net.clone());
    let skews = Skews::new(n as usize);
    let withholds = Withholds::new(n as usize);
    let registry = Registry::default();
    let fresh = || -> Result<Disk, GenesisError> {
        Ok(Disk::new(
            GovernanceState::from_genesis(&genesis)?,
            validator::disk_options(),
        ))
    };
    let disks = (0..n)
        .map(|_| Ok(Arc::new(Mutex::new(fresh()?))))
        .collect::<Result<Vec<_>, GenesisError>>()?;
    let boots: Vec<_> = (0..n).map(|_| Arc::new(Mutex::new(Boot::Auto))).collect();

    let mut sim = crate::sim::sim_builder(epoch_ms, Duration::from_secs(60), case.seed).build();
    for v in 0..n {
        let setup = Arc::new(ValidatorSetup {
            id: v,
            config: validator::node_config(v, n),
            genesis: genesis.clone(),
            tls: pki.validators[v as usize].clone(),
            bls_share: dealt.secret_key_shares[v as usize].clone(),
            disk: disks[v as usize].clone(),
            boot: boots[v as usize].clone(),
            withhold: withholds.flag(v),
            journal: journal.clone(),
            epoch_ms,
            skews: skews.clone(),
            network: network.clone(),
            registry: registry.clone(),
        });
        sim.host(host_name(v), move || validator::run(setup.clone()));
    }

    let mut out = RecoveryRun::default();
    let mut phase = Phase::Settle;
    let mut x_restarted = None;
    let mut last_leader = None;
    // A crash is a power cut: the disk keeps only what it synced.
    let crash = |sim: &mut turmoil::Sim<'_>, v: u32| {
        let _lost = validator::power_cut(sim, &net, &registry, &disks[v as usize], v);
    };
    let hold = |sim: &mut turmoil::Sim<'_>, a: &[u32], b: &[u32], held: bool| {
        for x in a {
            for y in b {
                if x == y {
                    continue;
                }
                if held {
                    sim.hold(host_name(*x), host_name(*y));
                } else {
                    sim.release(host_name(*x), host_name(*y));
                }
            }
        }
    };
    let all: Vec<u32> = (0..n).collect();
    let end = loop {
        sim.step().map_err(|e| SimError::Host(e.to_string()))?;
        let now = clock::at(epoch_ms, sim.elapsed()) - epoch_ms;
        // Watch every step after the crash: the leader's log, X's recovery.
        if let Phase::WithoutA { crashed, .. } | Phase::Converge { crashed, .. } = phase {
            if let Some(l) = registry.leader() {
                let (term, last) = registry.raft(l).map_or((0, 0), |r| {
                    let m = r.metrics();
                    let m = m.borrow();
                    (m.current_term, m.last_log_index.unwrap_or(0))
                });
                if last_leader != Some((l, term)) {
                    out.leaders_after_crash.push((now - crashed, l, last));
                    last_leader = Some((l, term));
                    if last < out.entry_index {
                        out.violations.push(format!(
                            "validator {l} leads term {term} {} ms after the crash with its log ending at index {last}, before the committed entry E at {}",
                            now - crashed,
                            out.entry_index
                        ));
                    }
                }
            }
            if let (Some(t0), Some(core)) = (x_restarted, registry.core(out.x)) {
                out.x_started_after_ms.get_or_insert(now - t0);
                if core.safety.recovering().is_none() {
                    out.x_recovered_after_ms.get_or_insert(now - t0);
                }
                out.x_refused_votes = core
                    .safety
                    .counts
                    .snapshot()
                    .into_iter()
                    .find(|(r, _)| *r == "recovering")
                    .map_or(0, |(_, c)| c);
            }
        }
        match phase {
            Phase::Settle => {
                let Some(a) = registry.leader() else { continue };
                let applied = disk_applied(&disks[a as usize]);
                if now < SETTLE_MS || applied < Some(5) {
                    continue;
                }
                let majority = n / 2 + 1;
                let others: Vec<u32> = (1..n).map(|k| (a + k) % n).collect();
                out.a = a;
                out.x = others[0];
                out.holders = others[1..(majority as usize - 1)].to_vec();
                out.laggers = others[(majority as usize - 1)..].to_vec();
                let m: Vec<u32> = [a, out.x]
                    .into_iter()
                    .chain(out.holders.iter().copied())
                    .collect();
                hold(&mut sim, &out.laggers, &m, true);
                phase = Phase::Lag {
                    until: now + LAG_MS,
                };
            }
            Phase::Lag { until } => {
                if now < until {
                    continue;
                }
                out.entry_index = disk_applied(&disks[out.a as usize]).unwrap_or(0);
                out.laggers_last_index = out
                    .laggers
                    .iter()
                    .filter_map(|l| registry.raft(*l))
                    .filter_map(|r| r.metrics().borrow().last_log_index)
                    .max()
                    .unwrap_or(0);
                if out.laggers_last_index >= out.entry_index {
                    return Err(SimError::Host(format!(
                        "the laggers hold index {} though cut off; E is {}: no counter-example",
                        out.laggers_last_index, out.entry_index
                    )));
                }
                crash(&mut sim, out.x);
                *slot(&disks[out.x as usize]) = fresh()?;
                crash(&mut sim, out.a);
                if case.isolate_holders {
                    hold(&mut sim, &out.holders, &all, true);
                }
                let m: Vec<u32> = [out.a, out.x].into();
                hold(&mut sim, &out.laggers, &m, false);
                if !case.isolate_holders {
                    hold(&mut sim, &out.laggers, &out.holders, false);
                }
                *slot(&boots[out.x as usize]) = case.x_boot;
                sim.bounce(host_name(out.x));
                x_restarted = Some(now);
                phase = Phase::WithoutA {
                    crashed: now,
                    until: now + WITHOUT_A_MS,
                };
            }
            Phase::WithoutA { crashed, until } => {
                if now < until {
                    continue;
                }
                if case.isolate_holders && case.restart_a {
                    hold(&mut sim, &out.holders, &all, false);
                    hold(&mut sim, &out.laggers, &out.holders, false);
                }
                if case.restart_a {
                    *slot(&boots[out.a as usize]) = Boot::Restart;
                    sim.bounce(host_name(out.a));
                }
                phase = Phase::Converge {
                    crashed,
                    restarted: now,
                };
            }
            Phase::Converge { restarted, .. } => {
                let running: Vec<u32> = all
                    .iter()
                    .copied()
                    .filter(|v| {
                        case.restart_a
                            || (*v != out.a && !(case.isolate_holders && out.holders.contains(v)))
                    })
                    .collect();
                let views: BTreeSet<(Option<u64>, [u8; 32])> = running
                    .iter()
                    .map(|v| {
                        let d = slot(&disks[*v as usize]).machine.shared();
                        let m = d.read();
                        (m.last_applied.map(|l| l.index), m.state.state_hash())
                    })
                    .collect();
                let recovered = registry
                    .core(out.x)
                    .is_some_and(|c| c.safety.recovering().is_none());
                if views.len() == 1 && recovered {
                    let (index, _) = views.iter().next().copied().unwrap_or((None, [0; 32]));
                    if index >= Some(out.entry_index) {
                        out.converged_after_ms = Some(now - restarted);
                        out.final_index = index;
                        break now;
                    }
                }
                if now >= restarted + CONVERGE_MS {
                    break now;
                }
            }
        }
    };
    let _ = end;
    // Everyone back: everyone must hold E.
    for v in (0..n).filter(|_| case.restart_a) {
        let applied = disk_applied(&disks[v as usize]);
        if applied < Some(out.entry_index) {
            out.violations.push(format!(
                "validator {v} ends having applied {applied:?}, short of the committed entry E at {}",
                out.entry_index
            ));
        }
    }
    if case.x_boot == Boot::Recover && out.x_recovered_after_ms.is_none() {
        out.violations
            .push(format!("validator {} never finished recovering", out.x));
    }
    drop(sim);
    let history = History {
        header: Header {
            format: HISTORY_FORMAT,
            harness: "simulation-recovery".to_owned(),
            seed: Some(case.seed),
            chain_id: genesis.chain_id.clone(),
            committee: genesis.committee.info.clone(),
            replicas: n,
            liveness_bound_ms: CONVERGE_MS,
            started_ms: epoch_ms,
        },
        events: journal
            .take_events()
            .into_iter()
            .filter(|e| matches!(e, Event::Applied(_)))
            .collect(),
    };
    let checked = replicas_agree::check(&history);
    if checked.checked == 0 {
        out.violations
            .push("replicas_agree compared nothing".to_owned());
    }
    out.disagreements = checked.violations;
    out.history = Some(history);
    Ok(out)
}

/// The last index the validator's state machine applied.
fn disk_applied(disk: &Mutex<Disk>) -> Option<u64> {
    let shared = slot(disk).machine.shared();
    let m = shared.read();
    m.last_applied.map(|l| l.index)
}
