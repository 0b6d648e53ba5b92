//! Dialling other validators: openraft's network (AppendEntries, Vote,
//! InstallSnapshot) and the node's own calls (forwarded commands, signature
//! shares), all over one mutually authenticated channel per peer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use prost::Message;
use tonic::transport::{Channel, Endpoint};

use crate::proto;
use crate::proto::raft_peer_client::RaftPeerClient;
use crate::transport::convert;
use crate::transport::net::{tls_connector, Network};
use crate::transport::tls::{server_name_for, validator_dns_name};
use crate::types::{NodeId, TypeConfig};

/// Timeouts and bounds of outgoing peer RPCs.
#[derive(Clone, Debug)]
pub struct PeerClientSettings {
    pub rpc_timeout: Duration,
    pub snapshot_rpc_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_message_bytes: usize,
    /// A call that times out on a connection silent for longer than this
    /// drops the connection, and the next call dials afresh.
    pub reconnect_after_silence: Duration,
}

/// A peer's channel and when the peer last answered through it.
struct Cached {
    client: RaftPeerClient<Channel>,
    heard: Instant,
}

/// One gRPC channel per peer, created on first use; tonic reconnects it.
#[derive(Clone)]
pub struct PeerClients {
    self_id: NodeId,
    addrs: Arc<BTreeMap<NodeId, String>>,
    network: Arc<dyn Network>,
    tls: Arc<rustls::ClientConfig>,
    settings: PeerClientSettings,
    channels: Arc<Mutex<BTreeMap<NodeId, Cached>>>,
    /// Where a follower whose log went backwards is reported.
    safety: Option<Arc<crate::safety::Safety>>,
    /// Per follower: this leader's vote, the highest log id the follower
    /// confirmed under it, and whether it then lost entries.
    progress: Arc<Mutex<BTreeMap<NodeId, Confirmed>>>,
    /// How far this validator's own log is durable: the committed id sent
    /// to others never passes it (`store::durable_mark`).
    mark: Option<crate::store::DurableMark>,
}

/// What one follower confirmed under one leader vote.
#[derive(Clone, Copy, Debug)]
struct Confirmed {
    vote: crate::types::Vote,
    matched: Option<crate::types::LogId>,
    reverted: bool,
}

impl Confirmed {
    /// `target`'s record under `vote` (a new vote starts a new record).
    fn under(
        progress: &mut BTreeMap<NodeId, Confirmed>,
        target: NodeId,
        vote: crate::types::Vote,
    ) -> &mut Confirmed {
        let fresh = Confirmed {
            vote,
            matched: None,
            reverted: false,
        };
        let c = progress.entry(target).or_insert(fresh);
        if c.vote != vote {
            *c = fresh;
        }
        c
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("validator {0} has no address in this node's config")]
    UnknownPeer(NodeId),
    #[error("endpoint for validator {node}: {message}")]
    Endpoint { node: NodeId, message: String },
}

impl PeerClients {
    pub fn new(
        self_id: NodeId,
        addrs: BTreeMap<NodeId, String>,
        network: Arc<dyn Network>,
        tls: Arc<rustls::ClientConfig>,
        settings: PeerClientSettings,
    ) -> Self {
        Self {
            self_id,
            addrs: Arc::new(addrs),
            network,
            tls,
            settings,
            channels: Arc::default(),
            safety: None,
            progress: Arc::default(),
            mark: None,
        }
    }

    /// Clamps the committed id this validator tells others to `mark`.
    pub fn with_durable_mark(mut self, mark: crate::store::DurableMark) -> Self {
        self.mark = Some(mark);
        self
    }

    /// The committed id another validator may be told: never past this
    /// validator's durable log (`store::durable_mark`).
    pub fn clamp_committed(
        &self,
        committed: Option<crate::types::LogId>,
    ) -> Option<crate::types::LogId> {
        match &self.mark {
            Some(mark) => mark.clamp(committed),
            None => committed,
        }
    }

    /// Reports followers whose log went backwards to `safety`.
    pub fn with_safety(mut self, safety: Arc<crate::safety::Safety>) -> Self {
        self.safety = Some(safety);
        self
    }

    pub fn self_id(&self) -> NodeId {
        self.self_id
    }

    pub fn settings(&self) -> &PeerClientSettings {
        &self.settings
    }

