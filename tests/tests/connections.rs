//! Connection limits on real validator processes (docs/operations.md,
//! "Connection limits"), each at, under and over its value: handshakes and
//! connections per source, the listener's total, the idle timeout, the
//! certificate streams per source, and the peer listener's reserve for the
//! committee. Attackers connect from other loopback addresses (127.0.0.2 …)
//! than the validators and the honest client (127.0.0.1).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

use neuroshard_cli::cluster::LocalCluster;
use neuroshard_cli::keygen::{self, Ceremony, KeygenOptions};
use neuroshard_node::api_proto::ListenerStatus;
use neuroshard_node::config::{ListenerSettings, StreamSettings};
use neuroshard_node::GovernanceClient;
use neuroshard_tests::{free_base_port, neuroshard_binary};

const IDLE_MS: u64 = 2_000;
const HANDSHAKE_MS: u64 = 1_500;

fn api_limits() -> ListenerSettings {
    ListenerSettings {
        max_connections: 20,
        max_connections_per_source: 6,
        max_handshakes: 12,
        max_handshakes_per_source: 4,
        handshake_timeout_ms: HANDSHAKE_MS,
        idle_timeout_ms: IDLE_MS,
        ..ListenerSettings::api_default()
    }
}

fn peer_limits() -> ListenerSettings {
    ListenerSettings {
        max_connections: 16,
        max_connections_per_source: 4,
        max_handshakes: 4,
        max_handshakes_per_source: 2,
        handshake_timeout_ms: HANDSHAKE_MS,
        reserved_for_committee: 16,
        ..ListenerSettings::peer_default()
    }
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback source address");
    socket.connect(to).await.expect("connect")
}

/// Whether the server closed `stream` within `within` (EOF or reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // Bytes from the server (a TLS alert): keep reading to the close.
            Ok(Ok(_)) => continue,
        }
    }
}

async fn listener(c: &Ceremony, validator: usize, name: &str) -> ListenerStatus {
    let mut client = GovernanceClient::connect(
        &c.api_endpoints[validator],
        &c.dir.join("ca.pem"),
        Duration::from_secs(5),
    )
    .await
    .expect("the honest client connects");
    let status = client.status().await.expect("status");
    status
        .listeners
        .into_iter()
        .find(|l| l.name == name)
        .expect("listener counters")
}

fn refused(l: &ListenerStatus, rule: &str) -> u64 {
    l.refused.get(rule).copied().unwrap_or(0)
}

