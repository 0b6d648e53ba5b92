//! How a validator starts: its first boot, a restart from its disk, or the
//! recovery of a lost or rolled-back data directory (`--recover`);
//! docs/operations.md, "Recovering a validator".
//!
//! * **First boot** is explicit: keygen writes the marker [`FIRST_BOOT`]
//!   into the validator's data directory; the validator initializes its
//!   store and the genesis membership, makes them durable, then removes the
//!   marker. A data directory with neither a store nor the marker is a lost
//!   disk, and the validator refuses to start.
//! * **Restart**: before Raft starts, the validator asks the others
//!   ([`probe`], bounded by `safety.startup_probe_ms`) for the highest log
//!   id it acknowledged to them while they led. One answer above its own
//!   last log id means the directory was rolled back: it refuses to start.
//! * **Recover**: it writes [`RECOVERING`] (so a crash keeps it
//!   recovering), waits until ⌈n/2⌉ other validators answered (with every
//!   majority that could have committed an entry without it, they share at
//!   least one member), takes a vote one term above every term they
//!   reported, starts with elections disabled and refuses vote requests
//!   until it applied an entry of that term or later. Its higher term makes
//!   the current leader step down once (resetting the leader's record of
//!   its log); the others elect a leader without it, which holds every
//!   committed entry (leader completeness), and once this validator holds
//!   that leader's log up to one of its own entries it holds everything it
//!   acknowledged. The answers' log indexes are shown, not trusted: a
//!   faulty validator answering an absurd index cannot stall a recovery.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proto;
use crate::transport::convert;
use crate::transport::peer_client::PeerClients;
use crate::types::{LogId, NodeId, Vote};

/// Written by keygen into a new validator's data directory; removed once
/// the first start made its store durable.
pub const FIRST_BOOT: &str = "FIRST_BOOT";
/// Present while a validator recovers its data directory.
pub const RECOVERING: &str = "RECOVERING";

/// How this start treats the data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boot {
    /// Initialize the genesis membership when the store has none; no probe
    /// (the simulation and in-process tests, where no disk is lost).
    Auto,
    /// A first start: initialize the genesis membership.
    First,
    /// A restart from the disk: refuse a store without membership, probe the
    /// others for a rollback.
    Restart,
    /// Recover a lost or rolled-back data directory before taking part.
    Recover,
}

/// What keygen writes into a new validator's data directory.
pub fn write_first_boot_marker(
    data_dir: &Path,
    chain_id: &str,
    node: NodeId,
) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(
        data_dir.join(FIRST_BOOT),
        format!(
            "chain {chain_id}, validator {node}: this data directory is new. The validator's first start initializes it and removes this file; without it, an empty data directory is treated as lost and needs --recover.\n"
        ),
    )
}

/// Decides how a validator with a store in `data_dir` starts (`store_file`
/// is sled's data file; the Raft log's directory is checked when the store
/// is opened, `store::open_sled_for`).
pub fn decide(data_dir: &Path, store_file: &str, recover: bool) -> Result<Boot, crate::NodeError> {
    if recover || data_dir.join(RECOVERING).exists() {
        return Ok(Boot::Recover);
    }
    if data_dir.join(FIRST_BOOT).exists() {
        return Ok(Boot::First);
    }
    if !data_dir.join(store_file).exists() {
        return Err(crate::NodeError::DataLost {
            path: data_dir.display().to_string(),
            marker: data_dir.join(FIRST_BOOT).display().to_string(),
        });
    }
    Ok(Boot::Restart)
}

/// Creates `path` as a durable marker file.
pub fn write_marker(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)?;
    std::fs::File::open(path)?.sync_all()?;
    sync_parent(path)
}

/// Removes a marker durably (the removal survives a power loss).
pub fn remove_marker(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// What one other validator answered to a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeAnswer {
    pub from: NodeId,
    pub vote: Vote,
    pub last_log_index: Option<u64>,
    pub committed: Option<LogId>,
    /// The highest log id this validator acknowledged to `from` while it led.
    pub acknowledged: Option<LogId>,
}

