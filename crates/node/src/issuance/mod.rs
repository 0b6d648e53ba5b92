//! Certificate issuance (DESIGN §5), run by every validator.
//!
//! After entries are applied, the issuer looks at the certificates its own
//! replica has decided but not yet issued (`pending_certificates`). For each
//! it signs its BLS share of the payload's signing message ([`signer`]),
//! unless the decision's committed time runs more than
//! `gov.max_clock_skew_ms` ahead of its own clock, and sends the share to
//! the leader over the peer listener (`SubmitSignatureShare`). The leader's
//! issuer verifies the shares it receives, combines t+1 of them and proposes
//! a `CertificateIssued` entry ([`collector`]); every replica verifies the
//! combined signature before applying it, and the state machine records a
//! sequence only once, so a certificate is issued exactly once however many
//! leaders propose it.
//!
//! Shares are re-sent at once when the leader changes and every
//! [`RESEND_INTERVAL`] while the certificate is pending, so a new leader
//! (or a leader that dropped a share) collects again. Every queue is
//! bounded: the share inbox (`MAX_PENDING_SHARES`), the collection window
//! ([`collector::MAX_COLLECT_WINDOW`]), share RPCs and proposals in flight.

pub mod collector;
pub mod signer;
pub mod timings;

use std::sync::Arc;
use std::time::Duration;

// The runtime's clock, not the OS's: a simulation drives time.
use tokio::time::Instant;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use neuroshard_certificate::SecretKeyShare;
use neuroshard_governance::{Entry, GovError, IssuedCertificate, PendingCertificate};

use crate::clock::Clock;
use crate::node::NodeCore;
use crate::proto;
use crate::transport::peer_service::ReceivedShare;
use crate::types::NodeId;

use collector::Collector;
use signer::{OwnShare, SignRefusal, Signer};
pub use timings::IssuanceLog;

/// Pending shares are sent again this often (and at once to a new leader).
pub const RESEND_INTERVAL: Duration = Duration::from_secs(1);
/// A proposed `CertificateIssued` not committed within this time is
/// proposed again.
pub const REPROPOSE_AFTER: Duration = Duration::from_secs(5);
/// Deadline of one share RPC, and of one proposal's commit.
pub const SHARE_RPC_TIMEOUT: Duration = Duration::from_secs(2);
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Share RPCs in flight at once; beyond it a send waits for the next round.
pub const MAX_SHARE_SENDS_IN_FLIGHT: usize = 16;
/// `CertificateIssued` proposals in flight at once.
pub const MAX_PROPOSALS_IN_FLIGHT: usize = 8;
/// Pending certificates handled per round (the lowest first).
pub const MAX_PENDING_PER_ROUND: usize = 64;
/// Pages of issued certificates skipped per round when catching up.
pub const MAX_SCAN_PAGES: usize = 1024;

/// Starts the issuer of the validator `core` with its BLS key share. It
/// stops when `shutdown` changes.
pub fn spawn(
    core: Arc<NodeCore>,
    key: SecretKeyShare,
    clock: Arc<dyn Clock>,
    inbox: Option<mpsc::Receiver<ReceivedShare>>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let collector = {
        let machine = core.machine.read();
        let committee = &machine.state.chain().committee;
        match committee.public_key_set.as_deref().map(|bytes| {
            committee
                .info
                .scheme
                .scheme()
                .public_key_set_from_bytes(bytes)
        }) {
            Some(Ok(keys)) => Some(Collector::new(keys, committee.info.epoch, REPROPOSE_AFTER)),
            Some(Err(e)) => {
                tracing::error!(error = %e, "genesis public key set does not parse: this validator signs but cannot combine certificates");
                None
            }
            None => {
                tracing::error!("genesis carries no public key set: this validator signs but cannot combine certificates");
                None
            }
        }
    };
    let issuer = Issuer {
        signer: Signer::new(key, clock, RESEND_INTERVAL),
        collector,
        low: 1,
        sends: Arc::new(Semaphore::new(MAX_SHARE_SENDS_IN_FLIGHT)),
        proposals_in_flight: 0,
        last_refusal: None,
        core,
    };
    tokio::spawn(issuer.run(inbox, shutdown))
}

struct Issuer {
    core: Arc<NodeCore>,
    signer: Signer,
    collector: Option<Collector>,
    /// Every certificate below this sequence is issued.
    low: u64,
    sends: Arc<Semaphore>,
    proposals_in_flight: usize,
    /// The last refusal logged, so a waiting refusal is logged once.
    last_refusal: Option<SignRefusal>,
}

