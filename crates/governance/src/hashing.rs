//! The pieces of the incrementally maintained state hash (`state.rs`,
//! `GovernanceState::state_hash`; ARCHITECTURE.md, "The state hash").
//!
//! Every collection that can grow with the state is a [`HashedMap`] (or a
//! [`HashedSet`]): the ordered map the rules read and write (reads through
//! `Deref`), plus a Merkle commitment to it that is not serialized. A
//! mutation through the wrapper (`get_mut`, `insert`, `remove`, `entry`)
//! records its key; [`HashedMap::flush`] re-hashes each recorded entry once
//! and the tree nodes above it. The state calls it at the end of every
//! `apply` and `apply_batch`, so a read never hashes anything.
//!
//! The commitment of a collection is the root of a binary crit-bit
//! (PATRICIA) Merkle trie over its entries, keyed by the key's fixed-width
//! bytes ([`TrieKey`]):
//!
//! * the empty collection: `SHA-256("neuroshard/state/v2/empty")`;
//! * an entry: `leaf = SHA-256(0x00 ‖ key (32 bytes) ‖ digest(value))`;
//! * a set of two or more entries splits at the first bit (most significant
//!   first) in which their keys differ: `node = SHA-256(0x01 ‖ root(keys
//!   with 0 there) ‖ root(keys with 1 there))`.
//!
//! The shape is a function of the key set alone (not of the order of
//! inserts and removals), so equal collections have equal roots on every
//! replica; an update re-hashes one path (its length is the number of keys
//! that share a prefix with it: about log2 n). Leaves and nodes have
//! distinct prefixes and fixed lengths, and every leaf carries its whole
//! key, so two different collections with the same root give a SHA-256
//! collision. A value's digest is `SHA-256(tag ‖ postcard(value))` with a
//! tag per record type ([`StateEntry`]); a proposal keeps its vote's digest
//! apart (the ballots Merkle root, `ballot_index.rs`), so a vote never
//! re-hashes the proposal's content or its other ballots.

use std::collections::{btree_map, BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::types::{AccountId, NepId};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Domain of the state hash (`format::STATE_HASH_VERSION`).
pub(crate) const STATE_DOMAIN: &[u8] = b"neuroshard/state/v2";
const EMPTY_TAG: &[u8] = b"neuroshard/state/v2/empty";
const MEMBER_TAG: &[u8] = b"neuroshard/state/v2/member";

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// Root of an empty collection.
pub(crate) fn empty_root() -> Hash {
    static EMPTY: OnceLock<Hash> = OnceLock::new();
    *EMPTY.get_or_init(|| Sha256::digest(EMPTY_TAG).into())
}

/// The digest every member of a set carries.
fn member_digest() -> Hash {
    static MEMBER: OnceLock<Hash> = OnceLock::new();
    *MEMBER.get_or_init(|| Sha256::digest(MEMBER_TAG).into())
}

pub(crate) fn leaf_hash(key: &[u8; 32], digest: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(key);
    h.update(digest);
    h.finalize().into()
}

pub(crate) fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// A postcard output that hashes what it is given (through a small buffer)
/// instead of keeping it: no allocation, whatever the value's size.
struct HashWriter {
    hasher: Sha256,
    buffer: [u8; 256],
    len: usize,
}

impl postcard::ser_flavors::Flavor for HashWriter {
    type Output = Hash;

    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        if self.len == self.buffer.len() {
            self.hasher.update(self.buffer);
            self.len = 0;
        }
        self.buffer[self.len] = b;
        self.len += 1;
        Ok(())
    }

    fn try_extend(&mut self, b: &[u8]) -> postcard::Result<()> {
        if self.len + b.len() > self.buffer.len() {
            self.hasher.update(&self.buffer[..self.len]);
            self.len = 0;
            if b.len() >= self.buffer.len() {
                self.hasher.update(b);
                return Ok(());
            }
        }
        self.buffer[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<Hash> {
        self.hasher.update(&self.buffer[..self.len]);
        Ok(self.hasher.finalize().into())
    }
}

/// `SHA-256(tag ‖ postcard(value))`, streamed.
pub(crate) fn digest_of<T: Serialize + ?Sized>(tag: &[u8], value: &T) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(tag);
    let writer = HashWriter {
        hasher,
        buffer: [0; 256],
        len: 0,
    };
    // Plain values and ordered collections: encoding cannot fail.
    postcard::serialize_with_flavor(value, writer).expect("state values encode")
}

/// A cache inside a state record: never serialized, compared or printed.
#[derive(Clone, Default)]
pub(crate) struct Cached<T>(pub(crate) T);

impl<T> PartialEq for Cached<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for Cached<T> {}

impl<T> fmt::Debug for Cached<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cached")
    }
}

