//! The peer listener's gRPC service. Every call first checks that the
//! validator named by the caller's client certificate is the sender the
//! request claims (the vote's node for Raft RPCs, `from` otherwise) and is a
//! committee member.

use std::collections::BTreeSet;

use serde::Serialize;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use neuroshard_governance::SignedCommand;

use crate::admission::{self, Verdict};
use crate::checkpoint::exchange::{ReceivedCheckpointShare, MAX_PENDING_CHECKPOINT_SHARES};
use crate::checkpoint::CheckpointPayload;
use crate::config::ClientSettings;
use crate::error::NodeError;
use crate::proto;
use crate::proto::raft_peer_server::RaftPeer;
use crate::safety::{Refusal, Safety};
use crate::store::SharedMachine;
use crate::submit::{result_to_wire, Submitted, Submitter};
use crate::transport::api_service::decode_command;
use crate::transport::convert;
use crate::transport::net::PeerIdentity;
use crate::types::{NodeId, Raft};

/// Shares queued for the certificate issuer before new ones are refused.
pub const MAX_PENDING_SHARES: usize = 1024;
/// Largest serialized BLS signature share accepted.
pub const MAX_SHARE_BYTES: usize = 512;
/// Largest `OfferCertificate` certificate accepted: the envelope's payload
/// bound as postcard writes it (base64 text, 4/3 of the bytes) plus room
/// for the envelope's other fields and up to `MAX_CERTIFICATE_SHARES`
/// attached shares (each about 200 bytes: hex text and the index).
pub const MAX_CERTIFICATE_OFFER_BYTES: usize = neuroshard_certificate::MAX_PAYLOAD_BYTES / 3 * 4
    + 4
    + neuroshard_governance::limits::MAX_CERTIFICATE_SHARES * 256
    + 4 * 1024;
/// How long an offer waits for the one verification slot before it is
/// refused (`offers_busy`): well under the leader's deadline
/// (`issuance::OFFER_TIMEOUT`), so the refusal reaches it.
pub const OFFER_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// A signature share received from another validator, for the leader's
/// certificate issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedShare {
    pub from: NodeId,
    pub sequence: u64,
    pub payload_sha256: [u8; 32],
    pub share: Vec<u8>,
}

pub struct PeerService {
    raft: Raft,
    submitter: Submitter,
    /// This replica's state, for admitting forwarded commands.
    machine: SharedMachine,
    members: BTreeSet<NodeId>,
    shares: mpsc::Sender<ReceivedShare>,
    /// InstallSnapshot data received so far from each validator: a snapshot
    /// is verified whole (`crate::checkpoint::verify_snapshot`) before its
    /// last chunk reaches openraft.
    assembling: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<NodeId, Assembly>>>,
    /// The certified snapshot `FetchCheckpoint` serves, encoded once per
    /// checkpoint.
    fetch_cache: std::sync::Arc<crate::checkpoint::fetch::FetchCache>,
    /// One received snapshot is verified at a time.
    verifying: std::sync::Arc<tokio::sync::Semaphore>,
    /// One offered certificate is verified at a time.
    offers: std::sync::Arc<tokio::sync::Semaphore>,
    /// Clients of the other validators (a catch-up after a refused
    /// snapshot fetches from them); absent in tests that build the service
    /// alone.
    peers: Option<crate::transport::peer_client::PeerClients>,
    /// Checkpoint shares for the checkpoint exchange (`crate::checkpoint`).
    checkpoint_shares: Option<mpsc::Sender<ReceivedCheckpointShare>>,
    /// Coalesces followers' `ReadIndex` calls into heartbeat rounds.
    reads: std::sync::Arc<crate::reads::ReadIndexBatcher>,
    /// What is refused before Raft sees it (`crate::safety`).
    safety: std::sync::Arc<Safety>,
}

impl PeerService {
    pub fn new(
        raft: Raft,
        submitter: Submitter,
        machine: SharedMachine,
        members: BTreeSet<NodeId>,
        shares: mpsc::Sender<ReceivedShare>,
        safety: std::sync::Arc<Safety>,
    ) -> Self {
        Self {
            raft,
            submitter,
            machine,
            members,
            shares,
            checkpoint_shares: None,
            assembling: Default::default(),
            fetch_cache: Default::default(),
            verifying: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            offers: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            peers: None,
            reads: crate::reads::ReadIndexBatcher::new(),
            safety,
        }
    }

