//! The ballots Merkle tree of one vote, maintained as ballots are cast, so
//! reads (GetTally, GetProposal, GetVoteReceipt) and certificate issuance
//! never rebuild it.
//!
//! The tree is the certificate format's (`neuroshard_certificate::merkle`,
//! RFC 6962 shape, one leaf per ballot in account order); its root is
//! unchanged by this cache. What is kept (not serialized; rebuilt when a
//! snapshot is loaded):
//!
//! * `anchors`: the account of every [`ANCHOR`]-th leaf, so a ballot's leaf
//!   index is found in O(log n + ANCHOR);
//! * `leaves`: every leaf hash, while the vote is open;
//! * `levels`: the root of every full, aligned range of `2^(base + j)`
//!   leaves (`base` is 3 while the vote is open, 5 once it closed);
//! * `spine`: the roots of the right edge of the tree (`[s, n)` for each
//!   start `s` of the binary decomposition of `n`), and the root.
//!
//! Costs, per applied batch that changed the vote (never per read): a
//! re-vote replaces its leaf in place and re-hashes its path (an 8-leaf
//! block and the levels above: O(log n)); a new ballot shifts every leaf
//! after it by one, and in the RFC 6962 shape every inner node to its right
//! then covers different leaves, so the batch re-hashes the inner nodes
//! from the first new ballot's position to the end from the cached leaf
//! hashes (O(n) in the worst case, once per batch however many ballots it
//! adds; no leaf is re-encoded). When the vote closes its root is final:
//! the leaf hashes and the two lowest levels are dropped, the rest (about
//! 3 bytes per ballot) is kept for receipts, whose proofs then re-hash the
//! 32 leaves of one block. Reads: the root O(1), a receipt O(log n + 32).

use std::collections::BTreeMap;

use neuroshard_certificate::merkle::{
    empty_root, node_hash, root_from_leaf_hashes, BallotLeaf, Hash, InclusionProof,
};

use crate::tally::Ballot;
use crate::types::AccountId;

/// Leaves between two anchors (a power of two).
pub(crate) const ANCHOR: usize = 32;
/// log2 of the smallest kept range while the vote is open.
const OPEN_BASE: u32 = 3;
/// log2 of the smallest kept range once it closed (= log2 `ANCHOR`, so a
/// receipt's block starts at an anchor).
const FROZEN_BASE: u32 = 5;
const _: () = assert!(1 << FROZEN_BASE == ANCHOR && OPEN_BASE <= FROZEN_BASE);

pub(crate) fn leaf_of(account: &AccountId, b: &Ballot) -> BallotLeaf {
    BallotLeaf {
        account: account.0,
        choice: b.choice,
        power: b.power.0,
    }
}

/// Largest power of two strictly below `n` (`n >= 2`): RFC 6962's split.
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The cached tree of one vote (module docs).
#[derive(Clone, Debug, Default)]
pub(crate) struct BallotIndex {
    /// Built for the ballots as of the last refresh.
    built: bool,
    /// Closed: the leaf hashes are dropped and nothing changes any more.
    frozen: bool,
    /// log2 of the ranges `levels[0]` holds.
    base: u32,
    n: usize,
    anchors: Vec<AccountId>,
    leaves: Vec<Hash>,
    levels: Vec<Vec<Hash>>,
    spine: Vec<(usize, Hash)>,
    root: Hash,
    /// Ballots cast since the last refresh: `true` if new (not a re-vote).
    dirty: BTreeMap<AccountId, bool>,
}

impl BallotIndex {
    /// Records a cast ballot (the tree catches up at the next refresh).
    pub(crate) fn note_cast(&mut self, account: AccountId, new: bool) {
        self.dirty.entry(account).or_insert(new);
    }

    /// Whether the cached root is the root of `ballots`.
    pub(crate) fn is_current(&self, ballots: &BTreeMap<AccountId, Ballot>) -> bool {
        self.built && self.dirty.is_empty() && self.n == ballots.len()
    }

    pub(crate) fn is_built(&self) -> bool {
        self.built
    }

    pub(crate) fn root(&self) -> Hash {
        self.root
    }