/// The fixed-width bytes a collection's key is placed by in its trie
/// (its order is the key's order).
pub(crate) trait TrieKey: Ord + Clone {
    fn trie_key(&self) -> [u8; 32];
}

impl TrieKey for AccountId {
    fn trie_key(&self) -> [u8; 32] {
        self.0
    }
}

impl TrieKey for u64 {
    fn trie_key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&self.to_be_bytes());
        k
    }
}

impl TrieKey for NepId {
    fn trie_key(&self) -> [u8; 32] {
        self.0.trie_key()
    }
}

/// A value of a hashed collection.
pub(crate) trait StateEntry {
    /// The value's digest, refreshing caches inside it. `whole` is false
    /// when only the part recorded by `HashedMap::get_mut_part` changed
    /// (a proposal's vote).
    fn digest(&mut self, whole: bool) -> Hash;
    /// The same digest computed from scratch, reading no cache (tests and
    /// debug builds compare the two).
    fn digest_from_scratch(&self) -> Hash;
}

/// `StateEntry` for a value hashed whole: `SHA-256(tag ‖ postcard(value))`.
macro_rules! plain_state_entry {
    ($t:ty, $tag:expr) => {
        impl $crate::hashing::StateEntry for $t {
            fn digest(&mut self, _whole: bool) -> $crate::hashing::Hash {
                $crate::hashing::digest_of($tag, self)
            }
            fn digest_from_scratch(&self) -> $crate::hashing::Hash {
                $crate::hashing::digest_of($tag, self)
            }
        }
    };
}
pub(crate) use plain_state_entry;

plain_state_entry!(u32, b"neuroshard/state/v2/count");

/// Index of a leaf or a branch in the trie's arenas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NodeRef(u32);

const LEAF_FLAG: u32 = 1 << 31;

impl NodeRef {
    fn leaf(i: usize) -> Self {
        Self(u32::try_from(i).expect("fewer than 2^31 trie leaves") | LEAF_FLAG)
    }
    fn branch(i: usize) -> Self {
        Self(u32::try_from(i).expect("fewer than 2^31 trie branches"))
    }
    fn is_leaf(self) -> bool {
        self.0 & LEAF_FLAG != 0
    }
    fn index(self) -> usize {
        (self.0 & !LEAF_FLAG) as usize
    }
}

#[derive(Clone, Debug)]
struct TrieLeaf {
    key: [u8; 32],
    hash: Hash,
}

#[derive(Clone, Debug)]
struct TrieBranch {
    hash: Hash,
    child: [NodeRef; 2],
    /// The bit the two sides differ in (0 = most significant).
    bit: u16,
    /// The hash is stale: something below changed since the last rehash.
    dirty: bool,
}

/// Where a node hangs: the root, or a side of a branch.
#[derive(Clone, Copy)]
enum Slot {
    Root,
    Child(usize, usize),
}

fn bit_of(key: &[u8; 32], bit: u16) -> usize {
    usize::from((key[usize::from(bit / 8)] >> (7 - bit % 8)) & 1)
}

/// The first bit two keys differ in.
fn crit_bit(a: &[u8; 32], b: &[u8; 32]) -> Option<u16> {
    a.iter().zip(b).enumerate().find_map(|(i, (x, y))| {
        let d = x ^ y;
        (d != 0).then(|| (i * 8) as u16 + d.leading_zeros() as u16)
    })
}

