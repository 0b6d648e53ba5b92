//! How long issuance took, as this validator observed it: from the moment
//! its issuer first saw a certificate pending (right after applying the
//! entry that decided it, e.g. the closing tick of a vote) to the moment it
//! saw the certificate issued (after applying the `CertificateIssued`
//! entry). Local observations, not replicated state; the API reports them
//! as `observed_latency_ms`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
// The runtime's clock, not the OS's: a simulation drives time.
use tokio::time::Instant;

/// Certificates whose timings are kept (the oldest are forgotten first).
pub const MAX_TIMINGS: usize = 1024;

#[derive(Clone, Copy, Debug)]
struct Timing {
    decided: Instant,
    issued: Option<Instant>,
}

/// Shared between the issuer (which records) and the API (which reads).
#[derive(Clone, Default)]
pub struct IssuanceLog {
    inner: Arc<Mutex<BTreeMap<u64, Timing>>>,
}

impl IssuanceLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Timing>> {
        // A panic while holding this lock left a map of plain values.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The issuer saw `sequence` pending (only the first sighting counts).
    pub fn decided(&self, sequence: u64, at: Instant) {
        let mut map = self.lock();
        map.entry(sequence).or_insert(Timing {
            decided: at,
            issued: None,
        });
        while map.len() > MAX_TIMINGS {
            map.pop_first();
        }
    }

    /// The issuer saw `sequence` issued; ignored unless it saw it pending.
    pub fn issued(&self, sequence: u64, at: Instant) {
        if let Some(t) = self.lock().get_mut(&sequence) {
            if t.issued.is_none() {
                crate::metrics::metrics()
                    .issuance_seconds
                    .observe(at.duration_since(t.decided).as_secs_f64());
            }
            t.issued.get_or_insert(at);
        }
    }

    /// Certificates seen decided and not yet issued, and the age of the
    /// oldest of them at `now`.
    pub fn unissued(&self, now: Instant) -> (u64, std::time::Duration) {
        let map = self.lock();
        let mut count = 0;
        let mut oldest = std::time::Duration::ZERO;
        for t in map.values().filter(|t| t.issued.is_none()) {
            count += 1;
            oldest = oldest.max(now.saturating_duration_since(t.decided));
        }
        (count, oldest)
    }

    /// Milliseconds from decided to issued, when both were seen.
    pub fn latency_ms(&self, sequence: u64) -> Option<u64> {
        let map = self.lock();
        let t = map.get(&sequence)?;
        t.issued
            .map(|i| i.duration_since(t.decided).as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn latency_needs_both_sightings_and_the_first_ones_count() {
        let log = IssuanceLog::default();
        let t0 = Instant::now();
        log.issued(1, t0);
        assert_eq!(log.latency_ms(1), None, "issued without being seen pending");
        log.decided(2, t0);
        log.decided(2, t0 + Duration::from_millis(5));
        assert_eq!(log.latency_ms(2), None);
        log.issued(2, t0 + Duration::from_millis(40));
        log.issued(2, t0 + Duration::from_millis(90));
        assert_eq!(log.latency_ms(2), Some(40));
        for s in 0..(MAX_TIMINGS as u64 + 10) {
            log.decided(100 + s, t0);
        }
        assert_eq!(log.lock().len(), MAX_TIMINGS);
        assert_eq!(log.latency_ms(2), None, "the oldest are forgotten");
    }
}
