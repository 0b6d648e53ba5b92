//! `neuroshard-chaos`: checks recorded histories, runs the in-process
//! model harness and the turmoil simulation of the real validator.
//!
//! Exit status: 0 when every invariant holds, 1 when any is violated, 2
//! when the history cannot be read or the run cannot start.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use neuroshard_chaos::model::{self, ModelConfig, Sabotage};
use neuroshard_chaos::sim::{self, SimConfig};
use neuroshard_chaos::{check, History, Report};

mod byzantine;
mod hostile;
mod powerloss;
mod real;

#[derive(Parser)]
#[command(
    name = "neuroshard-chaos",
    version,
    about = "Chaos histories: check invariants, run the model harness and the simulation"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Checks every invariant over a recorded history (JSON lines).
    Check {
        /// The history file.
        file: PathBuf,
    },
    /// Runs the deterministic in-process model and checks its history.
    Model {
        #[arg(long)]
        seed: u64,
        /// Also write the history here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run without the log stall and the follower crash.
        #[arg(long)]
        no_faults: bool,
        /// Regular voters (plus a latecomer and an author).
        #[arg(long, default_value_t = 6)]
        voters: usize,
        /// A deliberately broken build, to see the checkers fail.
        #[arg(long, value_enum, default_value_t = SabotageArg::None, hide = true)]
        sabotage: SabotageArg,
    },
    /// Runs the real validator code in the deterministic turmoil
    /// simulation (4 validators, faults around the closing tick) and
    /// checks its history.
    Sim {
        /// The seed (default: the CHAOS_SEED environment variable).
        #[arg(long, env = "CHAOS_SEED")]
        seed: u64,
        /// Also write the history here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run without the seed's faults.
        #[arg(long)]
        no_faults: bool,
        /// Regular voters (plus a latecomer and an author).
        #[arg(long, default_value_t = 6)]
        voters: usize,
        /// Replace the seed's faults with its power-loss crash point: the
        /// whole committee's power cut around NEP-1's deadline (every
        /// validator's disk drops what it had not synced).
        #[arg(long, conflicts_with = "no_faults")]
        power_cut: bool,
        /// TEST ONLY: the validators' simulated disks acknowledge writes
        /// without syncing them (the fdatasync removed), to see the
        /// checkers catch what a power cut then loses.
        #[arg(long, hide = true)]
        unsynced_acks: bool,
    },
    /// Runs one of issue 11's named simulation cases (a leader whose clock
    /// jumps or that withholds ticks; a wiped validator's recovery for
    /// n = 3, 4, 5; docs/chaos.md) and checks it; `--list` names them.
    Case {
        /// The case (`--list` prints every name).
        #[arg(required_unless_present = "list")]
        name: Option<String>,
        /// Print every case's name, one a line.
        #[arg(long)]
        list: bool,
        /// Run the sabotaged twin of a time case (the fault on every
        /// validator): its checks must fail.
        #[arg(long, hide = true)]
        sabotage: bool,
    },
    /// Runs the `neuroshard` binary as four validators in network
    /// namespaces, injects faults across a vote deadline, checks each
    /// scenario's history and prints a table (docs/chaos.md).
    Real(real::RealArgs),
    /// Runs the `neuroshard` binary as four validators on loopback with an
    /// honest workload, attacks them with hostile clients (oversized
    /// commands, garbage and forged signatures, replays, growth loops) and
    /// prints a table (docs/chaos.md, "Hostile clients").
    Hostile(hostile::HostileArgs),
    /// Runs the `neuroshard` binary as a committee whose data directories
    /// are lazyfs mounts (chaos/lazyfs: unsynced bytes are dropped on a
    /// crash), cuts the power under load at every crash point and checks
    /// that every acknowledged command survived (docs/chaos.md, "Power
    /// loss on real processes").
    Powerloss(powerloss::PowerlossArgs),
    /// Runs the `neuroshard` binary as four validators on loopback with an
    /// honest workload and a light node, and plays a faulty validator with
    /// one validator's own key files: forged snapshots, ticks ahead and
    /// withheld, membership changes, bad certificates and shares,
    /// equivocation; prints a table (docs/chaos.md, "The Byzantine suite").
    Byzantine(byzantine::ByzantineArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum SabotageArg {
    None,
    AcknowledgeLateVotes,
    CountLateVotes,
}

fn main() -> ExitCode {
    // NEUROSHARD_SIM_LOG=<filter> prints the validators' logs (to stderr)
    // when reproducing a seed.
    if let Ok(filter) = std::env::var("NEUROSHARD_SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    let cli = Cli::parse();
    let cli = match cli.command {
        Cmd::Real(args) => return real::main(args),
        Cmd::Hostile(args) => return hostile::main(args),
        Cmd::Powerloss(args) => return powerloss::main(args),
        Cmd::Byzantine(args) => return byzantine::main(args),
        Cmd::Case {
            name,
            list,
            sabotage,
        } => return case_main(name.as_deref(), list, sabotage),
        command => Cli { command },
    };
    let mut out = std::io::stdout().lock();
    match run(cli, &mut out) {
        Ok(report) if report.is_clean() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("neuroshard-chaos: {e}");
            ExitCode::from(2)
        }
    }
}

/// Printing stops quietly if stdout is closed (e.g. piped into `head`);
/// the exit status still tells the verdict.
fn run(cli: Cli, out: &mut impl Write) -> Result<Report, String> {
    match cli.command {
        Cmd::Real(_)
        | Cmd::Hostile(_)
        | Cmd::Powerloss(_)
        | Cmd::Byzantine(_)
        | Cmd::Case { .. } => Err("`real`, `hostile` and `case` are run by main".to_owned()),
        Cmd::Check { file } => {
            let history = History::load(&file).map_err(|e| e.to_string())?;
            let report = check(&history);
            let _ = writeln!(
                out,
                "{}: {} events, harness {}{}",
                file.display(),
                history.events.len(),
                history.header.harness,
                history
                    .header
                    .seed
                    .map(|s| format!(", seed {s}"))
                    .unwrap_or_default()
            );
            let _ = write!(out, "{}", report.table());
            Ok(report)
        }
        Cmd::Model {
            seed,
            out: out_file,
            no_faults,
            voters,
            sabotage,
        } => {
            let config = ModelConfig {
                faults: !no_faults,
                voters,
                sabotage: match sabotage {
                    SabotageArg::None => Sabotage::None,
                    SabotageArg::AcknowledgeLateVotes => Sabotage::AcknowledgeLateVotes,
                    SabotageArg::CountLateVotes => Sabotage::CountLateVotes,
                },
                ..ModelConfig::new(seed)
            };
            let run = model::run(&config).map_err(|e| e.to_string())?;
            let bytes = run.history.to_jsonl().map_err(|e| e.to_string())?;
            let digest = sha256_hex(&bytes);
            if let Some(path) = out_file {
                let file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let mut w = BufWriter::new(file);
                w.write_all(&bytes)
                    .and_then(|()| w.flush())
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            let s = run.stats;
            let _ = writeln!(
                out,
                "model seed {seed}: {} entries, {} ops ({} sends, {} unanswered), {} votes acknowledged, {} refused voting_closed, {} certificates, {} faults; history sha256 {digest}",
                s.entries, s.ops, s.attempts, s.unanswered, s.votes_acknowledged, s.votes_refused_closed, s.certificates, s.faults
            );
            let report = check(&run.history);
            let _ = write!(out, "{}", report.table());
            Ok(report)
        }
        Cmd::Sim {
            seed,
            out: out_file,
            no_faults,
            voters,
            power_cut,
            unsynced_acks,
        } => {
            let mut config = SimConfig {
                faults: !no_faults,
                voters,
                plan: power_cut.then(|| sim::power_cut_faults(seed)),
                ..SimConfig::new(seed)
            };
            config.disk.unsynced_acks = unsynced_acks;
            if !sim::DETERMINISTIC {
                eprintln!(
                    "neuroshard-chaos: warning: this build cannot reproduce a seed exactly: it was built without --cfg tokio_unstable (the workspace's .cargo/config.toml sets it; a RUSTFLAGS variable replaces that list; see docs/chaos.md)"
                );
            }
            let run = sim::run(&config).map_err(|e| format!("simulation seed {seed}: {e}"))?;
            let bytes = run.history.to_jsonl().map_err(|e| e.to_string())?;
            let digest = sha256_hex(&bytes);
            if let Some(path) = out_file {
                write_file(&path, &bytes)?;
            }
            let s = &run.stats;
            let c = &s.clients;
            let _ = writeln!(
                out,
                "sim seed {seed}: {}{}; {} ms simulated, {} entries, {} ops ({} sends, {} unanswered), {} votes acknowledged, {} refused voting_closed, {} certificates, {} faults, {} restarts, {} snapshots installed, {} connection resets, {} leader changes{}; {} crash points, {} power losses dropped {} bytes ({} writes, {} log entries, {} acknowledged), {} syncs; history sha256 {digest}",
                run.scenario,
                if unsynced_acks { " [TEST ONLY: unsynced acks]" } else { "" },
                s.sim_ms,
                s.entries,
                c.ops,
                c.attempts,
                c.unanswered,
                c.votes_acknowledged,
                c.votes_refused_closed,
                s.certificates,
                s.faults,
                s.restarts,
                s.snapshots_installed,
                s.connection_resets,
                s.leader_changes,
                if s.settled { "" } else { ", NOT SETTLED" },
                s.crash_points,
                s.disk.power_losses,
                s.disk.bytes_dropped,
                s.disk.writes_dropped,
                s.disk.entries_dropped,
                s.disk.acknowledged_entries_dropped,
                s.disk.syncs,
            );
            let report = check(&run.history);
            let _ = write!(out, "{}", report.table());
            Ok(report)
        }
    }
}

/// `neuroshard-chaos case`: exit 0 when the case shows what it claims (for
/// the old way where it can lose the entry: that the checks find the loss),
/// 1 when it does not, 2 when it cannot run.
fn case_main(name: Option<&str>, list: bool, sabotage: bool) -> ExitCode {
    use neuroshard_chaos::sim::cases::{self, CASES, RECOVERY_CASES};
    use neuroshard_chaos::sim::recovery;
    if list {
        for n in CASES.iter().chain(RECOVERY_CASES.iter()) {
            println!("{n}");
        }
        return ExitCode::SUCCESS;
    }
    let name = name.unwrap_or_default();
    if CASES.contains(&name) {
        return match cases::run_case(name, sabotage) {
            Ok(r) => {
                println!("{}", r.summary());
                for v in &r.close_violations {
                    println!("  close: {v}");
                }
                for v in &r.claim_violations {
                    println!("  claim: {v}");
                }
                print!("{}", r.report.table());
                if r.is_clean() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("neuroshard-chaos: case {name}: {e}");
                ExitCode::from(2)
            }
        };
    }
    let Some((case, expect_loss)) = cases::recovery_case(name) else {
        eprintln!(
            "neuroshard-chaos: no case {name:?}; the cases are {:?}",
            CASES
                .iter()
                .chain(RECOVERY_CASES.iter())
                .collect::<Vec<_>>()
        );
        return ExitCode::from(2);
    };
    match recovery::run(&case) {
        Ok(r) => {
            println!("case {name}: {}", r.summary(&case));
            for v in r.violations.iter().take(5) {
                println!("  {v}");
            }
            for d in r.disagreements.iter().take(5) {
                println!("  {d}");
            }
            let as_claimed = if expect_loss {
                r.lost_entry()
            } else {
                !r.lost_entry() && r.converged_after_ms.is_some()
            };
            println!(
                "case {name}: {}",
                match (expect_loss, as_claimed) {
                    (true, true) => "the old way lost the committed entry, and the checks found it",
                    (true, false) => "FAILED: the old way should lose the entry here, and the checks found nothing",
                    (false, true) => "the committed entry was kept and every validator converged",
                    (false, false) => "FAILED: the entry was lost or the committee did not converge",
                }
            );
            if as_claimed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("neuroshard-chaos: case {name}: {e}");
            ExitCode::from(2)
        }
    }
}

fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w = BufWriter::new(file);
    w.write_all(bytes)
        .and_then(|()| w.flush())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
