//! `bls-threshold-g2-rfc9380`: threshold BLS on `blsttc`, IETF-interoperable.
//!
//! blsttc 8 hashes messages with `G2Projective::hash_to_curve(msg,
//! "BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_", [])`, i.e. blst's RFC 9380
//! `hash_to_g2` with the IETF basic ciphersuite DST (see `blsttc::DST`,
//! asserted equal to [`IETF_BASIC_DST`] in the tests). Keys are G1, signatures
//! G2, both in the zcash compressed encoding the IETF draft uses. So a
//! combined signature is `sk·H(m)` with `sk` the polynomial's constant term:
//! an ordinary basic-scheme BLS signature. `.ci/interop` checks this against
//! py_ecc's `G2Basic.Verify`.
//!
//! Group-key verification goes straight to blst (`min_pk`): same curve and
//! encoding, and its core verify is one two-term multi-pairing with a single
//! final exponentiation where blsttc computes two full pairings.

use blst::min_pk;
use blst::BLST_ERROR;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::batch;
use super::keys::{
    GroupKeyRepr, PublicKeySetRepr, SecretKeyShareRepr, SignatureRepr, SignatureShareRepr,
};
use super::{
    check_threshold, fixed, order_shares, DealtKeys, GroupPublicKey, PublicKeySet, SchemeError,
    SchemeId, SecretKeyShare, ShareIndex, Signature, SignatureShare, ThresholdScheme,
    GROUP_PUBLIC_KEY_BYTES, IETF_BASIC_DST, MAX_SHARES, SECRET_KEY_SHARE_BYTES, SIGNATURE_BYTES,
};

/// The default backend (unit type; get it with `SchemeId::G2Rfc9380.scheme()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct G2Rfc9380;

const ID: SchemeId = SchemeId::G2Rfc9380;

fn mismatch(what: &'static str, found: SchemeId) -> SchemeError {
    SchemeError::SchemeMismatch {
        what,
        expected: ID,
        found,
    }
}

fn key_set(keys: &PublicKeySet) -> Result<&blsttc::PublicKeySet, SchemeError> {
    match &keys.repr {
        PublicKeySetRepr::G2(k) => Ok(k),
        PublicKeySetRepr::Tc04(_) => Err(mismatch("public key set", SchemeId::Tc04)),
    }
}

fn share_of(share: &SignatureShare) -> Result<&blsttc::SignatureShare, SchemeError> {
    match &share.repr {
        SignatureShareRepr::G2(s) => Ok(s),
        SignatureShareRepr::Tc04(_) => Err(mismatch("signature share", SchemeId::Tc04)),
    }
}

pub(super) fn group_key_of(key: &GroupPublicKey) -> Result<&min_pk::PublicKey, SchemeError> {
    match &key.repr {
        GroupKeyRepr::G2(k) => Ok(k),
        GroupKeyRepr::Tc04(_) => Err(mismatch("group public key", SchemeId::Tc04)),
    }
}

pub(super) fn signature_of(sig: &Signature) -> Result<&min_pk::Signature, SchemeError> {
    match &sig.repr {
        SignatureRepr::G2(s) => Ok(s),
        SignatureRepr::Tc04(_) => Err(mismatch("signature", SchemeId::Tc04)),
    }
}

/// Validator `index`'s public key share and its signature share as blst
/// values (the share's point was subgroup-checked when it was parsed).
pub(super) fn blst_share(
    keys: &PublicKeySet,
    index: ShareIndex,
    share: &SignatureShare,
) -> Result<(min_pk::PublicKey, min_pk::Signature), SchemeError> {
    let set = key_set(keys)?;
    let share = share_of(share)?;
    if index.0 >= keys.n {
        return Err(SchemeError::UnknownIndex { index, n: keys.n });
    }
    let pk = min_pk::PublicKey::from_bytes(&set.public_key_share(index.0 as usize).to_bytes())
        .map_err(|_| SchemeError::BadEncoding {
            what: "public key share",
        })?;
    let sig =
        min_pk::Signature::from_bytes(&share.to_bytes()).map_err(|_| SchemeError::BadEncoding {
            what: "signature share",
        })?;
    Ok((pk, sig))
}

fn wrap_key_set(n: u32, keys: blsttc::PublicKeySet) -> Result<PublicKeySet, SchemeError> {
    let group_key = G2Rfc9380.group_public_key_from_bytes(&keys.public_key().to_bytes())?;
    Ok(PublicKeySet {
        n,
        group_key,
        repr: PublicKeySetRepr::G2(keys),
    })
}

impl ThresholdScheme for G2Rfc9380 {
    fn id(&self) -> SchemeId {
        ID
    }