    /// Lets a validator that refused a snapshot catch up from the others.
    pub fn with_peers(mut self, peers: crate::transport::peer_client::PeerClients) -> Self {
        self.peers = Some(peers);
        self
    }

    /// Hands received checkpoint shares to the checkpoint exchange.
    pub fn with_checkpoint_inbox(mut self, tx: mpsc::Sender<ReceivedCheckpointShare>) -> Self {
        self.checkpoint_shares = Some(tx);
        self
    }

    /// Shares `reads` with the node's own linearizable reads, so one
    /// heartbeat round serves both.
    pub fn with_read_batcher(
        mut self,
        reads: std::sync::Arc<crate::reads::ReadIndexBatcher>,
    ) -> Self {
        self.reads = reads;
        self
    }

    /// Checks the caller is `claimed`; a refusal is logged at most once a
    /// second per rule (the `peer_rpc` span names the caller; on the hot
    /// RPCs, AppendEntries and ForwardCommands, only at debug level: the
    /// refusal lines name the peer themselves).
    fn authenticate<T>(&self, req: &Request<T>, claimed: NodeId) -> Result<(), Status> {
        let refused = |rule: &'static str, status: Status| {
            crate::limited!(
                crate::logging::REFUSALS,
                key = rule,
                warn!(rule, claimed, error = %status.message(), "peer request refused")
            );
            Err(status)
        };
        let Some(identity) = req
            .extensions()
            .get::<PeerIdentity>()
            .and_then(|p| p.validator)
        else {
            return refused(
                "unauthenticated",
                Status::unauthenticated("no validator certificate on this connection"),
            );
        };
        if identity != claimed {
            return refused("impersonation", Status::permission_denied(format!(
                "certificate names validator {identity} but the request is sent as validator {claimed}"
            )));
        }
        if !self.members.contains(&identity) {
            return refused(
                "not_a_member",
                Status::permission_denied(format!(
                    "validator {identity} is not a committee member"
                )),
            );
        }
        Ok(())
    }

    /// Counts, logs and answers a refusal of what `from` sent.
    /// Keeps the chunk; on the last one, verifies the whole snapshot
    /// against the genesis committee this replica pinned. Chunks must come
    /// in order from offset 0, one snapshot per sender at a time, at most
    /// `MAX_SNAPSHOT_BYTES` in all. Chunks never reach openraft: a verified
    /// snapshot is installed whole (`install_full_snapshot`), so nothing a
    /// sender sends later can change what was verified.
    async fn assemble_and_verify(
        &self,
        from: NodeId,
        rpc: &openraft::raft::InstallSnapshotRequest<crate::types::TypeConfig>,
    ) -> Chunk {
        let data = {
            let mut all = self.assembling.lock().unwrap_or_else(|p| p.into_inner());
            if rpc.offset == 0 {
                all.insert(
                    from,
                    Assembly {
                        snapshot_id: rpc.meta.snapshot_id.clone(),
                        data: Vec::new(),
                    },
                );
            }
            let Some(a) = all.get_mut(&from) else {
                return Chunk::OutOfOrder(format!(
                    "chunk at offset {} of a snapshot whose start this validator does not hold; send it again from offset 0",
                    rpc.offset
                ));
            };
            if a.snapshot_id != rpc.meta.snapshot_id || a.data.len() as u64 != rpc.offset {
                all.remove(&from);
                return Chunk::OutOfOrder(format!(
                    "chunk at offset {} does not continue the snapshot being received; send it again from offset 0",
                    rpc.offset
                ));
            }
            if a.data.len().saturating_add(rpc.data.len()) > crate::store::MAX_SNAPSHOT_BYTES {
                all.remove(&from);
                return Chunk::Refused(format!(
                    "more than {} bytes (MAX_SNAPSHOT_BYTES)",
                    crate::store::MAX_SNAPSHOT_BYTES
                ));
            }
            a.data.extend_from_slice(&rpc.data);
            if !rpc.done {
                return Chunk::Kept;
            }
            all.remove(&from).map(|a| a.data).unwrap_or_default()
        };
        // A snapshot not ahead of this replica changes nothing (openraft
        // would ignore it): not verified, so replaying one costs nothing.
        // A diverged replica installs nothing: its operator replaces its
        // data directory (docs/operations.md, "A diverged validator").
        let (applied, diverged) = {
            let m = self.machine.read();
            (
                m.last_applied.map(|l| l.index),
                m.checkpoints.diverged.is_some(),
            )
        };
        if diverged || rpc.meta.last_log_id.map(|l| l.index) <= applied {
            return Chunk::NotAhead;
        }
        // One verification at a time: it restores and rehashes the whole
        // state, O(state), off the runtime's workers.
        let Ok(_permit) = self.verifying.acquire().await else {
            return Chunk::OutOfOrder("this validator is shutting down".into());
        };
        let pinned = self.machine.read().state.chain().clone();
        let meta = rpc.meta.clone();
        let verified = crate::blocking::run(move || {
            crate::checkpoint::verify_snapshot(&meta, &data, &pinned)
                .map(|_| data)
                .map_err(|e| e.to_string())
        })
        .await;
        match verified {
            Ok(Ok(data)) => Chunk::Verified(data),
            Ok(Err(reason)) => Chunk::Refused(reason),
            Err(e) => Chunk::OutOfOrder(format!("verification did not finish: {e}")),
        }
    }

    fn refuse<T>(&self, req_who: &str, from: NodeId, refusal: Refusal) -> Result<T, Status> {
        self.safety.refused(from, req_who, &refusal);
        Err(refusal.to_status())
    }
}

