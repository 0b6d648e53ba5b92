//! Linearizable reads (DESIGN §8).
//!
//! A read is served from this replica's state machine once the replica has
//! applied everything committed when the read began. The leader learns that
//! index by confirming it still leads with one heartbeat round (openraft's
//! read index, `get_read_log_id`); a follower asks the leader for it over the
//! peer listener (`ReadIndex`) and then waits until it has applied that far.
//! A `stale` read skips all of this and may lag.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use tonic::Status;

use crate::node::NodeCore;
use crate::proto;
use crate::types::{NodeId, Raft};

/// Coalesces read-index rounds: at most one round is in flight, and every
/// read that arrives while it runs joins the next one. A round serves
/// exactly the reads that began before it started, so each still gets an
/// index taken after it began (linearizable), while a flood of reads costs
/// one heartbeat round (leader) or one `ReadIndex` call (follower) per
/// round trip instead of one per read.
#[derive(Debug, Default)]
pub struct ReadIndexBatcher {
    state: std::sync::Mutex<Batch>,
}

type ReadIndexResult = Result<Option<u64>, String>;

#[derive(Debug, Default)]
struct Batch {
    running: bool,
    waiting: Vec<tokio::sync::oneshot::Sender<ReadIndexResult>>,
    rounds: u64,
}

impl ReadIndexBatcher {
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::default())
    }

    /// Rounds run so far (for tests and the status).
    pub fn rounds(&self) -> u64 {
        self.state.lock().expect("read batch").rounds
    }

    /// The read index of a round that starts after this call; `round` is
    /// what one round does (every caller of one batcher passes the same).
    pub async fn read_index<F, Fut>(self: &std::sync::Arc<Self>, round: F) -> ReadIndexResult
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ReadIndexResult> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start = {
            let mut s = self.state.lock().expect("read batch");
            s.waiting.push(tx);
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            let me = self.clone();
            // A task of its own: a caller that gives up must not strand the
            // others waiting on its round.
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut s = me.state.lock().expect("read batch");
                        if s.waiting.is_empty() {
                            s.running = false;
                            return;
                        }
                        s.rounds += 1;
                        std::mem::take(&mut s.waiting)
                    };
                    // A panicking round must not strand its batch or every
                    // later read: it answers its batch with an error.
                    let result =
                        futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(round()))
                            .await
                            .unwrap_or_else(|_| Err("the read-index round failed".to_owned()));
                    for w in batch {
                        let _gone = w.send(result.clone());
                    }
                }
            });
        }
        rx.await
            .unwrap_or_else(|_| Err("the read-index round was dropped".to_owned()))
    }
}

/// Times a read re-asks (a new leader) before giving up.
pub const MAX_READ_INDEX_ATTEMPTS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no leader is known, so this validator cannot confirm it is current; retry, or read with stale = true")]
    NoLeader,
    #[error("leader {leader} gave no read index: {message}")]
    ReadIndex { leader: NodeId, message: String },
    #[error("this validator had not applied up to read index {index} within {ms} ms; retry, or read with stale = true")]
    Lagging { index: u64, ms: u64 },
    #[error("the node is shutting down")]
    ShuttingDown,
    /// This replica diverged from a certified checkpoint: it answers only
    /// stale reads, marked diverged.
    #[error("this validator diverged from the committee ({detail}); it cannot answer a linearizable read: ask another validator, or read with stale = true (the answer is marked diverged)")]
    Diverged { detail: String },
}

/// The leader's side: confirms leadership and answers the index a
/// linearizable read must wait for.
pub async fn leader_read_index(raft: &Raft) -> Result<Option<u64>, Status> {
    match raft.get_read_log_id().await {
        Ok((read_log_id, _applied)) => Ok(read_log_id.map(|l| l.index)),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            Err(Status::failed_precondition(match f.leader_id {
                Some(l) => format!("not the leader; validator {l} is"),
                None => "not the leader; no leader is known".to_owned(),
            }))
        }
        Err(e) => Err(Status::unavailable(e.to_string())),
    }
}

async fn ask_leader(
    peers: &crate::transport::peer_client::PeerClients,
    from: NodeId,
    leader: NodeId,
    timeout: Duration,
) -> Result<Option<u64>, ReadError> {
    let err = |message: String| ReadError::ReadIndex { leader, message };
    let mut client = peers.client(leader).map_err(|e| err(e.to_string()))?;
    let mut req = tonic::Request::new(proto::ReadIndexRequest { from });
    req.set_timeout(timeout);
    let resp = client
        .read_index(req)
        .await
        .map_err(|s| err(format!("{}: {}", s.code(), s.message())))?;
    Ok(resp.into_inner().index)
}

