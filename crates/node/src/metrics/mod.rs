//! Prometheus metrics (`prometheus-client`), served with `/healthz` and
//! `/readyz` on the metrics listener of their own (`[metrics] listen`,
//! [`server`]).
//!
//! Two kinds of families:
//! * recorded where events happen (fsync, append, apply and snapshot
//!   durations, peer round trips, API requests, refusals, certificates):
//!   the process-wide [`Metrics`] ([`metrics()`]);
//! * computed at scrape time from the validator's own state (role, term,
//!   indexes, state bytes, listeners, governance): [`ScrapeView`], taken by
//!   the server just before it encodes, under one read lock of the state.
//!
//! Every label takes values from a bounded set: RPC and method names,
//! rules, reasons, stages, NEP types, listener names and the committee's
//! validator ids. No account, NEP id or source address is ever a label.
//! One process runs one validator (the simulation runs several in one
//! process: its event counters add up, it serves no metrics).

#[cfg(test)]
mod health_tests;
pub mod layer;
pub mod server;

use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::error::NodeError;

/// A label set: bounded keys and values (see the module documentation).
pub type Labels = Vec<(&'static str, String)>;

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// The families recorded where events happen.
pub struct Metrics {
    registry: Registry,
    pub fsync_seconds: Histogram,
    pub append_seconds: Histogram,
    pub apply_seconds: Histogram,
    pub snapshot_build_seconds: Histogram,
    pub snapshot_install_seconds: Histogram,
    pub snapshot_bytes: Gauge,
    pub entries_applied: Counter,
    pub entries_not_applied_diverged: Counter,
    pub commands_per_entry: Histogram,
    pub apply_refusals: Family<Labels, Counter>,
    pub admission_refusals: Family<Labels, Counter>,
    pub proposals_failed: Family<Labels, Counter>,
    pub proposals_committed: Counter,
    pub leader_changes: Counter,
    pub elections: Counter,
    pub peer_rtt_seconds: HistogramFamily,
    pub peer_send_failures: Family<Labels, Counter>,
    pub api_requests: Family<Labels, Counter>,
    pub certificates_issued: Family<Labels, Counter>,
    pub issuance_seconds: Histogram,
    pub shares_received: Counter,
    pub shares_refused: Family<Labels, Counter>,
    pub certificate_offers: Family<Labels, Counter>,
    pub recoveries: Counter,
    view: ViewCollector,
}

fn duration_buckets() -> Histogram {
    // 100 µs .. ~52 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

fn rtt_buckets() -> Histogram {
    // 50 µs .. ~26 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("neuroshard");
        let m = Metrics {
            registry: Registry::default(),
            fsync_seconds: duration_buckets(),
            append_seconds: duration_buckets(),
            apply_seconds: duration_buckets(),
            snapshot_build_seconds: duration_buckets(),
            snapshot_install_seconds: duration_buckets(),
            snapshot_bytes: Gauge::default(),
            entries_applied: Counter::default(),
            entries_not_applied_diverged: Counter::default(),
            commands_per_entry: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            apply_refusals: Family::default(),
            admission_refusals: Family::default(),
            proposals_failed: Family::default(),
            proposals_committed: Counter::default(),
            leader_changes: Counter::default(),
            elections: Counter::default(),
            peer_rtt_seconds: Family::new_with_constructor(rtt_buckets),
            peer_send_failures: Family::default(),
            api_requests: Family::default(),
            certificates_issued: Family::default(),
            issuance_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            shares_received: Counter::default(),
            shares_refused: Family::default(),
            certificate_offers: Family::default(),
            recoveries: Counter::default(),
            view: ViewCollector::default(),
        };
        registry.register(
            "disk_fsync_duration_seconds",
            "Duration of one store sync: of the Raft log's segment (the group commit every acknowledged write waits for), or of sled (flush and fdatasync of its files)",
            m.fsync_seconds.clone(),
        );
        registry.register(
            "disk_append_duration_seconds",
            "Duration of writing one Raft log append and handing it to the group commit (the sync itself is disk_fsync_duration_seconds)",
            m.append_seconds.clone(),
        );
        registry.register(
            "apply_duration_seconds",
            "Duration of applying one batch of committed entries to the governance state machine",
            m.apply_seconds.clone(),
        );
        registry.register(
            "snapshot_build_duration_seconds",
            "Duration of building a snapshot from the certified checkpoint and storing it",
            m.snapshot_build_seconds.clone(),
        );
        registry.register(
            "snapshot_install_duration_seconds",
            "Duration of installing a received, verified snapshot",
            m.snapshot_install_seconds.clone(),
        );
        registry.register(
            "snapshot_size_bytes",
            "Size of the latest snapshot this validator built or installed, in bytes",
            m.snapshot_bytes.clone(),
        );
        registry.register(
            "proposals_applied",
            "Log entries applied to the state machine (blank and membership entries included)",
            m.entries_applied.clone(),
        );
        registry.register(
            "diverged_entries_skipped",
            "Governance log entries a diverged replica kept in its log but did not apply (its state is frozen where it diverged)",
            m.entries_not_applied_diverged.clone(),
        );
        registry.register(
            "commands_per_entry",
            "Client commands per applied Commands entry (the leader's batching)",
            m.commands_per_entry.clone(),
        );
        registry.register(
            "apply_refusals",
            "Commands and entries the state machine refused when applying them, by rule",
            m.apply_refusals.clone(),
        );
        registry.register(
            "admission_refusals",
            "Commands refused by admission before they were proposed, by rule",
            m.admission_refusals.clone(),
        );
        registry.register(
            "proposals_failed",
            "Client commands this validator accepted but could not get applied, by reason (no leader, timeout, overloaded, shutting down, forward)",
            m.proposals_failed.clone(),
        );
        registry.register(
            "proposals_committed",
            "Log entries this validator saw committed",
            m.proposals_committed.clone(),
        );
        registry.register(
            "leader_changes",
            "Times the leader this validator knows changed (including to no leader)",
            m.leader_changes.clone(),
        );
        registry.register(
            "elections",
            "Times this validator became a candidate",
            m.elections.clone(),
        );
        registry.register(
            "peer_round_trip_seconds",
            "Round trip of the Raft RPCs this validator sent, by peer and RPC (successful calls)",
            m.peer_rtt_seconds.clone(),
        );
        registry.register(
            "peer_send_failures",
            "Raft RPCs to a peer that failed (unreachable, timeout, refused), by peer and RPC",
            m.peer_send_failures.clone(),
        );
        registry.register(
            "api_requests",
            "gRPC requests answered, by listener, method and gRPC status code",
            m.api_requests.clone(),
        );
        registry.register(
            "certificates_issued",
            "CertificateIssued entries applied, by certificate kind",
            m.certificates_issued.clone(),
        );
        registry.register(
            "certificate_issuance_seconds",
            "From applying the entry that decided a certificate to applying its CertificateIssued entry",
            m.issuance_seconds.clone(),
        );
        registry.register(
            "signature_shares_received",
            "Certificate signature shares this validator received from the others",
            m.shares_received.clone(),
        );
        registry.register(
            "signature_shares_refused",
            "Certificate signature shares refused, by reason",
            m.shares_refused.clone(),
        );
        registry.register(
            "certificate_offers",
            "Combined certificates a leader offered this validator before proposing them, by verdict (valid, invalid; refused: not from this replica's leader, too large, undecodable or timed out)",
            m.certificate_offers.clone(),
        );
        registry.register(
            "recoveries",
            "Recoveries of a data directory this process completed (--recover)",
            m.recoveries.clone(),
        );
        registry.register_collector(Box::new(m.view.clone()));
        Metrics { registry, ..m }
    }

    /// The whole exposition (Prometheus text format 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// Sets what the scrape-time families show.
    pub fn set_view(&self, view: ScrapeView) {
        *self.view.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(view);
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

pub fn label(key: &'static str, value: impl Into<String>) -> Labels {
    vec![(key, value.into())]
}

/// Observes its lifetime in a histogram when dropped (every return path).
pub struct Timer<'a> {
    histogram: &'a Histogram,
    started: Instant,
}

impl<'a> Timer<'a> {
    pub fn new(histogram: &'a Histogram) -> Self {
        Self {
            histogram,
            started: Instant::now(),
        }
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        observe_since(self.histogram, self.started);
    }
}

/// Observes the seconds since `start` in `h`.
pub fn observe_since(h: &Histogram, start: Instant) {
    h.observe(start.elapsed().as_secs_f64());
}

/// Creates the series of the bounded label sets known at start, so every
/// family is in the exposition (and `rate()` has a series) before its
/// first event: peers × RPCs, certificate kinds, failure reasons, share
/// refusals, and the most common refusal rules.
pub fn init(own: u64, members: impl IntoIterator<Item = u64>) {
    let m = metrics();
    for peer in members.into_iter().filter(|p| *p != own) {
        for rpc in ["append_entries", "vote", "install_snapshot"] {
            let labels = vec![("peer", peer.to_string()), ("rpc", rpc.to_owned())];
            let _ = m.peer_rtt_seconds.get_or_create(&labels);
            let _ = m.peer_send_failures.get_or_create(&labels);
        }
    }
    for kind in ["activation", "cancellation", "revocation"] {
        let _ = m.certificates_issued.get_or_create(&label("kind", kind));
    }
    for reason in FAILURE_REASONS {
        let _ = m.proposals_failed.get_or_create(&label("reason", *reason));
    }
    for reason in [
        "unknown_validator",
        "outside_window",
        "other_payload",
        "invalid",
    ] {
        let _ = m.shares_refused.get_or_create(&label("reason", reason));
    }
    for verdict in ["valid", "invalid", "refused"] {
        let _ = m
            .certificate_offers
            .get_or_create(&label("verdict", verdict));
    }
    for rule in ["bad_signature", "nonce_replay"] {
        let _ = m.apply_refusals.get_or_create(&label("rule", rule));
        let _ = m.admission_refusals.get_or_create(&label("rule", rule));
    }
    for rule in [
        "too_many_pending_for_account",
        "too_many_pending_for_source",
    ] {
        let _ = m.admission_refusals.get_or_create(&label("rule", rule));
    }
}

/// The `reason` values of `neuroshard_proposals_failed_total`.
pub const FAILURE_REASONS: &[&str] = &[
    "no_leader",
    "not_leader",
    "overloaded",
    "timeout",
    "shutting_down",
    "forward",
    "malformed",
    "other",
];

/// A peer RPC's outcome: its round trip when it succeeded, a send failure
/// otherwise.
pub fn peer_rpc<T>(
    peer: u64,
    rpc: &'static str,
    start: Instant,
    result: &Result<T, tonic::Status>,
) {
    let labels = vec![("peer", peer.to_string()), ("rpc", rpc.to_owned())];
    match result {
        Ok(_) => metrics()
            .peer_rtt_seconds
            .get_or_create(&labels)
            .observe(start.elapsed().as_secs_f64()),
        Err(status) => {
            metrics().peer_send_failures.get_or_create(&labels).inc();
            // Repeats every heartbeat while the peer is unreachable: one
            // line per 10 s per peer.
            crate::limited!(
                crate::logging::RETRIES,
                key = peer,
                warn!(peer, rpc, code = ?status.code(), error = %status.message().chars().take(256).collect::<String>().escape_debug(), "peer RPC failed")
            );
        }
    }
}

/// A client command that failed on the write path.
pub fn submit_failed(e: &NodeError) {
    let m = metrics();
    match e {
        NodeError::Admission(_) | NodeError::Quota(_) => {
            m.admission_refusals
                .get_or_create(&label("rule", failure_rule(e)))
                .inc();
        }
        other => {
            m.proposals_failed
                .get_or_create(&label("reason", failure_rule(other)))
                .inc();
        }
    }
}

/// The rule (admission, quota) or reason (everything else) a failed client
/// command is counted and logged under: one of a fixed set.
pub fn failure_rule(e: &NodeError) -> &'static str {
    match e {
        NodeError::Admission(g) => g.rule(),
        NodeError::Quota(q) => q.rule(),
        NodeError::NoLeader => "no_leader",
        NodeError::NotLeader { .. } => "not_leader",
        NodeError::Overloaded { .. } => "overloaded",
        NodeError::Timeout { .. } => "timeout",
        NodeError::ShuttingDown => "shutting_down",
        NodeError::Forward { .. } => "forward",
        NodeError::Malformed(_) => "malformed",
        _ => "other",
    }
}

/// What the scrape-time families show: taken from the validator's state
/// just before a scrape is encoded.
#[derive(Clone, Debug, Default)]
pub struct ScrapeView {
    pub has_leader: bool,
    pub is_leader: bool,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub purged_index: u64,
    pub snapshot_index: u64,
    pub proposals_pending: u64,
    pub state_bytes: u64,
    pub state_budget_bytes: u64,
    pub certified_checkpoint: u64,
    pub diverged: bool,
    pub recovering: bool,
    pub ignored_validators: u64,
    pub ready: bool,
    /// (rule, count)
    pub safety_refusals: Vec<(String, u64)>,
    /// (listener, open, accepted, committee refused, [(reason, count)])
    pub listeners: Vec<ListenerView>,
    pub stream_subscribers: u64,
    pub unissued_certificates: u64,
    pub oldest_unissued_certificate_seconds: f64,
    /// (stage, type, count)
    pub proposals: Vec<(String, String, u64)>,
    pub open_votes: u64,
    /// Lowest and highest participation (basis points of the snapshot
    /// power) and yes share (basis points of yes + no) among open votes.
    pub participation_bp: Option<(u64, u64)>,
    pub yes_bp: Option<(u64, u64)>,
    pub quorum_bp: u64,
    pub approval_bp: u64,
    pub total_staked: u64,
    pub protocol_version: String,
    pub committed_time_lag_seconds: f64,
}

#[derive(Clone, Debug, Default)]
pub struct ListenerView {
    pub name: String,
    pub open: u64,
    pub accepted: u64,
    pub committee_refused: u64,
    pub refused: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Default)]
