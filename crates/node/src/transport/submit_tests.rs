//! Admission in the services, on a real one-validator committee in process
//! (openraft, the in-memory store, the tonic services called directly): a
//! command refused before ordering never reaches the log, an identical
//! retry is answered with its original receipt without a new entry, and a
//! forwarded batch answers each command on its own.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tokio::sync::{mpsc, watch};
use tonic::{Code, Request};

use neuroshard_governance::limits::MAX_COMMAND_BYTES;
use neuroshard_governance::testkit::{self, TestConfig};
use neuroshard_governance::{
    Amount, Command, EconomicImpact, Genesis, GovError, GovernanceState, Micro, NepContent,
    NepType, SignedCommand, UpgradePath,
};

use super::*;
use crate::clock::SystemClock;
use crate::config::{ClientSettings, KeyPaths, NodeConfig, RaftSettings, TickSettings, TlsPaths};
use crate::node::{Environment, Node};
use crate::proto;
use crate::proto::raft_peer_server::RaftPeer;
use crate::proto::replica_admin_server::ReplicaAdmin;
use crate::store::{MemLogStore, MemStateMachine};
use crate::transport::api_errors::detail_of;
use crate::transport::api_service::AdminService;
use crate::transport::net::{PeerIdentity, TcpNetwork};
use crate::transport::peer_service::PeerService;
use crate::transport::tls::{validator_dns_name, TlsMaterial};

fn self_signed() -> TlsMaterial {
    let certified =
        rcgen::generate_simple_self_signed(vec![validator_dns_name(0), "localhost".to_owned()])
            .expect("self-signed certificate");
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        certified.key_pair.serialize_der(),
    ));
    TlsMaterial {
        ca: vec![cert.clone()],
        chain: vec![cert],
        key: Arc::new(key),
    }
}

fn config(client: ClientSettings) -> NodeConfig {
    NodeConfig {
        node_id: 0,
        data_dir: "unused".into(),
        genesis: "unused".into(),
        peer_listen: "127.0.0.1:0".into(),
        api_listen: "127.0.0.1:0".into(),
        tls: TlsPaths {
            ca_cert: "unused".into(),
            cert: "unused".into(),
            key: "unused".into(),
        },
        keys: KeyPaths {
            identity: "unused".into(),
            bls_share: "unused".into(),
        },
        peers: Vec::new(),
        raft: RaftSettings {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            ..RaftSettings::default()
        },
        // No tick during a test: the log grows only by what it submits.
        ticks: TickSettings {
            tick_interval_ms: 3_600_000,
            clock_offset_ms: 0,
        },
        client,
        api_listener: crate::config::ListenerSettings::api_default(),
        peer_listener: crate::config::ListenerSettings::peer_default(),
        streams: Default::default(),
        safety: Default::default(),
        metrics: Default::default(),
        log: Default::default(),
    }
}

struct OneValidator {
    node: Node,
    genesis: Genesis,
    service: GovernanceService,
    _shutdown: watch::Sender<bool>,
}

async fn start(client: ClientSettings) -> OneValidator {
    let genesis = testkit::genesis(&TestConfig {
        validators: 1,
        ..TestConfig::default()
    })
    .0;
    let state = GovernanceState::from_genesis(&genesis).expect("genesis");
    let sm = MemStateMachine::new(state);
    let machine = sm.shared();
    // Not `validate`d: the hour-long tick interval (no tick during a test)
    // is over `ticks.tick_interval_ms`'s limit on purpose.
    let config = config(client);
    let node = Node::start_with(
        &config,
        &genesis,
        self_signed(),
        MemLogStore::new(),
        sm,
        machine,
        Environment {
            network: Arc::new(TcpNetwork),
            clock: Arc::new(SystemClock { offset_ms: 0 }),
            withhold_ticks: Arc::default(),
        },
    )
    .await
    .expect("start the validator");
    node.raft()
        .wait(Some(Duration::from_secs(20)))
        .metrics(|m| m.current_leader == Some(0), "validator 0 leads")
        .await
        .expect("a leader");
    // The ticker's first tick may race the election: wait until the log
    // is still and applied, so every later entry is the test's own.
    let mut last = None;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let m = node.raft().metrics().borrow().clone();
        if m.last_log_index.is_some()
            && m.last_log_index == last
            && m.last_applied.map(|l| l.index) == last
        {
            break;
        }
        last = m.last_log_index;
    }
    let (shutdown, rx) = watch::channel(false);
    let service = GovernanceService {
        core: node.core().clone(),
        genesis: Arc::new(GenesisView {
            parameters: Vec::new(),
            version: Default::default(),
            block_interval_ms: genesis.block_interval_ms,
        }),
        shutdown: rx,
    };
    OneValidator {
        node,
        genesis,
        service,
        _shutdown: shutdown,
    }
}

