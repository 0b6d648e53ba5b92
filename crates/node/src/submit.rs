//! Client writes through any validator.
//!
//! On the leader, commands are **batched**: a proposer task takes every
//! command queued while earlier proposals are in flight (at most
//! [`MAX_PROPOSALS_IN_FLIGHT`]) and proposes them as one log entry,
//! `Entry::Commands`, up to `limits::MAX_COMMANDS_PER_ENTRY` commands and
//! `limits::MAX_BATCH_BYTES` bytes. Each caller is answered once the entry
//! is applied, with its command's position (log index, offset) and
//! governance outcome. Ticks and certificates are never batched: they are
//! entries of their own (`ticker.rs`, `issuance/`). Followers replicate
//! entries in AppendEntries batches. A follower does not write: it queues
//! commands for the leader, and a forwarder sends everything queued while
//! the previous RPC was in flight as one `ForwardCommands` batch, carrying
//! the commands' original bytes. A command that finds the forwarder's queue
//! empty and a batch slot free is sent at once, as a batch of one, from its
//! own task: alone it would be a batch of one anyway, and the two hand-offs
//! through the forwarder's tasks are saved (BENCHMARKS.md, "A lone
//! command's shortcuts").

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use neuroshard_governance::admission;
use neuroshard_governance::limits::{MAX_BATCH_BYTES, MAX_COMMANDS_PER_ENTRY, MAX_COMMAND_BYTES};
use neuroshard_governance::{Entry, GovError, Outcome, Position, SignedCommand};

use crate::codec;
use crate::config::ClientSettings;
use crate::error::NodeError;
use crate::proto;
use crate::store::SharedMachine;
use crate::transport::peer_client::{forward_commands, PeerClients};
use crate::types::{NodeId, Raft};

/// Forwarded batches in flight at once from one follower.
pub const MAX_FORWARD_INFLIGHT: usize = 8;
/// Times one command may be re-routed (leader changes) before giving up.
pub const MAX_ROUTE_ATTEMPTS: usize = 16;
/// Batched entries the leader has proposed and not yet seen applied; while
/// they are in flight, new commands queue and form the next batch.
pub const MAX_PROPOSALS_IN_FLIGHT: usize = 2;

/// A command's answer: where it landed in the log and what it did. An
/// `Err` outcome is an apply refusal: the command was ordered at
/// `position` and its nonce is consumed (an admission refusal is a
/// `NodeError` instead: `Admission` or `Quota`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    pub position: Position,
    pub outcome: Outcome,
}

