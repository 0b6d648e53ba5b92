//! One simulated validator: the real node (`Node::start_with_boot`) on the
//! in-memory store, the simulated network and a skewable clock, with
//! certificate issuance, running as a turmoil host.
//!
//! The store lives outside the host, on a simulated disk
//! (`neuroshard_node::store::mem`) that keeps what was synced apart from
//! what was only written. A crash ([`power_cut`]) drops the host's runtime
//! and every task in it (the process dies, its group-commit task with it)
//! and then the disk's unsynced writes (the machine lost power); the
//! restart rebuilds the state machine from what the disk kept and builds
//! a new node on it, as a validator restarting from its disk would. An
//! append is acknowledged only after the simulated fdatasync that covers
//! it, as in the sled store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use neuroshard_certificate::SecretKeyShare;
use neuroshard_governance::Genesis;
use neuroshard_governance::GovernanceState;
use neuroshard_node::boot::Boot;
use neuroshard_node::clock::Clock;
use neuroshard_node::config::{
    ClientSettings, KeyPaths, NodeConfig, PeerConfig, RaftSettings, TickSettings, TlsPaths,
};
use neuroshard_node::node::BootOptions;
use neuroshard_node::safety::AckRecords;
use neuroshard_node::store::mem::{self, MemDiskOptions, PowerLoss};
use neuroshard_node::store::{DiskStats, MemLogStore, MemStateMachine};
use neuroshard_node::transport::tls::TlsMaterial;
use neuroshard_node::types::Raft;
use neuroshard_node::{Environment, Node, NodeCore};

use crate::sim::clock::{SimClock, Skews};
use crate::sim::journal::Journal;
use crate::sim::net::{NetControl, SimNetwork};
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

/// How long one simulated fdatasync takes: a write waits this long (and
/// for the sync already running) before it is durable and acknowledged.
pub const SYNC_DELAY_MS: u64 = 2;

/// The simulated disk of the runs: syncs take [`SYNC_DELAY_MS`].
pub fn disk_options() -> MemDiskOptions {
    MemDiskOptions {
        sync_delay: std::time::Duration::from_millis(SYNC_DELAY_MS),
        unsynced_acks: false,
    }
}

/// What a validator keeps across a crash: its Raft log and state machine,
/// on one simulated disk.
#[derive(Clone)]
pub struct Disk {
    pub log: MemLogStore,
    pub machine: MemStateMachine,
}

impl Disk {
    /// An empty disk (the state machine at `genesis`).
    pub fn new(genesis: GovernanceState, options: MemDiskOptions) -> Self {
        let (log, machine) = mem::open(genesis, options);
        Self { log, machine }
    }

    pub fn stats(&self) -> DiskStats {
        self.log.disk().stats()
    }
}

/// Kills validator `v`'s process and cuts its machine's power: turmoil
/// drops its runtime (every task, the group-commit task included), the
/// network closes its connections, and its disk drops everything not
/// synced. It restarts from what its disk kept when bounced.
pub fn power_cut(
    sim: &mut turmoil::Sim<'_>,
    net: &NetControl,
    registry: &Registry,
    disk: &DiskSlot,
    v: u32,
) -> PowerLoss {
    let ip = sim.lookup(host_name(v));
    net.crashing(ip);
    sim.crash(host_name(v));
    net.crashed();
    registry.remove(v);
    slot(disk).log.disk().power_loss()
}

/// A validator's disk as the driver holds it: the recovery cases replace
/// it with an empty one (a wiped data directory) between a crash and the
/// restart.
pub type DiskSlot = Arc<Mutex<Disk>>;

/// How the validator's next start treats its disk (`Node::start_with_boot`);
/// `Boot::Auto` unless a case says otherwise.
pub type BootSlot = Arc<Mutex<Boot>>;

/// Locks a slot (a panic while holding one left a plain value behind).
pub fn slot<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One "withhold ticks" switch per validator (`Environment::withhold_ticks`),
/// shared between its node and the fault schedule.
#[derive(Clone, Debug)]
pub struct Withholds(Arc<Vec<Arc<AtomicBool>>>);

impl Withholds {
    pub fn new(validators: usize) -> Self {
        Self(Arc::new((0..validators).map(|_| Arc::default()).collect()))
    }