/// What one round found in the replica.
struct Scanned {
    /// Pending certificates with their payload hashes, ascending.
    pending: Vec<(PendingCertificate, [u8; 32])>,
    max_skew_ms: u64,
}

async fn next_share(inbox: &mut Option<mpsc::Receiver<ReceivedShare>>) -> Option<ReceivedShare> {
    match inbox {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Issuer {
    async fn run(
        mut self,
        mut inbox: Option<mpsc::Receiver<ReceivedShare>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut metrics = self.core.raft.metrics();
        let mut resend = tokio::time::interval(RESEND_INTERVAL);
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (done_tx, mut done_rx) = mpsc::channel::<(u64, bool)>(MAX_PROPOSALS_IN_FLIGHT);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = resend.tick() => {}
                share = next_share(&mut inbox) => match share {
                    Some(s) => self.received(s),
                    None => inbox = None,
                },
                Some((sequence, committed)) = done_rx.recv() => {
                    self.proposals_in_flight = self.proposals_in_flight.saturating_sub(1);
                    if !committed {
                        if let Some(c) = &mut self.collector {
                            c.proposal_failed(sequence);
                        }
                    }
                }
            }
            self.round(&done_tx);
        }
    }

    fn leadership(&self) -> (Option<NodeId>, bool) {
        let m = self.core.raft.metrics();
        let m = m.borrow();
        let leads = m.current_leader == Some(self.core.id) && m.state.is_leader();
        (m.current_leader, leads)
    }

    /// A share another validator sent to this node.
    fn received(&mut self, s: ReceivedShare) {
        let (_, leads) = self.leadership();
        let Some(c) = self.collector.as_mut().filter(|_| leads) else {
            // Not leading: the sender re-sends to whoever leads.
            return;
        };
        let m = crate::metrics::metrics();
        m.shares_received.inc();
        if let Err(e) = c.receive(s.from, s.sequence, s.payload_sha256, s.share, self.low) {
            m.shares_refused
                .get_or_create(&crate::metrics::label("reason", e.reason()))
                .inc();
            crate::limited!(
                crate::logging::REFUSALS,
                key = e.reason(),
                debug!(peer = s.from, sequence = s.sequence, rule = e.reason(), error = %e, "signature share not kept")
            );
        }
    }

    fn scan(&mut self, now: Instant) -> Scanned {
        let machine = self.core.machine.read();
        let state = &machine.state;
        let max_skew_ms = state.params().gov().max_clock_skew_ms;
        let mut pending = Vec::new();
        let mut cursor = self.low;
        let mut low = self.low;
        'pages: for _ in 0..MAX_SCAN_PAGES {
            let page = state.certificates(cursor, MAX_PENDING_PER_ROUND);
            let full = page.len() == MAX_PENDING_PER_ROUND;
            for r in page {
                let sequence = r.event.sequence;
                cursor = sequence + 1;
                if r.issued.is_some() {
                    self.core.issuance.issued(sequence, now);
                    if pending.is_empty() {
                        low = sequence + 1;
                    }
                } else {
                    self.core.issuance.decided(sequence, now);
                    pending.push((
                        PendingCertificate {
                            sequence,
                            payload: r.payload.clone(),
                            decision_time_ms: r.event.decision_time_ms,
                        },
                        r.payload_hash,
                    ));
                    if pending.len() >= MAX_PENDING_PER_ROUND {
                        break 'pages;
                    }
                }
            }
            if !full || !pending.is_empty() {
                break;
            }
        }
        drop(machine);
        self.low = low;
        Scanned {
            pending,
            max_skew_ms,
        }
    }

    fn round(&mut self, done_tx: &mpsc::Sender<(u64, bool)>) {
        let now = Instant::now();
        let (leader, leads) = self.leadership();
        let scanned = self.scan(now);
        let sequences: Vec<u64> = scanned.pending.iter().map(|(p, _)| p.sequence).collect();
        self.signer.retain_pending(&sequences);
        if let Some(c) = &mut self.collector {
            if leads {
                c.retain(self.low, &sequences);
            } else {
                c.clear();
            }
        }
        if self.core.machine.read().checkpoints.diverged.is_some() {
            // A diverged replica's decisions are not the committee's: it
            // signs nothing (`crate::checkpoint`).
            return;
        }
        for (pending, hash) in &scanned.pending {
            let own = match self.signer.share_for(pending, *hash, scanned.max_skew_ms) {
                Ok(own) => own,
                Err(refusal) => {
                    if self.last_refusal.as_ref() != Some(&refusal) {
                        tracing::warn!(sequence = pending.sequence, %refusal, "not signing certificate");
                        self.last_refusal = Some(refusal);
                    }
                    continue;
                }
            };
            let Some(l) = leader else {
                continue;
            };
            if l == self.core.id {
                if let (true, Some(c)) = (leads, self.collector.as_mut()) {
                    // Kept once: a verified share is not replaced.
                    let _ = c.receive(
                        self.core.id,
                        own.sequence,
                        own.payload_sha256,
                        own.share,
                        self.low,
                    );
                }
            } else if self.signer.due(own.sequence, l, now) && self.send(l, own.clone()) {
                self.signer.mark_sent(own.sequence, l, now);
            }
        }
        if !leads {
            return;
        }
        let Some(c) = self.collector.as_mut() else {
            return;
        };
        for (pending, hash) in &scanned.pending {
            if self.proposals_in_flight >= MAX_PROPOSALS_IN_FLIGHT {
                break;
            }
            let (certificate, refused) = c.ready(pending, *hash, now);
            for r in refused {
                crate::metrics::metrics()
                    .shares_refused
                    .get_or_create(&crate::metrics::label("reason", r.reason()))
                    .inc();
                crate::limited!(
                    crate::logging::REFUSALS,
                    key = r.reason(),
                    warn!(
                        peer = r.peer(),
                        sequence = r.sequence(),
                        rule = r.reason(),
                        refusal = %r,
                        "signature share refused"
                    )
                );
            }
            if let Some(certificate) = certificate {
                self.proposals_in_flight += 1;
                propose(&self.core, certificate, done_tx.clone());
            }
        }
    }

    /// Sends this validator's share to the leader; false when no RPC slot
    /// is free (the next round tries again).
    fn send(&self, leader: NodeId, own: OwnShare) -> bool {
        let Ok(permit) = self.sends.clone().try_acquire_owned() else {
            return false;
        };
        let client = match self.core.peers.client(leader) {
            Ok(c) => c,
            Err(e) => {
                crate::limited!(
                    crate::logging::RETRIES,
                    key = leader,
                    warn!(error = %e, peer = leader, sequence = own.sequence, "cannot reach the leader for a signature share")
                );
                return false;
            }
        };
        let from = self.core.id;
        tokio::spawn(async move {
            let _permit = permit;
            let mut client = client;
            let sequence = own.sequence;
            let mut req = tonic::Request::new(proto::SignatureShareRequest {
                from,
                sequence,
                payload_sha256: own.payload_sha256.to_vec(),
                share: own.share,
            });
            req.set_timeout(SHARE_RPC_TIMEOUT);
            match client.submit_signature_share(req).await {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    if !resp.accepted {
                        crate::limited!(
                            crate::logging::RETRIES,
                            key = leader,
                            debug!(sequence, peer = leader, message = %resp.message, "leader did not take the share")
                        );
                    }
                }
                Err(s) => {
                    crate::limited!(
                        crate::logging::RETRIES,
                        key = leader,
                        debug!(sequence, peer = leader, code = ?s.code(), message = %s.message(), "sending the share failed")
                    )
                }
            }
        });
        true
    }
}

