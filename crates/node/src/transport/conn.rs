//! Connection limits of a listener: how many connections (handshaking or
//! established) it holds in total and per source address, how many TLS
//! handshakes run at once, the capacity the peer listener keeps for the
//! committee's own validators, idle connections, and refusal counters with a
//! rate-limited log.
//!
//! The accept loop never waits for capacity: a connection over a limit is
//! accepted and closed at once, so a flood of silent connections cannot
//! stall the listener for anyone else.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::config::ListenerSettings;

/// Why a connection (or a stream) was refused or ended early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// `max_connections` (and, for committee sources, the reserve) in use.
    TooManyConnections,
    /// `max_connections_per_source` in use by this source.
    TooManyFromSource,
    /// `max_handshakes` handshakes in progress.
    TooManyHandshakes,
    /// `max_handshakes_per_source` handshakes in progress from this source.
    TooManyHandshakesFromSource,
    /// The TLS handshake failed (bad certificate, not TLS, reset …).
    HandshakeFailed,
    /// The TLS handshake took longer than `handshake_timeout_ms`.
    HandshakeTimeout,
    /// Peer listener: the client certificate names no validator.
    NotAValidator,
    /// Closed after `idle_timeout_ms` with no call in progress.
    Idle,
    /// `StreamCertificates`: `streams.max_certificate_streams` open.
    TooManyStreams,
    /// `StreamCertificates`: the per-source cap in use by this source.
    TooManyStreamsFromSource,
    /// `StreamCertificates`: the reader left a full buffer unread for
    /// `streams.slow_reader_timeout_ms`.
    SlowReader,
}

impl Refusal {
    /// Every refusal, in declaration order.
    pub const ALL: [Refusal; 11] = [
        Self::TooManyConnections,
        Self::TooManyFromSource,
        Self::TooManyHandshakes,
        Self::TooManyHandshakesFromSource,
        Self::HandshakeFailed,
        Self::HandshakeTimeout,
        Self::NotAValidator,
        Self::Idle,
        Self::TooManyStreams,
        Self::TooManyStreamsFromSource,
        Self::SlowReader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooManyConnections => "too_many_connections",
            Self::TooManyFromSource => "too_many_connections_from_source",
            Self::TooManyHandshakes => "too_many_handshakes",
            Self::TooManyHandshakesFromSource => "too_many_handshakes_from_source",
            Self::HandshakeFailed => "handshake_failed",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::NotAValidator => "not_a_validator",
            Self::Idle => "idle_timeout",
            Self::TooManyStreams => "too_many_streams",
            Self::TooManyStreamsFromSource => "too_many_streams_from_source",
            Self::SlowReader => "slow_reader",
        }
    }
}

/// Counters of one listener (or of the certificate streams), shared with
/// the status.
#[derive(Debug)]
pub struct ListenerStats {
    pub name: &'static str,
    open: AtomicU64,
    handshaking: AtomicU64,
    accepted: AtomicU64,
    /// Refusals from committee sources (peer listener), which should stay 0.
    committee_refused: AtomicU64,
    refused: Mutex<BTreeMap<Refusal, u64>>,
    /// One line per second per rule (`crate::logging::REFUSALS`).
    log: crate::logging::KeyedLogLimiter,
}

/// What the status reports of one listener.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ListenerStatus {
    pub name: String,
    /// Connections (streams) open now, handshaking ones included.
    pub open: u64,
    pub handshaking: u64,
    /// Connections (streams) admitted since start.
    pub accepted: u64,
    /// Refusals of connections whose source is one of the committee's own
    /// validators (peer listener only): 0 unless the reserve is too small.
    pub committee_refused: u64,
    /// Refusals by rule since start.
    pub refused: BTreeMap<String, u64>,
}

