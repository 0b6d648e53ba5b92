//! Client writes through any validator.
//!
//! On the leader a command becomes one log entry (`client_write`); the
//! caller's answer is sent only after the entry is applied, and carries its
//! log index and the governance outcome. Concurrent commands are appended
//! back to back and made durable by one group-commit sync, and followers
//! replicate them in AppendEntries batches. A follower does not write: it
//! queues commands for the leader, and a forwarder sends everything queued
//! while the previous RPC was in flight as one `ForwardCommands` batch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use neuroshard_governance::admission;
use neuroshard_governance::limits::MAX_COMMAND_BYTES;
use neuroshard_governance::{Entry, GovError, Outcome, SignedCommand};

use crate::codec;
use crate::config::ClientSettings;
use crate::error::NodeError;
use crate::proto;
use crate::transport::peer_client::{forward_commands, PeerClients};
use crate::types::{NodeId, Raft};

/// Forwarded batches in flight at once from one follower.
pub const MAX_FORWARD_INFLIGHT: usize = 8;
/// Times one command may be re-routed (leader changes) before giving up.
pub const MAX_ROUTE_ATTEMPTS: usize = 16;

/// A command's answer: where it landed in the log and what it did. An
/// `Err` outcome is an apply refusal: the command was ordered at
/// `log_index` and its nonce is consumed (an admission refusal is a
/// `NodeError` instead: `Admission` or `Quota`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    pub log_index: u64,
    pub outcome: Outcome,
}

impl Submitted {
    /// The answer in words, saying which kind it is.
    pub fn describe(&self) -> String {
        match &self.outcome {
            Ok(r) => format!("applied at log index {}: {:?}", self.log_index, r.effect),
            Err(e) => format!(
                "refused at log index {} (nonce consumed): {e} [{}]",
                self.log_index,
                e.rule()
            ),
        }
    }
}

struct ForwardJob {
    leader: NodeId,
    command: Vec<u8>,
    reply: oneshot::Sender<Result<Submitted, NodeError>>,
}

struct Inner {
    raft: Raft,
    self_id: NodeId,
    settings: ClientSettings,
    election_timeout: Duration,
    pending: AtomicUsize,
    forward_tx: mpsc::Sender<ForwardJob>,
}

/// Routes client commands to the leader and waits for them to be applied.
#[derive(Clone)]
pub struct Submitter {
    inner: Arc<Inner>,
}

/// Counts a command as pending while it is alive.
struct PendingGuard<'a>(&'a AtomicUsize);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Submitter {
    pub fn new(
        raft: Raft,
        peers: PeerClients,
        settings: ClientSettings,
        election_timeout: Duration,
    ) -> Self {
        let (forward_tx, forward_rx) = mpsc::channel(settings.max_pending_commands);
        let self_id = peers.self_id();
        let timeout = Duration::from_millis(settings.submit_timeout_ms);
        tokio::spawn(run_forwarder(
            forward_rx,
            peers,
            BatchBounds {
                commands: settings.max_forward_batch,
                bytes: settings.max_forward_batch_bytes,
            },
            timeout,
        ));
        Self {
            inner: Arc::new(Inner {
                raft,
                self_id,
                settings,
                election_timeout,
                pending: AtomicUsize::new(0),
                forward_tx,
            }),
        }
    }

