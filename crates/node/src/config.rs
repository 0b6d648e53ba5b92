//! `node.toml`: one validator's configuration. Unknown keys are refused (the
//! TOML error names them) and every value is checked against its rule
//! ([`ConfigError::Invalid`] names the key). Relative paths are resolved
//! against the directory of the config file.
//!
//! ```toml
//! node_id = 0                       # index in genesis.toml's validators
//! data_dir = "data"                 # Raft log + state machine (sled)
//! genesis = "../genesis.toml"
//! peer_listen = "127.0.0.1:7100"    # mutual TLS, validators only
//! api_listen = "127.0.0.1:7200"     # server TLS, clients
//!
//! [tls]
//! ca_cert = "../ca.pem"
//! cert = "tls.pem"
//! key = "tls.key"
//!
//! [keys]
//! identity = "identity.key"         # ed25519 identity key (hex), 0600
//! bls_share = "bls_share.key"       # BLS secret key share (hex), 0600
//!
//! [[peers]]                          # every other validator
//! id = 1
//! addr = "127.0.0.1:7101"
//!
//! [raft]    # all optional; defaults shown in `RaftSettings::default`
//! [ticks]
//! [client]
//! [api_listener]    # connection limits, `ListenerSettings::api_default`
//! [peer_listener]   # connection limits, `ListenerSettings::peer_default`
//! [streams]         # StreamCertificates limits, `StreamSettings::default`
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use neuroshard_governance::limits::MAX_COMMAND_BYTES;

use crate::types::NodeId;

/// Largest config file read.
pub const MAX_CONFIG_FILE_BYTES: u64 = 256 * 1024;
/// Most peers a committee may list.
pub const MAX_PEERS: usize = 255;
/// The largest `node_id` and `peers.id`: genesis lists at most
/// `MAX_VALIDATORS` validators, indexed from 0.
pub const MAX_NODE_ID: NodeId = neuroshard_governance::limits::MAX_VALIDATORS as NodeId - 1;
/// The longest `ticks.tick_interval_ms`: half the floor of
/// `gov.max_clock_skew_ms`, so a healthy leader's committed time never
/// trails a validator's clock by the skew bound between two ticks.
pub const MAX_TICK_INTERVAL_MS: u64 =
    neuroshard_governance::params::MIN_MAX_CLOCK_SKEW_MS as u64 / 2;
/// The largest `ticks.clock_offset_ms` either way: one day (clock-skew
/// tests shift by tens of seconds; a mistyped offset must not move
/// governance time by more).
pub const MAX_CLOCK_OFFSET_MS: i64 = 86_400_000;
/// The most entries `raft.snapshot_logs_since_last` and
/// `raft.logs_to_keep_after_snapshot` may name: the log a restart replays
/// and a follower catches up from stays bounded.
pub const MAX_LOG_ENTRIES_BETWEEN_SNAPSHOTS: u64 = 1_000_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    pub genesis: PathBuf,
    pub peer_listen: String,
    pub api_listen: String,
    pub tls: TlsPaths,
    pub keys: KeyPaths,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    #[serde(default)]
    pub raft: RaftSettings,
    #[serde(default)]
    pub ticks: TickSettings,
    #[serde(default)]
    pub client: ClientSettings,
    /// Connection limits of the API listener (`[api_listener]`).
    #[serde(default = "ListenerSettings::api_default")]
    pub api_listener: ListenerSettings,
    /// Connection limits of the peer listener (`[peer_listener]`).
    #[serde(default = "ListenerSettings::peer_default")]
    pub peer_listener: ListenerSettings,
    /// Limits of `StreamCertificates` (`[streams]`).
    #[serde(default)]
    pub streams: StreamSettings,
    /// What this validator does about a faulty leader and a lost disk
    /// (`[safety]`).
    #[serde(default)]
    pub safety: SafetySettings,
    /// The metrics listener (`[metrics]`): Prometheus `/metrics`,
    /// `/healthz` and `/readyz` over plain HTTP; off when `listen` is unset.
    #[serde(default, skip_serializing_if = "MetricsSettings::is_off")]
    pub metrics: MetricsSettings,
    /// Log output (`[log]`): `format = "text"` or `"json"`; `RUST_LOG`
    /// sets per-module levels.
    #[serde(default, skip_serializing_if = "LogSettings::is_default")]
    pub log: LogSettings,
}

/// `[metrics]`: where Prometheus scrapes this validator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// `host:port` of the metrics listener (plain HTTP: keep it on
    /// loopback or a monitoring network). Unset: no metrics listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

impl MetricsSettings {
    fn is_off(&self) -> bool {
        self.listen.is_none()
    }
}

/// `[log]`: how the validator writes its log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// "text" (default) or "json" (one JSON object per line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

