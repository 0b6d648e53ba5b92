//! The stake-weighted vote and its exact tally (DESIGN §4).
//!
//! quorum   iff (yes + no + abstain) · 10000 ≥ quorum_bps · total_power
//! approved iff quorum and yes · 10000 ≥ approval_bps · (yes + no) and yes > 0
//!
//! All arithmetic is in `u128`, so no sum of `u64` powers can overflow.

use std::collections::BTreeMap;

use neuroshard_certificate::merkle::{BallotLeaf, BallotTree, Hash};
use serde::{Deserialize, Serialize};

use crate::command::VoteChoice;
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
}

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
        }
    }

    /// Records `account`'s ballot, replacing an earlier one; returns the
    /// replaced choice.
    pub(crate) fn cast(&mut self, account: AccountId, ballot: Ballot) -> Option<VoteChoice> {
        let replaced = self.ballots.insert(account, ballot);
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

    /// Closes the vote with the verdict of its own thresholds.
    pub(crate) fn close(&mut self, log_index: u64) -> Verdict {
        let verdict = self.tally.verdict(self.quorum_bps, self.approval_bps);
        self.closed = Some(verdict);
        self.closed_index = Some(log_index);
        verdict
    }

    /// The counted ballots as Merkle leaves, in account order.
    pub fn leaves(&self) -> Vec<BallotLeaf> {
        self.ballots
            .iter()
            .map(|(account, b)| BallotLeaf {
                account: account.0,
                choice: b.choice,
                power: b.power.0,
            })
            .collect()
    }

    /// The ballots Merkle tree.
    pub fn tree(&self) -> BallotTree {
        // Leaves come from a BTreeMap keyed by account: strictly sorted.
        BallotTree::new(&self.leaves()).expect("ballots map is sorted and unique by account")
    }

    pub fn ballots_root(&self) -> Hash {
        self.tree().root()
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
