//! Named simulation cases of issue 11, item 2 (bounded time): a faulty
//! leader can neither close a vote early nor keep it open late by more
//! than the bound. Each case is the ordinary simulation (the real nodes,
//! the voting workload, every checker) with one hand-placed fault on the
//! leader around NEP-1's deadline, plus the case's own checks on when each
//! vote closed; `.ci/chaos` runs each one on every run
//! (`neuroshard-chaos sim --case <name>`), and `chaos/tests/sim_cases.rs`
//! runs them and their sabotaged twins.
//!
//! * `leader-clock-ahead`: the leader's clock jumps 2 days ahead 4 s before
//!   the deadline (the vote has been open 2 s) for 5 s. Honest followers
//!   refuse its ticks (`tick_ahead`), ignore it and elect another leader;
//!   no vote closes earlier than `deadline − gov.max_clock_skew_ms`.
//! * `leader-clock-far-future`: the same with the clock at `now + i64::MAX`
//!   ms (a tick near 2^63, what a corrupted clock or offset gives).
//! * `leader-withholds-ticks`: the leader proposes no ticks (it keeps
//!   heartbeating and leading: `Environment::withhold_ticks`) from 50 ms
//!   before the deadline for 4 s. The followers' tick watchdog ignores it
//!   and elects another; every vote closes no later than
//!   `deadline + withhold_late_bound_ms()`.
//!
//! Sabotage (`sabotage = true`) runs the same fault on *every* validator,
//! so no honest follower is left to notice (every clock agrees with the
//! jumped one; every leader withholds): what the followers' protection
//! prevents then happens, and the case's checks must report it.

use std::collections::BTreeMap;
use std::time::Duration;

use neuroshard_governance::{NepId, Stage};

use crate::history::{EntryKind, Event, History};
use crate::report::{check, Report};
use crate::sim::faults::{FaultKind, PlannedFault, Target};
use crate::sim::validator::{self, ELECTION_TIMEOUT_MS, TICK_INTERVAL_MS};
use crate::sim::{run, SimConfig, SimError, SimRun, SIM_MAX_CLOCK_SKEW_MS};

/// The named cases, in the order `.ci/chaos` runs them.
pub const CASES: [&str; 3] = [
    "leader-clock-ahead",
    "leader-clock-far-future",
    "leader-withholds-ticks",
];

/// The seed every case runs with (the network's latencies, the clients'
/// choices); any seed must pass.
pub const CASE_SEED: u64 = 11;

/// `gov.voting_days` in the cases: a 6 s vote, so that closing it more
/// than `gov.max_clock_skew_ms` (2 s) early is possible at all.
pub const CASE_VOTING_DAYS: i64 = 6;

/// The clock jump of `leader-clock-ahead`: 2 days of real time.
pub const TWO_DAYS_MS: i64 = 2 * 86_400_000;

/// When the clock jumps, relative to NEP-1's deadline (the vote opened
/// 6 s before it), and for how long.
pub const CLOCK_JUMP_OFFSET_MS: i64 = -4_000;
pub const CLOCK_JUMP_MS: u64 = 5_000;

/// When the leader stops ticking, relative to NEP-1's deadline, and for
/// how long (honest run; the sabotaged run withholds for longer).
pub const WITHHOLD_OFFSET_MS: i64 = -50;
pub const WITHHOLD_MS: u64 = 4_000;
pub const WITHHOLD_SABOTAGE_MS: u64 = 6_000;

/// How early a vote may close: `gov.max_clock_skew_ms` (an honest leader's
/// clock may be that far ahead; a tick further ahead is refused).
pub const EARLY_BOUND_MS: u64 = SIM_MAX_CLOCK_SKEW_MS as u64;

