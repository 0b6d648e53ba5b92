//! The light-node verifier: every check refuses for its own reason.

mod common;

use common::*;
use neuroshard_certificate::proto::CertificateKind;
use neuroshard_certificate::{
    decode_payload, encode_payload, Envelope, SchemeId, Verifier, VerifyError, PAYLOAD_TYPE,
};

fn first(committee: &Committee) -> (neuroshard_certificate::proto::CertificatePayload, Envelope) {
    activation_log(committee, 1).remove(0)
}

#[test]
fn a_good_certificate_verifies_and_decodes_on_both_schemes() {
    for scheme in SchemeId::ALL {
        let committee = Committee::standard(scheme);
        let (payload, envelope) = first(&committee);
        let verifier = Verifier::new(committee.info.clone()).unwrap();
        let verified = verifier.verify(&envelope).unwrap();
        assert_eq!(verified.payload, payload);
        assert_eq!(verified.payload_hash, envelope.payload_hash());
        // The same certificate through both encodings.
        let json = Envelope::from_json(envelope.to_json().as_bytes()).unwrap();
        let wire = Envelope::from_proto_bytes(&envelope.to_proto_bytes()).unwrap();
        assert_eq!(verifier.verify(&json).unwrap(), verified);
        assert_eq!(verifier.verify(&wire).unwrap(), verified);
        assert_eq!(decode_payload(&encode_payload(&payload)).unwrap(), payload);
    }
}

#[test]
fn each_check_refuses_with_its_reason() {
    for scheme in SchemeId::ALL {
        let committee = Committee::standard(scheme);
        let (payload, envelope) = first(&committee);
        let verifier = Verifier::new(committee.info.clone()).unwrap();

        let mut e = envelope.clone();
        e.payload_type = "application/json".into();
        assert_eq!(
            verifier.verify(&e),
            Err(VerifyError::WrongPayloadType {
                found: "application/json".into()
            })
        );

        let mut e = envelope.clone();
        e.scheme = "bls-threshold-other".into();
        assert!(matches!(
            verifier.verify(&e),
            Err(VerifyError::WrongScheme { .. })
        ));

        let mut e = envelope.clone();
        e.committee_epoch = 2;
        assert_eq!(
            verifier.verify(&e),
            Err(VerifyError::WrongEpoch {
                expected: 1,
                found: 2
            })
        );

        let mut e = envelope.clone();
        e.payload = vec![0xff; 3];
        assert!(matches!(
            verifier.verify(&e),
            Err(VerifyError::BadPayload(_))
        ));

        let mut e = envelope.clone();
        e.payload = vec![0; neuroshard_certificate::MAX_PAYLOAD_BYTES + 1];
        assert!(matches!(
            verifier.verify(&e),
            Err(VerifyError::PayloadTooLarge { .. })
        ));

        // Signed by the committee, but for another chain.
        let mut p = payload.clone();
        p.chain_id = "other-chain".into();
        let e = committee.issue(&[0, 1, 2], &p);
        assert_eq!(
            verifier.verify(&e),
            Err(VerifyError::WrongChain {
                expected: CHAIN_ID.into(),
                found: "other-chain".into()
            })
        );

        // Signed by the committee, naming another committee.
        let mut p = payload.clone();
        p.committee_hash = vec![9; 32];
        let e = committee.issue(&[0, 1, 2], &p);
        let err = verifier.verify(&e).unwrap_err();
        assert!(matches!(err, VerifyError::WrongCommittee { .. }));
        assert_eq!(err.outcome(), "wrong-committee");

        // A flipped title byte: everything parses, the signature fails.
        let mut e = envelope.clone();
        let at = find(&e.payload, payload.title.as_bytes()) + 3;
        e.payload[at] ^= 0x01;
        assert_eq!(verifier.verify(&e), Err(VerifyError::BadSignature));

        // Another committee's signature over a payload naming ours.
        let other = Committee::new(scheme, 2, 4, [0x77; 32]);
        let e = other.issue(&[0, 1, 2], &payload);
        assert_eq!(verifier.verify(&e), Err(VerifyError::BadSignature));

        // Garbage signature bytes.
        let mut e = envelope.clone();
        e.signature = vec![0x11; 96];
        assert_eq!(verifier.verify(&e).unwrap_err().outcome(), "bad-signature");
        let mut e = envelope.clone();
        e.signature.truncate(48);
        assert!(matches!(
            verifier.verify(&e),
            Err(VerifyError::MalformedSignature(_))
        ));
    }
}

