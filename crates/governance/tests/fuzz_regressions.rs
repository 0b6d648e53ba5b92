//! Inputs the fuzz targets (`fuzz/`, docs/fuzzing.md) found failing, each
//! fed to the code that failed on it, so `cargo test --workspace` guards
//! the fix. The inputs are kept as found, under `tests/fuzz/`.

use neuroshard_governance::{Entry, Genesis, GovernanceState};

/// `genesis_toml`: a genesis without `committee.public_key_set` (optional:
/// shares are then not checked one by one) gave a state whose snapshot
/// could not be read back ("Found an Option discriminant that wasn't 0 or
/// 1"): the field was skipped when `None`, in the postcard encoding too.
/// Such a committee could never restore or install a snapshot.
#[test]
fn a_genesis_without_the_key_set_restores_its_snapshots() {
    let text = include_str!("fuzz/genesis-without-key-set.toml");
    let genesis = Genesis::from_toml(text).expect("the found genesis parses");
    assert!(genesis.committee.public_key_set.is_none());
    let mut state = GovernanceState::from_genesis(&genesis).expect("and is valid");
    for s in [state.clone(), {
        let _ = state.apply(
            1,
            &Entry::Tick {
                now_ms: genesis.genesis_time_ms + 1,
            },
        );
        state
    }] {
        let bytes = s.to_snapshot_bytes().expect("snapshots");
        let restored = GovernanceState::from_snapshot_bytes(&bytes).expect("restores");
        assert_eq!(restored, s);
        assert_eq!(restored.state_hash(), s.state_hash());
    }
    // TOML still leaves the absent key set out, and reads it back absent.
    let written = genesis.to_toml().expect("writes");
    assert!(!written.contains("public_key_set"), "{written}");
    assert_eq!(Genesis::from_toml(&written).expect("reads back"), genesis);
}
