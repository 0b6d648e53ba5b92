//! Connection flood (issue 10, item 4): thousands of idle TCP connections
//! (connect, send nothing) and hundreds of half-open TLS handshakes (a TLS
//! record header and the start of a ClientHello, then nothing) against ONE
//! validator's API port and its peer port, each closed connection opened
//! again, for the whole row; meanwhile another validator is killed and
//! started again, so its peer connections to the attacked validator are
//! made again through the flood, and it must catch up.
//!
//! The attacked validator is the leader at the start of the row: followers
//! open peer connections to it (forwarded submits, signature shares, read
//! indexes), so the restarted follower must get through the flooded peer
//! port to serve the honest clients that send to it.
//!
//! The attack comes from a handful of loopback addresses
//! (127.0.0.20–27), never from 127.0.0.1, which is the committee's own
//! source address: the per-source caps are the defence under test. An
//! attacker with as many source addresses as it likes (a botnet) is
//! bounded only by the listener's totals (`max_connections`,
//! `max_handshakes`), and on the peer listener the committee's reserve
//! (`reserved_for_committee`) is what keeps the validators connected.
//!
//! Pass criteria of the row beyond the suite's: every validator's peer
//! listener reports `committee_refused` = 0, every fresh status call (a new
//! TLS connection from a new source, and the CLI's own client from
//! 127.0.0.1) to the attacked API during the flood succeeds, the restarted
//! validator catches up, and the listeners refused the flood (some
//! per-source or handshake rule on each port).

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use neuroshard_node::api_proto as api;
use neuroshard_node::GovernanceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use super::client::{self, listener, refused_delta, Pool};
use super::report::AttackReport;
use super::Ctx;
use crate::real::processes::Validators;

/// The attacker's source addresses: 127.0.0.FIRST_SOURCE … + SOURCES − 1.
pub const FIRST_SOURCE: u8 = 20;
pub const SOURCES: u8 = 8;
/// The fresh status probe's source (a new user, not an attacker).
pub const PROBE_SOURCE: u8 = 12;
/// Longest one attacker connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a fresh status call may take (connect, handshake, answer).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// A fresh status call this often during the flood.
pub const PROBE_EVERY: Duration = Duration::from_millis(1_000);
/// Time over which the attacker opens its first connections.
pub const RAMP: Duration = Duration::from_millis(1_500);
/// How long into the flood the other validator is killed, and how long it
/// stays down.
pub const RESTART_AFTER: Duration = Duration::from_millis(2_500);
pub const DOWN_FOR: Duration = Duration::from_millis(500);
/// Longest the restarted validator may take to catch up.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(25);
/// A connection closed sooner than this was refused at once; later, it was
/// held (a handshake timeout, or the end of the row).
pub const AT_ONCE: Duration = Duration::from_millis(500);

/// What the attacker sends on a half-open handshake: a TLS record header
/// announcing a 512-byte handshake message, and the start of a ClientHello
/// (type 1, length 508, TLS 1.2, 32 bytes of "random") — then nothing.
pub fn partial_client_hello() -> Vec<u8> {
    let mut b = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    b.extend((0u8..32).map(|i| i.wrapping_mul(37).wrapping_add(11)));
    b
}

/// The flood's size and pace.
#[derive(Clone, Copy, Debug)]
pub struct FloodSize {
    /// Idle connections per attacked port.
    pub idle: usize,
    /// Half-open TLS handshakes per attacked port.
    pub half_open: usize,
    /// Pause before a closed connection is opened again.
    pub reconnect: Duration,
}

