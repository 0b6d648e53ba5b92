//! ed25519 verification of command signatures, one at a time or in batches.
//!
//! Both paths check the same *cofactored* equation `[8]([s]B − R − [k]A) = 0`
//! (the ZIP-215 rule), with `s` canonical and `k = SHA-512(R || A || M)`.
//! Cofactorless verification and cofactorless batch verification disagree on
//! crafted signatures with small-order components, so a replica that batched
//! differently from another could accept a command the other refused. With
//! one cofactored equation for both, a command's validity never depends on how
//! the node grouped entries into a batch. Every standard ed25519 signature
//! (RFC 8032 signer, e.g. `ed25519-dalek`) satisfies it.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

use crate::limits::MAX_VERIFY_BATCH;
use crate::types::AccountId;

/// A signature parsed into its parts, with the challenge computed.
struct Prepared {
    a: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

fn prepare(author: &AccountId, message: &[u8], signature: &[u8; 64]) -> Option<Prepared> {
    let a = CompressedEdwardsY(author.0).decompress()?;
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&signature[..32]);
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&signature[32..]);
    let s: Option<Scalar> = Scalar::from_canonical_bytes(s_bytes).into();
    let s = s?;
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(author.0);
    h.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    Some(Prepared { a, r, s, k })
}

/// True iff `signature` is `author`'s signature of `message`.
pub fn verify_one(author: &AccountId, message: &[u8], signature: &[u8; 64]) -> bool {
    let Some(p) = prepare(author, message, signature) else {
        return false;
    };
    // [s]B - [k]A - R, then clear the cofactor.
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&(-p.k), &p.a, &p.s);
    (sb_minus_ka - p.r).mul_by_cofactor().is_identity()
}

/// True iff every signature is valid (up to 2^-128 for adversarial inputs:
/// random-linear-combination batching). Deterministic: the coefficients are
/// derived from a hash of every input, never from an RNG.
pub fn verify_batch(items: &[(&AccountId, &[u8], &[u8; 64])]) -> bool {
    items.chunks(MAX_VERIFY_BATCH).all(verify_chunk)
}

fn verify_chunk(items: &[(&AccountId, &[u8], &[u8; 64])]) -> bool {
    let mut prepared = Vec::with_capacity(items.len());
    // Coefficients z_i: 128-bit values from SHA-512 over all signed inputs,
    // so a signer cannot choose its own coefficient after seeing the others.
    let mut transcript = Sha512::new();
    transcript.update(b"neuroshard/batch-verify/v1");
    for (author, message, signature) in items {
        let Some(p) = prepare(author, message, signature) else {
            return false;
        };
        transcript.update(author.0);
        transcript.update(signature);
        transcript.update((message.len() as u64).to_be_bytes());
        transcript.update(message);
        prepared.push(p);
    }
    let seed: [u8; 64] = transcript.finalize().into();
    let mut b_coefficient = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(2 * prepared.len());
    let mut points = Vec::with_capacity(2 * prepared.len());
    for (i, p) in prepared.iter().enumerate() {
        let mut h = Sha512::new();
        h.update(seed);
        h.update((i as u64).to_be_bytes());
        let wide: [u8; 64] = h.finalize().into();
        let mut z_bytes = [0u8; 32];
        z_bytes[..16].copy_from_slice(&wide[..16]);
        let z = Scalar::from_bytes_mod_order(z_bytes);
        b_coefficient += z * p.s;
        scalars.push(-z);
        points.push(p.r);
        scalars.push(-(z * p.k));
        points.push(p.a);
    }
    // Σ z_i([s_i]B − R_i − [k_i]A_i) = [Σ z_i s_i]B − Σ z_i R_i − Σ z_i k_i A_i
    let sum = EdwardsPoint::vartime_multiscalar_mul(
        std::iter::once(b_coefficient).chain(scalars),
        std::iter::once(curve25519_dalek::constants::ED25519_BASEPOINT_POINT).chain(points),
    );
    sum.mul_by_cofactor().is_identity()
}

/// `Some(())` iff the account bytes are a valid curve point (an ed25519 key
/// that can sign). Used to refuse accounts nobody could ever sign for.
pub fn decompress_ok(account: &AccountId) -> Option<()> {
    CompressedEdwardsY(account.0).decompress().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(i: u8) -> SigningKey {
        SigningKey::from_bytes(&[i; 32])
    }

    #[test]
    fn standard_signatures_verify_one_and_in_batch() {
        let msgs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10 + i as usize]).collect();
        let keys: Vec<SigningKey> = (1..=5).map(key).collect();
        let ids: Vec<AccountId> = keys
            .iter()
            .map(|k| AccountId(k.verifying_key().to_bytes()))
            .collect();
        let sigs: Vec<[u8; 64]> = keys
            .iter()
            .zip(&msgs)
            .map(|(k, m)| k.sign(m).to_bytes())
            .collect();
        for i in 0..5 {
            assert!(verify_one(&ids[i], &msgs[i], &sigs[i]));
        }
        let items: Vec<_> = (0..5)
            .map(|i| (&ids[i], msgs[i].as_slice(), &sigs[i]))
            .collect();
        assert!(verify_batch(&items));

        // One wrong message breaks the batch and the single check.
        let bad = b"other".to_vec();
        assert!(!verify_one(&ids[2], &bad, &sigs[2]));
        let mut items_bad = items.clone();
        items_bad[2] = (&ids[2], bad.as_slice(), &sigs[2]);
        assert!(!verify_batch(&items_bad));

        // A non-canonical s is refused.
        let mut high_s = sigs[0];
        high_s[63] |= 0xf0;
        assert!(!verify_one(&ids[0], &msgs[0], &high_s));
        assert!(verify_batch(&[]));
    }
}
