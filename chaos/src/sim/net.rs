//! The node's network seam on turmoil's simulated TCP, with what turmoil's
//! TCP cannot express by itself: connection resets, and a crash that closes
//! a process's connections in an order fixed by the seed.
//!
//! turmoil delivers TCP segments with simulated latency and can hold them
//! (a blackhole that TCP retransmission later fills: the partition faults
//! use that), but a segment it *drops* is gone for good and the stream
//! stalls forever, which real TCP never does. So message loss is modelled
//! as what loss does to a TCP connection: retransmission delay (the fault
//! schedule raises link latency) and, when it is bad, a reset. While a
//! loss fault covers a pair of hosts, every write on a connection between
//! them resets that connection with the configured chance, decided by the
//! run's seeded generator.
//!
//! When turmoil crashes a host it drops the host's tokio runtime, and each
//! dropped stream sends its FIN (or RST) as it goes. tokio drops a
//! runtime's tasks shard by shard, and a task's shard is its id, which is
//! process-wide: with another simulation running in the same process the
//! ids — and so the order of those FINs, each drawing its latency from the
//! simulation's one generator — differ. So the first stream dropped while
//! its host is being crashed closes all of that host's streams at once,
//! in address order, and the rest drop silently.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use neuroshard_node::transport::net::{BoxFuture, BoxStream, Listener, Network};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Connection resets per thousand writes while a loss fault is on.
pub const MAX_RESET_PER_MILLE: u32 = 1000;

type Shared = Arc<Mutex<Option<turmoil::net::TcpStream>>>;

/// A live connection's two ends: (local, remote).
type StreamKey = (SocketAddr, SocketAddr);

#[derive(Default)]
struct NetState {
    /// Reset chance per write, per unordered host pair.
    loss: BTreeMap<(IpAddr, IpAddr), u32>,
    resets: u64,
    /// Every open simulated stream, by its ends.
    streams: BTreeMap<StreamKey, Shared>,
    /// The host being crashed right now, if any.
    crashing: Option<IpAddr>,
}

/// The network's shared controls: loss faults, connection resets and the
/// registry of open streams. Shared by every host's network and the fault
/// schedule.
#[derive(Clone)]
pub struct NetControl {
    state: Arc<Mutex<NetState>>,
    rng: Arc<Mutex<ChaCha8Rng>>,
}