/// Asks every other member at once; returns the answers that arrived
/// within `wait`.
pub async fn probe(
    peers: &PeerClients,
    others: &BTreeSet<NodeId>,
    recovering: bool,
    wait: Duration,
) -> Vec<ProbeAnswer> {
    let me = peers.self_id();
    let calls = others.iter().copied().map(|target| {
        let peers = peers.clone();
        async move {
            let mut client = peers.client(target).ok()?;
            let mut req = tonic::Request::new(proto::ProbeRequest {
                from: me,
                recovering,
            });
            req.set_timeout(wait);
            let resp = tokio::time::timeout(wait, client.probe(req))
                .await
                .ok()?
                .map_err(|s| {
                    tracing::debug!(peer = target, status = %s, "probe not answered");
                })
                .ok()?
                .into_inner();
            Some(ProbeAnswer {
                from: target,
                vote: convert::vote_from(resp.vote).ok()?,
                last_log_index: resp.last_log_index,
                committed: convert::opt_log_id_from(resp.committed),
                acknowledged: convert::opt_log_id_from(resp.acknowledged),
            })
        }
    });
    futures::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The first answer that recorded more than `have` (a rollback).
pub fn rolled_back(answers: &[ProbeAnswer], have: Option<LogId>) -> Option<(NodeId, LogId)> {
    answers.iter().find_map(|a| {
        a.acknowledged
            .filter(|ack| Some(*ack) > have)
            .map(|ack| (a.from, ack))
    })
}

/// Other validators whose answers a recovery needs: with every majority
/// that could have committed without this validator, ⌈n/2⌉ of the others
/// share at least one member.
pub fn recovery_quorum(n: usize) -> usize {
    n.div_ceil(2)
}

/// What a recovery starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryPlan {
    /// The vote to store before Raft starts: one term above every term seen.
    pub vote: Vote,
    /// The highest log index the others reported (shown in the status).
    pub target_index: u64,
}

/// The vote and target a recovery takes from the answers.
pub fn plan_recovery(me: NodeId, own_vote: Option<Vote>, answers: &[ProbeAnswer]) -> RecoveryPlan {
    // Terms past MAX_TERM_STEP above the median answer are not believed
    // (a faulty answer near u64::MAX would overflow or wrap the vote).
    let mut terms: Vec<u64> = answers.iter().map(|a| a.vote.leader_id().term).collect();
    terms.sort_unstable();
    let plausible = terms
        .get(terms.len() / 2)
        .copied()
        .unwrap_or(0)
        .saturating_add(crate::safety::MAX_TERM_STEP)
        .min(u64::MAX / 2);
    let max_term = terms
        .into_iter()
        .chain(own_vote.map(|v| v.leader_id().term))
        .filter(|t| *t <= plausible)
        .max()
        .unwrap_or(0);
    let target_index = answers
        .iter()
        .flat_map(|a| [a.last_log_index, a.acknowledged.map(|l| l.index)])
        .flatten()
        .max()
        .unwrap_or(0);
    RecoveryPlan {
        vote: Vote::new(max_term + 1, me),
        target_index,
    }
}

/// Asks the others until ⌈n/2⌉ of them answered (every `retry`), logging
/// who is still missing.
pub async fn probe_for_recovery(
    peers: &PeerClients,
    others: &BTreeSet<NodeId>,
    n: usize,
    wait: Duration,
) -> Result<Vec<ProbeAnswer>, crate::NodeError> {
    let need = recovery_quorum(n);
    if others.len() < need {
        return Err(crate::NodeError::Recovery(format!(
            "a committee of {n} has {} other validators; recovery needs {need} of them to answer",
            others.len()
        )));
    }
    loop {
        let answers = probe(peers, others, true, wait).await;
        if answers.len() >= need {
            return Ok(answers);
        }
        let answered: BTreeSet<NodeId> = answers.iter().map(|a| a.from).collect();
        let missing: Vec<NodeId> = others.difference(&answered).copied().collect();
        tracing::warn!(
            answered = ?answered,
            missing = ?missing,
            "recovery waits for {need} of the other validators to answer ({} did); it cannot know what it acknowledged before",
            answers.len()
        );
        tokio::time::sleep(wait).await;
    }
}

/// Written when this validator diverged from a certified checkpoint (JSON
/// of [`crate::store::machine::Divergence`]): it stays diverged across
/// restarts until its data directory is replaced (docs/operations.md, "A
/// diverged validator").
pub const DIVERGED: &str = "DIVERGED";

