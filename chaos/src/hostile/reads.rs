//! Read flood (issue 10, item 4): at least 5 000 `GetStatus` and
//! `GetTally` calls per second, spread over every validator, against a
//! state filled to at least half its budget, while the honest clients
//! vote and transfer. Reads must not delay apply: the row passes when the
//! honest p99 stays within the suite's factor of the baseline's, like
//! every other row; the achieved rate is measured and printed, and a rate
//! below 5 000/s fails the row.
//!
//! Half the reads are `GetStatus` (the state hash, the state's charge, the
//! certificate counts), half `GetTally` of the honest NEP with default
//! read options (linearizable, as `neuroshard nep tally` asks), from four
//! loopback addresses (127.0.0.40–43), two connections each per
//! validator.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use neuroshard_node::api_proto as api;
use neuroshard_node::transport::api_errors::detail_of;

use super::client::Pool;
use super::report::AttackReport;
use super::Ctx;

/// The rate the row must reach.
pub const MIN_RATE: f64 = 5_000.0;
/// Reads in flight at once.
pub const IN_FLIGHT: usize = 128;
pub const FIRST_SOURCE: u8 = 40;
pub const SOURCES: u8 = 4;
/// Connections per source and validator.
pub const CONNECTIONS: usize = 2;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    status_ok: AtomicU64,
    tally_ok: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    /// Latency of answered reads, µs (a sample: every 8th of each kind).
    status_us: Mutex<Vec<u64>>,
    tally_us: Mutex<Vec<u64>>,
}

pub async fn run(ctx: &Ctx, rate: f64, tally_stale: bool, duration: Duration) -> AttackReport {
    let mut report = AttackReport::new(Vec::new());
    let mut pools = Vec::new();
    for s in 0..SOURCES {
        match Pool::new(
            &ctx.api_addrs,
            &ctx.ca,
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, FIRST_SOURCE + s)),
            CONNECTIONS,
        ) {
            Ok(p) => pools.push(p),
            Err(e) => {
                report.finding(format!("the reader's client: {e}"));
                return report;
            }
        }
    }
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let total = (duration.as_secs_f64() * rate) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let nep = ctx.honest_nep.0;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (pools, next, counts) = (pools.clone(), next.clone(), counts.clone());
        workers.spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total {
                    break;
                }
                let slot = started + period.mul_f64(k as f64);
                tokio::time::sleep_until(slot.into()).await;
                let pool = &pools[(k as usize / 4) % pools.len()];
                let mut c = pool.client(k as usize);
                counts.sent.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let status = k.is_multiple_of(2);
                let answer = if status {
                    tokio::time::timeout(TIMEOUT, c.get_status(api::GetStatusRequest {}))
                        .await
                        .map(|r| r.map(|_| ()))
                } else {
                    tokio::time::timeout(
                        TIMEOUT,
                        c.get_tally(api::GetTallyRequest {
                            nep,
                            read: tally_stale.then_some(api::ReadOptions { stale: true }),
                        }),
                    )
                    .await
                    .map(|r| r.map(|_| ()))
                };
                match answer {
                    Ok(Ok(())) => {
                        if status {
                            counts.status_ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            counts.tally_ok.fetch_add(1, Ordering::Relaxed);
                        }
                        if (k / 2).is_multiple_of(8) {
                            let sample = if status {
                                &counts.status_us
                            } else {
                                &counts.tally_us
                            };
                            sample
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(t.elapsed().as_micros() as u64);
                        }
                    }
                    Ok(Err(s)) => {
                        let rule = detail_of(&s)
                            .map(|d| d.rule)
                            .unwrap_or_else(|| format!("status_{:?}", s.code()).to_lowercase());
                        *counts
                            .errors
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(rule)
                            .or_default() += 1;
                    }
                    Err(_) => {
                        *counts
                            .errors
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry("client_timeout".into())
                            .or_default() += 1;
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    report.elapsed = started.elapsed();
    report.sent = counts.sent.load(Ordering::Relaxed);
    let errors = counts
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (rule, n) in &errors {
        *report.refusals.entry(rule.clone()).or_default() += n;
    }
    let ok = counts.status_ok.load(Ordering::Relaxed) + counts.tally_ok.load(Ordering::Relaxed);
    let secs = report.elapsed.as_secs_f64().max(0.001);
    let quantiles = |m: &Mutex<Vec<u64>>| -> String {
        let mut lat = m.lock().unwrap_or_else(|p| p.into_inner()).clone();
        lat.sort_unstable();
        if lat.is_empty() {
            return "-".to_owned();
        }
        let q = |f: f64| {
            let i = ((f * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
            lat[i] as f64 / 1e3
        };
        format!("p50 {:.1} ms p99 {:.1} ms", q(0.5), q(0.99))
    };
    report.notes.push(format!(
        "{} reads in {secs:.1} s = {:.0}/s sent (target {rate:.0}/s, {IN_FLIGHT} in flight), {:.0}/s answered: {} GetStatus ({}), {} GetTally {} ({}); errors {:?}",
        report.sent,
        report.sent as f64 / secs,
        ok as f64 / secs,
        counts.status_ok.load(Ordering::Relaxed),
        quantiles(&counts.status_us),
        counts.tally_ok.load(Ordering::Relaxed),
        if tally_stale { "stale" } else { "linearizable" },
        quantiles(&counts.tally_us),
        errors
    ));
    let answered = ok as f64 / secs;
    if answered < MIN_RATE {
        report.finding(format!(
            "{answered:.0} reads/s answered, below the {MIN_RATE:.0}/s the row must reach (target {rate:.0}/s)"
        ));
    }
    report
}
