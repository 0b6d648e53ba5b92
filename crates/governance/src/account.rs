//! Per-account state: balance, stake, nonce, stake checkpoints, vote locks
//! and the last few outcomes for identical retries.

use serde::{Deserialize, Serialize};

use crate::limits::MAX_REMEMBERED_OUTCOMES;
use crate::position::Position;
use crate::receipt::Outcome;
use crate::types::{Amount, NepId};

/// The account's stake after the entry at `index` (genesis is index 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StakeCheckpoint {
    pub index: u64,
    pub staked: Amount,
}

/// Stake locked by a vote until that vote ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteLock {
    pub nep: NepId,
    pub power: Amount,
}

/// An outcome kept so an identical retry returns it instead of re-applying.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RememberedOutcome {
    pub nonce: u64,
    /// SHA-256 of the signed message.
    pub digest: [u8; 32],
    pub outcome: Outcome,
    /// Where the command was applied (a refusal's too).
    pub position: Position,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub balance: Amount,
    pub staked: Amount,
    /// Draft deposits this account has locked (refunded when each draft's
    /// vote closes, burned if it is withdrawn).
    pub deposited: Amount,
    /// Last accepted nonce (0 before the first command).
    pub nonce: u64,
    /// Stake history, ascending by index, compacted to what open votes need.
    pub checkpoints: Vec<StakeCheckpoint>,
    /// Power this account voted with, per NEP whose vote may still be open,
    /// sorted by NEP (a small sorted Vec: one entry costs 16 bytes, where a
    /// B-tree's first entry would allocate a whole node).
    pub vote_locks: Vec<VoteLock>,
    /// The last outcomes, oldest first, at most `MAX_REMEMBERED_OUTCOMES`.
    pub recent: Vec<RememberedOutcome>,
}

impl Account {
    pub fn with_genesis(balance: Amount, staked: Amount) -> Self {
        Self {
            balance,
            staked,
            checkpoints: vec![StakeCheckpoint { index: 0, staked }],
            ..Self::default()
        }
    }

    /// Stake after every entry before `snapshot_index`: the voting power
    /// basis of a vote whose snapshot was taken at that entry.
    pub fn staked_at(&self, snapshot_index: u64) -> Amount {
        self.checkpoints
            .iter()
            .rev()
            .find(|c| c.index < snapshot_index)
            .map(|c| c.staked)
            .unwrap_or(Amount::ZERO)
    }

    /// Records the current stake as of entry `index`, then drops checkpoints
    /// no open snapshot can read: for every open snapshot we keep the last
    /// checkpoint before it, and we always keep the newest. So the history
    /// never holds more than (open votes + 1) entries.
    pub(crate) fn checkpoint(&mut self, index: u64, open_snapshots: &[u64]) {
        match self.checkpoints.last_mut() {
            Some(last) if last.index == index => last.staked = self.staked,
            _ => self.checkpoints.push(StakeCheckpoint {
                index,
                staked: self.staked,
            }),
        }
        let n = self.checkpoints.len();
        if n <= 1 {
            return;
        }
        let keep: Vec<bool> = (0..n)
            .map(|i| {
                if i == n - 1 {
                    return true;
                }
                let here = self.checkpoints[i].index;
                let next = self.checkpoints[i + 1].index;
                // Checkpoint i is what a snapshot s reads iff here < s <= next.
                open_snapshots.iter().any(|&s| here < s && s <= next)
            })
            .collect();
        let mut i = 0;
        self.checkpoints.retain(|_| {
            let k = keep[i];
            i += 1;
            k
        });
    }

    /// Remembers an outcome for retries, forgetting the oldest beyond the bound.
    pub(crate) fn remember(
        &mut self,
        nonce: u64,
        digest: [u8; 32],
        outcome: Outcome,
        position: Position,
    ) {
        if self.recent.len() >= MAX_REMEMBERED_OUTCOMES {
            self.recent.remove(0);
        } else {
            // Grow one at a time: most accounts send few commands.
            self.recent.reserve_exact(1);
        }
        self.recent.push(RememberedOutcome {
            nonce,
            digest,
            outcome,
            position,
        });
    }

    /// Records (or replaces) the lock of a vote on `nep`.
    pub(crate) fn lock(&mut self, nep: NepId, power: Amount) {
        match self.vote_locks.binary_search_by_key(&nep, |l| l.nep) {
            Ok(i) => self.vote_locks[i].power = power,
            Err(i) => {
                self.vote_locks.reserve_exact(1);
                self.vote_locks.insert(i, VoteLock { nep, power });
            }
        }
    }

    pub fn remembered(&self, nonce: u64) -> Option<&RememberedOutcome> {
        self.recent.iter().find(|r| r.nonce == nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_answer_snapshots_and_compact() {
        let mut a = Account::with_genesis(Amount(0), Amount(100));
        a.staked = Amount(150);
        a.checkpoint(5, &[]);
        // Nothing open: only the newest is kept.
        assert_eq!(a.checkpoints.len(), 1);
        assert_eq!(a.staked_at(6), Amount(150));
        assert_eq!(a.staked_at(5), Amount::ZERO);

        // A snapshot at 8 is open: stake changed at 10 and 12 must not affect it.
        a.staked = Amount(300);
        a.checkpoint(10, &[8]);
        a.staked = Amount(50);
        a.checkpoint(12, &[8]);
        assert_eq!(a.staked_at(8), Amount(150));
        assert_eq!(a.staked_at(13), Amount(50));
        // The checkpoint at 10 serves no open snapshot and was dropped.
        assert_eq!(
            a.checkpoints.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![5, 12]
        );
        assert_eq!(a.staked_at(8), Amount(150));
    }
}