    fn deal(&self, t: u32, n: u32, seed: &[u8; 32]) -> Result<DealtKeys, SchemeError> {
        check_threshold(t, n)?;
        let mut rng = ChaCha20Rng::from_seed(*seed);
        let secret = blsttc::SecretKeySet::try_random(t as usize, &mut rng)
            .map_err(|e| SchemeError::Library(e.to_string()))?;
        let public_key_set = wrap_key_set(n, secret.public_keys())?;
        let secret_key_shares = (0..n as usize)
            .map(|i| SecretKeyShare {
                repr: SecretKeyShareRepr::G2(secret.secret_key_share(i)),
            })
            .collect();
        Ok(DealtKeys {
            public_key_set,
            secret_key_shares,
        })
    }

    fn public_key_set_from_bytes(&self, bytes: &[u8]) -> Result<PublicKeySet, SchemeError> {
        let (n, coefficients) = split_key_set(bytes)?;
        let t = (coefficients.len() / GROUP_PUBLIC_KEY_BYTES - 1) as u32;
        check_threshold(t, n)?;
        let keys = blsttc::PublicKeySet::from_bytes(coefficients.to_vec()).map_err(|_| {
            SchemeError::BadEncoding {
                what: "public key set",
            }
        })?;
        wrap_key_set(n, keys)
    }

    fn secret_key_share_from_bytes(&self, bytes: &[u8]) -> Result<SecretKeyShare, SchemeError> {
        let raw = fixed::<SECRET_KEY_SHARE_BYTES>("secret key share", bytes)?;
        let share =
            blsttc::SecretKeyShare::from_bytes(raw).map_err(|_| SchemeError::BadEncoding {
                what: "secret key share",
            })?;
        Ok(SecretKeyShare {
            repr: SecretKeyShareRepr::G2(share),
        })
    }

    fn group_public_key_from_bytes(&self, bytes: &[u8]) -> Result<GroupPublicKey, SchemeError> {
        let raw = fixed::<GROUP_PUBLIC_KEY_BYTES>("group public key", bytes)?;
        // key_validate = decompress + on-curve + subgroup + not the identity.
        let key = min_pk::PublicKey::key_validate(&raw).map_err(|e| match e {
            BLST_ERROR::BLST_PK_IS_INFINITY => SchemeError::IdentityKey,
            _ => SchemeError::BadEncoding {
                what: "group public key",
            },
        })?;
        Ok(GroupPublicKey {
            scheme: ID,
            bytes: raw,
            repr: GroupKeyRepr::G2(key),
        })
    }

    fn signature_share_from_bytes(&self, bytes: &[u8]) -> Result<SignatureShare, SchemeError> {
        let raw = fixed::<SIGNATURE_BYTES>("signature share", bytes)?;
        // blstrs' from_compressed (under blsttc) checks curve and subgroup.
        let share =
            blsttc::SignatureShare::from_bytes(raw).map_err(|_| SchemeError::BadEncoding {
                what: "signature share",
            })?;
        Ok(SignatureShare {
            repr: SignatureShareRepr::G2(share),
        })
    }

    fn signature_from_bytes(&self, bytes: &[u8]) -> Result<Signature, SchemeError> {
        let raw = fixed::<SIGNATURE_BYTES>("signature", bytes)?;
        // Decompress, subgroup-check and refuse the identity once, here, so
        // single and batch verification can skip those checks.
        let sig = min_pk::Signature::sig_validate(&raw, true)
            .map_err(|_| SchemeError::BadEncoding { what: "signature" })?;
        Ok(Signature {
            scheme: ID,
            bytes: raw,
            repr: SignatureRepr::G2(sig),
        })
    }

    fn sign_share(&self, key: &SecretKeyShare, msg: &[u8]) -> Result<SignatureShare, SchemeError> {
        match &key.repr {
            SecretKeyShareRepr::G2(k) => Ok(SignatureShare {
                repr: SignatureShareRepr::G2(k.sign(msg)),
            }),
            SecretKeyShareRepr::Tc04(_) => Err(mismatch("secret key share", SchemeId::Tc04)),
        }
    }

    fn verify_share(
        &self,
        keys: &PublicKeySet,
        index: ShareIndex,
        share: &SignatureShare,
        msg: &[u8],
    ) -> Result<(), SchemeError> {
        let (pk, sig) = blst_share(keys, index, share)?;
        // One two-term multi-pairing (blst), not blsttc's two full
        // pairings; the share was subgroup-checked when parsed, the key
        // share is validated here (never the identity).
        match sig.verify(false, msg, IETF_BASIC_DST, &[], &pk, true) {
            BLST_ERROR::BLST_SUCCESS => Ok(()),
            _ => Err(SchemeError::InvalidShare { index }),
        }
    }

