//! The stake-weighted vote and its exact tally (DESIGN §4).
//!
//! quorum   iff (yes + no + abstain) · 10000 ≥ quorum_bps · total_power
//! approved iff quorum and yes · 10000 ≥ approval_bps · (yes + no) and yes > 0
//!
//! All arithmetic is in `u128`, so no sum of `u64` powers can overflow.

use std::collections::BTreeMap;

use neuroshard_certificate::merkle::{BallotLeaf, BallotTree, Hash, InclusionProof};
use serde::{Deserialize, Serialize};

use crate::ballot_index::{leaf_of, BallotIndex};
use crate::command::VoteChoice;
use crate::hashing::{digest_of, Cached};
use crate::types::{AccountId, Amount, BasisPoints, Timestamp, BPS_ONE};

/// One account's counted ballot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ballot {
    pub choice: VoteChoice,
    pub power: Amount,
}

/// Sums of counted power.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub yes: u128,
    pub no: u128,
    pub abstain: u128,
    /// Total staked at the snapshot.
    pub total_power: u128,
}

/// What a tally decides under given thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub quorum: bool,
    pub approved: bool,
}

impl Tally {
    pub fn participating(&self) -> u128 {
        self.yes + self.no + self.abstain
    }

    /// Applies the quorum and approval rules. Abstain counts for quorum only.
    pub fn verdict(&self, quorum_bps: BasisPoints, approval_bps: BasisPoints) -> Verdict {
        let one = u128::from(BPS_ONE);
        let quorum = self.participating() * one >= u128::from(quorum_bps.0) * self.total_power;
        let approved = quorum
            && self.yes > 0
            && self.yes * one >= u128::from(approval_bps.0) * (self.yes + self.no);
        Verdict { quorum, approved }
    }

    fn add(&mut self, ballot: &Ballot) {
        let p = u128::from(ballot.power.0);
        match ballot.choice {
            VoteChoice::Yes => self.yes += p,
            VoteChoice::No => self.no += p,
            VoteChoice::Abstain => self.abstain += p,
        }
    }

    fn remove(&mut self, ballot: &Ballot) {
        let p = u128::from(ballot.power.0);
        match ballot.choice {
            VoteChoice::Yes => self.yes -= p,
            VoteChoice::No => self.no -= p,
            VoteChoice::Abstain => self.abstain -= p,
        }
    }
}

/// A stake-weighted vote: the normal vote of a NEP or an EMERG NEP's
/// ratification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteBox {
    /// Log index of the entry that took the snapshot: power is the stake an
    /// account had after every entry before it.
    pub snapshot_index: u64,
    pub opened_ms: Timestamp,
    /// A vote counts iff applied before the first tick at or past this time.
    pub deadline_ms: Timestamp,
    /// Thresholds in force when the vote opened.
    pub quorum_bps: BasisPoints,
    pub approval_bps: BasisPoints,
    pub tally: Tally,
    /// Counted ballots, by account: the order of the Merkle leaves.
    pub ballots: BTreeMap<AccountId, Ballot>,
    /// Set when the vote is closed.
    pub closed: Option<Verdict>,
    /// Log index of the tick that closed the vote: a vote counts iff its
    /// entry comes before this index.
    pub closed_index: Option<u64>,
    /// The ballots Merkle tree, kept up to date as ballots are cast
    /// (`ballot_index.rs`); not serialized, rebuilt when a snapshot loads.
    #[serde(skip)]
    pub(crate) index: Cached<BallotIndex>,
}

const VOTE_TAG: &[u8] = b"neuroshard/state/v2/vote";

impl VoteBox {
    pub fn new(
        snapshot_index: u64,
        opened_ms: Timestamp,
        deadline_ms: Timestamp,
        total_power: Amount,
        quorum_bps: BasisPoints,
        approval_bps: BasisPoints,
    ) -> Self {
        Self {
            snapshot_index,
            opened_ms,
            deadline_ms,
            quorum_bps,
            approval_bps,
            tally: Tally {
                total_power: u128::from(total_power.0),
                ..Tally::default()
            },
            ballots: BTreeMap::new(),
            closed: None,
            closed_index: None,
            index: Cached::default(),
        }
    }

    /// Records `account`'s ballot, replacing an earlier one; returns the
    /// replaced choice.
    pub(crate) fn cast(&mut self, account: AccountId, ballot: Ballot) -> Option<VoteChoice> {
        let replaced = self.ballots.insert(account, ballot);
        self.index.0.note_cast(account, replaced.is_none());
        if let Some(old) = &replaced {
            self.tally.remove(old);
        }
        self.tally.add(&ballot);
        assert!(
            self.tally.participating() <= self.tally.total_power,
            "invariant: tally {} exceeds snapshot power {}",
            self.tally.participating(),
            self.tally.total_power
        );
        replaced.map(|b| b.choice)
    }

    /// Closes the vote with the verdict of its own thresholds. The ballots
    /// root is final from here on: it is computed now and kept.
    pub(crate) fn close(&mut self, log_index: u64) -> Verdict {
        let verdict = self.tally.verdict(self.quorum_bps, self.approval_bps);
        self.closed = Some(verdict);
        self.closed_index = Some(log_index);
        self.refresh();
        verdict
    }