struct ViewCollector(std::sync::Arc<Mutex<Option<ScrapeView>>>);

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn gauge_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn b(v: bool) -> f64 {
    if v {
        1.0
    } else {
        0.0
    }
}

impl Collector for ViewCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(v) = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return Ok(());
        };
        let e = &mut e;
        gauge(
            e,
            "has_leader",
            "1 when this validator knows a leader",
            b(v.has_leader),
        )?;
        gauge(
            e,
            "is_leader",
            "1 when this validator is the leader",
            b(v.is_leader),
        )?;
        gauge(
            e,
            "raft_term",
            "The Raft term this validator is in",
            v.term as f64,
        )?;
        gauge(
            e,
            "raft_committed_index",
            "Highest log index this validator knows committed",
            v.commit_index as f64,
        )?;
        gauge(
            e,
            "raft_applied_index",
            "Highest log index applied to the state machine",
            v.applied_index as f64,
        )?;
        gauge(
            e,
            "raft_apply_lag_entries",
            "Committed index minus applied index: entries committed and not yet applied",
            v.commit_index.saturating_sub(v.applied_index) as f64,
        )?;
        gauge(
            e,
            "raft_last_log_index",
            "Last index in this validator's Raft log",
            v.last_log_index as f64,
        )?;
        gauge(
            e,
            "raft_log_entries",
            "Entries kept in the Raft log (last log index minus purged index)",
            v.last_log_index.saturating_sub(v.purged_index) as f64,
        )?;
        gauge(
            e,
            "snapshot_index",
            "Log index of the latest snapshot (0: none)",
            v.snapshot_index as f64,
        )?;
        gauge(
            e,
            "proposals_pending",
            "Client commands waiting at this validator (admitted, not answered)",
            v.proposals_pending as f64,
        )?;
        gauge(
            e,
            "state_bytes",
            "Bytes the governance state is charged against its budget",
            v.state_bytes as f64,
        )?;
        gauge(
            e,
            "state_budget_bytes",
            "The state budget, gov.state_budget_bytes",
            v.state_budget_bytes as f64,
        )?;
        gauge(
            e,
            "checkpoint_certified_index",
            "Log index of the latest checkpoint the committee certified (0: none)",
            v.certified_checkpoint as f64,
        )?;
        gauge(
            e,
            "diverged",
            "1 when this replica's state differs from a checkpoint the committee certified (it signs nothing more)",
            b(v.diverged),
        )?;
        gauge(
            e,
            "recovering",
            "1 while this validator recovers its data directory (no votes until caught up)",
            b(v.recovering),
        )?;
        gauge(
            e,
            "ignored_validators",
            "Validators this one ignores after refusing what they sent",
            v.ignored_validators as f64,
        )?;
        gauge(
            e,
            "ready",
            "1 when /readyz and gRPC health answer SERVING (leader known, caught up, not recovering, not diverged, not shutting down)",
            b(v.ready),
        )?;
        let rules: Vec<(Labels, u64)> = v
            .safety_refusals
            .iter()
            .map(|(r, n)| (label("rule", r.clone()), *n))
            .collect();
        counter_family(
            e,
            "safety_refusals",
            "Messages from other validators refused before Raft, by rule (tick_ahead, foreign_membership, ticks_withheld, ...)",
            &rules,
        )?;
        let open: Vec<(Labels, f64)> = v
            .listeners
            .iter()
            .map(|l| (label("listener", l.name.clone()), l.open as f64))
            .collect();
        gauge_family(
            e,
            "connections_open",
            "Connections (certificate streams) open now, handshaking ones included, by listener",
            &open,
        )?;
        let accepted: Vec<(Labels, u64)> = v
            .listeners
            .iter()
            .map(|l| (label("listener", l.name.clone()), l.accepted))
            .collect();
        counter_family(
            e,
            "connections_accepted",
            "Connections (certificate streams) admitted, by listener",
            &accepted,
        )?;
        let mut refused = Vec::new();
        let mut handshakes = Vec::new();
        for l in &v.listeners {
            // Every reason, 0 until it happens.
            let mut all: std::collections::BTreeMap<String, u64> =
                crate::transport::conn::Refusal::ALL
                    .iter()
                    .map(|r| (r.as_str().to_owned(), 0))
                    .collect();
            all.extend(l.refused.iter().cloned());
            for (reason, n) in &all {
                let labels = vec![("listener", l.name.clone()), ("reason", reason.clone())];
                if reason.starts_with("handshake") {
                    handshakes.push((labels.clone(), *n));
                }
                refused.push((labels, *n));
            }
        }
        counter_family(
            e,
            "connections_refused",
            "Connections refused or closed by a limit, by listener and reason",
            &refused,
        )?;
        counter_family(
            e,
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out, by listener and reason",
            &handshakes,
        )?;
        let committee: Vec<(Labels, u64)> = v
            .listeners
            .iter()
            .filter(|l| l.name == "peer")
            .map(|l| (label("listener", l.name.clone()), l.committee_refused))
            .collect();
        counter_family(
            e,
            "committee_connections_refused",
            "Refusals of connections from the committee's own validators (should stay 0)",
            &committee,
        )?;
        gauge(
            e,
            "stream_subscribers",
            "StreamCertificates subscribers connected now",
            v.stream_subscribers as f64,
        )?;
        gauge(
            e,
            "certificates_unissued",
            "Certificates this validator saw decided and not yet issued",
            v.unissued_certificates as f64,
        )?;
        gauge(
            e,
            "certificate_oldest_unissued_age_seconds",
            "Age of the oldest certificate decided and not yet issued (0: none)",
            v.oldest_unissued_certificate_seconds,
        )?;
        let proposals: Vec<(Labels, f64)> = v
            .proposals
            .iter()
            .map(|(stage, ty, n)| {
                (
                    vec![("stage", stage.clone()), ("type", ty.clone())],
                    *n as f64,
                )
            })
            .collect();
        gauge_family(
            e,
            "governance_proposals",
            "NEPs in the committed state, by stage and type",
            &proposals,
        )?;
        gauge(
            e,
            "governance_open_votes",
            "NEPs whose vote is open",
            v.open_votes as f64,
        )?;
        // 0 for both bounds while no vote is open.
        let minmax = |p: Option<(u64, u64)>| -> Vec<(Labels, f64)> {
            let (lo, hi) = p.unwrap_or((0, 0));
            vec![
                (label("bound", "min"), lo as f64),
                (label("bound", "max"), hi as f64),
            ]
        };
        gauge_family(
            e,
            "governance_vote_participation_bp",
            "Participation of open votes in basis points of their snapshot power: the lowest (bound=min) and highest (bound=max); quorum is governance_quorum_bp",
            &minmax(v.participation_bp),
        )?;
        gauge_family(
            e,
            "governance_vote_yes_bp",
            "Yes share of open votes in basis points of yes + no: the lowest (bound=min) and highest (bound=max); approval is governance_approval_bp",
            &minmax(v.yes_bp),
        )?;
        gauge(
            e,
            "governance_quorum_bp",
            "The quorum open votes need, in basis points of the snapshot power (0: no open vote)",
            v.quorum_bp as f64,
        )?;
        gauge(
            e,
            "governance_approval_bp",
            "The approval share open votes need, in basis points (0: no open vote)",
            v.approval_bp as f64,
        )?;
        gauge(
            e,
            "governance_staked",
            "Total staked, in the smallest unit",
            v.total_staked as f64,
        )?;
        gauge_family(
            e,
            "governance_protocol_version",
            "The protocol version in force (value 1, the version in the label)",
            &[(label("version", v.protocol_version.clone()), 1.0)],
        )?;
        gauge(
            e,
            "governance_committed_time_lag_seconds",
            "Committed governance time minus this validator's clock, in seconds (negative: behind; a healthy committee stays within a few tick intervals)",
            v.committed_time_lag_seconds,
        )?;
        Ok(())
    }
}

