//! `neuroshard bench cluster`: throughput of signed commands through a
//! local committee of real validator processes with durable appends.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use neuroshard_governance::NEURO;

use crate::cluster::LocalCluster;
use crate::keygen::{self, KeygenOptions};
use crate::workload::{self, Acks, Connections, Target};

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub validators: u32,
    pub senders: usize,
    pub commands_per_sender: u64,
    pub out: PathBuf,
    pub base_port: u16,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub validators: u32,
    pub senders: usize,
    pub commands: u64,
    pub seconds: f64,
    pub commands_per_second: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub max_latency_ms: f64,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} signed transfers through {} validators ({} concurrent senders, round-robin over all validators, durable appends): \
             {:.2} s, {:.0} commands/s, latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.commands,
            self.validators,
            self.senders,
            self.seconds,
            self.commands_per_second,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.max_latency_ms
        )
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

pub fn read_key(path: &Path) -> anyhow::Result<ed25519_dalek::SigningKey> {
    let bytes = neuroshard_node::keys::read_hex_secret(path)?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{}: not a 32-byte key", path.display()))?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

pub async fn run(binary: &Path, opts: &BenchOptions) -> anyhow::Result<BenchReport> {
    let mut kg = KeygenOptions::new(opts.validators, opts.out.clone());
    kg.chain_id = "neuroshard-bench".into();
    kg.base_port = opts.base_port;
    let ceremony = keygen::run(&kg)?;
    let treasury_path = ceremony
        .treasury_key
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no treasury key"))?;
    let treasury = read_key(&treasury_path)?;
    let chain_id = ceremony.genesis.chain_id.clone();
    let mut cluster = LocalCluster::start(binary, ceremony)?;
    cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let target = Target {
        endpoints: cluster.ceremony.api_endpoints.clone(),
        ca: cluster.ca(),
        chain_id: chain_id.clone(),
    };
    let conns = Connections::new(target);
    let senders: Vec<_> = (0..opts.senders)
        .map(|i| workload::workload_key(1, 0, i))
        .collect();
    let receivers: Vec<_> = (0..opts.senders)
        .map(|i| workload::account(&workload::workload_key(1, 1, i)))
        .collect();
    workload::fund(&conns, &chain_id, &treasury, 1, &senders, 1_000 * NEURO).await?;
    let acks = Arc::new(std::sync::Mutex::new(Acks::default()));
    let started = Instant::now();
    workload::run(
        conns,
        chain_id,
        senders,
        receivers,
        opts.commands_per_sender,
        acks.clone(),
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let unclean = cluster.stop_all();
    if !unclean.is_empty() {
        tracing::warn!(?unclean, "validators did not stop gracefully");
    }
    let mut latencies = acks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .latencies
        .clone();
    latencies.sort();
    let commands = latencies.len() as u64;
    Ok(BenchReport {
        validators: opts.validators,
        senders: opts.senders,
        commands,
        seconds,
        commands_per_second: commands as f64 / seconds,
        latency_p50_ms: percentile(&latencies, 0.5),
        latency_p99_ms: percentile(&latencies, 0.99),
        max_latency_ms: percentile(&latencies, 1.0),
    })
}