#[derive(Default)]
struct Gauges {
    attempts: AtomicU64,
    connected: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    connect_failed: AtomicU64,
    closed_at_once: AtomicU64,
    closed_later: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Gauges {
    fn opened(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
        let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_open.fetch_max(now, Ordering::Relaxed);
    }

    fn error(&self, what: String) {
        self.connect_failed.fetch_add(1, Ordering::Relaxed);
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(what)
            .or_default() += 1;
    }
}

/// A TCP connection to `remote` from `source` (any port). The port is
/// chosen at connect time (`IP_BIND_ADDRESS_NO_PORT`), so thousands of
/// connections from one address to several ports do not run out of
/// ephemeral ports at bind time.
pub async fn connect_from(source: IpAddr, remote: SocketAddr) -> io::Result<TcpStream> {
    let socket = match remote {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if source.is_ipv4() {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a socket this function owns, with a
        // pointer to a c_int that outlives the call and its size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(remote).await
}

/// One attacker connection, opened again whenever it is closed, until
/// `stop`.
async fn keep_open(
    source: IpAddr,
    remote: SocketAddr,
    hello: Option<Arc<Vec<u8>>>,
    start_after: Duration,
    reconnect: Duration,
    gauges: Arc<Gauges>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = tokio::time::sleep(start_after) => {}
        _ = stop.changed() => return,
    }
    let mut k = 0u64;
    while !*stop.borrow() {
        k += 1;
        gauges.attempts.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(CONNECT_TIMEOUT, connect_from(source, remote)).await {
            Ok(Ok(mut stream)) => {
                gauges.opened();
                let opened = Instant::now();
                let mut sent = true;
                if let Some(hello) = &hello {
                    sent = stream.write_all(hello).await.is_ok();
                }
                let mut buf = [0u8; 256];
                let stopped = if sent {
                    loop {
                        tokio::select! {
                            r = stream.read(&mut buf) => match r {
                                // Closed by the validator (or reset).
                                Ok(0) | Err(_) => break false,
                                // A TLS alert or the like: keep waiting.
                                Ok(_) => {}
                            },
                            _ = stop.changed() => break true,
                        }
                    }
                } else {
                    false
                };
                gauges.open.fetch_sub(1, Ordering::Relaxed);
                if stopped {
                    return;
                }
                if opened.elapsed() < AT_ONCE {
                    gauges.closed_at_once.fetch_add(1, Ordering::Relaxed);
                } else {
                    gauges.closed_later.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Err(e)) => gauges.error(match e.raw_os_error() {
                Some(libc::EMFILE) | Some(libc::ENFILE) => "out of file descriptors".to_owned(),
                Some(libc::EADDRNOTAVAIL) => "no free local port".to_owned(),
                _ => e.kind().to_string(),
            }),
            Err(_) => gauges.error("connect timed out".to_owned()),
        }
        // Jitter: 75–125 % of the pause, so the reconnects spread out.
        let jitter = 0.75 + 0.5 * ((k.wrapping_mul(0x9E37_79B9) % 1000) as f64 / 1000.0);
        tokio::select! {
            _ = tokio::time::sleep(reconnect.mul_f64(jitter)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// A fresh status call: a new TLS connection from `source` (as a new user
/// would make), then GetStatus.
pub async fn fresh_status(
    api_addrs: &[String],
    ca: &Path,
    source: u8,
    i: usize,
) -> Result<(api::ClusterStatus, Duration), String> {
    let started = Instant::now();
    let pool = Pool::new(
        api_addrs,
        ca,
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, source)),
        1,
    )
    .map_err(|e| e.to_string())?;
    let mut c = pool.client(i);
    match tokio::time::timeout(PROBE_TIMEOUT, c.get_status(api::GetStatusRequest {})).await {
        Ok(Ok(s)) => Ok((s.into_inner(), started.elapsed())),
        Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
        Err(_) => Err(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
    }
}

/// `neuroshard status --endpoint https://<api>`: the CLI's own client
/// (from the default source address).
pub async fn cli_status(api_addrs: &[String], ca: &Path, i: usize) -> Result<Duration, String> {
    let started = Instant::now();
    let endpoint = format!("https://{}", api_addrs[i]);
    let call = async {
        let mut c = GovernanceClient::connect(&endpoint, ca, PROBE_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        c.status().await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(PROBE_TIMEOUT + Duration::from_secs(1), call).await {
        Ok(Ok(_)) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("no answer".to_owned()),
    }
}

#[derive(Default)]
struct Probes {
    ok: u64,
    failed: Vec<String>,
    worst: Duration,
}

/// The statuses of every validator (None where it did not answer).
async fn statuses(ctx: &Ctx, admin: &Pool) -> Vec<Option<api::ClusterStatus>> {
    let mut out = Vec::new();
    for i in 0..ctx.api_addrs.len() {
        out.push(client::status(admin, i, Duration::from_secs(2)).await);
    }
    out
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    ctx: &Ctx,
    admin: &Pool,
    validators: &mut Validators,
    peer_addrs: &[String],
    size: FloodSize,
    min: Duration,
) -> AttackReport {
    let mut report = AttackReport::new(Vec::new());
    let started = Instant::now();
    let n = ctx.api_addrs.len();
    // The attacked validator: the leader now.
    let before = statuses(ctx, admin).await;
    let attacked = before
        .iter()
        .flatten()
        .find(|s| s.role == "leader")
        .map_or(0, |s| s.node_id as usize)
        % n;
    let restarted = (attacked + 1) % n;
    let api_before = before[attacked]
        .as_ref()
        .and_then(|s| listener(s, "api"))
        .cloned();
    let peer_before = before[attacked]
        .as_ref()
        .and_then(|s| listener(s, "peer"))
        .cloned();
    if api_before.is_none() || peer_before.is_none() {
        report.finding(format!(
            "validator {attacked}'s status reports no \"api\"/\"peer\" listener counters (ClusterStatus.listeners)"
        ));
    }
    let targets: Vec<(&str, SocketAddr)> = [
        ("api", &ctx.api_addrs[attacked]),
        ("peer", &peer_addrs[attacked]),
    ]
    .into_iter()
    .filter_map(|(name, a)| a.parse().ok().map(|a| (name, a)))
    .collect();

    // The flood.
    let (stop_tx, stop_rx) = watch::channel(false);
    let gauges: Vec<Arc<Gauges>> = targets
        .iter()
        .map(|_| Arc::new(Gauges::default()))
        .collect();
    let hello = Arc::new(partial_client_hello());
    let mut tasks = tokio::task::JoinSet::new();
    for ((_, remote), g) in targets.iter().zip(&gauges) {
        let per_port = size.idle + size.half_open;
        for k in 0..per_port {
            let source = IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                FIRST_SOURCE + (k % SOURCES as usize) as u8,
            ));
            let half = (k >= size.idle).then(|| hello.clone());
            let start_after = RAMP.mul_f64(k as f64 / per_port as f64);
            tasks.spawn(keep_open(
                source,
                *remote,
                half,
                start_after,
                size.reconnect,
                g.clone(),
                stop_rx.clone(),
            ));
        }
    }
    println!(
        "hostile: conn-flood: validator {attacked} (the leader) flooded on {} from 127.0.0.{FIRST_SOURCE}..{}: {} idle + {} half-open per port; validator {restarted} is restarted at +{:.1} s",
        targets
            .iter()
            .map(|(n, a)| format!("{n} {a}"))
            .collect::<Vec<_>>()
            .join(", "),
        FIRST_SOURCE + SOURCES - 1,
        size.idle,
        size.half_open,
        RESTART_AFTER.as_secs_f64()
    );

    // Fresh status calls to the attacked API throughout.
    let probes = Arc::new(Mutex::new(Probes::default()));
    let probe_task = {
        let probes = probes.clone();
        let api_addrs = ctx.api_addrs.clone();
        let ca = ctx.ca.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(RAMP) => {}
                _ = stop.changed() => return,
            }
            let mut k = 0u64;
            loop {
                k += 1;
                let a = fresh_status(&api_addrs, &ca, PROBE_SOURCE, attacked).await;
                let b = cli_status(&api_addrs, &ca, attacked).await;
                {
                    let mut p = probes.lock().unwrap_or_else(|p| p.into_inner());
                    match a {
                        Ok((_, d)) => {
                            p.ok += 1;
                            p.worst = p.worst.max(d);
                        }
                        Err(e) => p.failed.push(format!(
                            "probe {k}: a fresh GetStatus from 127.0.0.{PROBE_SOURCE}: {e}"
                        )),
                    }
                    match b {
                        Ok(d) => {
                            p.ok += 1;
                            p.worst = p.worst.max(d);
                        }
                        Err(e) => p.failed.push(format!(
                            "probe {k}: `neuroshard status --endpoint https://{}`: {e}",
                            api_addrs[attacked]
                        )),
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(PROBE_EVERY) => {}
                    _ = stop.changed() => return,
                }
            }
        })
    };

    // Kill and start another validator during the flood.
    tokio::time::sleep(RESTART_AFTER).await;
    let mut mid = None;
    if let Some(s) = client::status(admin, attacked, Duration::from_secs(2)).await {
        mid = Some(s);
    }
    // A validator that exited by itself is a finding, not hidden by the
    // planned kill and restart (kill -9 of an exited child succeeds).
    for (i, status) in validators.exited() {
        report.finding(format!(
            "validator {i} exited by itself ({status}) before the planned restart"
        ));
    }
    let killed_at = Instant::now();
    if let Err(e) = validators.kill9(restarted) {
        report.finding(format!("kill -9 of validator {restarted}: {e}"));
    }
    tokio::time::sleep(DOWN_FOR).await;
    if let Err(e) = validators.spawn(restarted) {
        report.finding(format!("restart of validator {restarted}: {e}"));
    }
    // Caught up: its applied index reaches what the others had applied
    // once it answered again.
    let mut caught_up = None;
    let mut target = None;
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        let all = statuses(ctx, admin).await;
        if let Some(Some(mine)) = all.get(restarted) {
            let mine_applied = mine.applied_index.unwrap_or(0);
            if target.is_none() {
                target = all
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != restarted)
                    .filter_map(|(_, s)| s.as_ref().and_then(|s| s.applied_index))
                    .max();
            }
            last = format!(
                "applied {mine_applied} of {}, {}",
                target.unwrap_or(0),
                mine.role
            );
            if target.is_some_and(|t| mine_applied >= t) {
                caught_up = Some(killed_at.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match caught_up {
        Some(d) => report.notes.push(format!(
            "validator {restarted} killed and started again during the flood; caught up (applied index {} reached) {:.1} s after the kill",
            target.unwrap_or(0),
            d.as_secs_f64()
        )),
        None => report.finding(format!(
            "validator {restarted}, restarted during the flood, did not catch up within {} s: {last}",
            CATCH_UP_TIMEOUT.as_secs()
        )),
    }
    // The rest of the row under the same flood.
    let floor = started + min.max(RESTART_AFTER + DOWN_FOR + Duration::from_secs(3));
    tokio::time::sleep_until(floor.into()).await;
    let during = client::status(admin, attacked, Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let _ = probe_task.await;
    report.elapsed = started.elapsed();

    // What the validators counted (once they saw the attacker leave).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = statuses(ctx, admin).await;
    for (i, s) in after.iter().enumerate() {
        match s.as_ref().and_then(|s| listener(s, "peer")) {
            Some(l) if l.committee_refused > 0 => report.finding(format!(
                "validator {i}'s peer listener refused {} connections from the committee's own addresses (refused: {:?})",
                l.committee_refused, l.refused
            )),
            Some(_) => {}
            None => report.finding(format!(
                "validator {i}: no peer listener counters in its status (committee_refused cannot be checked)"
            )),
        }
    }
    for (name, was) in [("api", &api_before), ("peer", &peer_before)] {
        let now = after[attacked].as_ref().and_then(|s| listener(s, name));
        let (Some(was), Some(now)) = (was, now) else {
            continue;
        };
        let delta = refused_delta(was, now);
        let total: u64 = delta.values().sum();
        // Admitted and not ended in a failed or timed-out handshake: TLS
        // connections completed during the row (on the peer port, the
        // committee's: the restarted validator's at least).
        let failed: u64 = ["handshake_failed", "handshake_timeout", "not_a_validator"]
            .iter()
            .map(|r| delta.get(*r).copied().unwrap_or(0))
            .sum();
        let completed = now
            .accepted
            .saturating_sub(was.accepted)
            .saturating_sub(failed);
        report.notes.push(format!(
            "validator {attacked} {name} listener: {completed} TLS connections completed during the row"
        ));
        if name == "peer" && completed == 0 {
            report.finding(format!(
                "no connection completed on validator {attacked}'s peer listener during the row: the restarted validator {restarted} never reconnected through the flood"
            ));
        }
        for (rule, k) in &delta {
            *report.refusals.entry(format!("{name}.{rule}")).or_default() += k;
        }
        if total == 0 {
            report.finding(format!(
                "validator {attacked}'s {name} listener refused nothing of the flood"
            ));
        }
        report.notes.push(format!(
            "validator {attacked} {name} listener: {} connections admitted during the row (open {}, handshaking {} before the flood ended)",
            now.accepted.saturating_sub(was.accepted),
            during
                .as_ref()
                .and_then(|s| listener(s, name))
                .map_or(0, |l| l.open),
            during
                .as_ref()
                .and_then(|s| listener(s, name))
                .map_or(0, |l| l.handshaking),
        ));
    }
    if let Some(s) = mid.as_ref().and_then(|s| listener(s, "api")) {
        report.notes.push(format!(
            "validator {attacked} api listener at +{:.1} s: open {}, handshaking {}",
            RESTART_AFTER.as_secs_f64(),
            s.open,
            s.handshaking
        ));
    }
    for ((name, remote), g) in targets.iter().zip(&gauges) {
        let attempts = g.attempts.load(Ordering::Relaxed);
        report.sent += attempts;
        let errors = g.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
        report.notes.push(format!(
            "{name} {remote}: {attempts} connects ({:.0}/s), {} connected, at most {} open at once (of {} + {} kept open), closed by the validator at once {} / after a wait {}, connect failures {:?}",
            attempts as f64 / report.elapsed.as_secs_f64().max(0.001),
            g.connected.load(Ordering::Relaxed),
            g.peak_open.load(Ordering::Relaxed),
            size.idle,
            size.half_open,
            g.closed_at_once.load(Ordering::Relaxed),
            g.closed_later.load(Ordering::Relaxed),
            errors
        ));
        if (g.peak_open.load(Ordering::Relaxed) as usize) < (size.idle + size.half_open) / 2 {
            report.notes.push(format!(
                "{name}: the attacker never held more than {} connections open at once: the validator closes what is over its limits at once",
                g.peak_open.load(Ordering::Relaxed)
            ));
        }
    }
    let p = Arc::try_unwrap(probes)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_default();
    report.notes.push(format!(
        "fresh status calls to validator {attacked}'s API during the flood: {} answered (slowest {} ms), {} failed",
        p.ok,
        p.worst.as_millis(),
        p.failed.len()
    ));
    if p.ok == 0 {
        report.finding("no fresh status call was answered during the flood".to_owned());
    }
    for f in p.failed {
        report.finding(f);
    }
    report
}