/// How far behind its commit index a replica may be applying and still be
/// ready.
pub const CATCHING_UP_ENTRIES: u64 = 128;

/// Nothing is slower than this between two scrapes' refresh.
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the observer refreshes health and the committed counter.
pub const OBSERVE_EVERY: Duration = Duration::from_millis(500);

/// Follows the Raft core (leader changes, elections, committed entries)
/// and keeps gRPC health (`grpc.health.v1`, the server's "" and the
/// governance service) in step with [`crate::NodeStatus::not_serving`];
/// NOT_SERVING as soon as `shutdown` turns true.
pub async fn observe(
    core: std::sync::Arc<crate::node::NodeCore>,
    health: tonic_health::server::HealthReporter,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let m = metrics();
    let mut raft = core.raft.metrics();
    let (mut leader, mut state) = {
        let r = raft.borrow();
        (r.current_leader, r.state)
    };
    let mut committed: Option<u64> = None;
    let mut serving: Option<bool> = None;
    let mut reasons: Vec<String> = Vec::new();
    let mut every = tokio::time::interval(OBSERVE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                set_health(&health, false).await;
                return;
            }
            changed = raft.changed() => {
                if changed.is_err() {
                    set_health(&health, false).await;
                    return;
                }
                let r = raft.borrow().clone();
                if r.current_leader != leader {
                    m.leader_changes.inc();
                    tracing::info!(
                        term = r.current_term,
                        leader = r.current_leader,
                        previous = leader,
                        "leader changed"
                    );
                    leader = r.current_leader;
                    // Health follows a leader change at once.
                    every.reset_immediately();
                }
                if r.state != state {
                    if r.state == openraft::ServerState::Candidate {
                        m.elections.inc();
                    }
                    state = r.state;
                }
            }
            _ = every.tick() => {
                let status = core.status().await;
                if let Some(c) = status.commit_index {
                    if let Some(before) = committed {
                        m.proposals_committed.inc_by(c.saturating_sub(before));
                    }
                    committed = Some(c);
                }
                let ok = status.not_serving.is_empty();
                if serving != Some(ok) || (!ok && reasons != status.not_serving) {
                    if ok {
                        tracing::info!(term = status.term, leader = status.leader, "health: SERVING");
                    } else {
                        tracing::warn!(term = status.term, reasons = ?status.not_serving, "health: NOT_SERVING");
                    }
                    set_health(&health, ok).await;
                    serving = Some(ok);
                    reasons = status.not_serving;
                }
            }
        }
    }
}

