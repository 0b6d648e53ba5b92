//! The closed-loop load generator behind `neuroshard bench run` and the
//! etcd comparison (`bench/vs-etcd`): the same driver, rounds, percentiles
//! and CPU accounting for both systems, so only "submit one command" and
//! "put one key" differ.
//!
//! `outstanding` workers each run one operation at a time, back to back.
//! After a warm-up, `rounds` rounds of `round` each are measured: a round
//! counts the operations that completed in it and their latencies (from
//! the start of the operation to its acknowledgement). At every round
//! boundary it samples the servers' CPU (`/proc/<pid>/stat`, utime + stime,
//! every thread), the client's own CPU (`getrusage(RUSAGE_SELF)`: this
//! process only, never the servers even when they are its children) and
//! the servers' counters (a [`Sampler`], e.g. fsyncs per validator).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub mod table;

/// How long and how hard to load.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Operations in flight at once (one per worker).
    pub outstanding: usize,
    pub warmup: Duration,
    pub rounds: usize,
    pub round: Duration,
}

/// One measured round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Round {
    pub ops: u64,
    pub secs: f64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU of every server process together, per operation.
    pub server_cpu_us_per_op: f64,
    /// CPU of the load generator's process, per operation.
    pub client_cpu_us_per_op: f64,
    /// `[server][counter]`: each server's counter increase per operation
    /// (the counters the [`Sampler`] names).
    pub counters_per_op: Vec<Vec<f64>>,
}

/// One configuration's result: every round and the median one.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// "neuroshard" or "etcd".
    pub system: String,
    /// Validators or members.
    pub servers: usize,
    /// "transfer", "vote", "put 256 B".
    pub workload: String,
    pub outstanding: usize,
    /// Client connections (HTTP/2), over all servers.
    pub connections: usize,
    /// Names of the per-server counters in [`Round::counters_per_op`].
    pub counter_names: Vec<String>,
    pub rounds: Vec<Round>,
    /// The round with the median operations per second.
    pub median: Round,
}

impl Summary {
    pub fn new(
        system: &str,
        servers: usize,
        workload: &str,
        outstanding: usize,
        connections: usize,
        counter_names: Vec<String>,
        rounds: Vec<Round>,
    ) -> anyhow::Result<Self> {
        let median = median_round(&rounds)
            .ok_or_else(|| anyhow::anyhow!("no measured round"))?
            .clone();
        Ok(Self {
            system: system.to_owned(),
            servers,
            workload: workload.to_owned(),
            outstanding,
            connections,
            counter_names,
            rounds,
            median,
        })
    }
}

/// The round with the median throughput (the lower middle of an even count).
pub fn median_round(rounds: &[Round]) -> Option<&Round> {
    let mut sorted: Vec<&Round> = rounds.iter().collect();
    sorted.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    sorted.get(sorted.len().saturating_sub(1) / 2).copied()
}

/// What [`Sampler::sample`] returns: `[server][counter]`.
pub type SampleFuture<'a> =
    Pin<Box<dyn Future<Output = anyhow::Result<Vec<Vec<u64>>>> + Send + 'a>>;

/// Per-server counters read at round boundaries.
pub trait Sampler: Send {
    /// What each column of [`Sampler::sample`] counts.
    fn names(&self) -> Vec<String>;
    /// The counters' current values, `[server][counter]`.
    fn sample(&mut self) -> SampleFuture<'_>;
}

/// A [`Sampler`] for servers that expose no counters.
pub struct NoCounters;

impl Sampler for NoCounters {
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// Nearest-rank percentile of sorted samples, in ms.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// utime + stime of process `pid` (all its threads) in µs, from
/// `/proc/<pid>/stat`.
pub fn process_cpu_us(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| anyhow::anyhow!("/proc/{pid}/stat: {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/stat: no command name"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/stat: no field {n}"))?
            .parse::<u64>()
            .map_err(|e| anyhow::anyhow!("/proc/{pid}/stat field {n}: {e}"))
    };
    let ticks = field(14)? + field(15)?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(ticks * 1_000_000 / hz)
}

/// User + system CPU of this process (every thread, no children) in µs.
pub fn self_cpu_us() -> u64 {
    // SAFETY: getrusage writes only the struct passed.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(u.ru_utime) + us(u.ru_stime)
}

struct Snapshot {
    at: Instant,
    server_cpu_us: u64,
    client_cpu_us: u64,
    counters: Vec<Vec<u64>>,
}

async fn snapshot<S: Sampler>(pids: &[u32], sampler: &mut S) -> anyhow::Result<Snapshot> {
    let at = Instant::now();
    let mut server_cpu_us = 0;
    for &pid in pids {
        server_cpu_us += process_cpu_us(pid)?;
    }
    let client_cpu_us = self_cpu_us();
    let counters = sampler.sample().await?;
    Ok(Snapshot {
        at,
        server_cpu_us,
        client_cpu_us,
        counters,
    })
}

/// Index of the phase operations are counted in: rounds are 0..rounds,
/// the warm-up and the drain are not counted.
const NOT_COUNTED: usize = usize::MAX;

type Workers = tokio::task::JoinSet<anyhow::Result<()>>;

/// Sleeps `d`, failing early if a worker failed.
async fn sleep_watching(workers: &mut Workers, d: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
            done = workers.join_next() => match done {
                Some(Ok(Ok(()))) => continue,
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => anyhow::bail!("a load worker stopped: {e}"),
                None => {
                    tokio::time::sleep_until(deadline).await;
                    return Ok(());
                }
            },
        }
    }
}

