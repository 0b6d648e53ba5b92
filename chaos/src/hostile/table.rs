//! The suite's table: one row per phase (the no-attack baseline, then each
//! attack), the pass criteria applied to it, and its findings.

use std::collections::BTreeMap;

use super::honest::PhaseStats;
use super::report::AttackReport;

pub struct Row {
    pub name: String,
    pub report: AttackReport,
    pub honest: PhaseStats,
    /// The baseline's honest p99 (ms), for attack rows.
    pub baseline_p99_ms: Option<f64>,
    pub p99_factor: f64,
    /// Validators running at the end of the phase, of how many.
    pub running: usize,
    pub validators: usize,
    /// Peak RSS per validator during the phase (KiB).
    pub peak_kib: Vec<Option<u64>>,
    pub rss_bound_mib: u64,
    /// Charged state bytes and the budget, when known.
    pub state: Option<(u64, u64)>,
    pub is_baseline: bool,
    /// Findings of the criteria (beyond the attack's own).
    pub failures: Vec<String>,
    /// Whether the honest p99 bound is among `failures`.
    pub p99_failed: bool,
}

/// A row over its p99 bound is a timing failure the suite may run again
/// to confirm ([`Row::failed_on_p99_alone`]) only while its p99 stays
/// within this many times the bound (2: at most 6× the baseline with the
/// default factor 3); beyond, the row fails outright.
pub const P99_RETRY_CEILING: f64 = 2.0;

