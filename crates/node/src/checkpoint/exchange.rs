//! Every validator's side of checkpoint certification: sign the checkpoints
//! its own replica captured, send the shares to every other validator,
//! verify the shares it receives, and combine t + 1 that sign its own
//! payload into the committee's signature. No leader is involved, so a
//! faulty leader can neither withhold nor forge a checkpoint certificate.
//!
//! Bounded: shares are kept only for checkpoint indexes above the certified
//! one and at most [`MAX_AHEAD_CHECKPOINTS`] intervals beyond this
//! replica's applied index, one per validator and index (a later share from
//! the same validator replaces the earlier one); the inbox holds
//! [`MAX_PENDING_CHECKPOINT_SHARES`].
//!
//! t + 1 verified shares on a payload that is not this replica's own at the
//! same index mean this replica diverged from what a Byzantine quorum
//! derived: it records the divergence (status, log) and stops signing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
// The runtime's clock, not the OS's: a simulation drives time.
use tokio::time::Instant;

use neuroshard_certificate::{PublicKeySet, SecretKeyShare, ShareIndex, SignatureShare};

use crate::checkpoint::{Checkpoint, CheckpointPayload};
use crate::node::NodeCore;
use crate::proto;
use crate::store::machine::Divergence;
use crate::types::NodeId;

/// Received checkpoint shares waiting for the exchange task.
pub const MAX_PENDING_CHECKPOINT_SHARES: usize = 256;
/// Shares are kept for checkpoints at most this many intervals beyond this
/// replica's applied index (a lagging replica hears of later ones first).
pub const MAX_AHEAD_CHECKPOINTS: u64 = 4;
/// This validator's latest share is sent again this often (peers that
/// restarted or lagged need it).
pub const RESEND_INTERVAL: Duration = Duration::from_secs(2);
/// How often the task looks for newly captured checkpoints.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Deadline of one share RPC.
pub const SHARE_RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// Share RPCs in flight at once.
pub const MAX_SENDS_IN_FLIGHT: usize = 16;

/// A share another validator sent (its identity checked against its TLS
/// certificate by the peer service).
#[derive(Clone, Debug)]
pub struct ReceivedCheckpointShare {
    pub from: NodeId,
    pub payload: CheckpointPayload,
    pub share: Vec<u8>,
}

/// The request carrying `payload` and `share` from `from`.
pub fn share_request(
    from: NodeId,
    payload: &CheckpointPayload,
    share: &[u8],
) -> proto::CheckpointShareRequest {
    proto::CheckpointShareRequest {
        from,
        term: payload.term,
        leader: payload.leader,
        index: payload.index,
        membership_sha256: payload.membership_sha256.to_vec(),
        state_hash: payload.state_hash.to_vec(),
        share: share.to_vec(),
    }
}

/// What the verified shares at one checkpoint index say.
#[derive(Debug)]
pub enum Decision {
    /// Fewer than t + 1 on any payload.
    Wait,
    /// t + 1 on this replica's own payload: these (the lowest indexes).
    Certify {
        picked: Vec<(ShareIndex, SignatureShare)>,
    },
    /// t + 1 on another payload, or so many validators signed other
    /// payloads that this replica's own can no longer reach t + 1 (a split:
    /// `certified` is then the payload most of them signed): this replica
    /// diverged, or the committee split.
    Diverged {
        certified: CheckpointPayload,
        signers: Vec<u32>,
    },
}

/// Decides from verified shares grouped by payload. Honest validators sign
/// one payload per index, so two payloads cannot both reach t + 1 (a
/// Byzantine quorum) unless more than f validators are faulty; another
/// payload with t + 1 wins over waiting on the own one.
pub fn decide(
    own: &CheckpointPayload,
    by_payload: &BTreeMap<CheckpointPayload, BTreeMap<u32, SignatureShare>>,
    needed: usize,
    n: usize,
) -> Decision {
    for (payload, shares) in by_payload {
        if shares.len() < needed {
            continue;
        }
        if payload != own {
            return Decision::Diverged {
                certified: payload.clone(),
                signers: shares.keys().copied().collect(),
            };
        }
        return Decision::Certify {
            picked: shares
                .iter()
                .take(needed)
                .map(|(i, s)| (ShareIndex(*i), s.clone()))
                .collect(),
        };
    }
    // A split: validators that signed other payloads (each signs one per
    // index when honest) leave fewer than t + 1 that could sign this one —
    // and they are more than the f faulty validators the committee
    // tolerates, so at least one honest validator computed another state.
    // (With t + 1 > n − f, which genesis allows, f faulty signers alone
    // would otherwise leave too few and freeze every honest replica.)
    let others: Vec<(&CheckpointPayload, &BTreeMap<u32, SignatureShare>)> =
        by_payload.iter().filter(|(p, _)| *p != own).collect();
    let signed_other: std::collections::BTreeSet<u32> =
        others.iter().flat_map(|(_, s)| s.keys().copied()).collect();
    let tolerated = n.saturating_sub(1) / 3;
    if signed_other.len() > n.saturating_sub(needed).max(tolerated) {
        if let Some((payload, _)) = others.iter().max_by_key(|(_, s)| s.len()) {
            return Decision::Diverged {
                certified: (*payload).clone(),
                signers: signed_other.into_iter().collect(),
            };
        }
    }
    Decision::Wait
}

