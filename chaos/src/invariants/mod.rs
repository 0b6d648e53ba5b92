//! The invariants a chaos run must keep, one file each. Every checker is a
//! pure function over a parsed [`History`](crate::history::History) and
//! returns typed violations plus how many things it looked at, so a pass
//! over an empty history is visible as such.

pub mod acknowledged_votes_counted;
pub mod certificate_chain;
pub mod certified_tally;
pub mod late_votes_refused;
pub mod liveness;
pub mod replicas_agree;
pub mod retries_idempotent;

/// What one checker found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked<V> {
    /// How many observations the checker compared (indices, votes, ballots,
    /// certificates, ...): zero means the history gave it nothing to judge.
    pub checked: usize,
    pub violations: Vec<V>,
}

impl<V> Default for Checked<V> {
    fn default() -> Self {
        Self {
            checked: 0,
            violations: Vec::new(),
        }
    }
}
