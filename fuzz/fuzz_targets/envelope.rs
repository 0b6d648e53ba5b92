//! Certificate envelopes as a light node receives them: the JSON form
//! (`Envelope::from_json`, files and `envelope_json`) and the protobuf
//! form (`Envelope::from_proto_bytes`, the API), then the verifier and a
//! follower pinned to the committee of the committed test vectors. Both
//! decoders run on every input.
//!
//! Checks: no panic; what decodes is within `MAX_ENVELOPE_JSON_BYTES` /
//! `MAX_ENVELOPE_PROTO_BYTES` and its fields within their limits; JSON and
//! protobuf round-trip to the same envelope; the payload round-trips
//! through `decode_payload`/`encode_payload`; a certificate the verifier
//! accepts has a payload of at most `MAX_PAYLOAD_BYTES` naming the pinned
//! committee and chain, and the batch path (`verify_chain`) accepts it too.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

use neuroshard_certificate::envelope::{
    MAX_ENVELOPE_JSON_BYTES, MAX_ENVELOPE_PROTO_BYTES, MAX_PAYLOAD_TYPE_BYTES, MAX_SCHEME_ID_BYTES,
};
use neuroshard_certificate::proto::ProtocolVersion;
use neuroshard_certificate::{
    decode_payload, encode_payload, ChainError, Envelope, Follower, Verifier, MAX_PAYLOAD_BYTES,
};
use neuroshard_fuzz::vectors;

fn check(envelope: &Envelope) {
    assert!(envelope.payload.len() <= MAX_PAYLOAD_BYTES);
    assert!(envelope.payload_type.len() <= MAX_PAYLOAD_TYPE_BYTES);
    assert!(envelope.scheme.len() <= MAX_SCHEME_ID_BYTES);
    let json = envelope.to_json();
    assert_eq!(
        &Envelope::from_json(json.as_bytes()).expect("its JSON reads back"),
        envelope
    );
    let proto = envelope.to_proto_bytes();
    assert_eq!(
        &Envelope::from_proto_bytes(&proto).expect("its protobuf reads back"),
        envelope
    );
    if let Ok(payload) = decode_payload(&envelope.payload) {
        let again = encode_payload(&payload);
        assert_eq!(decode_payload(&again).expect("decodes again"), payload);
    }
    for vector in vectors() {
        let verifier = Verifier::new(vector.committee.clone()).expect("vector committee");
        if envelope.scheme != vector.committee.scheme.as_str() {
            continue;
        }
        let Ok(verified) = verifier.verify(envelope) else {
            continue;
        };
        assert_eq!(verified.payload.chain_id, vector.committee.chain_id);
        assert_eq!(
            verified.payload.committee_hash.as_slice(),
            vector.committee.committee_hash().as_slice()
        );
        // The batch path accepts what the single one does (its only
        // extra rule is a zero link at sequence 1).
        match verifier.verify_chain(std::slice::from_ref(envelope)) {
            Ok(v) => assert_eq!(v.len(), 1),
            Err(ChainError::BrokenLink { .. }) if verified.payload.sequence == 1 => {}
            Err(e) => panic!("verify accepts what verify_chain refuses: {e}"),
        }
        let mut follower = Follower::new(
            verifier,
            BTreeMap::new(),
            ProtocolVersion { major: 1, minor: 0 },
        );
        if follower.accept(envelope).is_ok() {
            let height = u64::MAX;
            let _ = follower.active_at(height);
            let _ = follower.pending_at(0);
            assert_eq!(follower.next_sequence(), 2);
        }
    }
}

fuzz_target!(init: { vectors(); }, |data: &[u8]| {
    if let Ok(envelope) = Envelope::from_json(data) {
        assert!(data.len() <= MAX_ENVELOPE_JSON_BYTES);
        check(&envelope);
    }
    if let Ok(envelope) = Envelope::from_proto_bytes(data) {
        assert!(data.len() <= MAX_ENVELOPE_PROTO_BYTES);
        check(&envelope);
    }
});
