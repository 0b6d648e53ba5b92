//! The summary of a real-process run: one row per scenario, computed from
//! its recorded history and the checkers' report only.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use neuroshard_chaos::history::{Event, History, OutcomeKind};
use neuroshard_chaos::report::Report;
use neuroshard_chaos::rule::VOTING_CLOSED;

use super::scenarios::Verdict;

/// One scenario's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub scenario: String,
    /// Fault names in injection order, e.g. `partition`, `replica_crash`.
    pub faults: String,
    /// Vote operations a client was told were counted.
    pub votes_acknowledged: usize,
    /// Ballots in the final tallies (all NEPs, the fullest replica's view).
    pub votes_counted: usize,
    /// Vote operations refused with `voting_closed`.
    pub refused_late: usize,
    /// Attempts that got no answer.
    pub unanswered: usize,
    pub violations: usize,
    /// After the last heal (or the deadline, if later), until every replica
    /// settled every NEP and every certificate was issued.
    pub recover_ms: Option<u64>,
    /// The longest time after the last heal in which no replica applied a
    /// new index (ticks commit every 100 ms, so anything near a second is
    /// a leader election the heal caused).
    pub stall_ms: Option<u64>,
    pub seconds: u64,
    /// Why the scenario could not run to its end, if it could not.
    pub error: Option<String>,
    /// Scenario-specific expectations broken (counted in `violations`).
    pub findings: Vec<String>,
    /// How the fault met the system.
    pub notes: Vec<String>,
}

impl Row {
    pub fn failed(&self) -> bool {
        self.violations > 0 || self.error.is_some()
    }
}

/// The row of a scenario that could not run to its end.
pub fn error_row(scenario: &str, seconds: u64, error: String) -> Row {
    Row {
        scenario: scenario.to_owned(),
        faults: "-".into(),
        votes_acknowledged: 0,
        votes_counted: 0,
        refused_late: 0,
        unanswered: 0,
        violations: 0,
        recover_ms: None,
        stall_ms: None,
        seconds,
        error: Some(error),
        findings: Vec::new(),
        notes: Vec::new(),
    }
}

/// The row of a finished scenario.
pub fn row(
    scenario: &str,
    history: &History,
    report: &Report,
    verdict: &Verdict,
    seconds: u64,
) -> Row {
    let faults: Vec<String> = history
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Fault(f) => Some(f.fault.clone()),
            _ => None,
        })
        .collect();
    let mut acknowledged = 0;
    let mut refused_late = 0;
    for op in history.ops().values() {
        if !op.command().is_some_and(|c| c.is_vote()) {
            continue;
        }
        if op.results.iter().any(|r| r.outcome == OutcomeKind::Ok) {
            acknowledged += 1;
        }
        if op
            .results
            .iter()
            .any(|r| r.rule.as_deref() == Some(VOTING_CLOSED))
        {
            refused_late += 1;
        }
    }
    let unanswered = history
        .results()
        .filter(|r| r.outcome == OutcomeKind::Unknown)
        .count();
    let mut ballots: BTreeMap<u64, usize> = BTreeMap::new();
    for f in history.finals() {
        let b = ballots.entry(f.nep.0).or_default();
        *b = (*b).max(f.ballots.len());
    }
    Row {
        scenario: scenario.to_owned(),
        faults: if faults.is_empty() {
            "none".to_owned()
        } else {
            faults.join(", ")
        },
        votes_acknowledged: acknowledged,
        votes_counted: ballots.values().sum(),
        refused_late,
        unanswered,
        violations: report.violation_count() + verdict.findings.len(),
        recover_ms: recovery_ms(history),
        stall_ms: stall_after_heal_ms(history),
        seconds,
        error: None,
        findings: verdict.findings.clone(),
        notes: verdict.notes.clone(),
    }
}

/// Time from `max(last heal, deadline)` to the last settlement or
/// certificate issue of each NEP, the worst NEP's.
pub fn recovery_ms(history: &History) -> Option<u64> {
    let start = history.last_heal_ms().unwrap_or(history.header.started_ms);
    let mut worst: Option<u64> = None;
    let neps: BTreeSet<u64> = history.finals().map(|f| f.nep.0).collect();
    for nep in neps {
        let finals: Vec<_> = history.finals().filter(|f| f.nep.0 == nep).collect();
        let deadline = finals
            .iter()
            .filter_map(|f| f.deadline_ms)
            .max()
            .unwrap_or(0);
        let from = start.max(deadline);
        // A replica never seen settled: no recovery to report.
        let settled = finals
            .iter()
            .map(|f| f.settled_ms)
            .collect::<Option<Vec<u64>>>()?
            .into_iter()
            .max();
        let issued = history
            .certificates()
            .filter(|c| c.nep.0 == nep)
            .map(|c| c.time_ms)
            .max();
        let done = settled?.max(issued.unwrap_or(0));
        let took = done.saturating_sub(from);
        worst = Some(worst.map_or(took, |w| w.max(took)));
    }
    worst
}

