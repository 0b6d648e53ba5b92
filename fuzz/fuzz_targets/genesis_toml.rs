//! The genesis file (`genesis.toml`, every validator reads it at start):
//! `Genesis::from_toml`, then `GovernanceState::from_genesis`.
//!
//! Checks: no panic; what parses is within `MAX_GENESIS_FILE_BYTES`;
//! `to_toml` parses back and writes the same text again; a state built
//! from it snapshots and restores to the same `state_hash`, and takes a
//! tick a governance day later.
#![no_main]

use libfuzzer_sys::fuzz_target;

use neuroshard_governance::limits::MAX_GENESIS_FILE_BYTES;
use neuroshard_governance::{Entry, Genesis, GovernanceState};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(genesis) = Genesis::from_toml(text) else {
        return;
    };
    assert!(text.len() <= MAX_GENESIS_FILE_BYTES);
    let written = genesis.to_toml().expect("a parsed genesis writes");
    let back = Genesis::from_toml(&written)
        .unwrap_or_else(|e| panic!("to_toml wrote what from_toml refuses: {e}\n{written}"));
    // Compared as text: a NaN float parameter is never equal to itself.
    assert_eq!(back.to_toml().expect("writes again"), written);

    let Ok(state) = GovernanceState::from_genesis(&genesis) else {
        return;
    };
    let bytes = state
        .to_snapshot_bytes()
        .expect("a genesis state snapshots");
    let restored = GovernanceState::from_snapshot_bytes(&bytes).expect("its snapshot restores");
    assert_eq!(restored, state);
    assert_eq!(restored.state_hash(), state.state_hash());
    let mut state = state;
    let day = state.params().gov().day_ms;
    let now = genesis.genesis_time_ms.saturating_add(day);
    let _ = state.apply(1, &Entry::Tick { now_ms: now });
});
