//! A test-only FUSE filesystem for power-loss tests (what Jepsen's LazyFS
//! does): a pass-through to a backing directory that keeps every written
//! byte in memory until the file is `fsync`ed or `fdatasync`ed, and on
//! command drops everything unsynced, as a power loss would (`fs.rs` says
//! exactly what is durable when). `chaos/powerloss` mounts one under each
//! validator's data directory (docs/chaos.md, "Power loss on real
//! processes"); the binary `neuroshard-lazyfs` serves one mount and a
//! control socket (`control.rs`).

pub mod control;
pub mod fs;
pub mod overlay;

use std::io;
use std::path::Path;

pub use fs::{Dropped, LazyFs, Shared, Stats, Status};

/// The mount options: nothing the kernel would cache or do on its own.
pub fn config() -> fuser::Config {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("neuroshard-lazyfs".into()),
        fuser::MountOption::Subtype("lazyfs".into()),
        fuser::MountOption::NoAtime,
    ];
    config.n_threads = Some(1);
    config
}

/// Mounts a lazy filesystem over `backing` at `mountpoint`, served by a
/// background thread until the returned session is dropped (tests; the
/// binary runs the session in the foreground).
pub fn mount(
    backing: &Path,
    mountpoint: &Path,
) -> io::Result<(std::sync::Arc<Shared>, fuser::BackgroundSession)> {
    let shared = Shared::new(backing)?;
    let session = fuser::spawn_mount(LazyFs::new(shared.clone()), mountpoint, &config())?;
    Ok((shared, session))
}
