//! The ballots Merkle tree (DESIGN §5).
//!
//! The tree shape is RFC 6962's (Certificate Transparency): for `n > 1` leaves
//! the left subtree holds the largest power of two strictly below `n`, so no
//! leaf is ever duplicated and the shape is fixed by `n` alone. Hashes are
//! domain-separated: a leaf hashes `0x00 || leaf`, an inner node hashes
//! `0x01 || left || right`, so a leaf can never be presented as a node. The
//! root of the empty tree is `SHA-256("")`.
//!
//! A ballot leaf is `account (32 bytes) || choice (1 byte) || power (u64,
//! big-endian)`; leaves are sorted by account, one per account.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 digest.
pub type Hash = [u8; 32];

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// Largest tree a proof may describe: 2^32 leaves, so a path has at most 32 steps.
pub const MAX_PROOF_STEPS: usize = 32;

/// How a counted ballot voted, as encoded in a Merkle leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BallotChoice {
    Yes = 1,
    No = 2,
    Abstain = 3,
}

impl BallotChoice {
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Yes),
            2 => Some(Self::No),
            3 => Some(Self::Abstain),
            _ => None,
        }
    }
}

/// One counted ballot: the voter's account (ed25519 public key bytes), its
/// choice and the power it was counted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BallotLeaf {
    pub account: [u8; 32],
    pub choice: BallotChoice,
    pub power: u64,
}

/// Length in bytes of an encoded ballot leaf.
pub const BALLOT_LEAF_BYTES: usize = 32 + 1 + 8;

impl BallotLeaf {
    pub fn encode(&self) -> [u8; BALLOT_LEAF_BYTES] {
        let mut out = [0u8; BALLOT_LEAF_BYTES];
        out[..32].copy_from_slice(&self.account);
        out[32] = self.choice.code();
        out[33..].copy_from_slice(&self.power.to_be_bytes());
        out
    }

    pub fn hash(&self) -> Hash {
        leaf_hash(&self.encode())
    }
}

/// Hash of a leaf's bytes, domain-separated from inner nodes.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(leaf);
    h.finalize().into()
}

/// Hash of an inner node, domain-separated from leaves.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Largest power of two strictly below `n` (`n >= 2`).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1usize;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

fn root_of_hashes(hashes: &[Hash]) -> Hash {
    match hashes.len() {
        0 => empty_root(),
        1 => hashes[0],
        n => {
            let k = split_point(n);
            node_hash(&root_of_hashes(&hashes[..k]), &root_of_hashes(&hashes[k..]))
        }
    }
}

/// Root over already-hashed leaves, in the given order.
pub fn root_from_leaf_hashes(hashes: &[Hash]) -> Hash {
    root_of_hashes(hashes)
}

/// Why a set of ballots cannot form a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("ballot leaves must be sorted by account with one ballot per account (violated at index {index})")]
    NotSortedOrDuplicate { index: usize },
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a proof has {steps} steps, fewer than a tree of {size} leaves needs")]
    ProofTooShort { steps: usize, size: u64 },
    #[error("a proof has {steps} steps, more than the {max} a tree of {size} leaves needs")]
    ProofTooLong { steps: usize, max: usize, size: u64 },
}

/// A tree over counted ballots, kept as leaf hashes so proofs can be cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BallotTree {
    leaves: Vec<Hash>,
}