    fn admit(&self) -> Result<PendingGuard<'_>, NodeError> {
        let limit = self.inner.settings.max_pending_commands;
        let pending = self.inner.pending.fetch_add(1, Ordering::Relaxed);
        let guard = PendingGuard(&self.inner.pending);
        if pending >= limit {
            return Err(NodeError::Overloaded { pending, limit });
        }
        Ok(guard)
    }

    /// Orders `command` through the leader (wherever it is) and returns once
    /// it is applied here or at the leader.
    pub async fn submit(&self, command: SignedCommand) -> Result<Submitted, NodeError> {
        let _pending = self.admit()?;
        let ms = self.inner.settings.submit_timeout_ms;
        tokio::time::timeout(Duration::from_millis(ms), self.route(command))
            .await
            .map_err(|_| NodeError::Timeout { ms })?
    }

    async fn route(&self, command: SignedCommand) -> Result<Submitted, NodeError> {
        let encoded = codec::encode("signed command", &command)
            .map_err(|e| NodeError::Malformed(e.to_string()))?;
        let mut last_err = NodeError::NoLeader;
        for attempt in 0..MAX_ROUTE_ATTEMPTS {
            if attempt > 0 {
                // Leadership is moving: give the election a moment.
                let backoff = (self.inner.election_timeout / 8) * attempt.min(8) as u32;
                tokio::time::sleep(backoff).await;
            }
            let leader = match self.leader().await {
                Ok(l) => l,
                Err(e) => {
                    last_err = e;
                    continue;
                }
            };
            let result = if leader == self.inner.self_id {
                self.write_local(command.clone()).await
            } else {
                self.forward(leader, encoded.clone()).await
            };
            match result {
                Err(e) if e.is_retryable() && !matches!(e, NodeError::Timeout { .. }) => {
                    last_err = e
                }
                other => return other,
            }
        }
        Err(last_err)
    }

    /// The current leader, waiting up to two election timeouts for one.
    async fn leader(&self) -> Result<NodeId, NodeError> {
        if let Some(l) = self.inner.raft.metrics().borrow().current_leader {
            return Ok(l);
        }
        let wait = self.inner.raft.wait(Some(self.inner.election_timeout * 2));
        match wait
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
        {
            Ok(m) => m.current_leader.ok_or(NodeError::NoLeader),
            Err(_) => Err(NodeError::NoLeader),
        }
    }

    async fn forward(&self, leader: NodeId, command: Vec<u8>) -> Result<Submitted, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .forward_tx
            .send(ForwardJob {
                leader,
                command,
                reply,
            })
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        rx.await.map_err(|_| NodeError::ShuttingDown)?
    }

    /// Appends on this node, which must be the leader (it never forwards:
    /// the peer service calls this for commands forwarded to it).
    pub async fn write_local(&self, command: SignedCommand) -> Result<Submitted, NodeError> {
        check_size(&command)?;
        let resp = self
            .inner
            .raft
            .client_write(Entry::Command(command))
            .await
            .map_err(write_error)?;
        let applied = resp.data;
        let outcome = applied.outcome.ok_or_else(|| {
            NodeError::Internal(format!(
                "entry {} applied without an outcome",
                applied.log_index
            ))
        })?;
        Ok(Submitted {
            log_index: applied.log_index,
            outcome,
        })
    }

    /// Appends a forwarded batch in its order and answers each command once
    /// applied. Commands are enqueued back to back, so they share syncs.
    pub async fn write_local_batch(
        &self,
        commands: Vec<SignedCommand>,
    ) -> Vec<Result<Submitted, NodeError>> {
        let mut receivers = Vec::with_capacity(commands.len());
        for command in commands {
            receivers.push(match check_size(&command) {
                Err(e) => Err(e),
                Ok(()) => Ok(self
                    .inner
                    .raft
                    .client_write_ff(Entry::Command(command))
                    .await),
            });
        }
        let mut results = Vec::with_capacity(receivers.len());
        for rx in receivers {
            let result = match rx {
                Err(refused) => Err(refused),
                Ok(Err(fatal)) => Err(NodeError::Raft(fatal.to_string())),
                Ok(Ok(rx)) => match rx.await {
                    Err(_) => Err(NodeError::ShuttingDown),
                    Ok(Err(e)) => Err(write_error(RaftError::APIError(e))),
                    Ok(Ok(resp)) => resp
                        .data
                        .outcome
                        .map(|outcome| Submitted {
                            log_index: resp.data.log_index,
                            outcome,
                        })
                        .ok_or_else(|| NodeError::Internal("applied without an outcome".into())),
                },
            };
            results.push(result);
        }
        results
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.inner.settings
    }
}

/// The log never receives a command its size rule refuses, whoever calls:
/// admission checked it already (`crate::admission`), this is the last
/// guard before the entry is encoded (a cheap size measure, no encoding).
fn check_size(command: &SignedCommand) -> Result<(), NodeError> {
    let bytes = admission::encoded_len(command);
    if bytes > MAX_COMMAND_BYTES {
        return Err(NodeError::Admission(GovError::CommandTooLarge {
            bytes,
            max: MAX_COMMAND_BYTES,
        }));
    }
    Ok(())
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, openraft::EmptyNode>>) -> NodeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => match f.leader_id {
            Some(leader) => NodeError::NotLeader { leader },
            None => NodeError::NoLeader,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            NodeError::Internal(e.to_string())
        }
        RaftError::Fatal(openraft::error::Fatal::Stopped) => NodeError::ShuttingDown,
        RaftError::Fatal(f) => NodeError::Raft(f.to_string()),
    }
}

/// Decodes one result of a forwarded batch.
pub fn result_from_wire(r: proto::CommandResult) -> Result<Submitted, NodeError> {
    match r.result {
        Some(proto::command_result::Result::Applied(a)) => {
            let outcome: Outcome = serde_json::from_str(&a.outcome_json).map_err(|e| {
                NodeError::Internal(format!("outcome of entry {}: {e}", a.log_index))
            })?;
            Ok(Submitted {
                log_index: a.log_index,
                outcome,
            })
        }
        Some(proto::command_result::Result::Rejected(r)) => Err(NodeError::from_rejected(&r)),
        None => Err(NodeError::Internal("empty command result".into())),
    }
}

