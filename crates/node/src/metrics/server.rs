//! The metrics listener: `GET /metrics` (Prometheus text format 0.0.4),
//! `/healthz` (the process answers) and `/readyz` (200 when it would
//! answer SERVING to gRPC health, 503 with the reasons otherwise).
//!
//! Plain HTTP/1.1, one request per connection (`Connection: close`), at
//! most [`MAX_CONNECTIONS`] at once, requests up to [`MAX_REQUEST_BYTES`]
//! read within [`REQUEST_TIMEOUT`]: it is meant for a monitoring network
//! or loopback, not the internet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use neuroshard_governance::{ProposalFilter, Stage};

use super::{metrics, ListenerView, ScrapeView};
use crate::clock::Clock;
use crate::node::NodeCore;

pub const MAX_CONNECTIONS: usize = 16;
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the metrics listener until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    core: Arc<NodeCore>,
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Scrapes refresh the shared view one at a time.
    let scrape = Arc::new(tokio::sync::Mutex::new(()));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                crate::limited!(
                    crate::logging::REFUSALS,
                    warn!(error = %e, "metrics listener: accept failed")
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Over the limit: closed at once.
            continue;
        };
        let core = core.clone();
        let clock = clock.clone();
        let scrape = scrape.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(
                REQUEST_TIMEOUT + super::REFRESH_TIMEOUT,
                handle(stream, &core, clock.as_ref(), &scrape),
            )
            .await;
        });
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                return Some(());
            }
            if buf.len() > MAX_REQUEST_BYTES {
                return None;
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read).await.ok()??;
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next()?.to_owned();
    Some(line)
}

async fn handle(
    mut stream: TcpStream,
    core: &NodeCore,
    clock: &dyn Clock,
    scrape: &tokio::sync::Mutex<()>,
) {
    let Some(line) = read_request(&mut stream).await else {
        return;
    };
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let (code, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let _one = scrape.lock().await;
            match tokio::time::timeout(super::REFRESH_TIMEOUT, view(core, clock)).await {
                Ok(v) => metrics().set_view(v),
                Err(_) => tracing::warn!("metrics: the validator's status took too long"),
            }
            (
                "200 OK",
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                metrics().encode(),
            )
        }
        ("GET" | "HEAD", "/healthz") => ("200 OK", "text/plain; charset=utf-8", "ok\n".into()),
        ("GET" | "HEAD", "/readyz") => {
            let status = core.status().await;
            if status.not_serving.is_empty() {
                ("200 OK", "text/plain; charset=utf-8", "ready\n".into())
            } else {
                let mut body = String::from("not ready:\n");
                for r in &status.not_serving {
                    body.push_str(r);
                    body.push('\n');
                }
                ("503 Service Unavailable", "text/plain; charset=utf-8", body)
            }
        }
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "/metrics, /healthz, /readyz\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "GET only\n".into(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    if method != "HEAD" {
        let _ = stream.write_all(body.as_bytes()).await;
    }
    let _ = stream.shutdown().await;
}

fn bp(part: u128, whole: u128) -> u64 {
    part.saturating_mul(10_000)
        .checked_div(whole)
        .map_or(0, |v| u64::try_from(v).unwrap_or(u64::MAX))
}

fn widen(range: &mut Option<(u64, u64)>, v: u64) {
    *range = Some(match *range {
        None => (v, v),
        Some((lo, hi)) => (lo.min(v), hi.max(v)),
    });
}

/// What the scrape-time families show now.
pub async fn view(core: &NodeCore, clock: &dyn Clock) -> ScrapeView {
    let status = core.status().await;
    let mut v = ScrapeView {
        has_leader: status.leader.is_some(),
        is_leader: status.role == "leader",
        term: status.term,
        commit_index: status.commit_index.unwrap_or(0),
        applied_index: status.applied_index.unwrap_or(0),
        last_log_index: status.last_log_index.unwrap_or(0),
        purged_index: status.purged_index.unwrap_or(0),
        snapshot_index: status.snapshot_index.unwrap_or(0),
        proposals_pending: core.submitter.pending() as u64,
        state_bytes: status.state_bytes,
        state_budget_bytes: status.state_budget_bytes,
        certified_checkpoint: status.certified_checkpoint.unwrap_or(0),
        diverged: !status.diverged.is_empty(),
        recovering: status.recovering_until.is_some(),
        ignored_validators: status.ignored.len() as u64,
        ready: status.not_serving.is_empty(),
        safety_refusals: status.safety_refusals.clone().into_iter().collect(),
        ..Default::default()
    };
    for l in &core.connections {
        let s = l.status();
        if s.name == "certificate_streams" {
            v.stream_subscribers = s.open;
        }
        v.listeners.push(ListenerView {
            name: s.name,
            open: s.open,
            accepted: s.accepted,
            committee_refused: s.committee_refused,
            refused: s.refused.into_iter().collect(),
        });
    }
    let (unissued, oldest) = core.issuance.unissued(tokio::time::Instant::now());
    v.unissued_certificates = unissued;
    v.oldest_unissued_certificate_seconds = oldest.as_secs_f64();
    let now_ms = clock.now_ms();
    let m = core.machine.read();
    let state = &m.state;
    v.total_staked = state.supply().staked;
    v.protocol_version = state.protocol_version().to_string();
    v.committed_time_lag_seconds = (state.committed_time_ms() as f64 - now_ms as f64) / 1000.0;
    let mut by: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
    let mut filter = ProposalFilter::default();
    loop {
        let page = state.proposals(&filter);
        let Some(last) = page.last().map(|p| p.id) else {
            break;
        };
        for p in page {
            *by.entry((p.stage.name(), p.content.nep_type.name()))
                .or_default() += 1;
            if let Some(vote) = p
                .vote
                .as_ref()
                .filter(|vb| p.stage == Stage::Voting && vb.closed.is_none())
            {
                v.open_votes += 1;
                let t = &vote.tally;
                widen(
                    &mut v.participation_bp,
                    bp(t.participating(), t.total_power),
                );
                widen(&mut v.yes_bp, bp(t.yes, t.yes.saturating_add(t.no)));
                v.quorum_bp = u64::from(vote.quorum_bps.0);
                v.approval_bp = u64::from(vote.approval_bps.0);
            }
        }
        filter.start_after = Some(last);
    }
    v.proposals = by
        .into_iter()
        .map(|((stage, ty), n)| (stage.to_owned(), ty.to_owned(), n))
        .collect();
    v
}