impl ListenerStats {
    pub fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            open: AtomicU64::new(0),
            handshaking: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            committee_refused: AtomicU64::new(0),
            refused: Mutex::new(BTreeMap::new()),
            log: crate::logging::KeyedLogLimiter::new(crate::logging::REFUSALS),
        })
    }

    /// Counts a refusal and logs it, at most once a second per listener and
    /// rule (the line carries how many were suppressed since the last one).
    pub fn refuse(&self, why: Refusal, remote: impl std::fmt::Display, committee: bool) {
        *self
            .refused
            .lock()
            .expect("refusal counters")
            .entry(why)
            .or_default() += 1;
        if committee {
            self.committee_refused.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(suppressed) = self.log.admit(why.as_str()) {
            tracing::warn!(
                listener = self.name,
                %remote,
                rule = why.as_str(),
                committee,
                suppressed,
                "connection refused (at most one such line per second per listener and rule; `suppressed` counts the others)"
            );
        }
    }

    pub fn status(&self) -> ListenerStatus {
        ListenerStatus {
            name: self.name.to_owned(),
            open: self.open.load(Ordering::Relaxed),
            handshaking: self.handshaking.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            committee_refused: self.committee_refused.load(Ordering::Relaxed),
            refused: self
                .refused
                .lock()
                .expect("refusal counters")
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), *v))
                .collect(),
        }
    }

    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The source addresses of the committee's validators, from their
/// `[[peers]]` addresses, resolved at start and every 30 s after (a name
/// may resolve only once its container is up).
#[derive(Debug, Default)]
pub struct CommitteeAddrs {
    ips: RwLock<HashSet<IpAddr>>,
}

/// How often the committee's peer addresses are resolved again.
pub const COMMITTEE_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

impl CommitteeAddrs {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ips.read().expect("committee addrs").contains(&ip)
    }

    pub fn fixed(ips: impl IntoIterator<Item = IpAddr>) -> Arc<Self> {
        Arc::new(Self {
            ips: RwLock::new(ips.into_iter().collect()),
        })
    }

    /// Resolves `addrs` (host:port) now and then every
    /// [`COMMITTEE_RESOLVE_INTERVAL`] until `stop` fires.
    pub fn resolve_in_background(
        network: Arc<dyn crate::transport::net::Network>,
        addrs: Vec<String>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Arc<Self> {
        let me = Arc::new(Self::default());
        let this = me.clone();
        tokio::spawn(async move {
            loop {
                let mut found = HashSet::new();
                for a in &addrs {
                    if let Ok(Ok(ips)) =
                        tokio::time::timeout(Duration::from_secs(5), network.resolve(a.clone()))
                            .await
                    {
                        found.extend(ips.into_iter().map(|ip| ip.to_canonical()));
                    }
                }
                {
                    let mut ips = this.ips.write().expect("committee addrs");
                    // Keep addresses resolved before (a failed lookup must not
                    // take the reserve away from a validator).
                    ips.extend(found);
                }
                tokio::select! {
                    _ = tokio::time::sleep(COMMITTEE_RESOLVE_INTERVAL) => {}
                    _ = stop.changed() => return,
                }
            }
        });
        me
    }
}

#[derive(Debug, Default)]
struct Counts {
    /// Connections in the general pool (handshaking or established).
    general: usize,
    /// Committee connections beyond the general pool.
    reserved: usize,
    general_handshakes: usize,
    reserved_handshakes: usize,
    /// Per source: (connections, handshakes).
    per_source: HashMap<IpAddr, (usize, usize)>,
}

