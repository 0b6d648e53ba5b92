//! A running validator: storage, Raft, both listeners, the ticker and the
//! client write path, wired together; and its shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use neuroshard_certificate::SecretKeyShare;
use neuroshard_governance::{Genesis, GovernanceState, SignedCommand};

use crate::admission::{self, Quotas, Verdict};
use crate::boot::Boot;
use crate::clock::{Clock, SystemClock};
use crate::config::ListenerSettings;
use crate::config::{ConfigError, NodeConfig};
use crate::error::NodeError;
use crate::keys::{load_validator_keys, ValidatorKeys};
use crate::proto::raft_peer_server::RaftPeerServer;
use crate::proto::replica_admin_server::ReplicaAdminServer;
use crate::safety::Safety;
use crate::status::NodeStatus;
use crate::store::{open_sled, DurableDb, SharedMachine};
use crate::submit::{Submitted, Submitter};
use crate::ticker::run_ticker;
use crate::transport::api_service::AdminService;
use crate::transport::conn::{
    ActivityLayer, CommitteeAddrs, ConnectionLimiter, ListenerStats, SourceCounter,
};
use crate::transport::governance_service::PublicApi;
use crate::transport::net::{tls_incoming, Network, TcpNetwork};
use crate::transport::peer_client::{PeerClientSettings, PeerClients};
use crate::transport::peer_service::{PeerService, ReceivedShare, MAX_PENDING_SHARES};
use crate::transport::tls::TlsMaterial;
use crate::types::{NodeId, Raft, TypeConfig};

/// Largest genesis file read.
pub const MAX_GENESIS_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// What the node uses of the outside world; a simulation swaps both.
#[derive(Clone)]
pub struct Environment {
    pub network: Arc<dyn Network>,
    pub clock: Arc<dyn Clock>,
    /// Test seam (like `clock`): while set, this validator proposes no
    /// ticks even when it leads: a faulty leader withholding time (the
    /// simulation's `withhold-ticks` case). Never set outside tests.
    pub withhold_ticks: Arc<std::sync::atomic::AtomicBool>,
}

impl Environment {
    /// Real TCP and the system clock (shifted by `ticks.clock_offset_ms`).
    pub fn real(config: &NodeConfig) -> Self {
        Self {
            network: Arc::new(TcpNetwork),
            clock: Arc::new(SystemClock {
                offset_ms: config.ticks.clock_offset_ms,
            }),
            withhold_ticks: Arc::default(),
        }
    }
}

/// What the services share: the replica and its write path.
pub struct NodeCore {
    pub id: NodeId,
    pub chain_id: String,
    pub raft: Raft,
    pub machine: SharedMachine,
    pub submitter: Submitter,
    pub members: BTreeSet<NodeId>,
    /// Clients of the other validators' peer listeners (shares, read index).
    pub peers: PeerClients,
    /// Certificate issuance timings this validator observed.
    pub issuance: crate::issuance::IssuanceLog,
    /// Pending commands per author account and per source address.
    pub quotas: Quotas,
    /// Batches the signature checks of commands clients send here.
    pub signatures: crate::admission::SignatureBatcher,
    /// Connection counters of the API and peer listeners and of the
    /// certificate streams, for the status.
    pub connections: Vec<Arc<ListenerStats>>,
    /// `StreamCertificates`: open streams in total and per source.
    pub certificate_streams: Arc<SourceCounter>,
    /// A certificate stream whose reader leaves a full buffer unread this
    /// long is ended (`streams.slow_reader_timeout_ms`).
    pub slow_reader_timeout: Duration,
    /// Read-index rounds as the leader (own reads and followers'
    /// `ReadIndex` calls) and as a follower (`reads.rs`).
    pub leader_reads: Arc<crate::reads::ReadIndexBatcher>,
    pub follower_reads: Arc<crate::reads::ReadIndexBatcher>,
    /// What this validator refuses from the others, whom it ignores, what
    /// it recorded of their acknowledgements, and its recovery.
    pub safety: Arc<Safety>,
    /// Set when shutdown starts: health answers NOT_SERVING from then on.
    pub stopping: std::sync::atomic::AtomicBool,
    /// Where a divergence is recorded (`crate::boot::DIVERGED` in the data
    /// directory of a sled store; none in the simulation).
    pub divergence_marker: Option<std::path::PathBuf>,
}

impl NodeCore {
    /// Records that this replica diverged (`crate::checkpoint::exchange`)
    /// in its data directory, durably; a disk that cannot stops the
    /// process.
    pub fn record_divergence(&self, divergence: &crate::store::machine::Divergence) {
        if let Some(path) = &self.divergence_marker {
            let written = serde_json::to_string_pretty(divergence)
                .map_err(std::io::Error::other)
                .and_then(|text| crate::boot::write_marker(path, &text));
            if let Err(e) = written {
                crate::store::durability::disk_failed("record the divergence", &e);
            }
        }
    }

