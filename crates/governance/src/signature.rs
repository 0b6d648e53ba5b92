//! ed25519 verification of command signatures, one at a time or in batches,
//! by the `ed25519-zebra` crate under the ZIP-215 rules.
//!
//! ZIP-215 fixes the edge cases that RFC 8032 leaves open: `A` and `R` may be
//! any point encoding (non-canonical ones included), `s` must be canonical,
//! and the check is the *cofactored* equation `[8][s]B = [8]R + [8][k]A`.
//! Cofactorless single checks and cofactored batch checks disagree on crafted
//! signatures with small-order components, so under those rules a replica
//! that batched differently from another could accept a command the other
//! refused. Under ZIP-215 single and batch verification accept exactly the
//! same signatures, so a command's validity never depends on how the node
//! grouped entries into a batch. Every standard RFC 8032 signature (the
//! `ed25519-dalek` signer that [`crate::SignedCommand::sign`] uses) is valid.

use ed25519_zebra::batch;
use ed25519_zebra::{Signature, VerificationKey, VerificationKeyBytes};
use rand_010::rngs::{StdRng, SysRng};
use rand_010::SeedableRng;

use crate::limits::MAX_VERIFY_BATCH;
use crate::types::AccountId;

/// One signature to check: the author's key, the signed message, the signature.
pub type BatchItem<'a> = (&'a AccountId, &'a [u8], &'a [u8; 64]);