fn pair(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

fn lock_stream(s: &Shared) -> MutexGuard<'_, Option<turmoil::net::TcpStream>> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl NetControl {
    pub fn new(rng: ChaCha8Rng) -> Self {
        Self {
            state: Arc::default(),
            rng: Arc::new(Mutex::new(rng)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes between `a` and `b` reset their connection with `per_mille`
    /// chance (0 ends the fault).
    pub fn set_loss(&self, a: IpAddr, b: IpAddr, per_mille: u32) {
        let mut s = self.lock();
        let key = pair(a, b);
        if per_mille == 0 {
            s.loss.remove(&key);
        } else {
            s.loss.insert(key, per_mille.min(MAX_RESET_PER_MILLE));
        }
    }

    /// Connections reset so far.
    pub fn resets(&self) -> u64 {
        self.lock().resets
    }

    /// Marks `host` as being crashed until [`NetControl::crashed`].
    pub fn crashing(&self, host: IpAddr) {
        self.lock().crashing = Some(host);
    }

    pub fn crashed(&self) {
        self.lock().crashing = None;
    }

    /// Whether this write between `a` and `b` resets the connection.
    fn strikes(&self, a: IpAddr, b: IpAddr) -> bool {
        let mut s = self.lock();
        let Some(&per_mille) = s.loss.get(&pair(a, b)) else {
            return false;
        };
        let hit = self
            .rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .gen_range(0..MAX_RESET_PER_MILLE)
            < per_mille;
        if hit {
            s.resets += 1;
        }
        hit
    }

    fn register(&self, key: StreamKey, stream: turmoil::net::TcpStream) -> Shared {
        let shared = Arc::new(Mutex::new(Some(stream)));
        self.lock().streams.insert(key, shared.clone());
        shared
    }

    /// A stream is being dropped. If its host is being crashed, every
    /// stream of that host is closed now, in address order.
    fn release(&self, key: StreamKey) {
        let doomed: Vec<Shared> = {
            let mut s = self.lock();
            if s.crashing == Some(key.0.ip()) {
                let host = key.0.ip();
                let keys: Vec<StreamKey> = s
                    .streams
                    .keys()
                    .filter(|(local, _)| local.ip() == host)
                    .copied()
                    .collect();
                keys.iter().filter_map(|k| s.streams.remove(k)).collect()
            } else {
                s.streams.remove(&key).into_iter().collect()
            }
        };
        // Dropped outside the state lock, in key order: each drop may send
        // its FIN or RST into the simulated network.
        for shared in doomed {
            let stream = lock_stream(&shared).take();
            drop(stream);
        }
    }
}

/// turmoil TCP behind the node's [`Network`] trait.
#[derive(Clone)]
pub struct SimNetwork {
    control: NetControl,
}

impl SimNetwork {
    pub fn new(control: NetControl) -> Self {
        Self { control }
    }
}

struct SimListener {
    inner: turmoil::net::TcpListener,
    control: NetControl,
}

impl Listener for SimListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, remote) = self.inner.accept().await?;
            let stream = SimStream::new(stream, self.control.clone())?;
            Ok((Box::new(stream) as BoxStream, remote))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Network for SimNetwork {
    fn bind(&self, addr: String) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let control = self.control.clone();
        Box::pin(async move {
            let inner = turmoil::net::TcpListener::bind(addr.as_str()).await?;
            Ok(Box::new(SimListener { inner, control }) as Box<dyn Listener>)
        })
    }

    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxStream>> {
        let control = self.control.clone();
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(addr.as_str()).await?;
            Ok(Box::new(SimStream::new(stream, control)?) as BoxStream)
        })
    }

    /// No strangers in the simulation: the peer listener's reserve is not
    /// exercised here, and a host lookup outside turmoil would break
    /// determinism.
    fn resolve(&self, _addr: String) -> BoxFuture<'static, io::Result<Vec<std::net::IpAddr>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// A simulated TCP stream that a loss fault can reset and a crash closes
/// in order.
struct SimStream {
    inner: Shared,
    key: StreamKey,
    control: NetControl,
    reset: bool,
}

impl SimStream {
    fn new(stream: turmoil::net::TcpStream, control: NetControl) -> io::Result<Self> {
        let key = (stream.local_addr()?, stream.peer_addr()?);
        let inner = control.register(key, stream);
        Ok(Self {
            inner,
            key,
            control,
            reset: false,
        })
    }

    fn reset_error() -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionReset,
            "connection reset by a simulated loss fault",
        )
    }

    fn closed_error() -> io::Error {
        io::Error::new(
            io::ErrorKind::NotConnected,
            "the simulated host of this connection crashed",
        )
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        self.control.release(self.key);
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.reset {
            return Poll::Ready(Err(Self::reset_error()));
        }
        match lock_stream(&self.inner).as_mut() {
            Some(s) => Pin::new(s).poll_read(cx, buf),
            None => Poll::Ready(Err(Self::closed_error())),
        }
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.reset && self.control.strikes(self.key.0.ip(), self.key.1.ip()) {
            self.reset = true;
        }
        if self.reset {
            return Poll::Ready(Err(Self::reset_error()));
        }
        match lock_stream(&self.inner).as_mut() {
            Some(s) => Pin::new(s).poll_write(cx, buf),
            None => Poll::Ready(Err(Self::closed_error())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock_stream(&self.inner).as_mut() {
            Some(s) => Pin::new(s).poll_flush(cx),
            None => Poll::Ready(Err(Self::closed_error())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock_stream(&self.inner).as_mut() {
            Some(s) => Pin::new(s).poll_shutdown(cx),
            None => Poll::Ready(Err(Self::closed_error())),
        }
    }
}