impl Row {
    /// Applies the pass criteria; returns whether the row passed.
    pub fn judge(&mut self) -> bool {
        let mut f = Vec::new();
        self.p99_failed = false;
        if self.running < self.validators {
            f.push(format!(
                "{} of {} validators running at the end of the phase",
                self.running, self.validators
            ));
        }
        if self.honest.applied < self.honest.acked {
            f.push(format!(
                "{} acknowledged honest commands not found applied",
                self.honest.acked - self.honest.applied
            ));
        }
        if !self.honest.refused.is_empty() {
            f.push(format!(
                "honest commands refused: {}",
                self.honest
                    .refused
                    .iter()
                    .map(|(r, n)| format!("{r}×{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if self.honest.unresolved > 0 {
            f.push(format!(
                "{} honest commands unanswered for {} s: {:?}",
                self.honest.unresolved,
                super::honest::MAX_WAIT.as_secs(),
                self.honest.unresolved_last
            ));
        }
        if self.honest.acked == 0 {
            f.push("no honest command was acknowledged during the phase".to_owned());
        }
        if !self.is_baseline {
            match (self.honest.p99_ms, self.baseline_p99_ms) {
                (Some(p), Some(b)) if p > self.p99_factor * b => {
                    self.p99_failed = true;
                    f.push(format!(
                        "honest p99 {p:.1} ms is more than {}× the baseline's {b:.1} ms",
                        self.p99_factor
                    ))
                }
                (None, _) | (_, None) => f.push("no honest p99 to compare".to_owned()),
                _ => {}
            }
        }
        let bound_kib = self.rss_bound_mib * 1024;
        for (i, p) in self.peak_kib.iter().enumerate() {
            if let Some(p) = p {
                if *p > bound_kib {
                    f.push(format!(
                        "validator {i}: peak RSS {:.1} MiB above the bound {} MiB",
                        *p as f64 / 1024.0,
                        self.rss_bound_mib
                    ));
                }
            }
        }
        self.failures = f;
        self.failures.is_empty() && self.report.findings.is_empty()
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.report.findings.is_empty()
    }

    /// Whether the row failed on its honest p99 bound alone, and by at
    /// most [`P99_RETRY_CEILING`] times the suite's factor: every honest
    /// command answered and applied, nothing found by the attack, memory
    /// within its bound, only slower than the suite's factor of the
    /// baseline. A row slower than the ceiling fails outright.
    pub fn failed_on_p99_alone(&self) -> bool {
        let within_ceiling = match (self.honest.p99_ms, self.baseline_p99_ms) {
            (Some(p), Some(b)) => p <= P99_RETRY_CEILING * self.p99_factor * b,
            _ => false,
        };
        self.p99_failed
            && within_ceiling
            && self.failures.len() == 1
            && self.report.findings.is_empty()
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn rules(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "-".to_owned();
    }
    m.iter()
        .map(|(r, n)| format!("{r}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn render(rows: &[Row]) -> String {
    let header = [
        "attack",
        "sent",
        "req/s",
        "honest acked/applied",
        "p99 ms (×base)",
        "up",
        "peak RSS MiB v0/v1/v2/v3 (bound)",
        "state KiB (budget)",
        "refusals by rule (after the log)",
        "verdict",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        let ratio = match (r.honest.p99_ms, r.baseline_p99_ms) {
            (Some(p), Some(b)) if !r.is_baseline && b > 0.0 => format!(" ({:.1}×)", p / b),
            _ => String::new(),
        };
        let rss = r
            .peak_kib
            .iter()
            .map(|p| p.map_or_else(|| "-".to_owned(), |k| (k / 1024).to_string()))
            .collect::<Vec<_>>()
            .join("/");
        let state = r.state.map_or_else(
            || "-".to_owned(),
            |(s, b)| format!("{} ({})", s / 1024, b / 1024),
        );
        let mut refusals = rules(&r.report.refusals);
        if !r.report.after_log.is_empty() {
            refusals.push_str(&format!(" (after the log: {})", rules(&r.report.after_log)));
        }
        lines.push(vec![
            r.name.clone(),
            if r.is_baseline {
                "-".to_owned()
            } else {
                r.report.sent.to_string()
            },
            if r.is_baseline {
                "-".to_owned()
            } else {
                format!("{:.0}", r.report.rate())
            },
            format!("{}/{}", r.honest.acked, r.honest.applied),
            format!("{}{ratio}", ms(r.honest.p99_ms)),
            format!("{}/{}", r.running, r.validators),
            format!("{rss} ({})", r.rss_bound_mib),
            state,
            refusals,
            if r.passed() { "ok" } else { "FAIL" }.to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        let mut line = String::new();
        for (c, cell) in l.iter().enumerate() {
            // The refusals column last but one can be long: no padding
            // needed after the verdict.
            let w = widths[c];
            line.push_str(cell);
            if c + 1 < l.len() {
                line.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for r in rows {
        for n in &r.report.notes {
            out.push_str(&format!("{}: {n}\n", r.name));
        }
    }
    for r in rows {
        for f in r.failures.iter().chain(&r.report.findings) {
            out.push_str(&format!("FAIL {}: {f}\n", r.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(is_baseline: bool) -> Row {
        Row {
            name: "x".into(),
            report: AttackReport::default(),
            honest: PhaseStats {
                acked: 10,
                applied: 10,
                p99_ms: Some(20.0),
                ..PhaseStats::default()
            },
            baseline_p99_ms: Some(10.0),
            p99_factor: 3.0,
            running: 4,
            validators: 4,
            peak_kib: vec![Some(100 * 1024); 4],
            rss_bound_mib: 172,
            state: None,
            is_baseline,
            failures: Vec::new(),
            p99_failed: false,
        }
    }

    #[test]
    fn each_criterion_fails_its_row() {
        assert!(row(false).judge());
        let mut r = row(false);
        r.running = 3;
        assert!(!r.judge());
        let mut r = row(false);
        r.honest.applied = 9;
        assert!(!r.judge());
        let mut r = row(false);
        r.honest.p99_ms = Some(30.1);
        assert!(!r.judge());
        // The baseline is not compared with itself.
        let mut r = row(true);
        r.honest.p99_ms = Some(30.1);
        assert!(r.judge());
        let mut r = row(false);
        r.peak_kib[2] = Some(172 * 1024 + 1);
        assert!(!r.judge());
        let mut r = row(false);
        r.honest.refused.insert("state_budget_exceeded".into(), 1);
        assert!(!r.judge());
        let mut r = row(false);
        r.report.expected = vec![vec!["nonce_replay"]];
        r.report.check_expected();
        assert!(!r.judge());
        assert!(render(&[r]).contains("FAIL x: expected refusal rule nonce_replay never seen"));
    }

    #[test]
    fn only_a_row_slow_and_otherwise_sound_failed_on_its_p99_alone() {
        // At the bound (3 × 10 ms) the row passes; just over, it fails on
        // its p99 alone.
        let mut r = row(false);
        r.honest.p99_ms = Some(30.0);
        assert!(r.judge());
        assert!(!r.failed_on_p99_alone());
        r.honest.p99_ms = Some(30.1);
        assert!(!r.judge());
        assert!(r.failed_on_p99_alone());
        // Over twice the bound (60 ms against 3 × 10 ms): fails outright.
        r.honest.p99_ms = Some(60.0);
        assert!(!r.judge());
        assert!(r.failed_on_p99_alone());
        r.honest.p99_ms = Some(60.1);
        assert!(!r.judge());
        assert!(!r.failed_on_p99_alone());
        r.honest.p99_ms = Some(30.1);
        // Slow and anything else: not a p99-only failure.
        r.honest.applied = 9;
        assert!(!r.judge());
        assert!(!r.failed_on_p99_alone());
        let mut r = row(false);
        r.honest.p99_ms = Some(30.1);
        r.peak_kib[1] = Some(172 * 1024 + 1);
        assert!(!r.judge());
        assert!(!r.failed_on_p99_alone());
        let mut r = row(false);
        r.honest.p99_ms = Some(30.1);
        r.report.finding("an attack's finding".to_owned());
        assert!(!r.judge());
        assert!(!r.failed_on_p99_alone());
        // A judged-again row forgets an earlier p99 failure.
        let mut r = row(false);
        r.honest.p99_ms = Some(30.1);
        assert!(!r.judge());
        r.honest.p99_ms = Some(20.0);
        assert!(r.judge());
        assert!(!r.failed_on_p99_alone());
    }
}
