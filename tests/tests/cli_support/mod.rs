//! Shared by the governance end-to-end tests: a committee of real validator
//! processes with a short governance day, and running the `neuroshard` CLI
//! against it as a user would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use neuroshard_cli::cluster::LocalCluster;
use neuroshard_cli::keygen::{self, KeygenOptions};
use neuroshard_governance::genesis::ParamInput;
use neuroshard_governance::Genesis;
use neuroshard_node::config::NodeConfig;
use neuroshard_tests::{free_base_port, neuroshard_binary};

pub struct Committee {
    pub cluster: LocalCluster,
    /// The keygen output directory (ca.pem, genesis.toml, committee.json,
    /// treasury.key, validator-<i>/).
    pub dir: PathBuf,
    /// Scratch space for keys and files of the test.
    pub work: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// What a test changes before the validators start.
pub struct Setup {
    pub day_ms: u64,
    pub tick_ms: u64,
    /// Genesis parameter overrides (besides `gov.day_ms`).
    pub parameters: Vec<(&'static str, i64)>,
    /// `ticks.clock_offset_ms` per validator index.
    pub clock_offsets: Vec<(usize, i64)>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            // The floor of gov.day_ms.
            day_ms: 1_000,
            tick_ms: 50,
            parameters: Vec::new(),
            clock_offsets: Vec::new(),
        }
    }
}

pub async fn start(setup: Setup) -> Committee {
    let tmp = tempfile::tempdir().expect("tempdir");
    // NEUROSHARD_KEEP_TEST_DIR=1 keeps the committee (configs, data, node.log).
    let (tmp, root) = if std::env::var_os("NEUROSHARD_KEEP_TEST_DIR").is_some() {
        (None, tmp.keep())
    } else {
        let root = tmp.path().to_path_buf();
        (Some(tmp), root)
    };
    println!("test directory: {}", root.display());
    let mut opts = KeygenOptions::new(4, root.join("committee"));
    opts.chain_id = "neuroshard-e2e".into();
    // Peer and API listeners, then the metrics listeners right after.
    opts.base_port = free_base_port(12);
    opts.metrics_base_port = Some(opts.base_port + 8);
    opts.day_ms = Some(setup.day_ms);
    opts.ticks.tick_interval_ms = setup.tick_ms;
    let ceremony = keygen::run(&opts).expect("keygen");
    if !setup.parameters.is_empty() {
        let path = ceremony.dir.join("genesis.toml");
        let mut genesis =
            Genesis::from_toml(&std::fs::read_to_string(&path).expect("genesis")).expect("parse");
        for (key, value) in &setup.parameters {
            genesis
                .parameters
                .insert((*key).to_owned(), ParamInput::Integer(*value));
        }
        genesis.validate().expect("tweaked genesis is valid");
        std::fs::write(&path, genesis.to_toml().expect("toml")).expect("write genesis");
    }
    for (i, offset) in &setup.clock_offsets {
        let path = &ceremony.node_configs[*i];
        let mut config = NodeConfig::load(path).expect("node config");
        config.ticks.clock_offset_ms = *offset;
        std::fs::write(path, config.to_toml().expect("toml")).expect("write node config");
    }
    let dir = ceremony.dir.clone();
    let cluster = LocalCluster::start(&neuroshard_binary(), ceremony).expect("start validators");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let work = root.join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    Committee {
        cluster,
        dir,
        work,
        _tmp: tmp,
    }
}

impl Committee {
    /// Runs `neuroshard ARGS` pointed at this committee.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(neuroshard_binary())
            .args(args)
            .env("NEUROSHARD_COMMITTEE_DIR", &self.dir)
            .env_remove("NEUROSHARD_ENDPOINT")
            .env_remove("NEUROSHARD_CA")
            .env_remove("NEUROSHARD_KEY")
            .env_remove("NEUROSHARD_KEY_FILE")
            .output()
            .expect("run neuroshard")
    }

    /// Runs the CLI and returns stdout; panics with stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "neuroshard {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs the CLI with `--json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    pub fn path(&self, name: &str) -> String {
        self.work.join(name).display().to_string()
    }

    pub fn committee_file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A new account key in the work dir, funded by the treasury and staking.
    pub fn staker(&self, name: &str, fund: &str, stake: &str) -> (String, String) {
        let key = self.path(&format!("{name}.key"));
        let account = self.json(&["account", "new", "--out", &key])["account"]
            .as_str()
            .expect("account")
            .to_owned();
        self.ok(&[
            "transfer",
            &account,
            fund,
            "--key",
            &self.committee_file("treasury.key"),
        ]);
        self.ok(&["stake", stake, "--key", &key]);
        (key, account)
    }

    /// Waits (with `nep watch`) until `nep` reaches `stage`.
    pub fn watch_until(&self, nep: &str, stage: &str) -> serde_json::Value {
        let out = self.ok(&["nep", "watch", nep, "--until", stage, "--json"]);
        let last = out.lines().last().expect("watch printed a stage");
        let event: serde_json::Value = serde_json::from_str(last).expect("json line");
        assert_eq!(event["stage"], stage, "watch stopped at {event}");
        event
    }
}

/// Writes a proposal file derived from the multi-token-prediction example.
pub fn proposal_file(path: &Path, title: &str) {
    let example = include_str!("../../../examples/neps/multi-token-prediction.toml");
    let text = example.replace(
        "title = \"Add Multi-Token Prediction Training\"",
        &format!("title = {title:?}"),
    );
    std::fs::write(path, text).expect("write proposal file");
}

/// The value of the series `series` (name and labels, as the exposition
/// prints them) on validator `i`'s metrics listener; 0 when absent.
#[allow(dead_code)] // not every test binary that includes this module reads metrics
pub async fn metric(
    cluster: &neuroshard_cli::cluster::LocalCluster,
    i: usize,
    series: &str,
) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = neuroshard_node::NodeConfig::load(&cluster.ceremony.node_configs[i])
        .expect("config")
        .metrics
        .listen
        .expect("a metrics listener");
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("metrics");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).await.expect("response");
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}
