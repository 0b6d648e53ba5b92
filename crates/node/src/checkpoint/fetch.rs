//! Catching up from another validator: a validator that refused a leader's
//! snapshot (`uncertified_snapshot`) fetches the latest certified snapshot
//! of each other validator in turn (`FetchCheckpoint`, in pieces), verifies
//! it against its pinned committee like any snapshot, and installs the
//! first one ahead of its own state with openraft's full-snapshot install.
//! At most one catch-up runs at a time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::verify_snapshot;
use crate::proto;
use crate::store::{SharedMachine, SnapshotBuffer, MAX_SNAPSHOT_BYTES};
use crate::transport::convert;
use crate::transport::peer_client::PeerClients;
use crate::types::{NodeId, Raft, Snapshot, SnapshotMeta};

/// Bytes per `FetchCheckpoint` answer (below every `raft.max_message_bytes`
/// a validator accepts).
pub const FETCH_CHUNK_BYTES: usize = 256 * 1024;
/// How long a catch-up waits for a committed leader to install under.
pub const COMMITTED_VOTE_WAIT: Duration = Duration::from_secs(10);
/// Deadline of one `FetchCheckpoint` call.
pub const FETCH_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a catch-up is running (one at a time per process is enough: it
/// tries every other validator).
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Starts a catch-up from every member but `me` and `offender`, unless one
/// is running.
pub fn spawn_catch_up(
    me: NodeId,
    offender: NodeId,
    members: Vec<NodeId>,
    peers: PeerClients,
    raft: Raft,
    machine: SharedMachine,
) {
    if RUNNING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async move {
        for peer in members.into_iter().filter(|p| *p != me && *p != offender) {
            match catch_up_from(peer, &peers, &raft, &machine).await {
                Ok(Some(index)) => {
                    tracing::info!(
                        peer,
                        index,
                        "caught up from another validator's certified snapshot"
                    );
                    break;
                }
                Ok(None) => {
                    crate::limited!(
                        crate::logging::RETRIES,
                        key = peer,
                        info!(
                            peer,
                            "another validator's certified snapshot is not ahead of this one"
                        )
                    );
                }
                Err(e) => {
                    crate::limited!(
                        crate::logging::RETRIES,
                        key = peer,
                        warn!(peer, error = %e, "catching up from this validator failed")
                    )
                }
            }
        }
        RUNNING.store(false, Ordering::Release);
    });
}