/// The crit-bit Merkle trie (module docs), with cached node hashes.
#[derive(Clone, Debug, Default)]
pub(crate) struct MerkleTrie {
    leaves: Vec<TrieLeaf>,
    branches: Vec<TrieBranch>,
    free_leaves: Vec<usize>,
    free_branches: Vec<usize>,
    root: Option<NodeRef>,
}

impl MerkleTrie {
    fn alloc_leaf(&mut self, leaf: TrieLeaf) -> NodeRef {
        match self.free_leaves.pop() {
            Some(i) => {
                self.leaves[i] = leaf;
                NodeRef::leaf(i)
            }
            None => {
                self.leaves.push(leaf);
                NodeRef::leaf(self.leaves.len() - 1)
            }
        }
    }

    fn alloc_branch(&mut self, branch: TrieBranch) -> NodeRef {
        match self.free_branches.pop() {
            Some(i) => {
                self.branches[i] = branch;
                NodeRef::branch(i)
            }
            None => {
                self.branches.push(branch);
                NodeRef::branch(self.branches.len() - 1)
            }
        }
    }

    fn at(&self, slot: Slot) -> Option<NodeRef> {
        match slot {
            Slot::Root => self.root,
            Slot::Child(b, side) => Some(self.branches[b].child[side]),
        }
    }

    fn set(&mut self, slot: Slot, node: NodeRef) {
        match slot {
            Slot::Root => self.root = Some(node),
            Slot::Child(b, side) => self.branches[b].child[side] = node,
        }
    }

    /// Marks every branch on `key`'s path stale.
    fn mark_path(&mut self, key: &[u8; 32]) {
        let mut node = self.root;
        while let Some(n) = node.filter(|n| !n.is_leaf()) {
            let b = &mut self.branches[n.index()];
            b.dirty = true;
            node = Some(b.child[bit_of(key, b.bit)]);
        }
    }

    /// Sets the leaf hash of `key`, inserting it if absent.
    pub(crate) fn upsert(&mut self, key: [u8; 32], hash: Hash) {
        let Some(root) = self.root else {
            let leaf = self.alloc_leaf(TrieLeaf { key, hash });
            self.root = Some(leaf);
            return;
        };
        // The leaf the key's bits lead to shares the longest prefix with it.
        // Its path is marked stale on the way: the whole path if the key is
        // there (the common case: one descent), else at least every
        // ancestor of the new leaf (a few below it are re-hashed needlessly).
        let mut node = root;
        while !node.is_leaf() {
            let b = &mut self.branches[node.index()];
            b.dirty = true;
            node = b.child[bit_of(&key, b.bit)];
        }
        let Some(bit) = crit_bit(&self.leaves[node.index()].key, &key) else {
            self.leaves[node.index()].hash = hash;
            return;
        };
        // The new branch goes above the first node that splits below `bit`.
        let mut slot = Slot::Root;
        while let Some(n) = self.at(slot).filter(|n| !n.is_leaf()) {
            let b = &mut self.branches[n.index()];
            if b.bit > bit {
                break;
            }
            slot = Slot::Child(n.index(), bit_of(&key, b.bit));
        }
        let existing = self.at(slot).expect("a slot below the root holds a node");
        let leaf = self.alloc_leaf(TrieLeaf { key, hash });
        let side = bit_of(&key, bit);
        let mut child = [existing; 2];
        child[side] = leaf;
        let branch = self.alloc_branch(TrieBranch {
            hash: [0; 32],
            child,
            bit,
            dirty: true,
        });
        self.set(slot, branch);
    }

    /// Removes `key`'s leaf, if any.
    pub(crate) fn remove(&mut self, key: &[u8; 32]) {
        let Some(root) = self.root else {
            return;
        };
        if root.is_leaf() {
            if self.leaves[root.index()].key == *key {
                self.free_leaves.push(root.index());
                self.root = None;
            }
            return;
        }
        let mut slot = Slot::Root;
        let mut node = root;
        loop {
            let b = &self.branches[node.index()];
            let side = bit_of(key, b.bit);
            let next = b.child[side];
            if next.is_leaf() {
                if self.leaves[next.index()].key != *key {
                    return;
                }
                let sibling = b.child[1 - side];
                self.set(slot, sibling);
                self.free_leaves.push(next.index());
                self.free_branches.push(node.index());
                self.mark_path(key);
                return;
            }
            slot = Slot::Child(node.index(), side);
            node = next;
        }
    }

