//! Log lines an outside party (or a loop) can repeat at a high rate are
//! rate-limited here; metrics still count every event, only the line is
//! limited.
//!
//! A [`LogLimiter`] lets at most `burst` lines through per window of
//! `interval_ms` and counts the others; the next line it lets through
//! carries `suppressed = N`, the number of lines dropped since the previous
//! one. It is two atomics: the suppressed path is one compare-and-swap
//! attempt and one `fetch_add`, no lock, no allocation.
//!
//! A [`KeyedLogLimiter`] holds one limiter per key in a fixed array of
//! [`KEYED_SLOTS`] slots: keys are call-site rules (a `&'static str` rule
//! name) or committee validator ids, never anything a client chooses (a
//! remote address, an account), and keys past the array share its last
//! slot, so nobody can grow its memory.
//!
//! [`limited!`](crate::limited) declares one static limiter per call site:
//!
//! ```ignore
//! neuroshard_node::limited!(logging::REFUSALS, key = rule,
//!     warn!(rule, remote = %addr, "refused"));
//! ```
//!
//! Field names shared by every log line of the validator (docs/operations.md,
//! "Log fields") are listed in [`fields`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// The structured field names log lines use wherever they apply.
pub mod fields {
    /// A NEP id (number).
    pub const NEP: &str = "nep";
    /// A log index (position in the Raft log).
    pub const INDEX: &str = "index";
    /// A command's offset in its log entry.
    pub const OFFSET: &str = "offset";
    /// A Raft term.
    pub const TERM: &str = "term";
    /// The other validator (committee id) a line is about.
    pub const PEER: &str = "peer";
    /// The remote socket address or IP of a connection.
    pub const REMOTE: &str = "remote";
    /// A certificate's sequence number.
    pub const SEQUENCE: &str = "sequence";
    /// The rule a refusal names.
    pub const RULE: &str = "rule";
    /// Lines this call site dropped since its previous line.
    pub const SUPPRESSED: &str = "suppressed";
}

/// The NEP a command names, for the `nep` field.
pub fn command_nep(c: &neuroshard_governance::Command) -> Option<u64> {
    use neuroshard_governance::Command;
    match c {
        Command::AmendDraft { nep, .. }
        | Command::Submit { nep }
        | Command::Withdraw { nep }
        | Command::Vote { nep, .. }
        | Command::EmergencyApprove { nep } => Some(nep.0),
        Command::Transfer { .. }
        | Command::Stake { .. }
        | Command::Unstake { .. }
        | Command::CreateDraft { .. }
        | Command::SubmitEmergency { .. } => None,
    }
}

/// The NEP an applied command's effect names (a new draft's id), for the
/// `nep` field.
pub fn effect_nep(e: &neuroshard_governance::Effect) -> Option<u64> {
    use neuroshard_governance::Effect;
    match e {
        Effect::DraftCreated { nep, .. }
        | Effect::DraftAmended { nep, .. }
        | Effect::Submitted { nep, .. }
        | Effect::Withdrawn { nep, .. }
        | Effect::Voted { nep, .. }
        | Effect::EmergencySubmitted { nep, .. }
        | Effect::EmergencyApproved { nep, .. } => Some(nep.0),
        _ => None,
    }
}

/// How many lines a limiter lets through: `burst` per window of
/// `interval_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub interval_ms: u64,
    pub burst: u16,
}

/// Refusals an outside party can cause (connections, TLS handshakes, API
/// requests, peer messages, shares): one line per second per call site and
/// rule.
pub const REFUSALS: Limit = Limit {
    interval_ms: 1_000,
    burst: 1,
};

/// What a loop repeats while a peer is unreachable or a state persists
/// (send failures, retries, catch-up attempts): one line per 10 s per call
/// site and peer.
pub const RETRIES: Limit = Limit {
    interval_ms: 10_000,
    burst: 1,
};

/// Slots of a [`KeyedLogLimiter`]: more distinct keys share the last one.
pub const KEYED_SLOTS: usize = 32;

const COUNT_BITS: u32 = 16;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Milliseconds since the first call in this process (monotonic).
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX >> COUNT_BITS)
}

/// At most `burst` lines per window of `interval_ms`; counts the rest.
#[derive(Debug)]
pub struct LogLimiter {
    limit: Limit,
    /// The window's start (ms, upper 48 bits) and the lines let through in
    /// it (lower 16 bits). A window starts at the first line after the
    /// previous one ended.
    window: AtomicU64,
    /// Lines dropped since the last one let through.
    suppressed: AtomicU64,
}

