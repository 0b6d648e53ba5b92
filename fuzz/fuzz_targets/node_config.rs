//! `node.toml`: `NodeConfig::parse` (what `NodeConfig::load` runs on the
//! file's text after its size check).
//!
//! Checks: no panic; a config that parses writes back (`to_toml`) to one
//! that parses to the same value; its accessors answer.
#![no_main]

use libfuzzer_sys::fuzz_target;

use neuroshard_node::NodeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = NodeConfig::parse(text) else {
        return;
    };
    let written = config.to_toml().expect("a parsed config writes");
    let back = NodeConfig::parse(&written)
        .unwrap_or_else(|e| panic!("to_toml wrote what parse refuses: {e}\n{written}"));
    assert_eq!(back, config);
    let _ = config.members();
    let _ = config.peer_socket();
    for peer in &config.peers {
        assert!(config.peer_addr(peer.id).is_some());
    }
});