/// Admission of connections to one listener.
#[derive(Debug)]
pub struct ConnectionLimiter {
    settings: ListenerSettings,
    committee: Option<Arc<CommitteeAddrs>>,
    counts: Mutex<Counts>,
    pub stats: Arc<ListenerStats>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pool {
    General,
    Reserved,
}

/// A connection's place in the limiter: released (counters decremented)
/// when dropped.
#[derive(Debug)]
pub struct Slot {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
    pool: Pool,
    handshaking: bool,
    pub committee: bool,
}

impl ConnectionLimiter {
    pub fn new(
        settings: ListenerSettings,
        committee: Option<Arc<CommitteeAddrs>>,
        stats: Arc<ListenerStats>,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            committee,
            counts: Mutex::new(Counts::default()),
            stats,
        })
    }

    pub fn settings(&self) -> &ListenerSettings {
        &self.settings
    }

    /// A slot for a new connection from `ip`, in the handshake state, or
    /// the rule it would break.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, (Refusal, bool)> {
        let committee = self.committee.as_ref().is_some_and(|c| c.contains(ip));
        let s = &self.settings;
        let mut c = self.counts.lock().expect("connection counts");
        let (conns, shakes) = c.per_source.get(&ip).copied().unwrap_or((0, 0));
        // The committee's own sources are bounded by the pools alone: on a
        // shared host (loopback tests) every validator has one address.
        if !committee {
            if conns >= s.max_connections_per_source {
                return Err((Refusal::TooManyFromSource, false));
            }
            if shakes >= s.max_handshakes_per_source {
                return Err((Refusal::TooManyHandshakesFromSource, false));
            }
        }
        let pool = if c.general < s.max_connections && c.general_handshakes < s.max_handshakes {
            Pool::General
        } else if committee
            && c.reserved < s.reserved_for_committee
            && c.reserved_handshakes < s.reserved_for_committee
        {
            Pool::Reserved
        } else if c.general >= s.max_connections {
            return Err((Refusal::TooManyConnections, committee));
        } else {
            return Err((Refusal::TooManyHandshakes, committee));
        };
        match pool {
            Pool::General => {
                c.general += 1;
                c.general_handshakes += 1;
            }
            Pool::Reserved => {
                c.reserved += 1;
                c.reserved_handshakes += 1;
            }
        }
        let e = c.per_source.entry(ip).or_default();
        e.0 += 1;
        e.1 += 1;
        drop(c);
        self.stats.opened();
        self.stats.handshaking.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            limiter: self.clone(),
            ip,
            pool,
            handshaking: true,
            committee,
        })
    }
}

impl Slot {
    /// The handshake is over: the connection keeps its place, the
    /// handshake slot is freed.
    pub fn established(&mut self) {
        if !self.handshaking {
            return;
        }
        self.handshaking = false;
        let mut c = self.limiter.counts.lock().expect("connection counts");
        match self.pool {
            Pool::General => c.general_handshakes -= 1,
            Pool::Reserved => c.reserved_handshakes -= 1,
        }
        if let Some(e) = c.per_source.get_mut(&self.ip) {
            e.1 -= 1;
        }
        drop(c);
        self.limiter
            .stats
            .handshaking
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.established();
        let mut c = self.limiter.counts.lock().expect("connection counts");
        match self.pool {
            Pool::General => c.general -= 1,
            Pool::Reserved => c.reserved -= 1,
        }
        if let Some(e) = c.per_source.get_mut(&self.ip) {
            e.0 -= 1;
            if *e == (0, 0) {
                c.per_source.remove(&self.ip);
            }
        }
        drop(c);
        self.limiter.stats.closed();
    }
}

/// Counts what a source address holds of something other than
/// connections (certificate streams).
#[derive(Debug)]
pub struct SourceCounter {
    total: usize,
    per_source: usize,
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
    pub stats: Arc<ListenerStats>,
}

/// One unit held by a source; released when dropped.
#[derive(Debug)]
pub struct SourceUnit {
    counter: Arc<SourceCounter>,
    ip: Option<IpAddr>,
}

impl SourceCounter {
    pub fn new(total: usize, per_source: usize, stats: Arc<ListenerStats>) -> Arc<Self> {
        Arc::new(Self {
            total,
            per_source,
            counts: Mutex::new((0, HashMap::new())),
            stats,
        })
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn per_source(&self) -> usize {
        self.per_source
    }

    /// A unit for `ip` (None: in process, counted in the total only).
    pub fn acquire(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<SourceUnit, Refusal> {
        let mut c = self.counts.lock().expect("source counts");
        if c.0 >= self.total {
            drop(c);
            self.stats.refuse(
                Refusal::TooManyStreams,
                ip.map_or("in-process".to_owned(), |i| i.to_string()),
                false,
            );
            return Err(Refusal::TooManyStreams);
        }
        if let Some(ip) = ip {
            let n = c.1.entry(ip).or_default();
            if *n >= self.per_source {
                drop(c);
                self.stats
                    .refuse(Refusal::TooManyStreamsFromSource, ip, false);
                return Err(Refusal::TooManyStreamsFromSource);
            }
            *n += 1;
        }
        c.0 += 1;
        drop(c);
        self.stats.opened();
        Ok(SourceUnit {
            counter: self.clone(),
            ip,
        })
    }
}

impl Drop for SourceUnit {
    fn drop(&mut self) {
        let mut c = self.counter.counts.lock().expect("source counts");
        c.0 -= 1;
        if let Some(ip) = self.ip {
            if let Some(n) = c.1.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    c.1.remove(&ip);
                }
            }
        }
        drop(c);
        self.counter.stats.closed();
    }
}

