//! `neuroshard`: the genesis ceremony, a validator, and operator tools.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use neuroshard_cli::{bench, bench_run, keygen, run_node};
use neuroshard_node::ApiClient;

#[derive(Parser)]
#[command(
    name = "neuroshard",
    version,
    about = "NeuroShard governance committee"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Genesis ceremony: BLS key shares, identity keys, a committee CA and
    /// TLS certificates, genesis.toml, committee.json and one node.toml per
    /// validator.
    Keygen {
        /// Number of validators: certificates need t + 1 = ⌊(n + f)/2⌋ + 1
        /// signatures with f = ⌊(n − 1)/3⌋ faulty validators tolerated
        /// (n = 4: 3 of 4, f = 1; n = 7: 5 of 7, f = 2; n = 3: 2 of 3, f = 0).
        #[arg(long)]
        validators: u32,
        /// Output directory (must not hold a genesis yet).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "neuroshard-local")]
        chain_id: String,
        /// Length of a governance day in ms (`gov.day_ms`); short for demos.
        #[arg(long)]
        day_ms: Option<u64>,
        /// Log indexes between certified checkpoints (genesis
        /// `checkpoint_interval`, 8..=1000000; default 4096): snapshots are
        /// built and installed only at certified checkpoints.
        #[arg(long)]
        checkpoint_interval: Option<u64>,
        /// Validator i listens on base+2i (peer) and base+2i+1 (API).
        #[arg(long, default_value_t = 7100)]
        base_port: u16,
        /// Address the validators listen on and dial each other at.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// One host per validator, comma-separated (each on its own machine
        /// or container): validator i is reached at the i-th on --base-port
        /// (peer) and --base-port + 1 (API) and listens on 0.0.0.0.
        #[arg(long, value_delimiter = ',', conflicts_with = "host")]
        hosts: Option<Vec<String>>,
        /// Initial accounts (TOML `[[allocations]]` with account, balance,
        /// staked); default: one treasury account, key in DIR/treasury.key.
        #[arg(long)]
        allocations: Option<PathBuf>,
        /// Validator i's metrics listener (/metrics, /healthz, /readyz):
        /// 127.0.0.1:PORT+i side by side, 0.0.0.0:PORT with --hosts.
        /// Default: right after the peer and API ports (base + 2n, or
        /// base + 2 with --hosts).
        #[arg(long)]
        metrics_base_port: Option<u16>,
        /// Write no metrics listener.
        #[arg(long, conflicts_with = "metrics_base_port")]
        no_metrics: bool,
    },
    /// Runs a validator until SIGTERM.
    Node {
        #[arg(long)]
        config: PathBuf,
        /// Recover a lost (empty) or rolled-back data directory: ask the
        /// other validators what this one acknowledged, catch up, and only
        /// then vote again (docs/operations.md, "Recovering a validator").
        #[arg(long)]
        recover: bool,
        /// Log lines as `text` (default) or `json` (one object per line,
        /// for log shippers); overrides `[log] format` of node.toml.
        /// Per-module levels: `RUST_LOG` (e.g. `info,neuroshard_node::safety=debug`).
        #[arg(long, value_parser = ["text", "json"])]
        log_format: Option<String>,
        /// Threads of the validator's async runtime (1–256; default: one
        /// per CPU this process may use). Validators that share a machine's
        /// cores answer sooner with the cores divided among them
        /// (docs/operations.md, "Validators sharing a machine").
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        worker_threads: Option<u16>,
    },
    /// Role, leader, term, commit/applied index, members and state hash of
    /// one validator.
    Status {
        /// https://host:port of the validator's API listener.
        #[arg(long)]
        endpoint: String,
        /// The committee CA (DIR/ca.pem).
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    User(neuroshard_cli::user_cmd::UserCmd),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// The write path in measured rounds (what bench/vs-etcd compares with
    /// etcd): per committee size a fresh keygen and real validators (TLS,
    /// fsync, signatures); per workload and outstanding count a warm-up and
    /// rounds; prints the median round's commands/s, p50, p99, server and
    /// client CPU per command, and fsyncs per command on each validator.
    Run {
        /// Committee sizes, one fresh committee each.
        #[arg(long, value_delimiter = ',', default_value = "3,4")]
        validators: Vec<u32>,
        #[arg(
            long,
            value_delimiter = ',',
            value_enum,
            default_value = "transfer,vote"
        )]
        workloads: Vec<bench_run::Workload>,
        /// Commands in flight at once (one account each), one configuration
        /// per value.
        #[arg(long, value_delimiter = ',', default_value = "1,64")]
        outstanding: Vec<usize>,
        #[arg(long, default_value_t = 3.0)]
        warmup_secs: f64,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long, default_value_t = 6.0)]
        round_secs: f64,
        /// Validator i listens on base+2i (peer) and base+2i+1 (API).
        #[arg(long, default_value_t = 17100)]
        base_port: u16,
        /// Keep the committees here (default: a temporary directory, removed).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the summaries (every round) as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The validators' `client.batch_entries` (batched log entries and
        /// batched client signature checks; `false` measures the path of one
        /// entry per command).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        batch_entries: bool,
        /// The validators' `raft.replicate_before_sync` (the leader
        /// replicates its new entries while their sync runs; `false`
        /// measures the path that syncs first).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        replicate_before_sync: bool,
        /// The genesis `checkpoint_interval` of the committees (default
        /// 4096; the genesis check refuses one outside its bounds): a small
        /// one measures what checkpoints cost.
        #[arg(long)]
        checkpoint_interval: Option<u64>,
        /// Each validator's runtime threads (`neuroshard node
        /// --worker-threads`): `shared` divides this machine's CPUs among
        /// the committee's validators (at least 1 each), as validators
        /// sharing a host would be run; `per-cpu` is the runtime's default
        /// (one per CPU in every validator); or a number from 1 to 256.
        #[arg(long, default_value = "shared")]
        worker_threads: bench_run::WorkerThreads,
    },
    /// Signed-command throughput through a local committee of real
    /// validator processes (durable appends).
    Cluster {
        #[arg(long, default_value_t = 4)]
        validators: u32,
        /// Concurrent client accounts.
        #[arg(long, default_value_t = 64)]
        senders: usize,
        #[arg(long, default_value_t = 50)]
        commands_per_sender: u64,
        /// Where to put the committee (default: a fresh temporary directory).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 17100)]
        base_port: u16,
        #[arg(long)]
        json: bool,
    },
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Keygen {
            validators,
            out,
            chain_id,
            day_ms,
            checkpoint_interval,
            base_port,
            host,
            hosts,
            allocations,
            metrics_base_port,
            no_metrics,
        } => {
            let mut opts = keygen::KeygenOptions::new(validators, out);
            opts.chain_id = chain_id;
            opts.day_ms = day_ms;
            opts.checkpoint_interval = checkpoint_interval;
            opts.base_port = base_port;
            opts.host = host;
            opts.hosts = hosts;
            opts.allocations = allocations;
            opts.metrics_base_port = if no_metrics {
                None
            } else {
                metrics_base_port.or_else(|| opts.default_metrics_base_port())
            };
            let c = keygen::run(&opts)?;
            println!(
                "genesis ceremony for {validators} validators written to {}",
                c.dir.display()
            );
            for (config, api) in c.node_configs.iter().zip(&c.api_endpoints) {
                println!(
                    "  neuroshard node --config {}   # API {api}",
                    config.display()
                );
            }
            if let Some(t) = &c.treasury_key {
                println!("treasury key: {}", t.display());
            }
        }
        Cmd::Node {
            config,
            recover,
            log_format,
            worker_threads: _,
        } => {
            // The flag, else node.toml's `[log] format` (a config that does
            // not load is reported by the node itself, below).
            let format = log_format.or_else(|| {
                neuroshard_node::NodeConfig::load(&config)
                    .ok()
                    .and_then(|c| c.log.format)
            });
            neuroshard_cli::logs::init(format.as_deref() == Some("json"));
            run_node::run(&config, recover).await?;
        }
        Cmd::Status { endpoint, ca, json } => {
            let mut client = ApiClient::connect(&endpoint, &ca, Duration::from_secs(5)).await?;
            let s = client.status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
                println!("node        {} ({})", s.node_id, s.role);
                println!("chain       {}", s.chain_id);
                println!("leader      {}", opt(s.leader));
                println!("term        {}", s.term);
                println!("commit      {}", opt(s.commit_index));
                println!("applied     {}", opt(s.applied_index));
                println!("last log    {}", opt(s.last_log_index));
                println!("snapshot    {}", opt(s.snapshot_index));
                println!("checkpoint  {} (certified)", opt(s.certified_checkpoint));
                if !s.diverged.is_empty() {
                    println!("DIVERGED    {}", s.diverged);
                }
                if s.not_serving.is_empty() {
                    println!("health      SERVING");
                } else {
                    println!("health      NOT_SERVING: {}", s.not_serving.join("; "));
                }
                println!("members     {:?}", s.members);
                println!("state hash  {}", s.state_hash);
                println!("time (ms)   {}", s.committed_time_ms);
                println!(
                    "state       {} of {} budget bytes ({:.1}%)",
                    s.state_bytes,
                    s.state_budget_bytes,
                    100.0 * s.state_bytes as f64 / s.state_budget_bytes.max(1) as f64
                );
            }
        }
        Cmd::User(cmd) => neuroshard_cli::user_cmd::run(cmd).await?,
        Cmd::Bench {
            what:
                BenchCmd::Run {
                    validators,
                    workloads,
                    outstanding,
                    warmup_secs,
                    rounds,
                    round_secs,
                    base_port,
                    out,
                    json,
                    batch_entries,
                    replicate_before_sync,
                    checkpoint_interval,
                    worker_threads,
                },
        } => {
            if rounds == 0 || round_secs <= 0.0 || warmup_secs < 0.0 {
                anyhow::bail!(
                    "--rounds and --round-secs must be positive, --warmup-secs not negative"
                );
            }
            let opts = bench_run::RunOptions {
                validators,
                workloads,
                outstanding,
                warmup: Duration::from_secs_f64(warmup_secs),
                rounds,
                round: Duration::from_secs_f64(round_secs),
                base_port,
                out,
                batch_entries,
                replicate_before_sync,
                checkpoint_interval,
                worker_threads,
            };
            let binary = std::env::current_exe()?;
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            // On SIGTERM or Ctrl-C the run is dropped: its committee's
            // validators are killed and its temporary directory removed.
            let summaries = tokio::select! {
                r = bench_run::run(&binary, &opts) => r?,
                _ = term.recv() => anyhow::bail!("SIGTERM: bench stopped"),
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted: bench stopped"),
            };
            print!("{}", neuroshard_load::table::render(&summaries));
            if let Some(path) = json {
                std::fs::write(path, serde_json::to_vec_pretty(&summaries)?)?;
            }
        }
        Cmd::Bench {
            what:
                BenchCmd::Cluster {
                    validators,
                    senders,
                    commands_per_sender,
                    out,
                    base_port,
                    json,
                },
        } => {
            let tmp;
            let out = match out {
                Some(o) => o,
                None => {
                    tmp = std::env::temp_dir()
                        .join(format!("neuroshard-bench-{}", std::process::id()));
                    tmp.clone()
                }
            };
            let binary = std::env::current_exe()?;
            let report = bench::run(
                &binary,
                &bench::BenchOptions {
                    validators,
                    senders,
                    commands_per_sender,
                    out,
                    base_port,
                },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Cmd::Node {
        worker_threads: Some(n),
        ..
    } = &cli.command
    {
        builder.worker_threads(usize::from(*n));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_threads(value: &str) -> Result<Option<u16>, clap::Error> {
        let cli = Cli::try_parse_from([
            "neuroshard",
            "node",
            "--config",
            "node.toml",
            "--worker-threads",
            value,
        ])?;
        match cli.command {
            Cmd::Node { worker_threads, .. } => Ok(worker_threads),
            _ => unreachable!("parsed as node"),
        }
    }

    #[test]
    fn node_worker_threads_are_bounded_1_to_256() {
        assert_eq!(node_threads("1").ok(), Some(Some(1)));
        assert_eq!(node_threads("256").ok(), Some(Some(256)));
        for bad in ["0", "257", "-1", "two"] {
            assert!(node_threads(bad).is_err(), "{bad:?}");
        }
        let cli =
            Cli::try_parse_from(["neuroshard", "node", "--config", "node.toml"]).expect("no flag");
        assert!(matches!(
            cli.command,
            Cmd::Node {
                worker_threads: None,
                ..
            }
        ));
    }
}