    pub fn flag(&self, validator: u32) -> Arc<AtomicBool> {
        self.0.get(validator as usize).cloned().unwrap_or_default()
    }

    pub fn set(&self, validator: u32, withhold: bool) {
        if let Some(f) = self.0.get(validator as usize) {
            f.store(withhold, Ordering::Relaxed);
        }
    }
}

/// The running validators' Raft handles and cores, so the driver can find
/// the leader and read each validator's safety counters.
#[derive(Clone, Default)]
pub struct Registry(Arc<Mutex<Running>>);

/// Each running validator's Raft handle and core.
type Running = BTreeMap<u32, (Raft, Arc<NodeCore>)>;

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Running> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, id: u32, node: &Node) {
        self.lock()
            .insert(id, (node.raft().clone(), node.core().clone()));
    }

    /// The running validator's Raft handle.
    pub fn raft(&self, id: u32) -> Option<Raft> {
        self.lock().get(&id).map(|(r, _)| r.clone())
    }

    /// The running validator's core (status, safety counters, recovery).
    pub fn core(&self, id: u32) -> Option<Arc<NodeCore>> {
        self.lock().get(&id).map(|(_, c)| c.clone())
    }

    /// Refusals before Raft by rule, summed over the running validators.
    pub fn safety_refusals(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (_, core) in self.lock().values() {
            for (rule, n) in core.safety.counts.snapshot() {
                *out.entry(rule.to_owned()).or_insert(0) += n;
            }
        }
        out
    }

    /// The validator is down: its handle says nothing any more.
    pub fn remove(&self, id: u32) {
        self.lock().remove(&id);
    }

    /// The leader of the highest term any running validator knows of.
    pub fn leader(&self) -> Option<u32> {
        self.lock()
            .iter()
            .filter_map(|(id, (raft, _))| {
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
    pub disk: DiskSlot,
    pub boot: BootSlot,
    pub withhold: Arc<AtomicBool>,
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
            // A restart's rollback probe and a recovery's retry (the
            // recovery cases; `Boot::Auto` never probes).
            startup_probe_ms: 500,
        },
        metrics: Default::default(),
        log: Default::default(),
    }
}

/// The validator's software: starts the node and runs until turmoil
/// crashes the host, or fails the simulation if its Raft core stops.
pub async fn run(setup: Arc<ValidatorSetup>) -> turmoil::Result {
    let id = setup.id;
    let disk = slot(&setup.disk).clone();
    // The process starts on what the disk holds (after a power cut: what
    // was synced), as `SledStateMachine::open` does.
    disk.machine
        .reopen()
        .map_err(|e| format!("validator {id}: its disk cannot be opened: {e}"))?;
    let boot = *slot(&setup.boot);
    let machine = RecordingMachine::new(
        id,
        disk.machine.clone(),
        setup.journal.clone(),
        setup.epoch_ms,
    )?;
    let clock: Arc<dyn Clock> = Arc::new(SimClock::new(setup.epoch_ms, id, setup.skews.clone()));
    let env = Environment {
        network: Arc::new(setup.network.clone()),
        clock: clock.clone(),
        withhold_ticks: setup.withhold.clone(),
    };
    // A recovered validator restarts from its disk like any other (the
    // sled store's recovery marker is removed at the same moment).
    let recovered = setup.boot.clone();
    let on_recovered: Box<dyn FnOnce() + Send> =
        Box::new(move || *slot(&recovered) = Boot::Restart);
    let mut node = Node::start_with_boot(
        &setup.config,
        &setup.genesis,
        setup.tls.clone(),
        disk.log.clone(),
        machine,
        disk.machine.shared(),
        env,
        BootOptions {
            boot,
            // In memory: a restarted validator has forgotten what the
            // others acknowledged to it (the sled store keeps it).
            acks: AckRecords::in_memory(),
            on_recovered: Some(on_recovered),
            // No data directory: the simulation runs no Byzantine replica.
            divergence_marker: None,
        },
    )
    .await?;
    node.start_issuance(setup.bls_share.clone(), clock);
    setup.registry.insert(id, &node);
    let reason = node.fatal().await;
    Err(format!("validator {id}: the Raft core stopped: {reason}").into())
}
