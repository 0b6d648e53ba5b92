//! A signed-command load through every validator of a cluster: senders
//! funded by the treasury each submit transfers with consecutive nonces,
//! round-robin over the validators, retrying the *same* signed command on
//! another validator after a failure (the state machine answers a retried
//! command with its original receipt, never applying it twice).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use tokio::sync::Mutex;

use neuroshard_governance::{AccountId, Amount, Command, SignedCommand};
use neuroshard_node::{ApiClient, ClientError, NodeError, Submitted};

/// Amount each workload transfer moves.
pub const TRANSFER_UNITS: u64 = 1_000;
/// Attempts per command before the workload gives up.
pub const MAX_ATTEMPTS: usize = 400;

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// Refused before ordering (admission: nonce not consumed) or when
    /// applied (at a log index, nonce consumed); the message says which.
    #[error("command {nonce} of sender {sender} was {message}")]
    Refused {
        sender: usize,
        nonce: u64,
        message: String,
    },
    #[error("command {nonce} of sender {sender} failed {MAX_ATTEMPTS} times; last error: {last}")]
    GaveUp {
        sender: usize,
        nonce: u64,
        last: String,
    },
}

/// Endpoints and the CA of the committee under load.
#[derive(Clone)]
pub struct Target {
    pub endpoints: Vec<String>,
    pub ca: std::path::PathBuf,
    pub chain_id: String,
}

/// Cached connections, one per endpoint, reconnected after failures.
pub struct Connections {
    target: Target,
    clients: Vec<Mutex<Option<ApiClient>>>,
}

impl Connections {
    pub fn new(target: Target) -> Arc<Self> {
        let clients = target.endpoints.iter().map(|_| Mutex::new(None)).collect();
        Arc::new(Self { target, clients })
    }

    /// Submits `cmd` through endpoint `i` (connecting if needed).
    pub async fn submit(&self, i: usize, cmd: &SignedCommand) -> Result<Submitted, ClientError> {
        let i = i % self.clients.len();
        let mut client = {
            let mut slot = self.clients[i].lock().await;
            match slot.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let c = ApiClient::connect(
                        &self.target.endpoints[i],
                        &self.target.ca,
                        Duration::from_secs(3),
                    )
                    .await?;
                    *slot = Some(c.clone());
                    c
                }
            }
        };
        let result = client.submit(cmd).await;
        if matches!(
            result,
            Err(ClientError::Rpc { .. } | ClientError::Endpoint { .. })
        ) {
            *self.clients[i].lock().await = None;
        }
        result
    }
}

fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Node(n) => n.is_retryable() || matches!(n, NodeError::Raft(_)),
        ClientError::Rpc { .. } | ClientError::Endpoint { .. } => true,
        ClientError::Tls(_) => false,
    }
}

/// Submits one command until it is acknowledged, starting at endpoint
/// `first` and moving to the next endpoint after every failure.
pub async fn submit_until_acked(
    conns: &Connections,
    sender: usize,
    first: usize,
    cmd: &SignedCommand,
) -> Result<Submitted, WorkloadError> {
    let mut last = String::new();
    for attempt in 0..MAX_ATTEMPTS {
        match conns.submit(first + attempt, cmd).await {
            Ok(s) => {
                return match &s.outcome {
                    Ok(_) => Ok(s),
                    Err(_) => Err(WorkloadError::Refused {
                        sender,
                        nonce: cmd.nonce,
                        message: s.describe(),
                    }),
                };
            }
            Err(e) if retryable(&e) => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => {
                return Err(WorkloadError::Refused {
                    sender,
                    nonce: cmd.nonce,
                    // An admission refusal says "refused before ordering".
                    message: match &e {
                        ClientError::Node(n) if n.is_admission_refusal() => n.to_string(),
                        other => format!("not submitted: {other}"),
                    },
                });
            }
        }
    }
    Err(WorkloadError::GaveUp {
        sender,
        nonce: cmd.nonce,
        last,
    })
}

/// Deterministic sender and receiver keys of a workload run (`tag`
/// separates runs on one chain).
pub fn workload_key(tag: u8, role: u8, i: usize) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[0] = tag;
    seed[1] = role;
    seed[2..10].copy_from_slice(&(i as u64).to_be_bytes());
    seed[31] = 0x5a;
    SigningKey::from_bytes(&seed)
}

pub fn account(key: &SigningKey) -> AccountId {
    AccountId(key.verifying_key().to_bytes())
}

/// Funds `senders` from the treasury (one transfer each, in nonce order).
pub async fn fund(
    conns: &Connections,
    chain_id: &str,
    treasury: &SigningKey,
    first_nonce: u64,
    senders: &[SigningKey],
    amount: u64,
) -> Result<u64, WorkloadError> {
    let mut nonce = first_nonce;
    for (i, s) in senders.iter().enumerate() {
        let cmd = SignedCommand::sign(
            chain_id,
            treasury,
            nonce,
            Command::Transfer {
                to: account(s),
                amount: Amount(amount),
            },
        );
        submit_until_acked(conns, usize::MAX, i, &cmd).await?;
        nonce += 1;
    }
    Ok(nonce)
}

/// Per-sender acknowledgements, and latency samples.
#[derive(Debug, Default, Clone)]
pub struct Acks {
    pub per_sender: Vec<u64>,
    pub positions: Vec<neuroshard_governance::Position>,
    pub latencies: Vec<Duration>,
}

/// Every sender submits `per_sender` transfers to its own receiver,
/// sequentially (nonce after nonce), all senders concurrently. `acks` is
/// updated as commands are acknowledged, so a caller can observe progress.
pub async fn run(
    conns: Arc<Connections>,
    chain_id: String,
    senders: Vec<SigningKey>,
    receivers: Vec<AccountId>,
    per_sender: u64,
    acks: Arc<std::sync::Mutex<Acks>>,
) -> Result<(), WorkloadError> {
    {
        let mut a = acks.lock().unwrap_or_else(|p| p.into_inner());
        a.per_sender = vec![0; senders.len()];
    }
    let mut tasks = Vec::new();
    for (s, key) in senders.into_iter().enumerate() {
        let conns = conns.clone();
        let chain_id = chain_id.clone();
        let to = receivers[s];
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..per_sender {
                let cmd = SignedCommand::sign(
                    &chain_id,
                    &key,
                    k + 1,
                    Command::Transfer {
                        to,
                        amount: Amount(TRANSFER_UNITS),
                    },
                );
                let started = Instant::now();
                let submitted = submit_until_acked(&conns, s, s + k as usize, &cmd).await?;
                let mut a = acks.lock().unwrap_or_else(|p| p.into_inner());
                a.per_sender[s] += 1;
                a.positions.push(submitted.position);
                a.latencies.push(started.elapsed());
            }
            Ok::<(), WorkloadError>(())
        }));
    }
    for t in tasks {
        match t.await {
            Ok(r) => r?,
            Err(e) => {
                return Err(WorkloadError::GaveUp {
                    sender: usize::MAX,
                    nonce: 0,
                    last: e.to_string(),
                })
            }
        }
    }
    Ok(())
}
