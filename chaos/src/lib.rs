//! Chaos testing for the NeuroShard governance committee (issue 6).
//!
//! A chaos run — the in-process [`model`], the turmoil simulation, or real
//! processes with injected faults — records a [`History`]: client
//! invocations and answers, each replica's state hash per applied index,
//! issued certificates with every replica's own payload, each replica's
//! final view of every NEP, and fault/heal markers. [`check`] runs every
//! invariant in [`invariants`] over it and returns a [`Report`].
//!
//! Architecture invariant: the checkers read only the history. They never
//! ask a replica anything, so a history recorded anywhere can be judged
//! later, and a checker cannot be fooled by the code it checks.

pub mod history;
pub mod invariants;
pub mod lookup;
pub mod model;
pub mod observe;
pub mod report;
pub mod rule;
pub mod sim;
#[cfg(test)]
mod testing;

pub use history::{Event, History, HistoryError, HistoryReader, Recorder};
pub use report::{check, Report, Section, Violation};
pub use rule::rule_name;
