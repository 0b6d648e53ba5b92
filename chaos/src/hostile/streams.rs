//! Stream flood (issue 10, item 4): 500 `StreamCertificates` calls that
//! never read, while a light node follows the certificate log and
//! certificates keep being issued.
//!
//! The attacker opens its streams from four loopback addresses
//! (127.0.0.30–33), one connection per validator and address, spread over
//! every validator, each from the first certificate. Its connections grant
//! no HTTP/2 flow-control window (`initial_stream_window_size` 0): the
//! validator can send nothing, so every certificate it queues for such a
//! stream stays queued — what a client that opens a stream and never
//! polls it does once its buffers are full, only sooner. A refused call is
//! tried again every second; an accepted one is held, never read, until
//! the row ends.
//!
//! The light node (127.0.0.11) follows from sequence 1 with the
//! certificate crate's `Follower` pinned to the committee info (every
//! envelope verified, gap-free, hash-linked), reconnecting to the next
//! validator when a stream ends. Certificates are issued throughout the
//! row by emergencies (`certs.rs`).
//!
//! Pass criteria beyond the suite's: the light node holds every
//! certificate issued by the end of the row (each verified), at least one
//! was issued during the row, the light node was never refused, and the
//! validators refused the flood by the per-source cap
//! (`too_many_streams_from_source`) and cut its streams as slow readers
//! (`slow_reader`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use neuroshard_certificate::envelope::Envelope;
use neuroshard_certificate::follower::Follower;
use neuroshard_node::api_proto as api;
use neuroshard_node::transport::api_errors::detail_of;
use tokio::sync::watch;

use super::certs::Issuer;
use super::client::{self, listener, refused_delta, Pool};
use super::report::AttackReport;
use super::Ctx;

/// Never-reading calls the attacker keeps trying to hold.
pub const DEFAULT_STREAMS: usize = 500;
/// The attacker's source addresses: 127.0.0.30 … 33.
pub const FIRST_SOURCE: u8 = 30;
pub const SOURCES: u8 = 4;
/// The light node's source address.
pub const LIGHT_SOURCE: u8 = 11;
/// A refused call is tried again after this.
pub const RETRY: Duration = Duration::from_millis(1_000);
/// Time over which the attacker opens its first calls.
pub const RAMP: Duration = Duration::from_millis(1_000);
/// An emergency this often while the row prepares its chain.
pub const PREPARE_EVERY: Duration = Duration::from_millis(500);
/// An emergency this often while the attack runs (two certificates each):
/// certificates keep coming, and no faster than a committee makes them
/// (each `CertificateIssued` entry costs every replica BLS verifications
/// when it is applied).
pub const DEFAULT_ISSUE_EVERY_MS: u64 = 2_000;
/// Certificates the chain holds before the attacker opens its streams:
/// more than a stream's buffer (`STREAM_BUFFER` = 16 on the validators),
/// so a stream from the first certificate fills at once and the slow-reader
/// timeout can end it.
pub const CHAIN_BEFORE_ATTACK: u64 = 24;
/// Longest the row may take to get there.
pub const PREPARE_MAX: Duration = Duration::from_secs(25);
/// After the row: longest wait for the decided certificates to be issued
/// and for the light node to receive them.
pub const SETTLE: Duration = Duration::from_secs(15);
/// Longest the response headers of a stream call may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);

/// The attack's size and pace.
#[derive(Clone, Copy, Debug)]
pub struct FloodSize {
    /// Never-reading calls kept open.
    pub streams: usize,
    /// An emergency this often while the attack runs.
    pub issue_every: Duration,
    /// How long an accepted call is held before it is opened again.
    pub hold: Duration,
}

/// What the light node saw.
#[derive(Default)]
pub struct LightState {
    pub received: u64,
    /// Every accepted certificate: (sequence, payload hash, when, ms since
    /// the epoch).
    pub accepted: Vec<(u64, [u8; 32], u64)>,
    pub next_sequence: u64,
    pub reconnects: u64,
    pub refused: BTreeMap<String, u64>,
    pub errors: Vec<String>,
}