/// How late a vote may close when the leader withholds ticks, after its
/// deadline: committed time must first fall `gov.max_clock_skew_ms` behind
/// a follower's clock; the watchdog, polling every tick interval, needs two
/// polls and the grace (`node::tick_watchdog_grace`: 2 ticks + the longest
/// election timeout) to act; the election takes at most two election
/// timeouts (the other followers' leader lease runs out, a split vote is
/// retried); the new leader's first tick is one tick interval later; and
/// 100 ms cover the network's round trips (at most 20 ms a segment).
/// 2 000 + 501 + 200 + 602 + 100 + 100 = 3 503 ms.
pub fn withhold_late_bound_ms() -> u64 {
    let config = validator::node_config(0, crate::sim::SIM_VALIDATORS);
    let grace = neuroshard_node::node::tick_watchdog_grace(&config);
    let election_max = ELECTION_TIMEOUT_MS + 1;
    EARLY_BOUND_MS
        + duration_ms(grace)
        + 2 * TICK_INTERVAL_MS
        + 2 * election_max
        + TICK_INTERVAL_MS
        + 100
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// When one vote closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseTime {
    pub nep: NepId,
    /// The vote's deadline (committed time).
    pub deadline_ms: u64,
    /// Harness (real) time the first replica applied the closing tick.
    pub closed_at_ms: Option<u64>,
    /// The closing tick's committed time.
    pub tick_ms: Option<u64>,
}

impl CloseTime {
    /// Closed this many ms after the deadline (negative: before).
    pub fn late_ms(&self) -> Option<i64> {
        self.closed_at_ms
            .map(|c| i64::try_from(c).unwrap_or(i64::MAX) - self.deadline_ms as i64)
    }
}

/// Each vote's deadline and the real time its closing tick was first
/// applied, from the history alone (the finals' deadlines, the replicas'
/// applied ticks).
pub fn close_times(h: &History) -> Vec<CloseTime> {
    let mut out: BTreeMap<NepId, CloseTime> = BTreeMap::new();
    for e in &h.events {
        if let Event::Final(f) = e {
            if let Some(deadline_ms) = f.deadline_ms {
                out.entry(f.nep).or_insert(CloseTime {
                    nep: f.nep,
                    deadline_ms,
                    closed_at_ms: None,
                    tick_ms: None,
                });
            }
        }
    }
    for e in &h.events {
        let Event::Applied(a) = e else { continue };
        let Some(entry) = &a.entry else { continue };
        if entry.kind != EntryKind::Tick {
            continue;
        }
        for t in &entry.transitions {
            if t.from != Stage::Voting {
                continue;
            }
            if let Some(c) = out.get_mut(&t.nep) {
                if c.closed_at_ms.is_none_or(|at| a.time_ms < at) {
                    c.closed_at_ms = Some(a.time_ms);
                    c.tick_ms = entry.now_ms;
                }
            }
        }
    }
    out.into_values().collect()
}

/// A vote closed outside its bounds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseViolation {
    #[error("{nep}'s vote closed at {closed_at_ms} ms, {early_ms} ms before its deadline {deadline_ms} ms: more than the bound {bound_ms} ms")]
    Early {
        nep: NepId,
        deadline_ms: u64,
        closed_at_ms: u64,
        early_ms: u64,
        bound_ms: u64,
    },
    #[error("{nep}'s vote closed at {closed_at_ms} ms, {late_ms} ms after its deadline {deadline_ms} ms: more than the bound {bound_ms} ms")]
    Late {
        nep: NepId,
        deadline_ms: u64,
        closed_at_ms: u64,
        late_ms: u64,
        bound_ms: u64,
    },
    #[error("{nep}'s vote (deadline {deadline_ms} ms) never closed")]
    NeverClosed { nep: NepId, deadline_ms: u64 },
    #[error("the history holds no vote: nothing to judge")]
    NoVote,
}