/// The divergence recorded in `data_dir`, if any. A marker that does not
/// parse is an error: starting as if nothing happened would sign again.
pub fn read_divergence(
    data_dir: &Path,
) -> Result<Option<crate::store::machine::Divergence>, String> {
    let path = marker(data_dir, DIVERGED);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            format!(
                "{} does not parse ({e}); this validator diverged before: replace its data directory (docs/operations.md, \"A diverged validator\")",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The marker paths of `data_dir`.
pub fn marker(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(openraft::CommittedLeaderId::new(term, 0), index)
    }

    fn answer(from: NodeId, term: u64, last: u64, ack: Option<(u64, u64)>) -> ProbeAnswer {
        ProbeAnswer {
            from,
            vote: Vote::new_committed(term, from),
            last_log_index: Some(last),
            committed: Some(log_id(term, last)),
            acknowledged: ack.map(|(t, i)| log_id(t, i)),
        }
    }

    #[test]
    fn recovery_needs_a_member_of_every_majority_without_it() {
        // n = 3: both others; 4: two of three; 5: three of four.
        assert_eq!(recovery_quorum(2), 1);
        assert_eq!(recovery_quorum(3), 2);
        assert_eq!(recovery_quorum(4), 2);
        assert_eq!(recovery_quorum(5), 3);
        assert_eq!(recovery_quorum(7), 4);
        for n in 2..=9usize {
            let majority = n / 2 + 1;
            // A majority holding this validator has majority - 1 others;
            // the answers miss them only if they fit in the rest.
            let others = n - 1;
            assert!(recovery_quorum(n) + (majority - 1) > others, "n = {n}");
        }
    }

    #[test]
    fn a_rollback_is_an_acknowledgement_above_the_log() {
        let answers = [answer(1, 5, 120, Some((5, 110))), answer(2, 5, 120, None)];
        assert_eq!(rolled_back(&answers, Some(log_id(5, 110))), None);
        assert_eq!(rolled_back(&answers, Some(log_id(5, 111))), None);
        assert_eq!(
            rolled_back(&answers, Some(log_id(5, 109))),
            Some((1, log_id(5, 110)))
        );
        assert_eq!(rolled_back(&answers, None), Some((1, log_id(5, 110))));
        // Entries of an older term replaced by a newer leader are not a
        // rollback: the log id of a later term is higher.
        let truncated = [answer(1, 4, 100, Some((3, 100)))];
        assert_eq!(rolled_back(&truncated, Some(log_id(4, 96))), None);
    }

    #[test]
    fn a_recovery_takes_a_term_above_all_and_the_longest_log() {
        let answers = [answer(1, 7, 300, Some((6, 310))), answer(2, 9, 290, None)];
        let plan = plan_recovery(3, Some(Vote::new(4, 3)), &answers);
        assert_eq!(plan.vote, Vote::new(10, 3));
        assert_eq!(plan.target_index, 310);
        let plan = plan_recovery(3, Some(Vote::new(12, 3)), &answers);
        assert_eq!(plan.vote, Vote::new(13, 3));
        // A faulty answer near u64::MAX is not believed (no overflow, no
        // wrap to term 0).
        let lying = [answer(1, 7, 300, None), answer(2, u64::MAX, 290, None)];
        let plan = plan_recovery(3, Some(Vote::new(4, 3)), &lying);
        assert_eq!(plan.vote, Vote::new(8, 3));
    }

    #[test]
    fn first_boot_restart_lost_and_recover_are_told_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        assert!(matches!(
            decide(&data, "db", false),
            Err(crate::NodeError::DataLost { .. })
        ));
        write_first_boot_marker(&data, "c", 1).expect("marker");
        assert_eq!(decide(&data, "db", false).expect("first"), Boot::First);
        std::fs::write(data.join("db"), b"x").expect("store");
        remove_marker(&data.join(FIRST_BOOT)).expect("remove");
        assert_eq!(decide(&data, "db", false).expect("restart"), Boot::Restart);
        assert_eq!(decide(&data, "db", true).expect("recover"), Boot::Recover);
        write_marker(&data.join(RECOVERING), "x").expect("recovering");
        assert_eq!(
            decide(&data, "db", false).expect("still recovering"),
            Boot::Recover
        );
    }
}