/// Encodes one result for the wire.
pub fn result_to_wire(r: &Result<Submitted, NodeError>) -> proto::CommandResult {
    use proto::command_result::Result as P;
    let result = match r {
        Ok(s) => match serde_json::to_string(&s.outcome) {
            Ok(outcome_json) => P::Applied(proto::Applied {
                log_index: s.log_index,
                outcome_json,
            }),
            Err(e) => {
                P::Rejected(NodeError::Internal(format!("encoding outcome: {e}")).to_rejected())
            }
        },
        Err(e) => P::Rejected(e.to_rejected()),
    };
    proto::CommandResult {
        result: Some(result),
    }
}

/// How much one ForwardCommands batch may carry (`client.max_forward_batch`
/// and `client.max_forward_batch_bytes`).
#[derive(Clone, Copy, Debug)]
struct BatchBounds {
    commands: usize,
    bytes: usize,
}

/// Something a batch is built from: the leader it goes to and its size.
trait Batched {
    fn leader(&self) -> NodeId;
    fn bytes(&self) -> usize;
}

impl Batched for ForwardJob {
    fn leader(&self) -> NodeId {
        self.leader
    }

    fn bytes(&self) -> usize {
        self.command.len()
    }
}

/// The batch `first` starts: the jobs queued in `rx` for the same leader
/// while the batch stays within `bounds` (the first always goes: a command
/// is at most `MAX_COMMAND_BYTES`, which the byte bound is validated to
/// hold). The job that does not fit (another leader, or too many bytes)
/// starts the next batch.
fn take_batch<J: Batched>(
    first: J,
    rx: &mut mpsc::Receiver<J>,
    bounds: BatchBounds,
) -> (Vec<J>, Option<J>) {
    let leader = first.leader();
    let mut bytes = first.bytes();
    let mut batch = vec![first];
    while batch.len() < bounds.commands {
        match rx.try_recv() {
            Ok(job) if job.leader() == leader && bytes + job.bytes() <= bounds.bytes => {
                bytes += job.bytes();
                batch.push(job);
            }
            Ok(job) => return (batch, Some(job)),
            Err(_) => break,
        }
    }
    (batch, None)
}

async fn run_forwarder(
    mut rx: mpsc::Receiver<ForwardJob>,
    peers: PeerClients,
    bounds: BatchBounds,
    timeout: Duration,
) {
    let inflight = Arc::new(Semaphore::new(MAX_FORWARD_INFLIGHT));
    let mut carry: Option<ForwardJob> = None;
    loop {
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            return;
        };
        let first = match carry.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let leader = first.leader;
        let (batch, next) = take_batch(first, &mut rx, bounds);
        carry = next;
        let peers = peers.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (commands, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|j| (j.command, j.reply)).unzip();
            match forward_commands(&peers, leader, commands, timeout).await {
                Ok(results) => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _caller_gone = reply.send(result_from_wire(result));
                    }
                }
                Err(message) => {
                    for reply in replies {
                        let _caller_gone = reply.send(Err(NodeError::Forward {
                            leader,
                            message: message.clone(),
                        }));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Job(NodeId, usize);

    impl Batched for Job {
        fn leader(&self) -> NodeId {
            self.0
        }
        fn bytes(&self) -> usize {
            self.1
        }
    }

    fn queue(jobs: Vec<Job>) -> mpsc::Receiver<Job> {
        let (tx, rx) = mpsc::channel(64);
        for j in jobs {
            tx.try_send(j).expect("room");
        }
        rx
    }

    #[test]
    fn a_forward_batch_stops_at_its_bytes_count_and_leader() {
        let bounds = BatchBounds {
            commands: 4,
            bytes: 1000,
        };
        // Bytes: 400 + 500 fit, 200 more would be 1100.
        let mut rx = queue(vec![Job(1, 500), Job(1, 200), Job(1, 10)]);
        let (batch, carry) = take_batch(Job(1, 400), &mut rx, bounds);
        assert_eq!(batch, vec![Job(1, 400), Job(1, 500)]);
        assert_eq!(carry, Some(Job(1, 200)));
        // Exactly at the byte bound fits.
        let mut rx = queue(vec![Job(1, 600)]);
        let (batch, carry) = take_batch(Job(1, 400), &mut rx, bounds);
        assert_eq!(batch.len(), 2);
        assert_eq!(carry, None);
        // Count bound; and another leader starts the next batch.
        let mut rx = queue((0..6).map(|_| Job(1, 1)).collect());
        let (batch, _) = take_batch(Job(1, 1), &mut rx, bounds);
        assert_eq!(batch.len(), 4);
        let mut rx = queue(vec![Job(1, 1), Job(2, 1), Job(1, 1)]);
        let (batch, carry) = take_batch(Job(1, 1), &mut rx, bounds);
        assert_eq!(batch.len(), 2);
        assert_eq!(carry, Some(Job(2, 1)));
        // A first job alone is always sent.
        let mut rx = queue(vec![Job(1, 1)]);
        let (batch, carry) = take_batch(Job(1, 5000), &mut rx, bounds);
        assert_eq!(batch, vec![Job(1, 5000)]);
        assert_eq!(carry, Some(Job(1, 1)));
    }
}