    fn rehash(&mut self, node: NodeRef) -> Hash {
        if node.is_leaf() {
            return self.leaves[node.index()].hash;
        }
        let b = &self.branches[node.index()];
        if !b.dirty {
            return b.hash;
        }
        let [l, r] = b.child;
        let h = node_hash(&self.rehash(l), &self.rehash(r));
        let b = &mut self.branches[node.index()];
        b.hash = h;
        b.dirty = false;
        h
    }

    /// The root, re-hashing the stale branches (each once).
    pub(crate) fn root_hash(&mut self) -> Hash {
        match self.root {
            None => empty_root(),
            Some(r) => self.rehash(r),
        }
    }
}

/// The root of the trie over `entries` (sorted by key, unique), computed
/// from the definition alone — the reference the cached trie is checked
/// against.
pub(crate) fn root_from_scratch(entries: &[([u8; 32], Hash)]) -> Hash {
    match entries {
        [] => empty_root(),
        [(key, digest)] => leaf_hash(key, digest),
        [first, .., last] => {
            let bit = crit_bit(&first.0, &last.0).expect("keys are unique");
            let split = entries.partition_point(|(k, _)| bit_of(k, bit) == 0);
            node_hash(
                &root_from_scratch(&entries[..split]),
                &root_from_scratch(&entries[split..]),
            )
        }
    }
}

/// An ordered map with an incrementally maintained Merkle root (module
/// docs). Reads go through `Deref` to the `BTreeMap`; every mutation goes
/// through a method here, which records the key.
#[derive(Clone)]
pub(crate) struct HashedMap<K, V> {
    map: BTreeMap<K, V>,
    trie: MerkleTrie,
    /// Keys changed since the last flush (repeats allowed, sorted and merged
    /// at the flush); `true` if the whole value changed.
    dirty: Vec<(K, bool)>,
    root: Hash,
}

impl<K, V> Default for HashedMap<K, V> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            trie: MerkleTrie::default(),
            dirty: Vec::new(),
            root: empty_root(),
        }
    }
}

impl<K, V> Deref for HashedMap<K, V> {
    type Target = BTreeMap<K, V>;
    fn deref(&self) -> &BTreeMap<K, V> {
        &self.map
    }
}

impl<'a, K, V> IntoIterator for &'a HashedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = btree_map::Iter<'a, K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

impl<K: PartialEq, V: PartialEq> PartialEq for HashedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<K: Eq, V: Eq> Eq for HashedMap<K, V> {}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for HashedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.map.fmt(f)
    }
}

/// Encoded exactly as the `BTreeMap` it holds.
impl<K: Serialize, V: Serialize> Serialize for HashedMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(s)
    }
}

impl<K: TrieKey, V: StateEntry> HashedMap<K, V> {
    /// The map with its trie built.
    pub(crate) fn from_map(map: BTreeMap<K, V>) -> Self {
        let mut m = Self {
            map,
            ..Self::default()
        };
        m.rebuild();
        m
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let v = self.map.get_mut(key)?;
        self.dirty.push((key.clone(), true));
        Some(v)
    }

    /// Like `get_mut`, for a change to the value's separately hashed part
    /// only (`StateEntry::digest` with `whole == false`).
    pub(crate) fn get_mut_part(&mut self, key: &K) -> Option<&mut V> {
        let v = self.map.get_mut(key)?;
        self.dirty.push((key.clone(), false));
        Some(v)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.dirty.push((key.clone(), true));
        self.map.insert(key, value)
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let removed = self.map.remove(key);
        if removed.is_some() {
            self.dirty.push((key.clone(), true));
        }
        removed
    }

