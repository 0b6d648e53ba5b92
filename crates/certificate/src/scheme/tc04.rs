//! `bls-threshold-tc04`: threshold BLS on `threshold_crypto` 0.4.
//!
//! Same curve, same key and signature layout (G1 keys, G2 signatures, zcash
//! compressed encoding), but `threshold_crypto` hashes a message to G2 as
//! `G2::random(ChaCha(SHA3-256(msg)))`, which no standard follows: these
//! signatures verify only here. Its batch verification is a loop of single
//! verifications (the library has no multi-pairing API to build one on).
//!
//! `threshold_crypto` exposes a key set's commitment and a secret share's
//! scalar only through serde, so the byte conversions below go through
//! `serde_json` values; the formats are the module-level ones in `scheme`.

use rand_chacha_02::rand_core::SeedableRng;
use rand_chacha_02::ChaChaRng;
use serde_json::Value;
use threshold_crypto::ff::PrimeField;
use threshold_crypto::serde_impl::SerdeSecret;
use threshold_crypto::{Fr, FrRepr};

use super::g2_rfc9380::split_key_set;
use super::keys::{
    GroupKeyRepr, PublicKeySetRepr, SecretKeyShareRepr, SignatureRepr, SignatureShareRepr,
};
use super::{
    check_threshold, fixed, order_shares, DealtKeys, GroupPublicKey, PublicKeySet, SchemeError,
    SchemeId, SecretKeyShare, ShareIndex, Signature, SignatureShare, ThresholdScheme,
    GROUP_PUBLIC_KEY_BYTES, SECRET_KEY_SHARE_BYTES, SIGNATURE_BYTES,
};

/// The comparison backend (unit type; get it with `SchemeId::Tc04.scheme()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tc04;

const ID: SchemeId = SchemeId::Tc04;

/// Compressed encoding of the G1 identity (infinity flag set).
const IDENTITY_G1: [u8; GROUP_PUBLIC_KEY_BYTES] = {
    let mut b = [0u8; GROUP_PUBLIC_KEY_BYTES];
    b[0] = 0xc0;
    b
};

fn mismatch(what: &'static str, found: SchemeId) -> SchemeError {
    SchemeError::SchemeMismatch {
        what,
        expected: ID,
        found,
    }
}

fn key_set(keys: &PublicKeySet) -> Result<&threshold_crypto::PublicKeySet, SchemeError> {
    match &keys.repr {
        PublicKeySetRepr::Tc04(k) => Ok(k),
        PublicKeySetRepr::G2(_) => Err(mismatch("public key set", SchemeId::G2Rfc9380)),
    }
}

fn share_of(share: &SignatureShare) -> Result<&threshold_crypto::SignatureShare, SchemeError> {
    match &share.repr {
        SignatureShareRepr::Tc04(s) => Ok(s),
        SignatureShareRepr::G2(_) => Err(mismatch("signature share", SchemeId::G2Rfc9380)),
    }
}

fn wrap_key_set(n: u32, keys: threshold_crypto::PublicKeySet) -> Result<PublicKeySet, SchemeError> {
    let group_key = Tc04.group_public_key_from_bytes(&keys.public_key().to_bytes())?;
    Ok(PublicKeySet {
        n,
        group_key,
        repr: PublicKeySetRepr::Tc04(keys),
    })
}

/// The commitment coefficients, concatenated compressed G1 points.
pub(super) fn public_key_set_coefficients(keys: &threshold_crypto::PublicKeySet) -> Vec<u8> {
    // Serde shape: {"commit": {"coeff": [[48 byte values], ...]}}. Turning
    // curve points into a JSON value cannot fail; if it did, that is a bug.
    let value = serde_json::to_value(keys).expect("serialising a tc04 key set to a JSON value");
    value["commit"]["coeff"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_u64)
        .map(|b| b as u8)
        .collect()
}

fn public_key_set_from_coefficients(
    coefficients: &[u8],
) -> Result<threshold_crypto::PublicKeySet, SchemeError> {
    let points: Vec<Value> = coefficients
        .chunks(GROUP_PUBLIC_KEY_BYTES)
        .map(|c| Value::Array(c.iter().map(|b| Value::from(*b)).collect()))
        .collect();
    let value = serde_json::json!({ "commit": { "coeff": points } });
    serde_json::from_value(value).map_err(|_| SchemeError::BadEncoding {
        what: "public key set",
    })
}

/// The share's scalar as 32 big-endian bytes.
pub(super) fn secret_key_share_bytes(
    share: &threshold_crypto::SecretKeyShare,
) -> [u8; SECRET_KEY_SHARE_BYTES] {
    // Serde shape: the canonical (non-Montgomery) representation, four
    // little-endian-ordered u64 limbs.
    // Cannot fail for a field element; a silent fallback would write a wrong key.
    let limbs: [u64; 4] = serde_json::to_value(SerdeSecret(share))
        .and_then(serde_json::from_value)
        .expect("serialising a tc04 secret key share to four limbs");
    let mut out = [0u8; SECRET_KEY_SHARE_BYTES];
    for (i, limb) in limbs.iter().rev().enumerate() {
        out[i * 8..(i + 1) * 8].copy_from_slice(&limb.to_be_bytes());
    }
    out
}

impl ThresholdScheme for Tc04 {
    fn id(&self) -> SchemeId {
        ID
    }