impl Submitted {
    /// The answer in words, saying which kind it is.
    pub fn describe(&self) -> String {
        match &self.outcome {
            Ok(r) => format!("applied at position {}: {:?}", self.position, r.effect),
            Err(e) => format!(
                "refused at position {} (nonce consumed): {e} [{}]",
                self.position,
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

/// A command waiting for the leader's next batch.
struct Proposal {
    command: SignedCommand,
    bytes: usize,
    reply: oneshot::Sender<Result<Submitted, NodeError>>,
}

struct Inner {
    raft: Raft,
    machine: SharedMachine,
    self_id: NodeId,
    settings: ClientSettings,
    election_timeout: Duration,
    pending: AtomicUsize,
    forward_tx: mpsc::Sender<ForwardJob>,
    /// Forwarded batches in flight (`MAX_FORWARD_INFLIGHT`), shared by the
    /// forwarder and the commands sent at once.
    forward_slots: Arc<Semaphore>,
    peers: PeerClients,
    propose_tx: mpsc::Sender<Proposal>,
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
        machine: SharedMachine,
        peers: PeerClients,
        settings: ClientSettings,
        election_timeout: Duration,
    ) -> Self {
        let (forward_tx, forward_rx) = mpsc::channel(settings.max_pending_commands);
        let (propose_tx, propose_rx) = mpsc::channel(settings.max_pending_commands);
        let self_id = peers.self_id();
        let timeout = Duration::from_millis(settings.submit_timeout_ms);
        let forward_slots = Arc::new(Semaphore::new(MAX_FORWARD_INFLIGHT));
        tokio::spawn(run_forwarder(
            forward_rx,
            forward_slots.clone(),
            peers.clone(),
            BatchBounds {
                commands: settings.max_forward_batch,
                bytes: settings.max_forward_batch_bytes,
            },
            timeout,
        ));
        tokio::spawn(run_proposer(
            propose_rx,
            raft.clone(),
            machine.clone(),
            timeout,
        ));
        Self {
            inner: Arc::new(Inner {
                raft,
                machine,
                self_id,
                settings,
                election_timeout,
                pending: AtomicUsize::new(0),
                forward_tx,
                forward_slots,
                peers,
                propose_tx,
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
    /// it is applied here or at the leader. `encoded`: the command's bytes
    /// as the client sent them, forwarded as they are.
    pub async fn submit(
        &self,
        command: SignedCommand,
        encoded: Option<Vec<u8>>,
    ) -> Result<Submitted, NodeError> {
        let _pending = self.admit()?;
        let ms = self.inner.settings.submit_timeout_ms;
        tokio::time::timeout(Duration::from_millis(ms), self.route(command, encoded))
            .await
            .map_err(|_| NodeError::Timeout { ms })?
    }

    async fn route(
        &self,
        command: SignedCommand,
        encoded: Option<Vec<u8>>,
    ) -> Result<Submitted, NodeError> {
        let encoded = match encoded {
            Some(bytes) => bytes,
            None => codec::encode("signed command", &command)
                .map_err(|e| NodeError::Malformed(e.to_string()))?,
        };
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
        crate::hoptrace::mark("FW_send", 0);
        let queue = &self.inner.forward_tx;
        if queue.capacity() == queue.max_capacity() {
            if let Ok(_slot) = self.inner.forward_slots.try_acquire() {
                // Nothing queued and a slot free: a batch of one, now.
                let timeout = Duration::from_millis(self.inner.settings.submit_timeout_ms);
                let r = send_batch(&self.inner.peers, leader, vec![command], timeout)
                    .await
                    .pop()
                    .unwrap_or_else(|| Err(NodeError::Internal("missing forwarded result".into())));
                crate::hoptrace::mark("FW_back", 0);
                return r;
            }
        }
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
        let r = rx.await.map_err(|_| NodeError::ShuttingDown)?;
        crate::hoptrace::mark("FW_back", 0);
        r
    }

    /// Queues `command` for the leader's next batched entry (this node
    /// must be the leader; it never forwards).
    async fn enqueue(
        &self,
        command: SignedCommand,
    ) -> Result<oneshot::Receiver<Result<Submitted, NodeError>>, NodeError> {
        let bytes = check_size(&command)?;
        let (reply, rx) = oneshot::channel();
        self.inner
            .propose_tx
            .send(Proposal {
                command,
                bytes,
                reply,
            })
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        Ok(rx)
    }

    /// Appends on this node, which must be the leader (it never forwards:
    /// the peer service calls this for commands forwarded to it).
    pub async fn write_local(&self, command: SignedCommand) -> Result<Submitted, NodeError> {
        if let Some(refusal) = diverged_refusal(&self.inner.machine, self.inner.self_id) {
            return Err(refusal);
        }
        if !self.inner.settings.batch_entries {
            check_size(&command)?;
            let resp = self
                .inner
                .raft
                .client_write(Entry::Command(command))
                .await
                .map_err(write_error)?;
            return single_answer(resp.data);
        }
        let rx = self.enqueue(command).await?;
        rx.await.map_err(|_| NodeError::ShuttingDown)?
    }

    /// Appends a forwarded batch in its order and answers each command once
    /// applied. Commands are queued back to back, so they share entries.
    pub async fn write_local_batch(
        &self,
        commands: Vec<SignedCommand>,
    ) -> Vec<Result<Submitted, NodeError>> {
        // A diverged leader proposes nothing, whatever the entry layout.
        if let Some(refusal) = diverged_refusal(&self.inner.machine, self.inner.self_id) {
            return commands.iter().map(|_| Err(same_error(&refusal))).collect();
        }
        if !self.inner.settings.batch_entries {
            // One entry per command, enqueued back to back (they share
            // syncs).
            let mut receivers = Vec::with_capacity(commands.len());
            for command in commands {
                receivers.push(match check_size(&command) {
                    Err(e) => Err(e),
                    Ok(_) => Ok(self
                        .inner
                        .raft
                        .client_write_ff(Entry::Command(command))
                        .await),
                });
            }
            let mut results = Vec::with_capacity(receivers.len());
            for rx in receivers {
                results.push(match rx {
                    Err(refused) => Err(refused),
                    Ok(Err(fatal)) => Err(NodeError::Raft(fatal.to_string())),
                    Ok(Ok(rx)) => match rx.await {
                        Err(_) => Err(NodeError::ShuttingDown),
                        Ok(Err(e)) => Err(write_error(RaftError::APIError(e))),
                        Ok(Ok(resp)) => single_answer(resp.data),
                    },
                });
            }
            return results;
        }
        let mut receivers = Vec::with_capacity(commands.len());
        for command in commands {
            receivers.push(self.enqueue(command).await);
        }
        let mut results = Vec::with_capacity(receivers.len());
        for rx in receivers {
            results.push(match rx {
                Err(refused) => Err(refused),
                Ok(rx) => rx.await.unwrap_or(Err(NodeError::ShuttingDown)),
            });
        }
        results
    }

    /// Client commands waiting at this node (admitted, not answered).
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::Relaxed)
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.inner.settings
    }
}

/// The leader's batcher: waits for a proposal slot and a first command,
/// takes every command queued behind it (within the entry's bounds), and
/// proposes them as one `Entry::Commands`; a task per entry answers each
/// caller from the entry's outcomes, by offset.
async fn run_proposer(
    mut rx: mpsc::Receiver<Proposal>,
    raft: Raft,
    machine: SharedMachine,
    answer_within: Duration,
) {
    let slots = Arc::new(Semaphore::new(MAX_PROPOSALS_IN_FLIGHT));
    let mut carry: Option<Proposal> = None;
    let me = raft.metrics().borrow().id;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_COMMANDS_PER_ENTRY {
            match rx.try_recv() {
                Ok(p) if bytes + p.bytes <= MAX_BATCH_BYTES => {
                    bytes += p.bytes;
                    batch.push(p);
                }
                Ok(p) => {
                    carry = Some(p);
                    break;
                }
                Err(_) => break,
            }
        }
        let (commands, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|p| (p.command, p.reply)).unzip();
        // A diverged leader proposes nothing (it stands down: the
        // followers elect another leader once its entries stop).
        if let Some(refusal) = diverged_refusal(&machine, me) {
            for reply in replies {
                let _caller_gone = reply.send(Err(same_error(&refusal)));
            }
            drop(slot);
            continue;
        }
        // Forwarded commands were admitted by another validator: their
        // signatures are checked by the log store once the entry's sync is
        // requested (`store::ChecksOnAppend`; this validator's own
        // admissions are memoized).
        crate::hoptrace::mark("P_write", commands.len() as u64);
        let written = raft.client_write_ff(Entry::Commands(commands)).await;
        tokio::spawn(async move {
            let _slot = slot;
            let n = replies.len();
            let all = |e: NodeError| -> Vec<Result<Submitted, NodeError>> {
                (0..n).map(|_| Err(same_error(&e))).collect()
            };
            // openraft answers an entry only when this node applies it or
            // truncates it; a leader that lost its leadership may do
            // neither for a long while (it can catch up by a snapshot that
            // covers the entry). The slot is released after the callers'
            // own timeout at the latest, and they are told the entry may
            // still be applied (retry the same bytes).
            let ms = u64::try_from(answer_within.as_millis()).unwrap_or(u64::MAX);
            let answers: Vec<Result<Submitted, NodeError>> = match written {
                Err(fatal) => all(NodeError::Raft(fatal.to_string())),
                Ok(rx) => match tokio::time::timeout(answer_within, rx).await {
                    Err(_elapsed) => all(NodeError::Timeout { ms }),
                    Ok(Err(_)) => all(NodeError::ShuttingDown),
                    Ok(Ok(Err(e))) => all(write_error(RaftError::APIError(e))),
                    Ok(Ok(Ok(resp))) => {
                        let log_index = resp.data.log_index;
                        crate::hoptrace::mark("P_applied", log_index);
                        let mut outcomes = resp.data.outcomes.into_iter();
                        (0..replies.len())
                            .map(|k| match outcomes.next() {
                                Some(outcome) => Ok(Submitted {
                                    position: Position::new(
                                        log_index,
                                        u32::try_from(k).unwrap_or(u32::MAX),
                                    ),
                                    outcome,
                                }),
                                None => Err(NodeError::Internal(format!(
                                    "entry {log_index} applied without an outcome for offset {k}"
                                ))),
                            })
                            .collect()
                    }
                },
            };
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _caller_gone = reply.send(answer);
            }
        });
    }
}

/// `replica_diverged` if this replica diverged (`crate::checkpoint`).
pub fn diverged_refusal(machine: &SharedMachine, node: NodeId) -> Option<NodeError> {
    machine
        .read()
        .checkpoints
        .diverged
        .as_ref()
        .map(|d| NodeError::Diverged {
            node,
            detail: d.describe(),
        })
}

/// The log never receives a command its size rule refuses, whoever calls:
/// admission checked it already (`crate::admission`), this is the last
/// guard before the entry is encoded (a cheap size measure, no encoding).
fn check_size(command: &SignedCommand) -> Result<usize, NodeError> {
    let bytes = admission::encoded_len(command);
    if bytes > MAX_COMMAND_BYTES {
        return Err(NodeError::Admission(GovError::CommandTooLarge {
            bytes,
            max: MAX_COMMAND_BYTES,
        }));
    }
    Ok(bytes)
}

/// The answer of a command that was an entry of its own.
fn single_answer(applied: crate::types::Applied) -> Result<Submitted, NodeError> {
    let log_index = applied.log_index;
    applied
        .outcomes
        .into_iter()
        .next()
        .map(|outcome| Submitted {
            position: Position::entry(log_index),
            outcome,
        })
        .ok_or_else(|| NodeError::Internal(format!("entry {log_index} applied without an outcome")))
}

/// A copy of an error `write_error` makes, for every caller of one entry.
fn same_error(e: &NodeError) -> NodeError {
    match e {
        NodeError::NotLeader { leader } => NodeError::NotLeader { leader: *leader },
        NodeError::NoLeader => NodeError::NoLeader,
        NodeError::ShuttingDown => NodeError::ShuttingDown,
        NodeError::Timeout { ms } => NodeError::Timeout { ms: *ms },
        NodeError::Internal(m) => NodeError::Internal(m.clone()),
        NodeError::Raft(m) => NodeError::Raft(m.clone()),
        NodeError::Diverged { node, detail } => NodeError::Diverged {
            node: *node,
            detail: detail.clone(),
        },
        other => NodeError::Raft(other.to_string()),
    }
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
            let position = Position::new(a.log_index, a.offset);
            let outcome: Outcome = codec::decode("forwarded outcome", &a.outcome)
                .map_err(|e| NodeError::Internal(format!("outcome at {position}: {e}")))?;
            Ok(Submitted { position, outcome })
        }
        Some(proto::command_result::Result::Rejected(r)) => Err(NodeError::from_rejected(&r)),
        None => Err(NodeError::Internal("empty command result".into())),
    }
}

/// Encodes one result for the wire (the outcome in postcard).
pub fn result_to_wire(r: &Result<Submitted, NodeError>) -> proto::CommandResult {
    use proto::command_result::Result as P;
    let result = match r {
        Ok(s) => match codec::encode("forwarded outcome", &s.outcome) {
            Ok(outcome) => P::Applied(proto::Applied {
                log_index: s.position.log_index,
                offset: s.position.offset,
                outcome,
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
    inflight: Arc<Semaphore>,
    peers: PeerClients,
    bounds: BatchBounds,
    timeout: Duration,
) {
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
            let results = send_batch(&peers, leader, commands, timeout).await;
            for (reply, result) in replies.into_iter().zip(results) {
                let _caller_gone = reply.send(result);
            }
        });
    }
}

/// Forwards `commands` to `leader` as one batch: each command's answer, in
/// order (every one the RPC's error when the RPC failed).
async fn send_batch(
    peers: &PeerClients,
    leader: NodeId,
    commands: Vec<Vec<u8>>,
    timeout: Duration,
) -> Vec<Result<Submitted, NodeError>> {
    let count = commands.len();
    match forward_commands(peers, leader, commands, timeout).await {
        Ok(results) => results.into_iter().map(result_from_wire).collect(),
        Err(message) => (0..count)
            .map(|_| {
                Err(NodeError::Forward {
                    leader,
                    message: message.clone(),
                })
            })
            .collect(),
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
