//! Issue 9, the attack: one `Submit` carrying an oversized `CreateDraft`
//! stopped every leader in turn (the entry was written, then refused on
//! every read). Against four real validators that already ordered some
//! entries, properly signed oversized drafts are sent to every validator in
//! requests of exactly the API request limit, one byte under it, one byte
//! over it and the original 4 MiB: each must be refused before the log (a
//! typed admission refusal `command_too_large`, or the transport's own size
//! refusal), the author's nonce must stay unconsumed, every validator must
//! still run and agree, and an honest transfer must still commit.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use tonic::transport::Channel;
use tonic::Code;

use neuroshard_cli::cluster::LocalCluster;
use neuroshard_cli::keygen::{self, KeygenOptions};
use neuroshard_cli::session::Session;
use neuroshard_cli::workload::{self, Connections, Target};
use neuroshard_governance::admission::encoded_len;
use neuroshard_governance::limits::MAX_COMMAND_BYTES;
use neuroshard_governance::{
    AccountId, Amount, Command, EconomicImpact, Micro, NepContent, NepType, SignedCommand,
    UpgradePath, NEURO,
};
use neuroshard_node::api_proto as api;
use neuroshard_node::api_proto::governance_client::GovernanceClient as RawClient;
use neuroshard_node::transport::api_service::MAX_API_REQUEST_BYTES;
use neuroshard_node::{ApiError, Refusal};
use neuroshard_tests::{free_base_port, neuroshard_binary};

/// The request the issue sent: a 4 MiB `SubmitRequest`.
const ISSUE_REQUEST_BYTES: usize = 4 * 1024 * 1024;

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// The postcard size a `SubmitRequest` of exactly `request` bytes carries.
fn command_bytes_for_request(request: usize) -> usize {
    let mut p = request - 2;
    while 1 + varint_len(p) + p > request {
        p -= 1;
    }
    assert_eq!(1 + varint_len(p) + p, request, "no exact fit for {request}");
    p
}

fn draft(spec_bytes: usize) -> Command {
    Command::CreateDraft {
        content: NepContent {
            title: "oversized".to_owned(),
            nep_type: NepType::Train,
            motivation: "issue 9".to_owned(),
            specification: "x".repeat(spec_bytes),
            parameter_changes: Vec::new(),
            economic_impact: EconomicImpact {
                training_efficiency_multiplier: Micro::ONE,
                training_reward_multiplier: Micro::ONE,
                net_earnings_change_percent: Micro(0),
                summary: "none".to_owned(),
            },
            upgrade_path: UpgradePath {
                grace_period_days: 1,
                backward_compatible: true,
            },
        },
    }
}

/// A properly signed `CreateDraft` whose postcard encoding is exactly
/// `bytes` long.
fn signed_draft_of(chain_id: &str, key: &SigningKey, nonce: u64, bytes: usize) -> SignedCommand {
    let sign = |spec: usize| SignedCommand::sign(chain_id, key, nonce, draft(spec));
    let mut spec = bytes.saturating_sub(encoded_len(&sign(0)));
    loop {
        let c = sign(spec);
        let len = encoded_len(&c);
        if len == bytes {
            return c;
        }
        assert!(len < bytes || spec > 0, "cannot reach {bytes} bytes");
        // The spec's own length varint may grow: step towards the target.
        spec = if len < bytes { spec + 1 } else { spec - 1 };
    }
}

async fn raw_client(endpoint: &str, ca: &std::path::Path) -> RawClient<Channel> {
    let channel = neuroshard_node::client::connect_channel(endpoint, ca, Duration::from_secs(30))
        .await
        .expect("channel");
    // The attacker's client sends whatever it likes.
    RawClient::new(channel)
        .max_encoding_message_size(64 * 1024 * 1024)
        .max_decoding_message_size(64 * 1024 * 1024)
}

