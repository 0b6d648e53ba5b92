//! Snapshots from peers (`InstallSnapshot`) and from disk: the node's
//! `SnapshotImage::decode` + `GovernanceMachine::restore`, and the
//! governance `GovernanceState::from_snapshot_bytes` on its own.
//!
//! Checks: no panic; an image re-encodes to one that decodes equal; a
//! restored state (which passed `check_invariants`) snapshots and restores
//! to the same state, bytes and `state_hash`; the API's reads of it answer;
//! and it applies a tick a governance day later without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

use neuroshard_fuzz::{testkit_accounts, Fixture};
use neuroshard_governance::{Entry, GovernanceState, ProposalFilter};
use neuroshard_node::store::machine::{GovernanceMachine, SnapshotImage};

fn check(state: &GovernanceState) {
    let bytes = state
        .to_snapshot_bytes()
        .expect("a restored state snapshots");
    let back = GovernanceState::from_snapshot_bytes(&bytes).expect("and restores");
    assert_eq!(&back, state);
    assert_eq!(back.state_hash(), state.state_hash());
    assert_eq!(back.to_snapshot_bytes().expect("snapshots again"), bytes);

    // What the API serves from it.
    let proposals: Vec<_> = state
        .proposals(&ProposalFilter::default())
        .into_iter()
        .map(|p| p.id)
        .collect();
    for nep in proposals {
        let _ = state.tally(nep);
        for account in testkit_accounts() {
            let _ = state.vote_receipt(nep, account);
        }
    }
    let _ = state.certificates(1, 1000);
    let _ = state.pending_certificates();
    for account in testkit_accounts() {
        let _ = state.account(account);
    }

    let mut later = state.clone();
    let day = later.params().gov().day_ms;
    let now = later.committed_time_ms().saturating_add(day);
    let _ = later.apply(Fixture::next_index(state), &Entry::Tick { now_ms: now });
}

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = SnapshotImage::decode(data) {
        let again = image.encode().expect("a decoded image encodes");
        assert_eq!(SnapshotImage::decode(&again).expect("decodes again"), image);
        if let Ok(machine) = GovernanceMachine::restore(image) {
            check(&machine.state);
        }
    }
    if let Ok(state) = GovernanceState::from_snapshot_bytes(data) {
        check(&state);
    }
});