/// What became of one InstallSnapshot chunk.
enum Chunk {
    /// Kept; more to come.
    Kept,
    /// The last chunk, and the whole snapshot is certified: its data.
    Verified(Vec<u8>),
    /// The whole snapshot is not ahead of this replica: ignored.
    NotAhead,
    /// Not in sequence (a lost answer, a restart): not an offence; the
    /// sender starts again from offset 0.
    OutOfOrder(String),
    /// Not a certified checkpoint of this chain, or too large: an offence.
    Refused(String),
}

/// One snapshot being received from one validator.
struct Assembly {
    snapshot_id: String,
    data: Vec<u8>,
}

/// The validator the caller's certificate names, for the `peer` field.
fn caller_id<T>(req: &Request<T>) -> Option<NodeId> {
    req.extensions()
        .get::<PeerIdentity>()
        .and_then(|p| p.validator)
}

/// The caller's address, for the `remote` field.
fn caller_addr<T>(req: &Request<T>) -> Option<tracing::field::DisplayValue<std::net::SocketAddr>> {
    req.extensions()
        .get::<PeerIdentity>()
        .map(|p| tracing::field::display(p.remote))
}

/// The caller's certificate and address, for the log of a refusal.
fn who<T>(req: &Request<T>) -> String {
    match req.extensions().get::<PeerIdentity>() {
        Some(p) => format!(
            "TLS certificate of validator {} ({}) from {}",
            p.validator
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into()),
            p.validator
                .map(crate::transport::tls::validator_dns_name)
                .unwrap_or_default(),
            p.remote
        ),
        None => "no TLS identity".to_owned(),
    }
}