/// Signatures checked by this process so far (each item of a batch counts
/// once, and again if its batch failed and it is checked alone): the
/// benchmark's proof that every replica verifies every command.
static VERIFICATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Signatures checked by this process so far (see `VERIFICATIONS`).
pub fn verification_count() -> u64 {
    VERIFICATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

fn counted(n: usize) {
    VERIFICATIONS.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
}

/// True iff `signature` is `author`'s signature of `message` (ZIP-215).
pub fn verify_one(author: &AccountId, message: &[u8], signature: &[u8; 64]) -> bool {
    counted(1);
    let Ok(key) = VerificationKey::try_from(author.0) else {
        return false;
    };
    key.verify(&Signature::from_bytes(signature), message)
        .is_ok()
}

/// True iff every signature is valid. Batches of at most [`MAX_VERIFY_BATCH`];
/// an empty list is vacuously valid.
pub fn verify_batch(items: &[BatchItem<'_>]) -> bool {
    items.chunks(MAX_VERIFY_BATCH).all(|chunk| {
        counted(chunk.len());
        let prepared: Vec<batch::Item> = chunk.iter().map(prepare).collect();
        batch_holds(&prepared)
    })
}

/// The exact verdict of [`verify_one`] for every item, in order, computed
/// with batch verification where it can: each chunk of at most
/// [`MAX_VERIFY_BATCH`] is checked as one batch, and only a chunk whose batch
/// fails is checked one signature at a time, so one bad signature costs its
/// chunk a second pass but refuses only its own entry. A lone item is
/// checked alone at once (no batch equation, no generator to seed).
pub fn verify_each(items: &[BatchItem<'_>]) -> Vec<bool> {
    let mut verdicts = Vec::with_capacity(items.len());
    for chunk in items.chunks(MAX_VERIFY_BATCH) {
        counted(chunk.len());
        if let [item] = chunk {
            verdicts.push(prepare(item).verify_single().is_ok());
            continue;
        }
        let prepared: Vec<batch::Item> = chunk.iter().map(prepare).collect();
        if batch_holds(&prepared) {
            verdicts.extend(std::iter::repeat_n(true, prepared.len()));
        } else {
            counted(prepared.len());
            verdicts.extend(prepared.into_iter().map(|i| i.verify_single().is_ok()));
        }
    }
    verdicts
}

/// Hashes the challenge `k = SHA-512(R || A || M)` once, for the batch and,
/// if the batch fails, for the single check as well.
fn prepare(&(author, message, signature): &BatchItem<'_>) -> batch::Item {
    batch::Item::from((
        VerificationKeyBytes::from(author.0),
        Signature::from_bytes(signature),
        message,
    ))
}

/// One ZIP-215 batch equation over `items` (all valid ⇒ true; any invalid ⇒
/// false except with probability 2^-128).
///
/// The 128-bit coefficients of the random linear combination are random, and
/// ed25519-zebra pairs them with signatures in its own hash-map order. That is
/// fine for a replicated state machine: the coefficients never decide a
/// command's fate, because a batch that fails is redone as exact, deterministic
/// single checks ([`verify_each`], `GovernanceState::apply_batch`), and a batch
/// passes only if every signature in it is valid. If the OS cannot seed the
/// generator the batch reports failure, which again means exact single checks.
fn batch_holds(items: &[batch::Item]) -> bool {
    if items.is_empty() {
        return true;
    }
    let Ok(rng) = StdRng::try_from_rng(&mut SysRng) else {
        return false;
    };
    let mut verifier = batch::Verifier::new();
    for item in items {
        verifier.queue(item.clone());
    }
    verifier.verify(rng).is_ok()
}

/// Verdicts remembered by [`memo_key`] (the most recent [`MEMO_CAPACITY`]).
///
/// A verdict is a pure function of (author, message, signature), so a
/// validator may reuse the verdict it reached when it admitted a command,
/// or when the entry carrying it arrived ([`verify_commands`], run beside
/// the entry's fsync), instead of checking the signature again under the
/// state's lock at apply. Only this module's own checks fill the memo;
/// nothing a peer sends is ever taken as a verdict. A miss only costs a
/// check: apply verifies whatever the memo does not hold.
struct Memo {
    verdicts: std::collections::HashMap<[u8; 32], bool>,
    order: std::collections::VecDeque<[u8; 32]>,
}

/// Verdicts the memo keeps (about 48 bytes each with the map's overhead).
pub const MEMO_CAPACITY: usize = 32 * 1024;

static MEMO: std::sync::Mutex<Option<Memo>> = std::sync::Mutex::new(None);

/// [`usable_account_key`]'s verdicts (two point decompressions each, which
/// every transfer's admission and apply asked again for the same
/// receivers), keyed by the account bytes, the most recent
/// [`MEMO_CAPACITY`].
static USABLE_KEYS: std::sync::Mutex<Option<Memo>> = std::sync::Mutex::new(None);

/// The memo's key of one signature check: SHA-256 over a domain tag, the
/// author, the signature and the message.
pub fn memo_key(author: &AccountId, message: &[u8], signature: &[u8; 64]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"neuroshard/signature-verdict/v1");
    h.update(author.0);
    h.update(signature);
    h.update(message);
    h.finalize().into()
}

/// The remembered verdict of a check, if any.
pub fn recall(key: &[u8; 32]) -> Option<bool> {
    recall_in(&MEMO, key)
}

fn recall_in(memo: &std::sync::Mutex<Option<Memo>>, key: &[u8; 32]) -> Option<bool> {
    let memo = memo.lock().unwrap_or_else(|p| p.into_inner());
    memo.as_ref().and_then(|m| m.verdicts.get(key).copied())
}

fn remember(keys_and_verdicts: impl IntoIterator<Item = ([u8; 32], bool)>) {
    remember_in(&MEMO, keys_and_verdicts)
}

fn remember_in(
    memo: &std::sync::Mutex<Option<Memo>>,
    keys_and_verdicts: impl IntoIterator<Item = ([u8; 32], bool)>,
) {
    let mut memo = memo.lock().unwrap_or_else(|p| p.into_inner());
    let memo = memo.get_or_insert_with(|| Memo {
        verdicts: std::collections::HashMap::with_capacity(MEMO_CAPACITY),
        order: std::collections::VecDeque::with_capacity(MEMO_CAPACITY),
    });
    for (key, verdict) in keys_and_verdicts {
        if memo.verdicts.insert(key, verdict).is_none() {
            if memo.order.len() >= MEMO_CAPACITY {
                if let Some(old) = memo.order.pop_front() {
                    memo.verdicts.remove(&old);
                }
            }
            memo.order.push_back(key);
        }
    }
}

/// [`verify_one`], remembering its verdict (admission's check).
pub fn verify_one_remembered(author: &AccountId, message: &[u8], signature: &[u8; 64]) -> bool {
    let key = memo_key(author, message, signature);
    if let Some(v) = recall(&key) {
        return v;
    }
    let v = verify_one(author, message, signature);
    remember([(key, v)]);
    v
}

/// The verdict of every command's signature (as [`verify_each`] gives it),
/// checking in batches only those the memo does not hold, and remembering
/// the new verdicts. `chain_id` is the chain the messages are signed for.
pub fn verify_commands(chain_id: &str, commands: &[&crate::SignedCommand]) -> Vec<bool> {
    let messages: Vec<Vec<u8>> = commands.iter().map(|c| c.message(chain_id)).collect();
    let keys: Vec<[u8; 32]> = commands
        .iter()
        .zip(&messages)
        .map(|(c, m)| memo_key(&c.author, m, &c.signature.0))
        .collect();
    let mut verdicts: Vec<Option<bool>> = keys.iter().map(recall).collect();
    let missing: Vec<usize> = (0..commands.len())
        .filter(|&i| verdicts[i].is_none())
        .collect();
    if !missing.is_empty() {
        let items: Vec<BatchItem<'_>> = missing
            .iter()
            .map(|&i| {
                (
                    &commands[i].author,
                    messages[i].as_slice(),
                    &commands[i].signature.0,
                )
            })
            .collect();
        let checked = verify_each(&items);
        remember(missing.iter().zip(&checked).map(|(&i, &v)| (keys[i], v)));
        for (&i, v) in missing.iter().zip(checked) {
            verdicts[i] = Some(v);
        }
    }
    verdicts.into_iter().map(|v| v.unwrap_or(false)).collect()
}

/// True iff `account` can be an account: its bytes decode to a curve point
/// (else nobody could ever sign for it) that is not of small order. Under
/// ZIP-215 a small-order key verifies the signature `(R, s) = (small-order
/// point, 0)` on *every* message, so anybody could sign for it; refusing such
/// keys where accounts are created (genesis, `Transfer`) means no account ever
/// has one. Signatures themselves are still checked by the plain ZIP-215
/// rules, so this choice never makes replicas disagree on a signature.
pub fn usable_account_key(account: &AccountId) -> bool {
    if let Some(v) = recall_in(&USABLE_KEYS, &account.0) {
        return v;
    }
    let usable = VerificationKey::try_from(account.0).is_ok()
        && ed25519_dalek::VerifyingKey::from_bytes(&account.0).is_ok_and(|k| !k.is_weak());
    remember_in(&USABLE_KEYS, [(account.0, usable)]);
    usable
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(i: u8) -> SigningKey {
        SigningKey::from_bytes(&[i; 32])
    }

    /// Five standard signatures over different messages by different keys.
    struct Signed {
        ids: Vec<AccountId>,
        msgs: Vec<Vec<u8>>,
        sigs: Vec<[u8; 64]>,
    }

    fn signed(n: u8) -> Signed {
        let keys: Vec<SigningKey> = (1..=n).map(key).collect();
        let msgs: Vec<Vec<u8>> = (0..n).map(|i| vec![i; 10 + i as usize]).collect();
        Signed {
            ids: keys
                .iter()
                .map(|k| AccountId(k.verifying_key().to_bytes()))
                .collect(),
            sigs: keys
                .iter()
                .zip(&msgs)
                .map(|(k, m)| k.sign(m).to_bytes())
                .collect(),
            msgs,
        }
    }

    impl Signed {
        fn items(&self) -> Vec<BatchItem<'_>> {
            (0..self.ids.len())
                .map(|i| (&self.ids[i], self.msgs[i].as_slice(), &self.sigs[i]))
                .collect()
        }
    }

    /// Single, batch and per-entry verdicts agree on `items`.
    fn assert_agree(items: &[BatchItem<'_>]) -> Vec<bool> {
        let singles: Vec<bool> = items.iter().map(|&(a, m, s)| verify_one(a, m, s)).collect();
        assert_eq!(verify_each(items), singles);
        assert_eq!(verify_batch(items), singles.iter().all(|v| *v));
        singles
    }

    #[test]
    fn standard_signatures_verify_one_and_in_batch() {
        let s = signed(5);
        assert_eq!(assert_agree(&s.items()), vec![true; 5]);
        assert!(verify_batch(&[]));
        assert!(verify_each(&[]).is_empty());
    }

    #[test]
    fn one_bad_signature_refuses_exactly_its_entry() {
        let s = signed(6);
        let other = b"other".to_vec();
        let mut flipped = s.sigs[4];
        flipped[10] ^= 1;
        let mut items = s.items();
        items[2] = (&s.ids[2], other.as_slice(), &s.sigs[2]);
        assert_eq!(
            assert_agree(&items),
            vec![true, true, false, true, true, true]
        );
        items[2] = s.items()[2];
        items[4] = (&s.ids[4], s.msgs[4].as_slice(), &flipped);
        assert_eq!(
            assert_agree(&items),
            vec![true, true, true, true, false, true]
        );
        // The same signature under another author's key.
        items[4] = (&s.ids[0], s.msgs[4].as_slice(), &s.sigs[4]);
        assert_eq!(
            assert_agree(&items),
            vec![true, true, true, true, false, true]
        );
    }

    #[test]
    fn non_canonical_s_is_refused_single_and_in_batch() {
        let s = signed(3);
        let mut high_s = s.sigs[0];
        high_s[63] |= 0xf0;
        let mut items = s.items();
        items[0] = (&s.ids[0], s.msgs[0].as_slice(), &high_s);
        assert_eq!(assert_agree(&items), vec![false, true, true]);
    }

    /// Encodings of small-order points (the 8-torsion), canonical and not:
    /// the identity (y = 1), its non-canonical twin y = p + 1, the point of
    /// order 2 (y = −1), and the order-4 points (y = 0, both signs of x).
    fn small_order_encodings() -> Vec<[u8; 32]> {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        // p + 1 = 2^255 − 18, little-endian.
        let mut identity_non_canonical = [0xffu8; 32];
        identity_non_canonical[0] = 0xee;
        identity_non_canonical[31] = 0x7f;
        // p − 1 = 2^255 − 20.
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        let order_four = [0u8; 32];
        let mut order_four_negative = [0u8; 32];
        order_four_negative[31] = 0x80;
        vec![
            identity,
            identity_non_canonical,
            minus_one,
            order_four,
            order_four_negative,
        ]
    }

    /// With `A` and `R` of small order and `s = 0`, the cofactored equation
    /// holds for any message, while RFC 8032's cofactorless check and strict
    /// verifiers refuse most of these. ZIP-215 accepts them all, and batch and
    /// single verification must say the same, alone and mixed with standard
    /// signatures and with a bad one.
    #[test]
    fn small_order_and_non_canonical_encodings_agree_single_and_batch() {
        let encodings = small_order_encodings();
        let mut ids = Vec::new();
        let mut sigs = Vec::new();
        for a in &encodings {
            for r in &encodings {
                ids.push(AccountId(*a));
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(r);
                sigs.push(sig);
            }
        }
        let message = b"any message at all".as_slice();
        let crafted: Vec<BatchItem<'_>> = ids
            .iter()
            .zip(&sigs)
            .map(|(a, s)| (a, message, s))
            .collect();
        assert_eq!(assert_agree(&crafted), vec![true; crafted.len()]);

        // Mixed with standard signatures, and with one of them broken.
        let s = signed(4);
        let mut mixed = s.items();
        mixed.extend(crafted.iter().copied());
        assert!(assert_agree(&mixed).iter().all(|v| *v));
        let other = b"other".to_vec();
        mixed[1] = (&s.ids[1], other.as_slice(), &s.sigs[1]);
        let verdicts = assert_agree(&mixed);
        assert_eq!(verdicts.iter().filter(|v| !**v).count(), 1);
        assert!(!verdicts[1]);

        // Anybody can sign for a small-order key, so none is a usable account.
        assert!(encodings
            .iter()
            .all(|a| !usable_account_key(&AccountId(*a))));

        // A small-order R with a non-zero s does not satisfy the equation.
        let mut bad = sigs[0];
        bad[32] = 1;
        assert_eq!(assert_agree(&[(&ids[0], message, &bad)]), vec![false]);
    }

    #[test]
    fn undecodable_key_or_r_is_refused_single_and_in_batch() {
        // y = 2 is not the y-coordinate of any curve point.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert!(!usable_account_key(&AccountId(off_curve)));
        let s = signed(3);
        let mut bad_r = s.sigs[1];
        bad_r[..32].copy_from_slice(&off_curve);
        let bad_key = AccountId(off_curve);
        let mut items = s.items();
        items[0] = (&bad_key, s.msgs[0].as_slice(), &s.sigs[0]);
        items[1] = (&s.ids[1], s.msgs[1].as_slice(), &bad_r);
        assert_eq!(assert_agree(&items), vec![false, false, true]);
        assert!(usable_account_key(&s.ids[2]));
    }

    #[test]
    fn batches_larger_than_the_limit_are_split_and_agree() {
        let k = key(7);
        let id = AccountId(k.verifying_key().to_bytes());
        let n = MAX_VERIFY_BATCH + 3;
        let msgs: Vec<Vec<u8>> = (0..n as u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut sigs: Vec<[u8; 64]> = msgs.iter().map(|m| k.sign(m).to_bytes()).collect();
        // One bad signature in the second chunk only.
        sigs[n - 1][0] ^= 1;
        let items: Vec<BatchItem<'_>> = msgs
            .iter()
            .zip(&sigs)
            .map(|(m, s)| (&id, m.as_slice(), s))
            .collect();
        let verdicts = assert_agree(&items);
        assert!(verdicts[..n - 1].iter().all(|v| *v));
        assert!(!verdicts[n - 1]);
        assert!(verify_batch(&items[..MAX_VERIFY_BATCH]));
    }
}