    pub(crate) fn entry(&mut self, key: K) -> btree_map::Entry<'_, K, V> {
        self.dirty.push((key.clone(), true));
        self.map.entry(key)
    }

    /// Re-hashes every entry changed since the last flush and the trie
    /// nodes above them; O(changed entries × trie depth).
    pub(crate) fn flush(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        dirty.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            kept.1 |= same && later.1;
            same
        });
        for (key, whole) in dirty {
            let k = key.trie_key();
            match self.map.get_mut(&key) {
                Some(v) => {
                    let digest = v.digest(whole);
                    self.trie.upsert(k, leaf_hash(&k, &digest));
                }
                None => self.trie.remove(&k),
            }
        }
        self.root = self.trie.root_hash();
    }

    /// Rebuilds the trie from every entry (snapshot load, genesis).
    pub(crate) fn rebuild(&mut self) {
        self.dirty.clear();
        self.trie = MerkleTrie::default();
        for (key, v) in self.map.iter_mut() {
            let k = key.trie_key();
            let digest = v.digest(true);
            self.trie.upsert(k, leaf_hash(&k, &digest));
        }
        self.root = self.trie.root_hash();
    }

    /// The root as of the last flush: O(1).
    pub(crate) fn root(&self) -> Hash {
        debug_assert!(self.dirty.is_empty(), "a hashed map read before its flush");
        self.root
    }

    pub(crate) fn is_flushed(&self) -> bool {
        self.dirty.is_empty()
    }

    /// The root from the definition, reading no cache: O(n).
    pub(crate) fn root_from_scratch(&self) -> Hash {
        let mut entries: Vec<([u8; 32], Hash)> = self
            .map
            .iter()
            .map(|(k, v)| (k.trie_key(), v.digest_from_scratch()))
            .collect();
        entries.sort_by_key(|a| a.0);
        root_from_scratch(&entries)
    }
}

/// An ordered set with an incrementally maintained Merkle root: a
/// [`HashedMap`] whose every value has the same digest.
#[derive(Clone)]
pub(crate) struct HashedSet<K> {
    set: BTreeSet<K>,
    trie: MerkleTrie,
    /// Keys changed since the last flush (repeats allowed).
    dirty: Vec<K>,
    root: Hash,
}

impl<K> Default for HashedSet<K> {
    fn default() -> Self {
        Self {
            set: BTreeSet::new(),
            trie: MerkleTrie::default(),
            dirty: Vec::new(),
            root: empty_root(),
        }
    }
}

impl<K> Deref for HashedSet<K> {
    type Target = BTreeSet<K>;
    fn deref(&self) -> &BTreeSet<K> {
        &self.set
    }
}

impl<'a, K> IntoIterator for &'a HashedSet<K> {
    type Item = &'a K;
    type IntoIter = std::collections::btree_set::Iter<'a, K>;
    fn into_iter(self) -> Self::IntoIter {
        self.set.iter()
    }
}

impl<K: PartialEq> PartialEq for HashedSet<K> {
    fn eq(&self, other: &Self) -> bool {
        self.set == other.set
    }
}

impl<K: Eq> Eq for HashedSet<K> {}

impl<K: fmt::Debug> fmt::Debug for HashedSet<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.set.fmt(f)
    }
}

/// Encoded exactly as the `BTreeSet` it holds.
impl<K: Serialize> Serialize for HashedSet<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.set.serialize(s)
    }
}

impl<K: TrieKey> HashedSet<K> {
    pub(crate) fn from_set(set: BTreeSet<K>) -> Self {
        let mut s = Self {
            set,
            ..Self::default()
        };
        s.rebuild();
        s
    }

    pub(crate) fn insert(&mut self, key: K) -> bool {
        self.dirty.push(key.clone());
        self.set.insert(key)
    }

    pub(crate) fn remove(&mut self, key: &K) -> bool {
        let removed = self.set.remove(key);
        if removed {
            self.dirty.push(key.clone());
        }
        removed
    }

    pub(crate) fn flush(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let member = member_digest();
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for key in dirty {
            let k = key.trie_key();
            if self.set.contains(&key) {
                self.trie.upsert(k, leaf_hash(&k, &member));
            } else {
                self.trie.remove(&k);
            }
        }
        self.root = self.trie.root_hash();
    }

