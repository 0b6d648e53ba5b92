//! `neuroshard bench run`: the write path measured in rounds, as
//! `bench/vs-etcd` compares it with etcd. For every committee size, a
//! fresh keygen and real validator processes (mutual TLS between them,
//! sled synced to disk, every command signed and verified); for every
//! workload (transfers, votes) and every number of outstanding commands, a
//! warm-up and measured rounds through `neuroshard_load::run` — the driver
//! the etcd load generator uses too. Per configuration: the median round's
//! commands/s, p50, p99, server CPU per command (all validators, from
//! `/proc/<pid>/stat`), the bench process's own CPU per command, and each
//! validator's store syncs per command (read through the counters file the
//! validators write on SIGUSR1 with `NEUROSHARD_BENCH_COUNTERS` set).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;

use neuroshard_governance::genesis::ParamInput;
use neuroshard_governance::{
    Amount, Command, EconomicImpact, Effect, Micro, NepContent, NepId, NepType, ParamValue,
    ParameterChange, SignedCommand, UpgradePath, VoteChoice, NEURO,
};
use neuroshard_load::{table, Plan, SampleFuture, Sampler, Summary};
use neuroshard_node::{GovernanceClient, NodeStatus};

use crate::bench::read_key;
use crate::cluster::LocalCluster;
use crate::keygen::{self, KeygenOptions};
use crate::run_node::{COUNTERS_ENV, COUNTERS_FILE};
use crate::workload::{self, Connections, Target};

/// What each command of a configuration does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// A transfer from the worker's account to its own receiver.
    Transfer,
    /// A (re-)vote of the worker's staked account on the open NEP,
    /// alternating yes and no.
    Vote,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Transfer => "transfer",
            Workload::Vote => "vote",
        }
    }
}

/// Threads of each validator's async runtime in a benchmark committee
/// (`neuroshard node --worker-threads`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerThreads {
    /// The machine's CPUs divided among the committee's validators, at
    /// least one each: every validator of a benchmark runs on this one
    /// machine, as validators sharing a host would be deployed
    /// (docs/operations.md, "Validators sharing a machine").
    Shared,
    /// The runtime's own default: one per CPU, in every validator.
    PerCpu,
    /// This many in every validator.
    Fixed(u16),
}

impl std::str::FromStr for WorkerThreads {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "shared" => Ok(Self::Shared),
            "per-cpu" => Ok(Self::PerCpu),
            n => match n.parse::<u16>() {
                Ok(n @ 1..=256) => Ok(Self::Fixed(n)),
                _ => Err(format!(
                    "--worker-threads {n}: expected `shared`, `per-cpu` or a number of threads from 1 to 256"
                )),
            },
        }
    }
}

