//! Opaque key and signature values of either scheme.
//!
//! Each value holds the parsed point of its backend, so verification never
//! re-parses, and remembers its scheme, so mixing schemes is an error.

use std::fmt;

use super::{SchemeError, SchemeId, ShareIndex, GROUP_PUBLIC_KEY_BYTES, SIGNATURE_BYTES};

/// The public side of a dealing: the commitment to the dealer polynomial,
/// from which the group key and every validator's public key share follow.
#[derive(Clone)]
pub struct PublicKeySet {
    pub(super) n: u32,
    /// The constant term, parsed and validated when the set was built.
    pub(super) group_key: GroupPublicKey,
    pub(super) repr: PublicKeySetRepr,
}

#[derive(Clone, PartialEq, Eq)]
pub(super) enum PublicKeySetRepr {
    G2(blsttc::PublicKeySet),
    Tc04(threshold_crypto::PublicKeySet),
}

impl PublicKeySet {
    pub fn scheme(&self) -> SchemeId {
        match self.repr {
            PublicKeySetRepr::G2(_) => SchemeId::G2Rfc9380,
            PublicKeySetRepr::Tc04(_) => SchemeId::Tc04,
        }
    }

    /// Number of validators `n`.
    pub fn size(&self) -> u32 {
        self.n
    }

    /// Threshold `t`: `t + 1` shares make a signature.
    pub fn threshold(&self) -> u32 {
        let t = match &self.repr {
            PublicKeySetRepr::G2(k) => k.threshold(),
            PublicKeySetRepr::Tc04(k) => k.threshold(),
        };
        // Parsing bounds t below n <= MAX_SHARES, so it fits.
        t as u32
    }

    /// The group public key (the commitment's constant term).
    pub fn group_public_key(&self) -> &GroupPublicKey {
        &self.group_key
    }

    /// Validator `index`'s public key share, 48 compressed bytes.
    pub fn public_key_share_bytes(
        &self,
        index: ShareIndex,
    ) -> Result<[u8; GROUP_PUBLIC_KEY_BYTES], SchemeError> {
        if index.0 >= self.n {
            return Err(SchemeError::UnknownIndex { index, n: self.n });
        }
        Ok(match &self.repr {
            PublicKeySetRepr::G2(k) => k.public_key_share(index.0 as usize).to_bytes(),
            PublicKeySetRepr::Tc04(k) => k.public_key_share(index.0 as usize).to_bytes(),
        })
    }

    /// `n` (4 bytes big-endian) then the `t + 1` compressed commitment coefficients.
    pub fn to_bytes(&self) -> Vec<u8> {
        let coefficients = match &self.repr {
            PublicKeySetRepr::G2(k) => k.to_bytes(),
            PublicKeySetRepr::Tc04(k) => super::tc04::public_key_set_coefficients(k),
        };
        let mut out = Vec::with_capacity(4 + coefficients.len());
        out.extend_from_slice(&self.n.to_be_bytes());
        out.extend_from_slice(&coefficients);
        out
    }
}

impl PartialEq for PublicKeySet {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n && self.repr == other.repr
    }
}

impl Eq for PublicKeySet {}

impl fmt::Debug for PublicKeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKeySet")
            .field("scheme", &self.scheme())
            .field("t", &self.threshold())
            .field("n", &self.n)
            .field(
                "group_public_key",
                &hex::encode(self.group_public_key().to_bytes()),
            )
            .finish()
    }
}

/// One validator's secret key share. Zeroised on drop by the backend;
/// `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKeyShare {
    pub(super) repr: SecretKeyShareRepr,
}

#[derive(Clone, PartialEq, Eq)]
pub(super) enum SecretKeyShareRepr {
    G2(blsttc::SecretKeyShare),
    Tc04(threshold_crypto::SecretKeyShare),
}

impl SecretKeyShare {
    pub fn scheme(&self) -> SchemeId {
        match self.repr {
            SecretKeyShareRepr::G2(_) => SchemeId::G2Rfc9380,
            SecretKeyShareRepr::Tc04(_) => SchemeId::Tc04,
        }
    }

    /// The 32-byte big-endian scalar. Secret: write it only to a 0600 file.
    pub fn to_bytes(&self) -> [u8; super::SECRET_KEY_SHARE_BYTES] {
        match &self.repr {
            SecretKeyShareRepr::G2(k) => k.to_bytes(),
            SecretKeyShareRepr::Tc04(k) => super::tc04::secret_key_share_bytes(k),
        }
    }