impl BallotTree {
    /// Builds the tree; `ballots` must be strictly sorted by account.
    pub fn new(ballots: &[BallotLeaf]) -> Result<Self, MerkleError> {
        for (i, pair) in ballots.windows(2).enumerate() {
            if pair[0].account >= pair[1].account {
                return Err(MerkleError::NotSortedOrDuplicate { index: i + 1 });
            }
        }
        Ok(Self {
            leaves: ballots.iter().map(BallotLeaf::hash).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    pub fn root(&self) -> Hash {
        root_of_hashes(&self.leaves)
    }

    /// The inclusion proof of leaf `index`.
    pub fn proof(&self, index: usize) -> Result<InclusionProof, MerkleError> {
        if index >= self.leaves.len() {
            return Err(MerkleError::IndexOutOfRange {
                index: index as u64,
                size: self.leaves.len() as u64,
            });
        }
        let mut path = Vec::new();
        audit_path(index, &self.leaves, &mut path);
        Ok(InclusionProof {
            leaf_index: index as u64,
            tree_size: self.leaves.len() as u64,
            path,
        })
    }
}

/// RFC 6962 §2.1.1 audit path, deepest sibling first.
fn audit_path(index: usize, hashes: &[Hash], out: &mut Vec<Hash>) {
    let n = hashes.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if index < k {
        audit_path(index, &hashes[..k], out);
        out.push(root_of_hashes(&hashes[k..]));
    } else {
        audit_path(index - k, &hashes[k..], out);
        out.push(root_of_hashes(&hashes[..k]));
    }
}

/// Proof that a leaf sits at `leaf_index` of a tree of `tree_size` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    /// Sibling hashes from the leaf up to the root (hex in JSON).
    #[serde(with = "hex_hashes")]
    pub path: Vec<Hash>,
}

impl InclusionProof {
    /// Recomputes the root from `leaf` and the path (RFC 9162 §2.1.3.2).
    pub fn root_for(&self, leaf: &Hash) -> Result<Hash, MerkleError> {
        if self.leaf_index >= self.tree_size {
            return Err(MerkleError::IndexOutOfRange {
                index: self.leaf_index,
                size: self.tree_size,
            });
        }
        if self.path.len() > MAX_PROOF_STEPS {
            return Err(MerkleError::ProofTooLong {
                steps: self.path.len(),
                max: MAX_PROOF_STEPS,
                size: self.tree_size,
            });
        }
        let mut fnode = self.leaf_index;
        let mut snode = self.tree_size - 1;
        let mut r = *leaf;
        for p in &self.path {
            if snode == 0 {
                return Err(MerkleError::ProofTooLong {
                    steps: self.path.len(),
                    max: self.path.len() - 1,
                    size: self.tree_size,
                });
            }
            if fnode & 1 == 1 || fnode == snode {
                r = node_hash(p, &r);
                if fnode & 1 == 0 {
                    while fnode & 1 == 0 && fnode != 0 {
                        fnode >>= 1;
                        snode >>= 1;
                    }
                }
            } else {
                r = node_hash(&r, p);
            }
            fnode >>= 1;
            snode >>= 1;
        }
        if snode != 0 {
            return Err(MerkleError::ProofTooShort {
                steps: self.path.len(),
                size: self.tree_size,
            });
        }
        Ok(r)
    }

    /// True iff `ballot` is included under `root` at this proof's position.
    pub fn verify(&self, ballot: &BallotLeaf, root: &Hash) -> bool {
        matches!(self.root_for(&ballot.hash()), Ok(r) if r == *root)
    }
}

mod hex_hashes {
    use super::Hash;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(hex::encode))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        let strings = Vec::<String>::deserialize(d)?;
        if strings.len() > super::MAX_PROOF_STEPS {
            return Err(D::Error::custom("merkle path longer than 32 steps"));
        }
        strings
            .iter()
            .map(|s| {
                let bytes = hex::decode(s).map_err(D::Error::custom)?;
                <Hash>::try_from(bytes.as_slice())
                    .map_err(|_| D::Error::custom("hash is not 32 bytes"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ballots(n: usize) -> Vec<BallotLeaf> {
        (0..n)
            .map(|i| {
                let mut account = [0u8; 32];
                account[..8].copy_from_slice(&(i as u64).to_be_bytes());
                BallotLeaf {
                    account,
                    choice: BallotChoice::from_code((i % 3) as u8 + 1).unwrap(),
                    power: 1_000 + i as u64,
                }
            })
            .collect()
    }

    #[test]
    fn empty_and_single_roots() {
        assert_eq!(BallotTree::new(&[]).unwrap().root(), empty_root());
        let one = ballots(1);
        assert_eq!(BallotTree::new(&one).unwrap().root(), one[0].hash());
    }

    #[test]
    fn three_leaves_have_rfc6962_shape() {
        let b = ballots(3);
        let expect = node_hash(&node_hash(&b[0].hash(), &b[1].hash()), &b[2].hash());
        assert_eq!(BallotTree::new(&b).unwrap().root(), expect);
    }

    #[test]
    fn unsorted_or_duplicate_accounts_are_refused() {
        let mut b = ballots(3);
        b.swap(1, 2);
        assert_eq!(
            BallotTree::new(&b),
            Err(MerkleError::NotSortedOrDuplicate { index: 2 })
        );
        let mut d = ballots(2);
        d[1].account = d[0].account;
        assert_eq!(
            BallotTree::new(&d),
            Err(MerkleError::NotSortedOrDuplicate { index: 1 })
        );
    }

    #[test]
    fn a_leaf_cannot_pass_as_a_node() {
        let b = ballots(2);
        let tree = BallotTree::new(&b).unwrap();
        // Present the concatenation of the two leaf hashes as if it were one leaf.
        let mut fake = Vec::new();
        fake.extend_from_slice(&b[0].hash());
        fake.extend_from_slice(&b[1].hash());
        assert_ne!(leaf_hash(&fake), tree.root());
    }

    proptest! {
        #[test]
        fn every_leaf_proves_and_altered_proofs_fail(
            raw in prop::collection::vec((any::<[u8; 32]>(), 1u8..=3, any::<u64>()), 1..70),
            pick in any::<prop::sample::Index>(),
            flip in 0usize..32,
        ) {
            // Random ballots in account order (the tree's precondition).
            let mut b: Vec<BallotLeaf> = raw
                .into_iter()
                .map(|(account, choice, power)| BallotLeaf {
                    account,
                    choice: BallotChoice::from_code(choice).unwrap(),
                    power,
                })
                .collect();
            b.sort_by_key(|l| l.account);
            b.dedup_by_key(|l| l.account);
            let n = b.len();
            let tree = BallotTree::new(&b).unwrap();
            let root = tree.root();
            for (i, leaf) in b.iter().enumerate() {
                let proof = tree.proof(i).unwrap();
                prop_assert!(proof.verify(leaf, &root));
            }
            let i = pick.index(n);
            let proof = tree.proof(i).unwrap();
            // Another ballot at the same place fails.
            let mut other = b[i];
            other.power = other.power.wrapping_add(1);
            prop_assert!(!proof.verify(&other, &root));
            let mut other = b[i];
            other.choice = if other.choice == BallotChoice::Yes { BallotChoice::No } else { BallotChoice::Yes };
            prop_assert!(!proof.verify(&other, &root));
            // An altered path fails.
            if !proof.path.is_empty() {
                let mut bad = proof.clone();
                let step = flip % bad.path.len();
                bad.path[step][flip] ^= 1;
                prop_assert!(!bad.verify(&b[i], &root));
                let mut short = proof.clone();
                short.path.pop();
                prop_assert!(!short.verify(&b[i], &root));
            }
            // A wrong index fails unless it happens to be the same leaf.
            if n > 1 {
                let mut moved = proof.clone();
                moved.leaf_index = ((i + 1) % n) as u64;
                prop_assert!(!moved.verify(&b[i], &root));
            }
            let mut long = proof.clone();
            long.path.push([7u8; 32]);
            prop_assert!(!long.verify(&b[i], &root));
        }
    }
}