impl WorkerThreads {
    /// The `--worker-threads` of each of `validators` validators on a
    /// machine with `cpus` CPUs (None: the runtime's default).
    pub fn per_validator(self, validators: u32, cpus: usize) -> Option<u16> {
        match self {
            Self::Shared => {
                let each = cpus / (validators.max(1) as usize);
                Some(u16::try_from(each.clamp(1, 256)).unwrap_or(256))
            }
            Self::PerCpu => None,
            Self::Fixed(n) => Some(n),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub validators: Vec<u32>,
    pub workloads: Vec<Workload>,
    pub outstanding: Vec<usize>,
    pub warmup: Duration,
    pub rounds: usize,
    pub round: Duration,
    pub base_port: u16,
    /// Where the committees go (`validators-<n>` each); None: a temporary
    /// directory, removed afterwards.
    pub out: Option<PathBuf>,
    /// The validators' `client.batch_entries`.
    pub batch_entries: bool,
    /// The validators' `raft.replicate_before_sync`.
    pub replicate_before_sync: bool,
    /// The genesis `checkpoint_interval` (None: keygen's default, 4096).
    pub checkpoint_interval: Option<u64>,
    /// Each validator's runtime threads.
    pub worker_threads: WorkerThreads,
}

/// Balance each worker account is funded with, and its stake.
const WORKER_FUNDS: u64 = 1_000 * NEURO;
const WORKER_STAKE: u64 = 100 * NEURO;
const AUTHOR_FUNDS: u64 = 1_000 * NEURO;
const AUTHOR_STAKE: u64 = 200 * NEURO;

/// Reads each validator's counters file after a SIGUSR1.
struct Counters {
    pids: Vec<u32>,
    files: Vec<PathBuf>,
}

/// `(request, syncs, signature verifications)` as a validator wrote them.
fn read_counters(path: &Path) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

impl Sampler for Counters {
    fn names(&self) -> Vec<String> {
        vec![
            table::FSYNC_COUNTER.to_owned(),
            table::SIGNATURE_COUNTER.to_owned(),
        ]
    }

    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(async move {
            let before: Vec<u64> = self
                .files
                .iter()
                .map(|f| read_counters(f).map_or(0, |c| c.0))
                .collect();
            for &pid in &self.pids {
                // SAFETY: plain kill(2) on a validator this process started.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGUSR1);
                }
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let mut out = vec![None; self.files.len()];
            loop {
                for (i, f) in self.files.iter().enumerate() {
                    if out[i].is_none() {
                        if let Some((seq, syncs, verifications)) = read_counters(f) {
                            if seq > before[i] {
                                out[i] = Some(vec![syncs, verifications]);
                            }
                        }
                    }
                }
                if out.iter().all(Option::is_some) {
                    return Ok(out.into_iter().flatten().collect());
                }
                if tokio::time::Instant::now() > deadline {
                    anyhow::bail!(
                        "validators did not write their counters within 5 s after SIGUSR1"
                    );
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    }
}

/// The checkpoints validator 0 saw certified between two of its statuses
/// (warm-up and rounds), and the log entries they span: what checkpoints
/// cost is read against these.
fn checkpoints_during(before: Option<&NodeStatus>, after: Option<&NodeStatus>) -> String {
    let (Some(b), Some(a)) = (before, after) else {
        return "checkpoints: validator 0 gave no status".to_owned();
    };
    let entries = a
        .last_log_index
        .unwrap_or(0)
        .saturating_sub(b.last_log_index.unwrap_or(0));
    match (b.certified_checkpoint, a.certified_checkpoint) {
        (_, None) => format!("no checkpoint certified yet ({entries} log entries)"),
        (from, Some(to)) => format!(
            "latest certified checkpoint {} -> {to} ({entries} log entries)",
            from.map_or("none".to_owned(), |f| f.to_string())
        ),
    }
}

fn bench_nep() -> NepContent {
    NepContent {
        title: "bench: change train.prediction_heads".to_owned(),
        nep_type: NepType::Train,
        motivation: "a vote for neuroshard bench run to re-vote on".to_owned(),
        specification: "set train.prediction_heads".to_owned(),
        parameter_changes: vec![ParameterChange {
            key: "train.prediction_heads".to_owned(),
            expected_old: ParamValue::Integer(1),
            new: ParamValue::Integer(4),
        }],
        economic_impact: EconomicImpact {
            training_efficiency_multiplier: Micro::ONE,
            training_reward_multiplier: Micro::ONE,
            net_earnings_change_percent: Micro(0),
            summary: "no economic change".to_owned(),
        },
        upgrade_path: UpgradePath {
            grace_period_days: 7,
            backward_compatible: true,
        },
    }
}

/// One committee under load: its accounts, their next nonces, the open vote.
struct Bench {
    cluster: LocalCluster,
    conns: Arc<Connections>,
    chain_id: String,
    workers: Arc<Vec<SigningKey>>,
    receivers: Arc<Vec<neuroshard_governance::AccountId>>,
    nonces: Arc<Vec<AtomicU64>>,
    nep: NepId,
}

async fn ensure(
    conns: &Connections,
    who: usize,
    key: &SigningKey,
    chain_id: &str,
    nonce: u64,
    command: Command,
) -> anyhow::Result<neuroshard_governance::Receipt> {
    let cmd = SignedCommand::sign(chain_id, key, nonce, command);
    let s = workload::submit_until_acked(conns, who, who, &cmd).await?;
    s.outcome
        .map_err(|e| anyhow::anyhow!("setup command {} refused: {e}", cmd.command.name()))
}

impl Bench {
    async fn start(
        binary: &Path,
        validators: u32,
        dir: PathBuf,
        base_port: u16,
        workers: usize,
        opts: &RunOptions,
    ) -> anyhow::Result<Self> {
        let mut kg = KeygenOptions::new(validators, dir);
        kg.chain_id = "neuroshard-bench".into();
        kg.base_port = base_port;
        kg.client.batch_entries = opts.batch_entries;
        kg.raft.replicate_before_sync = opts.replicate_before_sync;
        kg.checkpoint_interval = opts.checkpoint_interval;
        // The vote opens at the tick after its submission and lasts a day.
        kg.parameters
            .insert("gov.review_days".to_owned(), ParamInput::Integer(0));
        let ceremony = keygen::run(&kg)?;
        let treasury = read_key(
            ceremony
                .treasury_key
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("no treasury key"))?,
        )?;
        let chain_id = ceremony.genesis.chain_id.clone();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = opts.worker_threads.per_validator(validators, cpus);
        match threads {
            Some(n) => println!(
                "neuroshard, {validators} validators: {n} runtime worker thread(s) each ({cpus} CPUs; --worker-threads {})",
                match opts.worker_threads {
                    WorkerThreads::Shared => "shared: the CPUs divided among the validators, at least 1",
                    _ => "as given",
                }
            ),
            None => println!(
                "neuroshard, {validators} validators: the runtime's default worker threads, one per CPU ({cpus})"
            ),
        }
        let cluster = LocalCluster::start_with(
            binary,
            ceremony,
            vec![(COUNTERS_ENV.to_owned(), "1".to_owned())],
            threads
                .map(|n| vec!["--worker-threads".to_owned(), n.to_string()])
                .unwrap_or_default(),
        )?;
        cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let target = Target {
            endpoints: cluster.ceremony.api_endpoints.clone(),
            ca: cluster.ca(),
            chain_id: chain_id.clone(),
        };
        let conns = Connections::new(target);
        let keys: Vec<SigningKey> = (0..workers)
            .map(|i| workload::workload_key(3, 0, i))
            .collect();
        let receivers = (0..workers)
            .map(|i| workload::account(&workload::workload_key(3, 1, i)))
            .collect();
        let author = workload::workload_key(3, 2, 0);
        // Funding: the treasury's nonces follow each other.
        workload::fund(
            &conns,
            &chain_id,
            &treasury,
            1,
            std::slice::from_ref(&author),
            AUTHOR_FUNDS,
        )
        .await?;
        workload::fund(&conns, &chain_id, &treasury, 2, &keys, WORKER_FUNDS).await?;
        // Stakes (nonce 1 of every account) before the vote opens: its
        // snapshot gives the workers their voting power.
        let mut stakes = tokio::task::JoinSet::new();
        for (i, key) in keys.iter().chain([&author]).enumerate() {
            let (conns, key, chain_id) = (conns.clone(), key.clone(), chain_id.clone());
            let amount = if i < keys.len() {
                WORKER_STAKE
            } else {
                AUTHOR_STAKE
            };
            stakes.spawn(async move {
                let command = Command::Stake {
                    amount: Amount(amount),
                };
                ensure(&conns, i, &key, &chain_id, 1, command).await
            });
        }
        while let Some(done) = stakes.join_next().await {
            done??;
        }
        let draft = ensure(
            &conns,
            0,
            &author,
            &chain_id,
            2,
            Command::CreateDraft {
                content: bench_nep(),
            },
        )
        .await?;
        let Effect::DraftCreated { nep, .. } = draft.effect else {
            anyhow::bail!("the draft's receipt names no NEP: {:?}", draft.effect);
        };
        ensure(&conns, 0, &author, &chain_id, 3, Command::Submit { nep }).await?;
        let mut client = GovernanceClient::connect(
            &cluster.ceremony.api_endpoints[0],
            &cluster.ca(),
            Duration::from_secs(3),
        )
        .await?;
        let started = std::time::Instant::now();
        while client.proposal(nep.0, false).await?.vote.is_none() {
            if started.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("NEP-{} did not reach VOTING within 30 s", nep.0);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            cluster,
            conns,
            chain_id,
            nonces: Arc::new((0..workers).map(|_| AtomicU64::new(2)).collect()),
            workers: Arc::new(keys),
            receivers: Arc::new(receivers),
            nep,
        })
    }

    async fn measure(&self, w: Workload, plan: &Plan) -> anyhow::Result<Summary> {
        if plan.outstanding > self.workers.len() {
            anyhow::bail!(
                "{} outstanding but {} accounts",
                plan.outstanding,
                self.workers.len()
            );
        }
        let n = self.cluster.len();
        let pids: Vec<u32> = (0..n)
            .map(|i| {
                self.cluster
                    .pid(i)
                    .ok_or_else(|| anyhow::anyhow!("validator {i} is not running"))
            })
            .collect::<anyhow::Result<_>>()?;
        let mut counters = Counters {
            pids: pids.clone(),
            files: self
                .cluster
                .ceremony
                .node_configs
                .iter()
                .map(|c| c.with_file_name(COUNTERS_FILE))
                .collect(),
        };
        let names = counters.names();
        let (conns, chain_id, keys, receivers, nonces, nep) = (
            self.conns.clone(),
            self.chain_id.clone(),
            self.workers.clone(),
            self.receivers.clone(),
            self.nonces.clone(),
            self.nep,
        );
        let rounds = neuroshard_load::run(plan, &pids, &mut counters, move |worker, _k| {
            let nonce = nonces[worker].fetch_add(1, Ordering::Relaxed);
            let command = match w {
                Workload::Transfer => Command::Transfer {
                    to: receivers[worker],
                    amount: Amount(workload::TRANSFER_UNITS),
                },
                Workload::Vote => Command::Vote {
                    nep,
                    choice: if nonce % 2 == 0 {
                        VoteChoice::Yes
                    } else {
                        VoteChoice::No
                    },
                },
            };
            let cmd = SignedCommand::sign(&chain_id, &keys[worker], nonce, command);
            let conns = conns.clone();
            async move {
                // Round-robin over the validators, as the existing workload.
                neuroshard_node::hoptrace::mark("C_send", nonce);
                workload::submit_until_acked(&conns, worker, worker + nonce as usize, &cmd).await?;
                neuroshard_node::hoptrace::mark("C_recv", 0);
                Ok(())
            }
        })
        .await?;
        Summary::new(
            "neuroshard",
            n,
            w.name(),
            plan.outstanding,
            n,
            names,
            rounds,
        )
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs every configuration; prints a line per configuration as it ends
/// (stderr) and returns the summaries.
pub async fn run(binary: &Path, opts: &RunOptions) -> anyhow::Result<Vec<Summary>> {
    let max_out = opts.outstanding.iter().copied().max().unwrap_or(1);
    let mut summaries = Vec::new();
    for &n in &opts.validators {
        let (dir, temporary) = match &opts.out {
            Some(o) => (o.join(format!("validators-{n}")), false),
            None => (
                std::env::temp_dir().join(format!("neuroshard-bench-{}-{n}", std::process::id())),
                true,
            ),
        };
        // Declared before the committee: removed after its validators are
        // stopped or killed, also when the run is dropped (SIGTERM).
        let _remove = temporary.then(|| RemoveOnDrop(dir.clone()));
        let result = async {
            let mut bench = Bench::start(
                binary,
                n,
                dir.clone(),
                opts.base_port,
                max_out,
                opts,
            )
            .await?;
            let mut out = Vec::new();
            for &w in &opts.workloads {
                for &o in &opts.outstanding {
                    let plan = Plan {
                        outstanding: o,
                        warmup: opts.warmup,
                        rounds: opts.rounds,
                        round: opts.round,
                    };
                    let before = bench.cluster.status(0).await;
                    let s = bench.measure(w, &plan).await?;
                    let after = bench.cluster.status(0).await;
                    eprintln!(
                        "neuroshard, {n} validators, {}, {o} outstanding: {:.0} commands/s, p50 {:.2} ms, p99 {:.2} ms; {}",
                        w.name(),
                        s.median.ops_per_sec,
                        s.median.p50_ms,
                        s.median.p99_ms,
                        checkpoints_during(before.as_ref(), after.as_ref())
                    );
                    out.push(s);
                }
            }
            let unclean = bench.cluster.stop_all();
            if !unclean.is_empty() {
                tracing::warn!(?unclean, "validators did not stop gracefully");
            }
            Ok::<_, anyhow::Error>(out)
        }
        .await;
        summaries.extend(result?);
    }
    Ok(summaries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_threads_divide_the_cpus_and_parse_their_bounds() {
        let shared = WorkerThreads::Shared;
        assert_eq!(shared.per_validator(3, 2), Some(1));
        assert_eq!(shared.per_validator(4, 16), Some(4));
        assert_eq!(shared.per_validator(3, 8), Some(2));
        assert_eq!(shared.per_validator(0, 1), Some(1));
        assert_eq!(WorkerThreads::PerCpu.per_validator(3, 2), None);
        assert_eq!(WorkerThreads::Fixed(3).per_validator(3, 2), Some(3));
        assert_eq!("shared".parse(), Ok(WorkerThreads::Shared));
        assert_eq!("per-cpu".parse(), Ok(WorkerThreads::PerCpu));
        assert_eq!("1".parse(), Ok(WorkerThreads::Fixed(1)));
        assert_eq!("256".parse(), Ok(WorkerThreads::Fixed(256)));
        for bad in ["0", "257", "-1", "two", ""] {
            assert!(bad.parse::<WorkerThreads>().is_err(), "{bad:?}");
        }
    }
}