/// A received share: the payload it claims, its bytes, and the parsed
/// share once verified.
type Held = (CheckpointPayload, Vec<u8>, Option<SignatureShare>);

/// This validator's share at one index.
struct OwnShare {
    payload: CheckpointPayload,
    share: SignatureShare,
    sent_at: Option<Instant>,
}

/// Starts the exchange of validator `core`. It stops when `shutdown`
/// changes.
pub fn spawn(
    core: Arc<NodeCore>,
    key: SecretKeyShare,
    inbox: mpsc::Receiver<ReceivedCheckpointShare>,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let keys = {
        let machine = core.machine.read();
        let committee = &machine.state.chain().committee;
        committee.public_key_set.as_deref().map(|bytes| {
            committee
                .info
                .scheme
                .scheme()
                .public_key_set_from_bytes(bytes)
        })
    };
    let keys = match keys {
        Some(Ok(keys)) => keys,
        Some(Err(e)) => {
            tracing::error!(error = %e, "genesis public key set does not parse: this validator cannot certify checkpoints");
            return tokio::spawn(async {});
        }
        None => {
            tracing::error!(
                "genesis carries no public key set: this validator cannot certify checkpoints"
            );
            return tokio::spawn(async {});
        }
    };
    let exchange = Exchange {
        core,
        key,
        needed: keys.threshold() as usize + 1,
        keys,
        own: BTreeMap::new(),
        received: BTreeMap::new(),
        sends: Arc::new(Semaphore::new(MAX_SENDS_IN_FLIGHT)),
    };
    tokio::spawn(exchange.run(inbox, shutdown))
}

struct Exchange {
    core: Arc<NodeCore>,
    key: SecretKeyShare,
    keys: PublicKeySet,
    /// t + 1.
    needed: usize,
    own: BTreeMap<u64, OwnShare>,
    /// index → validator → what it sent.
    received: BTreeMap<u64, BTreeMap<u32, Held>>,
    sends: Arc<Semaphore>,
}