/// The leader's side of a forwarded batch: every command is answered on
/// its own, in request order, and none fails the others. Commands past this
/// leader's own batch bounds (`client.max_forward_batch`,
/// `client.max_forward_batch_bytes`) are answered overloaded (the follower
/// routes them again); one that does not decode is malformed; each other is
/// admitted again against this leader's state (the follower's view may be
/// behind): a refusal or an identical retry of an applied command is
/// answered here, and only the admitted ones are appended, back to back,
/// by `write`.
pub async fn admit_forwarded<W, F>(
    machine: &SharedMachine,
    commands: &[Vec<u8>],
    settings: &ClientSettings,
    write: W,
) -> Vec<Result<Submitted, NodeError>>
where
    W: FnOnce(Vec<SignedCommand>) -> F,
    F: std::future::Future<Output = Vec<Result<Submitted, NodeError>>>,
{
    // The signatures of the whole batch are checked first, together (an
    // ed25519 batch costs about half as much per signature as single
    // checks); admission below then finds the memoized verdicts.
    let within = commands
        .iter()
        .scan(0usize, |bytes, c| {
            *bytes = bytes.saturating_add(c.len());
            Some(*bytes)
        })
        .take_while(|&b| b <= settings.max_forward_batch_bytes)
        .count()
        .min(settings.max_forward_batch);
    // Each command is decoded once; the ones past the batch's bounds are
    // answered overloaded below.
    let decoded: Vec<Result<SignedCommand, NodeError>> = commands[..within]
        .iter()
        .map(|c| decode_command(c))
        .collect();
    let checkable: Vec<&SignedCommand> = commands[..within]
        .iter()
        .zip(&decoded)
        .filter(|(c, _)| c.len() <= neuroshard_governance::limits::MAX_COMMAND_BYTES)
        .filter_map(|(_, d)| d.as_ref().ok())
        .collect();
    if !checkable.is_empty() {
        let chain_id = machine.read().state.chain().chain_id.clone();
        neuroshard_governance::signature::verify_commands(&chain_id, &checkable);
    }
    let mut results: Vec<Option<Result<Submitted, NodeError>>> = Vec::with_capacity(commands.len());
    let mut admitted = Vec::new();
    let mut decoded = decoded.into_iter();
    for (i, encoded) in commands.iter().enumerate() {
        let answer = match decoded.next() {
            None => Some(Err(NodeError::Overloaded {
                pending: i + 1,
                limit: settings.max_forward_batch,
            })),
            Some(Err(e)) => Some(Err(e)),
            Some(Ok(command)) => match admission::admit(machine, &command, encoded.len()) {
                Err(e) => Some(Err(e)),
                Ok(Verdict::Answer(original)) => Some(Ok(original)),
                Ok(Verdict::Propose) => {
                    admitted.push(command);
                    None
                }
            },
        };
        results.push(answer);
    }
    let mut written = if admitted.is_empty() {
        Vec::new()
    } else {
        write(admitted).await
    }
    .into_iter();
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                written
                    .next()
                    .unwrap_or_else(|| Err(NodeError::Internal("missing batch result".into())))
            })
        })
        .collect()
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

