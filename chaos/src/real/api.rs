//! The workload's view of the validators: one lazily connected gRPC
//! channel per validator API (server TLS, verified against the committee
//! CA under the validator's certificate name, since the addresses of a run
//! are not in the certificates keygen issues), and every call bounded in
//! time so a partitioned or paused validator costs a timeout, never a hang.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use neuroshard_governance::{GovError, Outcome, Receipt, SignedCommand};
use neuroshard_node::api_proto as api;
use neuroshard_node::api_proto::governance_client::GovernanceClient;
use neuroshard_node::codec;
use neuroshard_node::transport::api_service::MAX_API_MESSAGE_BYTES;
use neuroshard_node::transport::net::{tls_connector, TcpNetwork};
use neuroshard_node::transport::tls::{api_client_config, server_name_for, validator_dns_name};
use neuroshard_node::ApiError;
use rustls::pki_types::ServerName;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use super::error::RealError;

pub type Client = GovernanceClient<Channel>;

/// Longest a TCP connect and TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// A call that times out on a channel silent for longer than this replaces
/// the channel: a connection whose packets a partition black-holed stays
/// in TCP retransmission back-off for seconds after the heal, and the
/// harness would observe the committee late.
pub const RECONNECT_AFTER_SILENCE: Duration = Duration::from_millis(1_000);

/// One validator's channel and when it last answered.
struct Slot {
    addr: String,
    name: ServerName<'static>,
    channel: Channel,
    heard: Instant,
}

/// One channel per validator, index = validator id.
#[derive(Clone)]
pub struct Endpoints {
    config: Arc<rustls::ClientConfig>,
    slots: Arc<Mutex<Vec<Slot>>>,
}

fn dial(
    addr: &str,
    name: &ServerName<'static>,
    config: &Arc<rustls::ClientConfig>,
) -> Result<Channel, RealError> {
    let connector = tls_connector(
        Arc::new(TcpNetwork),
        addr.to_owned(),
        name.clone(),
        config.clone(),
    );
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| RealError::invalid(addr.to_owned(), e))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .connect_with_connector_lazy(connector))
}

impl Endpoints {
    /// `api_addrs[i]` is validator i's `host:port`.
    pub fn new(api_addrs: &[String], ca: &Path) -> Result<Self, RealError> {
        let config = api_client_config(ca).map_err(|e| RealError::invalid("committee CA", e))?;
        let mut slots = Vec::with_capacity(api_addrs.len());
        for (i, addr) in api_addrs.iter().enumerate() {
            let name = server_name_for(&validator_dns_name(i as u64))
                .map_err(|e| RealError::invalid("server name", e))?;
            slots.push(Slot {
                channel: dial(addr, &name, &config)?,
                addr: addr.clone(),
                name,
                heard: Instant::now(),
            });
        }
        Ok(Self {
            config,
            slots: Arc::new(Mutex::new(slots)),
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.slots().len()
    }

    pub fn client(&self, i: usize) -> Client {
        GovernanceClient::new(self.slots()[i].channel.clone())
            .max_decoding_message_size(MAX_API_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_API_MESSAGE_BYTES)
    }

    /// One call to validator `i`, bounded by `timeout`; a timeout on a
    /// channel silent for [`RECONNECT_AFTER_SILENCE`] redials it.
    pub async fn call<T, F, Fut>(&self, i: usize, timeout: Duration, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let result = bounded(timeout, f(self.client(i))).await;
        let mut slots = self.slots();
        let slot = &mut slots[i];
        match &result {
            Err(ApiError::Status {
                code: tonic::Code::DeadlineExceeded | tonic::Code::Cancelled,
                ..
            }) => {
                if slot.heard.elapsed() > RECONNECT_AFTER_SILENCE {
                    if let Ok(channel) = dial(&slot.addr, &slot.name, &self.config) {
                        slot.channel = channel;
                        slot.heard = Instant::now();
                    }
                }
            }
            // Anything but a timeout came over the connection (or from a
            // refused connect, which tonic redials by itself).
            _ => slot.heard = Instant::now(),
        }
        result
    }
}

/// Runs one call with a deadline; a timeout becomes `DeadlineExceeded`.
pub async fn bounded<T, F>(timeout: Duration, call: F) -> Result<T, ApiError>
where
    F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(ApiError::from(status)),
        Err(_) => Err(ApiError::from(tonic::Status::deadline_exceeded(format!(
            "no answer within {} ms",
            timeout.as_millis()
        )))),
    }
}

/// What one submission told the client.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Applied or refused by a governance rule: the outcome is known, and
    /// for a refusal, the index of the entry that carried it.
    Known {
        outcome: Outcome,
        applied_at: Option<u64>,
    },
    /// No answer that says what happened (timeout, no leader, connection
    /// refused, ...): it may or may not be applied.
    Unknown { reason: String },
}

/// Submits `command` to validator `i`'s API, waiting at most `timeout`.
pub async fn submit(
    endpoints: &Endpoints,
    i: usize,
    command: &SignedCommand,
    timeout: Duration,
) -> Answer {
    let bytes = match codec::encode("signed command", command) {
        Ok(b) => b,
        Err(e) => {
            return Answer::Unknown {
                reason: format!("cannot encode the command: {e}"),
            }
        }
    };
    let request = api::SubmitRequest {
        command: Some(api::submit_request::Command::Postcard(bytes)),
    };
    let answer = endpoints
        .call(i, timeout, |mut c| async move { c.submit(request).await })
        .await;
    match answer {
        Ok(resp) => match serde_json::from_str::<Receipt>(&resp.receipt_json) {
            Ok(receipt) => Answer::Known {
                outcome: Ok(receipt),
                applied_at: Some(resp.log_index),
            },
            Err(e) => Answer::Unknown {
                reason: format!(
                    "applied at {} but the receipt does not parse: {e}",
                    resp.log_index
                ),
            },
        },
        Err(e) => match refusal(&e) {
            Some((error, applied_at)) => Answer::Known {
                outcome: Err(error),
                applied_at,
            },
            None => Answer::Unknown {
                reason: e.to_string(),
            },
        },
    }
}

/// The governance refusal an API error carries, with the index of the
/// entry that carried the command.
fn refusal(e: &ApiError) -> Option<(GovError, Option<u64>)> {
    let error = e.gov_error()?;
    let index = match e {
        ApiError::Status {
            detail: Some(d), ..
        } => d.log_index,
        _ => None,
    };
    Some((error, index))
}
