//! How far this validator's Raft log is durable, for the leader's
//! replicate-before-sync path (`raft.replicate_before_sync`).
//!
//! openraft 0.9 runs nothing else until a log append's callback fires
//! (`RaftCore::append_to_log` awaits it), so a leader that waited for its
//! own sync before firing it replicated each entry only after that sync:
//! two syncs in series on every command. With the switch on, the log store
//! fires the callback of the leader's *own* appends (entries of its own
//! committed term) as soon as they are written and readable; their sync
//! runs in the group-commit thread meanwhile. openraft then counts the
//! leader in the commit quorum before its copy is durable, so three rules
//! keep every promise that rested on that count:
//!
//! 1. **nothing is applied before it is durable here**: the state machine
//!    waits, before it applies an entry, until this mark covers it
//!    ([`DurableMark::wait_covers`]); a client's answer, a certificate and
//!    a snapshot all come after the apply, so each waits for the leader's
//!    sync and a majority's (the followers still ack only after theirs);
//! 2. **no other validator learns of a commit before it is durable here**:
//!    every AppendEntries this validator sends carries as the leader's
//!    committed id the lesser of openraft's and this mark
//!    ([`DurableMark::clamp`]), and so does its answer to a probe;
//! 3. **the committed hint written to disk never passes the mark**: a
//!    restart never re-applies an entry that its log did not keep.
//!
//! An entry openraft counted as committed but that a power cut took from
//! the leader before its sync was never applied, answered or told to
//! anyone: it is lost the way an uncommitted entry is, and a later leader
//! may overwrite it. Followers' appends are not changed: they ack only
//! after their sync, as before. And a validator that led when it stopped
//! restarts as a follower (`store::stored_vote`): openraft 0.9 would
//! resume it as leader of the same term, and entries a power cut took
//! from it could be written again, different, under log ids its
//! followers already hold.
//!
//! The mark is a log id, compared the way openraft orders them (term, then
//! index), and moves only by a completed sync of appends made in the same
//! *epoch*; a truncation (durable when it returns) starts a new epoch and
//! sets the mark to the log's new last entry, so a sync that started
//! before it cannot raise the mark over entries that are gone. Invariant:
//! every entry of the log at or below the mark is durable.

use std::sync::Arc;

use tokio::sync::watch;

use crate::types::LogId;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Mark {
    durable: Option<LogId>,
    epoch: u64,
}

/// The durable end of one validator's Raft log (see the module docs).
/// Until [`DurableMark::enable`] (the switch off, and stores opened by
/// tests), every entry counts as covered and nothing is clamped: every
/// append's callback then waits for its sync, as before.
#[derive(Clone)]
pub struct DurableMark {
    tx: Arc<watch::Sender<Mark>>,
    enabled: Arc<std::sync::atomic::AtomicBool>,
}

impl Default for DurableMark {
    fn default() -> Self {
        Self::new(None)
    }
}

impl DurableMark {
    /// A mark at `durable` (the log's last entry, once the log is synced).
    pub fn new(durable: Option<LogId>) -> Self {
        let (tx, _rx) = watch::channel(Mark { durable, epoch: 0 });
        Self {
            tx: Arc::new(tx),
            enabled: Arc::default(),
        }
    }

