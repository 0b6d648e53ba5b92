//! Time in the simulation. The harness clock is a fixed epoch plus
//! turmoil's simulated elapsed time; each validator's clock is the harness
//! clock plus a skew the fault schedule can set, so a skewed leader
//! proposes skewed ticks and a skewed signer refuses to sign early.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use neuroshard_node::clock::Clock;

/// Harness time (Unix ms) inside a simulated host: `epoch_ms` plus the
/// simulation's elapsed time. Outside a host (between steps) the driver
/// passes `Sim::elapsed()` to [`at`] instead.
pub fn now_ms(epoch_ms: u64) -> u64 {
    // Every caller runs inside a simulated host; outside one turmoil has no
    // time to give and the epoch is the only honest answer.
    at(epoch_ms, turmoil::sim_elapsed().unwrap_or_default())
}

/// Harness time after `elapsed` of simulation.
pub fn at(epoch_ms: u64, elapsed: Duration) -> u64 {
    epoch_ms.saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// One skew per validator, shared between its clock and the fault schedule.
#[derive(Clone, Debug)]
pub struct Skews(Arc<Vec<AtomicI64>>);

impl Skews {
    pub fn new(validators: usize) -> Self {
        Self(Arc::new(
            (0..validators).map(|_| AtomicI64::new(0)).collect(),
        ))
    }

    pub fn set(&self, validator: u32, skew_ms: i64) {
        if let Some(s) = self.0.get(validator as usize) {
            s.store(skew_ms, Ordering::Relaxed);
        }
    }

    pub fn get(&self, validator: u32) -> i64 {
        self.0
            .get(validator as usize)
            .map_or(0, |s| s.load(Ordering::Relaxed))
    }
}

/// A validator's clock: harness time shifted by its skew.
pub struct SimClock {
    epoch_ms: u64,
    validator: u32,
    skews: Skews,
}

impl SimClock {
    pub fn new(epoch_ms: u64, validator: u32, skews: Skews) -> Self {
        Self {
            epoch_ms,
            validator,
            skews,
        }
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        now_ms(self.epoch_ms).saturating_add_signed(self.skews.get(self.validator))
    }
}