    pub(crate) fn rebuild(&mut self) {
        self.dirty.clear();
        self.trie = MerkleTrie::default();
        let member = member_digest();
        for key in &self.set {
            let k = key.trie_key();
            self.trie.upsert(k, leaf_hash(&k, &member));
        }
        self.root = self.trie.root_hash();
    }

    pub(crate) fn root(&self) -> Hash {
        debug_assert!(self.dirty.is_empty(), "a hashed set read before its flush");
        self.root
    }

    pub(crate) fn is_flushed(&self) -> bool {
        self.dirty.is_empty()
    }

    pub(crate) fn root_from_scratch(&self) -> Hash {
        let member = member_digest();
        let mut entries: Vec<([u8; 32], Hash)> =
            self.set.iter().map(|k| (k.trie_key(), member)).collect();
        entries.sort_by_key(|a| a.0);
        root_from_scratch(&entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(i: u64) -> [u8; 32] {
        // Spread keys over the whole width, with shared prefixes too.
        let mut k: [u8; 32] = Sha256::digest(i.to_be_bytes()).into();
        if i.is_multiple_of(3) {
            k[..4].copy_from_slice(&[0xAB; 4]);
        }
        k
    }

    proptest! {
        /// After any sequence of upserts and removals the cached trie's root
        /// equals the definition's over the same entries.
        #[test]
        fn the_trie_root_follows_the_definition(
            ops in prop::collection::vec((0u64..48, any::<bool>(), any::<u8>()), 0..200),
            flush_every in 1usize..20,
        ) {
            let mut trie = MerkleTrie::default();
            let mut model: BTreeMap<[u8; 32], Hash> = BTreeMap::new();
            for (i, (k, insert, v)) in ops.into_iter().enumerate() {
                let k = key(k);
                if insert {
                    let h = leaf_hash(&k, &[v; 32]);
                    trie.upsert(k, h);
                    model.insert(k, [v; 32]);
                } else {
                    trie.remove(&k);
                    model.remove(&k);
                }
                if i % flush_every == 0 {
                    let entries: Vec<_> = model.iter().map(|(k, d)| (*k, *d)).collect();
                    prop_assert_eq!(trie.root_hash(), root_from_scratch(&entries));
                }
            }
            let entries: Vec<_> = model.iter().map(|(k, d)| (*k, *d)).collect();
            prop_assert_eq!(trie.root_hash(), root_from_scratch(&entries));
        }
    }

    #[test]
    fn the_root_does_not_depend_on_insertion_order() {
        let mut a = MerkleTrie::default();
        let mut b = MerkleTrie::default();
        for i in 0..100 {
            a.upsert(key(i), leaf_hash(&key(i), &[1; 32]));
            b.upsert(key(99 - i), leaf_hash(&key(99 - i), &[1; 32]));
        }
        // An entry added and removed again leaves no trace.
        b.upsert(key(500), [9; 32]);
        b.root_hash();
        b.remove(&key(500));
        assert_eq!(a.root_hash(), b.root_hash());
        b.upsert(key(7), leaf_hash(&key(7), &[2; 32]));
        assert_ne!(a.root_hash(), b.root_hash());
    }

    #[test]
    fn the_domain_names_the_hash_version() {
        assert_eq!(
            STATE_DOMAIN,
            format!("neuroshard/state/v{}", crate::format::STATE_HASH_VERSION).as_bytes()
        );
    }

    #[test]
    fn empty_single_and_pair_roots() {
        let mut t = MerkleTrie::default();
        assert_eq!(t.root_hash(), empty_root());
        let (k0, k1) = ([0u8; 32], [0xFFu8; 32]);
        t.upsert(k1, leaf_hash(&k1, &[5; 32]));
        assert_eq!(t.root_hash(), leaf_hash(&k1, &[5; 32]));
        t.upsert(k0, leaf_hash(&k0, &[6; 32]));
        assert_eq!(
            t.root_hash(),
            node_hash(&leaf_hash(&k0, &[6; 32]), &leaf_hash(&k1, &[5; 32]))
        );
        t.remove(&k1);
        t.remove(&k0);
        assert_eq!(t.root_hash(), empty_root());
    }
}