    /// From now on the state machine waits for the mark and the committed
    /// ids told to others are clamped to it (set with the log store's
    /// early acknowledgement, `ChecksOnAppend::replicate_before_sync`).
    pub fn enable(&self) {
        self.enabled
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn enabled(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The last log id known durable.
    pub fn durable(&self) -> Option<LogId> {
        self.tx.borrow().durable
    }

    /// The epoch an append belongs to (read before the append is queued
    /// for its sync).
    pub fn epoch(&self) -> u64 {
        self.tx.borrow().epoch
    }

    /// A sync that covers the append of `last` (made in `epoch`) finished.
    pub fn synced(&self, last: LogId, epoch: u64) {
        self.tx.send_if_modified(|m| {
            if m.epoch == epoch && Some(last) > m.durable {
                m.durable = Some(last);
                true
            } else {
                false
            }
        });
    }

    /// The log was cut back (or reopened) and synced: its last entry is
    /// `last` and everything in it is durable. Syncs of appends made
    /// before this call no longer move the mark.
    pub fn reset(&self, last: Option<LogId>) {
        self.tx.send_modify(|m| {
            m.epoch += 1;
            m.durable = last;
        });
    }

    /// Sets the mark to `durable` without starting an epoch (the simulated
    /// disk, which knows exactly what it made durable).
    pub fn set(&self, durable: Option<LogId>) {
        self.tx.send_if_modified(|m| {
            let changed = m.durable != durable;
            m.durable = durable;
            changed
        });
    }

    /// The committed id another validator may be told: at most the mark.
    pub fn clamp(&self, committed: Option<LogId>) -> Option<LogId> {
        if !self.enabled() {
            return committed;
        }
        committed.min(self.durable())
    }

    /// Returns once the mark covers `last`. Never returns if the sync never
    /// completes: a failed sync stops the process (`durability::disk_failed`).
    pub async fn wait_covers(&self, last: LogId) {
        if !self.enabled() {
            return;
        }
        let mut rx = self.tx.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail here.
        let _covered = rx.wait_for(|m| m.durable >= Some(last)).await;
    }

    /// Whether the mark covers `last` now.
    pub fn covers(&self, last: LogId) -> bool {
        !self.enabled() || self.durable() >= Some(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(term: u64, index: u64) -> LogId {
        openraft::LogId::new(openraft::CommittedLeaderId::new(term, 1), index)
    }

    #[test]
    fn a_sync_of_an_earlier_epoch_does_not_move_the_mark() {
        let mark = DurableMark::new(Some(id(1, 8)));
        let before = mark.epoch();
        // Entries 9 and 10 of term 1 queued for their sync, then cut back.
        mark.reset(Some(id(1, 8)));
        mark.synced(id(1, 10), before);
        assert_eq!(mark.durable(), Some(id(1, 8)));
        mark.synced(id(2, 9), mark.epoch());
        assert_eq!(mark.durable(), Some(id(2, 9)));
    }

    #[test]
    fn the_mark_never_goes_back_within_an_epoch_and_clamps_commits() {
        let mark = DurableMark::new(None);
        assert_eq!(mark.clamp(Some(id(1, 7))), Some(id(1, 7)), "off: no clamp");
        assert!(mark.covers(id(1, 7)), "off: everything counts as covered");
        mark.enable();
        let e = mark.epoch();
        mark.synced(id(1, 5), e);
        mark.synced(id(1, 3), e);
        assert_eq!(mark.durable(), Some(id(1, 5)));
        assert_eq!(mark.clamp(Some(id(1, 7))), Some(id(1, 5)));
        assert_eq!(mark.clamp(Some(id(1, 4))), Some(id(1, 4)));
        assert_eq!(mark.clamp(None), None);
        assert!(mark.covers(id(1, 5)));
        assert!(!mark.covers(id(1, 6)));
        // A later term's entry is above every entry of an earlier term.
        assert!(!mark.covers(id(2, 1)));
    }

    #[tokio::test]
    async fn a_wait_returns_once_a_sync_covers_the_entry() {
        let mark = DurableMark::new(Some(id(1, 1)));
        mark.enable();
        let waiter = {
            let mark = mark.clone();
            tokio::spawn(async move { mark.wait_covers(id(1, 3)).await })
        };
        tokio::task::yield_now().await;
        mark.synced(id(1, 2), mark.epoch());
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "entry 3 is not durable yet");
        mark.synced(id(1, 3), mark.epoch());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the wait ends once the mark covers the entry")
            .expect("task");
    }
}
