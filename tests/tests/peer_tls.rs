//! The peer listener admits only validators of its own committee: a client
//! without a certificate, or with a certificate from another committee's
//! CA, fails; a committee certificate used to speak for another validator
//! is refused; the same call with the right certificate goes through.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tonic::transport::Endpoint;

use neuroshard_cli::cluster::LocalCluster;
use neuroshard_cli::keygen::{self, Ceremony, KeygenOptions};
use neuroshard_node::proto;
use neuroshard_node::proto::raft_peer_client::RaftPeerClient;
use neuroshard_node::transport::net::{tls_connector, TcpNetwork};
use neuroshard_node::transport::tls::{server_name_for, validator_dns_name, TlsMaterial};
use neuroshard_tests::{free_base_port, neuroshard_binary};

fn material(c: &Ceremony, validator: usize, trust: &Ceremony) -> TlsMaterial {
    let v = c.dir.join(format!("validator-{validator}"));
    TlsMaterial::load(
        &trust.dir.join("ca.pem"),
        &v.join("tls.pem"),
        &v.join("tls.key"),
    )
    .expect("tls material")
}

async fn vote(
    peer_addr: &str,
    config: Arc<rustls::ClientConfig>,
    as_node: u64,
) -> Result<proto::VoteResponse, tonic::Status> {
    let connector = tls_connector(
        Arc::new(TcpNetwork),
        peer_addr.to_owned(),
        server_name_for(&validator_dns_name(0)).expect("name"),
        config,
    );
    let channel = match Endpoint::from_shared(format!("http://{peer_addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3))
        .connect_with_connector(connector)
        .await
    {
        Ok(c) => c,
        Err(e) => return Err(tonic::Status::unavailable(format!("connect: {e:?}"))),
    };
    RaftPeerClient::new(channel)
        .vote(proto::VoteRequest {
            vote: Some(proto::Vote {
                term: 0,
                node_id: as_node,
                committed: false,
            }),
            last_log_id: None,
        })
        .await
        .map(|r| r.into_inner())
}

/// A bare TLS connection to the peer listener that presents `config`'s
/// client side, returning the error it ends with. Under TLS 1.3 the server
/// judges the client's certificate after the client has finished its side
/// of the handshake, so the refusal arrives as an alert on the first read.
async fn refusal(peer_addr: &str, config: Arc<rustls::ClientConfig>) -> String {
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(peer_addr).await?;
        let name = server_name_for(&validator_dns_name(0)).expect("name");
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        // Nothing more is sent: data arriving after the server closed would
        // draw a reset that could discard its alert before it is read.
        let mut buf = [0u8; 64];
        tls.read(&mut buf).await
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(n)) => panic!("the peer listener answered a client it must refuse ({n} bytes)"),
        Err(_) => panic!("the peer listener neither answered nor refused within 5 s"),
    }
}

/// A gRPC call whose connection the peer listener refused: it fails in the
/// transport (with the alert, or with the connection closed when the client
/// had already sent its request — TLS 1.3 clients send before the server
/// has judged their certificate), never with a status from the service.
fn refused_by_transport(err: &tonic::Status) {
    let debug = format!("{err:?}");
    assert!(
        matches!(
            err.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        ) && (debug.contains("transport::Error") || debug.contains("connect:")),
        "refused at the transport, not by the service: {debug}"
    );
}

/// Handshakes validator 0's peer listener refused, from its status.
async fn refused_handshakes(c: &Ceremony) -> u64 {
    let mut client = neuroshard_node::GovernanceClient::connect(
        &c.api_endpoints[0],
        &c.dir.join("ca.pem"),
        Duration::from_secs(5),
    )
    .await
    .expect("connect to the API");
    let status = client.status().await.expect("status");
    let peer = status
        .listeners
        .iter()
        .find(|l| l.name == "peer")
        .expect("the peer listener's counters");
    peer.refused.get("handshake_failed").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_listener_requires_a_committee_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = KeygenOptions::new(4, dir.path().join("ours"));
    opts.base_port = free_base_port(8);
    let ours = keygen::run(&opts).expect("keygen ours");
    let theirs =
        keygen::run(&KeygenOptions::new(4, dir.path().join("theirs"))).expect("keygen theirs");
    let peer_addr = format!("127.0.0.1:{}", opts.base_port);
    let cluster = LocalCluster::start(&neuroshard_binary(), ours.clone()).expect("start");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("leader");

    // Control: validator 1 of this committee, speaking as itself.
    let good = material(&ours, 1, &ours)
        .peer_client_config()
        .expect("config");
    let resp = vote(&peer_addr, good.clone(), 1).await;
    assert!(resp.is_ok(), "a committee validator is admitted: {resp:?}");

    // Its certificate cannot speak for validator 2.
    let err = vote(&peer_addr, good, 2).await.expect_err("impersonation");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");

    // No client certificate at all: the handshake fails.
    let ca = material(&ours, 1, &ours).ca;
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add(c).expect("root");
    }
    let mut anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    anonymous.alpn_protocols = vec![b"h2".to_vec()];
    let anonymous = Arc::new(anonymous);
    let before = refused_handshakes(&ours).await;
    let err = refusal(&peer_addr, anonymous.clone()).await;
    assert!(
        err.contains("CertificateRequired"),
        "refused at the handshake for want of a certificate: {err}"
    );
    let err = vote(&peer_addr, anonymous, 1)
        .await
        .expect_err("no client certificate");
    refused_by_transport(&err);

    // A certificate from another committee's CA (trusting our CA, so only
    // the client side is wrong): the handshake fails. Every ceremony names
    // its CA alike, so the verifier finds "its" CA by name and the
    // certificate's signature does not verify under it: TLS's alert for
    // that is decrypt_error.
    let foreign = material(&theirs, 1, &ours)
        .peer_client_config()
        .expect("config");
    let err = refusal(&peer_addr, foreign.clone()).await;
    assert!(
        err.contains("DecryptError"),
        "refused at the handshake as not signed by our CA: {err}"
    );
    let err = vote(&peer_addr, foreign, 1).await.expect_err("foreign CA");
    refused_by_transport(&err);

    // The listener counted each refused handshake (two bare ones, two from
    // the gRPC attempts, which may retry); it counts after sending the
    // alert, so the last one may trail the client's error a little.
    let mut refused = 0;
    for _ in 0..40 {
        refused = refused_handshakes(&ours).await - before;
        if refused >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refused >= 4,
        "{refused} refused handshakes logged, at least 4 expected"
    );
}