impl LogSettings {
    fn is_default(&self) -> bool {
        self.format.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPaths {
    pub identity: PathBuf,
    pub bls_share: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub id: NodeId,
    /// host:port of that validator's peer listener.
    pub addr: String,
}

/// Raft timing, snapshots and message bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSettings {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// No longer used: snapshots are built at certified checkpoints, every
    /// genesis `checkpoint_interval` log indexes (the same on every
    /// validator). Still accepted, and range-checked, so existing node.toml
    /// files keep loading.
    pub snapshot_logs_since_last: u64,
    /// Bytes per InstallSnapshot chunk.
    pub snapshot_chunk_bytes: u64,
    /// Entries kept in the log behind a snapshot (for followers that are
    /// only slightly behind).
    pub logs_to_keep_after_snapshot: u64,
    /// Most entries in one AppendEntries.
    pub max_entries_per_append: u64,
    /// Deadline of AppendEntries and Vote RPCs.
    pub rpc_timeout_ms: u64,
    /// Deadline of one InstallSnapshot chunk.
    pub snapshot_rpc_timeout_ms: u64,
    /// Largest gRPC message accepted or sent on the peer listener.
    pub max_message_bytes: u64,
    /// The leader replicates its own new entries while their sync runs,
    /// instead of after it; nothing is applied, answered or reported as
    /// committed before it is durable on the leader too
    /// (`store::durable_mark`; docs/operations.md, "Writes"). Off, the
    /// leader's sync comes first, as before (kept to compare the two in
    /// one run: `bench run --replicate-before-sync false`).
    pub replicate_before_sync: bool,
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_logs_since_last: 10_000,
            snapshot_chunk_bytes: 1024 * 1024,
            logs_to_keep_after_snapshot: 1_000,
            max_entries_per_append: 512,
            rpc_timeout_ms: 2_000,
            snapshot_rpc_timeout_ms: 10_000,
            max_message_bytes: 16 * 1024 * 1024,
            replicate_before_sync: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TickSettings {
    /// The leader proposes a `Tick` this often.
    pub tick_interval_ms: u64,
    /// Added to this validator's wall clock (testing clock skew; 0 in
    /// production).
    pub clock_offset_ms: i64,
}

impl Default for TickSettings {
    fn default() -> Self {
        Self {
            tick_interval_ms: 500,
            clock_offset_ms: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSettings {
    /// Commands a follower sends to the leader in one ForwardCommands RPC.
    pub max_forward_batch: usize,
    /// Bytes of commands a follower sends to the leader in one
    /// ForwardCommands RPC (at least one command of `MAX_COMMAND_BYTES`, at
    /// most half of `raft.max_message_bytes`); the leader answers commands
    /// past its own bound as overloaded.
    pub max_forward_batch_bytes: usize,
    /// Client commands waiting at this node to be ordered.
    pub max_pending_commands: usize,
    /// Commands of one author account admitted by this node and not yet
    /// answered; more are refused `too_many_pending_for_account`.
    pub max_pending_per_account: usize,
    /// Commands from one source IP address of the API connection admitted
    /// by this node and not yet answered; more are refused
    /// `too_many_pending_for_source`.
    pub max_pending_per_source: usize,
    /// Longest a client waits for its command to be applied.
    pub submit_timeout_ms: u64,
    /// The leader batches client commands into one log entry
    /// (`Entry::Commands`) and checks client signatures in batches
    /// (issue 12; docs/operations.md, "Writes"). Off, every command is an
    /// entry of its own and signatures are checked one by one, as before
    /// (kept to compare the two paths in one run: `bench run
    /// --batch-entries false`).
    pub batch_entries: bool,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            max_forward_batch: 256,
            max_forward_batch_bytes: 1024 * 1024,
            max_pending_commands: 8192,
            max_pending_per_account: 64,
            max_pending_per_source: 2048,
            submit_timeout_ms: 10_000,
            batch_entries: true,
        }
    }
}

/// Connection limits of one listener. Every count covers connections still
/// in their TLS handshake as well as established ones; a connection over a
/// limit is accepted and closed at once (the accept loop never waits).
/// Durations of 0 turn that timer off where the key says so.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSettings {
    /// Connections open at once (handshaking or established).
    pub max_connections: usize,
    /// Connections open at once from one source IP address.
    pub max_connections_per_source: usize,
    /// TLS handshakes in progress at once.
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one source IP address.
    pub max_handshakes_per_source: usize,
    /// Longest a TLS handshake may take.
    pub handshake_timeout_ms: u64,
    /// Peer listener only (0 on the API listener): connections (and as many
    /// handshakes) kept for the committee's own validators, recognised by
    /// the source addresses their `[[peers]]` entries resolve to, usable
    /// only when the general pool is full.
    pub reserved_for_committee: usize,
    /// Concurrent HTTP/2 streams (calls) per connection.
    pub max_streams_per_connection: u32,
    /// HTTP/2 keepalive: the server pings a connection this often …
    pub keepalive_interval_ms: u64,
    /// … and closes it when a ping is not answered within this.
    pub keepalive_timeout_ms: u64,
    /// A connection with no call in progress for this long is closed.
    pub idle_timeout_ms: u64,
    /// A connection older than this is asked to close (HTTP/2 GOAWAY; calls
    /// in flight get `max_connection_age_grace_ms` to finish). 0: never.
    pub max_connection_age_ms: u64,
    pub max_connection_age_grace_ms: u64,
}

impl ListenerSettings {
    /// Clients and light nodes.
    pub fn api_default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_source: 128,
            max_handshakes: 256,
            max_handshakes_per_source: 16,
            handshake_timeout_ms: 5_000,
            reserved_for_committee: 0,
            max_streams_per_connection: 128,
            keepalive_interval_ms: 30_000,
            keepalive_timeout_ms: 10_000,
            idle_timeout_ms: 300_000,
            max_connection_age_ms: 3_600_000,
            max_connection_age_grace_ms: 30_000,
        }
    }