async fn wait_applied(
    core: &NodeCore,
    index: Option<u64>,
    timeout: Duration,
) -> Result<(), ReadError> {
    let Some(index) = index else {
        // Nothing was committed when the read began.
        return Ok(());
    };
    core.raft
        .wait(Some(timeout))
        .applied_index_at_least(Some(index), "read index")
        .await
        .map(|_| ())
        .map_err(|e| match e {
            openraft::metrics::WaitError::ShuttingDown => ReadError::ShuttingDown,
            openraft::metrics::WaitError::Timeout(..) => ReadError::Lagging {
                index,
                ms: timeout.as_millis() as u64,
            },
        })
}

/// Makes the local state current for a read; returns whether the read is
/// linearizable (false for a stale read).
pub async fn read_barrier(
    core: &NodeCore,
    stale: bool,
    timeout: Duration,
) -> Result<bool, ReadError> {
    if stale {
        return Ok(false);
    }
    let mut last = ReadError::NoLeader;
    for attempt in 0..MAX_READ_INDEX_ATTEMPTS {
        if attempt > 0 {
            // Leadership is moving: give the election a moment.
            tokio::time::sleep(timeout / (2 * MAX_READ_INDEX_ATTEMPTS as u32)).await;
        }
        let leader = match core
            .raft
            .wait(Some(timeout / MAX_READ_INDEX_ATTEMPTS as u32))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
        {
            Ok(m) => m.current_leader,
            Err(openraft::metrics::WaitError::ShuttingDown) => return Err(ReadError::ShuttingDown),
            Err(_) => None,
        };
        let Some(leader) = leader else {
            last = ReadError::NoLeader;
            continue;
        };
        let index = if leader == core.id {
            let raft = core.raft.clone();
            let round = move || {
                let raft = raft.clone();
                async move {
                    leader_read_index(&raft)
                        .await
                        .map_err(|s| s.message().to_owned())
                }
            };
            match core.leader_reads.read_index(round).await {
                Ok(i) => i,
                Err(message) => {
                    last = ReadError::ReadIndex { leader, message };
                    continue;
                }
            }
        } else {
            let peers = core.peers.clone();
            let raft = core.raft.clone();
            let id = core.id;
            // The round asks whoever leads when it starts (a batch may
            // outlive the leader its first reader saw).
            let round = move || {
                let peers = peers.clone();
                let raft = raft.clone();
                async move {
                    let leader = raft.metrics().borrow().current_leader;
                    match leader {
                        Some(l) if l != id => ask_leader(&peers, id, l, timeout)
                            .await
                            .map_err(|e| e.to_string()),
                        Some(_) => leader_read_index(&raft)
                            .await
                            .map_err(|s| s.message().to_owned()),
                        None => Err(ReadError::NoLeader.to_string()),
                    }
                }
            };
            match core.follower_reads.read_index(round).await {
                Ok(i) => i,
                Err(message) => {
                    last = ReadError::ReadIndex { leader, message };
                    continue;
                }
            }
        };
        wait_applied(core, index, timeout).await?;
        return Ok(true);
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_reads_costs_one_round_per_round_trip() {
        let batcher = ReadIndexBatcher::new();
        let counter = Arc::new(AtomicU64::new(0));
        let round = {
            let counter = counter.clone();
            move || {
                let counter = counter.clone();
                async move {
                    // Each round reads the "commit index" when it starts.
                    let i = counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(Some(i))
                }
            }
        };
        let mut reads = Vec::new();
        for _ in 0..500 {
            let b = batcher.clone();
            let r = round.clone();
            let before = counter.load(Ordering::SeqCst);
            reads.push(tokio::spawn(async move {
                let got = b.read_index(r).await.expect("index").expect("some");
                // Linearizable: the round that served this read started
                // after the read began.
                assert!(
                    got >= before,
                    "read began at round {before}, served by {got}"
                );
            }));
            if reads.len() % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        for r in reads {
            r.await.expect("read");
        }
        let rounds = batcher.rounds();
        assert!((1..=50).contains(&rounds), "{rounds} rounds for 500 reads");
    }
}
