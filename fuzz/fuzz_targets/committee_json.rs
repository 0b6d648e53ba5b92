//! The committee info a light node pins (`CommitteeInfo::from_json`,
//! `neuroshard cert verify --committee`), then the verifier and a follower
//! built on it checking a committed test-vector certificate.
//!
//! Checks: no panic; what parses is within `MAX_COMMITTEE_INFO_JSON_BYTES`
//! and valid (`t < n <= MAX_COMMITTEE_SIZE`, chain id rules, a group key of
//! its scheme); the pretty JSON and the canonical JSON (what the committee
//! hash is taken over) both parse back to the same committee; a verifier
//! builds from it; a vector certificate verifies against it only if it is
//! that vector's committee.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

use neuroshard_certificate::committee::{MAX_COMMITTEE_INFO_JSON_BYTES, MAX_COMMITTEE_SIZE};
use neuroshard_certificate::proto::ProtocolVersion;
use neuroshard_certificate::{CommitteeInfo, Follower, Verifier};
use neuroshard_fuzz::vectors;

fuzz_target!(init: { vectors(); }, |data: &[u8]| {
    let Ok(info) = CommitteeInfo::from_json(data) else {
        return;
    };
    assert!(data.len() <= MAX_COMMITTEE_INFO_JSON_BYTES);
    assert!(info.t < info.n && info.n <= MAX_COMMITTEE_SIZE);
    let pretty = info.to_json_pretty();
    assert_eq!(
        CommitteeInfo::from_json(pretty.as_bytes()).expect("pretty JSON reads back"),
        info
    );
    let canonical = info.canonical_json();
    let back = CommitteeInfo::from_json(&canonical).expect("canonical JSON reads back");
    assert_eq!(back, info);
    assert_eq!(back.committee_hash(), info.committee_hash());

    let verifier = Verifier::new(info.clone()).expect("a valid committee makes a verifier");
    for vector in vectors() {
        let verified = verifier.verify(&vector.envelope);
        if verified.is_ok() {
            assert_eq!(
                info.committee_hash(),
                vector.committee.committee_hash(),
                "a certificate verified against another committee"
            );
        }
        let mut follower = Follower::new(
            verifier.clone(),
            BTreeMap::new(),
            ProtocolVersion { major: 1, minor: 0 },
        );
        let _ = follower.accept(&vector.envelope);
    }
});