    /// The committee's validators (and, unless firewalled, anyone).
    pub fn peer_default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_source: 32,
            max_handshakes: 64,
            max_handshakes_per_source: 8,
            handshake_timeout_ms: 5_000,
            reserved_for_committee: 64,
            max_streams_per_connection: 256,
            keepalive_interval_ms: 10_000,
            keepalive_timeout_ms: 5_000,
            idle_timeout_ms: 300_000,
            max_connection_age_ms: 0,
            max_connection_age_grace_ms: 30_000,
        }
    }

    fn validate(&self, section: &'static str, peer: bool) -> Result<(), ConfigError> {
        // Keys are named in full in every refusal.
        let key = |k: &str| format!("{section}.{k}");
        check_range(
            key("max_connections"),
            self.max_connections as u64,
            1,
            65_536,
        )?;
        check_range(
            key("max_connections_per_source"),
            self.max_connections_per_source as u64,
            1,
            self.max_connections as u64,
        )?;
        check_range(
            key("max_handshakes"),
            self.max_handshakes as u64,
            1,
            self.max_connections as u64,
        )?;
        check_range(
            key("max_handshakes_per_source"),
            self.max_handshakes_per_source as u64,
            1,
            self.max_handshakes as u64,
        )?;
        check_range(
            key("handshake_timeout_ms"),
            self.handshake_timeout_ms,
            100,
            60_000,
        )?;
        if peer {
            check_range(
                key("reserved_for_committee"),
                self.reserved_for_committee as u64,
                0,
                4_096,
            )?;
        } else if self.reserved_for_committee != 0 {
            return Err(invalid(
                key("reserved_for_committee"),
                self.reserved_for_committee,
                "must be 0: only the peer listener keeps connections for the committee",
            ));
        }
        check_range(
            key("max_streams_per_connection"),
            u64::from(self.max_streams_per_connection),
            1,
            10_000,
        )?;
        check_range(
            key("keepalive_interval_ms"),
            self.keepalive_interval_ms,
            1_000,
            3_600_000,
        )?;
        check_range(
            key("keepalive_timeout_ms"),
            self.keepalive_timeout_ms,
            100,
            self.keepalive_interval_ms,
        )?;
        check_range(
            key("idle_timeout_ms"),
            self.idle_timeout_ms,
            1_000,
            86_400_000,
        )?;
        if self.max_connection_age_ms != 0 {
            check_range(
                key("max_connection_age_ms"),
                self.max_connection_age_ms,
                10_000,
                30 * 86_400_000,
            )?;
        }
        check_range(
            key("max_connection_age_grace_ms"),
            self.max_connection_age_grace_ms,
            0,
            3_600_000,
        )?;
        Ok(())
    }
}

/// Limits of `StreamCertificates`, the light nodes' follow stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    /// Certificate streams open at once on this validator.
    pub max_certificate_streams: usize,
    /// Certificate streams open at once from one source IP address.
    pub max_certificate_streams_per_source: usize,
    /// A stream whose reader leaves a full buffer unread this long is ended.
    pub slow_reader_timeout_ms: u64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            max_certificate_streams: 256,
            max_certificate_streams_per_source: 8,
            slow_reader_timeout_ms: 30_000,
        }
    }
}

/// What a validator does about another validator that sent what it must
/// refuse, and how long it asks the others at startup (`[safety]`,
/// docs/operations.md "Faulty leaders and lost disks").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SafetySettings {
    /// A validator whose message this one refused (a tick too far ahead,
    /// a membership other than genesis, ticks withheld) is ignored this
    /// long (at least twice `raft.election_timeout_max_ms`); each repeat
    /// within two such periods doubles it, up to 32 times.
    pub ignore_refused_leader_ms: u64,
    /// At startup, how long to wait for the other validators' record of
    /// what this one acknowledged (a data directory rolled back is refused
    /// when any of them answers with more than it holds).
    pub startup_probe_ms: u64,
}

