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
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::server::Connected;

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
}

/// Real TCP.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpNetwork;

struct TcpListener(tokio::net::TcpListener);

impl Listener for TcpListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, addr) = self.0.accept().await?;
            stream.set_nodelay(true)?;
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

/// Longest a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes in progress at once per listener; more connections wait.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 64;
/// Accepted connections waiting for the gRPC server to pick them up.
const MAX_ACCEPTED_BACKLOG: usize = 64;

/// Who is on the other end of an accepted connection: the validator its
/// client certificate names (peer listener), or nobody in particular (API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub validator: Option<NodeId>,
    pub remote: SocketAddr,
}

/// A TLS connection accepted by a listener, with its identity.
pub struct Accepted {
    stream: tokio_rustls::server::TlsStream<BoxStream>,
    identity: PeerIdentity,
}

impl Connected for Accepted {
    type ConnectInfo = PeerIdentity;

    fn connect_info(&self) -> PeerIdentity {
        self.identity
    }
}

impl AsyncRead for Accepted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
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

/// Accepts connections on `listener`, runs the TLS handshake (each bounded
/// by [`HANDSHAKE_TIMEOUT`]) and yields the established ones. With
/// `require_validator`, a connection whose certificate names no validator is
/// dropped (the CA check itself happens inside the handshake).
pub fn tls_incoming(
    mut listener: Box<dyn Listener>,
    acceptor: TlsAcceptor,
    require_validator: bool,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Accepted>> {
    let (tx, rx) = mpsc::channel(MAX_ACCEPTED_BACKLOG);
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (stream, remote) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let handshake =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                let stream = match handshake {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::info!(%remote, error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%remote, "TLS handshake timed out");
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
                    tracing::warn!(%remote, "peer certificate names no validator; connection dropped");
                    return;
                }
                let _closed = tx
                    .send(Ok(Accepted {
                        stream,
                        identity: PeerIdentity { validator, remote },
                    }))
                    .await;
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