/// How a validator refused a request: typed admission refusal, or the
/// transport's size refusal. Panics on anything else (an applied command,
/// an apply refusal, a timeout, a dropped connection).
fn refused_before_the_log(what: &str, status: tonic::Status) -> &'static str {
    let e = ApiError::from(status);
    match (&e, e.refusal()) {
        (_, Some(Refusal::Admission)) if e.rule() == Some("command_too_large") => "typed",
        (
            ApiError::Status {
                code: Code::OutOfRange | Code::ResourceExhausted,
                detail: None,
                ..
            },
            Some(Refusal::Admission),
        ) => "transport",
        _ => panic!("{what}: not refused before the log: {e} ({e:?})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_submits_are_refused_before_the_log_and_every_validator_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = KeygenOptions::new(4, dir.path().join("committee"));
    opts.chain_id = "neuroshard-admission".into();
    opts.base_port = free_base_port(8);
    opts.ticks.tick_interval_ms = 300;
    let ceremony = keygen::run(&opts).expect("keygen");
    let treasury =
        neuroshard_cli::bench::read_key(ceremony.treasury_key.as_ref().expect("treasury"))
            .expect("key");
    let chain_id = ceremony.genesis.chain_id.clone();
    let mut cluster = LocalCluster::start(&neuroshard_binary(), ceremony).expect("start");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("leader");
    let endpoints = cluster.ceremony.api_endpoints.clone();
    let ca = cluster.ca();

    // Some log entries first (the issue's committee had a history).
    let conns = Connections::new(Target {
        endpoints: endpoints.clone(),
        ca: ca.clone(),
        chain_id: chain_id.clone(),
    });
    let funded: Vec<_> = (0..4).map(|i| workload::workload_key(7, 0, i)).collect();
    let next = workload::fund(&conns, &chain_id, &treasury, 1, &funded, 10 * NEURO)
        .await
        .expect("fund four accounts");
    assert_eq!(next, 5);
    let before = cluster
        .wait_for_agreement(&[0, 1, 2, 3], Duration::from_secs(30))
        .await
        .expect("agreement before the attack");
    println!("before the attack: all at applied index {}", before.0);

    // The attacker is a funded author; its next nonce is 1.
    let author = &funded[0];
    let author_id = AccountId(author.verifying_key().to_bytes());
    let request_sizes = [
        ("exactly the API request limit", MAX_API_REQUEST_BYTES),
        ("one byte under the limit", MAX_API_REQUEST_BYTES - 1),
        ("one byte over the limit", MAX_API_REQUEST_BYTES + 1),
        ("the issue's 4 MiB request", ISSUE_REQUEST_BYTES),
    ];
    let mut outcomes = Vec::new();
    for (what, request) in request_sizes {
        let command_bytes = command_bytes_for_request(request);
        assert!(command_bytes > MAX_COMMAND_BYTES);
        let signed = signed_draft_of(&chain_id, author, 1, command_bytes);
        let postcard = neuroshard_node::codec::encode("attack", &signed).expect("encodes");
        assert_eq!(postcard.len(), command_bytes);
        // The request: field tag, length varint, the command's bytes.
        assert_eq!(
            1 + varint_len(postcard.len()) + postcard.len(),
            request,
            "{what}"
        );
        let req = api::SubmitRequest {
            command: Some(api::submit_request::Command::Postcard(postcard)),
        };
        // To every validator: followers forward, the leader proposes.
        for endpoint in &endpoints {
            let mut client = raw_client(endpoint, &ca).await;
            let answer = client.submit(req.clone()).await;
            let status = match answer {
                Ok(r) => panic!(
                    "{what} to {endpoint}: applied at {}",
                    r.into_inner().log_index
                ),
                Err(s) => s,
            };
            let how = refused_before_the_log(&format!("{what} to {endpoint}"), status);
            outcomes.push((what, endpoint.clone(), how));
        }
    }
    for (what, endpoint, how) in &outcomes {
        println!("{what} -> {endpoint}: refused before the log ({how})");
        // Whatever fits the transport is refused by admission, typed.
        if what.contains("exactly") || what.contains("under") {
            assert_eq!(*how, "typed", "{what} to {endpoint}");
        }
    }

    // Every validator is still running, and a leader is known.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..cluster.len() {
        assert!(
            cluster.is_running(i),
            "validator {i} stopped after the attack"
        );
    }
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("a leader after the attack");

    // The author's nonce was never consumed: nothing entered the log.
    let mut session = Session::new(endpoints.clone(), ca.clone());
    assert_eq!(
        session.next_nonce(&author_id).await.expect("account"),
        1,
        "an oversized command consumed the author's nonce"
    );

    // An honest transfer (with that very nonce) still commits.
    let receipt = session
        .submit(
            author,
            Command::Transfer {
                to: workload::account(&funded[1]),
                amount: Amount(NEURO),
            },
        )
        .await
        .expect("an honest transfer commits");
    assert!(receipt.log_index > before.0, "{receipt:?}");
    let (index, hash) = cluster
        .wait_for_agreement(&[0, 1, 2, 3], Duration::from_secs(30))
        .await
        .expect("every validator applies it");
    println!(
        "after the attack: honest transfer at {}, all at {index} ({hash})",
        receipt.log_index
    );

    // No validator logged a log entry it could not read back.
    for config in &cluster.ceremony.node_configs {
        let log = std::fs::read_to_string(config.with_file_name("node.log")).unwrap_or_default();
        assert!(
            !log.contains("exceeds the limit") && !log.contains("when Read Logs"),
            "{}: {}",
            config.display(),
            log.lines()
                .filter(|l| l.contains("exceeds the limit") || l.contains("Read Logs"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    assert_eq!(
        cluster.stop_all(),
        Vec::<usize>::new(),
        "validators that needed SIGKILL"
    );
}
