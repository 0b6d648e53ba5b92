//! Signature shares from peers (`SubmitSignatureShare`): the protobuf
//! request, the checks `PeerService` makes, then the leader's `Collector`
//! (receive, verify against the validator's public key share, combine t+1).
//! The first byte says whether t honest shares are there first (so the
//! fuzzed one can complete a certificate); the rest is the request.
//!
//! Checks: no panic; a share that parses in either scheme writes back to
//! the same bytes; a certificate the collector combines verifies with the
//! light-node verifier and is accepted by the state machine.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prost::Message;

use neuroshard_certificate::scheme::SchemeId;
use neuroshard_certificate::{signing_message, CommitteeInfo, Verifier};
use neuroshard_fuzz::{fixture, Fixture};
use neuroshard_governance::Entry;
use neuroshard_node::issuance::collector::Collector;
use neuroshard_node::proto::SignatureShareRequest;
use neuroshard_node::transport::peer_service::MAX_SHARE_BYTES;
use sha2::{Digest, Sha256};

fuzz_target!(init: { fixture(); }, |data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let Ok(request) = SignatureShareRequest::decode(bytes) else {
        return;
    };
    for scheme in [SchemeId::G2Rfc9380, SchemeId::Tc04] {
        let scheme = scheme.scheme();
        if let Ok(share) = scheme.signature_share_from_bytes(&request.share) {
            let written = share.to_bytes();
            let again = scheme
                .signature_share_from_bytes(&written)
                .expect("a parsed share parses again");
            assert_eq!(again.to_bytes(), written);
        }
        if let Ok(signature) = scheme.signature_from_bytes(&request.share) {
            let written = signature.to_bytes();
            let again = scheme
                .signature_from_bytes(&written)
                .expect("a parsed signature parses again");
            assert_eq!(again.to_bytes(), written);
        }
    }
    // PeerService's checks before a share reaches the collector.
    let Ok(payload_sha256) = <[u8; 32]>::try_from(request.payload_sha256.as_slice()) else {
        return;
    };
    if request.share.is_empty() || request.share.len() > MAX_SHARE_BYTES {
        return;
    }

    let fx = fixture();
    let pending = &fx.pending_certificate;
    let decided: [u8; 32] = Sha256::digest(&pending.payload).into();
    let keys = fx.dealt.public_key_set.clone();
    let t = keys.threshold();
    let mut collector = Collector::new(keys, 1, Duration::from_secs(5));
    if mode & 1 == 1 {
        let scheme = SchemeId::G2Rfc9380.scheme();
        let message = signing_message(&pending.payload);
        // Honest shares of validators n-1 down to n-t: one short of t+1.
        for i in (fx.dealt.secret_key_shares.len() - t as usize)..fx.dealt.secret_key_shares.len() {
            let share = scheme
                .sign_share(&fx.dealt.secret_key_shares[i], &message)
                .expect("an honest share");
            collector
                .receive(i as u64, pending.sequence, decided, share.to_bytes().to_vec(), 1)
                .expect("an honest share is kept");
        }
    }
    let _ = collector.receive(
        request.from,
        request.sequence,
        payload_sha256,
        request.share,
        1,
    );
    let (issued, _refused) = collector.ready(pending, decided, tokio::time::Instant::now());
    if let Some(issued) = issued {
        let info: &CommitteeInfo = &fx.genesis.committee.info;
        let verifier = Verifier::new(info.clone()).expect("the fixture committee");
        verifier
            .verify(&issued.envelope)
            .expect("a combined certificate verifies");
        let mut state = fx.pending.clone();
        let outcome = state.apply(
            Fixture::next_index(&fx.pending),
            &Entry::CertificateIssued(issued),
        );
        assert!(outcome.is_ok(), "a combined certificate is refused: {outcome:?}");
    }
});
