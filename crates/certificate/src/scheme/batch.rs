//! Batch verification of many signatures under one group key (random linear
//! combination), for the default scheme.
//!
//! For signatures `σ_i` on messages `m_i` under one key `pk`, pick scalars
//! `r_i` and check
//!
//! ```text
//! e(pk, Σ r_i·H(m_i)) == e(g1, Σ r_i·σ_i)
//! ```
//!
//! If every `σ_i = sk·H(m_i)` both sides are equal. If some are not, the
//! equation holds only if the `r_i` happen to cancel the errors, which has
//! probability about 2^-127 for the 128-bit `r_i` (lowest bit forced to 1) that
//! the signer cannot predict.
//! Because the key is shared, the whole batch costs one hash-to-curve per
//! message, two multi-scalar multiplications (Pippenger) and a single
//! two-term pairing check, instead of a pairing per signature. Hashing is
//! spread over the available cores (`crate::parallel`), as blst already does
//! for the multi-scalar multiplications.
//!
//! The `r_i` are derived, not drawn: `r_i = SHA-256(tag || T || i)[..16]`
//! where `T` is SHA-256 over the key and every (message, signature). They are
//! fixed only after every signature is, so a forger cannot aim at them
//! (the Fiat–Shamir argument), and verification needs no OS randomness and
//! gives the same answer every time. Signatures were subgroup-checked when
//! parsed, which the argument needs (a small-order component could otherwise
//! vanish under some `r_i`).

use blst::{blst_fp12, blst_p1_affine, blst_p2, blst_p2_affine, min_pk, p2_affines};
use blsttc::blstrs::{G1Affine, G2Affine, G2Projective};
use blsttc::group::prime::PrimeCurveAffine;
use blsttc::group::Group;
use sha2::{Digest, Sha256};

use super::g2_rfc9380::{blst_share, group_key_of, signature_of};
use super::{
    GroupPublicKey, PublicKeySet, SchemeError, ShareIndex, Signature, SignatureShare,
    IETF_BASIC_DST,
};

/// Bits of each random scalar.
pub const BATCH_SCALAR_BITS: usize = 128;
/// Most signatures one batch call accepts (bounds memory: ~300 bytes each).
pub const MAX_BATCH_SIGNATURES: usize = 100_000;

const SCALAR_TAG: &[u8] = b"neuroshard-certificate/batch-scalars/v1";

/// Verifies every `(message, signature)` of `items` under `key` at once.
pub(super) fn verify_same_key(
    key: &GroupPublicKey,
    items: &[(&[u8], &Signature)],
) -> Result<(), SchemeError> {
    let pk = group_key_of(key)?;
    if items.is_empty() {
        return Ok(());
    }
    if items.len() > MAX_BATCH_SIGNATURES {
        return Err(SchemeError::TooManyInBatch {
            count: items.len(),
            max: MAX_BATCH_SIGNATURES,
        });
    }
    let sigs = items
        .iter()
        .map(|(_, s)| signature_of(s).copied())
        .collect::<Result<Vec<min_pk::Signature>, _>>()?;
    let scalars = derive_scalars(key, items);

    // Σ r_i·σ_i (signatures were group-checked at parse time).
    let sig_sum = min_pk::AggregateSignature::aggregate_with_randomness(
        &sigs,
        &scalars,
        BATCH_SCALAR_BITS,
        false,
    )
    .map_err(|_| SchemeError::BadBatch { count: items.len() })?
    .to_signature();
    let sig_sum: blst_p2_affine = sig_sum.into();

    // Σ r_i·H(m_i), H being the same RFC 9380 hash the single verify uses.
    let hashes: Vec<blst_p2> = crate::parallel::map(items, |(msg, _)| {
        *G2Projective::hash_to_curve(msg, IETF_BASIC_DST, &[]).as_ref()
    });
    let hash_sum = to_affine(p2_affines::from(&hashes).mult(&scalars, BATCH_SCALAR_BITS));

    let pk_point: &blst_p1_affine = pk.into();
    let g1 = G1Affine::generator();
    let left = blst_fp12::miller_loop(&hash_sum, pk_point);
    let right = blst_fp12::miller_loop(&sig_sum, g1.as_ref());
    if blst_fp12::finalverify(&left, &right) {
        Ok(())
    } else {
        Err(SchemeError::BadBatch { count: items.len() })
    }
}

const SHARE_SCALAR_TAG: &[u8] = b"neuroshard-certificate/share-batch-scalars/v1";