    /// The client for `target`, connecting lazily.
    pub fn client(&self, target: NodeId) -> Result<RaftPeerClient<Channel>, PeerError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(&target) {
            return Ok(c.client.clone());
        }
        let addr = self
            .addrs
            .get(&target)
            .ok_or(PeerError::UnknownPeer(target))?
            .clone();
        let endpoint_err = |message: String| PeerError::Endpoint {
            node: target,
            message,
        };
        let server_name = server_name_for(&validator_dns_name(target))
            .map_err(|e| endpoint_err(e.to_string()))?;
        // The scheme is http because TLS runs inside the connector.
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| endpoint_err(e.to_string()))?
            .connect_timeout(self.settings.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20));
        let connector = tls_connector(self.network.clone(), addr, server_name, self.tls.clone());
        let channel = endpoint.connect_with_connector_lazy(connector);
        let client = RaftPeerClient::new(channel)
            .max_decoding_message_size(self.settings.max_message_bytes)
            .max_encoding_message_size(self.settings.max_message_bytes);
        channels.insert(
            target,
            Cached {
                client: client.clone(),
                heard: Instant::now(),
            },
        );
        Ok(client)
    }

    /// `target` answered: its connection carries bytes.
    fn heard_from(&self, target: NodeId) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get_mut(&target) {
            c.heard = Instant::now();
        }
    }

    /// A call to `target` got no answer in time. A connection whose packets
    /// were black-holed (a partition) sits in TCP retransmission back-off
    /// long after the network heals, and HTTP/2 keeps sending on it: the
    /// peer then hears no heartbeat, campaigns with a higher term and
    /// unseats a healthy leader (chaos/run, scenario leader-isolated). So a
    /// connection silent for longer than `reconnect_after_silence` is
    /// dropped and the next call dials afresh.
    fn timed_out(&self, target: NodeId) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if channels
            .get(&target)
            .is_some_and(|c| c.heard.elapsed() > self.settings.reconnect_after_silence)
        {
            channels.remove(&target);
        }
    }

    /// Notes what an RPC's outcome says about the connection to `target`.
    fn observe<T>(&self, target: NodeId, result: &Result<T, tonic::Status>) {
        match result {
            Ok(_) => self.heard_from(target),
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
                ) =>
            {
                self.timed_out(target)
            }
            // Any other status came from somewhere: an answer, or a
            // refused connection that tonic redials by itself.
            Err(_) => {}
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerClients {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, _node: &openraft::EmptyNode) -> PeerConnection {
        PeerConnection {
            target,
            clients: self.clone(),
        }
    }
}

/// openraft's handle on one peer (one per replication stream: a new leader
/// makes new ones).
pub struct PeerConnection {
    target: NodeId,
    clients: PeerClients,
}