impl Default for SafetySettings {
    fn default() -> Self {
        Self {
            ignore_refused_leader_ms: 10_000,
            startup_probe_ms: 3_000,
        }
    }
}

/// What an AppendEntries request adds around one log entry (vote, previous
/// log id, commit id, the entry's log id and protobuf framing), rounded up.
pub const APPEND_ENTRIES_OVERHEAD_BYTES: u64 = 4 * 1024;

/// The smallest `raft.max_message_bytes`: one AppendEntries carrying one
/// log entry of `MAX_LOG_ENTRY_BYTES` (openraft halves a batch that does not
/// fit, down to one entry, which must always fit or replication stops).
pub const MIN_PEER_MESSAGE_BYTES: u64 = (neuroshard_governance::limits::MAX_LOG_ENTRY_BYTES
    + crate::codec::RAFT_ENTRY_OVERHEAD_BYTES) as u64
    + APPEND_ENTRIES_OVERHEAD_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {len} bytes, more than MAX_CONFIG_FILE_BYTES = {MAX_CONFIG_FILE_BYTES}")]
    TooLarge { path: String, len: u64 },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("config key `{key}` = {value}: {rule}")]
    Invalid {
        key: std::borrow::Cow<'static, str>,
        value: String,
        rule: String,
    },
}

fn invalid(
    key: impl Into<std::borrow::Cow<'static, str>>,
    value: impl std::fmt::Display,
    rule: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: value.to_string(),
        rule: rule.into(),
    }
}

fn check_range(
    key: impl Into<std::borrow::Cow<'static, str>>,
    value: u64,
    min: u64,
    max: u64,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(invalid(key, value, format!("must be within {min}..={max}")));
    }
    Ok(())
}

fn check_addr(key: &'static str, addr: &str) -> Result<(), ConfigError> {
    // Host names are allowed, so parse only the port strictly.
    let port = addr.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
    match port {
        Some(Ok(_)) if !addr.starts_with(':') => Ok(()),
        _ => Err(invalid(key, format!("{addr:?}"), "must be host:port")),
    }
}

