//! What one attack did and saw: commands sent, answers by rule and kind,
//! findings (a broken expectation: the suite fails), notes.

use std::collections::BTreeMap;
use std::time::Duration;

use super::client::{Kind, Reply};

#[derive(Clone, Debug, Default)]
pub struct AttackReport {
    /// Requests the attacker sent.
    pub sent: u64,
    pub elapsed: Duration,
    /// Refusals per rule (admission and apply).
    pub refusals: BTreeMap<String, u64>,
    /// Of those, refused only when applied (they reached the log).
    pub after_log: BTreeMap<String, u64>,
    /// Unanswered requests per reason.
    pub unknown: BTreeMap<String, u64>,
    /// Attacker commands applied (a receipt).
    pub applied: u64,
    /// Groups of rules: from each group at least one must be seen.
    pub expected: Vec<Vec<&'static str>>,
    pub findings: Vec<String>,
    pub notes: Vec<String>,
    /// The state's charged bytes before the growth refused, and the
    /// budget, from the last `state_budget_exceeded` refusal.
    pub budget_refusal: Option<(u64, u64)>,
    /// The state's charged bytes and budget at the end of the phase, as
    /// `GetStatus` reports them.
    pub state_bytes: Option<(u64, u64)>,
}

impl AttackReport {
    pub fn new(expected: Vec<Vec<&'static str>>) -> Self {
        Self {
            expected,
            ..Self::default()
        }
    }

    /// Counts one answer.
    pub fn count(&mut self, reply: &Reply) {
        self.sent += 1;
        match reply {
            Reply::Applied { .. } => self.applied += 1,
            Reply::Refused(r) => {
                *self.refusals.entry(r.rule.clone()).or_default() += 1;
                if r.kind == Kind::Apply {
                    *self.after_log.entry(r.rule.clone()).or_default() += 1;
                }
                if r.rule == "state_budget_exceeded" {
                    if let Some(s) = budget_figures(&r.error_json) {
                        self.budget_refusal = Some(s);
                    }
                }
            }
            Reply::Unknown { rule, .. } => *self.unknown.entry(rule.clone()).or_default() += 1,
        }
    }

    /// Adds a finding, at most `MAX_FINDINGS` of them (then a count).
    pub fn finding(&mut self, text: String) {
        const MAX_FINDINGS: usize = 12;
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(text);
        } else if self.findings.len() == MAX_FINDINGS {
            self.findings
                .push("... more findings of the same attack left out".to_owned());
        }
    }

    /// Findings about the expected rules: each group must have been seen.
    pub fn check_expected(&mut self) {
        for group in self.expected.clone() {
            if !group
                .iter()
                .any(|r| self.refusals.get(*r).copied().unwrap_or(0) > 0)
            {
                let seen: Vec<String> = self
                    .refusals
                    .iter()
                    .map(|(r, n)| format!("{r}×{n}"))
                    .collect();
                self.finding(format!(
                    "expected refusal rule {} never seen (refusals seen: {})",
                    group.join(" or "),
                    if seen.is_empty() {
                        "none".to_owned()
                    } else {
                        seen.join(", ")
                    }
                ));
            }
        }
    }

    /// Requests per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.sent as f64 / secs
        } else {
            0.0
        }
    }
}

/// `(state bytes before the refused growth, budget)` from the JSON of a
/// `StateBudgetExceeded` error (`{"StateBudgetExceeded":{"needed":..,
/// "would_be":..,"budget":..}}`).
pub fn budget_figures(error_json: &str) -> Option<(u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(error_json).ok()?;
    let e = v.get("StateBudgetExceeded")?;
    let needed = e.get("needed")?.as_u64()?;
    let would_be = e.get("would_be")?.as_u64()?;
    let budget = e.get("budget")?.as_u64()?;
    Some((would_be.saturating_sub(needed), budget))
}