    /// Brings the ballots tree up to date with the ballots cast since the
    /// last refresh (the state does it once per applied batch).
    pub(crate) fn refresh(&mut self) {
        self.index.0.refresh(&self.ballots, self.closed.is_some());
    }

    /// The counted ballots as Merkle leaves, in account order. O(n).
    pub fn leaves(&self) -> Vec<BallotLeaf> {
        self.ballots.iter().map(|(a, b)| leaf_of(a, b)).collect()
    }

    /// The ballots Merkle tree, built from every ballot. O(n): reads use
    /// [`Self::ballots_root`] and [`Self::receipt`].
    pub fn tree(&self) -> BallotTree {
        // Leaves come from a BTreeMap keyed by account: strictly sorted.
        BallotTree::new(&self.leaves()).expect("ballots map is sorted and unique by account")
    }

    /// The ballots Merkle root: kept, O(1) (a vote that was not built
    /// by a state, e.g. decoded on its own, is hashed in full).
    pub fn ballots_root(&self) -> Hash {
        if self.index.0.is_current(&self.ballots) {
            self.index.0.root()
        } else {
            debug_assert!(
                !self.index.0.is_built(),
                "a vote's ballots root read before the batch that changed it was flushed"
            );
            self.tree().root()
        }
    }

    /// `account`'s counted ballot and its inclusion proof under
    /// [`Self::ballots_root`]: O(log n) from the kept tree.
    pub fn receipt(&self, account: &AccountId) -> Option<(BallotLeaf, InclusionProof)> {
        if self.index.0.is_current(&self.ballots) {
            return self.index.0.proof(&self.ballots, account);
        }
        let index = self.ballots.keys().position(|a| a == account)?;
        let tree = self.tree();
        let proof = tree
            .proof(index)
            .expect("index of an existing ballot is inside the tree");
        Some((leaf_of(account, &self.ballots[account]), proof))
    }

    /// The vote's digest in the state hash: its fixed fields and its
    /// ballots root (refreshed first).
    pub(crate) fn digest(&mut self) -> Hash {
        self.refresh();
        self.digest_with_root(self.index.0.root())
    }

    /// The same digest with the ballots root computed from every ballot.
    pub(crate) fn digest_from_scratch(&self) -> Hash {
        self.digest_with_root(self.tree().root())
    }

    fn digest_with_root(&self, ballots_root: Hash) -> Hash {
        // Every field: a new one must be added here (the compiler says so).
        let VoteBox {
            snapshot_index,
            opened_ms,
            deadline_ms,
            quorum_bps,
            approval_bps,
            tally,
            ballots: _,
            closed,
            closed_index,
            index: _,
        } = self;
        digest_of(
            VOTE_TAG,
            &(
                snapshot_index,
                opened_ms,
                deadline_ms,
                quorum_bps,
                approval_bps,
                tally,
                closed,
                closed_index,
                ballots_root,
            ),
        )
    }

    /// How many ballots were counted.
    pub fn ballot_count(&self) -> u64 {
        self.ballots.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(yes: u128, no: u128, abstain: u128, total: u128) -> Tally {
        Tally {
            yes,
            no,
            abstain,
            total_power: total,
        }
    }

    #[test]
    fn quorum_and_approval_boundaries() {
        let q = BasisPoints(2_000);
        let a = BasisPoints(6_600);
        // (tally, quorum, approved)
        let cases = [
            // Exactly 20% participation, all yes.
            (tally(200, 0, 0, 1_000), true, true),
            // One unit under 20%.
            (tally(199, 0, 0, 1_000), false, false),
            // Exactly 66% yes of yes+no.
            (tally(66, 34, 100, 1_000), true, true),
            // One unit under 66% (65.99..%): 6599 yes of 10000.
            (tally(6_599, 3_401, 0, 50_000), true, false),
            (tally(6_600, 3_400, 0, 50_000), true, true),
            // Abstain counts for quorum only.
            (tally(10, 0, 190, 1_000), true, true),
            (tally(0, 0, 200, 1_000), true, false),
            (tally(10, 10, 180, 1_000), true, false),
            // Nothing staked: quorum trivially, but no yes.
            (tally(0, 0, 0, 0), true, false),
        ];
        for (i, (t, quorum, approved)) in cases.into_iter().enumerate() {
            let v = t.verdict(q, a);
            assert_eq!(
                (v.quorum, v.approved),
                (quorum, approved),
                "case {i}: {t:?}"
            );
        }
    }

    #[test]
    fn recasting_replaces_the_old_ballot() {
        let mut v = VoteBox::new(
            1,
            Timestamp(0),
            Timestamp(10),
            Amount(100),
            BasisPoints(0),
            BasisPoints(5_000),
        );
        let acct = AccountId([1; 32]);
        assert_eq!(
            v.cast(
                acct,
                Ballot {
                    choice: VoteChoice::Yes,
                    power: Amount(60)
                }
            ),
            None
        );
        assert_eq!(
            v.cast(
                acct,
                Ballot {
                    choice: VoteChoice::No,
                    power: Amount(60)
                }
            ),
            Some(VoteChoice::Yes)
        );
        assert_eq!((v.tally.yes, v.tally.no), (0, 60));
        assert_eq!(v.ballots.len(), 1);
    }
}
