//! The certificate envelope (DESIGN §5, §8): DSSE-style, so the exact signed
//! bytes travel with the certificate and nobody re-encodes the payload.
//!
//! The signature covers DSSE's pre-authentication encoding
//!
//! ```text
//! PAE(type, payload) = "DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload
//! ```
//!
//! where `SP` is one space and `LEN` is the byte length in ASCII decimal
//! without leading zeros. JSON (base64 bytes) is for files and the CLI,
//! protobuf ([`crate::proto::CertificateEnvelope`]) for the wire; both carry
//! the same five fields and convert into each other losslessly.

use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;
use crate::proto::{CertificateEnvelope, CertificatePayload};
use crate::scheme::{PublicKeySet, SchemeError, SchemeId, ShareIndex, Signature, SignatureShare};

/// The payload type of every NeuroShard certificate.
pub const PAYLOAD_TYPE: &str = "application/vnd.neuroshard.certificate.v1+protobuf";

/// Largest certificate payload accepted (protobuf bytes).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Longest payload type string accepted.
pub const MAX_PAYLOAD_TYPE_BYTES: usize = 128;
/// Longest scheme id string accepted.
pub const MAX_SCHEME_ID_BYTES: usize = 64;
/// Largest envelope in protobuf: the payload plus room for the other fields.
pub const MAX_ENVELOPE_PROTO_BYTES: usize = MAX_PAYLOAD_BYTES + 1024;
/// Largest envelope in JSON: base64 grows the payload by 4/3.
pub const MAX_ENVELOPE_JSON_BYTES: usize = MAX_PAYLOAD_BYTES / 3 * 4 + 4096;

/// Why an envelope cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope is {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("payload is {len} bytes, more than the {max} allowed", max = MAX_PAYLOAD_BYTES)]
    PayloadTooLarge { len: usize },
    #[error("{field} is {len} bytes, more than the {max} allowed")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("envelope JSON is malformed: {0}")]
    Json(String),
    #[error("envelope protobuf is malformed: {0}")]
    Proto(String),
    #[error("certificate payload protobuf is malformed: {0}")]
    Payload(String),
}

/// DSSE pre-authentication encoding of `(payload_type, payload)`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let header = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    );
    let mut out = Vec::with_capacity(header.len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// The bytes every validator signs for a certificate payload:
/// `PAE(PAYLOAD_TYPE, payload)`.
pub fn signing_message(payload: &[u8]) -> Vec<u8> {
    pae(PAYLOAD_TYPE, payload)
}

/// SHA-256 of a payload's bytes: what the next certificate's
/// `previous_payload_hash` names.
pub fn payload_hash(payload: &[u8]) -> Hash {
    Sha256::digest(payload).into()
}

/// Encodes a payload. prost writes fields in field-number order and
/// repeated fields in the given order, so equal payloads give equal bytes.
pub fn encode_payload(payload: &CertificatePayload) -> Vec<u8> {
    payload.encode_to_vec()
}

/// Decodes payload bytes, refusing more than [`MAX_PAYLOAD_BYTES`].
pub fn decode_payload(bytes: &[u8]) -> Result<CertificatePayload, EnvelopeError> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(EnvelopeError::PayloadTooLarge { len: bytes.len() });
    }
    CertificatePayload::decode(bytes).map_err(|e| EnvelopeError::Payload(e.to_string()))
}

/// A signed certificate.
///
/// `scheme` stays a string so an envelope naming a scheme this build does not
/// know still decodes and is refused by the verifier with a precise reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub payload_type: String,
    #[serde(with = "base64_bytes")]
    pub payload: Vec<u8>,
    pub scheme: String,
    pub committee_epoch: u64,
    /// 96-byte compressed G2 point (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub signature: Vec<u8>,
}

impl Envelope {
    /// Wraps payload bytes and their combined signature.
    pub fn new(payload: Vec<u8>, committee_epoch: u64, signature: &Signature) -> Self {
        Self {
            payload_type: PAYLOAD_TYPE.to_owned(),
            payload,
            scheme: signature.scheme().as_str().to_owned(),
            committee_epoch,
            signature: signature.to_bytes().to_vec(),
        }
    }

    /// Combines validators' shares on [`signing_message`]`(payload)` (each
    /// checked first, see [`crate::ThresholdScheme::combine`]) and wraps the result.
    pub fn combine(
        keys: &PublicKeySet,
        shares: &[(ShareIndex, SignatureShare)],
        payload: Vec<u8>,
        committee_epoch: u64,
    ) -> Result<Self, SchemeError> {
        let signature = keys
            .scheme()
            .scheme()
            .combine(keys, shares, &signing_message(&payload))?;
        Ok(Self::new(payload, committee_epoch, &signature))
    }

    /// [`Self::combine`] of shares already verified on this payload
    /// (`ThresholdScheme::combine_verified`).
    pub fn combine_verified(
        keys: &PublicKeySet,
        shares: &[(ShareIndex, SignatureShare)],
        payload: Vec<u8>,
        committee_epoch: u64,
    ) -> Result<Self, SchemeError> {
        let signature =
            keys.scheme()
                .scheme()
                .combine_verified(keys, shares, &signing_message(&payload))?;
        Ok(Self::new(payload, committee_epoch, &signature))
    }

    /// The bytes the signature covers: `PAE(payload_type, payload)`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// SHA-256 of the payload bytes.
    pub fn payload_hash(&self) -> Hash {
        payload_hash(&self.payload)
    }