    /// This share's public key share, 48 compressed bytes.
    pub fn public_key_share_bytes(&self) -> [u8; GROUP_PUBLIC_KEY_BYTES] {
        match &self.repr {
            SecretKeyShareRepr::G2(k) => k.public_key_share().to_bytes(),
            SecretKeyShareRepr::Tc04(k) => k.public_key_share().to_bytes(),
        }
    }
}

impl fmt::Debug for SecretKeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeyShare")
            .field("scheme", &self.scheme())
            .finish_non_exhaustive()
    }
}

/// The result of dealer key generation: the public key set and, in
/// validator order, every validator's secret key share.
#[derive(Debug, Clone)]
pub struct DealtKeys {
    pub public_key_set: PublicKeySet,
    pub secret_key_shares: Vec<SecretKeyShare>,
}

/// The committee's group public key, parsed and validated.
#[derive(Clone)]
pub struct GroupPublicKey {
    pub(super) scheme: SchemeId,
    pub(super) bytes: [u8; GROUP_PUBLIC_KEY_BYTES],
    pub(super) repr: GroupKeyRepr,
}

#[derive(Clone)]
pub(super) enum GroupKeyRepr {
    /// Verified with blst directly: the same curve and encoding as blsttc,
    /// and blst's core verify is one multi-pairing, not two pairings.
    G2(blst::min_pk::PublicKey),
    Tc04(threshold_crypto::PublicKey),
}

impl GroupPublicKey {
    /// Parses a key of `scheme` (see [`super::ThresholdScheme::group_public_key_from_bytes`]).
    pub fn from_bytes(scheme: SchemeId, bytes: &[u8]) -> Result<Self, SchemeError> {
        scheme.scheme().group_public_key_from_bytes(bytes)
    }

    pub fn scheme(&self) -> SchemeId {
        self.scheme
    }

    pub fn to_bytes(&self) -> [u8; GROUP_PUBLIC_KEY_BYTES] {
        self.bytes
    }
}

impl PartialEq for GroupPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.scheme == other.scheme && self.bytes == other.bytes
    }
}

impl Eq for GroupPublicKey {}

impl fmt::Debug for GroupPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GroupPublicKey({}, {})",
            self.scheme,
            hex::encode(self.bytes)
        )
    }
}

/// One validator's signature share.
#[derive(Clone, PartialEq, Eq)]
pub struct SignatureShare {
    pub(super) repr: SignatureShareRepr,
}

#[derive(Clone, PartialEq, Eq)]
pub(super) enum SignatureShareRepr {
    G2(blsttc::SignatureShare),
    Tc04(threshold_crypto::SignatureShare),
}

impl SignatureShare {
    pub fn scheme(&self) -> SchemeId {
        match self.repr {
            SignatureShareRepr::G2(_) => SchemeId::G2Rfc9380,
            SignatureShareRepr::Tc04(_) => SchemeId::Tc04,
        }
    }

    pub fn to_bytes(&self) -> [u8; SIGNATURE_BYTES] {
        match &self.repr {
            SignatureShareRepr::G2(s) => s.to_bytes(),
            SignatureShareRepr::Tc04(s) => s.to_bytes(),
        }
    }
}

impl fmt::Debug for SignatureShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SignatureShare({}, {})",
            self.scheme(),
            hex::encode(self.to_bytes())
        )
    }
}

/// A combined (group) signature.
#[derive(Clone)]
pub struct Signature {
    pub(super) scheme: SchemeId,
    pub(super) bytes: [u8; SIGNATURE_BYTES],
    pub(super) repr: SignatureRepr,
}

#[derive(Clone)]
pub(super) enum SignatureRepr {
    /// Already subgroup-checked, as blst verification expects.
    G2(blst::min_pk::Signature),
    Tc04(threshold_crypto::Signature),
}

impl Signature {
    /// Parses a signature of `scheme`.
    pub fn from_bytes(scheme: SchemeId, bytes: &[u8]) -> Result<Self, SchemeError> {
        scheme.scheme().signature_from_bytes(bytes)
    }

    pub fn scheme(&self) -> SchemeId {
        self.scheme
    }

    pub fn to_bytes(&self) -> [u8; SIGNATURE_BYTES] {
        self.bytes
    }
}

impl PartialEq for Signature {
    fn eq(&self, other: &Self) -> bool {
        self.scheme == other.scheme && self.bytes == other.bytes
    }
}

impl Eq for Signature {}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}, {})", self.scheme, hex::encode(self.bytes))
    }
}