impl Exchange {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<ReceivedCheckpointShare>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                received = inbox.recv() => match received {
                    Some(s) => self.receive(s),
                    None => return,
                },
                _ = poll.tick() => {}
            }
            self.round().await;
        }
    }

    fn n(&self) -> u32 {
        self.keys.size()
    }

    /// Keeps a received share if it is for a checkpoint this replica may
    /// still need.
    fn receive(&mut self, s: ReceivedCheckpointShare) {
        let Some(from) = u32::try_from(s.from).ok().filter(|i| *i < self.n()) else {
            return;
        };
        let (low, high, interval) = self.window();
        if s.payload.index <= low
            || s.payload.index > high
            || !s.payload.index.is_multiple_of(interval)
        {
            return;
        }
        if s.payload.chain_id != self.core.chain_id {
            return;
        }
        let at = self.received.entry(s.payload.index).or_default();
        if at
            .get(&from)
            .is_some_and(|(p, b, _)| *p == s.payload && *b == s.share)
        {
            return;
        }
        at.insert(from, (s.payload, s.share, None));
    }

    /// Checkpoint indexes for which shares are kept: above the certified
    /// one, at most `MAX_AHEAD_CHECKPOINTS` intervals beyond the applied
    /// index.
    fn window(&self) -> (u64, u64, u64) {
        let m = self.core.machine.read();
        let low = m.checkpoints.certified_index().unwrap_or(0);
        let applied = m.last_applied.map_or(0, |l| l.index);
        let interval = m.checkpoints.interval.max(1);
        let high = applied.saturating_add(MAX_AHEAD_CHECKPOINTS * interval);
        (low, high, interval)
    }

    async fn round(&mut self) {
        let (captured, certified, diverged) = {
            let m = self.core.machine.read();
            (
                m.checkpoints.captured.iter().cloned().collect::<Vec<_>>(),
                m.checkpoints.certified_index().unwrap_or(0),
                m.checkpoints.diverged.is_some(),
            )
        };
        self.own.retain(|index, _| *index >= certified);
        self.received.retain(|index, _| *index > certified);
        if diverged {
            return;
        }
        for checkpoint in &captured {
            if checkpoint.log_id.index <= certified {
                continue;
            }
            self.sign_and_send(checkpoint);
            self.try_certify(checkpoint).await;
            // Diverged at this checkpoint: nothing later is signed.
            if self.core.machine.read().checkpoints.diverged.is_some() {
                return;
            }
        }
        // The latest own share (certified or not) goes out again now and
        // then, for validators that restarted or lag.
        let resend = self
            .own
            .iter()
            .next_back()
            .filter(|(_, o)| o.sent_at.is_none_or(|t| t.elapsed() >= RESEND_INTERVAL))
            .map(|(i, _)| *i);
        if let Some(index) = resend {
            self.send(index);
        }
    }

    fn sign_and_send(&mut self, checkpoint: &Checkpoint) {
        let index = checkpoint.log_id.index;
        if self.own.contains_key(&index) {
            return;
        }
        let payload = {
            let m = self.core.machine.read();
            CheckpointPayload::new(
                m.state.chain(),
                checkpoint.log_id,
                &checkpoint.membership,
                checkpoint.state_hash,
            )
        };
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(index, error = %e, "cannot build the checkpoint payload");
                return;
            }
        };
        let scheme = self.keys.scheme().scheme();
        let share = match scheme.sign_share(&self.key, &payload.signing_message()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(index, error = %e, "cannot sign the checkpoint");
                return;
            }
        };
        tracing::debug!(index, term = payload.term, checkpoint = %payload.describe(), "signed the checkpoint");
        self.own.insert(
            index,
            OwnShare {
                payload,
                share,
                sent_at: None,
            },
        );
        self.send(index);
    }

    fn send(&mut self, index: u64) {
        let from = self.core.id;
        let Some(own) = self.own.get_mut(&index) else {
            return;
        };
        own.sent_at = Some(Instant::now());
        let bytes = own.share.to_bytes().to_vec();
        for &peer in &self.core.members {
            if peer == from {
                continue;
            }
            let Ok(permit) = self.sends.clone().try_acquire_owned() else {
                return;
            };
            let Ok(mut client) = self.core.peers.client(peer) else {
                continue;
            };
            let mut req = tonic::Request::new(share_request(from, &own.payload, &bytes));
            req.set_timeout(SHARE_RPC_TIMEOUT);
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(s) = client.submit_checkpoint_share(req).await {
                    crate::limited!(
                        crate::logging::RETRIES,
                        key = peer,
                        debug!(index, peer, code = ?s.code(), message = %s.message(), "sending the checkpoint share failed")
                    );
                }
            });
        }
    }

    /// Verifies the shares received for `checkpoint`'s index and, with
    /// t + 1 on this replica's payload, certifies it; t + 1 on another
    /// payload is a divergence.
    async fn try_certify(&mut self, checkpoint: &Checkpoint) {
        let index = checkpoint.log_id.index;
        if !self.own.contains_key(&index) {
            return;
        }
        crate::hoptrace::mark("CX_start", index);
        // The shares not verified yet, verified on the blocking pool (a
        // pairing check each, milliseconds on a busy machine; on the
        // runtime's worker they held up whatever else it ran).
        let pending: Vec<(u32, CheckpointPayload, Vec<u8>)> = self
            .received
            .get(&index)
            .map(|at| {
                at.iter()
                    .filter(|(_, (_, _, verified))| verified.is_none())
                    .map(|(from, (payload, bytes, _))| (*from, payload.clone(), bytes.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if !pending.is_empty() {
            let keys = self.keys.clone();
            let checked = crate::blocking::run(move || {
                let scheme = keys.scheme().scheme();
                pending
                    .into_iter()
                    .map(|(from, payload, bytes)| {
                        let checked = scheme
                            .signature_share_from_bytes(&bytes)
                            .and_then(|s| {
                                scheme
                                    .verify_share(
                                        &keys,
                                        ShareIndex(from),
                                        &s,
                                        &payload.signing_message(),
                                    )
                                    .map(|()| s)
                            })
                            .map_err(|e| e.to_string());
                        (from, payload, bytes, checked)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            let checked = match checked {
                Ok(c) => c,
                Err(e) => {
                    // A check that panicked is not retried forever: those
                    // shares are dropped (their senders resend them).
                    tracing::warn!(index, error = %e, "checking checkpoint shares did not finish; dropped them");
                    if let Some(at) = self.received.get_mut(&index) {
                        at.retain(|_, (_, _, verified)| verified.is_some());
                    }
                    return;
                }
            };
            if let Some(at) = self.received.get_mut(&index) {
                for (from, payload, bytes, result) in checked {
                    // Only what is still held is updated (the task is the
                    // only writer, so it is).
                    let Some(held) = at
                        .get_mut(&from)
                        .filter(|(p, b, v)| *p == payload && *b == bytes && v.is_none())
                    else {
                        continue;
                    };
                    match result {
                        Ok(s) => held.2 = Some(s),
                        Err(e) => {
                            crate::limited!(
                                crate::logging::REFUSALS,
                                key = u64::from(from),
                                warn!(index, peer = from, rule = "invalid", error = %e, "a checkpoint share does not verify; dropped")
                            );
                            at.remove(&from);
                        }
                    }
                }
            }
        }
        let Some(own) = self.own.get(&index) else {
            return;
        };
        let own_payload = own.payload.clone();
        let own_share = own.share.clone();
        let scheme = self.keys.scheme().scheme();
        let me = u32::try_from(self.core.id).unwrap_or(u32::MAX);
        // payload → validator → share, verified.
        let mut by_payload: BTreeMap<CheckpointPayload, BTreeMap<u32, SignatureShare>> =
            BTreeMap::new();
        by_payload
            .entry(own_payload.clone())
            .or_default()
            .insert(me, own_share);
        if let Some(at) = self.received.get(&index) {
            for (from, (payload, _, verified)) in at {
                if let Some(s) = verified {
                    by_payload
                        .entry(payload.clone())
                        .or_default()
                        .insert(*from, s.clone());
                }
            }
        }
        crate::hoptrace::mark("CX_end", index);
        match decide(&own_payload, &by_payload, self.needed, self.n() as usize) {
            Decision::Wait => {}
            Decision::Diverged { certified, signers } => {
                self.diverge(index, &own_payload, &certified, signers);
            }
            Decision::Certify { picked } => {
                let message = own_payload.signing_message();
                // Every picked share is this replica's own or was verified
                // above: not checked a second time (a few pairings each, on
                // the runtime's worker).
                let signature = match scheme.combine_verified(&self.keys, &picked, &message) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(index, error = %e, "combining verified checkpoint shares failed");
                        return;
                    }
                };
                let signature = signature.to_bytes().to_vec();
                let certified = self
                    .core
                    .machine
                    .write()
                    .checkpoints
                    .certify(index, signature);
                if certified {
                    let signers: Vec<u32> = picked.iter().map(|(i, _)| i.0).collect();
                    tracing::info!(index, term = own_payload.term, checkpoint = %own_payload.describe(), ?signers, "checkpoint certified");
                    let raft = self.core.raft.clone();
                    tokio::spawn(async move {
                        if let Err(e) = raft.trigger().snapshot().await {
                            tracing::warn!(index, error = %e, "could not trigger the snapshot of a certified checkpoint");
                        }
                    });
                }
            }
        }
    }

    fn diverge(
        &mut self,
        index: u64,
        own: &CheckpointPayload,
        certified: &CheckpointPayload,
        signers: Vec<u32>,
    ) {
        tracing::error!(
            index,
            own = %own.describe(),
            certified = %certified.describe(),
            ?signers,
            "DIVERGED: a Byzantine quorum of validators signed a different state at this checkpoint; this validator stops signing, applying and leading, and answers reads marked diverged (docs/operations.md, \"A diverged validator\")"
        );
        // Recorded on disk before the state freezes, under the state's
        // lock: nothing is applied between the two, so a restart replays
        // to exactly where the running replica stopped.
        {
            let mut m = self.core.machine.write();
            let d = Divergence {
                index,
                own: Some(own.clone()),
                certified: certified.clone(),
                frozen_at: m.last_applied,
            };
            self.core.record_divergence(&d);
            m.checkpoints.diverged = Some(d);
        }
        self.core.stand_down();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use neuroshard_certificate::SchemeId;

    fn payload(state: u8) -> CheckpointPayload {
        CheckpointPayload {
            chain_id: "c".into(),
            committee_hash: [1; 32],
            term: 2,
            leader: 0,
            index: 64,
            membership_sha256: [3; 32],
            state_hash: [state; 32],
        }
    }

    /// Validators `who` sign `p` with the test committee (t = 2, n = 4).
    fn signed(
        by: &mut BTreeMap<CheckpointPayload, BTreeMap<u32, SignatureShare>>,
        p: &CheckpointPayload,
        who: &[u32],
    ) {
        let scheme = SchemeId::G2Rfc9380.scheme();
        let dealt = scheme.deal(2, 4, &[9; 32]).expect("deal");
        for &i in who {
            let s = scheme
                .sign_share(&dealt.secret_key_shares[i as usize], &p.signing_message())
                .expect("sign");
            by.entry(p.clone()).or_default().insert(i, s);
        }
    }

    #[test]
    fn t_plus_one_on_the_own_payload_certifies_at_under_and_over() {
        let own = payload(7);
        for (signers, certifies) in [
            (&[0u32, 1][..], false),
            (&[0, 1, 2], true),
            (&[0, 1, 2, 3], true),
        ] {
            let mut by = BTreeMap::new();
            signed(&mut by, &own, signers);
            match decide(&own, &by, 3, 4) {
                Decision::Certify { picked } => {
                    assert!(certifies, "{signers:?}");
                    assert_eq!(picked.len(), 3, "exactly t + 1 combined");
                }
                Decision::Wait => assert!(!certifies, "{signers:?}"),
                other => panic!("{signers:?}: {other:?}"),
            }
        }
    }

    /// An equivocating leader gave each honest follower a different entry:
    /// no payload reaches t + 1, but this replica's own can no longer
    /// either (n = 4, t + 1 = 3: two validators signed other payloads).
    #[test]
    fn a_split_where_no_payload_can_reach_t_plus_one_is_detected() {
        let own = payload(7);
        let mut by = BTreeMap::new();
        signed(&mut by, &own, &[1]);
        signed(&mut by, &payload(8), &[2]);
        assert!(
            matches!(decide(&own, &by, 3, 4), Decision::Wait),
            "one other signer: the own payload can still reach 3"
        );
        signed(&mut by, &payload(9), &[3]);
        match decide(&own, &by, 3, 4) {
            Decision::Diverged { signers, .. } => assert_eq!(signers, vec![2, 3]),
            other => panic!("{other:?}"),
        }
    }

    /// A threshold above n − f (n = 4, t + 1 = 4, which genesis allows):
    /// the one faulty validator signing a made-up state leaves the own
    /// payload short of t + 1, but f signers of another payload prove
    /// nothing — no honest replica freezes; f + 1 do.
    #[test]
    fn a_split_needs_more_than_f_other_signers_whatever_the_threshold() {
        let own = payload(7);
        let mut by = BTreeMap::new();
        signed(&mut by, &own, &[0, 1]);
        signed(&mut by, &payload(8), &[3]);
        assert!(
            matches!(decide(&own, &by, 4, 4), Decision::Wait),
            "one faulty signer at n = 4"
        );
        signed(&mut by, &payload(9), &[2]);
        assert!(matches!(decide(&own, &by, 4, 4), Decision::Diverged { .. }));
    }

    #[test]
    fn t_plus_one_on_another_payload_is_a_divergence_and_fewer_is_not() {
        let own = payload(7);
        let theirs = payload(8);
        let mut by = BTreeMap::new();
        signed(&mut by, &own, &[1]);
        signed(&mut by, &theirs, &[0]);
        assert!(
            matches!(decide(&own, &by, 3, 4), Decision::Wait),
            "one (faulty) validator alone signing another payload proves nothing"
        );
        signed(&mut by, &theirs, &[2, 3]);
        match decide(&own, &by, 3, 4) {
            Decision::Diverged { certified, signers } => {
                assert_eq!(certified, theirs);
                assert_eq!(signers, vec![0, 2, 3]);
            }
            other => panic!("{other:?}"),
        }
    }
}
