//! Issue 14, item 5: logs for machines and people, on real validators.
//!
//! Three validators log JSON (`[log] format = "json"` in node.toml) with a
//! per-module `RUST_LOG` (`info`, `neuroshard_node::node` at `debug`).
//! A staker drafts a NEP and submits it for review: the validator that
//! answered logs one JSON object per line, and the line about the
//! `Submit` command carries `nep`, `index` and `term` as fields. Then a
//! flood of badly signed commands hits one validator: each is refused
//! (`bad_signature`) and counted by its metrics, but its log holds at most
//! one line per second of flood for that rule, and those lines'
//! `suppressed` counts add up to every refusal.

use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::transport::Channel;

use neuroshard_cli::cluster::LocalCluster;
use neuroshard_cli::keygen::{self, KeygenOptions};
use neuroshard_cli::session::Session;
use neuroshard_governance::{AccountId, Amount, Command, NepId, SignedCommand, NEURO};
use neuroshard_node::api_proto as api;
use neuroshard_node::api_proto::governance_client::GovernanceClient as RawClient;
use neuroshard_node::NodeConfig;
use neuroshard_tests::{free_base_port, neuroshard_binary};

/// Badly signed commands sent in the flood.
const FLOOD: u64 = 20_000;
/// Clients sending them at once.
const FLOODERS: u64 = 8;
const REFUSED_LINE: &str = "command refused before ordering";

async fn raw_client(endpoint: &str, ca: &std::path::Path) -> RawClient<Channel> {
    let channel = neuroshard_node::client::connect_channel(endpoint, ca, Duration::from_secs(30))
        .await
        .expect("channel");
    RawClient::new(channel)
}

/// Every line of validator `i`'s log, parsed: each must be one JSON object.
fn json_lines(cluster: &LocalCluster, i: usize) -> Vec<Value> {
    cluster
        .node_log(i)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
            assert!(v["fields"].is_object(), "no `fields` object: {l}");
            assert!(v["level"].is_string() && v["target"].is_string(), "{l}");
            v
        })
        .collect()
}

