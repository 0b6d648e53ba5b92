//! Runs every invariant over a history and prints the verdict as a table.

use std::fmt::Write as _;

use crate::history::History;
use crate::invariants::{
    acknowledged_votes_counted, certificate_chain, certified_tally, late_votes_refused, liveness,
    replicas_agree, retries_idempotent, Checked,
};

/// Violations printed per invariant by [`Report::table`]; the count is
/// always exact.
pub const MAX_PRINTED_VIOLATIONS: usize = 20;

/// Any invariant's violation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error(transparent)]
    ReplicasAgree(#[from] replicas_agree::Disagreement),
    #[error(transparent)]
    AcknowledgedVotesCounted(#[from] acknowledged_votes_counted::LostVote),
    #[error(transparent)]
    LateVotesRefused(#[from] late_votes_refused::LateVote),
    #[error(transparent)]
    CertifiedTally(#[from] certified_tally::TallyMismatch),
    #[error(transparent)]
    CertificateChain(#[from] certificate_chain::ChainFault),
    #[error(transparent)]
    Liveness(#[from] liveness::Stall),
    #[error(transparent)]
    RetriesIdempotent(#[from] retries_idempotent::RetryFault),
}

/// One invariant's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: &'static str,
    pub claim: &'static str,
    pub checked: usize,
    pub violations: Vec<Violation>,
}

/// The verdict of every invariant, in a fixed order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub sections: Vec<Section>,
}

fn section<V: Into<Violation>>(name: &'static str, claim: &'static str, c: Checked<V>) -> Section {
    Section {
        name,
        claim,
        checked: c.checked,
        violations: c.violations.into_iter().map(Into::into).collect(),
    }
}

/// Checks every invariant over `history`.
pub fn check(history: &History) -> Report {
    Report {
        sections: vec![
            section(
                replicas_agree::NAME,
                replicas_agree::CLAIM,
                replicas_agree::check(history),
            ),
            section(
                acknowledged_votes_counted::NAME,
                acknowledged_votes_counted::CLAIM,
                acknowledged_votes_counted::check(history),
            ),
            section(
                late_votes_refused::NAME,
                late_votes_refused::CLAIM,
                late_votes_refused::check(history),
            ),
            section(
                certified_tally::NAME,
                certified_tally::CLAIM,
                certified_tally::check(history),
            ),
            section(
                certificate_chain::NAME,
                certificate_chain::CLAIM,
                certificate_chain::check(history),
            ),
            section(liveness::NAME, liveness::CLAIM, liveness::check(history)),
            section(
                retries_idempotent::NAME,
                retries_idempotent::CLAIM,
                retries_idempotent::check(history),
            ),
        ],
    }
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.sections.iter().all(|s| s.violations.is_empty())
    }

    pub fn violation_count(&self) -> usize {
        self.sections.iter().map(|s| s.violations.len()).sum()
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.sections.iter().flat_map(|s| s.violations.iter())
    }

    /// A per-invariant table, then the violations of each failing one.
    pub fn table(&self) -> String {
        let width = self
            .sections
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(0);
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{:<width$}  {:>8}  {:>10}  verdict",
            "invariant", "checked", "violations"
        );
        for s in &self.sections {
            let verdict = if !s.violations.is_empty() {
                "FAIL"
            } else if s.checked == 0 {
                "pass (nothing to check)"
            } else {
                "pass"
            };
            let _ = writeln!(
                t,
                "{:<width$}  {:>8}  {:>10}  {verdict}",
                s.name,
                s.checked,
                s.violations.len()
            );
        }
        for s in self.sections.iter().filter(|s| !s.violations.is_empty()) {
            let _ = writeln!(t, "\n{} — {}:", s.name, s.claim);
            for v in s.violations.iter().take(MAX_PRINTED_VIOLATIONS) {
                let _ = writeln!(t, "  - {v}");
            }
            if s.violations.len() > MAX_PRINTED_VIOLATIONS {
                let _ = writeln!(
                    t,
                    "  ... and {} more",
                    s.violations.len() - MAX_PRINTED_VIOLATIONS
                );
            }
        }
        t
    }
}
