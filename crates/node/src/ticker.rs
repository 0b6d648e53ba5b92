//! The leader's clock in the log: a `Tick` entry every `tick_interval_ms`.
//! Governance time moves only when a tick is committed, so every replica
//! sees the same time at the same log index.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use neuroshard_governance::Entry;

use crate::clock::Clock;
use crate::store::SharedMachine;
use crate::types::Raft;

/// Proposes a tick every `interval` while this validator leads. While
/// `withhold` is set (a test seam: `Environment::withhold_ticks`) it
/// proposes none and keeps leading, as a faulty leader would. A diverged
/// replica proposes none either (it stands down, `NodeCore::stand_down`).
pub async fn run_ticker(
    raft: Raft,
    machine: SharedMachine,
    clock: Arc<dyn Clock>,
    interval: Duration,
    withhold: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = timer.tick() => {}
            _ = shutdown.changed() => return,
        }
        let is_leader = {
            let m = raft.metrics();
            let m = m.borrow();
            m.current_leader == Some(m.id) && m.state.is_leader()
        };
        if !is_leader
            || withhold.load(Ordering::Relaxed)
            || machine.read().checkpoints.diverged.is_some()
        {
            continue;
        }
        let now_ms = clock.now_ms();
        // One tick at a time: a slow commit delays the next tick rather than
        // piling ticks up behind it.
        match tokio::time::timeout(interval * 8, raft.client_write(Entry::Tick { now_ms })).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => crate::limited!(
                crate::logging::RETRIES,
                debug!(now_ms, error = %e, "tick not committed")
            ),
            Err(_) => crate::limited!(
                crate::logging::RETRIES,
                warn!(now_ms, "tick not committed within {:?}", interval * 8)
            ),
        }
    }
}