/// Follows the certificate log from `follower.next_sequence()` until
/// `stop`, verifying every certificate.
pub async fn light_node(
    pool: Pool,
    mut follower: Follower,
    state: Arc<Mutex<LightState>>,
    mut stop: watch::Receiver<bool>,
) {
    let n = pool.len();
    let mut v = 1usize;
    loop {
        if *stop.borrow() {
            return;
        }
        let from = follower.next_sequence();
        let mut c = pool.client(v % n);
        let opened = tokio::select! {
            r = tokio::time::timeout(OPEN_TIMEOUT, c.stream_certificates(api::StreamCertificatesRequest { from_sequence: from })) => r,
            _ = stop.changed() => return,
        };
        let mut stream = match opened {
            Ok(Ok(s)) => s.into_inner(),
            Ok(Err(status)) => {
                let rule = detail_of(&status)
                    .map(|d| d.rule)
                    .unwrap_or_else(|| format!("status_{:?}", status.code()).to_lowercase());
                {
                    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                    *s.refused.entry(rule).or_default() += 1;
                    s.reconnects += 1;
                }
                v += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(_) => {
                state.lock().unwrap_or_else(|p| p.into_inner()).reconnects += 1;
                v += 1;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                m = stream.message() => m,
                _ = stop.changed() => return,
            };
            match next {
                Ok(Some(c)) => {
                    let accepted = c
                        .envelope
                        .ok_or_else(|| format!("certificate {} without an envelope", c.sequence))
                        .and_then(|w| Envelope::from_proto(w).map_err(|e| e.to_string()))
                        .and_then(|e| follower.accept(&e).map_err(|e| e.to_string()));
                    let failed = {
                        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                        match accepted {
                            Ok(_) => {
                                s.received += 1;
                                s.accepted.push((
                                    c.sequence,
                                    follower.last_payload_hash(),
                                    crate::real::journal::now_ms(),
                                ));
                                s.next_sequence = follower.next_sequence();
                                false
                            }
                            Err(e) => {
                                s.errors.push(format!(
                                    "certificate {} from validator {}: {e}",
                                    c.sequence,
                                    v % n
                                ));
                                true
                            }
                        }
                    };
                    if failed {
                        // Never skip: start again from where it stands.
                        break;
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        state.lock().unwrap_or_else(|p| p.into_inner()).reconnects += 1;
        v += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Default)]
struct Flood {
    calls: AtomicU64,
    opened: AtomicU64,
    held: AtomicU64,
    peak_held: AtomicU64,
    refused: Mutex<BTreeMap<String, u64>>,
}

/// One never-reading call, tried again while refused; once accepted, held
/// unread for `hold`, then dropped and opened again (the attacker cannot
/// see the validator end it without reading), until `stop`.
async fn never_read(
    pool: Pool,
    validator: usize,
    start_after: Duration,
    hold: Duration,
    flood: Arc<Flood>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = tokio::time::sleep(start_after) => {}
        _ = stop.changed() => return,
    }
    while !*stop.borrow() {
        flood.calls.fetch_add(1, Ordering::Relaxed);
        let mut c = pool.client(validator);
        let opened = tokio::time::timeout(
            OPEN_TIMEOUT,
            c.stream_certificates(api::StreamCertificatesRequest { from_sequence: 1 }),
        )
        .await;
        match opened {
            Ok(Ok(stream)) => {
                flood.opened.fetch_add(1, Ordering::Relaxed);
                let now = flood.held.fetch_add(1, Ordering::Relaxed) + 1;
                flood.peak_held.fetch_max(now, Ordering::Relaxed);
                // Held, never polled.
                let stopped = tokio::select! {
                    _ = tokio::time::sleep(hold) => false,
                    _ = stop.changed() => true,
                };
                drop(stream);
                flood.held.fetch_sub(1, Ordering::Relaxed);
                if stopped {
                    return;
                }
                continue;
            }
            Ok(Err(status)) => {
                let rule = detail_of(&status)
                    .map(|d| d.rule)
                    .unwrap_or_else(|| format!("status_{:?}", status.code()).to_lowercase());
                *flood
                    .refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(rule)
                    .or_default() += 1;
            }
            Err(_) => {
                *flood
                    .refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry("client_timeout".into())
                    .or_default() += 1;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Certificates decided and still collecting shares on validator `i`.
async fn certificates(pool: &Pool, i: usize) -> Option<(u64, u64)> {
    client::status(pool, i, Duration::from_secs(2))
        .await
        .map(|s| (s.certificates, s.pending_certificates))
}

/// The highest count of issued certificates any validator reports.
async fn issued(ctx: &Ctx, admin: &Pool) -> u64 {
    let mut best = 0;
    for i in 0..ctx.api_addrs.len() {
        if let Some((c, p)) = certificates(admin, i).await {
            best = best.max(c.saturating_sub(p));
        }
    }
    best
}

pub async fn run(
    ctx: &Ctx,
    admin: &Pool,
    issuer: &mut Issuer,
    follower: Follower,
    size: FloodSize,
    min: Duration,
) -> AttackReport {
    let FloodSize {
        streams,
        issue_every,
        hold,
    } = size;
    let mut report = AttackReport::new(vec![
        vec!["streams.too_many_streams_from_source"],
        vec!["streams.slow_reader"],
    ]);
    let n = ctx.api_addrs.len();
    let before: Vec<Option<api::ListenerStatus>> = {
        let mut v = Vec::new();
        for i in 0..n {
            v.push(
                client::status(admin, i, Duration::from_secs(2))
                    .await
                    .and_then(|s| listener(&s, "certificate_streams").cloned()),
            );
        }
        v
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let (light_stop_tx, light_stop_rx) = watch::channel(false);

    // The light node.
    let light = Arc::new(Mutex::new(LightState {
        next_sequence: follower.next_sequence(),
        ..LightState::default()
    }));
    let light_pool = match ctx.pool(LIGHT_SOURCE, 1) {
        Ok(p) => p,
        Err(e) => {
            report.finding(format!("the light node's client: {e}"));
            return report;
        }
    };
    let light_task = tokio::spawn(light_node(
        light_pool,
        follower,
        light.clone(),
        light_stop_rx,
    ));

    // Certificates first, while the light node follows: honest commands
    // meanwhile are checked, not measured.
    let emergencies_before = issuer.issued;
    let mut issue_errors = Vec::new();
    let prepared = Instant::now();
    ctx.honest.set_measured(false);
    let mut chain = issued(ctx, admin).await;
    while chain < CHAIN_BEFORE_ATTACK && prepared.elapsed() < PREPARE_MAX {
        let tick = Instant::now();
        if let Err(e) = issuer.next().await {
            issue_errors.push(e);
        }
        tokio::time::sleep(PREPARE_EVERY.saturating_sub(tick.elapsed())).await;
        chain = issued(ctx, admin).await;
    }
    ctx.honest.set_measured(true);
    report.notes.push(format!(
        "prepared: {chain} certificates issued in {:.1} s before the attack (light node following, honest commands not measured)",
        prepared.elapsed().as_secs_f64()
    ));
    if chain < CHAIN_BEFORE_ATTACK {
        report.finding(format!(
            "only {chain} certificates issued within {} s (wanted {CHAIN_BEFORE_ATTACK} before the attack)",
            PREPARE_MAX.as_secs()
        ));
    }
    let attack_started = Instant::now();
    let issued_before = chain;

    // The attacker.
    let flood = Arc::new(Flood::default());
    let mut tasks = tokio::task::JoinSet::new();
    let mut pools = Vec::new();
    for s in 0..SOURCES {
        match Pool::with_window(
            &ctx.api_addrs,
            &ctx.ca,
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, FIRST_SOURCE + s)),
            1,
            Some(0),
        ) {
            Ok(p) => pools.push(p),
            Err(e) => report.finding(format!("the attacker's client: {e}")),
        }
    }
    if !pools.is_empty() {
        for k in 0..streams {
            let pool = pools[(k / n) % pools.len()].clone();
            tasks.spawn(never_read(
                pool,
                k % n,
                RAMP.mul_f64(k as f64 / streams as f64),
                hold,
                flood.clone(),
                stop_rx.clone(),
            ));
        }
    }
    println!(
        "hostile: stream-flood: {streams} never-reading StreamCertificates from 127.0.0.{FIRST_SOURCE}..{} over every validator; a light node follows from 127.0.0.{LIGHT_SOURCE}; an emergency every {} ms",
        FIRST_SOURCE + SOURCES - 1,
        issue_every.as_millis()
    );

    // Certificates while the attack runs.
    let floor = attack_started + min;
    while Instant::now() < floor {
        let tick = Instant::now();
        if let Err(e) = issuer.next().await {
            issue_errors.push(e);
        }
        let rest = issue_every.saturating_sub(tick.elapsed());
        tokio::time::sleep(rest).await;
    }
    let mut open_at_end = Vec::new();
    for i in 0..n {
        open_at_end.push(
            client::status(admin, i, Duration::from_secs(2))
                .await
                .and_then(|s| listener(&s, "certificate_streams").map(|l| l.open)),
        );
    }
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    report.elapsed = attack_started.elapsed();

    // Every certificate decided during the row issued, then the light node
    // holding all of them (it keeps following meanwhile).
    let settle = Instant::now() + SETTLE;
    let mut target = issued(ctx, admin).await;
    loop {
        let mut pending = 0;
        for i in 0..n {
            if let Some((c, p)) = certificates(admin, i).await {
                target = target.max(c.saturating_sub(p));
                pending += p;
            }
        }
        if pending == 0 || Instant::now() > settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        let have = light
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_sequence
            .saturating_sub(1);
        if have >= target || Instant::now() > settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = light_stop_tx.send(true);
    let _ = light_task.await;

    // What the validators counted.
    for (i, was) in before.iter().enumerate() {
        let now = client::status(admin, i, Duration::from_secs(2))
            .await
            .and_then(|s| listener(&s, "certificate_streams").cloned());
        match (was, &now) {
            (Some(was), Some(now)) => {
                for (rule, k) in refused_delta(was, now) {
                    *report.refusals.entry(format!("streams.{rule}")).or_default() += k;
                }
            }
            _ => report.finding(format!(
                "validator {i}: no \"certificate_streams\" counters in its status (ClusterStatus.listeners)"
            )),
        }
    }
    let attacker_refused = flood
        .refused
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    report.sent = flood.calls.load(Ordering::Relaxed);
    report.notes.push(format!(
        "attacker: {} calls, {} streams opened and held unread for {:.0} s each (at most {} at once; open on the validators at the end of the row: {}), refused as the attacker saw it: {:?}",
        report.sent,
        flood.opened.load(Ordering::Relaxed),
        hold.as_secs_f64(),
        flood.peak_held.load(Ordering::Relaxed),
        open_at_end
            .iter()
            .map(|o| o.map_or("-".to_owned(), |o| o.to_string()))
            .collect::<Vec<_>>()
            .join("/"),
        attacker_refused
    ));
    let light = Arc::try_unwrap(light)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .unwrap_or_default();
    let have = light.next_sequence.saturating_sub(1);
    let during = target.saturating_sub(issued_before);
    report.notes.push(format!(
        "{} emergencies in the row, {during} certificates issued during the attack (sequences {}..={target}); the light node verified {} and holds 1..={have} ({} reconnects)",
        issuer.issued - emergencies_before,
        issued_before + 1,
        light.received,
        light.reconnects
    ));
    if during == 0 {
        report.finding("no certificate was issued during the attack".to_owned());
    }
    if have < target {
        report.finding(format!(
            "the light node holds certificates 1..={have}, but 1..={target} were issued ({} s after the row)",
            SETTLE.as_secs()
        ));
    }
    if !light.refused.is_empty() {
        report.finding(format!(
            "the light node's StreamCertificates was refused: {:?}",
            light.refused
        ));
    }
    for e in light.errors {
        report.finding(format!("the light node refused a certificate: {e}"));
    }
    if let Some(nep) = issuer.shortened {
        match super::certs::proposal(admin, 0, nep).await.map(|p| p.stage) {
            Some(s) if s == api::Stage::Ratified as i32 => {}
            Some(s) if s == api::Stage::Active as i32 => report.notes.push(format!(
                "NEP-{} (two-day ratification votes) is still ACTIVE, its ratification not decided yet",
                nep.0
            )),
            other => report.finding(format!(
                "NEP-{} (two-day ratification votes) was not ratified: stage {:?}",
                nep.0,
                other.and_then(|s| api::Stage::try_from(s).ok())
            )),
        }
    }
    for e in issue_errors.iter().take(3) {
        report.finding(format!("an emergency of the issuer: {e}"));
    }
    report.check_expected();
    report
}