    /// A diverged replica neither campaigns nor leads: elections off, and
    /// as a leader no heartbeats (and no ticks, no commands: the ticker and
    /// the submit path stop too), so the followers elect another leader
    /// within an election timeout. It still stores and acknowledges log
    /// entries and votes: the committee keeps its quorum.
    pub fn stand_down(&self) {
        let rc = self.raft.runtime_config();
        rc.elect(false);
        rc.heartbeat(false);
    }

    /// The divergence, if this replica diverged.
    pub fn diverged(&self) -> Option<crate::store::machine::Divergence> {
        self.machine.read().checkpoints.diverged.clone()
    }

    /// Admits `command` against this replica's state, then orders it
    /// through the leader and answers once it is applied (in process: no
    /// source quota).
    pub async fn submit(&self, command: SignedCommand) -> Result<Submitted, NodeError> {
        let encoded_len = neuroshard_governance::admission::encoded_len(&command);
        self.submit_from(command, encoded_len, None, None).await
    }

    /// The client write path of both APIs. `encoded_len` is the size of the
    /// command's postcard encoding as the client sent it; `source` the IP
    /// address of the client's connection. Admission refuses what no state
    /// could accept (`NodeError::Admission`) or what is over a pending
    /// quota (`NodeError::Quota`) before anything is proposed; an identical
    /// retry of an applied command is answered with its original receipt.
    /// `original`: the command's postcard bytes as the client sent them
    /// (forwarded to the leader as they are), if it sent postcard.
    pub async fn submit_from(
        &self,
        command: SignedCommand,
        encoded_len: usize,
        source: Option<IpAddr>,
        original: Option<Vec<u8>>,
    ) -> Result<Submitted, NodeError> {
        // A diverged replica's state is not the committee's: it neither
        // admits (its duplicate and nonce checks read that state) nor
        // orders anything.
        if let Some(refusal) = crate::submit::diverged_refusal(&self.machine, self.id) {
            crate::metrics::submit_failed(&refusal);
            return Err(refusal);
        }
        if self.submitter.settings().batch_entries {
            self.signatures.check(&command, encoded_len).await;
            crate::hoptrace::mark("SIG_done", 0);
        } else if encoded_len <= neuroshard_governance::limits::MAX_COMMAND_BYTES {
            // Checked one at a time, before the state's read lock; the
            // verdict is memoized for admission and apply.
            let chain_id = self.machine.read().state.chain().chain_id.clone();
            let message = command.message(&chain_id);
            neuroshard_governance::signature::verify_one_remembered(
                &command.author,
                &message,
                &command.signature.0,
            );
        }
        let (name, nep) = (
            command.command.name(),
            crate::logging::command_nep(&command.command),
        );
        let result = async {
            match admission::admit(&self.machine, &command, encoded_len)? {
                Verdict::Answer(original) => Ok(original),
                Verdict::Propose => {
                    let _pending = self.quotas.acquire(command.author, source)?;
                    crate::hoptrace::mark("ADM_done", 0);
                    self.submitter.submit(command, original).await
                }
            }
        }
        .await;
        // What a client causes is logged at most once a second per rule
        // (`crate::logging`); the metrics count every one.
        let remote = source.map(tracing::field::display);
        match &result {
            Ok(s) => tracing::debug!(
                command = name,
                nep = nep.or_else(|| s
                    .outcome
                    .as_ref()
                    .ok()
                    .and_then(|r| crate::logging::effect_nep(&r.effect))),
                index = s.position.log_index,
                offset = s.position.offset,
                term = self.raft.metrics().borrow().current_term,
                remote,
                rule = s.outcome.as_ref().err().map(|e| e.rule()),
                "command answered"
            ),
            Err(e @ (NodeError::Admission(_) | NodeError::Quota(_))) => {
                crate::metrics::submit_failed(e);
                let rule = crate::metrics::failure_rule(e);
                crate::limited!(
                    crate::logging::REFUSALS,
                    key = rule,
                    info!(command = name, nep, rule, remote, error = %e, "command refused before ordering")
                );
            }
            Err(e) => {
                crate::metrics::submit_failed(e);
                let rule = crate::metrics::failure_rule(e);
                crate::limited!(
                    crate::logging::REFUSALS,
                    key = rule,
                    warn!(command = name, nep, rule, remote, error = %e, "command not applied")
                );
            }
        }
        result
    }