/// Proposes `certificate` and reports whether the entry was committed
/// (applied, whatever its outcome: a second issuance of the same sequence is
/// refused by the state machine and changes nothing).
fn propose(core: &NodeCore, certificate: IssuedCertificate, done: mpsc::Sender<(u64, bool)>) {
    let raft = core.raft.clone();
    let machine = core.machine.clone();
    let sequence = certificate.sequence;
    let nep = machine
        .read()
        .state
        .certificate(sequence)
        .map(|r| r.event.nep.0);
    let offers = Offers::new(core, &certificate);
    tokio::spawn(async move {
        // Verified first, here and on the followers, so the entry's append
        // and apply find the verdict: its pairings then never hold up the
        // commands replicated and applied beside it.
        if let Err(reason) = offers.run().await {
            // The shares were verified one by one and combined without a
            // second check: only a bug gets here. Proposing it would make
            // every follower refuse this leader.
            tracing::error!(sequence, nep, %reason, "the combined certificate does not verify; not proposed");
            let _ = done.send((sequence, false)).await;
            return;
        }
        let write = raft.client_write(Entry::CertificateIssued(certificate));
        let committed = match tokio::time::timeout(PROPOSE_TIMEOUT, write).await {
            Ok(Ok(resp)) => {
                match resp.data.outcomes.into_iter().next() {
                    Some(Ok(_)) => {
                        tracing::info!(
                            sequence,
                            nep,
                            index = resp.data.log_index,
                            term = resp.log_id.leader_id.term,
                            "certificate issued"
                        )
                    }
                    Some(Err(GovError::CertificateAlreadyIssued { .. })) => {
                        tracing::debug!(
                            sequence,
                            nep,
                            index = resp.data.log_index,
                            "certificate was already issued"
                        )
                    }
                    Some(Err(e)) => {
                        tracing::error!(sequence, nep, index = resp.data.log_index, term = resp.log_id.leader_id.term, error = %e, "the committee refused a combined certificate")
                    }
                    None => {}
                }
                true
            }
            Ok(Err(e)) => {
                tracing::debug!(sequence, nep, error = %e, "certificate not committed");
                false
            }
            Err(_) => {
                tracing::warn!(
                    sequence,
                    nep,
                    "certificate not committed within {PROPOSE_TIMEOUT:?}"
                );
                false
            }
        };
        let _ = done.send((sequence, committed)).await;
    });
}