    /// Brings the tree up to date with `ballots`; freezes it once `closed`.
    pub(crate) fn refresh(&mut self, ballots: &BTreeMap<AccountId, Ballot>, closed: bool) {
        if !self.built || (self.frozen && !self.dirty.is_empty()) {
            self.build(ballots);
        } else if !self.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.dirty);
            if dirty.values().any(|&new| new) {
                self.insert(ballots, &dirty);
            } else {
                self.replace(ballots, &dirty);
            }
            self.update_spine();
        }
        debug_assert_eq!(self.n, ballots.len());
        if closed && !self.frozen {
            self.leaves = Vec::new();
            let dropped = ((FROZEN_BASE - self.base) as usize).min(self.levels.len());
            self.levels.drain(..dropped);
            for l in &mut self.levels {
                l.shrink_to_fit();
            }
            self.anchors.shrink_to_fit();
            self.base = FROZEN_BASE;
            self.frozen = true;
        }
    }

    /// Builds everything from the ballots: O(n).
    fn build(&mut self, ballots: &BTreeMap<AccountId, Ballot>) {
        self.dirty.clear();
        self.frozen = false;
        self.base = OPEN_BASE;
        self.n = ballots.len();
        self.leaves = ballots.iter().map(|(a, b)| leaf_of(a, b).hash()).collect();
        self.anchors = ballots.keys().step_by(ANCHOR).copied().collect();
        self.levels.clear();
        self.rebuild_levels_from(0);
        self.update_spine();
        self.built = true;
    }

    /// Some ballots are new: from the anchor before the first changed
    /// ballot on, the leaves move up (in place, from the end) and every
    /// kept node over them is re-hashed.
    fn insert(&mut self, ballots: &BTreeMap<AccountId, Ballot>, dirty: &BTreeMap<AccountId, bool>) {
        let first = *dirty.keys().next().expect("called with changes");
        let anchor = self
            .anchors
            .partition_point(|a| *a <= first)
            .saturating_sub(1);
        let start = anchor * ANCHOR;
        // The account at `start` in the new order.
        let from = match self.anchors.get(anchor) {
            Some(a) => (*a).min(first),
            None => first,
        };
        let old_n = self.n;
        let new_n = ballots.len();
        self.leaves.resize(new_n, [0; 32]);
        self.anchors.resize(new_n.div_ceil(ANCHOR), from);
        let mut old = old_n;
        let mut changed = dirty.iter().rev().peekable();
        for (w, (account, b)) in (start..new_n).rev().zip(ballots.range(from..).rev()) {
            let change = changed.next_if(|(d, _)| *d == account).map(|(_, new)| *new);
            self.leaves[w] = match change {
                Some(new) => {
                    if !new {
                        old -= 1;
                    }
                    leaf_of(account, b).hash()
                }
                None => {
                    old -= 1;
                    self.leaves[old]
                }
            };
            if w % ANCHOR == 0 {
                self.anchors[w / ANCHOR] = *account;
            }
        }
        debug_assert_eq!(old, start, "every old leaf after the change moved");
        debug_assert!(changed.next().is_none());
        self.n = new_n;
        self.rebuild_levels_from(start);
    }

    /// Only re-votes: each leaf is replaced in place and its path re-hashed.
    fn replace(
        &mut self,
        ballots: &BTreeMap<AccountId, Ballot>,
        dirty: &BTreeMap<AccountId, bool>,
    ) {
        let base = self.base;
        let full_blocks = self.n >> base;
        let mut touched: Vec<usize> = Vec::new();
        for account in dirty.keys() {
            let i = self
                .position(ballots, account)
                .expect("a re-voted ballot is in the tree");
            self.leaves[i] = leaf_of(account, &ballots[account]).hash();
            let block = i >> base;
            if block < full_blocks && touched.last() != Some(&block) {
                touched.push(block);
            }
        }
        // Dirty accounts ascend, so the touched blocks do too.
        for j in 0..self.levels.len() {
            if j > 0 {
                for k in touched.iter_mut() {
                    *k >>= 1;
                }
                touched.dedup();
            }
            for &k in &touched {
                let h = if j == 0 {
                    root_from_leaf_hashes(&self.leaves[k << base..(k + 1) << base])
                } else {
                    let below = &self.levels[j - 1];
                    if 2 * k + 1 >= below.len() {
                        continue;
                    }
                    node_hash(&below[2 * k], &below[2 * k + 1])
                };
                self.levels[j][k] = h;
            }
        }
    }

    /// Recomputes every kept node covering a leaf at or after `start`.
    fn rebuild_levels_from(&mut self, start: usize) {
        let base = self.base;
        let first_block = start >> base;
        let full_blocks = self.n >> base;
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        let blocks = &mut self.levels[0];
        blocks.truncate(first_block);
        blocks.extend(
            (blocks.len()..full_blocks)
                .map(|k| root_from_leaf_hashes(&self.leaves[k << base..(k + 1) << base])),
        );
        let mut j = 1;
        loop {
            let count = self.levels[j - 1].len() / 2;
            if count == 0 {
                self.levels.truncate(j);
                break;
            }
            if self.levels.len() == j {
                self.levels.push(Vec::new());
            }
            let (below, above) = self.levels.split_at_mut(j);
            let below = &below[j - 1];
            let level = &mut above[0];
            level.truncate(first_block >> j);
            let from = level.len();
            level.extend((from..count).map(|k| node_hash(&below[2 * k], &below[2 * k + 1])));
            j += 1;
        }
    }

    /// Root of the full aligned range of `2^t` leaves at `lo` (`t >= base`).
    fn level_node(&self, lo: usize, t: u32) -> Hash {
        self.levels[(t - self.base) as usize][lo >> t]
    }

    /// The right edge and the root, from the levels and the last leaves.
    fn update_spine(&mut self) {
        self.spine.clear();
        if self.n == 0 {
            self.root = empty_root();
            return;
        }
        // Starts and sizes of the perfect pieces of [0, n), largest first.
        let mut pieces = Vec::new();
        let mut s = 0;
        while s < self.n {
            let m = self.n - s;
            let size = if m.is_power_of_two() {
                m
            } else {
                split_point(m)
            };
            pieces.push((s, size));
            s += size;
        }
        let mut acc: Option<Hash> = None;
        for &(s, size) in pieces.iter().rev() {
            let t = size.trailing_zeros();
            let piece = if t >= self.base {
                self.level_node(s, t)
            } else {
                root_from_leaf_hashes(&self.leaves[s..s + size])
            };
            let h = match acc {
                None => piece,
                Some(right) => node_hash(&piece, &right),
            };
            self.spine.push((s, h));
            acc = Some(h);
        }
        self.spine.reverse();
        self.root = acc.expect("n > 0");
    }

    /// The leaf index of `account`'s ballot: O(log n + ANCHOR).
    pub(crate) fn position(
        &self,
        ballots: &BTreeMap<AccountId, Ballot>,
        account: &AccountId,
    ) -> Option<usize> {
        if !ballots.contains_key(account) {
            return None;
        }
        let anchor = self
            .anchors
            .partition_point(|a| a <= account)
            .checked_sub(1)?;
        let offset = ballots.range(self.anchors[anchor]..*account).count();
        Some(anchor * ANCHOR + offset)
    }

    /// The leaf hashes of the aligned `2^base` block holding leaf `i` (from
    /// the cache while open, re-hashed from the ballots once frozen) and
    /// its first index.
    fn block_leaves(&self, ballots: &BTreeMap<AccountId, Ballot>, i: usize) -> (usize, Vec<Hash>) {
        let lo = i >> self.base << self.base;
        let hi = (lo + (1 << self.base)).min(self.n);
        if self.frozen {
            // base == log2 ANCHOR: the block starts at an anchor.
            let hashes = ballots
                .range(self.anchors[lo / ANCHOR]..)
                .take(hi - lo)
                .map(|(a, b)| leaf_of(a, b).hash())
                .collect();
            (lo, hashes)
        } else {
            (lo, self.leaves[lo..hi].to_vec())
        }
    }

    /// Root of a node of the tree, range `[lo, hi)`: a right-edge node from
    /// the spine, a large perfect one from the levels, a small one from the
    /// leaves of its block (which holds the proven leaf).
    fn node(&self, lo: usize, hi: usize, block: &(usize, Vec<Hash>)) -> Hash {
        if hi == self.n {
            if let Ok(i) = self.spine.binary_search_by_key(&lo, |(s, _)| *s) {
                return self.spine[i].1;
            }
        }
        let size = hi - lo;
        debug_assert!(size.is_power_of_two() && lo.is_multiple_of(size));
        let t = size.trailing_zeros();
        if t >= self.base {
            self.level_node(lo, t)
        } else {
            root_from_leaf_hashes(&block.1[lo - block.0..hi - block.0])
        }
    }

    fn audit_path(
        &self,
        i: usize,
        lo: usize,
        hi: usize,
        block: &(usize, Vec<Hash>),
        out: &mut Vec<Hash>,
    ) {
        if hi - lo <= 1 {
            return;
        }
        let k = split_point(hi - lo);
        if i < lo + k {
            self.audit_path(i, lo, lo + k, block, out);
            out.push(self.node(lo + k, hi, block));
        } else {
            self.audit_path(i, lo + k, hi, block, out);
            out.push(self.node(lo, lo + k, block));
        }
    }

    /// The inclusion proof of `account`'s ballot: O(log n + ANCHOR).
    pub(crate) fn proof(
        &self,
        ballots: &BTreeMap<AccountId, Ballot>,
        account: &AccountId,
    ) -> Option<(BallotLeaf, InclusionProof)> {
        let i = self.position(ballots, account)?;
        let block = self.block_leaves(ballots, i);
        let mut path = Vec::new();
        self.audit_path(i, 0, self.n, &block, &mut path);
        Some((
            leaf_of(account, &ballots[account]),
            InclusionProof {
                leaf_index: i as u64,
                tree_size: self.n as u64,
                path,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::VoteChoice;
    use crate::tally::VoteBox;
    use crate::types::{Amount, BasisPoints, Timestamp};
    use proptest::prelude::*;

    fn account(i: u16) -> AccountId {
        // Spread over the key space, so new ballots land anywhere.
        let mut a = [0u8; 32];
        a[0] = (i.wrapping_mul(37) % 251) as u8;
        a[1..3].copy_from_slice(&i.to_be_bytes());
        AccountId(a)
    }

    fn vote() -> VoteBox {
        VoteBox::new(
            1,
            Timestamp(0),
            Timestamp(10),
            Amount(u64::MAX / 2),
            BasisPoints(0),
            BasisPoints(5_000),
        )
    }

    /// The kept root and every proof equal the full tree's.
    fn check(v: &VoteBox, probes: &[u16]) -> Result<(), TestCaseError> {
        let tree = v.tree();
        prop_assert!(v.index.0.is_current(&v.ballots));
        prop_assert_eq!(v.ballots_root(), tree.root());
        let accounts: Vec<AccountId> = v.ballots.keys().copied().collect();
        let mut picks: Vec<usize> = probes
            .iter()
            .filter(|_| !accounts.is_empty())
            .map(|p| usize::from(*p) % accounts.len())
            .collect();
        // The edges of the tree too.
        if !accounts.is_empty() {
            picks.extend([0, accounts.len() - 1]);
        }
        for i in picks {
            let (leaf, proof) = v.receipt(&accounts[i]).expect("a counted ballot");
            prop_assert_eq!(proof.clone(), tree.proof(i).expect("in the tree"));
            prop_assert!(proof.verify(&leaf, &tree.root()));
        }
        prop_assert!(v.receipt(&account(u16::MAX)).is_none());
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

        /// Casts (new ballots and re-votes) refreshed at random points keep
        /// the root and the proofs of the certificate format's tree, open
        /// and after the vote closes.
        #[test]
        fn the_kept_tree_is_the_certificate_tree(
            casts in prop::collection::vec((0u16..700, 1u8..=3, 1u64..1_000), 0..900),
            refresh_every in 1usize..300,
            probes in prop::collection::vec(any::<u16>(), 4),
        ) {
            let mut v = vote();
            v.refresh();
            check(&v, &probes)?;
            for (i, (who, choice, power)) in casts.into_iter().enumerate() {
                let choice = VoteChoice::from_code(choice).expect("1..=3");
                v.cast(account(who), crate::tally::Ballot { choice, power: Amount(power) });
                if i % refresh_every == 0 {
                    v.refresh();
                    check(&v, &probes)?;
                }
            }
            v.refresh();
            check(&v, &probes)?;
            v.close(99);
            prop_assert!(v.index.0.frozen);
            prop_assert!(v.index.0.leaves.is_empty());
            check(&v, &probes)?;
        }
    }

    /// A batch of re-votes only replaces leaves; the tree of a vote of
    /// every size up to a few blocks matches.
    #[test]
    fn re_votes_replace_leaves_at_every_size() {
        for n in [1u16, 2, 3, 31, 32, 33, 63, 64, 65, 96, 127, 128, 129, 200] {
            let mut v = vote();
            for i in 0..n {
                v.cast(
                    account(i),
                    crate::tally::Ballot {
                        choice: VoteChoice::Yes,
                        power: Amount(1),
                    },
                );
            }
            v.refresh();
            for i in (0..n).step_by(7) {
                v.cast(
                    account(i),
                    crate::tally::Ballot {
                        choice: VoteChoice::No,
                        power: Amount(2),
                    },
                );
            }
            v.refresh();
            assert_eq!(v.ballots_root(), v.tree().root(), "{n} ballots");
            for i in 0..n {
                let (leaf, proof) = v.receipt(&account(i)).expect("counted");
                assert!(proof.verify(&leaf, &v.ballots_root()), "{n} ballots, {i}");
            }
        }
    }
}