impl LogLimiter {
    pub const fn new(limit: Limit) -> Self {
        Self {
            limit,
            // No window yet: the first line always passes.
            window: AtomicU64::new(u64::MAX),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines suppressed since the last one)` when a line may be
    /// written now; `None` (counted as suppressed) otherwise.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(now_ms())
    }

    /// [`LogLimiter::admit`] at `now_ms` (milliseconds on any monotonic
    /// clock; tests pass their own).
    pub fn admit_at(&self, now_ms: u64) -> Option<u64> {
        let now = now_ms & (u64::MAX >> COUNT_BITS);
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (start, count) = (current >> COUNT_BITS, current & COUNT_MASK);
            let next = if current == u64::MAX || now.saturating_sub(start) >= self.limit.interval_ms
            {
                (now << COUNT_BITS) | 1
            } else if count < u64::from(self.limit.burst) {
                current + 1
            } else {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(self.suppressed.swap(0, Ordering::Relaxed)),
                Err(seen) => current = seen,
            }
        }
    }

    /// Lines dropped since the last one let through.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

/// A key of a [`KeyedLogLimiter`]: a rule name or a validator id. Not
/// implemented for addresses or client data on purpose.
pub trait LogKey {
    fn log_key(&self) -> u64;
}

impl LogKey for &'static str {
    fn log_key(&self) -> u64 {
        // FNV-1a.
        self.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }
}

impl LogKey for u64 {
    fn log_key(&self) -> u64 {
        // splitmix64's finaliser: a bijection, so ids never collide.
        let mut z = self.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl<A: LogKey, B: LogKey> LogKey for (A, B) {
    fn log_key(&self) -> u64 {
        self.0.log_key().rotate_left(17) ^ self.1.log_key()
    }
}

/// One [`LogLimiter`] per key, in [`KEYED_SLOTS`] fixed slots.
#[derive(Debug)]
pub struct KeyedLogLimiter {
    /// 0: free; otherwise the key's hash (a hash of 0 is stored as 1).
    keys: [AtomicU64; KEYED_SLOTS],
    limiters: [LogLimiter; KEYED_SLOTS],
}

impl KeyedLogLimiter {
    pub const fn new(limit: Limit) -> Self {
        Self {
            keys: [const { AtomicU64::new(0) }; KEYED_SLOTS],
            limiters: [const { LogLimiter::new(REFUSALS) }; KEYED_SLOTS],
        }
        .with_limit(limit)
    }

    const fn with_limit(mut self, limit: Limit) -> Self {
        let mut i = 0;
        while i < KEYED_SLOTS {
            self.limiters[i].limit = limit;
            i += 1;
        }
        self
    }

    /// [`LogLimiter::admit`] of `key`'s limiter.
    pub fn admit(&self, key: impl LogKey) -> Option<u64> {
        self.limiter(key.log_key()).admit()
    }

    /// [`LogLimiter::admit_at`] of `key`'s limiter.
    pub fn admit_at(&self, key: impl LogKey, now_ms: u64) -> Option<u64> {
        self.limiter(key.log_key()).admit_at(now_ms)
    }

    fn limiter(&self, key: u64) -> &LogLimiter {
        let key = key.max(1);
        for (slot, limiter) in self.keys.iter().zip(&self.limiters) {
            match slot.load(Ordering::Acquire) {
                k if k == key => return limiter,
                0 => match slot.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return limiter,
                    Err(k) if k == key => return limiter,
                    Err(_) => continue,
                },
                _ => continue,
            }
        }
        &self.limiters[KEYED_SLOTS - 1]
    }
}

/// Writes a `tracing` event through a static limiter of its own call site
/// (optionally one per `key`), adding the field `suppressed`:
///
/// ```ignore
/// limited!(REFUSALS, warn!(peer, "refused"));
/// limited!(REFUSALS, key = rule, info!(rule, "refused"));
/// ```
///
/// The limit is a [`Limit`] (e.g. [`REFUSALS`], [`RETRIES`]); the caller
/// depends on `tracing`.
#[macro_export]
macro_rules! limited {
    ($limit:expr, key = $key:expr, $level:ident ! ( $($arg:tt)+ )) => {{
        static LIMITER: $crate::logging::KeyedLogLimiter =
            $crate::logging::KeyedLogLimiter::new($limit);
        if let Some(suppressed) = LIMITER.admit($key) {
            ::tracing::$level!(suppressed, $($arg)+);
        }
    }};
    ($limit:expr, $level:ident ! ( $($arg:tt)+ )) => {{
        static LIMITER: $crate::logging::LogLimiter = $crate::logging::LogLimiter::new($limit);
        if let Some(suppressed) = LIMITER.admit() {
            ::tracing::$level!(suppressed, $($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE_PER_SECOND: Limit = Limit {
        interval_ms: 1_000,
        burst: 3,
    };

    #[test]
    fn under_the_limit_every_line_passes() {
        let l = LogLimiter::new(THREE_PER_SECOND);
        assert_eq!(l.admit_at(10_000), Some(0));
        assert_eq!(l.admit_at(10_100), Some(0));
        // A new window: three more.
        assert_eq!(l.admit_at(11_000), Some(0));
        assert_eq!(l.admit_at(11_999), Some(0));
        assert_eq!(l.suppressed(), 0);
    }

    #[test]
    fn at_the_limit_every_line_passes_and_one_more_is_suppressed() {
        let l = LogLimiter::new(THREE_PER_SECOND);
        for t in [0, 1, 2] {
            assert_eq!(l.admit_at(t), Some(0), "line at {t} ms");
        }
        assert_eq!(l.admit_at(999), None);
        assert_eq!(l.suppressed(), 1);
        assert_eq!(l.admit_at(1_000), Some(1), "the next window says it");
        assert_eq!(l.suppressed(), 0);
    }

    #[test]
    fn over_the_limit_the_next_line_counts_what_was_dropped() {
        let l = LogLimiter::new(REFUSALS);
        assert_eq!(l.admit_at(5), Some(0));
        for t in 6..1_005 {
            assert_eq!(l.admit_at(t), None, "at {t} ms");
        }
        assert_eq!(l.admit_at(1_005), Some(999));
        assert_eq!(l.admit_at(1_006), None);
        // A quiet spell: the next line passes at once and says 1.
        assert_eq!(l.admit_at(60_000), Some(1));
    }

    #[test]
    fn a_flood_gives_one_line_per_window_and_loses_no_count() {
        let l = LogLimiter::new(REFUSALS);
        let (mut lines, mut counted) = (0u64, 0u64);
        // 100 000 events over 10 s.
        for i in 0..100_000u64 {
            if let Some(s) = l.admit_at(i / 10) {
                lines += 1;
                counted += s + 1;
            }
        }
        assert_eq!(lines, 10);
        assert_eq!(counted + l.suppressed(), 100_000);
    }

    #[test]
    fn threads_lose_no_count() {
        let l = std::sync::Arc::new(LogLimiter::new(REFUSALS));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    let mut counted = 0u64;
                    for _ in 0..10_000 {
                        if let Some(s) = l.admit_at(7) {
                            counted += s + 1;
                        }
                    }
                    counted
                })
            })
            .collect();
        let counted: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(counted + l.suppressed(), 40_000);
    }

    #[test]
    fn keys_are_limited_apart_and_bounded() {
        let k = KeyedLogLimiter::new(REFUSALS);
        assert_eq!(k.admit_at("bad_signature", 0), Some(0));
        assert_eq!(k.admit_at("bad_signature", 1), None);
        assert_eq!(k.admit_at("nonce_replay", 1), Some(0), "another rule");
        assert_eq!(k.admit_at(3u64, 1), Some(0), "a validator id");
        assert_eq!(k.admit_at(4u64, 1), Some(0));
        assert_eq!(k.admit_at(3u64, 2), None);
        // Many more keys than slots: they share the last slot, memory stays
        // fixed.
        let overflow = (100u64..1_000)
            .filter(|i| k.admit_at(*i, 2).is_some())
            .count();
        assert!(overflow <= KEYED_SLOTS, "{overflow}");
        assert_eq!(k.admit_at("bad_signature", 1_000), Some(1));
        assert_eq!(std::mem::size_of::<KeyedLogLimiter>(), KEYED_SLOTS * 8 * 5);
    }

    #[test]
    fn the_macro_limits_its_call_site() {
        for _ in 0..10 {
            crate::limited!(REFUSALS, warn!(rule = "test", "limited line"));
            crate::limited!(REFUSALS, key = "rule", info!(rule = "rule", "keyed line"));
        }
    }
}
