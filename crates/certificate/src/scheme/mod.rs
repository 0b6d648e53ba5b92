//! Threshold BLS schemes behind one small trait (DESIGN §5, §8).
//!
//! Two backends, picked by their scheme id string:
//!
//! * [`SchemeId::G2Rfc9380`] (`bls-threshold-g2-rfc9380`, the default) on
//!   `blsttc`: public keys in G1, signatures in G2, hash-to-curve per RFC 9380
//!   with the IETF BLS "basic" ciphersuite DST [`IETF_BASIC_DST`]. A combined
//!   signature is an ordinary BLS signature that any IETF BLS library
//!   verifies with the group public key alone.
//! * [`SchemeId::Tc04`] (`bls-threshold-tc04`) on `threshold_crypto` 0.4: the
//!   same group and key layout, but its own (non-standard) hash to G2, so only
//!   this crate verifies it. Kept for comparison.
//!
//! Values ([`PublicKeySet`], [`SecretKeyShare`], [`GroupPublicKey`],
//! [`SignatureShare`], [`Signature`]) are opaque and remember their scheme;
//! handing a value of one scheme to the other is a typed error, never a
//! silent misinterpretation. Validators are numbered from 0 ([`ShareIndex`]);
//! validator `i` holds the dealer polynomial's value at `i + 1`.
//!
//! Byte formats (both schemes): group public key and public key shares are
//! 48-byte compressed G1 points; a public key set is the committee size `n`
//! (4 bytes, big-endian) followed by the `t + 1` coefficients of the dealer
//! polynomial's commitment, each a 48-byte compressed G1 point, constant term
//! (the group key) first; a secret key share is a 32-byte big-endian scalar;
//! signatures and signature shares are 96-byte compressed G2 points.

mod batch;
mod g2_rfc9380;
mod keys;
mod tc04;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use batch::{BATCH_SCALAR_BITS, MAX_BATCH_SIGNATURES};
pub use g2_rfc9380::G2Rfc9380;
pub use keys::{
    DealtKeys, GroupPublicKey, PublicKeySet, SecretKeyShare, Signature, SignatureShare,
};
pub use tc04::Tc04;

/// Domain separation tag of the IETF BLS signature "basic" ciphersuite with
/// signatures in G2 (draft-irtf-cfrg-bls-signature §4.2.1), which RFC 9380's
/// `BLS12381G2_XMD:SHA-256_SSWU_RO_` hash-to-curve suite is run with.
pub const IETF_BASIC_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_";

/// Bytes of a compressed G1 point (group public key, public key share).
pub const GROUP_PUBLIC_KEY_BYTES: usize = 48;
/// Bytes of a compressed G2 point (signature, signature share).
pub const SIGNATURE_BYTES: usize = 96;
/// Bytes of a secret key share (big-endian scalar).
pub const SECRET_KEY_SHARE_BYTES: usize = 32;
/// Largest committee a dealer deals for; also bounds share lists.
pub const MAX_SHARES: u32 = 1024;

/// The id of a threshold scheme as written in committee info and envelopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SchemeId {
    /// `bls-threshold-g2-rfc9380`: blsttc, IETF-interoperable (the default).
    #[default]
    G2Rfc9380,
    /// `bls-threshold-tc04`: threshold_crypto 0.4, not interoperable.
    Tc04,
}

impl SchemeId {
    /// Every scheme, default first.
    pub const ALL: [SchemeId; 2] = [SchemeId::G2Rfc9380, SchemeId::Tc04];

    pub const fn as_str(self) -> &'static str {
        match self {
            SchemeId::G2Rfc9380 => "bls-threshold-g2-rfc9380",
            SchemeId::Tc04 => "bls-threshold-tc04",
        }
    }

    /// The backend implementing this scheme.
    pub fn scheme(self) -> &'static dyn ThresholdScheme {
        match self {
            SchemeId::G2Rfc9380 => &G2Rfc9380,
            SchemeId::Tc04 => &Tc04,
        }
    }
}

impl fmt::Display for SchemeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SchemeId {
    type Err = SchemeError;

    fn from_str(s: &str) -> Result<Self, SchemeError> {
        SchemeId::ALL
            .into_iter()
            .find(|id| id.as_str() == s)
            .ok_or_else(|| SchemeError::UnknownScheme {
                id: s.chars().take(64).collect(),
            })
    }
}

impl Serialize for SchemeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SchemeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The backend for a scheme id string, e.g. `"bls-threshold-g2-rfc9380"`.
pub fn scheme_by_id(id: &str) -> Result<&'static dyn ThresholdScheme, SchemeError> {
    Ok(id.parse::<SchemeId>()?.scheme())
}