/// The longest pause in the committee's progress (the highest index any
/// replica reported) between the last heal and the end of the sampling;
/// `None` without faults.
pub fn stall_after_heal_ms(history: &History) -> Option<u64> {
    let heal = history.last_heal_ms()?;
    let mut high = 0u64;
    let mut since = heal;
    let mut worst = 0u64;
    let mut last_sample = heal;
    for a in history.applied() {
        if a.time_ms < heal {
            high = high.max(a.index);
            continue;
        }
        last_sample = last_sample.max(a.time_ms);
        if a.index > high {
            high = a.index;
            worst = worst.max(a.time_ms.saturating_sub(since));
            since = a.time_ms;
        }
    }
    Some(worst.max(last_sample.saturating_sub(since)))
}

/// The table of every scenario.
pub fn render(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.scenario.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let fwidth = rows
        .iter()
        .map(|r| r.faults.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut t = String::new();
    let line = |t: &mut String, cells: [&str; 10]| {
        let _ = writeln!(
            t,
            "{:<width$}  {:<fwidth$}  {:>6}  {:>7}  {:>6}  {:>10}  {:>10}  {:>9}  {:>9}  {:>5}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            cells[6],
            cells[7],
            cells[8],
            cells[9]
        );
    };
    line(
        &mut t,
        [
            "scenario",
            "faults",
            "acked",
            "counted",
            "late",
            "unanswered",
            "violations",
            "recover",
            "stall",
            "secs",
        ],
    );
    let seconds = |ms: Option<u64>| {
        ms.map_or_else(
            || "-".to_owned(),
            |ms| format!("{:.1} s", ms as f64 / 1000.0),
        )
    };
    for r in rows {
        let violations = match &r.error {
            Some(_) => "ERROR".to_owned(),
            None => r.violations.to_string(),
        };
        line(
            &mut t,
            [
                &r.scenario,
                &r.faults,
                &r.votes_acknowledged.to_string(),
                &r.votes_counted.to_string(),
                &r.refused_late.to_string(),
                &r.unanswered.to_string(),
                &violations,
                &seconds(r.recover_ms),
                &seconds(r.stall_ms),
                &r.seconds.to_string(),
            ],
        );
    }
    for r in rows {
        if let Some(e) = &r.error {
            let _ = writeln!(t, "{}: ERROR {e}", r.scenario);
        }
        for f in &r.findings {
            let _ = writeln!(t, "{}: VIOLATION {f}", r.scenario);
        }
        for n in &r.notes {
            let _ = writeln!(t, "{}: {n}", r.scenario);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use neuroshard_certificate::{CommitteeInfo, SchemeId};
    use neuroshard_chaos::history::{
        Applied, CommandSummary, Fault, Final, Header, Heal, Invoke, OpResult, StateHash,
        HISTORY_FORMAT,
    };
    use neuroshard_governance::{AccountId, NepId, Stage, VoteChoice};

    use super::*;

    const T0: u64 = 1_000_000;

    fn history(events: Vec<Event>) -> History {
        History {
            header: Header {
                format: HISTORY_FORMAT,
                harness: "processes".into(),
                seed: None,
                chain_id: "t".into(),
                committee: CommitteeInfo {
                    chain_id: "t".into(),
                    scheme: SchemeId::G2Rfc9380,
                    group_public_key: [0; 48],
                    t: 2,
                    n: 4,
                    epoch: 1,
                    genesis_time_ms: T0,
                    validator_set_hash: [0; 32],
                },
                replicas: 4,
                liveness_bound_ms: 10_000,
                started_ms: T0,
            },
            events,
        }
    }

    fn applied(time_ms: u64, replica: u32, index: u64) -> Event {
        Event::Applied(Applied {
            time_ms,
            replica,
            index,
            state_hash: StateHash([0; 32]),
            entry: None,
        })
    }

    fn final_of(replica: u32, settled_ms: Option<u64>, ballots: usize) -> Event {
        Event::Final(Final {
            time_ms: T0 + 20_000,
            replica,
            nep: NepId(1),
            stage: Stage::Scheduled,
            emergency: false,
            settled_ms,
            deadline_ms: Some(T0 + 5_000),
            closing_index: Some(40),
            ballots: (0..ballots)
                .map(|k| neuroshard_chaos::history::BallotRecord {
                    account: AccountId([k as u8; 32]),
                    choice: VoteChoice::Yes,
                    power: 1,
                })
                .collect(),
            tally: None,
            certificates: vec![1],
        })
    }

    fn fault_and_heal(at: u64, healed: u64) -> Vec<Event> {
        vec![
            Event::Fault(Fault {
                time_ms: at,
                id: 1,
                fault: "partition".into(),
                targets: vec![0],
                detail: String::new(),
            }),
            Event::Heal(Heal {
                time_ms: healed,
                id: 1,
                detail: String::new(),
            }),
        ]
    }

    #[test]
    fn the_stall_is_the_longest_time_nobody_applied_anything_new_after_the_heal() {
        let mut events = fault_and_heal(T0 + 4_000, T0 + 8_000);
        // Before the heal: ignored (but it sets the index to beat).
        events.push(applied(T0 + 3_000, 1, 30));
        // After: progress at +100, then nothing new (a lagging replica
        // reporting old indices does not count) until +1 400.
        events.push(applied(T0 + 8_100, 1, 31));
        events.push(applied(T0 + 8_500, 0, 20));
        events.push(applied(T0 + 9_400, 1, 32));
        events.push(applied(T0 + 9_500, 1, 33));
        let h = history(events);
        assert_eq!(stall_after_heal_ms(&h), Some(1_300));
        assert_eq!(stall_after_heal_ms(&history(Vec::new())), None);
    }

    #[test]
    fn recovery_runs_from_the_later_of_heal_and_deadline_to_the_last_settlement() {
        let mut events = fault_and_heal(T0 + 4_000, T0 + 7_000);
        events.push(final_of(0, Some(T0 + 7_300), 3));
        events.push(final_of(1, Some(T0 + 8_200), 3));
        assert_eq!(recovery_ms(&history(events.clone())), Some(1_200));
        // A replica never seen settled: nothing to report.
        events.push(final_of(2, None, 3));
        assert_eq!(recovery_ms(&history(events)), None);
    }

    #[test]
    fn a_row_counts_acknowledged_and_late_votes_per_operation() {
        let vote = CommandSummary {
            kind: "vote".into(),
            account: AccountId([7; 32]),
            nonce: 2,
            nep: Some(NepId(1)),
            choice: Some(VoteChoice::Yes),
        };
        let invoke = |op, attempt| {
            Event::Invoke(Invoke {
                time_ms: T0,
                client: 3,
                op,
                attempt,
                command: vote.clone(),
            })
        };
        let result = |op, attempt, outcome, rule: Option<&str>| {
            Event::Result(OpResult {
                time_ms: T0,
                client: 3,
                op,
                attempt,
                outcome,
                log_index: Some(10),
                committed_ms: None,
                power: None,
                rule: rule.map(str::to_owned),
                message: None,
            })
        };
        let events = vec![
            invoke(2, 0),
            result(2, 0, OutcomeKind::Unknown, None),
            invoke(2, 1),
            result(2, 1, OutcomeKind::Ok, None),
            invoke(3, 0),
            result(3, 0, OutcomeKind::Error, Some(VOTING_CLOSED)),
            final_of(0, Some(T0 + 6_000), 4),
            final_of(1, Some(T0 + 6_000), 3),
        ];
        let h = history(events);
        let report = neuroshard_chaos::report::Report {
            sections: Vec::new(),
        };
        let r = row("x", &h, &report, &Verdict::default(), 9);
        assert_eq!(
            (
                r.votes_acknowledged,
                r.refused_late,
                r.unanswered,
                r.votes_counted
            ),
            (1, 1, 1, 4)
        );
        assert_eq!(r.faults, "none");
        assert!(!r.failed());
        let text = render(&[r]);
        assert!(text.starts_with("scenario"), "{text}");
        assert!(
            text.lines().nth(1).is_some_and(|l| l.starts_with("x ")),
            "{text}"
        );
    }
}