    /// The scheme named by the envelope, if this build knows it.
    pub fn scheme_id(&self) -> Result<SchemeId, SchemeError> {
        self.scheme.parse()
    }

    /// Decodes the payload (no signature check: use the verifier).
    pub fn decode_payload_unverified(&self) -> Result<CertificatePayload, EnvelopeError> {
        decode_payload(&self.payload)
    }

    fn check_limits(&self) -> Result<(), EnvelopeError> {
        if self.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(EnvelopeError::PayloadTooLarge {
                len: self.payload.len(),
            });
        }
        for (field, len, max) in [
            (
                "payload_type",
                self.payload_type.len(),
                MAX_PAYLOAD_TYPE_BYTES,
            ),
            ("scheme", self.scheme.len(), MAX_SCHEME_ID_BYTES),
            (
                "signature",
                self.signature.len(),
                crate::scheme::SIGNATURE_BYTES,
            ),
        ] {
            if len > max {
                return Err(EnvelopeError::FieldTooLong { field, len, max });
            }
        }
        Ok(())
    }

    /// Parses the JSON form, refusing documents over [`MAX_ENVELOPE_JSON_BYTES`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_JSON_BYTES {
            return Err(EnvelopeError::TooLarge {
                len: bytes.len(),
                max: MAX_ENVELOPE_JSON_BYTES,
            });
        }
        let envelope: Self =
            serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Json(e.to_string()))?;
        envelope.check_limits()?;
        Ok(envelope)
    }

    /// The JSON form (pretty-printed; any layout parses).
    pub fn to_json(&self) -> String {
        // Strings, numbers and base64 text: serialising cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses the protobuf form, refusing messages over [`MAX_ENVELOPE_PROTO_BYTES`].
    pub fn from_proto_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_PROTO_BYTES {
            return Err(EnvelopeError::TooLarge {
                len: bytes.len(),
                max: MAX_ENVELOPE_PROTO_BYTES,
            });
        }
        let wire =
            CertificateEnvelope::decode(bytes).map_err(|e| EnvelopeError::Proto(e.to_string()))?;
        Self::from_proto(wire)
    }

    /// The protobuf form's bytes.
    pub fn to_proto_bytes(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    pub fn to_proto(&self) -> CertificateEnvelope {
        CertificateEnvelope {
            payload_type: self.payload_type.clone(),
            payload: self.payload.clone(),
            scheme: self.scheme.clone(),
            committee_epoch: self.committee_epoch,
            signature: self.signature.clone(),
        }
    }

    pub fn from_proto(wire: CertificateEnvelope) -> Result<Self, EnvelopeError> {
        let envelope = Self {
            payload_type: wire.payload_type,
            payload: wire.payload,
            scheme: wire.scheme,
            committee_epoch: wire.committee_epoch,
            signature: wire.signature,
        };
        envelope.check_limits()?;
        Ok(envelope)
    }
}

/// Standard base64 with padding (RFC 4648 §4), as DSSE's JSON envelope uses.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        BASE64.decode(text.as_bytes()).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_definition() {
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(
            signing_message(b"\x00\xff"),
            [
                b"DSSEv1 50 application/vnd.neuroshard.certificate.v1+protobuf 2 ".as_slice(),
                b"\x00\xff"
            ]
            .concat()
        );
    }

    fn sample() -> Envelope {
        Envelope {
            payload_type: PAYLOAD_TYPE.into(),
            payload: vec![1, 2, 3, 250, 0],
            scheme: SchemeId::G2Rfc9380.as_str().into(),
            committee_epoch: 7,
            signature: vec![0xab; 96],
        }
    }

    #[test]
    fn json_and_protobuf_round_trip() {
        let e = sample();
        let json = e.to_json();
        assert!(json.contains("\"payload\": \"AQID+gA=\""));
        assert_eq!(Envelope::from_json(json.as_bytes()).unwrap(), e);
        assert_eq!(Envelope::from_proto_bytes(&e.to_proto_bytes()).unwrap(), e);
        assert_eq!(Envelope::from_proto(e.to_proto()).unwrap(), e);
    }

    #[test]
    fn oversized_and_malformed_envelopes_are_refused() {
        let mut e = sample();
        e.payload = vec![0; MAX_PAYLOAD_BYTES + 1];
        assert_eq!(
            Envelope::from_proto(e.to_proto()),
            Err(EnvelopeError::PayloadTooLarge {
                len: MAX_PAYLOAD_BYTES + 1
            })
        );
        let mut e = sample();
        e.signature = vec![0; 200];
        assert!(matches!(
            Envelope::from_proto(e.to_proto()),
            Err(EnvelopeError::FieldTooLong {
                field: "signature",
                ..
            })
        ));
        let big = vec![b' '; MAX_ENVELOPE_JSON_BYTES + 1];
        assert!(matches!(
            Envelope::from_json(&big),
            Err(EnvelopeError::TooLarge { .. })
        ));
        assert!(matches!(
            Envelope::from_json(br#"{"payload_type":"x","payload":"!!","scheme":"s","committee_epoch":1,"signature":""}"#),
            Err(EnvelopeError::Json(_))
        ));
        assert!(matches!(
            Envelope::from_proto_bytes(&[0xff, 0xff]),
            Err(EnvelopeError::Proto(_))
        ));
        assert!(matches!(
            decode_payload(&[0x0a, 0x05, 0x01]),
            Err(EnvelopeError::Payload(_))
        ));
    }
}
