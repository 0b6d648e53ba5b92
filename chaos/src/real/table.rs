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
    let _ = writeln!(
        t,
        "{:<width$}  {:<fwidth$}  {:>6}  {:>7}  {:>6}  {:>10}  {:>10}  {:>9}  {:>5}",
        "scenario",
        "faults",
        "acked",
        "counted",
        "late",
        "unanswered",
        "violations",
        "recover",
        "secs"
    );
    for r in rows {
        let recover = r.recover_ms.map_or_else(
            || "-".to_owned(),
            |ms| format!("{:.1} s", ms as f64 / 1000.0),
        );
        let violations = match &r.error {
            Some(_) => "ERROR".to_owned(),
            None => r.violations.to_string(),
        };
        let _ = writeln!(
            t,
            "{:<width$}  {:<fwidth$}  {:>6}  {:>7}  {:>6}  {:>10}  {:>10}  {:>9}  {:>5}",
            r.scenario,
            r.faults,
            r.votes_acknowledged,
            r.votes_counted,
            r.refused_late,
            r.unanswered,
            violations,
            recover,
            r.seconds
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