/// Checks several validators' shares on one message with one pairing check:
/// with scalars `r_i` fixed by a transcript of the key set, the message and
/// every (index, share),
///
/// ```text
/// e(Σ r_i·pk_i, H(m)) == e(g1, Σ r_i·σ_i)
/// ```
///
/// i.e. `Σ r_i·σ_i` must be a signature on `m` under `Σ r_i·pk_i`. Valid
/// shares always pass; a set with an invalid share passes with probability
/// about 2^-127 (the argument of [`verify_same_key`], with the keys varying
/// and the message fixed). Returns false when the check fails (some share
/// is invalid: the caller finds which).
pub(super) fn verify_shares_same_message(
    keys: &PublicKeySet,
    shares: &[(ShareIndex, &SignatureShare)],
    msg: &[u8],
) -> Result<bool, SchemeError> {
    verify_shares_same_message_with(keys, shares, msg, None)
}

/// [`verify_shares_same_message`], with one more (key, signature) pair on
/// the same message in the same check (a combined signature under the
/// group key: validated when parsed).
pub(super) fn verify_shares_same_message_with(
    keys: &PublicKeySet,
    shares: &[(ShareIndex, &SignatureShare)],
    msg: &[u8],
    extra: Option<(&min_pk::PublicKey, &min_pk::Signature)>,
) -> Result<bool, SchemeError> {
    if shares.len() >= MAX_BATCH_SIGNATURES {
        return Err(SchemeError::TooManyInBatch {
            count: shares.len(),
            max: MAX_BATCH_SIGNATURES,
        });
    }
    let mut pks = Vec::with_capacity(shares.len());
    let mut sigs = Vec::with_capacity(shares.len());
    let mut transcript = Sha256::new();
    transcript.update(SHARE_SCALAR_TAG);
    transcript.update(keys.to_bytes());
    transcript.update((msg.len() as u64).to_be_bytes());
    transcript.update(msg);
    for (index, share) in shares {
        let (pk, sig) = blst_share(keys, *index, share)?;
        // A key share at the identity would make its share vanish from
        // the sum: validate each (on the curve, in the group, not zero).
        pk.validate()
            .map_err(|_| SchemeError::InvalidShare { index: *index })?;
        transcript.update(index.0.to_be_bytes());
        transcript.update(sig.compress());
        pks.push(pk);
        sigs.push(sig);
    }
    if let Some((pk, sig)) = extra {
        transcript.update(b"group");
        transcript.update(pk.compress());
        transcript.update(sig.compress());
        pks.push(*pk);
        sigs.push(*sig);
    }
    if pks.is_empty() {
        return Ok(true);
    }
    let scalars = scalars_from(SHARE_SCALAR_TAG, &transcript.finalize(), pks.len());
    let pk_sum = min_pk::AggregatePublicKey::aggregate_with_randomness(
        &pks,
        &scalars,
        BATCH_SCALAR_BITS,
        false,
    )
    .map_err(|_| SchemeError::BadBatch {
        count: shares.len(),
    })?
    .to_public_key();
    let sig_sum = min_pk::AggregateSignature::aggregate_with_randomness(
        &sigs,
        &scalars,
        BATCH_SCALAR_BITS,
        false,
    )
    .map_err(|_| SchemeError::BadBatch {
        count: shares.len(),
    })?
    .to_signature();
    Ok(matches!(
        sig_sum.verify(false, msg, IETF_BASIC_DST, &[], &pk_sum, false),
        blst::BLST_ERROR::BLST_SUCCESS
    ))
}

/// 16 little-endian bytes per item (blst's scalar layout), never all zero.
fn derive_scalars(key: &GroupPublicKey, items: &[(&[u8], &Signature)]) -> Vec<u8> {
    let mut transcript = Sha256::new();
    transcript.update(SCALAR_TAG);
    transcript.update(key.to_bytes());
    transcript.update((items.len() as u64).to_be_bytes());
    for (msg, sig) in items {
        transcript.update((msg.len() as u64).to_be_bytes());
        transcript.update(msg);
        transcript.update(sig.to_bytes());
    }
    scalars_from(SCALAR_TAG, &transcript.finalize(), items.len())
}

/// `count` scalars of 16 little-endian bytes (blst's layout), the i-th
/// `SHA-256(tag || transcript || i)[..16]`, never zero (lowest bit set: a
/// zero scalar would drop its signature from the check).
fn scalars_from(tag: &[u8], transcript: &[u8], count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * BATCH_SCALAR_BITS / 8);
    for i in 0..count as u64 {
        let digest = Sha256::new()
            .chain_update(tag)
            .chain_update(transcript)
            .chain_update(i.to_be_bytes())
            .finalize();
        let mut scalar = [0u8; BATCH_SCALAR_BITS / 8];
        scalar.copy_from_slice(&digest[..BATCH_SCALAR_BITS / 8]);
        scalar[0] |= 1;
        out.extend_from_slice(&scalar);
    }
    out
}

fn to_affine(point: blst_p2) -> blst_p2_affine {
    let mut projective = G2Projective::identity();
    *projective.as_mut() = point;
    *G2Affine::from(projective).as_ref()
}