/// A Raft error travels as JSON in the status details, so the calling
/// openraft sees the remote error it would see in process.
fn raft_status<E: Serialize + std::fmt::Display>(
    e: openraft::error::RaftError<NodeId, E>,
) -> Status {
    let details = serde_json::to_vec(&e).unwrap_or_default();
    Status::with_details(
        tonic::Code::FailedPrecondition,
        e.to_string(),
        details.into(),
    )
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    #[tracing::instrument(name = "peer_rpc", level = "debug", skip_all, fields(rpc = "append_entries", peer = caller_id(&req), remote = caller_addr(&req)))]
    async fn append_entries(
        &self,
        req: Request<proto::AppendEntriesRequest>,
    ) -> Result<Response<proto::AppendEntriesResponse>, Status> {
        let claimed = req
            .get_ref()
            .vote
            .as_ref()
            .map(|v| v.node_id)
            .ok_or_else(|| invalid("field `vote` is missing"))?;
        self.authenticate(&req, claimed)?;
        let caller = who(&req);
        let rpc = convert::append_request_from(req.into_inner()).map_err(invalid)?;
        let ae_idx = rpc.entries.last().map(|e| e.log_id.index).unwrap_or(0);
        crate::hoptrace::mark("AE_recv", ae_idx);
        if let Err(r) = self
            .safety
            .check_append(claimed, &rpc.vote, rpc.prev_log_id, &rpc.entries)
        {
            return self.refuse(&caller, claimed, r);
        }
        // Certificates were checked by `check_append` (a memo hit when the
        // leader offered them first); client commands are checked by the
        // log store once their sync is requested (`store::ChecksOnAppend`),
        // so they never delay the append.
        crate::hoptrace::mark("AE_raft", ae_idx);
        let resp = self.raft.append_entries(rpc).await.map_err(raft_status)?;
        crate::hoptrace::mark("AE_done", ae_idx);
        Ok(Response::new(convert::append_response_to(&resp)))
    }

    #[tracing::instrument(name = "peer_rpc", skip_all, fields(rpc = "vote", peer = caller_id(&req), remote = caller_addr(&req)))]
    async fn vote(
        &self,
        req: Request<proto::VoteRequest>,
    ) -> Result<Response<proto::VoteResponse>, Status> {
        let claimed = req
            .get_ref()
            .vote
            .as_ref()
            .map(|v| v.node_id)
            .ok_or_else(|| invalid("field `vote` is missing"))?;
        self.authenticate(&req, claimed)?;
        let caller = who(&req);
        let rpc = convert::vote_request_from(req.into_inner()).map_err(invalid)?;
        if let Err(r) = self.safety.check_vote(claimed, &rpc.vote, rpc.last_log_id) {
            return self.refuse(&caller, claimed, r);
        }
        let resp = self.raft.vote(rpc).await.map_err(raft_status)?;
        Ok(Response::new(convert::vote_response_to(&resp)))
    }

    #[tracing::instrument(name = "peer_rpc", skip_all, fields(rpc = "install_snapshot", peer = caller_id(&req), remote = caller_addr(&req)))]
    async fn install_snapshot(
        &self,
        req: Request<proto::InstallSnapshotRequest>,
    ) -> Result<Response<proto::InstallSnapshotResponse>, Status> {
        let claimed = req
            .get_ref()
            .vote
            .as_ref()
            .map(|v| v.node_id)
            .ok_or_else(|| invalid("field `vote` is missing"))?;
        self.authenticate(&req, claimed)?;
        let caller = who(&req);
        let rpc = convert::install_request_from(req.into_inner()).map_err(invalid)?;
        if let Err(r) = self.safety.check_snapshot(
            claimed,
            &rpc.vote,
            &rpc.meta.last_membership,
            rpc.meta.last_log_id.map_or(0, |l| l.index),
        ) {
            return self.refuse(&caller, claimed, r);
        }
        self.safety.snapshot_chunk_received();
        let current_vote = || {
            let vote = self.raft.metrics().borrow().vote;
            Ok(Response::new(proto::InstallSnapshotResponse {
                vote: Some(convert::vote_to(&vote)),
            }))
        };
        match self.assemble_and_verify(claimed, &rpc).await {
            Chunk::Kept | Chunk::NotAhead => current_vote(),
            Chunk::OutOfOrder(reason) => Err(Status::aborted(reason)),
            Chunk::Refused(reason) => {
                let refusal = Refusal::UncertifiedSnapshot {
                    snapshot_id: rpc.meta.snapshot_id.clone(),
                    index: rpc.meta.last_log_id.map_or(0, |l| l.index),
                    bytes: usize::try_from(rpc.offset)
                        .unwrap_or(usize::MAX)
                        .saturating_add(rpc.data.len()),
                    reason,
                };
                if let Some(peers) = &self.peers {
                    crate::checkpoint::fetch::spawn_catch_up(
                        peers.self_id(),
                        claimed,
                        self.members.iter().copied().collect(),
                        peers.clone(),
                        self.raft.clone(),
                        self.machine.clone(),
                    );
                }
                self.refuse(&caller, claimed, refusal)
            }
            Chunk::Verified(data) => {
                let snapshot = crate::types::Snapshot {
                    meta: rpc.meta.clone(),
                    snapshot: Box::new(crate::store::SnapshotBuffer::from_bytes(data)),
                };
                let resp = self
                    .raft
                    .install_full_snapshot(rpc.vote, snapshot)
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                Ok(Response::new(proto::InstallSnapshotResponse {
                    vote: Some(convert::vote_to(&resp.vote)),
                }))
            }
        }
    }

    #[tracing::instrument(name = "peer_rpc", level = "debug", skip_all, fields(rpc = "forward_commands", peer = caller_id(&req), remote = caller_addr(&req)))]
    async fn forward_commands(
        &self,
        req: Request<proto::ForwardCommandsRequest>,
    ) -> Result<Response<proto::ForwardCommandsResponse>, Status> {
        crate::hoptrace::mark("FW_recv", 0);
        self.authenticate(&req, req.get_ref().from)?;
        let msg = req.into_inner();
        let results = admit_forwarded(
            &self.machine,
            &msg.commands,
            self.submitter.settings(),
            |commands| self.submitter.write_local_batch(commands),
        )
        .await
        .iter()
        .map(result_to_wire)
        .collect();
        crate::hoptrace::mark("FW_done", 0);
        Ok(Response::new(proto::ForwardCommandsResponse { results }))
    }

    #[tracing::instrument(name = "peer_rpc", skip_all, fields(rpc = "read_index", peer = caller_id(&req), remote = caller_addr(&req)))]
    async fn read_index(
        &self,
        req: Request<proto::ReadIndexRequest>,
    ) -> Result<Response<proto::ReadIndexResponse>, Status> {
        self.authenticate(&req, req.get_ref().from)?;
        // A diverged leader confirms nothing: its heartbeat round would
        // keep the followers from electing another leader.
        if let Some(d) = &self.machine.read().checkpoints.diverged {
            return Err(Status::unavailable(format!(
                "this validator diverged ({}); it answers no read index",
                d.describe()
            )));
        }
        let raft = self.raft.clone();
        let round = move || {
            let raft = raft.clone();
            async move {
                crate::reads::leader_read_index(&raft)
                    .await
                    .map_err(|s| s.message().to_owned())
            }
        };
        let index = self
            .reads
            .read_index(round)
            .await
            .map_err(Status::unavailable)?;
        Ok(Response::new(proto::ReadIndexResponse { index }))
    }

    #[tracing::instrument(name = "peer_rpc", skip_all, fields(rpc = "probe", peer = caller_id(&req), remote = caller_addr(&req)))]
    async fn probe(
        &self,
        req: Request<proto::ProbeRequest>,
    ) -> Result<Response<proto::ProbeResponse>, Status> {
        let from = req.get_ref().from;
        self.authenticate(&req, from)?;
        if req.get_ref().recovering {
            // If this validator leads and caught `from`'s log going
            // backwards, it replicates to it again.
            self.safety.peer_recovering(from);
            tracing::warn!(
                peer = from,
                "validator {from} is recovering its data directory: it asks what it acknowledged"
            );
        }
        let committed = self
            .raft
            .with_raft_state(|s| s.committed)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        // Never past this validator's durable log (`store::durable_mark`).
        let committed = match &self.peers {
            Some(peers) => peers.clamp_committed(committed),
            None => committed,
        };
        // Its vote and log, and what it records of `from` while leading.
        let (vote, last_log_index, live) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (
                m.vote,
                m.last_log_index,
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&from).copied().flatten()),
            )
        };
        let acknowledged = live.max(self.safety.acks.get(from));
        Ok(Response::new(proto::ProbeResponse {
            vote: Some(convert::vote_to(&vote)),
            last_log_index,
            committed: convert::opt_log_id_to(&committed),
            acknowledged: convert::opt_log_id_to(&acknowledged),
        }))
    }

    #[tracing::instrument(name = "peer_rpc", skip_all, fields(rpc = "submit_signature_share", peer = caller_id(&req), remote = caller_addr(&req)))]
    async fn submit_signature_share(
        &self,
        req: Request<proto::SignatureShareRequest>,
    ) -> Result<Response<proto::SignatureShareResponse>, Status> {
        self.authenticate(&req, req.get_ref().from)?;
        let msg = req.into_inner();
        let payload_sha256: [u8; 32] = msg.payload_sha256.as_slice().try_into().map_err(|_| {
            invalid(format!(
                "payload_sha256 must be 32 bytes, got {}",
                msg.payload_sha256.len()
            ))
        })?;
        if msg.share.is_empty() || msg.share.len() > MAX_SHARE_BYTES {
            return Err(invalid(format!(
                "share is {} bytes, allowed 1..={MAX_SHARE_BYTES}",
                msg.share.len()
            )));
        }
        let share = ReceivedShare {
            from: msg.from,
            sequence: msg.sequence,
            payload_sha256,
            share: msg.share,
        };
        let (accepted, message) = match self.shares.try_send(share) {
            Ok(()) => (true, String::new()),
            Err(mpsc::error::TrySendError::Full(_)) => (
                false,
                format!("{MAX_PENDING_SHARES} shares are waiting to be processed; resend later"),
            ),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                (false, "this node does not collect shares".to_owned())
            }
        };
        Ok(Response::new(proto::SignatureShareResponse {
            accepted,
            message,
        }))
    }

    #[tracing::instrument(name = "peer_rpc", skip_all, fields(rpc = "offer_certificate", peer = caller_id(&req), remote = caller_addr(&req)))]
    async fn offer_certificate(
        &self,
        req: Request<proto::CertificateOfferRequest>,
    ) -> Result<Response<proto::CertificateOfferResponse>, Status> {
        self.authenticate(&req, req.get_ref().from)?;
        let msg = req.into_inner();
        let count = |verdict: &str| {
            crate::metrics::metrics()
                .certificate_offers
                .get_or_create(&crate::metrics::label("verdict", verdict))
                .inc();
        };
        let refuse = |rule: &'static str, status: Status| {
            count("refused");
            crate::limited!(
                crate::logging::REFUSALS,
                key = rule,
                debug!(rule, peer = msg.from, error = %status.message(), "certificate offer refused")
            );
            Err(status)
        };
        if let Some(r) = self.safety.still_ignored(msg.from) {
            return refuse("ignored_validator", r.to_status());
        }
        // Only this replica's leader proposes certificates; anyone else
        // would only make this validator spend pairings.
        let leader = self.raft.metrics().borrow().current_leader;
        if leader != Some(msg.from) {
            return refuse(
                "offer_not_from_leader",
                Status::failed_precondition(format!(
                    "offer_not_from_leader: validator {} is not this replica's leader ({})",
                    msg.from,
                    leader.map_or("none known".to_owned(), |l| format!("validator {l}"))
                )),
            );
        }
        if msg.certificate.len() > MAX_CERTIFICATE_OFFER_BYTES {
            return refuse(
                "offer_too_large",
                invalid(format!(
                    "offer_too_large: certificate is {} bytes, at most {MAX_CERTIFICATE_OFFER_BYTES}",
                    msg.certificate.len()
                )),
            );
        }
        let certificate: neuroshard_governance::IssuedCertificate =
            match crate::codec::decode_entry("offered certificate", &msg.certificate) {
                Ok(c) => c,
                Err(e) => {
                    return refuse("offer_malformed", invalid(format!("offer_malformed: {e}")))
                }
            };
        // Only a certificate this replica decided and has not issued, on
        // the payload it derived itself: what a leader may make it verify
        // is bounded by what the committee decided.
        let pending = {
            let m = self.machine.read();
            m.state.certificate(certificate.sequence).map(|r| {
                (
                    r.issued.is_none(),
                    r.payload == certificate.envelope.payload,
                )
            })
        };
        if pending != Some((true, true)) {
            return refuse(
                "offer_not_pending",
                Status::failed_precondition(format!(
                    "offer_not_pending: certificate {} is {} on this replica",
                    certificate.sequence,
                    match pending {
                        None => "not decided (yet)",
                        Some((false, _)) => "issued already",
                        Some((true, _)) => "decided on another payload",
                    }
                )),
            );
        }
        // One at a time, off the runtime's workers: a few milliseconds of
        // pairings that must not delay this validator's appends. The slot
        // is held by the verification itself, so a caller that goes away
        // does not free it early.
        let Ok(Ok(permit)) =
            tokio::time::timeout(OFFER_QUEUE_WAIT, self.offers.clone().acquire_owned()).await
        else {
            return refuse(
                "offers_busy",
                Status::resource_exhausted(format!(
                    "offers_busy: another offered certificate was being verified for {} ms; the entry's append will verify this one",
                    OFFER_QUEUE_WAIT.as_millis()
                )),
            );
        };
        let committee = self.machine.read().state.chain().committee.clone();
        let verdict = crate::blocking::run(move || {
            let _permit = permit;
            neuroshard_governance::certificate::verify_issued(&committee, &certificate)
        })
        .await
        .map_err(|e| {
            Status::internal(format!(
                "offer_unverified: the verification did not finish: {e}"
            ))
        })?;
        match verdict {
            Ok(()) => {
                count("valid");
                Ok(Response::new(proto::CertificateOfferResponse {
                    valid: true,
                    reason: String::new(),
                }))
            }
            Err(reason) => {
                count("invalid");
                crate::limited!(
                    crate::logging::REFUSALS,
                    key = "offer_invalid",
                    warn!(peer = msg.from, %reason, "the leader offered a certificate that does not verify")
                );
                Ok(Response::new(proto::CertificateOfferResponse {
                    valid: false,
                    reason,
                }))
            }
        }
    }

    #[tracing::instrument(name = "peer_rpc", skip_all, fields(rpc = "fetch_checkpoint", peer = caller_id(&req), remote = caller_addr(&req)))]
    async fn fetch_checkpoint(
        &self,
        req: Request<proto::FetchCheckpointRequest>,
    ) -> Result<Response<proto::FetchCheckpointResponse>, Status> {
        self.authenticate(&req, req.get_ref().from)?;
        let offset = req.get_ref().offset;
        let (machine, cache) = (self.machine.clone(), self.fetch_cache.clone());
        // Encoding the snapshot is O(state): off the runtime's workers.
        let resp =
            crate::blocking::run(move || crate::checkpoint::fetch::serve(&machine, &cache, offset))
                .await
                .map_err(Status::internal)?
                .map_err(Status::internal)?;
        Ok(Response::new(resp))
    }

    #[tracing::instrument(name = "peer_rpc", skip_all, fields(rpc = "submit_checkpoint_share", peer = caller_id(&req), remote = caller_addr(&req)))]
    async fn submit_checkpoint_share(
        &self,
        req: Request<proto::CheckpointShareRequest>,
    ) -> Result<Response<proto::CheckpointShareResponse>, Status> {
        self.authenticate(&req, req.get_ref().from)?;
        let msg = req.into_inner();
        let hash32 = |what: &str, bytes: &[u8]| -> Result<[u8; 32], Status> {
            bytes
                .try_into()
                .map_err(|_| invalid(format!("{what} must be 32 bytes, got {}", bytes.len())))
        };
        let membership_sha256 = hash32("membership_sha256", &msg.membership_sha256)?;
        let state_hash = hash32("state_hash", &msg.state_hash)?;
        if msg.share.is_empty() || msg.share.len() > MAX_SHARE_BYTES {
            return Err(invalid(format!(
                "share is {} bytes, allowed 1..={MAX_SHARE_BYTES}",
                msg.share.len()
            )));
        }
        let Some(tx) = &self.checkpoint_shares else {
            return Ok(Response::new(proto::CheckpointShareResponse {
                accepted: false,
                message: "this node does not certify checkpoints".to_owned(),
            }));
        };
        let payload = {
            let m = self.machine.read();
            let chain = m.state.chain();
            CheckpointPayload {
                chain_id: chain.chain_id.clone(),
                committee_hash: chain.committee_hash,
                term: msg.term,
                leader: msg.leader,
                index: msg.index,
                membership_sha256,
                state_hash,
            }
        };
        let share = ReceivedCheckpointShare {
            from: msg.from,
            payload,
            share: msg.share,
        };
        let (accepted, message) = match tx.try_send(share) {
            Ok(()) => (true, String::new()),
            Err(mpsc::error::TrySendError::Full(_)) => (
                false,
                format!(
                    "{MAX_PENDING_CHECKPOINT_SHARES} checkpoint shares are waiting; resend later"
                ),
            ),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                (false, "this node does not certify checkpoints".to_owned())
            }
        };
        Ok(Response::new(proto::CheckpointShareResponse {
            accepted,
            message,
        }))
    }
}