/// Sets the server's ("") and the governance service's health.
pub async fn set_health(health: &tonic_health::server::HealthReporter, serving: bool) {
    use tonic_health::ServingStatus;
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    health.set_service_status("", status).await;
    health
        .set_service_status(crate::transport::governance_service::SERVICE_NAME, status)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_the_prefix() {
        init(0, [0, 1, 2]);
        metrics().set_view(ScrapeView {
            listeners: vec![ListenerView {
                name: "peer".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let text = metrics().encode();
        let types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        assert!(types.len() > 50, "{} families", types.len());
        for t in &types {
            let name = t.split(' ').next().unwrap_or_default();
            assert!(name.starts_with("neuroshard_"), "{name}");
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no help text"
            );
            if t.ends_with(" counter") {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
        for family in [
            "neuroshard_disk_fsync_duration_seconds",
            "neuroshard_peer_round_trip_seconds",
            "neuroshard_leader_changes_total",
            "neuroshard_certificates_issued_total",
            "neuroshard_connections_refused_total",
            "neuroshard_tls_handshake_failures_total",
            "neuroshard_governance_vote_participation_bp",
        ] {
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
        }
        assert!(text.contains(r#"neuroshard_peer_send_failures_total{peer="2",rpc="vote"}"#));
        assert!(
            !text.contains(r#"peer="0""#),
            "no series for the validator itself"
        );
    }
}
