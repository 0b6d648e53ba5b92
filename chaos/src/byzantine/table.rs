//! One row per scenario: the verdict and who reached it, the cost to the
//! honest committee, what the honest clients and the light node saw, and
//! the invariant checkers' violations.

use super::attacks::Outcome;

pub struct Row {
    pub name: String,
    pub outcome: Outcome,
    /// Violations the invariant checkers reported over the history.
    pub violations: usize,
    pub honest_acked: usize,
    pub honest_applied: usize,
    /// Longest time without an honest command acknowledged (ms).
    pub stall_ms: u64,
    /// Certificates the light node accepted during the scenario, and those
    /// no honest validator derived.
    pub light_accepted: usize,
    pub light_foreign: usize,
    pub seconds: f64,
    pub findings: Vec<String>,
    pub notes: Vec<String>,
}

impl Row {
    /// Refused or detected, nothing found wrong, zero violations, every
    /// acknowledged honest command applied, no foreign certificate accepted.
    pub fn passed(&self) -> bool {
        !self.outcome.verdict.is_empty()
            && self.findings.is_empty()
            && self.violations == 0
            && self.light_foreign == 0
            && self.honest_acked == self.honest_applied
    }
}

fn ms(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1} s", v as f64 / 1e3))
}

pub fn render(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "verdict",
        "faulty",
        "refused/detected by",
        "stall",
        "election",
        "commits again",
        "detection",
        "honest acked",
        "violations",
        "light certs (foreign)",
        "time",
        "result",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
    for r in rows {
        let o = &r.outcome;
        cells.push(vec![
            r.name.clone(),
            if o.verdict.is_empty() {
                "NONE".into()
            } else {
                o.verdict.clone()
            },
            o.faulty.map_or("-".into(), |f| format!("v{f}")),
            if o.by.is_empty() {
                "-".into()
            } else {
                o.by.iter()
                    .map(|v| format!("v{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            },
            ms(Some(r.stall_ms)),
            if o.election { "yes" } else { "no" }.into(),
            ms(o.recovered_ms),
            o.detection.clone().unwrap_or_else(|| "-".into()),
            format!("{}/{} applied", r.honest_acked, r.honest_applied),
            r.violations.to_string(),
            format!("{} ({})", r.light_accepted, r.light_foreign),
            format!("{:.0} s", r.seconds),
            if r.passed() { "pass" } else { "FAIL" }.into(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (k, row) in cells.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(&format!("| {} |\n", line.join(" | ")));
        if k == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        }
    }
    for r in rows {
        for f in &r.findings {
            out.push_str(&format!("{}: FINDING: {f}\n", r.name));
        }
        for n in &r.notes {
            out.push_str(&format!("{}: {n}\n", r.name));
        }
    }
    out
}