    fn deal(&self, t: u32, n: u32, seed: &[u8; 32]) -> Result<DealtKeys, SchemeError> {
        check_threshold(t, n)?;
        // threshold_crypto 0.4 takes a rand 0.7 RNG, hence rand_chacha 0.2.
        let mut rng = ChaChaRng::from_seed(*seed);
        let secret = threshold_crypto::SecretKeySet::try_random(t as usize, &mut rng)
            .map_err(|e| SchemeError::Library(e.to_string()))?;
        let public_key_set = wrap_key_set(n, secret.public_keys())?;
        let secret_key_shares = (0..n as usize)
            .map(|i| SecretKeyShare {
                repr: SecretKeyShareRepr::Tc04(secret.secret_key_share(i)),
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
        wrap_key_set(n, public_key_set_from_coefficients(coefficients)?)
    }

    fn secret_key_share_from_bytes(&self, bytes: &[u8]) -> Result<SecretKeyShare, SchemeError> {
        let raw = fixed::<SECRET_KEY_SHARE_BYTES>("secret key share", bytes)?;
        let mut limbs = [0u64; 4];
        for (i, chunk) in raw.chunks_exact(8).rev().enumerate() {
            limbs[i] = u64::from_be_bytes(fixed::<8>("secret key share", chunk)?);
        }
        let mut fr = Fr::from_repr(FrRepr(limbs)).map_err(|_| SchemeError::BadEncoding {
            what: "secret key share",
        })?;
        Ok(SecretKeyShare {
            repr: SecretKeyShareRepr::Tc04(threshold_crypto::SecretKeyShare::from_mut(&mut fr)),
        })
    }

    fn group_public_key_from_bytes(&self, bytes: &[u8]) -> Result<GroupPublicKey, SchemeError> {
        let raw = fixed::<GROUP_PUBLIC_KEY_BYTES>("group public key", bytes)?;
        if raw == IDENTITY_G1 {
            return Err(SchemeError::IdentityKey);
        }
        // pairing 0.16's checked decompression includes the subgroup check.
        let key =
            threshold_crypto::PublicKey::from_bytes(raw).map_err(|_| SchemeError::BadEncoding {
                what: "group public key",
            })?;
        Ok(GroupPublicKey {
            scheme: ID,
            bytes: raw,
            repr: GroupKeyRepr::Tc04(key),
        })
    }

    fn signature_share_from_bytes(&self, bytes: &[u8]) -> Result<SignatureShare, SchemeError> {
        let raw = fixed::<SIGNATURE_BYTES>("signature share", bytes)?;
        let share = threshold_crypto::SignatureShare::from_bytes(raw).map_err(|_| {
            SchemeError::BadEncoding {
                what: "signature share",
            }
        })?;
        Ok(SignatureShare {
            repr: SignatureShareRepr::Tc04(share),
        })
    }

    fn signature_from_bytes(&self, bytes: &[u8]) -> Result<Signature, SchemeError> {
        let raw = fixed::<SIGNATURE_BYTES>("signature", bytes)?;
        let sig = threshold_crypto::Signature::from_bytes(raw)
            .map_err(|_| SchemeError::BadEncoding { what: "signature" })?;
        Ok(Signature {
            scheme: ID,
            bytes: raw,
            repr: SignatureRepr::Tc04(sig),
        })
    }

    fn sign_share(&self, key: &SecretKeyShare, msg: &[u8]) -> Result<SignatureShare, SchemeError> {
        match &key.repr {
            SecretKeyShareRepr::Tc04(k) => Ok(SignatureShare {
                repr: SignatureShareRepr::Tc04(k.sign(msg)),
            }),
            SecretKeyShareRepr::G2(_) => Err(mismatch("secret key share", SchemeId::G2Rfc9380)),
        }
    }

    fn verify_share(
        &self,
        keys: &PublicKeySet,
        index: ShareIndex,
        share: &SignatureShare,
        msg: &[u8],
    ) -> Result<(), SchemeError> {
        let set = key_set(keys)?;
        let share = share_of(share)?;
        if index.0 >= keys.n {
            return Err(SchemeError::UnknownIndex { index, n: keys.n });
        }
        if set.public_key_share(index.0 as usize).verify(share, msg) {
            Ok(())
        } else {
            Err(SchemeError::InvalidShare { index })
        }
    }

    fn combine(
        &self,
        keys: &PublicKeySet,
        shares: &[(ShareIndex, SignatureShare)],
        msg: &[u8],
    ) -> Result<Signature, SchemeError> {
        let set = key_set(keys)?;
        let sorted = order_shares(set.threshold(), keys.n, shares)?;
        for (index, share) in &sorted {
            self.verify_share(keys, *index, share, msg)?;
        }
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
        let pk = match &key.repr {
            GroupKeyRepr::Tc04(k) => k,
            GroupKeyRepr::G2(_) => return Err(mismatch("group public key", SchemeId::G2Rfc9380)),
        };
        let s = match &sig.repr {
            SignatureRepr::Tc04(s) => s,
            SignatureRepr::G2(_) => return Err(mismatch("signature", SchemeId::G2Rfc9380)),
        };
        if pk.verify(s, msg) {
            Ok(())
        } else {
            Err(SchemeError::BadSignature)
        }
    }

    fn verify_batch(
        &self,
        key: &GroupPublicKey,
        items: &[(&[u8], &Signature)],
    ) -> Result<(), SchemeError> {
        // No batch API in threshold_crypto 0.4: one by one.
        for (msg, sig) in items {
            self.verify(key, msg, sig)
                .map_err(|_| SchemeError::BadBatch { count: items.len() })?;
        }
        Ok(())
    }

    fn batches(&self) -> bool {
        false
    }
}