impl NodeConfig {
    /// Reads, parses, validates and resolves relative paths.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        if meta.len() > MAX_CONFIG_FILE_BYTES {
            return Err(ConfigError::TooLarge {
                path: shown,
                len: meta.len(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: shown.clone(),
                message,
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses and validates TOML text (paths stay as written).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<config>".into(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.data_dir,
            &mut self.genesis,
            &mut self.tls.ca_cert,
            &mut self.tls.cert,
            &mut self.tls.key,
            &mut self.keys.identity,
            &mut self.keys.bls_share,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Every rule a value must follow, each refusal naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("node_id", self.node_id, 0, MAX_NODE_ID)?;
        for (key, path) in [
            ("data_dir", &self.data_dir),
            ("genesis", &self.genesis),
            ("tls.ca_cert", &self.tls.ca_cert),
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("keys.identity", &self.keys.identity),
            ("keys.bls_share", &self.keys.bls_share),
        ] {
            if path.as_os_str().is_empty() {
                return Err(invalid(key, "\"\"", "must name a file or directory"));
            }
        }
        check_addr("peer_listen", &self.peer_listen)?;
        check_addr("api_listen", &self.api_listen)?;
        if let Some(listen) = &self.metrics.listen {
            check_addr("metrics.listen", listen)?;
            if (listen == &self.api_listen || listen == &self.peer_listen)
                && !listen.ends_with(":0")
            {
                return Err(invalid(
                    "metrics.listen",
                    listen,
                    "must differ from peer_listen and api_listen",
                ));
            }
        }
        if let Some(format) = &self.log.format {
            if format != "text" && format != "json" {
                return Err(invalid(
                    "log.format",
                    format,
                    "must be \"text\" or \"json\"",
                ));
            }
        }
        if self.peer_listen == self.api_listen && !self.peer_listen.ends_with(":0") {
            return Err(invalid(
                "api_listen",
                &self.api_listen,
                "must differ from peer_listen",
            ));
        }
        if self.peers.len() > MAX_PEERS {
            return Err(invalid(
                "peers",
                self.peers.len(),
                format!("at most MAX_PEERS = {MAX_PEERS} peers"),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for peer in &self.peers {
            if peer.id == self.node_id {
                return Err(invalid(
                    "peers.id",
                    peer.id,
                    "must not be this node's own node_id",
                ));
            }
            if !seen.insert(peer.id) {
                return Err(invalid("peers.id", peer.id, "listed twice"));
            }
            check_range("peers.id", peer.id, 0, MAX_NODE_ID)?;
            check_addr("peers.addr", &peer.addr)?;
        }
        let r = &self.raft;
        check_range(
            "raft.heartbeat_interval_ms",
            r.heartbeat_interval_ms,
            10,
            60_000,
        )?;
        check_range(
            "raft.election_timeout_min_ms",
            r.election_timeout_min_ms,
            50,
            600_000,
        )?;
        if r.election_timeout_min_ms <= 2 * r.heartbeat_interval_ms {
            return Err(invalid(
                "raft.election_timeout_min_ms",
                r.election_timeout_min_ms,
                format!(
                    "must exceed twice raft.heartbeat_interval_ms ({})",
                    r.heartbeat_interval_ms
                ),
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return Err(invalid(
                "raft.election_timeout_max_ms",
                r.election_timeout_max_ms,
                format!(
                    "must exceed raft.election_timeout_min_ms ({})",
                    r.election_timeout_min_ms
                ),
            ));
        }
        check_range(
            "raft.election_timeout_max_ms",
            r.election_timeout_max_ms,
            r.election_timeout_min_ms + 1,
            600_000,
        )?;
        check_range(
            "raft.snapshot_logs_since_last",
            r.snapshot_logs_since_last,
            1,
            MAX_LOG_ENTRIES_BETWEEN_SNAPSHOTS,
        )?;
        check_range(
            "raft.logs_to_keep_after_snapshot",
            r.logs_to_keep_after_snapshot,
            0,
            MAX_LOG_ENTRIES_BETWEEN_SNAPSHOTS,
        )?;
        if r.max_message_bytes < MIN_PEER_MESSAGE_BYTES {
            return Err(invalid(
                "raft.max_message_bytes",
                r.max_message_bytes,
                format!(
                    "must carry one AppendEntries with a log entry of MAX_LOG_ENTRY_BYTES = {}: at least {MIN_PEER_MESSAGE_BYTES}",
                    neuroshard_governance::limits::MAX_LOG_ENTRY_BYTES
                ),
            ));
        }
        check_range(
            "raft.max_message_bytes",
            r.max_message_bytes,
            MIN_PEER_MESSAGE_BYTES,
            1024 * 1024 * 1024,
        )?;
        check_range(
            "raft.snapshot_chunk_bytes",
            r.snapshot_chunk_bytes,
            512,
            r.max_message_bytes / 2,
        )?;
        check_range(
            "raft.max_entries_per_append",
            r.max_entries_per_append,
            1,
            100_000,
        )?;
        check_range("raft.rpc_timeout_ms", r.rpc_timeout_ms, 10, 600_000)?;
        check_range(
            "raft.snapshot_rpc_timeout_ms",
            r.snapshot_rpc_timeout_ms,
            10,
            600_000,
        )?;
        check_range(
            "ticks.tick_interval_ms",
            self.ticks.tick_interval_ms,
            10,
            MAX_TICK_INTERVAL_MS,
        )?;
        let offset = self.ticks.clock_offset_ms;
        if offset.unsigned_abs() > MAX_CLOCK_OFFSET_MS.unsigned_abs() {
            return Err(invalid(
                "ticks.clock_offset_ms",
                offset,
                format!("must be within -{MAX_CLOCK_OFFSET_MS}..={MAX_CLOCK_OFFSET_MS} (one day)"),
            ));
        }
        let c = &self.client;
        check_range(
            "client.max_forward_batch",
            c.max_forward_batch as u64,
            1,
            10_000,
        )?;
        check_range(
            "client.max_forward_batch_bytes",
            c.max_forward_batch_bytes as u64,
            MAX_COMMAND_BYTES as u64,
            r.max_message_bytes / 2,
        )
        .map_err(|_| {
            invalid(
                "client.max_forward_batch_bytes",
                c.max_forward_batch_bytes,
                format!(
                    "must be within MAX_COMMAND_BYTES ({MAX_COMMAND_BYTES}, one command) and half of raft.max_message_bytes ({})",
                    r.max_message_bytes / 2
                ),
            )
        })?;
        check_range(
            "client.max_pending_commands",
            c.max_pending_commands as u64,
            1,
            1_000_000,
        )?;
        // Above `client.max_pending_commands` a quota never binds (the
        // total refuses first): allowed, so lowering the total alone works.
        check_range(
            "client.max_pending_per_account",
            c.max_pending_per_account as u64,
            1,
            1_000_000,
        )?;
        // Above `client.max_pending_commands` a quota never binds (the
        // total refuses first): allowed, so lowering the total alone works.
        check_range(
            "client.max_pending_per_source",
            c.max_pending_per_source as u64,
            1,
            1_000_000,
        )?;
        check_range(
            "client.submit_timeout_ms",
            c.submit_timeout_ms,
            100,
            600_000,
        )?;
        self.api_listener.validate("api_listener", false)?;
        self.peer_listener.validate("peer_listener", true)?;
        let st = &self.streams;
        check_range(
            "streams.max_certificate_streams",
            st.max_certificate_streams as u64,
            1,
            65_536,
        )?;
        check_range(
            "streams.max_certificate_streams_per_source",
            st.max_certificate_streams_per_source as u64,
            1,
            st.max_certificate_streams as u64,
        )?;
        check_range(
            "streams.slow_reader_timeout_ms",
            st.slow_reader_timeout_ms,
            100,
            3_600_000,
        )?;
        let sf = &self.safety;
        // At run time at least two election timeouts (`Node`): a refused
        // leader must not lead again before the others elected another.
        check_range(
            "safety.ignore_refused_leader_ms",
            sf.ignore_refused_leader_ms,
            1_000,
            600_000,
        )?;
        check_range("safety.startup_probe_ms", sf.startup_probe_ms, 100, 60_000)?;
        Ok(())
    }

    /// Addresses of every other validator by id.
    pub fn peer_addr(&self, id: NodeId) -> Option<&str> {
        self.peers
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.addr.as_str())
    }

    /// Every member of the committee (this node and its peers).
    pub fn members(&self) -> std::collections::BTreeSet<NodeId> {
        self.peers
            .iter()
            .map(|p| p.id)
            .chain([self.node_id])
            .collect()
    }

    /// The peer listener as a socket address, when it is one.
    pub fn peer_socket(&self) -> Option<SocketAddr> {
        self.peer_listen.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
node_id = 0
data_dir = "data"
genesis = "../genesis.toml"
peer_listen = "127.0.0.1:7100"
api_listen = "127.0.0.1:7200"
[tls]
ca_cert = "../ca.pem"
cert = "tls.pem"
key = "tls.key"
[keys]
identity = "identity.key"
bls_share = "bls_share.key"
[[peers]]
id = 1
addr = "127.0.0.1:7101"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = NodeConfig::parse(MINIMAL).expect("valid");
        assert_eq!(c.raft, RaftSettings::default());
        assert_eq!(c.members().into_iter().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(
            NodeConfig::parse(&c.to_toml().expect("toml")).expect("round trip"),
            c
        );
    }

    #[test]
    fn metrics_and_log_keys() {
        let c = NodeConfig::parse(MINIMAL).expect("valid");
        assert_eq!(c.metrics.listen, None, "no metrics listener by default");
        let text = format!(
            "{MINIMAL}\n[metrics]\nlisten = \"127.0.0.1:9100\"\n[log]\nformat = \"json\"\n"
        );
        let c = NodeConfig::parse(&text).expect("valid");
        assert_eq!(c.metrics.listen.as_deref(), Some("127.0.0.1:9100"));
        assert_eq!(c.log.format.as_deref(), Some("json"));
        assert_eq!(
            NodeConfig::parse(&c.to_toml().expect("toml")).expect("round trip"),
            c
        );
        for (extra, key) in [
            ("[metrics]\nlisten = \"9100\"", "metrics.listen"),
            ("[metrics]\nlisten = \"127.0.0.1:7200\"", "metrics.listen"),
            ("[log]\nformat = \"xml\"", "log.format"),
            ("[metrics]\nport = 1", "port"),
        ] {
            let err = NodeConfig::parse(&format!("{MINIMAL}\n{extra}\n")).expect_err(extra);
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let text = format!("{MINIMAL}\n[raft]\nheartbeat_ms = 5\n");
        let err = NodeConfig::parse(&text).expect_err("unknown key");
        assert!(err.to_string().contains("heartbeat_ms"), "{err}");
        let text = MINIMAL.replace("node_id = 0", "node_id = 0\nnodeid = 1");
        let err = NodeConfig::parse(&text).expect_err("unknown top-level key");
        assert!(err.to_string().contains("nodeid"), "{err}");
    }

    #[test]
    fn impossible_values_are_refused_by_name() {
        let cases = [
            (
                "[raft]\nelection_timeout_min_ms = 100\nheartbeat_interval_ms = 100\n",
                "raft.election_timeout_min_ms",
            ),
            (
                "[raft]\nelection_timeout_max_ms = 400\n",
                "raft.election_timeout_max_ms",
            ),
            (
                "[raft]\nsnapshot_chunk_bytes = 100\n",
                "raft.snapshot_chunk_bytes",
            ),
            ("[ticks]\ntick_interval_ms = 0\n", "ticks.tick_interval_ms"),
            (
                "[client]\nmax_forward_batch = 0\n",
                "client.max_forward_batch",
            ),
        ];
        for (extra, key) in cases {
            let err = NodeConfig::parse(&format!("{MINIMAL}\n{extra}")).expect_err(key);
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
        let err =
            NodeConfig::parse(&MINIMAL.replace("id = 1", "id = 0")).expect_err("self as peer");
        assert!(err.to_string().contains("peers.id"), "{err}");
        let err = NodeConfig::parse(&MINIMAL.replace("127.0.0.1:7200", "localhost"))
            .expect_err("no port");
        assert!(err.to_string().contains("api_listen"), "{err}");
    }

    /// `extra` appended to the minimal config: accepted, or refused naming
    /// `key`.
    fn accepts(extra: &str) -> Result<NodeConfig, String> {
        NodeConfig::parse(&format!("{MINIMAL}\n{extra}")).map_err(|e| e.to_string())
    }

    fn refused(extra: &str, key: &str) {
        match accepts(extra) {
            Ok(_) => panic!("accepted: {extra}"),
            Err(e) => assert!(e.contains(&format!("`{key}`")), "{key}: {e}"),
        }
    }

    /// `MINIMAL` with `from` replaced by `to`: accepted, or refused naming
    /// `key`.
    fn edited(from: &str, to: &str) -> Result<NodeConfig, String> {
        assert!(MINIMAL.contains(from), "{from}");
        NodeConfig::parse(&MINIMAL.replacen(from, to, 1)).map_err(|e| e.to_string())
    }

    #[test]
    fn every_value_is_range_checked_at_under_and_over() {
        // ticks.clock_offset_ms: at most one day either way.
        for ok in [0, MAX_CLOCK_OFFSET_MS, -MAX_CLOCK_OFFSET_MS, -40_000] {
            accepts(&format!("[ticks]\nclock_offset_ms = {ok}\n")).expect("within a day");
        }
        for bad in [
            MAX_CLOCK_OFFSET_MS + 1,
            -MAX_CLOCK_OFFSET_MS - 1,
            i64::MAX,
            i64::MIN,
        ] {
            refused(
                &format!("[ticks]\nclock_offset_ms = {bad}\n"),
                "ticks.clock_offset_ms",
            );
        }
        assert_eq!(MAX_CLOCK_OFFSET_MS, 86_400_000);

        // ticks.tick_interval_ms: 10 ..= 500, half the gov.max_clock_skew_ms
        // floor (the default is the maximum).
        assert_eq!(MAX_TICK_INTERVAL_MS, 500);
        assert_eq!(
            TickSettings::default().tick_interval_ms,
            MAX_TICK_INTERVAL_MS
        );
        for ok in [10, MAX_TICK_INTERVAL_MS] {
            accepts(&format!("[ticks]\ntick_interval_ms = {ok}\n")).expect("tick");
        }
        for bad in [9, MAX_TICK_INTERVAL_MS + 1, 3_600_000] {
            refused(
                &format!("[ticks]\ntick_interval_ms = {bad}\n"),
                "ticks.tick_interval_ms",
            );
        }

        // node_id and peers.id: 0 ..= 255 (genesis has at most 256
        // validators).
        assert_eq!(MAX_NODE_ID, 255);
        edited("node_id = 0", "node_id = 255").expect("the last index");
        match edited("node_id = 0", "node_id = 256") {
            Err(e) => assert!(e.contains("`node_id`"), "{e}"),
            Ok(_) => panic!("node_id 256 accepted"),
        }
        edited("id = 1\n", "id = 255\n").expect("the last peer index");
        match edited("id = 1\n", "id = 256\n") {
            Err(e) => assert!(e.contains("`peers.id`"), "{e}"),
            Ok(_) => panic!("peers.id 256 accepted"),
        }

        // Paths: never empty.
        for (from, key) in [
            ("data_dir = \"data\"", "data_dir"),
            ("genesis = \"../genesis.toml\"", "genesis"),
            ("ca_cert = \"../ca.pem\"", "tls.ca_cert"),
            ("cert = \"tls.pem\"", "tls.cert"),
            ("key = \"tls.key\"", "tls.key"),
            ("identity = \"identity.key\"", "keys.identity"),
            ("bls_share = \"bls_share.key\"", "keys.bls_share"),
        ] {
            let (name, _) = from.split_once(" = ").unwrap();
            match edited(from, &format!("{name} = \"\"")) {
                Err(e) => assert!(e.contains(&format!("`{key}`")), "{key}: {e}"),
                Ok(_) => panic!("empty {key} accepted"),
            }
        }

        // raft.election_timeout_max_ms: above the minimum, at most 600 000.
        accepts("[raft]\nelection_timeout_max_ms = 600000\n").expect("at the maximum");
        refused(
            "[raft]\nelection_timeout_max_ms = 600001\n",
            "raft.election_timeout_max_ms",
        );
        accepts("[raft]\nelection_timeout_max_ms = 501\n").expect("just above the minimum");

        // [safety]: ignore_refused_leader_ms 1 000 ..= 600 000,
        // startup_probe_ms 100 ..= 60 000; at, just inside and just over.
        for (key, min, max) in [
            ("ignore_refused_leader_ms", 1_000u64, 600_000u64),
            ("startup_probe_ms", 100, 60_000),
        ] {
            for ok in [min, min + 1, max - 1, max] {
                accepts(&format!("[safety]\n{key} = {ok}\n"))
                    .unwrap_or_else(|e| panic!("safety.{key} = {ok}: {e}"));
            }
            for bad in [0, min - 1, max + 1] {
                refused(
                    &format!("[safety]\n{key} = {bad}\n"),
                    &format!("safety.{key}"),
                );
            }
        }

        // raft.snapshot_logs_since_last: 1 ..= 1 000 000;
        // raft.logs_to_keep_after_snapshot: 0 ..= 1 000 000.
        let max = MAX_LOG_ENTRIES_BETWEEN_SNAPSHOTS;
        assert_eq!(max, 1_000_000);
        let key = "raft.snapshot_logs_since_last";
        for ok in [1, max] {
            accepts(&format!("[raft]\nsnapshot_logs_since_last = {ok}\n")).expect(key);
        }
        for bad in [0, max + 1, u64::MAX / 2] {
            refused(&format!("[raft]\nsnapshot_logs_since_last = {bad}\n"), key);
        }
        let key = "raft.logs_to_keep_after_snapshot";
        for ok in [0, max] {
            accepts(&format!("[raft]\nlogs_to_keep_after_snapshot = {ok}\n")).expect(key);
        }
        refused(
            &format!("[raft]\nlogs_to_keep_after_snapshot = {}\n", max + 1),
            key,
        );
    }

    #[test]
    fn admission_bounds_are_validated_at_under_and_over() {
        let defaults = ClientSettings::default();
        assert_eq!(defaults.max_forward_batch_bytes, 1024 * 1024);
        assert_eq!(defaults.max_pending_per_account, 64);
        assert_eq!(defaults.max_pending_per_source, 2048);
        NodeConfig::parse(MINIMAL)
            .expect("defaults")
            .validate()
            .expect("defaults are valid");

        // raft.max_message_bytes carries one AppendEntries with the largest
        // entry. (The forward batch must also fit twice: lower it first.)
        let small_batch = format!("max_forward_batch_bytes = {MAX_COMMAND_BYTES}");
        let at = MIN_PEER_MESSAGE_BYTES.max(2 * MAX_COMMAND_BYTES as u64);
        accepts(&format!(
            "[raft]\nmax_message_bytes = {at}\nsnapshot_chunk_bytes = 4096\n[client]\n{small_batch}\n"
        ))
            .expect("at the minimum");
        refused(
            &format!(
                "[raft]\nmax_message_bytes = {}\nsnapshot_chunk_bytes = 4096\n[client]\n{small_batch}\n",
                MIN_PEER_MESSAGE_BYTES - 1
            ),
            "raft.max_message_bytes",
        );
        assert!(
            MIN_PEER_MESSAGE_BYTES
                > (neuroshard_governance::limits::MAX_LOG_ENTRY_BYTES
                    + crate::codec::RAFT_ENTRY_OVERHEAD_BYTES) as u64
        );

        // client.max_forward_batch_bytes: MAX_COMMAND_BYTES ..= max_message_bytes / 2.
        let key = "client.max_forward_batch_bytes";
        accepts(&format!(
            "[client]\nmax_forward_batch_bytes = {MAX_COMMAND_BYTES}\n"
        ))
        .expect("one command");
        refused(
            &format!(
                "[client]\nmax_forward_batch_bytes = {}\n",
                MAX_COMMAND_BYTES - 1
            ),
            key,
        );
        let half = RaftSettings::default().max_message_bytes / 2;
        accepts(&format!("[client]\nmax_forward_batch_bytes = {half}\n")).expect("half");
        refused(
            &format!("[client]\nmax_forward_batch_bytes = {}\n", half + 1),
            key,
        );
        // The upper bound follows raft.max_message_bytes.
        refused(
            "[raft]\nmax_message_bytes = 1048576\nsnapshot_chunk_bytes = 4096\n[client]\nmax_forward_batch_bytes = 1048576\n",
            key,
        );

        // The pending quotas: 1 ..= 1 000 000 (above max_pending_commands a
        // quota never binds, so lowering the total alone stays valid).
        for key in ["max_pending_per_account", "max_pending_per_source"] {
            let full = format!("client.{key}");
            accepts(&format!("[client]\n{key} = 1\n")).expect("one");
            refused(&format!("[client]\n{key} = 0\n"), &full);
            accepts(&format!("[client]\n{key} = 1000000\n")).expect("at the maximum");
            refused(&format!("[client]\n{key} = 1000001\n"), &full);
        }
        accepts("[client]\nmax_pending_commands = 100\n").expect("the total alone");
    }
}