    pub async fn status(&self) -> NodeStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let commit_index = self
            .raft
            .with_raft_state(|s| s.committed.map(|c| c.index))
            .await
            .ok()
            .flatten();
        // Index and hash under one read lock: the hash is of the state at
        // that index. Apply maintains it, so reading it is O(1).
        let (
            applied_index,
            state_hash,
            committed_time_ms,
            state_bytes,
            state_budget_bytes,
            certified_checkpoint,
            diverged,
        ) = {
            let m = self.machine.read();
            (
                m.last_applied.map(|l| l.index),
                m.state.state_hash(),
                m.state.committed_time_ms(),
                m.state.state_bytes(),
                m.state.state_budget(),
                m.checkpoints.certified_index(),
                m.checkpoints.diverged.as_ref().map(|d| d.describe()),
            )
        };
        let state_hash = hex::encode(state_hash);
        let role = match metrics.state {
            openraft::ServerState::Leader => "leader",
            openraft::ServerState::Follower => "follower",
            openraft::ServerState::Candidate => "candidate",
            openraft::ServerState::Learner => "learner",
            openraft::ServerState::Shutdown => "shutdown",
        };
        let mut status = NodeStatus {
            node_id: self.id,
            role: role.to_owned(),
            leader: metrics.current_leader,
            term: metrics.current_term,
            commit_index,
            applied_index,
            last_log_index: metrics.last_log_index,
            snapshot_index: metrics.snapshot.map(|s| s.index),
            purged_index: metrics.purged.map(|p| p.index),
            members: metrics.membership_config.membership().voter_ids().collect(),
            state_hash,
            committed_time_ms,
            chain_id: self.chain_id.clone(),
            state_bytes,
            state_budget_bytes,
            recovering_until: self.safety.recovering().map(|r| r.target_index),
            ignored: self
                .safety
                .ignored_now()
                .into_iter()
                .map(|(id, ms, rule)| (id, ms, rule.to_owned()))
                .collect(),
            safety_refusals: self
                .safety
                .counts
                .snapshot()
                .into_iter()
                .map(|(rule, n)| (rule.to_owned(), n))
                .collect(),
            certified_checkpoint,
            diverged: diverged.unwrap_or_default(),
            not_serving: Vec::new(),
        };
        status.not_serving =
            status.not_serving_reasons(self.stopping.load(std::sync::atomic::Ordering::Relaxed));
        status
    }
}

/// A running validator.
pub struct Node {
    core: Arc<NodeCore>,
    peer_addr: SocketAddr,
    api_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    health: tonic_health::server::HealthReporter,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    shares: Option<mpsc::Receiver<ReceivedShare>>,
    checkpoint_shares: Option<mpsc::Receiver<crate::checkpoint::exchange::ReceivedCheckpointShare>>,
    durable: Option<Arc<DurableDb>>,
    keys: Option<ValidatorKeys>,
}