/// Runs `op(worker, k)` (the k-th operation of that worker) on
/// `plan.outstanding` workers in a closed loop: a warm-up, then
/// `plan.rounds` measured rounds. `server_pids` are the processes whose CPU
/// is the servers'. Any failed operation ends the run with its error.
pub async fn run<F, Fut, S>(
    plan: &Plan,
    server_pids: &[u32],
    sampler: &mut S,
    op: F,
) -> anyhow::Result<Vec<Round>>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    S: Sampler,
{
    let op = Arc::new(op);
    let phase = Arc::new(AtomicUsize::new(NOT_COUNTED));
    let stop = Arc::new(AtomicBool::new(false));
    let latencies: Arc<Vec<Mutex<Vec<Duration>>>> =
        Arc::new((0..plan.rounds).map(|_| Mutex::new(Vec::new())).collect());
    let mut workers = Workers::new();
    for w in 0..plan.outstanding {
        let (op, phase, stop, latencies) =
            (op.clone(), phase.clone(), stop.clone(), latencies.clone());
        workers.spawn(async move {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                op(w, k).await?;
                let took = started.elapsed();
                if let Some(slot) = latencies.get(phase.load(Ordering::Relaxed)) {
                    slot.lock().unwrap_or_else(|p| p.into_inner()).push(took);
                }
                k += 1;
            }
            Ok(())
        });
    }
    let measured = async {
        sleep_watching(&mut workers, plan.warmup).await?;
        let mut snaps = Vec::with_capacity(plan.rounds + 1);
        for r in 0..plan.rounds {
            phase.store(r, Ordering::Relaxed);
            snaps.push(snapshot(server_pids, sampler).await?);
            sleep_watching(&mut workers, plan.round).await?;
        }
        phase.store(NOT_COUNTED, Ordering::Relaxed);
        snaps.push(snapshot(server_pids, sampler).await?);
        Ok::<_, anyhow::Error>(snaps)
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(done) = workers.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => anyhow::bail!("a load worker stopped: {e}"),
            }
        }
        Ok(())
    })
    .await;
    let snaps = measured?;
    match drained {
        Ok(r) => r?,
        Err(_) => anyhow::bail!("the load workers did not finish within 60 s"),
    }
    let mut rounds = Vec::with_capacity(plan.rounds);
    for (r, pair) in snaps.windows(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        let mut lat = std::mem::take(&mut *latencies[r].lock().unwrap_or_else(|p| p.into_inner()));
        lat.sort();
        let ops = lat.len() as u64;
        let per_op = |d: u64| d as f64 / ops.max(1) as f64;
        let secs = b.at.duration_since(a.at).as_secs_f64();
        let counters_per_op = a
            .counters
            .iter()
            .zip(&b.counters)
            .map(|(x, y)| {
                x.iter()
                    .zip(y)
                    .map(|(x, y)| per_op(y.saturating_sub(*x)))
                    .collect()
            })
            .collect();
        rounds.push(Round {
            ops,
            secs,
            ops_per_sec: ops as f64 / secs,
            p50_ms: percentile_ms(&lat, 0.50),
            p99_ms: percentile_ms(&lat, 0.99),
            server_cpu_us_per_op: per_op(b.server_cpu_us.saturating_sub(a.server_cpu_us)),
            client_cpu_us_per_op: per_op(b.client_cpu_us.saturating_sub(a.client_cpu_us)),
            counters_per_op,
        });
    }
    Ok(rounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(ops_per_sec: f64) -> Round {
        Round {
            ops: 1,
            secs: 1.0,
            ops_per_sec,
            p50_ms: 0.0,
            p99_ms: 0.0,
            server_cpu_us_per_op: 0.0,
            client_cpu_us_per_op: 0.0,
            counters_per_op: Vec::new(),
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&v, 0.5), 50.0);
        assert_eq!(percentile_ms(&v, 0.99), 99.0);
        assert_eq!(percentile_ms(&v[..1], 0.99), 1.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }

    #[test]
    fn the_median_round_is_the_middle_by_throughput() {
        let rounds: Vec<Round> = [5.0, 1.0, 4.0, 2.0, 3.0].map(round).to_vec();
        assert_eq!(median_round(&rounds).map(|r| r.ops_per_sec), Some(3.0));
        let even: Vec<Round> = [4.0, 1.0, 3.0, 2.0].map(round).to_vec();
        assert_eq!(median_round(&even).map(|r| r.ops_per_sec), Some(2.0));
        assert!(median_round(&[]).is_none());
    }

    #[test]
    fn own_cpu_is_readable_both_ways() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_cpu_us(pid).is_ok());
        assert!(self_cpu_us() > 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rounds_count_completed_operations() {
        let plan = Plan {
            outstanding: 4,
            warmup: Duration::from_millis(50),
            rounds: 3,
            round: Duration::from_millis(200),
        };
        let rounds = run(
            &plan,
            &[std::process::id()],
            &mut NoCounters,
            |_, _| async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(())
            },
        )
        .await
        .expect("run");
        assert_eq!(rounds.len(), 3);
        for r in &rounds {
            // 4 workers, 10 ms each: about 80 per 200 ms round.
            assert!(r.ops > 20 && r.ops < 120, "{r:?}");
            assert!(r.p50_ms >= 10.0, "{r:?}");
        }
    }

    #[tokio::test]
    async fn a_failed_operation_ends_the_run() {
        let plan = Plan {
            outstanding: 2,
            warmup: Duration::from_millis(10),
            rounds: 2,
            round: Duration::from_millis(100),
        };
        let err = run(&plan, &[], &mut NoCounters, |_, k| async move {
            if k == 3 {
                anyhow::bail!("refused")
            }
            Ok(())
        })
        .await
        .expect_err("a failure");
        assert!(err.to_string().contains("refused"));
    }
}
