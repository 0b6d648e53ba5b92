//! Shared helpers of the end-to-end tests: finding the `neuroshard` binary
//! and free loopback ports.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

/// The `neuroshard` binary: `$NEUROSHARD_BIN` if set, else the one beside
/// this test executable (`cargo test --workspace` builds it, because the cli
/// package has integration tests). Built on demand only when missing (e.g.
/// `cargo test -p neuroshard-tests` on a fresh target directory): building
/// only the cli package resolves features differently and would recompile
/// shared dependencies.
pub fn neuroshard_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("NEUROSHARD_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/neuroshard
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile directory");
    let binary = profile_dir.join("neuroshard");
    if binary.exists() {
        return binary;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build.args([
        "build",
        "--quiet",
        "-p",
        "neuroshard-cli",
        "--bin",
        "neuroshard",
    ]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .expect("running cargo build for the neuroshard binary");
    assert!(
        status.success(),
        "cargo build of the neuroshard binary failed"
    );
    assert!(binary.exists(), "{} missing after build", binary.display());
    binary
}

/// A base port such that `count` consecutive ports are free right now.
/// Candidates lie in 20000..32000, below Linux's ephemeral range
/// (32768..=60999), so an outgoing connection of another test cannot take
/// a chosen port between this check and the validator's bind.
pub fn free_base_port(count: u16) -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7);
    let mut candidate = 20_000 + (seed.wrapping_mul(2_654_435_761) % 12_000) as u16;
    for _ in 0..200 {
        let all_free = (0..count).all(|i| TcpListener::bind(("127.0.0.1", candidate + i)).is_ok());
        if all_free {
            return candidate;
        }
        candidate = 20_000 + (candidate - 20_000 + 97 * count) % 12_000;
    }
    panic!("no {count} consecutive free ports found");
}