impl OneValidator {
    fn sign(&self, key: &SigningKey, nonce: u64, command: Command) -> SignedCommand {
        SignedCommand::sign(&self.genesis.chain_id, key, nonce, command)
    }

    fn last_log_index(&self) -> Option<u64> {
        self.node.raft().metrics().borrow().last_log_index
    }

    async fn submit(&self, command: &SignedCommand) -> Result<api::SubmitResponse, tonic::Status> {
        self.submit_bytes(postcard::to_stdvec(command).expect("encodes"))
            .await
    }

    async fn submit_bytes(&self, bytes: Vec<u8>) -> Result<api::SubmitResponse, tonic::Status> {
        self.service
            .submit(Request::new(api::SubmitRequest {
                command: Some(api::submit_request::Command::Postcard(bytes)),
            }))
            .await
            .map(|r| r.into_inner())
    }
}

fn transfer(to: usize, amount: u64) -> Command {
    Command::Transfer {
        to: testkit::account_of(&testkit::user_key(to)),
        amount: Amount(amount),
    }
}

/// A draft whose specification makes the command `spec_bytes` long, or so.
fn draft(spec_bytes: usize) -> Command {
    Command::CreateDraft {
        content: NepContent {
            title: "big".to_owned(),
            nep_type: NepType::Train,
            motivation: "m".to_owned(),
            specification: "s".repeat(spec_bytes),
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

/// The detail of an admission refusal, checked to be one.
fn admission_detail(status: &tonic::Status, code: Code, rule: &str) -> api::ErrorDetail {
    assert_eq!(status.code(), code, "{status:?}");
    let d = detail_of(status).expect("typed detail");
    assert_eq!(d.rule, rule, "{d:?}");
    assert_eq!(d.refusal, api::RefusalKind::Admission as i32, "{d:?}");
    assert_eq!(d.log_index, None, "an admission refusal has no log index");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_refuses_before_the_log_and_answers_retries() {
    let v = start(ClientSettings::default()).await;
    let alice = testkit::user_key(0);

    // An honest command is ordered and applied.
    let first = v.sign(&alice, 1, transfer(1, 5));
    let applied = v.submit(&first).await.expect("applied");
    assert!(applied.log_index > 0);
    let after_first = v.last_log_index();
    assert_eq!(after_first, Some(applied.log_index));

    // Its identical retry: the original receipt and log index, no entry.
    let again = v.submit(&first).await.expect("answered");
    assert_eq!(again.log_index, applied.log_index);
    assert_eq!(again.receipt_json, applied.receipt_json);
    assert_eq!(
        v.last_log_index(),
        after_first,
        "the retry was not proposed"
    );

    // Another command under the consumed nonce: nonce_replay, ALREADY_EXISTS.
    let replay = v.sign(&alice, 1, transfer(1, 6));
    let err = v.submit(&replay).await.expect_err("replay");
    let d = admission_detail(&err, Code::AlreadyExists, "nonce_replay");
    let typed: GovError = serde_json::from_str(&d.error_json).expect("typed");
    assert!(matches!(
        typed,
        GovError::NonceReplay {
            nonce: 1,
            expected: 2,
            ..
        }
    ));

    // A bad signature.
    let mut forged = v.sign(&alice, 2, transfer(1, 5));
    forged.signature.0[0] ^= 1;
    let err = v.submit(&forged).await.expect_err("bad signature");
    admission_detail(&err, Code::InvalidArgument, "bad_signature");

    // Too large, sent as postcard (refused by its size, undecoded) and as
    // JSON (measured after decoding).
    let big = v.sign(&alice, 2, draft(MAX_COMMAND_BYTES));
    let bytes = postcard::to_stdvec(&big).expect("encodes");
    assert!(bytes.len() > MAX_COMMAND_BYTES);
    let err = v.submit_bytes(bytes.clone()).await.expect_err("too large");
    let d = admission_detail(&err, Code::InvalidArgument, "command_too_large");
    assert!(
        d.message.contains(&bytes.len().to_string()),
        "{}",
        d.message
    );
    let json = serde_json::to_string(&big).expect("json");
    let err = v
        .service
        .submit(Request::new(api::SubmitRequest {
            command: Some(api::submit_request::Command::Json(json)),
        }))
        .await
        .expect_err("too large as JSON");
    admission_detail(&err, Code::InvalidArgument, "command_too_large");
    // The admin API refuses it the same way, typed on its wire.
    let admin = AdminService::new(v.node.core().clone());
    let answer = admin
        .submit(Request::new(proto::SubmitRequest { command: bytes }))
        .await
        .expect("answered")
        .into_inner();
    match answer.result.and_then(|r| r.result) {
        Some(proto::command_result::Result::Rejected(r)) => {
            assert_eq!(r.reason, proto::RejectReason::Admission as i32, "{r:?}");
            assert!(
                matches!(
                    NodeError::from_rejected(&r),
                    NodeError::Admission(GovError::CommandTooLarge { .. })
                ),
                "{r:?}"
            );
        }
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(
        v.last_log_index(),
        after_first,
        "nothing refused was ordered"
    );

    // Nonce 2 was not consumed by any refusal: the fixed command uses it.
    let fixed = v.sign(&alice, 2, transfer(1, 5));
    let ok = v.submit(&fixed).await.expect("nonce 2 still free");
    assert!(ok.log_index > applied.log_index);

    // An apply refusal is ordered, carries its index and consumes the nonce.
    let broke = v.sign(&alice, 3, transfer(1, u64::MAX / 2));
    let err = v.submit(&broke).await.expect_err("insufficient balance");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let d = detail_of(&err).expect("detail");
    assert_eq!(d.rule, "insufficient_balance");
    assert_eq!(d.refusal, api::RefusalKind::Apply as i32);
    assert_eq!(d.log_index, v.last_log_index());
    // Its identical retry is answered with the same refusal and index, and
    // is not proposed again.
    let refused_at = v.last_log_index();
    let again = v.submit(&broke).await.expect_err("the same refusal");
    let d = detail_of(&again).expect("detail");
    assert_eq!(
        (d.rule.as_str(), d.refusal, d.log_index),
        (
            "insufficient_balance",
            api::RefusalKind::Apply as i32,
            refused_at
        )
    );
    assert_eq!(v.last_log_index(), refused_at, "the retry was not proposed");
    let next = v.sign(&alice, 3, transfer(1, 5));
    let err = v.submit(&next).await.expect_err("nonce 3 consumed");
    admission_detail(&err, Code::AlreadyExists, "nonce_replay");

    v.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_forwarded_command_does_not_fail_its_batch() {
    let v = start(ClientSettings {
        max_forward_batch_bytes: MAX_COMMAND_BYTES + 1024,
        ..ClientSettings::default()
    })
    .await;
    let core = v.node.core().clone();
    let peer = PeerService::new(
        core.raft.clone(),
        core.submitter.clone(),
        core.machine.clone(),
        BTreeSet::from([0]),
        mpsc::channel(1).0,
        core.safety.clone(),
    );
    let (alice, bob) = (testkit::user_key(0), testkit::user_key(1));
    let applied = v.sign(&alice, 1, transfer(2, 5));
    let applied_at = {
        let r = v.submit(&applied).await.expect("applied");
        neuroshard_governance::Position::new(r.log_index, r.offset)
    };
    let encode = |c: &SignedCommand| postcard::to_stdvec(c).expect("encodes");
    let mut forged = v.sign(&bob, 1, transfer(2, 7));
    forged.signature.0[5] ^= 0x80;
    let too_large = encode(&v.sign(&bob, 1, draft(MAX_COMMAND_BYTES)));
    let batch = vec![
        encode(&v.sign(&alice, 2, transfer(2, 1))),
        too_large.clone(),
        encode(&forged),
        encode(&applied),
        vec![0xff, 0x01],
        encode(&v.sign(&bob, 1, transfer(2, 2))),
        // Past the leader's byte bound: answered overloaded, not failed.
        too_large,
    ];
    let before = v.last_log_index();
    let mut req = Request::new(proto::ForwardCommandsRequest {
        from: 0,
        commands: batch,
    });
    req.extensions_mut().insert(PeerIdentity {
        validator: Some(0),
        remote: "127.0.0.1:1".parse().expect("addr"),
        activity: None,
    });
    let results: Vec<_> = peer
        .forward_commands(req)
        .await
        .expect("the batch is answered")
        .into_inner()
        .results
        .into_iter()
        .map(crate::submit::result_from_wire)
        .collect();
    assert_eq!(results.len(), 7);
    let first = results[0].as_ref().expect("alice's transfer applied");
    assert!(first.outcome.is_ok(), "{first:?}");
    assert!(
        matches!(
            &results[1],
            Err(NodeError::Admission(GovError::CommandTooLarge { .. }))
        ),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(
            &results[2],
            Err(NodeError::Admission(GovError::BadSignature { .. }))
        ),
        "{:?}",
        results[2]
    );
    // The identical retry: its original receipt and index.
    let retry = results[3].as_ref().expect("retry answered");
    assert_eq!(retry.position, applied_at);
    assert!(
        matches!(&results[4], Err(NodeError::Malformed(_))),
        "{:?}",
        results[4]
    );
    let last = results[5].as_ref().expect("bob's transfer applied");
    assert!(last.outcome.is_ok(), "{last:?}");
    assert!(
        matches!(&results[6], Err(NodeError::Overloaded { .. })),
        "{:?}",
        results[6]
    );
    // Exactly the two admitted commands were ordered, in order: batched
    // into one entry or in two.
    assert!(last.position > first.position);
    let before = before.expect("entries before");
    let after = v.last_log_index().expect("entries after");
    assert!(
        (before + 1..=before + 2).contains(&after),
        "{before} -> {after}"
    );
    assert_eq!(last.position.log_index, after);

    v.node.shutdown().await;
}

/// Concurrent commands share log entries: each is answered with its own
/// position (log index, offset), positions are distinct and follow each
/// account's nonce order, and the log grows by fewer entries than commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_are_batched_with_distinct_positions() {
    let v = Arc::new(
        start(ClientSettings {
            batch_entries: true,
            ..ClientSettings::default()
        })
        .await,
    );
    let before = v.last_log_index().expect("entries before");
    const PER_USER: u64 = 10;
    let mut tasks = Vec::new();
    for user in 0..4usize {
        let v = v.clone();
        tasks.push(tokio::spawn(async move {
            let key = testkit::user_key(user);
            let mut positions = Vec::new();
            for nonce in 1..=PER_USER {
                let c = v.sign(&key, nonce, transfer((user + 1) % 4, 1));
                let r = v.submit(&c).await.expect("applied");
                positions.push(neuroshard_governance::Position::new(r.log_index, r.offset));
            }
            positions
        }));
    }
    let mut all = BTreeSet::new();
    for t in tasks {
        let positions = t.await.expect("task");
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "one account's commands are applied in nonce order: {positions:?}"
        );
        all.extend(positions);
    }
    assert_eq!(
        all.len(),
        4 * PER_USER as usize,
        "every position is distinct"
    );
    let after = v.last_log_index().expect("entries after");
    assert!(
        after - before < 4 * PER_USER,
        "{} commands took {} entries: none was batched",
        4 * PER_USER,
        after - before
    );
    assert!(all.iter().any(|p| p.offset > 0), "{all:?}");
    match Arc::try_unwrap(v) {
        Ok(v) => v.node.shutdown().await,
        Err(_) => panic!("the tasks are done"),
    }
}