/// Reads and checks the genesis file.
pub fn load_genesis(path: &Path) -> Result<Genesis, NodeError> {
    let shown = path.display().to_string();
    let err = |message: String| NodeError::Genesis {
        path: shown.clone(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > MAX_GENESIS_FILE_BYTES {
        return Err(err(format!(
            "{} bytes, more than MAX_GENESIS_FILE_BYTES",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let genesis = Genesis::from_toml(&text).map_err(|e| err(e.to_string()))?;
    genesis.validate().map_err(|e| err(e.to_string()))?;
    Ok(genesis)
}

fn raft_config(config: &NodeConfig, chain_id: &str) -> Result<openraft::Config, NodeError> {
    let r = &config.raft;
    let c = openraft::Config {
        cluster_name: chain_id.to_owned(),
        heartbeat_interval: r.heartbeat_interval_ms,
        election_timeout_min: r.election_timeout_min_ms,
        election_timeout_max: r.election_timeout_max_ms,
        max_payload_entries: r.max_entries_per_append,
        // Snapshots are built only when a checkpoint is certified
        // (`crate::checkpoint::exchange` triggers them).
        snapshot_policy: openraft::SnapshotPolicy::Never,
        snapshot_max_chunk_size: r.snapshot_chunk_bytes,
        max_in_snapshot_log_to_keep: r.logs_to_keep_after_snapshot,
        install_snapshot_timeout: r.snapshot_rpc_timeout_ms,
        // Catch a follower up from the log while it is within this distance.
        replication_lag_threshold: r.logs_to_keep_after_snapshot.max(1),
        ..Default::default()
    };
    c.validate()
        .map_err(|e| NodeError::Raft(format!("raft settings: {e}")))
}

impl Node {
    /// Starts the validator described by `config` on real TCP, the system
    /// clock and its sled store in `data_dir` (a first start or a restart,
    /// as its data directory says: `crate::boot`).
    pub async fn start(config: &NodeConfig) -> Result<Node, NodeError> {
        Self::start_recovering(config, false).await
    }

    /// As [`Node::start`]; with `recover`, recovers a lost or rolled-back
    /// data directory first (`neuroshard node --recover`).
    pub async fn start_recovering(config: &NodeConfig, recover: bool) -> Result<Node, NodeError> {
        let genesis = load_genesis(&config.genesis)?;
        let keys = load_validator_keys(
            config.node_id,
            &genesis,
            &config.keys.identity,
            &config.keys.bls_share,
        )
        .map_err(|e| NodeError::Internal(e.to_string()))?;
        let state = GovernanceState::from_genesis(&genesis).map_err(|e| NodeError::Genesis {
            path: config.genesis.display().to_string(),
            message: e.to_string(),
        })?;
        let storage_err = |message: String| NodeError::Storage {
            path: config.data_dir.display().to_string(),
            message,
        };
        let boot = crate::boot::decide(
            &config.data_dir,
            crate::store::durability::SLED_DATA_FILE,
            recover,
        )?;
        let recovering_marker = crate::boot::marker(&config.data_dir, crate::boot::RECOVERING);
        if boot == Boot::Recover {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| storage_err(e.to_string()))?;
            crate::boot::write_marker(
                &recovering_marker,
                "this validator is recovering its data directory (neuroshard node --recover); it stays recovering across restarts until it holds what it acknowledged\n",
            )
            .map_err(|e| storage_err(e.to_string()))?;
        }
        tracing::info!(?boot, data_dir = %config.data_dir.display(), "starting");
        let (log, sm, durable) = open_sled(&config.data_dir, state, genesis.checkpoint_interval)
            .map_err(|e| storage_err(e.to_string()))?;
        let acks = crate::safety::AckRecords::on_disk(durable.db())
            .map_err(|e| storage_err(e.to_string()))?;
        let machine = sm.shared();
        let tls = TlsMaterial::load(&config.tls.ca_cert, &config.tls.cert, &config.tls.key)?;
        let on_recovered: Box<dyn FnOnce() + Send> = Box::new(move || {
            if let Err(e) = crate::boot::remove_marker(&recovering_marker) {
                crate::store::durability::disk_failed("remove the recovery marker", &e);
            }
        });
        let mut node = Self::start_with_boot(
            config,
            &genesis,
            tls,
            log,
            sm,
            machine,
            Environment::real(config),
            BootOptions {
                boot,
                acks,
                on_recovered: Some(on_recovered),
                divergence_marker: Some(crate::boot::marker(
                    &config.data_dir,
                    crate::boot::DIVERGED,
                )),
            },
        )
        .await?;
        if boot == Boot::First {
            // The store and the membership are durable: this is no longer
            // a first start.
            durable.sync().map_err(|e| storage_err(e.to_string()))?;
            crate::boot::remove_marker(&crate::boot::marker(
                &config.data_dir,
                crate::boot::FIRST_BOOT,
            ))
            .map_err(|e| storage_err(e.to_string()))?;
        }
        node.durable = Some(durable);
        node.start_issuance(keys.bls_share.clone(), Environment::real(config).clock);
        node.keys = Some(keys);
        Ok(node)
    }

    /// Starts a validator on the given storage and environment (the
    /// simulation passes the in-memory store and its own network and clock).
    pub async fn start_with<LS, SM>(
        config: &NodeConfig,
        genesis: &Genesis,
        tls: TlsMaterial,
        log: LS,
        sm: SM,
        machine: SharedMachine,
        env: Environment,
    ) -> Result<Node, NodeError>
    where
        LS: openraft::storage::RaftLogStorage<TypeConfig> + crate::store::ChecksOnAppend,
        SM: openraft::storage::RaftStateMachine<TypeConfig>,
    {
        Self::start_with_boot(
            config,
            genesis,
            tls,
            log,
            sm,
            machine,
            env,
            BootOptions::default(),
        )
        .await
    }

    /// As [`Node::start_with`], booting as `boot` says (`crate::boot`).
    #[allow(clippy::too_many_arguments)]
    pub async fn start_with_boot<LS, SM>(
        config: &NodeConfig,
        genesis: &Genesis,
        tls: TlsMaterial,
        mut log: LS,
        sm: SM,
        machine: SharedMachine,
        env: Environment,
        boot: BootOptions,
    ) -> Result<Node, NodeError>
    where
        LS: openraft::storage::RaftLogStorage<TypeConfig> + crate::store::ChecksOnAppend,
        SM: openraft::storage::RaftStateMachine<TypeConfig>,
    {
        if config.client.batch_entries {
            log.check_on_append(machine.clone());
        }
        if config.raft.replicate_before_sync {
            log.replicate_before_sync(config.node_id);
        }
        let members = config.members();
        let expected: BTreeSet<NodeId> = genesis
            .validators
            .iter()
            .map(|v| u64::from(v.index))
            .collect();
        if members != expected {
            return Err(ConfigError::Invalid {
                key: "peers".into(),
                value: format!("{members:?} (with node_id)"),
                rule: format!("must name exactly the genesis validators {expected:?}"),
            }
            .into());
        }
        // Every validator captures checkpoints at the genesis interval (a
        // sled store was opened with it already and may have replayed).
        machine.write().checkpoints.interval = genesis.checkpoint_interval;
        let raft_cfg = Arc::new(raft_config(config, &genesis.chain_id)?);
        let addrs: BTreeMap<NodeId, String> = config
            .peers
            .iter()
            .map(|p| (p.id, p.addr.clone()))
            .collect();
        let max_message_bytes =
            usize::try_from(config.raft.max_message_bytes).unwrap_or(usize::MAX);
        let peers = PeerClients::new(
            config.node_id,
            addrs,
            env.network.clone(),
            tls.peer_client_config()?,
            PeerClientSettings {
                rpc_timeout: Duration::from_millis(config.raft.rpc_timeout_ms),
                snapshot_rpc_timeout: Duration::from_millis(config.raft.snapshot_rpc_timeout_ms),
                connect_timeout: Duration::from_millis(config.raft.rpc_timeout_ms),
                max_message_bytes,
                reconnect_after_silence: Duration::from_millis(config.raft.election_timeout_min_ms),
            },
        );
        let safety = Safety::new(
            config.node_id,
            members.clone(),
            env.clock.clone(),
            machine.clone(),
            Duration::from_millis(
                config
                    .safety
                    .ignore_refused_leader_ms
                    .max(2 * config.raft.election_timeout_max_ms),
            ),
            Duration::from_millis(2 * config.raft.election_timeout_max_ms),
            boot.acks,
        );
        let peers = peers
            .with_safety(safety.clone())
            .with_durable_mark(log.durable_mark());
        let recovery = prepare_boot(config, &members, &peers, &mut log, boot.boot).await?;
        let raft = Raft::new(config.node_id, raft_cfg, peers.clone(), log, sm)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        safety.set_raft(raft.clone());
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        match boot.boot {
            // Membership is fixed by genesis. Every validator proposes the
            // same initial configuration (log id 0); one that already has a
            // log keeps it.
            Boot::Auto | Boot::First if !initialized => {
                match raft.initialize(members.clone()).await {
                    Ok(()) => tracing::info!(?members, "initialised the committee membership"),
                    Err(e) => {
                        tracing::info!(error = %e, "membership already initialised elsewhere")
                    }
                }
            }
            Boot::Restart if !initialized => {
                let _ = raft.shutdown().await;
                return Err(NodeError::DataLost {
                    path: config.data_dir.display().to_string(),
                    marker: crate::boot::FIRST_BOOT.to_owned(),
                });
            }
            _ => {}
        }
        if let Some(plan) = recovery {
            // Neither campaign nor vote until it holds what it acknowledged.
            raft.runtime_config().elect(false);
            safety.start_recovering(plan.target_index, plan.vote.leader_id().term);
            tracing::warn!(
                target_index = plan.target_index,
                vote = %plan.vote,
                "recovering: catching up before voting or campaigning"
            );
        }
        let election_timeout = Duration::from_millis(config.raft.election_timeout_max_ms);
        let submitter = Submitter::new(
            raft.clone(),
            machine.clone(),
            peers.clone(),
            config.client.clone(),
            election_timeout,
        );
        crate::metrics::init(config.node_id, members.iter().copied());
        let api_stats = ListenerStats::new("api");
        let peer_stats = ListenerStats::new("peer");
        let stream_stats = ListenerStats::new("certificate_streams");
        let core = Arc::new(NodeCore {
            id: config.node_id,
            chain_id: genesis.chain_id.clone(),
            raft: raft.clone(),
            machine,
            submitter: submitter.clone(),
            members: members.clone(),
            peers,
            issuance: Default::default(),
            quotas: Quotas::new(&config.client),
            signatures: crate::admission::SignatureBatcher::start(
                genesis.chain_id.clone(),
                config.client.max_pending_commands,
            ),
            connections: vec![api_stats.clone(), peer_stats.clone(), stream_stats.clone()],
            certificate_streams: SourceCounter::new(
                config.streams.max_certificate_streams,
                config.streams.max_certificate_streams_per_source,
                stream_stats,
            ),
            slow_reader_timeout: Duration::from_millis(config.streams.slow_reader_timeout_ms),
            leader_reads: crate::reads::ReadIndexBatcher::new(),
            follower_reads: crate::reads::ReadIndexBatcher::new(),
            safety: safety.clone(),
            stopping: Default::default(),
            divergence_marker: boot.divergence_marker,
        });
        if let Some(d) = core.diverged() {
            tracing::error!(divergence = %d.describe(), "DIVERGED before this start: this validator stands down (signs, applies and leads nothing; reads are marked diverged)");
            core.stand_down();
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (share_tx, share_rx) = mpsc::channel(MAX_PENDING_SHARES);
        let (checkpoint_tx, checkpoint_rx) =
            mpsc::channel(crate::checkpoint::exchange::MAX_PENDING_CHECKPOINT_SHARES);

        let bind = |addr: String| {
            let network = env.network.clone();
            async move {
                network
                    .bind(addr.clone())
                    .await
                    .map_err(|source| NodeError::Bind { addr, source })
            }
        };
        let peer_listener = bind(config.peer_listen.clone()).await?;
        let api_listener = bind(config.api_listen.clone()).await?;
        let local = |l: &dyn crate::transport::net::Listener, addr: &str| {
            l.local_addr().map_err(|source| NodeError::Bind {
                addr: addr.to_owned(),
                source,
            })
        };
        let peer_addr = local(peer_listener.as_ref(), &config.peer_listen)?;
        let api_addr = local(api_listener.as_ref(), &config.api_listen)?;

        // Server-side deadline of any call: the longest a client may wait.
        let server_timeout = Duration::from_millis(
            config
                .client
                .submit_timeout_ms
                .max(config.raft.snapshot_rpc_timeout_ms)
                + 1_000,
        );
        let mut tasks = Vec::new();
        let peer_service = RaftPeerServer::new(
            PeerService::new(
                raft.clone(),
                submitter,
                core.machine.clone(),
                members,
                share_tx,
                safety.clone(),
            )
            .with_read_batcher(core.leader_reads.clone())
            .with_checkpoint_inbox(checkpoint_tx)
            .with_peers(core.peers.clone()),
        )
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
        // The committee's own addresses keep the peer listener's reserve.
        let committee = CommitteeAddrs::resolve_in_background(
            env.network.clone(),
            config.peers.iter().map(|p| p.addr.clone()).collect(),
            shutdown_rx.clone(),
        );
        let incoming = tls_incoming(
            peer_listener,
            TlsAcceptor::from(tls.peer_server_config()?),
            true,
            ConnectionLimiter::new(config.peer_listener.clone(), Some(committee), peer_stats),
        );
        let mut stop = shutdown_rx.clone();
        let peer_server = grpc_server(&config.peer_listener, server_timeout, "peer");
        tasks.push(tokio::spawn(async move {
            let mut peer_server = peer_server;
            let result = peer_server
                .add_service(peer_service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.changed().await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "peer listener stopped");
            }
        }));
        let admin = ReplicaAdminServer::new(AdminService::new(core.clone()))
            .max_decoding_message_size(crate::transport::api_service::MAX_API_REQUEST_BYTES)
            .max_encoding_message_size(crate::transport::api_service::MAX_API_MESSAGE_BYTES);
        let public = PublicApi::new(core.clone(), genesis, shutdown_rx.clone()).await?;
        let health = public.health_reporter();
        let api_router = public
            .add_to(grpc_server(&config.api_listener, server_timeout, "api").add_service(admin))?;
        let incoming = tls_incoming(
            api_listener,
            TlsAcceptor::from(tls.api_server_config()?),
            false,
            ConnectionLimiter::new(config.api_listener.clone(), None, api_stats),
        );
        let mut stop = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let result = api_router
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.changed().await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "API listener stopped");
            }
        }));
        let metrics_addr = match &config.metrics.listen {
            Some(addr) => {
                let listener =
                    tokio::net::TcpListener::bind(addr.as_str())
                        .await
                        .map_err(|source| NodeError::Bind {
                            addr: addr.clone(),
                            source,
                        })?;
                let bound = listener.local_addr().map_err(|source| NodeError::Bind {
                    addr: addr.clone(),
                    source,
                })?;
                tasks.push(tokio::spawn(crate::metrics::server::serve(
                    listener,
                    core.clone(),
                    env.clock.clone(),
                    shutdown_rx.clone(),
                )));
                Some(bound)
            }
            None => None,
        };
        tasks.push(tokio::spawn(crate::metrics::observe(
            core.clone(),
            health.clone(),
            shutdown_rx.clone(),
        )));
        let tick_interval = Duration::from_millis(config.ticks.tick_interval_ms);
        tasks.push(tokio::spawn(crate::safety::run_tick_watchdog(
            safety.clone(),
            raft.clone(),
            tick_interval,
            tick_watchdog_grace(config),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::safety::run_ack_recorder(
            safety.clone(),
            raft.clone(),
            ACK_RECORD_EVERY,
            shutdown_rx.clone(),
        )));
        if recovery.is_some() {
            let done = boot.on_recovered.unwrap_or_else(|| Box::new(|| {}));
            let done: Box<dyn FnOnce() + Send> = Box::new(move || {
                crate::metrics::metrics().recoveries.inc();
                done()
            });
            tasks.push(tokio::spawn(crate::safety::run_recovery_watch(
                safety.clone(),
                raft.clone(),
                done,
                shutdown_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(run_ticker(
            raft,
            core.machine.clone(),
            env.clock.clone(),
            tick_interval,
            env.withhold_ticks.clone(),
            shutdown_rx,
        )));
        tracing::info!(node = config.node_id, %peer_addr, %api_addr, ?metrics_addr, "validator started");
        Ok(Node {
            core,
            peer_addr,
            api_addr,
            metrics_addr,
            health,
            shutdown_tx,
            tasks,
            shares: Some(share_rx),
            checkpoint_shares: Some(checkpoint_rx),
            durable: None,
            keys: None,
        })
    }

    pub fn id(&self) -> NodeId {
        self.core.id
    }

    pub fn core(&self) -> &Arc<NodeCore> {
        &self.core
    }

    pub fn raft(&self) -> &Raft {
        &self.core.raft
    }

    pub fn machine(&self) -> &SharedMachine {
        &self.core.machine
    }

    /// The bound peer listener (useful with port 0).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The bound API listener (useful with port 0).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// What `grpc.health.v1` answers (shared with the API listener).
    pub fn health(&self) -> &tonic_health::server::HealthReporter {
        &self.health
    }

    /// The bound metrics listener, if `[metrics] listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The validator's verified keys (when started from files).
    pub fn keys(&self) -> Option<&ValidatorKeys> {
        self.keys.as_ref()
    }

    /// Starts certificate issuance (`crate::issuance`) with this
    /// validator's BLS key share: sign what this replica decided, and
    /// combine shares while leading. Takes the share inbox.
    /// Starts what this validator signs with its BLS key share: the
    /// certificate issuer and the checkpoint exchange.
    pub fn start_issuance(&mut self, bls_share: SecretKeyShare, clock: Arc<dyn Clock>) {
        let inbox = self.shares.take();
        self.tasks.push(crate::issuance::spawn(
            self.core.clone(),
            bls_share.clone(),
            clock,
            inbox,
            self.shutdown_tx.subscribe(),
        ));
        if let Some(inbox) = self.checkpoint_shares.take() {
            self.tasks.push(crate::checkpoint::exchange::spawn(
                self.core.clone(),
                bls_share,
                inbox,
                self.shutdown_tx.subscribe(),
            ));
        }
    }

    /// Signature shares other validators sent to this node, for the
    /// certificate issuer; taken once.
    pub fn take_share_inbox(&mut self) -> Option<mpsc::Receiver<ReceivedShare>> {
        self.shares.take()
    }

    /// Syncs performed by the durable store so far (None in memory).
    pub fn sync_count(&self) -> Option<u64> {
        self.durable.as_ref().map(|d| d.sync_count())
    }

    /// Resolves when the Raft core stopped with a fatal error (a storage
    /// failure, a panic): the process should exit so its supervisor
    /// restarts it from disk.
    pub async fn fatal(&self) -> String {
        let mut metrics = self.core.raft.metrics();
        loop {
            if let Err(e) = &metrics.borrow().running_state {
                return e.to_string();
            }
            if metrics.changed().await.is_err() {
                return "raft core stopped".to_owned();
            }
        }
    }

    /// Orders `command` through the leader and returns its log index and
    /// governance outcome once applied.
    pub async fn submit(&self, command: SignedCommand) -> Result<Submitted, NodeError> {
        self.core.submit(command).await
    }

    pub async fn status(&self) -> NodeStatus {
        self.core.status().await
    }

    /// Stops the listeners and the ticker, then Raft (which waits for its
    /// storage tasks), so the store is closed cleanly.
    pub async fn shutdown(self) {
        // Health answers NOT_SERVING before anything stops.
        self.core
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::set_health(&self.health, false).await;
        tracing::info!(node = self.core.id, "shutting down: health NOT_SERVING");
        let _ = self.shutdown_tx.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        if let Err(e) = self.core.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        let mut syncs = None;
        if let Some(d) = &self.durable {
            if let Err(e) = d.sync() {
                tracing::error!(error = %e, "final sync failed");
            }
            syncs = Some(d.sync_count());
        }
        let applied = self.core.machine.read().last_applied.map(|l| l.index);
        tracing::info!(node = self.core.id, ?applied, ?syncs, "validator stopped");
    }
}

/// How often a leader records what each follower acknowledged.
pub const ACK_RECORD_EVERY: Duration = Duration::from_millis(250);

/// How long committed time may stay more than `gov.max_clock_skew_ms`
/// behind this validator's clock under one leader before it is treated as
/// withholding ticks: two tick intervals and the longest election timeout
/// (a new leader's first tick has that long to commit).
pub fn tick_watchdog_grace(config: &NodeConfig) -> Duration {
    Duration::from_millis(2 * config.ticks.tick_interval_ms + config.raft.election_timeout_max_ms)
}

/// How a start treats its store (`crate::boot`).
pub struct BootOptions {
    pub boot: Boot,
    /// The acknowledgement records (on disk for a sled store).
    pub acks: crate::safety::AckRecords,
    /// Runs once a recovery completed (removes the recovery marker).
    pub on_recovered: Option<Box<dyn FnOnce() + Send>>,
    /// Where to record a divergence (`crate::boot::DIVERGED`).
    pub divergence_marker: Option<std::path::PathBuf>,
}

impl Default for BootOptions {
    fn default() -> Self {
        Self {
            boot: Boot::Auto,
            acks: crate::safety::AckRecords::in_memory(),
            on_recovered: None,
            divergence_marker: None,
        }
    }
}

/// Before Raft starts: a restart asks the others for a rollback; a
/// recovery waits for ⌈n/2⌉ of them and stores its new vote. Returns the
/// recovery's plan.
async fn prepare_boot<LS>(
    config: &NodeConfig,
    members: &BTreeSet<NodeId>,
    peers: &PeerClients,
    log: &mut LS,
    boot: Boot,
) -> Result<Option<crate::boot::RecoveryPlan>, NodeError>
where
    LS: openraft::storage::RaftLogStorage<TypeConfig>,
{
    let storage = |e: openraft::StorageError<NodeId>| NodeError::Storage {
        path: config.data_dir.display().to_string(),
        message: e.to_string(),
    };
    let others: BTreeSet<NodeId> = members
        .iter()
        .copied()
        .filter(|m| *m != config.node_id)
        .collect();
    let wait = Duration::from_millis(config.safety.startup_probe_ms);
    match boot {
        Boot::Restart => {
            let have = log.get_log_state().await.map_err(storage)?.last_log_id;
            let answers = crate::boot::probe(peers, &others, false, wait).await;
            if let Some((witness, acknowledged)) = crate::boot::rolled_back(&answers, have) {
                return Err(NodeError::RolledBack {
                    path: config.data_dir.display().to_string(),
                    witness,
                    acknowledged: acknowledged.to_string(),
                    have: have.map_or_else(|| "nothing".to_owned(), |h| h.to_string()),
                });
            }
            if answers.is_empty() && !others.is_empty() {
                tracing::warn!(
                    waited_ms = config.safety.startup_probe_ms,
                    "no other validator answered the startup probe: starting without the rollback check"
                );
            } else {
                tracing::info!(
                    answered = answers.len(),
                    last_log_id = ?have,
                    "startup probe: no other validator recorded more than this log holds"
                );
            }
            Ok(None)
        }
        Boot::Recover => {
            let own = log.read_vote().await.map_err(storage)?;
            let answers =
                crate::boot::probe_for_recovery(peers, &others, members.len(), wait).await?;
            let plan = crate::boot::plan_recovery(config.node_id, own, &answers);
            log.save_vote(&plan.vote).await.map_err(storage)?;
            tracing::warn!(
                answered = answers.len(),
                vote = %plan.vote,
                target_index = plan.target_index,
                "recovery: stored a vote above every term the others reported"
            );
            Ok(Some(plan))
        }
        Boot::Auto | Boot::First => Ok(None),
    }
}

/// A gRPC server with one listener's per-connection limits: concurrent
/// streams, HTTP/2 keepalive, maximum connection age, and call activity
/// for the idle timeout.
fn grpc_server(
    s: &ListenerSettings,
    timeout: Duration,
    listener: &'static str,
) -> tonic::transport::Server<
    tower::layer::util::Stack<
        crate::metrics::layer::RequestMetricsLayer,
        tower::layer::util::Stack<ActivityLayer, tower::layer::util::Identity>,
    >,
> {
    let mut server = tonic::transport::Server::builder()
        .timeout(timeout)
        .max_concurrent_streams(s.max_streams_per_connection)
        .http2_keepalive_interval(Some(Duration::from_millis(s.keepalive_interval_ms)))
        .http2_keepalive_timeout(Some(Duration::from_millis(s.keepalive_timeout_ms)));
    if s.max_connection_age_ms > 0 {
        server = server
            .max_connection_age(Duration::from_millis(s.max_connection_age_ms))
            .max_connection_age_grace(Duration::from_millis(s.max_connection_age_grace_ms));
    }
    server
        .layer(ActivityLayer)
        .layer(crate::metrics::layer::RequestMetricsLayer { listener })
}