/// Every vote closed no earlier than `deadline − early_bound_ms` and, with
/// a `late_bound_ms`, no later than `deadline + late_bound_ms`.
pub fn check_close_times(
    closes: &[CloseTime],
    early_bound_ms: u64,
    late_bound_ms: Option<u64>,
) -> Vec<CloseViolation> {
    if closes.is_empty() {
        return vec![CloseViolation::NoVote];
    }
    let mut out = Vec::new();
    for c in closes {
        let Some(at) = c.closed_at_ms else {
            out.push(CloseViolation::NeverClosed {
                nep: c.nep,
                deadline_ms: c.deadline_ms,
            });
            continue;
        };
        if at + early_bound_ms < c.deadline_ms {
            out.push(CloseViolation::Early {
                nep: c.nep,
                deadline_ms: c.deadline_ms,
                closed_at_ms: at,
                early_ms: c.deadline_ms - at,
                bound_ms: early_bound_ms,
            });
        }
        if let Some(bound) = late_bound_ms {
            if at > c.deadline_ms + bound {
                out.push(CloseViolation::Late {
                    nep: c.nep,
                    deadline_ms: c.deadline_ms,
                    closed_at_ms: at,
                    late_ms: at - c.deadline_ms,
                    bound_ms: bound,
                });
            }
        }
    }
    out
}

/// One named case's run and verdict.
pub struct CaseRun {
    pub name: &'static str,
    pub sabotage: bool,
    pub run: SimRun,
    /// The validator the fault hit (the leader when it started).
    pub faulty: Vec<u32>,
    pub fault_started_ms: Option<u64>,
    pub closes: Vec<CloseTime>,
    pub late_bound_ms: Option<u64>,
    /// The close-time check.
    pub close_violations: Vec<CloseViolation>,
    /// The case's other claims (the followers refused, another validator
    /// led), in words.
    pub claim_violations: Vec<String>,
    /// Every invariant checker on the history.
    pub report: Report,
}

impl CaseRun {
    pub fn is_clean(&self) -> bool {
        self.close_violations.is_empty()
            && self.claim_violations.is_empty()
            && self.report.is_clean()
    }