/// A TLS client to validator `v`'s API listener that completes the
/// handshake from `from` and then sends nothing.
async fn tls_from(
    c: &Ceremony,
    v: usize,
    from: [u8; 4],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let addr: SocketAddr = c.api_endpoints[v]
        .trim_start_matches("https://")
        .parse()
        .expect("api address");
    let config = neuroshard_node::transport::tls::api_client_config(&c.dir.join("ca.pem"))
        .expect("client config");
    let name = neuroshard_node::transport::tls::server_name_for("127.0.0.1").expect("name");
    let tcp = connect_from(from, addr).await;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

async fn committee() -> (tempfile::TempDir, Ceremony, LocalCluster, u16) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = KeygenOptions::new(3, dir.path().join("c"));
    opts.base_port = free_base_port(6);
    opts.api_listener = api_limits();
    opts.peer_listener = peer_limits();
    opts.streams = StreamSettings {
        max_certificate_streams: 5,
        max_certificate_streams_per_source: 2,
        slow_reader_timeout_ms: 1_000,
    };
    let ceremony = keygen::run(&opts).expect("keygen");
    let cluster = LocalCluster::start(&neuroshard_binary(), ceremony.clone()).expect("start");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("leader");
    (dir, ceremony, cluster, opts.base_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_listener_limits_hold_at_under_and_over() {
    let (_dir, c, _cluster, _) = committee().await;
    let api: SocketAddr = c.api_endpoints[0]
        .trim_start_matches("https://")
        .parse()
        .expect("api address");
    let before = listener(&c, 0, "api").await;

    // Handshakes per source: 4 silent connections from 127.0.0.2 are held
    // (under and at the cap), the 5th is closed at once (over).
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(connect_from([127, 0, 0, 2], api).await);
    }
    let mut over = connect_from([127, 0, 0, 2], api).await;
    assert!(
        closed_within(&mut over, Duration::from_millis(500)).await,
        "the 5th handshake from one source is closed at once"
    );
    for s in &mut silent {
        assert!(
            !closed_within(s, Duration::from_millis(50)).await,
            "handshakes under the cap are held"
        );
    }
    // Meanwhile the honest client (another source) is served.
    let l = listener(&c, 0, "api").await;
    assert_eq!(
        refused(&l, "too_many_handshakes_from_source")
            - refused(&before, "too_many_handshakes_from_source"),
        1
    );
    // The handshake deadline closes the silent ones.
    let started = Instant::now();
    for s in &mut silent {
        assert!(
            closed_within(s, Duration::from_millis(HANDSHAKE_MS + 2_000)).await,
            "a silent handshake is closed by the deadline"
        );
    }
    assert!(started.elapsed() <= Duration::from_millis(HANDSHAKE_MS + 2_000));

    // Connections per source: 6 established TLS connections from 127.0.0.3
    // (at the cap), the 7th is refused.
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(tls_from(&c, 0, [127, 0, 0, 3]).await);
    }
    let mut over = connect_from([127, 0, 0, 3], api).await;
    assert!(
        closed_within(&mut over, Duration::from_millis(500)).await,
        "the 7th connection from one source is closed at once"
    );
    let l = listener(&c, 0, "api").await;
    assert_eq!(
        refused(&l, "too_many_connections_from_source")
            - refused(&before, "too_many_connections_from_source"),
        1
    );

    // The total: 6 more from 127.0.0.4 and 6 from 127.0.0.5 make 18; two
    // more from 127.0.0.6 reach the cap of 20 (the honest client's status
    // connection is closed after each call and may hold one of them), then
    // a new source is refused.
    for from in [[127, 0, 0, 4], [127, 0, 0, 5]] {
        for _ in 0..6 {
            held.push(tls_from(&c, 0, from).await);
        }
    }
    held.push(tls_from(&c, 0, [127, 0, 0, 6]).await);
    held.push(tls_from(&c, 0, [127, 0, 0, 6]).await);
    let mut over = connect_from([127, 0, 0, 7], api).await;
    assert!(
        closed_within(&mut over, Duration::from_millis(500)).await,
        "a connection over the listener's total is closed at once"
    );
    drop(over);

    // The idle timeout: established connections with no call are closed.
    // (The server's HTTP/2 preface arrives first; then the close.)
    for s in &mut held {
        let closed = tokio::time::timeout(Duration::from_millis(IDLE_MS + 3_000), async {
            let mut buf = [0u8; 256];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "an idle connection is closed");
    }
    let l = listener(&c, 0, "api").await;
    assert!(refused(&l, "too_many_connections") > refused(&before, "too_many_connections"));
    assert!(refused(&l, "idle_timeout") >= refused(&before, "idle_timeout") + 20);
    assert!(refused(&l, "handshake_timeout") >= refused(&before, "handshake_timeout") + 4);
    assert_eq!(l.handshaking, 0, "{l:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_streams_per_source() {
    let (_dir, c, _cluster, _) = committee().await;
    let mut client = GovernanceClient::connect(
        &c.api_endpoints[0],
        &c.dir.join("ca.pem"),
        Duration::from_secs(5),
    )
    .await
    .expect("connect");
    // Two streams from one source (under and at the cap) …
    let first = client.stream_certificates(1).await.expect("stream 1");
    let second = client.stream_certificates(1).await.expect("stream 2");
    // … the third is refused with its rule.
    let err = client
        .stream_certificates(1)
        .await
        .expect_err("a third stream from one source");
    let text = format!("{err:?}");
    assert!(
        text.contains("too_many_streams_from_source"),
        "refused by rule: {text}"
    );
    // Closing one frees its place.
    drop(first);
    let mut third = None;
    for _ in 0..50 {
        if let Ok(s) = client.stream_certificates(1).await {
            third = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(third.is_some(), "a closed stream's place is reused");
    drop(second);
    let l = listener(&c, 0, "certificate_streams").await;
    assert!(refused(&l, "too_many_streams_from_source") >= 1, "{l:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committee_reconnects_through_a_full_peer_listener() {
    let (_dir, c, mut cluster, base_port) = committee().await;
    // Validator i's peer listener is base + 2i.
    let peer: SocketAddr = format!("127.0.0.1:{base_port}")
        .parse()
        .expect("peer address");
    // Strangers from two addresses hold every general handshake slot (2 ×
    // max_handshakes_per_source = max_handshakes = 4), reconnecting as soon
    // as the handshake deadline closes them …
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut strangers = Vec::new();
    for from in [[127, 0, 0, 2], [127, 0, 0, 3]] {
        for _ in 0..2 {
            let stop = stop.clone();
            strangers.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let socket = TcpSocket::new_v4().expect("socket");
                    socket.bind(SocketAddr::from((from, 0))).expect("bind");
                    match socket.connect(peer).await {
                        Ok(mut s) => {
                            closed_within(&mut s, Duration::from_secs(10)).await;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // … so a third stranger is refused at once …
    let mut over = connect_from([127, 0, 0, 4], peer).await;
    assert!(
        closed_within(&mut over, Duration::from_millis(500)).await,
        "the general handshake pool is full"
    );
    // … while validator 1, restarted, reconnects through the reserve and
    // catches up.
    cluster.kill(1).expect("kill validator 1");
    cluster.spawn(1).expect("start validator 1 again");
    let mut caught_up = false;
    for _ in 0..100 {
        let s = cluster.statuses().await;
        if let (Some(a), Some(b)) = (&s[0], &s[1]) {
            if b.applied_index.is_some() && b.applied_index >= a.commit_index {
                caught_up = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(caught_up, "validator 1 reconnected and caught up");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("leader after the restart");
    let l = listener(&c, 0, "peer").await;
    assert_eq!(l.committee_refused, 0, "{l:?}");
    assert!(refused(&l, "too_many_handshakes") >= 1, "{l:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in strangers {
        let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
    }
}
