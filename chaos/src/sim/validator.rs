//! One simulated validator: the real node (`Node::start_with`) on the
//! in-memory store, the simulated network and a skewable clock, with
//! certificate issuance, running as a turmoil host.
//!
//! The store lives outside the host. turmoil's crash drops the host's
//! runtime and every task in it (the process dies); the restart builds a
//! new node on the same log and state machine, as a validator restarting
//! from its disk would. The in-memory log acknowledges an append once it
//! holds it, which is what the sled store acknowledges once synced.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use neuroshard_certificate::SecretKeyShare;
use neuroshard_governance::Genesis;
use neuroshard_node::clock::Clock;
use neuroshard_node::config::{
    ClientSettings, KeyPaths, NodeConfig, PeerConfig, RaftSettings, TickSettings, TlsPaths,
};
use neuroshard_node::store::{MemLogStore, MemStateMachine};
use neuroshard_node::transport::tls::TlsMaterial;
use neuroshard_node::types::Raft;
use neuroshard_node::{Environment, Node};

use crate::sim::clock::{SimClock, Skews};
use crate::sim::journal::Journal;
use crate::sim::net::SimNetwork;
use crate::sim::pki::host_name;
use crate::sim::recording::RecordingMachine;

/// Port of every validator's peer listener (mutual TLS).
pub const PEER_PORT: u16 = 7100;
/// Port of every validator's API listener (server TLS).
pub const API_PORT: u16 = 7200;
/// The leader proposes a tick this often.
pub const TICK_INTERVAL_MS: u64 = 100;
/// Raft heartbeats.
pub const HEARTBEAT_MS: u64 = 50;
/// The election timeout. openraft draws each timeout from
/// `rand::thread_rng()` in `[min, max)`, an OS-seeded generator the
/// simulation cannot seed; a one-millisecond range makes the draw always
/// `min`, so elections are decided by the seeded network latencies alone.
pub const ELECTION_TIMEOUT_MS: u64 = 300;

/// What a validator keeps across a crash: its Raft log and state machine.
#[derive(Clone)]
pub struct Disk {
    pub log: MemLogStore,
    pub machine: MemStateMachine,
}

/// The running validators' Raft handles, so the driver can find the leader.
#[derive(Clone, Default)]
pub struct Registry(Arc<Mutex<BTreeMap<u32, Raft>>>);

impl Registry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u32, Raft>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, id: u32, raft: Raft) {
        self.lock().insert(id, raft);
    }

    /// The validator is down: its handle says nothing any more.
    pub fn remove(&self, id: u32) {
        self.lock().remove(&id);
    }

    /// The leader of the highest term any running validator knows of.
    pub fn leader(&self) -> Option<u32> {
        self.lock()
            .iter()
            .filter_map(|(id, raft)| {
                let m = raft.metrics();
                let m = m.borrow();
                (m.state.is_leader() && m.current_leader == Some(m.id))
                    .then_some((m.current_term, *id))
            })
            .max()
            .map(|(_, id)| id)
    }
}

/// Everything one validator host needs, built once per run.
pub struct ValidatorSetup {
    pub id: u32,
    pub config: NodeConfig,
    pub genesis: Genesis,
    pub tls: TlsMaterial,
    pub bls_share: SecretKeyShare,
    pub disk: Disk,
    pub journal: Journal,
    pub epoch_ms: u64,
    pub skews: Skews,
    pub network: SimNetwork,
    pub registry: Registry,
}

/// The node configuration of validator `id` among `n`: production code
/// paths, simulation-sized timings.
pub fn node_config(id: u32, n: u32) -> NodeConfig {
    NodeConfig {
        node_id: u64::from(id),
        // Never read: the simulation passes its store and keys directly.
        data_dir: "sim-memory".into(),
        genesis: "sim-genesis".into(),
        peer_listen: format!("0.0.0.0:{PEER_PORT}"),
        api_listen: format!("0.0.0.0:{API_PORT}"),
        tls: TlsPaths {
            ca_cert: "sim-ca".into(),
            cert: "sim-cert".into(),
            key: "sim-key".into(),
        },
        keys: KeyPaths {
            identity: "sim-identity".into(),
            bls_share: "sim-bls".into(),
        },
        peers: (0..n)
            .filter(|p| *p != id)
            .map(|p| PeerConfig {
                id: u64::from(p),
                addr: format!("{}:{PEER_PORT}", host_name(p)),
            })
            .collect(),
        raft: RaftSettings {
            heartbeat_interval_ms: HEARTBEAT_MS,
            election_timeout_min_ms: ELECTION_TIMEOUT_MS,
            election_timeout_max_ms: ELECTION_TIMEOUT_MS + 1,
            // Small, so a validator that was down catches up by snapshot.
            snapshot_logs_since_last: 50,
            logs_to_keep_after_snapshot: 5,
            max_entries_per_append: 64,
            rpc_timeout_ms: 500,
            snapshot_rpc_timeout_ms: 2_000,
            ..RaftSettings::default()
        },
        ticks: TickSettings {
            tick_interval_ms: TICK_INTERVAL_MS,
            clock_offset_ms: 0,
        },
        client: ClientSettings {
            submit_timeout_ms: 3_000,
            ..ClientSettings::default()
        },
        api_listener: neuroshard_node::config::ListenerSettings::api_default(),
        peer_listener: neuroshard_node::config::ListenerSettings::peer_default(),
        streams: Default::default(),
        // On the simulation's scale (days of 1 s, elections of 0.3 s, a
        // skew bound of 2 s): a refused leader is ignored for 1 s.
        safety: neuroshard_node::config::SafetySettings {
            ignore_refused_leader_ms: 1_000,
            ..Default::default()
        },
    }
}

/// The validator's software: starts the node and runs until turmoil
/// crashes the host, or fails the simulation if its Raft core stops.
pub async fn run(setup: Arc<ValidatorSetup>) -> turmoil::Result {
    let id = setup.id;
    let machine = RecordingMachine::new(
        id,
        setup.disk.machine.clone(),
        setup.journal.clone(),
        setup.epoch_ms,
    )?;
    let clock: Arc<dyn Clock> = Arc::new(SimClock::new(setup.epoch_ms, id, setup.skews.clone()));
    let env = Environment {
        network: Arc::new(setup.network.clone()),
        clock: clock.clone(),
    };
    let mut node = Node::start_with(
        &setup.config,
        &setup.genesis,
        setup.tls.clone(),
        setup.disk.log.clone(),
        machine,
        setup.disk.machine.shared(),
        env,
    )
    .await?;
    node.start_issuance(setup.bls_share.clone(), clock);
    setup.registry.insert(id, node.raft().clone());
    let reason = node.fatal().await;
    Err(format!("validator {id}: the Raft core stopped: {reason}").into())
}