/// A gRPC failure as openraft understands it: an error the remote Raft
/// returned travels as JSON in the status details.
fn rpc_error<E>(
    target: NodeId,
    self_id: NodeId,
    action: RPCTypes,
    timeout: Duration,
    status: tonic::Status,
) -> RPCError<NodeId, openraft::EmptyNode, RaftError<NodeId, E>>
where
    E: std::error::Error + serde::de::DeserializeOwned,
{
    if !status.details().is_empty() {
        if let Ok(remote) = serde_json::from_slice::<RaftError<NodeId, E>>(status.details()) {
            return RPCError::RemoteError(RemoteError::new(target, remote));
        }
    }
    match status.code() {
        // A refusal of the peer service (before Raft: an ignored or
        // recovering validator, a refused identity) backs off like an
        // unreachable peer instead of being retried at once.
        tonic::Code::Unavailable
        | tonic::Code::FailedPrecondition
        | tonic::Code::PermissionDenied
        | tonic::Code::Unauthenticated => RPCError::Unreachable(Unreachable::new(&status)),
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => RPCError::Timeout(Timeout {
            action,
            id: self_id,
            target,
            timeout,
        }),
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

fn wire_error<E: std::error::Error>(
    e: &(impl std::error::Error + 'static),
) -> RPCError<NodeId, openraft::EmptyNode, RaftError<NodeId, E>> {
    RPCError::Network(NetworkError::new(e))
}

impl PeerConnection {
    fn client<E: std::error::Error>(
        &self,
    ) -> Result<RaftPeerClient<Channel>, RPCError<NodeId, openraft::EmptyNode, RaftError<NodeId, E>>>
    {
        self.clients
            .client(self.target)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    fn deadline(&self, option: &RPCOption, configured: Duration) -> Duration {
        option.hard_ttl().min(configured)
    }

    /// Keeps the highest log id the follower confirmed under this leader's
    /// vote and catches a follower whose log went backwards: a conflict at
    /// or below what it confirmed means it lost acknowledged entries (a
    /// wiped or rolled-back data directory). openraft must not see that
    /// answer (it would panic or search below its own progress): the
    /// follower is reported, recorded and no longer replicated to.
    fn check_matching(
        &mut self,
        vote: crate::types::Vote,
        prev: Option<crate::types::LogId>,
        last_sent: Option<crate::types::LogId>,
        resp: &AppendEntriesResponse<NodeId>,
    ) -> Result<(), RPCError<NodeId, openraft::EmptyNode, RaftError<NodeId>>> {
        let mut progress = self
            .clients
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let c = Confirmed::under(&mut progress, self.target, vote);
        let malformed = |what: String| {
            Err(RPCError::Unreachable(Unreachable::new(
                &std::io::Error::other(format!("validator {} answered {what}", self.target)),
            )))
        };
        let confirmed = match resp {
            AppendEntriesResponse::Success => last_sent,
            AppendEntriesResponse::PartialSuccess(m) => {
                // openraft asserts the answer lies within what was sent.
                if *m < prev || *m > last_sent {
                    return malformed(format!(
                        "a partial success {m:?} outside the entries sent ({prev:?}..={last_sent:?})"
                    ));
                }
                *m
            }
            AppendEntriesResponse::HigherVote(v)
                if v.partial_cmp(&vote) != Some(std::cmp::Ordering::Greater) =>
            {
                return malformed(format!("a higher vote {v} that is not above {vote}"));
            }
            AppendEntriesResponse::Conflict if prev.is_none() => {
                return malformed("a conflict with no previous entry".to_owned());
            }
            AppendEntriesResponse::Conflict => {
                if let Some(had) = c
                    .matched
                    .filter(|h| prev.is_some_and(|p| p.index <= h.index))
                {
                    c.reverted = true;
                    drop(progress);
                    if let Some(safety) = &self.clients.safety {
                        safety.follower_reverted(self.target, had, prev);
                    }
                    return Err(RPCError::Unreachable(Unreachable::new(
                        &std::io::Error::other(format!(
                            "validator {} lost log entries it had acknowledged (matched {had}, now misses {prev:?})",
                            self.target
                        )),
                    )));
                }
                None
            }
            AppendEntriesResponse::HigherVote(_) => None,
        };
        if let Some(confirmed) = confirmed {
            if c.matched.is_none_or(|m| confirmed > m) {
                c.matched = Some(confirmed);
            }
        }
        Ok(())
    }

    /// The follower lost entries it had confirmed to the leader of `vote`
    /// (and has not announced a recovery since).
    fn is_reverted(&self, vote: &crate::types::Vote) -> bool {
        let mut progress = self
            .clients
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(c) = progress.get_mut(&self.target) else {
            return false;
        };
        if c.reverted
            && self
                .clients
                .safety
                .as_ref()
                .is_some_and(|s| s.take_peer_recovering(self.target))
        {
            // It restarted with --recover: its higher vote will make this
            // leader step down; let the next append carry it.
            c.reverted = false;
            c.matched = None;
        }
        c.reverted && c.vote == *vote
    }

    /// A snapshot up to `last` was installed on the follower under `vote`.
    fn snapshot_installed(&self, vote: crate::types::Vote, last: Option<crate::types::LogId>) {
        let mut progress = self
            .clients
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let c = Confirmed::under(&mut progress, self.target, vote);
        if last > c.matched {
            c.matched = last;
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<NodeId>,
        RPCError<NodeId, openraft::EmptyNode, RaftError<NodeId>>,
    > {
        let entries = rpc.entries.len() as u64;
        // A follower applies what it is told is committed: only once it is
        // durable here too (`store::durable_mark`).
        rpc.leader_commit = self.clients.clamp_committed(rpc.leader_commit);
        if self.is_reverted(&rpc.vote) {
            return Err(RPCError::Unreachable(Unreachable::new(
                &std::io::Error::other(format!(
                "validator {} lost log entries it had acknowledged; it rejoins only with --recover",
                self.target
            )),
            )));
        }
        let vote = rpc.vote;
        let prev = rpc.prev_log_id;
        let last_sent = rpc.entries.last().map(|e| e.log_id).or(prev);
        let msg = convert::append_request_to(&rpc).map_err(|e| wire_error(&e))?;
        // Too big for the peer's message limit: openraft retries with fewer.
        if msg.encoded_len() > self.clients.settings.max_message_bytes && entries > 1 {
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(entries / 2),
            ));
        }
        let timeout = self.deadline(&option, self.clients.settings.rpc_timeout);
        let mut req = tonic::Request::new(msg);
        req.set_timeout(timeout);
        let started = std::time::Instant::now();
        let resp = self.client()?.append_entries(req).await;
        crate::metrics::peer_rpc(self.target, "append_entries", started, &resp);
        self.clients.observe(self.target, &resp);
        let resp = resp.map_err(|s| {
            rpc_error(
                self.target,
                self.clients.self_id,
                RPCTypes::AppendEntries,
                timeout,
                s,
            )
        })?;
        let resp = convert::append_response_from(resp.into_inner()).map_err(|e| wire_error(&e))?;
        self.check_matching(vote, prev, last_sent, &resp)?;
        Ok(resp)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, openraft::EmptyNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        if self.is_reverted(&rpc.vote) {
            return Err(RPCError::Unreachable(Unreachable::new(
                &std::io::Error::other(format!(
                "validator {} lost log entries it had acknowledged; it rejoins only with --recover",
                self.target
            )),
            )));
        }
        let timeout = self.deadline(&option, self.clients.settings.snapshot_rpc_timeout);
        let mut req = tonic::Request::new(convert::install_request_to(&rpc));
        req.set_timeout(timeout);
        let started = std::time::Instant::now();
        let resp = self.client()?.install_snapshot(req).await;
        crate::metrics::peer_rpc(self.target, "install_snapshot", started, &resp);
        self.clients.observe(self.target, &resp);
        let resp = resp.map_err(|s| {
            rpc_error(
                self.target,
                self.clients.self_id,
                RPCTypes::InstallSnapshot,
                timeout,
                s,
            )
        })?;
        let vote = convert::vote_from(resp.into_inner().vote).map_err(|e| wire_error(&e))?;
        if rpc.done && vote == rpc.vote {
            // The follower now holds the snapshot: a later conflict below
            // it means its log went backwards.
            self.snapshot_installed(rpc.vote, rpc.meta.last_log_id);
        }
        Ok(InstallSnapshotResponse { vote })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, openraft::EmptyNode, RaftError<NodeId>>>
    {
        let timeout = self.deadline(&option, self.clients.settings.rpc_timeout);
        let mut req = tonic::Request::new(convert::vote_request_to(&rpc));
        req.set_timeout(timeout);
        let started = std::time::Instant::now();
        let resp = self.client()?.vote(req).await;
        crate::metrics::peer_rpc(self.target, "vote", started, &resp);
        self.clients.observe(self.target, &resp);
        let resp = resp.map_err(|s| {
            rpc_error(
                self.target,
                self.clients.self_id,
                RPCTypes::Vote,
                timeout,
                s,
            )
        })?;
        convert::vote_response_from(resp.into_inner()).map_err(|e| wire_error(&e))
    }
}

/// A forwarded batch failed as a whole (the results of a delivered batch
/// come back per command).
pub async fn forward_commands(
    clients: &PeerClients,
    leader: NodeId,
    commands: Vec<Vec<u8>>,
    timeout: Duration,
) -> Result<Vec<proto::CommandResult>, String> {
    let count = commands.len();
    let mut client = clients.client(leader).map_err(|e| e.to_string())?;
    let mut req = tonic::Request::new(proto::ForwardCommandsRequest {
        from: clients.self_id,
        commands,
    });
    req.set_timeout(timeout);
    let resp = client
        .forward_commands(req)
        .await
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?;
    let results = resp.into_inner().results;
    if results.len() != count {
        return Err(format!(
            "leader answered {} results for {count} commands",
            results.len()
        ));
    }
    Ok(results)
}

/// A channel to validator `to`'s peer listener at `addr` over real TCP,
/// presenting the certificate of `tls` (a validator's own TLS material):
/// the channel a validator's own process would open (for a
/// `RaftPeerClient` or a `ReplicaAdminClient`). Tests and the chaos suites
/// use it to play a faulty validator with nothing but its key files.
pub async fn connect_as(
    tls: &crate::transport::tls::TlsMaterial,
    to: NodeId,
    addr: &str,
    timeout: Duration,
) -> Result<Channel, String> {
    let connector = tls_connector(
        Arc::new(crate::transport::net::TcpNetwork),
        addr.to_owned(),
        server_name_for(&validator_dns_name(to)).map_err(|e| e.to_string())?,
        tls.peer_client_config().map_err(|e| e.to_string())?,
    );
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(timeout)
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("connecting to validator {to} at {addr}: {e}"))?;
    Ok(channel)
}