/// A validator's position in the committee, from 0 to `n - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShareIndex(pub u32);

impl fmt::Display for ShareIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a threshold operation failed. Every variant names the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    #[error(
        "unknown threshold scheme {id:?} (known: bls-threshold-g2-rfc9380, bls-threshold-tc04)"
    )]
    UnknownScheme { id: String },
    #[error("a {what} of scheme {found} was given to scheme {expected}")]
    SchemeMismatch {
        what: &'static str,
        expected: SchemeId,
        found: SchemeId,
    },
    #[error("threshold t = {t} must be below n = {n}, and n must be between 1 and {max}", max = MAX_SHARES)]
    BadThreshold { t: u32, n: u32 },
    #[error("{what} must be {expected} bytes, got {len}")]
    BadLength {
        what: &'static str,
        expected: usize,
        len: usize,
    },
    #[error("public key set is {len} bytes; it must be 4 + 48·(t + 1) bytes with t + 1 <= {max}", max = MAX_SHARES)]
    BadKeySetLength { len: usize },
    #[error("{what} bytes do not encode a valid {what}")]
    BadEncoding { what: &'static str },
    #[error("the group public key is the identity point, which every signature would satisfy")]
    IdentityKey,
    #[error("share index {index} is not a validator of a committee of {n}")]
    UnknownIndex { index: ShareIndex, n: u32 },
    #[error("share index {index} appears more than once")]
    DuplicateIndex { index: ShareIndex },
    #[error("signature share of validator {index} does not verify against its public key share")]
    InvalidShare { index: ShareIndex },
    #[error("{got} signature shares given, {needed} (t + 1) needed")]
    NotEnoughShares { got: usize, needed: usize },
    #[error("{got} signature shares given, more than the {max} a committee can have")]
    TooManyShares { got: usize, max: u32 },
    #[error("the signature does not verify under the group public key")]
    BadSignature,
    #[error("batch of {count} signatures does not verify (at least one is bad; verify one by one to find it)")]
    BadBatch { count: usize },
    #[error("batch of {count} signatures is larger than the {max} one call verifies")]
    TooManyInBatch { count: usize, max: usize },
    #[error("threshold library error: {0}")]
    Library(String),
}

/// A threshold BLS scheme: dealer key generation, share signing and
/// verification, combination and verification.
///
/// The trait is object safe: [`SchemeId::scheme`] and [`scheme_by_id`] return
/// a `&'static dyn ThresholdScheme`. Signing covers arbitrary bytes; certificates sign
/// the DSSE pre-authentication encoding (see `envelope`).
pub trait ThresholdScheme: Send + Sync {
    /// This scheme's id.
    fn id(&self) -> SchemeId;

    /// Dealer key generation for `n` validators of which `t + 1` must sign.
    /// Deterministic in `seed` (use 32 bytes from the OS RNG for real keys,
    /// a fixed seed only for test vectors).
    fn deal(&self, t: u32, n: u32, seed: &[u8; 32]) -> Result<DealtKeys, SchemeError>;

    /// Parses a public key set ([`PublicKeySet::to_bytes`]).
    fn public_key_set_from_bytes(&self, bytes: &[u8]) -> Result<PublicKeySet, SchemeError>;

    /// Parses a secret key share ([`SecretKeyShare::to_bytes`]).
    fn secret_key_share_from_bytes(&self, bytes: &[u8]) -> Result<SecretKeyShare, SchemeError>;

    /// Parses a 48-byte group public key; refuses invalid points, points off
    /// the prime-order subgroup and the identity.
    fn group_public_key_from_bytes(&self, bytes: &[u8]) -> Result<GroupPublicKey, SchemeError>;

    /// Parses a 96-byte signature share (subgroup-checked).
    fn signature_share_from_bytes(&self, bytes: &[u8]) -> Result<SignatureShare, SchemeError>;

    /// Parses a 96-byte combined signature (subgroup-checked).
    fn signature_from_bytes(&self, bytes: &[u8]) -> Result<Signature, SchemeError>;

    /// Signs `msg` with a secret key share.
    fn sign_share(&self, key: &SecretKeyShare, msg: &[u8]) -> Result<SignatureShare, SchemeError>;

    /// Checks validator `index`'s share on `msg` against its public key share.
    fn verify_share(
        &self,
        keys: &PublicKeySet,
        index: ShareIndex,
        share: &SignatureShare,
        msg: &[u8],
    ) -> Result<(), SchemeError>;