/// Calls in progress on one connection and when the last one ended, for
/// the idle timeout.
#[derive(Debug)]
pub struct ConnActivity {
    base: tokio::time::Instant,
    active: AtomicU32,
    /// Milliseconds since `base` of the last call's start or end.
    last_ms: AtomicU64,
}

impl Default for ConnActivity {
    fn default() -> Self {
        Self {
            base: tokio::time::Instant::now(),
            active: AtomicU32::new(0),
            last_ms: AtomicU64::new(0),
        }
    }
}

/// A call in progress; the connection is not idle while one exists.
#[derive(Debug)]
pub struct ActiveCall(Arc<ConnActivity>);

impl ConnActivity {
    fn stamp(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    pub fn begin(self: &Arc<Self>) -> ActiveCall {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.stamp();
        ActiveCall(self.clone())
    }

    /// When the connection becomes idle-expired, or None while a call is
    /// in progress.
    fn idle_deadline(&self, timeout: Duration) -> Option<tokio::time::Instant> {
        if self.active.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + timeout)
    }
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.0.stamp();
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The idle timer of one connection, polled from its reads.
pub struct IdleTimer {
    pub activity: Arc<ConnActivity>,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimer {
    pub fn new(activity: Arc<ConnActivity>, timeout: Duration) -> Self {
        activity.stamp();
        Self {
            activity,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Ready(()) once the connection has been idle for the timeout; else
    /// registers a wake-up for the earliest moment it could be.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = tokio::time::Instant::now();
            let next = match self.activity.idle_deadline(self.timeout) {
                Some(deadline) if deadline <= now => return Poll::Ready(()),
                Some(deadline) => deadline,
                // A call in progress: look again one timeout from now.
                None => now + self.timeout,
            };
            self.sleep.as_mut().reset(next);
        }
    }
}

/// A tower layer that marks a connection active for the duration of every
/// call on it (up to its response headers; a streaming call holds its own
/// [`ActiveCall`] while it streams).
#[derive(Clone, Copy, Debug, Default)]
pub struct ActivityLayer;

impl<S> tower::Layer<S> for ActivityLayer {
    type Service = ActivityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ActivityService(inner)
    }
}

#[derive(Clone, Debug)]
pub struct ActivityService<S>(S);

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> tower::Service<tonic::codegen::http::Request<B>> for ActivityService<S>
where
    S: tower::Service<tonic::codegen::http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFut<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let call = req
            .extensions()
            .get::<crate::transport::net::PeerIdentity>()
            .and_then(|p| p.activity.as_ref())
            .map(|a| a.begin());
        let fut = self.0.call(req);
        Box::pin(async move {
            let out = fut.await;
            drop(call);
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ListenerSettings {
        ListenerSettings {
            max_connections: 4,
            max_connections_per_source: 2,
            max_handshakes: 3,
            max_handshakes_per_source: 2,
            reserved_for_committee: 2,
            ..ListenerSettings::peer_default()
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn per_source_caps_at_under_and_over() {
        let l = ConnectionLimiter::new(
            ListenerSettings {
                max_connections_per_source: 3,
                ..settings()
            },
            None,
            ListenerStats::new("t"),
        );
        let a = l.admit(ip(2)).expect("first");
        let _b = l.admit(ip(2)).expect("second: at the handshake cap");
        assert_eq!(
            l.admit(ip(2)).unwrap_err().0,
            Refusal::TooManyHandshakesFromSource
        );
        drop(a);
        let mut c = l.admit(ip(2)).expect("a freed place is reused");
        c.established();
        let _d = l
            .admit(ip(2))
            .expect("third connection: at the connection cap");
        // Three connections, two handshaking: both caps bind; connections first.
        assert_eq!(l.admit(ip(2)).unwrap_err().0, Refusal::TooManyFromSource);
        // Another source is not affected.
        let _e = l.admit(ip(3)).expect("other source");
        let s = l.stats.status();
        assert_eq!((s.open, s.handshaking), (4, 3));
    }

    #[test]
    fn handshake_pool_then_connection_pool() {
        let l = ConnectionLimiter::new(settings(), None, ListenerStats::new("t"));
        let mut held = Vec::new();
        for i in 2..5 {
            held.push(l.admit(ip(i)).expect("under the handshake cap"));
        }
        assert_eq!(l.admit(ip(9)).unwrap_err().0, Refusal::TooManyHandshakes);
        for s in &mut held {
            s.established();
        }
        held.push(l.admit(ip(9)).expect("handshakes freed"));
        assert_eq!(l.admit(ip(10)).unwrap_err().0, Refusal::TooManyConnections);
        drop(held);
        assert_eq!(l.stats.status().open, 0);
    }

    #[test]
    fn the_committee_keeps_its_reserve_when_strangers_fill_the_pool() {
        let committee = CommitteeAddrs::fixed([ip(1)]);
        let l = ConnectionLimiter::new(settings(), Some(committee), ListenerStats::new("t"));
        let mut held = Vec::new();
        for i in 2..6 {
            let mut s = l.admit(ip(i)).expect("strangers fill the general pool");
            s.established();
            held.push(s);
        }
        assert_eq!(
            l.admit(ip(7)).unwrap_err(),
            (Refusal::TooManyConnections, false)
        );
        // The committee's address gets the reserve: exactly 2 more.
        let _c1 = l.admit(ip(1)).expect("reserve 1");
        let _c2 = l.admit(ip(1)).expect("reserve 2");
        assert_eq!(
            l.admit(ip(1)).unwrap_err(),
            (Refusal::TooManyConnections, true)
        );
        let s = l.stats.status();
        assert_eq!(s.open, 6);
    }

    #[test]
    fn stream_counter_caps() {
        let c = SourceCounter::new(3, 2, ListenerStats::new("streams"));
        let a = c.acquire(Some(ip(2))).expect("1");
        let _b = c.acquire(Some(ip(2))).expect("2");
        assert_eq!(
            c.acquire(Some(ip(2))).unwrap_err(),
            Refusal::TooManyStreamsFromSource
        );
        let _d = c.acquire(Some(ip(3))).expect("3");
        assert_eq!(c.acquire(Some(ip(4))).unwrap_err(), Refusal::TooManyStreams);
        drop(a);
        let _e = c.acquire(Some(ip(4))).expect("freed");
        let s = c.stats.status();
        assert_eq!(s.refused.get("too_many_streams"), Some(&1));
        assert_eq!(s.refused.get("too_many_streams_from_source"), Some(&1));
    }

    #[tokio::test]
    async fn idle_timer_waits_for_calls_to_end() {
        let ms = Duration::from_millis;
        let is_pending = |t: &mut IdleTimer| {
            let waker = std::task::Waker::noop();
            t.poll_expired(&mut Context::from_waker(waker)).is_pending()
        };
        let activity = Arc::new(ConnActivity::default());
        let mut t = IdleTimer::new(activity.clone(), ms(200));
        let call = activity.begin();
        tokio::time::sleep(ms(400)).await;
        assert!(
            is_pending(&mut t),
            "a call in progress keeps the connection"
        );
        drop(call);
        tokio::time::sleep(ms(100)).await;
        assert!(is_pending(&mut t), "100 ms idle of 200");
        let started = tokio::time::Instant::now();
        std::future::poll_fn(|cx| t.poll_expired(cx)).await;
        let waited = started.elapsed();
        assert!(
            waited >= ms(50) && waited < ms(1_000),
            "expired after {waited:?}"
        );
    }
}