/// Fetches `peer`'s certified snapshot, verifies it and installs it if it
/// is ahead of this replica. Returns the installed index.
pub async fn catch_up_from(
    peer: NodeId,
    peers: &PeerClients,
    raft: &Raft,
    machine: &SharedMachine,
) -> Result<Option<u64>, String> {
    let (meta, data) = fetch(peer, peers).await?;
    let Some(meta) = meta else {
        return Ok(None);
    };
    let applied = machine.read().last_applied.map(|l| l.index);
    if meta.last_log_id.map(|l| l.index) <= applied {
        return Ok(None);
    }
    let pinned = machine.read().state.chain().clone();
    let (meta, data) = crate::blocking::run(move || {
        verify_snapshot(&meta, &data, &pinned)
            .map(|_| (meta, data))
            .map_err(|e| format!("validator {peer}'s snapshot is refused: {e}"))
    })
    .await??;
    let index = meta.last_log_id.map_or(0, |l| l.index);
    // openraft installs a full snapshot under a committed leader's vote:
    // wait for this validator to know one (it may be campaigning after the
    // refusal that started the catch-up).
    let deadline = tokio::time::Instant::now() + COMMITTED_VOTE_WAIT;
    let vote = loop {
        let (vote, leads) = {
            let m = raft.metrics();
            let m = m.borrow();
            (m.vote, m.current_leader == Some(peers.self_id()))
        };
        if leads {
            // A leader's log is the committee's; it needs no catch-up.
            return Ok(None);
        }
        if vote.is_committed() {
            break vote;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "no committed leader within {COMMITTED_VOTE_WAIT:?} to install the snapshot under"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    {
        let m = machine.read();
        // A replica that diverged meanwhile installs nothing (its operator
        // replaces its data directory).
        if m.checkpoints.diverged.is_some()
            || m.last_applied.map(|l| l.index) >= meta.last_log_id.map(|l| l.index)
        {
            return Ok(None);
        }
    }
    raft.install_full_snapshot(
        vote,
        Snapshot {
            meta,
            snapshot: Box::new(SnapshotBuffer::from_bytes(data)),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(Some(index))
}

/// The whole of `peer`'s latest certified snapshot, piece by piece.
async fn fetch(
    peer: NodeId,
    peers: &PeerClients,
) -> Result<(Option<SnapshotMeta>, Vec<u8>), String> {
    let mut client = peers.client(peer).map_err(|e| e.to_string())?;
    let mut data = Vec::new();
    let mut first: Option<proto::SnapshotMeta> = None;
    loop {
        let mut req = tonic::Request::new(proto::FetchCheckpointRequest {
            from: peers.self_id(),
            offset: data.len() as u64,
        });
        req.set_timeout(FETCH_RPC_TIMEOUT);
        let resp = client
            .fetch_checkpoint(req)
            .await
            .map_err(|s| s.message().to_owned())?
            .into_inner();
        let Some(meta) = resp.meta else {
            return Ok((None, Vec::new()));
        };
        if first.as_ref().is_some_and(|f| *f != meta) {
            // A newer checkpoint was certified meanwhile: start over.
            data.clear();
            first = None;
            continue;
        }
        if resp.total as usize > MAX_SNAPSHOT_BYTES
            || data.len() + resp.data.len() > resp.total as usize
        {
            return Err(format!(
                "validator {peer} claims a snapshot of {} bytes (at most {MAX_SNAPSHOT_BYTES})",
                resp.total
            ));
        }
        if resp.data.is_empty() && (data.len() as u64) < resp.total {
            return Err(format!("validator {peer} sent an empty piece"));
        }
        data.extend_from_slice(&resp.data);
        first = Some(meta);
        if data.len() as u64 == resp.total {
            break;
        }
    }
    let meta = convert::snapshot_meta_from(first).map_err(|e| e.to_string())?;
    Ok((Some(meta), data))
}

/// The certified snapshot a validator serves, encoded once per checkpoint:
/// (certified index, metadata and data).
pub type FetchCache = std::sync::Mutex<Option<(u64, Arc<(SnapshotMeta, Vec<u8>)>)>>;

/// The server's side: the piece of this validator's latest certified
/// snapshot at `offset`, encoded once per checkpoint (`cache`).
pub fn serve(
    machine: &SharedMachine,
    cache: &FetchCache,
    offset: u64,
) -> Result<proto::FetchCheckpointResponse, String> {
    let index = machine.read().checkpoints.certified_index();
    let Some(index) = index else {
        return Ok(proto::FetchCheckpointResponse::default());
    };
    let built = {
        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.as_ref() {
            Some((i, built)) if *i == index => built.clone(),
            _ => {
                let m = machine.read();
                let certified = m
                    .checkpoints
                    .certified
                    .clone()
                    .ok_or("no certified checkpoint")?;
                drop(m);
                let c = &certified.checkpoint;
                let meta = SnapshotMeta {
                    last_log_id: Some(c.log_id),
                    last_membership: c.membership.clone(),
                    snapshot_id: format!(
                        "checkpoint-{}-{}",
                        c.log_id.leader_id.term, c.log_id.index
                    ),
                };
                let data = certified.encode().map_err(|e| e.to_string())?;
                let built = Arc::new((meta, data));
                *cache = Some((index, built.clone()));
                built
            }
        }
    };
    let (meta, data) = built.as_ref();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let end = (start + FETCH_CHUNK_BYTES).min(data.len());
    Ok(proto::FetchCheckpointResponse {
        meta: Some(convert::snapshot_meta_to(meta)),
        total: data.len() as u64,
        data: data[start..end].to_vec(),
    })
}
