//! The network seam: listeners and outgoing connections behind a small
//! trait, so the same node code runs on real TCP or on a simulated network
//! (turmoil) later; and the TLS layer on top of it for tonic.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::server::Connected;

use crate::transport::conn::{
    ConnActivity, ConnectionLimiter, IdleTimer, ListenerStats, Refusal, Slot,
};
use crate::transport::tls::validator_id_of;
use crate::types::NodeId;

/// A byte stream the node can run TLS over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

pub type BoxStream = Box<dyn Stream>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A bound listener.
pub trait Listener: Send + 'static {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>>;
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// How the node reaches the network.
pub trait Network: Send + Sync + 'static {
    fn bind(&self, addr: String) -> BoxFuture<'static, io::Result<Box<dyn Listener>>>;
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxStream>>;

    /// The IP addresses `addr` (`host:port`) resolves to: the peer
    /// listener keeps its reserve for these (`transport/conn.rs`).
    fn resolve(&self, addr: String) -> BoxFuture<'static, io::Result<Vec<std::net::IpAddr>>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host(addr)
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// Real TCP.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpNetwork;

struct TcpListener(tokio::net::TcpListener);

impl Listener for TcpListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, addr) = self.0.accept().await?;
            // A connection reset right after accept may refuse this; that is
            // the connection's problem, not the listener's.
            let _ = stream.set_nodelay(true);
            Ok((Box::new(stream) as BoxStream, addr))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Network for TcpNetwork {
    fn bind(&self, addr: String) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            Ok(Box::new(TcpListener(listener)) as Box<dyn Listener>)
        })
    }

    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxStream>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(&addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxStream)
        })
    }
}

/// Longest a TLS handshake the node starts (as a client) may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Established connections waiting for the gRPC server to pick them up;
/// one that finds the queue full is closed.
const MAX_ACCEPTED_BACKLOG: usize = 256;

/// Who is on the other end of an accepted connection: the validator its
/// client certificate names (peer listener), or nobody in particular (API);
/// and the connection's call activity, for its idle timeout.
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    pub validator: Option<NodeId>,
    pub remote: SocketAddr,
    pub activity: Option<Arc<ConnActivity>>,
}

/// A TLS connection accepted by a listener, with its identity, its place
/// in the listener's limits and its idle timer.
pub struct Accepted {
    stream: tokio_rustls::server::TlsStream<BoxStream>,
    identity: PeerIdentity,
    idle: IdleTimer,
    _slot: Slot,
    stats: Arc<ListenerStats>,
    idle_closed: bool,
}

impl Connected for Accepted {
    type ConnectInfo = PeerIdentity;

    fn connect_info(&self) -> PeerIdentity {
        self.identity.clone()
    }
}

impl AsyncRead for Accepted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.idle_closed {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Pending => {}
            ready => return ready,
        }
        // Nothing to read: an idle connection ends here (end of stream,
        // which the HTTP/2 server takes as the client leaving).
        if this.idle.poll_expired(cx).is_ready() {
            this.idle_closed = true;
            this.stats
                .refuse(Refusal::Idle, this.identity.remote, false);
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accepts connections on `listener` and yields the established TLS ones.
///
/// The accept loop never waits: each connection first gets a place from
/// `limiter` (total, per source, handshakes, the committee's reserve) or is
/// closed at once; its handshake then runs in a task of its own, bounded
/// by `handshake_timeout_ms`. With `require_validator`, a connection whose
/// certificate names no validator is dropped (the CA check itself happens
/// inside the handshake). Every refusal is counted and logged at most once
/// a second.
pub fn tls_incoming(
    mut listener: Box<dyn Listener>,
    acceptor: TlsAcceptor,
    require_validator: bool,
    limiter: Arc<ConnectionLimiter>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Accepted>> {
    let (tx, rx) = mpsc::channel(MAX_ACCEPTED_BACKLOG);
    tokio::spawn(async move {
        let handshake_timeout = Duration::from_millis(limiter.settings().handshake_timeout_ms);
        let idle_timeout = Duration::from_millis(limiter.settings().idle_timeout_ms);
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    crate::limited!(crate::logging::REFUSALS, warn!(error = %e, "accept failed"));
                    // Out of file descriptors (EMFILE, ENFILE): back off
                    // briefly. An error of one connection (reset, aborted)
                    // must not slow the listener for everyone.
                    if matches!(e.raw_os_error(), Some(23 | 24)) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            // IPv4 peers on a dual-stack listener arrive as ::ffff:a.b.c.d.
            let mut slot = match limiter.admit(remote.ip().to_canonical()) {
                Ok(slot) => slot,
                Err((why, committee)) => {
                    limiter.stats.refuse(why, remote, committee);
                    drop(stream);
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let stats = limiter.stats.clone();
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
                let stream = match handshake {
                    Ok(Ok(s)) => s,
                    Ok(Err(_)) => {
                        stats.refuse(Refusal::HandshakeFailed, remote, slot.committee);
                        return;
                    }
                    Err(_) => {
                        stats.refuse(Refusal::HandshakeTimeout, remote, slot.committee);
                        return;
                    }
                };
                let validator = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(validator_id_of);
                if require_validator && validator.is_none() {
                    stats.refuse(Refusal::NotAValidator, remote, slot.committee);
                    return;
                }
                slot.established();
                let activity = Arc::new(ConnActivity::default());
                let accepted = Accepted {
                    stream,
                    identity: PeerIdentity {
                        validator,
                        remote,
                        activity: Some(activity.clone()),
                    },
                    idle: IdleTimer::new(activity, idle_timeout),
                    _slot: slot,
                    stats,
                    idle_closed: false,
                };
                // A full queue means the server is not taking connections:
                // close this one rather than wait.
                let _full = tx.try_send(Ok(accepted));
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A tonic connector dialling `addr` through `network` and running TLS to
/// the server name `server_name`.
pub fn tls_connector(
    network: Arc<dyn Network>,
    addr: String,
    server_name: rustls::pki_types::ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
) -> impl tower::Service<
    tonic::codegen::http::Uri,
    Response = TokioIo<tokio_rustls::client::TlsStream<BoxStream>>,
    Error = io::Error,
    Future = BoxFuture<'static, io::Result<TokioIo<tokio_rustls::client::TlsStream<BoxStream>>>>,
> + Clone
       + Send
       + 'static {
    let connector = TlsConnector::from(config);
    tower::service_fn(move |_uri: tonic::codegen::http::Uri| {
        let network = network.clone();
        let addr = addr.clone();
        let server_name = server_name.clone();
        let connector = connector.clone();
        Box::pin(async move {
            let tcp = network.connect(addr).await?;
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(server_name, tcp))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
            Ok(TokioIo::new(tls))
        }) as BoxFuture<'static, _>
    })
}