    /// One line: the case, what happened, each vote's close against its
    /// deadline and the bounds.
    pub fn summary(&self) -> String {
        let s = &self.run.stats;
        let closes = self
            .closes
            .iter()
            .map(|c| match c.late_ms() {
                Some(l) => format!("{} closed {l:+} ms from its deadline", c.nep),
                None => format!("{} never closed", c.nep),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let refusals = s
            .safety_refusals
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        // Leaders from the one leading when the fault started, each with
        // the time it was first seen leading, from the fault's start.
        let start = self.fault_started_ms.unwrap_or(0);
        let from = s
            .leaders
            .iter()
            .rposition(|(t, _)| *t <= start)
            .unwrap_or(0);
        let leaders = s.leaders[from..]
            .iter()
            .map(|(t, l)| format!("{l}@{:+}ms", *t as i64 - start as i64))
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "case {}{} (seed {CASE_SEED}, {}): faulty {:?}; {closes} (bounds: early {EARLY_BOUND_MS} ms{}); refusals before Raft [{refusals}]; leaders from the fault's start {leaders}; {} ms simulated, {} entries, {} votes acknowledged",
            self.name,
            if self.sabotage { " SABOTAGED" } else { "" },
            self.run.scenario,
            self.faulty,
            self.late_bound_ms
                .map(|b| format!(", late {b} ms"))
                .unwrap_or_default(),
            s.sim_ms,
            s.entries,
            s.clients.votes_acknowledged,
        )
    }
}

/// Runs the named case (`CASES`), sabotaged or not, and judges it.
pub fn run_case(name: &str, sabotage: bool) -> Result<CaseRun, SimError> {
    let target = if sabotage {
        Target::All
    } else {
        Target::Leader
    };
    let (name, kind, offset_ms, duration_ms, late_bound_ms, rule) = match name {
        "leader-clock-ahead" => (
            CASES[0],
            FaultKind::ClockSkew {
                target,
                skew_ms: TWO_DAYS_MS,
            },
            CLOCK_JUMP_OFFSET_MS,
            CLOCK_JUMP_MS,
            None,
            "tick_ahead",
        ),
        "leader-clock-far-future" => (
            CASES[1],
            FaultKind::ClockSkew {
                target,
                skew_ms: i64::MAX,
            },
            CLOCK_JUMP_OFFSET_MS,
            CLOCK_JUMP_MS,
            None,
            "tick_ahead",
        ),
        "leader-withholds-ticks" => (
            CASES[2],
            FaultKind::WithholdTicks { target },
            WITHHOLD_OFFSET_MS,
            if sabotage {
                WITHHOLD_SABOTAGE_MS
            } else {
                WITHHOLD_MS
            },
            Some(withhold_late_bound_ms()),
            "ticks_withheld",
        ),
        other => {
            return Err(SimError::Config(format!(
                "no case {other:?}; the cases are {CASES:?}"
            )))
        }
    };
    let config = SimConfig {
        plan: Some(vec![PlannedFault {
            id: 1,
            kind,
            offset_ms,
            duration_ms,
        }]),
        voting_days: CASE_VOTING_DAYS,
        ..SimConfig::new(CASE_SEED)
    };
    let run = run(&config)?;
    let (faulty, fault_started_ms) = run
        .history
        .events
        .iter()
        .find_map(|e| match e {
            Event::Fault(f) => Some((f.targets.clone(), Some(f.time_ms))),
            _ => None,
        })
        .unwrap_or_default();
    let closes = close_times(&run.history);
    let close_violations = check_close_times(&closes, EARLY_BOUND_MS, late_bound_ms);
    let mut claim_violations = Vec::new();
    let refused = run.stats.safety_refusals.get(rule).copied().unwrap_or(0);
    if refused == 0 {
        claim_violations.push(format!(
            "no validator refused the faulty leader ({rule} = 0)"
        ));
    }
    let replaced = run
        .stats
        .leaders
        .iter()
        .any(|(t, l)| fault_started_ms.is_some_and(|f| *t >= f) && !faulty.contains(l));
    if !replaced {
        claim_violations.push(format!(
            "no validator other than {faulty:?} led after the fault started"
        ));
    }
    let report = check(&run.history);
    Ok(CaseRun {
        name,
        sabotage,
        run,
        faulty,
        fault_started_ms,
        closes,
        late_bound_ms,
        close_violations,
        claim_violations,
        report,
    })
}

/// The named recovery cases (`crate::sim::recovery`), in the order
/// `.ci/chaos` runs them: X recovers with the holders cut off (the
/// counter-example's situation) for n = 3, 4, 5; with the holders reachable
/// (⌈n/2⌉ answers without A) for n = 4, 5; and the old way (`Boot::Auto`),
/// which must lose the entry for n = 3 and 5 and cannot for n = 4.
pub const RECOVERY_CASES: [&str; 8] = [
    "recovery-n3",
    "recovery-n4",
    "recovery-n5",
    "recovery-reaching-holders-n4",
    "recovery-reaching-holders-n5",
    "old-way-n3",
    "old-way-n4",
    "old-way-n5",
];

/// The scenario of a named recovery case, and whether its checks must find
/// the entry lost (the old way, where it can be).
pub fn recovery_case(name: &str) -> Option<(crate::sim::recovery::RecoveryCase, bool)> {
    use crate::sim::recovery::{old_way_can_lose, RecoveryCase};
    let (kind, n) = name.rsplit_once("-n")?;
    let n: u32 = n.parse().ok()?;
    if !(3..=5).contains(&n) {
        return None;
    }
    match kind {
        "recovery" => Some((RecoveryCase::recover(n), false)),
        "recovery-reaching-holders" if n >= 4 => {
            Some((RecoveryCase::recover_reaching_holders(n), false))
        }
        "old-way" => Some((RecoveryCase::old_way(n), old_way_can_lose(n))),
        _ => None,
    }
}
