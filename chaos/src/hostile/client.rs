//! The suite's clients: gRPC channels to every validator API, each opened
//! from a loopback source address of its own (127.0.0.x), so the honest
//! clients and every attacker are distinct sources to the validators (a
//! per-source quota must not make honest clients pay for an attacker's
//! flood). The attackers' channels may send messages of any size (their
//! encoding limit is raised far above the validators' request limit).
//!
//! Every answer is classified: a receipt, a refusal naming its rule and
//! kind (the `ErrorDetail` of the status: `refusal` says admission —
//! before the log, nonce not consumed — or apply — ordered at
//! `log_index`; a request above the transport limit, which tonic refuses
//! before any handler runs, is counted as `transport_limit`, an admission
//! refusal), or unknown (no verdict: timeout, no leader, overloaded, ...).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use neuroshard_governance::{Receipt, SignedCommand};
use neuroshard_node::api_proto as api;
use neuroshard_node::api_proto::governance_client::GovernanceClient;
use neuroshard_node::transport::api_errors::detail_of;
use neuroshard_node::transport::net::{tls_connector, BoxFuture, BoxStream, Listener, Network};
use neuroshard_node::transport::tls::{api_client_config, server_name_for, validator_dns_name};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::real::error::RealError;

/// Largest message the suite's clients send or accept: far above the
/// validators' request limit, so the validators' limit is what refuses.
pub const CLIENT_MESSAGE_LIMIT: usize = 64 * 1024 * 1024;
/// Longest a TCP connect and TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Outgoing TCP from a fixed local address.
struct BoundNetwork {
    local: IpAddr,
}

impl Network for BoundNetwork {
    fn bind(&self, addr: String) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            Err(io::Error::other(format!(
                "the suite's client network does not listen ({addr})"
            )))
        })
    }

    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxStream>> {
        let local = self.local;
        Box::pin(async move {
            let remote: SocketAddr = addr
                .parse()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
            let socket = match remote {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.bind(SocketAddr::new(local, 0))?;
            let stream = socket.connect(remote).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxStream)
        })
    }
}

/// Lazily connected channels to every validator, from one source address.
#[derive(Clone)]
pub struct Pool {
    /// `channels[i]`: the connections to validator i.
    channels: Arc<Vec<Vec<Channel>>>,
    next: Arc<AtomicUsize>,
}

impl Pool {
    /// `api_addrs[i]`: validator i's API `host:port`; `connections`: per
    /// validator (requests are spread over them).
    pub fn new(
        api_addrs: &[String],
        ca: &Path,
        source: IpAddr,
        connections: usize,
    ) -> Result<Self, RealError> {
        Self::with_window(api_addrs, ca, source, connections, None)
    }

    /// As [`Pool::new`], with the HTTP/2 flow-control window this client
    /// grants each stream (`Some(0)`: a client that never takes what a
    /// server stream sends; default: hyper's 2 MiB).
    pub fn with_window(
        api_addrs: &[String],
        ca: &Path,
        source: IpAddr,
        connections: usize,
        stream_window: Option<u32>,
    ) -> Result<Self, RealError> {
        let config = api_client_config(ca).map_err(|e| RealError::invalid("committee CA", e))?;
        let network: Arc<dyn Network> = Arc::new(BoundNetwork { local: source });
        let mut channels = Vec::new();
        for (i, addr) in api_addrs.iter().enumerate() {
            let name = server_name_for(&validator_dns_name(i as u64))
                .map_err(|e| RealError::invalid("server name", e))?;
            let mut per = Vec::new();
            for _ in 0..connections.max(1) {
                let connector =
                    tls_connector(network.clone(), addr.clone(), name.clone(), config.clone());
                per.push(
                    Endpoint::from_shared(format!("http://{addr}"))
                        .map_err(|e| RealError::invalid(addr.clone(), e))?
                        .connect_timeout(CONNECT_TIMEOUT)
                        .tcp_nodelay(true)
                        .initial_stream_window_size(stream_window)
                        .connect_with_connector_lazy(connector),
                );
            }
            channels.push(per);
        }
        Ok(Self {
            channels: Arc::new(channels),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Validators.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// A client of validator `i % n`, over the next of its connections.
    pub fn client(&self, i: usize) -> GovernanceClient<Channel> {
        let per = &self.channels[i % self.channels.len()];
        let channel = per[self.next.fetch_add(1, Ordering::Relaxed) % per.len()].clone();
        GovernanceClient::new(channel)
            .max_decoding_message_size(CLIENT_MESSAGE_LIMIT)
            .max_encoding_message_size(CLIENT_MESSAGE_LIMIT)
    }
}

/// Whether an answer was given before the log or by applying an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Refused before the log (no entry, nonce not consumed).
    Admission,
    /// Ordered and refused when applied (nonce consumed).
    Apply,
}

/// A refusal as the client saw it.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub rule: String,
    pub kind: Kind,
    pub log_index: Option<u64>,
    pub message: String,
    /// The detail's typed error as JSON (for the state-budget figures).
    pub error_json: String,
}

/// What one submission told the client.
#[derive(Clone, Debug)]
pub enum Reply {
    Applied {
        log_index: u64,
        receipt: Receipt,
        receipt_json: String,
    },
    Refused(Refusal),
    /// No answer that says what happened (timeout, no leader, overload,
    /// forwarding failure, connection refused): it may or may not be
    /// applied.
    Unknown {
        rule: String,
        message: String,
    },
}

/// Rules that say nothing about the command itself: try again.
pub const TRANSIENT_RULES: &[&str] = &[
    "no_leader",
    "not_leader",
    "forward_failed",
    "shutting_down",
    "overloaded",
    "timeout",
    "internal",
    "read_index_failed",
    "replica_lagging",
];

/// Admission refusals that only say "not now" (quotas): the same command
/// may be sent again later.
pub const QUOTA_RULES: &[&str] = &[
    "too_many_pending_for_account",
    "too_many_pending_for_source",
];

/// The refusal kind of an `ErrorDetail`: admission, apply, or none (not a
/// verdict on the command: unavailable, no leader, timeout, overload).
fn refusal_kind(detail: &api::ErrorDetail) -> Option<Kind> {
    match api::RefusalKind::try_from(detail.refusal) {
        Ok(api::RefusalKind::Admission) => Some(Kind::Admission),
        Ok(api::RefusalKind::Apply) => Some(Kind::Apply),
        _ => None,
    }
}

/// Classifies an error status.
pub fn classify(status: &tonic::Status) -> Reply {
    let Some(detail) = detail_of(status) else {
        let message = status.message().to_owned();
        // tonic refuses a request above the server's decoding limit before
        // any handler runs, with OUT_OF_RANGE (decoding) or
        // RESOURCE_EXHAUSTED, and no detail.
        let too_large = message.contains("message length too large")
            || message.contains("too large")
            || message.contains("exceeds");
        if matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted) && too_large {
            return Reply::Refused(Refusal {
                rule: "transport_limit".to_owned(),
                kind: Kind::Admission,
                log_index: None,
                message,
                error_json: String::new(),
            });
        }
        return Reply::Unknown {
            rule: format!("status_{:?}", status.code()).to_lowercase(),
            message,
        };
    };
    let kind = match refusal_kind(&detail) {
        Some(kind) if !TRANSIENT_RULES.contains(&detail.rule.as_str()) => kind,
        // Not a verdict on the command: it may or may not be applied.
        _ => {
            return Reply::Unknown {
                rule: detail.rule,
                message: detail.message,
            }
        }
    };
    Reply::Refused(Refusal {
        rule: detail.rule,
        kind,
        log_index: detail.log_index,
        message: detail.message,
        error_json: detail.error_json,
    })
}

