//! Log records from disk and from peers: the governance entry payload of an
//! `AppendEntries` (`codec::decode_entry::<Entry>`), the whole openraft
//! entry as the sled log stores it (`decode_entry::<RaftEntry>`) and a bare
//! postcard command (`codec::decode::<SignedCommand>`, forwarded batches)
//! and an offered certificate (`decode_entry::<IssuedCertificate>`, the
//! bytes of `OfferCertificate`).
//!
//! Checks: no panic; what decodes is within `MAX_ENCODED_VALUE_BYTES` and
//! decode → encode → decode gives the same value; a decoded governance
//! entry (a faulty leader may order anything) applies to fixture states
//! without panicking (the invariants are asserted after every apply), with
//! the same outcome and `state_hash` through `apply` and `apply_batch`, and
//! the state snapshots and restores to the same `state_hash`; a decoded
//! certificate gets the same verdict from `verify_issued` twice (computed,
//! then memoized) against the fixture committee.
#![no_main]

use libfuzzer_sys::fuzz_target;

use neuroshard_fuzz::{fixture, Fixture};
use neuroshard_governance::{Entry, GovernanceState, IssuedCertificate, SignedCommand};
use neuroshard_node::codec::{self, MAX_ENCODED_VALUE_BYTES};
use neuroshard_node::types::RaftEntry;

fuzz_target!(init: { fixture(); }, |data: &[u8]| {
    if let Ok(entry) = codec::decode_entry::<Entry>("log entry payload", data) {
        assert!(data.len() <= MAX_ENCODED_VALUE_BYTES);
        let again = codec::encode_entry("log entry payload", &entry).expect("a decoded entry encodes");
        assert!(again.len() <= data.len(), "the encoding is the shortest");
        assert_eq!(
            codec::decode_entry::<Entry>("log entry payload", &again).expect("decodes again"),
            entry
        );
        let fx = fixture();
        for base in [&fx.fresh, &fx.pending, &fx.certified] {
            let index = Fixture::next_index(base);
            let mut one = base.clone();
            let outcome = one.apply_entry(index, &entry);
            let mut batched = base.clone();
            let outcomes = batched.apply_batch(&[(index, entry.clone())]);
            assert_eq!(outcomes, vec![outcome]);
            assert_eq!(one.state_hash(), batched.state_hash());
            let bytes = one.to_snapshot_bytes().expect("snapshots");
            let restored = GovernanceState::from_snapshot_bytes(&bytes).expect("restores");
            assert_eq!(restored.state_hash(), one.state_hash());
        }
    }
    if let Ok(entry) = codec::decode_entry::<RaftEntry>("log entry", data) {
        let again = codec::encode_entry("log entry", &entry).expect("a decoded entry encodes");
        assert_eq!(
            codec::decode_entry::<RaftEntry>("log entry", &again).expect("decodes again"),
            entry
        );
    }
    if let Ok(offered) = codec::decode_entry::<IssuedCertificate>("offered certificate", data) {
        let again = codec::encode_entry("offered certificate", &offered).expect("a decoded certificate encodes");
        assert_eq!(
            codec::decode_entry::<IssuedCertificate>("offered certificate", &again).expect("decodes again"),
            offered
        );
        let committee = &fixture().fresh.chain().committee;
        let verdict = neuroshard_governance::certificate::verify_issued(committee, &offered);
        assert_eq!(neuroshard_governance::certificate::verify_issued(committee, &offered), verdict);
    }
    if let Ok(command) = codec::decode::<SignedCommand>("signed command", data) {
        let again = codec::encode("signed command", &command).expect("a decoded command encodes");
        assert_eq!(
            codec::decode::<SignedCommand>("signed command", &again).expect("decodes again"),
            command
        );
    }
});
