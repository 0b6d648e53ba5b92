//! Honest health on a real validator in process (openraft, the in-memory
//! store, tonic services): NOT_SERVING and 503 while there is no leader,
//! SERVING and 200 once it leads, NOT_SERVING from the moment shutdown
//! starts; `/metrics` shows the families.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::HealthCheckRequest;

use neuroshard_governance::testkit::{self, TestConfig};
use neuroshard_governance::GovernanceState;

use crate::clock::SystemClock;
use crate::config::{KeyPaths, NodeConfig, PeerConfig, RaftSettings, TlsPaths};
use crate::node::{Environment, Node};
use crate::store::{MemLogStore, MemStateMachine};
use crate::transport::net::TcpNetwork;
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

/// Validator 0 of `validators`; the others are never started (their peer
/// address refuses connections).
async fn start(validators: u32) -> Node {
    let genesis = testkit::genesis(&TestConfig {
        validators,
        ..TestConfig::default()
    })
    .0;
    let config = NodeConfig {
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
        peers: (1..u64::from(validators))
            .map(|id| PeerConfig {
                id,
                addr: "127.0.0.1:1".into(),
            })
            .collect(),
        raft: RaftSettings {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            rpc_timeout_ms: 200,
            ..RaftSettings::default()
        },
        ticks: Default::default(),
        client: Default::default(),
        api_listener: crate::config::ListenerSettings::api_default(),
        peer_listener: crate::config::ListenerSettings::peer_default(),
        streams: Default::default(),
        safety: Default::default(),
        metrics: crate::config::MetricsSettings {
            listen: Some("127.0.0.1:0".into()),
        },
        log: Default::default(),
    };
    let state = GovernanceState::from_genesis(&genesis).expect("genesis");
    let sm = MemStateMachine::new(state);
    let machine = sm.shared();
    Node::start_with(
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
    .expect("start the validator")
}

async fn get(node: &Node, path: &str) -> (u16, String) {
    let addr = node.metrics_addr().expect("a metrics listener");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let code = out[9..12].parse().expect("status code");
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (code, body.unwrap_or_default())
}

async fn health(node: &Node, service: &str) -> ServingStatus {
    let svc = tonic_health::server::HealthService::from_health_reporter(node.health().clone());
    let resp = svc
        .check(tonic::Request::new(HealthCheckRequest {
            service: service.to_owned(),
        }))
        .await
        .expect("health check");
    ServingStatus::try_from(resp.into_inner().status).expect("status")
}

async fn eventually(node: &Node, want: ServingStatus) {
    for _ in 0..100 {
        if health(node, "").await == want
            && health(node, crate::transport::governance_service::SERVICE_NAME).await == want
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("health never became {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leader_is_not_serving_and_says_why() {
    // Two validators, one never started: no majority, no leader.
    let node = start(2).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(health(&node, "").await, ServingStatus::NotServing);
    let status = node.status().await;
    assert!(
        status.not_serving.iter().any(|r| r == "no leader"),
        "{:?}",
        status.not_serving
    );
    let (code, body) = get(&node, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no leader"), "{body}");
    assert_eq!(get(&node, "/healthz").await.0, 200, "the process is alive");
    let (code, metrics) = get(&node, "/metrics").await;
    assert_eq!(code, 200);
    assert!(metrics.contains("neuroshard_has_leader 0"), "{metrics}");
    assert!(metrics.contains("neuroshard_ready 0"));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_while_leading_and_not_serving_from_shutdown_on() {
    let node = start(1).await;
    eventually(&node, ServingStatus::Serving).await;
    let (code, body) = get(&node, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    let (_, metrics) = get(&node, "/metrics").await;
    for line in [
        "neuroshard_is_leader 1",
        "neuroshard_has_leader 1",
        "neuroshard_ready 1",
        "# TYPE neuroshard_disk_fsync_duration_seconds histogram",
        "# TYPE neuroshard_leader_changes_total counter",
    ] {
        assert!(metrics.contains(line), "{line} missing");
    }
    // A watcher sees NOT_SERVING as the first change after shutdown
    // starts, before the listeners stop.
    let svc = tonic_health::server::HealthService::from_health_reporter(node.health().clone());
    let mut watch = svc
        .watch(tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        }))
        .await
        .expect("watch")
        .into_inner();
    let first = watch.next().await.expect("an answer").expect("status");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let stopping = tokio::spawn(node.shutdown());
    let next = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("an update")
        .expect("an answer")
        .expect("status");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    stopping.await.expect("shutdown");
}