/// Sends `request` to validator `i` of `pool`, waiting at most `timeout`.
pub async fn submit_request(
    pool: &Pool,
    i: usize,
    request: api::SubmitRequest,
    timeout: Duration,
) -> Reply {
    let mut client = pool.client(i);
    match tokio::time::timeout(timeout, client.submit(request)).await {
        Err(_) => Reply::Unknown {
            rule: "client_timeout".to_owned(),
            message: format!("no answer within {} ms", timeout.as_millis()),
        },
        Ok(Err(status)) => classify(&status),
        Ok(Ok(resp)) => {
            let resp = resp.into_inner();
            match serde_json::from_str::<Receipt>(&resp.receipt_json) {
                Ok(receipt) => Reply::Applied {
                    log_index: resp.log_index,
                    receipt,
                    receipt_json: resp.receipt_json,
                },
                Err(e) => Reply::Unknown {
                    rule: "unparsable_receipt".to_owned(),
                    message: format!("applied at {} but the receipt: {e}", resp.log_index),
                },
            }
        }
    }
}

/// Sends postcard `bytes`.
pub async fn submit_bytes(pool: &Pool, i: usize, bytes: Vec<u8>, timeout: Duration) -> Reply {
    let request = api::SubmitRequest {
        command: Some(api::submit_request::Command::Postcard(bytes)),
    };
    submit_request(pool, i, request, timeout).await
}

/// Encodes and sends a signed command.
pub async fn submit(pool: &Pool, i: usize, command: &SignedCommand, timeout: Duration) -> Reply {
    match postcard::to_stdvec(command) {
        Ok(bytes) => submit_bytes(pool, i, bytes, timeout).await,
        Err(e) => Reply::Unknown {
            rule: "encode".to_owned(),
            message: e.to_string(),
        },
    }
}

/// The linearizable view of one account: (exists, balance, staked, next nonce).
pub async fn account(
    pool: &Pool,
    i: usize,
    account: &neuroshard_governance::AccountId,
    timeout: Duration,
) -> Option<api::Account> {
    let request = api::GetAccountRequest {
        account: account.to_hex(),
        read: Some(api::ReadOptions { stale: false }),
    };
    let mut client = pool.client(i);
    match tokio::time::timeout(timeout, client.get_account(request)).await {
        Ok(Ok(a)) => Some(a.into_inner()),
        _ => None,
    }
}

/// Validator `i`'s status.
pub async fn status(pool: &Pool, i: usize, timeout: Duration) -> Option<api::ClusterStatus> {
    let mut client = pool.client(i);
    match tokio::time::timeout(timeout, client.get_status(api::GetStatusRequest {})).await {
        Ok(Ok(s)) => Some(s.into_inner()),
        _ => None,
    }
}

/// The counters of listener `name` ("api", "peer", "certificate_streams")
/// in a status (`ClusterStatus.listeners`).
pub fn listener<'a>(status: &'a api::ClusterStatus, name: &str) -> Option<&'a api::ListenerStatus> {
    status.listeners.iter().find(|l| l.name == name)
}

/// Refusals by rule counted between two readings of one listener.
pub fn refused_delta(
    before: &api::ListenerStatus,
    after: &api::ListenerStatus,
) -> std::collections::BTreeMap<String, u64> {
    after
        .refused
        .iter()
        .filter_map(|(rule, n)| {
            let d = n.saturating_sub(before.refused.get(rule).copied().unwrap_or(0));
            (d > 0).then(|| (rule.clone(), d))
        })
        .collect()
}