#[cfg(test)]
mod offer_bound_tests {
    use neuroshard_certificate::{Envelope, MAX_PAYLOAD_BYTES, PAYLOAD_TYPE};
    use neuroshard_governance::certificate::CertificateShare;
    use neuroshard_governance::limits::MAX_CERTIFICATE_SHARES;
    use neuroshard_governance::IssuedCertificate;

    use super::MAX_CERTIFICATE_OFFER_BYTES;

    #[test]
    fn the_largest_certificate_a_leader_can_combine_fits_the_offer_bound() {
        let largest = IssuedCertificate {
            sequence: u64::MAX,
            envelope: Envelope {
                payload_type: PAYLOAD_TYPE.to_owned(),
                payload: vec![0xff; MAX_PAYLOAD_BYTES],
                scheme: "s".repeat(64),
                committee_epoch: u64::MAX,
                signature: vec![0xff; 96],
            },
            shares: (0..MAX_CERTIFICATE_SHARES)
                .map(|i| CertificateShare {
                    validator: u32::MAX - i as u32,
                    share: vec![0xff; 96],
                })
                .collect(),
        };
        let bytes = crate::codec::encode_entry("offered certificate", &largest).expect("encodes");
        assert!(
            bytes.len() <= MAX_CERTIFICATE_OFFER_BYTES,
            "{} > {MAX_CERTIFICATE_OFFER_BYTES}",
            bytes.len()
        );
        // Not loose by more than the slack for the envelope's other fields.
        assert!(MAX_CERTIFICATE_OFFER_BYTES - bytes.len() <= 8 * 1024 + 256 * 64);
    }
}