    /// Checks several validators' shares on one `msg` (what a combiner and
    /// a `CertificateIssued` check hold). Backends that can do it check
    /// them together with one random linear combination — one pairing
    /// check however many shares — and only when that fails check each to
    /// name the invalid one; the result is the same as calling
    /// [`Self::verify_share`] on each in order (the first invalid share's
    /// error).
    fn verify_shares(
        &self,
        keys: &PublicKeySet,
        shares: &[(ShareIndex, &SignatureShare)],
        msg: &[u8],
    ) -> Result<(), SchemeError> {
        for (index, share) in shares {
            self.verify_share(keys, *index, share, msg)?;
        }
        Ok(())
    }

    /// [`Self::verify`] of the combined `signature` under the set's group
    /// key and [`Self::verify_shares`] of the shares it was combined from,
    /// all on one `msg` — what a `CertificateIssued` carries. Backends that
    /// can do it check everything with one pairing check. Errors as the
    /// two calls in that order would give.
    fn verify_signature_and_shares(
        &self,
        keys: &PublicKeySet,
        signature: &Signature,
        shares: &[(ShareIndex, &SignatureShare)],
        msg: &[u8],
    ) -> Result<(), SchemeError> {
        self.verify(keys.group_public_key(), msg, signature)?;
        self.verify_shares(keys, shares, msg)
    }

    /// Combines shares on `msg` into the group signature. Every share is
    /// checked first — unknown index, duplicate index, invalid share are
    /// refused by name — because the interpolation itself checks nothing and
    /// one bad share would silently spoil the result. At least `t + 1`
    /// shares are required; the `t + 1` lowest indices are combined (any
    /// `t + 1` valid shares give the same signature).
    fn combine(
        &self,
        keys: &PublicKeySet,
        shares: &[(ShareIndex, SignatureShare)],
        msg: &[u8],
    ) -> Result<Signature, SchemeError>;

    /// [`Self::combine`] of shares the caller has verified already on
    /// this `msg` (e.g. with [`Self::verify_shares`] as they arrived):
    /// the list is still refused for too few, unknown or duplicate
    /// indices, but the shares are not checked again. An unverified
    /// invalid share silently spoils the result: verify the combined
    /// signature before relying on it.
    fn combine_verified(
        &self,
        keys: &PublicKeySet,
        shares: &[(ShareIndex, SignatureShare)],
        msg: &[u8],
    ) -> Result<Signature, SchemeError> {
        self.combine(keys, shares, msg)
    }

    /// Verifies a combined signature on `msg` under the group public key.
    fn verify(&self, key: &GroupPublicKey, msg: &[u8], sig: &Signature) -> Result<(), SchemeError>;

    /// Verifies many signatures under one group public key. Backends that
    /// support it use a random linear combination; all pass or the batch
    /// fails with [`SchemeError::BadBatch`].
    fn verify_batch(
        &self,
        key: &GroupPublicKey,
        items: &[(&[u8], &Signature)],
    ) -> Result<(), SchemeError>;

    /// Whether [`Self::verify_batch`] is a real batch verification (true) or
    /// a loop of single verifications (false).
    fn batches(&self) -> bool;
}

/// Checks `t < n <= MAX_SHARES`.
fn check_threshold(t: u32, n: u32) -> Result<(), SchemeError> {
    if n == 0 || n > MAX_SHARES || t >= n {
        return Err(SchemeError::BadThreshold { t, n });
    }
    Ok(())
}

/// Refusals common to both backends before combining: too few or too many
/// shares, unknown or duplicate indices. Returns the shares sorted by index.
fn order_shares(
    t: usize,
    n: u32,
    shares: &[(ShareIndex, SignatureShare)],
) -> Result<Vec<&(ShareIndex, SignatureShare)>, SchemeError> {
    if shares.len() > n as usize {
        return Err(SchemeError::TooManyShares {
            got: shares.len(),
            max: n,
        });
    }
    if shares.len() < t + 1 {
        return Err(SchemeError::NotEnoughShares {
            got: shares.len(),
            needed: t + 1,
        });
    }
    let mut sorted: Vec<_> = shares.iter().collect();
    sorted.sort_by_key(|(i, _)| *i);
    for (i, _) in &sorted {
        if i.0 >= n {
            return Err(SchemeError::UnknownIndex { index: *i, n });
        }
    }
    for pair in sorted.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(SchemeError::DuplicateIndex { index: pair[0].0 });
        }
    }
    Ok(sorted)
}

fn fixed<const N: usize>(what: &'static str, bytes: &[u8]) -> Result<[u8; N], SchemeError> {
    bytes.try_into().map_err(|_| SchemeError::BadLength {
        what,
        expected: N,
        len: bytes.len(),
    })
}

#[cfg(test)]
mod tests;