/// How long the leader waits for its followers to verify an offered
/// certificate before it proposes it anyway (a follower that has not
/// answered verifies the entry when it is appended, as before).
pub const OFFER_TIMEOUT: Duration = Duration::from_millis(250);

/// A combined certificate verified by the leader itself and offered to
/// every other validator (`OfferCertificate`), before the leader proposes
/// it.
struct Offers {
    from: NodeId,
    committee: neuroshard_governance::CommitteeGenesis,
    certificate: IssuedCertificate,
    bytes: Vec<u8>,
    clients: Vec<(
        NodeId,
        proto::raft_peer_client::RaftPeerClient<tonic::transport::Channel>,
    )>,
    /// Followers whose verdict the leader waits for: with the leader, a
    /// majority (the replicas a commit needs).
    wait_for: usize,
}

impl Offers {
    fn new(core: &NodeCore, certificate: &IssuedCertificate) -> Self {
        let bytes =
            crate::codec::encode_entry("offered certificate", certificate).unwrap_or_default();
        let clients = if bytes.is_empty() {
            Vec::new()
        } else {
            core.members
                .iter()
                .filter(|p| **p != core.id)
                .filter_map(|p| core.peers.client(*p).ok().map(|c| (*p, c)))
                .collect()
        };
        Self {
            from: core.id,
            committee: core.machine.read().state.chain().committee.clone(),
            certificate: certificate.clone(),
            bytes,
            clients,
            wait_for: core.members.len() / 2,
        }
    }

    /// Verifies the certificate on the blocking pool (its verdict is
    /// returned), then offers it to the followers at once and returns when
    /// a majority's worth have answered, or after [`OFFER_TIMEOUT`]; the
    /// other offers go on by themselves until their deadline.
    async fn run(self) -> Result<(), String> {
        let Offers {
            from,
            committee,
            certificate,
            bytes,
            clients,
            wait_for,
        } = self;
        let sequence = certificate.sequence;
        crate::blocking::run(move || {
            neuroshard_governance::certificate::verify_issued(&committee, &certificate)
        })
        .await??;
        let (answered, mut answers) = mpsc::channel(clients.len().max(1));
        for (peer, mut client) in clients {
            let mut req = tonic::Request::new(proto::CertificateOfferRequest {
                from,
                certificate: bytes.clone(),
            });
            req.set_timeout(OFFER_TIMEOUT);
            let answered = answered.clone();
            tokio::spawn(async move {
                match client.offer_certificate(req).await {
                    Ok(resp) if !resp.get_ref().valid => {
                        tracing::warn!(sequence, peer, reason = %resp.get_ref().reason, "a follower found the offered certificate invalid")
                    }
                    Ok(_) => {}
                    Err(s) => crate::limited!(
                        crate::logging::RETRIES,
                        key = peer,
                        debug!(sequence, peer, code = ?s.code(), message = %s.message(), "offering the certificate failed")
                    ),
                }
                let _ = answered.send(()).await;
            });
        }
        drop(answered);
        let _ = tokio::time::timeout(OFFER_TIMEOUT, async {
            for _ in 0..wait_for {
                if answers.recv().await.is_none() {
                    break;
                }
            }
        })
        .await;
        Ok(())
    }
}