    fn verify_signature_and_shares(
        &self,
        keys: &PublicKeySet,
        signature: &Signature,
        shares: &[(ShareIndex, &SignatureShare)],
        msg: &[u8],
    ) -> Result<(), SchemeError> {
        let sig = signature_of(signature)?;
        let group = group_key_of(keys.group_public_key())?;
        if batch::verify_shares_same_message_with(keys, shares, msg, Some((group, sig)))? {
            return Ok(());
        }
        // Something is invalid: say what, as the separate checks would.
        self.verify(keys.group_public_key(), msg, signature)?;
        for (index, share) in shares {
            self.verify_share(keys, *index, share, msg)?;
        }
        Err(SchemeError::BadBatch {
            count: shares.len() + 1,
        })
    }

    fn verify_shares(
        &self,
        keys: &PublicKeySet,
        shares: &[(ShareIndex, &SignatureShare)],
        msg: &[u8],
    ) -> Result<(), SchemeError> {
        if let [(index, share)] = shares {
            return self.verify_share(keys, *index, share, msg);
        }
        if shares.is_empty() || batch::verify_shares_same_message(keys, shares, msg)? {
            return Ok(());
        }
        // At least one is invalid: name the first.
        for (index, share) in shares {
            self.verify_share(keys, *index, share, msg)?;
        }
        // Each verifies alone but not together: the batch scalars cancel
        // with probability about 2^-127; refuse rather than guess.
        Err(SchemeError::BadBatch {
            count: shares.len(),
        })
    }

    fn combine(
        &self,
        keys: &PublicKeySet,
        shares: &[(ShareIndex, SignatureShare)],
        msg: &[u8],
    ) -> Result<Signature, SchemeError> {
        let set = key_set(keys)?;
        let sorted = order_shares(set.threshold(), keys.n, shares)?;
        let checked: Vec<(ShareIndex, &SignatureShare)> =
            sorted.iter().map(|(i, s)| (*i, s)).collect();
        self.verify_shares(keys, &checked, msg)?;
        self.combine_verified(keys, shares, msg)
    }

    fn combine_verified(
        &self,
        keys: &PublicKeySet,
        shares: &[(ShareIndex, SignatureShare)],
        _msg: &[u8],
    ) -> Result<Signature, SchemeError> {
        let set = key_set(keys)?;
        let sorted = order_shares(set.threshold(), keys.n, shares)?;
        let chosen = sorted
            .iter()
            .take(set.threshold() + 1)
            .map(|(i, s)| share_of(s).map(|s| (i.0 as usize, s)))
            .collect::<Result<Vec<_>, _>>()?;
        let combined = set
            .combine_signatures(chosen)
            .map_err(|e| SchemeError::Library(e.to_string()))?;
        self.signature_from_bytes(&combined.to_bytes())
    }

    fn verify(&self, key: &GroupPublicKey, msg: &[u8], sig: &Signature) -> Result<(), SchemeError> {
        let pk = group_key_of(key)?;
        let s = signature_of(sig)?;
        // Both were validated when parsed: skip the group checks here.
        match s.verify(false, msg, IETF_BASIC_DST, &[], pk, false) {
            BLST_ERROR::BLST_SUCCESS => Ok(()),
            _ => Err(SchemeError::BadSignature),
        }
    }

    fn verify_batch(
        &self,
        key: &GroupPublicKey,
        items: &[(&[u8], &Signature)],
    ) -> Result<(), SchemeError> {
        batch::verify_same_key(key, items)
    }

    fn batches(&self) -> bool {
        true
    }
}

/// Splits a key set encoding into `n` and the coefficient bytes, checking
/// the length is 4 + a whole, non-zero number of 48-byte points.
pub(super) fn split_key_set(bytes: &[u8]) -> Result<(u32, &[u8]), SchemeError> {
    let max_len = 4 + MAX_SHARES as usize * GROUP_PUBLIC_KEY_BYTES;
    if bytes.len() < 4 + GROUP_PUBLIC_KEY_BYTES
        || bytes.len() > max_len
        || !(bytes.len() - 4).is_multiple_of(GROUP_PUBLIC_KEY_BYTES)
    {
        return Err(SchemeError::BadKeySetLength { len: bytes.len() });
    }
    let (n, coefficients) = bytes.split_at(4);
    let n = u32::from_be_bytes(fixed::<4>("committee size", n)?);
    Ok((n, coefficients))
}
