//! `etcd-load`: the etcd side of `bench/vs-etcd`. Puts 256-byte values
//! into an etcd cluster over client TLS through the `etcd-client` crate,
//! with the driver `neuroshard bench run` uses (`neuroshard_load::run`),
//! and merges result files into the comparison table.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use neuroshard_load::{table, NoCounters, Plan, Summary};

#[derive(Parser)]
#[command(name = "etcd-load", about = "etcd load generator for bench/vs-etcd")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Closed-loop puts: a warm-up, then measured rounds, per outstanding count.
    Run {
        /// https://127.0.0.1:PORT of every member, comma-separated (one
        /// HTTP/2 connection to each).
        #[arg(long, value_delimiter = ',', required = true)]
        endpoints: Vec<String>,
        #[arg(long)]
        ca: PathBuf,
        /// Client certificate and key (the members require client certificates).
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        /// Puts in flight at once, one configuration per value.
        #[arg(long, value_delimiter = ',', default_value = "1,64")]
        outstanding: Vec<usize>,
        #[arg(long, default_value_t = 3.0)]
        warmup_secs: f64,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long, default_value_t = 6.0)]
        round_secs: f64,
        #[arg(long, default_value_t = 256)]
        value_bytes: usize,
        /// The etcd processes whose CPU is counted, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        server_pids: Vec<u32>,
        /// Also write the summaries as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Prints the table of several result files and the neuroshard/etcd ratios.
    Table { files: Vec<PathBuf> },
}

async fn connect(
    endpoints: &[String],
    ca: &PathBuf,
    cert: &PathBuf,
    key: &PathBuf,
) -> anyhow::Result<Client> {
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca)?))
        .identity(Identity::from_pem(
            std::fs::read(cert)?,
            std::fs::read(key)?,
        ));
    let options = ConnectOptions::new()
        .with_tls(tls)
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(10));
    let started = std::time::Instant::now();
    loop {
        let attempt = async {
            let mut client = Client::connect(endpoints, Some(options.clone())).await?;
            client.put("bench/ready", "1", None).await?;
            Ok::<_, etcd_client::Error>(client)
        };
        match attempt.await {
            Ok(c) => return Ok(c),
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("etcd not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => anyhow::bail!("etcd at {endpoints:?} not ready after 60 s: {e}"),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Run {
            endpoints,
            ca,
            cert,
            key,
            outstanding,
            warmup_secs,
            rounds,
            round_secs,
            value_bytes,
            server_pids,
            json,
        } => {
            let client = connect(&endpoints, &ca, &cert, &key).await?;
            let value: Vec<u8> = (0..value_bytes).map(|i| (i * 131 % 251) as u8).collect();
            let mut summaries = Vec::new();
            for &out in &outstanding {
                let plan = Plan {
                    outstanding: out,
                    warmup: Duration::from_secs_f64(warmup_secs),
                    rounds,
                    round: Duration::from_secs_f64(round_secs),
                };
                let kv = client.kv_client();
                let value = value.clone();
                let measured =
                    neuroshard_load::run(&plan, &server_pids, &mut NoCounters, move |w, _k| {
                        let mut kv = kv.clone();
                        let value = value.clone();
                        async move {
                            kv.put(format!("bench/{w:04}"), value, None).await?;
                            Ok(())
                        }
                    })
                    .await?;
                let s = Summary::new(
                    "etcd",
                    endpoints.len(),
                    &format!("put {value_bytes} B"),
                    out,
                    endpoints.len(),
                    Vec::new(),
                    measured,
                )?;
                eprintln!(
                    "etcd, {} members, {out} outstanding: {:.0} puts/s, p50 {:.2} ms, p99 {:.2} ms",
                    s.servers, s.median.ops_per_sec, s.median.p50_ms, s.median.p99_ms
                );
                summaries.push(s);
            }
            print!("{}", table::render(&summaries));
            if let Some(path) = json {
                std::fs::write(path, serde_json::to_vec_pretty(&summaries)?)?;
            }
        }
        Cmd::Table { files } => {
            let mut all: Vec<Summary> = Vec::new();
            for f in &files {
                let bytes =
                    std::fs::read(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                all.extend(serde_json::from_slice::<Vec<Summary>>(&bytes)?);
            }
            println!("median round of each configuration:");
            print!("{}", table::render(&all));
            println!();
            println!("ratios at the same number of outstanding operations:");
            print!("{}", table::render_ratios(&all));
        }
    }
    Ok(())
}