#[test]
fn a_verifier_pinned_to_another_committee_refuses() {
    let committee = Committee::standard(SchemeId::G2Rfc9380);
    let (_, envelope) = first(&committee);
    let other = Committee::new(SchemeId::G2Rfc9380, 2, 4, [0x78; 32]);
    let verifier = Verifier::new(other.info.clone()).unwrap();
    assert!(matches!(
        verifier.verify(&envelope),
        Err(VerifyError::WrongCommittee { .. })
    ));
    let tc = Committee::standard(SchemeId::Tc04);
    let verifier = Verifier::new(tc.info.clone()).unwrap();
    assert!(matches!(
        verifier.verify(&envelope),
        Err(VerifyError::WrongScheme { .. })
    ));
}

#[test]
fn a_certificate_signed_over_the_raw_payload_is_refused() {
    // Without the PAE the signed bytes are ambiguous; the verifier insists on it.
    let committee = Committee::standard(SchemeId::G2Rfc9380);
    let (payload, _) = first(&committee);
    let bytes = encode_payload(&payload);
    let envelope = Envelope {
        payload_type: PAYLOAD_TYPE.into(),
        signature: committee.sign_message(&[0, 1, 2], &bytes),
        payload: bytes,
        scheme: SchemeId::G2Rfc9380.as_str().into(),
        committee_epoch: 1,
    };
    let verifier = Verifier::new(committee.info.clone()).unwrap();
    assert_eq!(verifier.verify(&envelope), Err(VerifyError::BadSignature));
}

#[test]
fn cancellations_and_revocations_verify_like_activations() {
    let committee = Committee::standard(SchemeId::G2Rfc9380);
    let verifier = Verifier::new(committee.info.clone()).unwrap();
    for kind in [CertificateKind::Cancellation, CertificateKind::Revocation] {
        let (mut p, _) = first(&committee);
        p.kind = kind as i32;
        let e = committee.issue(&[1, 2, 3], &p);
        assert_eq!(verifier.verify(&e).unwrap().payload.kind, kind as i32);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn fixtures() -> &'static Vec<(Verifier, Envelope)> {
        static F: OnceLock<Vec<(Verifier, Envelope)>> = OnceLock::new();
        F.get_or_init(|| {
            SchemeId::ALL
                .iter()
                .map(|&s| {
                    let c = Committee::standard(s);
                    let (_, e) = first(&c);
                    (Verifier::new(c.info.clone()).unwrap(), e)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Flipping any bit of the payload or signature never yields an
        /// accepted certificate, on either backend.
        #[test]
        fn no_single_bit_flip_is_accepted(
            scheme in 0usize..2,
            in_signature in any::<bool>(),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let (verifier, envelope) = &fixtures()[scheme];
            let mut e = envelope.clone();
            let target = if in_signature { &mut e.signature } else { &mut e.payload };
            let i = at.index(target.len());
            target[i] ^= 1 << bit;
            prop_assert!(verifier.verify(&e).is_err());
        }

        /// Every envelope survives JSON and protobuf unchanged.
        #[test]
        fn envelopes_round_trip(
            payload in prop::collection::vec(any::<u8>(), 0..512),
            signature in prop::collection::vec(any::<u8>(), 0..=96),
            epoch in any::<u64>(),
            scheme in "[a-z0-9-]{0,40}",
        ) {
            let e = Envelope { payload_type: PAYLOAD_TYPE.into(), payload, scheme, committee_epoch: epoch, signature };
            prop_assert_eq!(&Envelope::from_json(e.to_json().as_bytes()).unwrap(), &e);
            prop_assert_eq!(&Envelope::from_proto_bytes(&e.to_proto_bytes()).unwrap(), &e);
        }
    }
}
