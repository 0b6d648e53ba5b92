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
    core: &NodeCore,
    leader: NodeId,
    timeout: Duration,
) -> Result<Option<u64>, ReadError> {
    let err = |message: String| ReadError::ReadIndex { leader, message };
    let mut client = core.peers.client(leader).map_err(|e| err(e.to_string()))?;
    let mut req = tonic::Request::new(proto::ReadIndexRequest { from: core.id });
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
            match leader_read_index(&core.raft).await {
                Ok(i) => i,
                Err(s) => {
                    last = ReadError::ReadIndex {
                        leader,
                        message: s.message().to_owned(),
                    };
                    continue;
                }
            }
        } else {
            match ask_leader(core, leader, timeout).await {
                Ok(i) => i,
                Err(e) => {
                    last = e;
                    continue;
                }
            }
        };
        wait_applied(core, index, timeout).await?;
        return Ok(true);
    }
    Err(last)
}