/// `neuroshard_admission_refusals_total{rule="<rule>"}` of the metrics
/// listener at `addr`.
async fn admission_refusals(addr: &str, rule: &str) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("metrics");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).await.expect("response");
    let series = format!("neuroshard_admission_refusals_total{{rule=\"{rule}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map(|v| v.trim().parse().expect("counter"))
        .unwrap_or_else(|| panic!("no series {series} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_fields_and_a_flood_of_refusals_is_rate_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = KeygenOptions::new(3, dir.path().join("c"));
    opts.chain_id = "neuroshard-logs".into();
    // Peer and API listeners, then the metrics listeners right after.
    opts.base_port = free_base_port(9);
    opts.metrics_base_port = Some(opts.base_port + 6);
    let ceremony = keygen::run(&opts).expect("keygen");
    for config in &ceremony.node_configs {
        let mut text = std::fs::read_to_string(config).expect("node.toml");
        assert!(!text.contains("[log]"), "keygen wrote a [log] table");
        text.push_str("\n[log]\nformat = \"json\"\n");
        std::fs::write(config, text).expect("node.toml");
    }
    let metrics_addr = NodeConfig::load(&ceremony.node_configs[0])
        .expect("config")
        .metrics
        .listen
        .expect("keygen writes a metrics listener");
    let treasury =
        neuroshard_cli::bench::read_key(ceremony.treasury_key.as_ref().expect("treasury"))
            .expect("key");
    let chain_id = ceremony.genesis.chain_id.clone();
    let cluster = LocalCluster::start_with_env(
        &neuroshard_binary(),
        ceremony,
        vec![(
            "RUST_LOG".into(),
            "info,openraft=warn,sled=warn,h2=warn,tower=warn,neuroshard_node::node=debug".into(),
        )],
    )
    .expect("start");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("leader");
    let endpoints = cluster.ceremony.api_endpoints.clone();
    let ca = cluster.ca();

    // A NEP, drafted and submitted for review.
    let mut session = Session::new(endpoints.clone(), ca.clone());
    session
        .submit(
            &treasury,
            Command::Stake {
                amount: Amount(1_000 * NEURO),
            },
        )
        .await
        .expect("stake");
    let content = neuroshard_governance::proposal_file::parse(include_str!(
        "../../examples/neps/multi-token-prediction.toml"
    ))
    .expect("proposal file");
    let drafted = session
        .submit(&treasury, Command::CreateDraft { content })
        .await
        .expect("draft");
    let nep = drafted.nep.expect("the draft's NEP id");
    let submitted = session
        .submit(&treasury, Command::Submit { nep: NepId(nep) })
        .await
        .expect("submit for review");
    println!(
        "NEP {nep} submitted for review at log index {}",
        submitted.log_index
    );

    // The flood: correctly encoded, badly signed commands to validator 0.
    let mut bad = SignedCommand::sign(
        &chain_id,
        &treasury,
        u64::MAX / 2,
        Command::Transfer {
            to: AccountId(
                ed25519_dalek::SigningKey::from_bytes(&[7; 32])
                    .verifying_key()
                    .to_bytes(),
            ),
            amount: Amount(1),
        },
    );
    bad.signature.0[0] ^= 1;
    let postcard = neuroshard_node::codec::encode("signed command", &bad).expect("postcard");
    let before = admission_refusals(&metrics_addr, "bad_signature").await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..FLOODERS {
        let mut client = raw_client(&endpoints[0], &ca).await;
        let postcard = postcard.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..FLOOD / FLOODERS {
                let req = api::SubmitRequest {
                    command: Some(api::submit_request::Command::Postcard(postcard.clone())),
                };
                let status = client.submit(req).await.expect_err("refused");
                assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
                assert!(status.message().contains("signature"), "{status:?}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("flooder");
    }
    let flood_secs = started.elapsed().as_secs_f64();
    // One more after a quiet second: its line reports the rest.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mut client = raw_client(&endpoints[0], &ca).await;
    client
        .submit(api::SubmitRequest {
            command: Some(api::submit_request::Command::Postcard(postcard)),
        })
        .await
        .expect_err("refused");
    let sent = FLOOD + 1;
    let counted = admission_refusals(&metrics_addr, "bad_signature").await - before;
    assert_eq!(counted, sent, "the metrics count every refusal");

    // Validator 0's log: JSON lines, a bounded number about the flood.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = json_lines(&cluster, 0);
    let refused: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["fields"]["message"] == REFUSED_LINE && l["fields"]["rule"] == "bad_signature"
        })
        .collect();
    let suppressed: u64 = refused
        .iter()
        .map(|l| l["fields"]["suppressed"].as_u64().expect("suppressed"))
        .sum();
    println!(
        "{sent} refusals in {flood_secs:.2} s (+1 after a pause): {} log lines, suppressed counts sum to {suppressed}",
        refused.len()
    );
    for l in &refused {
        println!("  {l}");
    }
    let bound = flood_secs.ceil() as usize + 2;
    assert!(
        refused.len() <= bound,
        "{} lines for a {flood_secs:.2} s flood (bound {bound})",
        refused.len()
    );
    assert!(refused.len() >= 2, "the line after the pause is missing");
    assert_eq!(
        refused.len() as u64 + suppressed,
        sent,
        "the lines and their `suppressed` counts stand for every refusal"
    );
    assert!(refused.iter().all(|l| l["fields"]["remote"].is_string()));

    // The line about the NEP's Submit command, in whichever validator
    // answered it.
    let found = (0..cluster.len())
        .flat_map(|i| json_lines(&cluster, i))
        .find(|l| {
            let f = &l["fields"];
            f["command"] == "submit"
                && f["nep"].as_u64() == Some(nep)
                && f["index"].as_u64() == Some(submitted.log_index)
        })
        .expect("a JSON line about the Submit command with its nep and index");
    println!("{found}");
    assert!(found["fields"]["term"].as_u64().is_some_and(|t| t >= 1));
    assert_eq!(found["level"], "DEBUG");
    assert_eq!(found["target"], "neuroshard_node::node");
    // Per-module levels: nothing else of neuroshard_node logs at DEBUG.
    for i in 0..cluster.len() {
        for l in json_lines(&cluster, i) {
            if l["level"] == "DEBUG" {
                assert_eq!(l["target"], "neuroshard_node::node", "{l}");
            }
        }
    }
}
