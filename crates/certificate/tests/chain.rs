//! verify_chain: a run of certificates checked with batch verification.

mod common;

use common::*;
use neuroshard_certificate::{ChainError, Envelope, SchemeId, Verifier, VerifyError};

#[test]
fn a_linked_run_verifies_on_both_schemes() {
    for scheme in SchemeId::ALL {
        let committee = Committee::standard(scheme);
        let log = activation_log(&committee, 8);
        let envelopes: Vec<Envelope> = log.iter().map(|(_, e)| e.clone()).collect();
        let verifier = Verifier::new(committee.info.clone()).unwrap();
        let verified = verifier.verify_chain(&envelopes).unwrap();
        assert_eq!(verified.len(), 8);
        for (v, (p, _)) in verified.iter().zip(&log) {
            assert_eq!(&v.payload, p);
        }
        // A run may start later than 1.
        assert_eq!(verifier.verify_chain(&envelopes[3..]).unwrap().len(), 5);
        assert_eq!(verifier.verify_chain(&[]).unwrap().len(), 0);
    }
}

#[test]
fn one_bad_signature_is_found_and_named() {
    for scheme in SchemeId::ALL {
        let committee = Committee::standard(scheme);
        let log = activation_log(&committee, 6);
        let mut envelopes: Vec<Envelope> = log.iter().map(|(_, e)| e.clone()).collect();
        // Sequence 5 carries sequence 4's signature.
        envelopes[4].signature = envelopes[3].signature.clone();
        let verifier = Verifier::new(committee.info.clone()).unwrap();
        assert_eq!(
            verifier.verify_chain(&envelopes),
            Err(ChainError::Certificate {
                index: 4,
                source: VerifyError::BadSignature
            })
        );
    }
}

#[test]
fn gaps_broken_links_and_foreign_certificates_are_refused() {
    let committee = Committee::standard(SchemeId::G2Rfc9380);
    let log = activation_log(&committee, 5);
    let envelopes: Vec<Envelope> = log.iter().map(|(_, e)| e.clone()).collect();
    let verifier = Verifier::new(committee.info.clone()).unwrap();
    let gap = vec![envelopes[0].clone(), envelopes[2].clone()];
    assert_eq!(
        verifier.verify_chain(&gap),
        Err(ChainError::Gap {
            index: 1,
            expected: 2,
            found: 3
        })
    );
    let mut p = log[1].0.clone();
    p.previous_payload_hash = vec![1; 32];
    let relinked = vec![envelopes[0].clone(), committee.issue(&[0, 1, 2], &p)];
    assert_eq!(
        verifier.verify_chain(&relinked),
        Err(ChainError::BrokenLink {
            index: 1,
            sequence: 2
        })
    );
    let mut first = log[0].0.clone();
    first.previous_payload_hash = vec![1; 32];
    assert_eq!(
        verifier.verify_chain(&[committee.issue(&[0, 1, 2], &first)]),
        Err(ChainError::BrokenLink {
            index: 0,
            sequence: 1
        })
    );
    let mut wrong_chain = envelopes.clone();
    let mut p = log[2].0.clone();
    p.chain_id = "elsewhere".into();
    wrong_chain[2] = committee.issue(&[0, 1, 2], &p);
    assert!(matches!(
        verifier.verify_chain(&wrong_chain),
        Err(ChainError::Certificate {
            index: 2,
            source: VerifyError::WrongChain { .. }
        })
    ));
}
