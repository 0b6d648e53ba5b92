//! A failing disk stops the validator loudly. One real validator keeps its
//! data directory on a small tmpfs; the test fills the tmpfs, so the next
//! write or sync of the store fails (ENOSPC). The validator must exit at
//! once with status 74 and say what failed, and never acknowledge anything
//! after it. Needs root (to mount the tmpfs); CI runs as root. Without root
//! the test says so and checks nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use neuroshard_cli::cluster::LocalCluster;
use neuroshard_cli::keygen::{self, KeygenOptions};
use neuroshard_tests::{free_base_port, neuroshard_binary};

/// `neuroshard_node::store::durability::EXIT_DISK_FAILED`.
const EXIT_DISK_FAILED: i32 = neuroshard_node::store::durability::EXIT_DISK_FAILED;

fn mount_tmpfs(at: &Path, size: &str) -> bool {
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success())
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_validator_at_once_with_a_clear_message() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        println!("not root: the tmpfs cannot be mounted, nothing checked (CI runs this as root)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = KeygenOptions::new(1, dir.path().join("committee"));
    opts.chain_id = "neuroshard-disk-errors".into();
    opts.base_port = free_base_port(2);
    opts.ticks.tick_interval_ms = 50;
    let ceremony = keygen::run(&opts).expect("keygen");
    // The validator's data directory becomes a 32 MiB tmpfs (keygen's
    // first-boot marker copied onto it).
    let data = dir.path().join("committee/validator-0/data");
    let marker = std::fs::read(data.join(neuroshard_node::boot::FIRST_BOOT)).expect("marker");
    std::fs::remove_dir_all(&data).expect("remove");
    std::fs::create_dir_all(&data).expect("mount point");
    if !mount_tmpfs(&data, "32m") {
        println!("mount -t tmpfs failed (no CAP_SYS_ADMIN here): nothing checked");
        return;
    }
    let _unmount = Unmount(&data);
    std::fs::write(data.join(neuroshard_node::boot::FIRST_BOOT), marker).expect("marker");

    let mut cluster = LocalCluster::start(&neuroshard_binary(), ceremony).expect("start");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("the validator leads");
    let before = cluster.status(0).await.expect("status");
    println!("running: applied index {:?}", before.applied_index);

    // Fill the disk: the ticks' next appends cannot be written or synced.
    let filler = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=64"])
        .arg(format!("of={}", data.join("filler").display()))
        .status()
        .expect("dd");
    println!("dd filled the tmpfs (exit {filler})");
    let status = cluster
        .wait_exit(0, Duration::from_secs(60))
        .await
        .expect("the validator stops once its disk fails");
    println!("validator exited: {status}");
    assert_eq!(
        status.code(),
        Some(EXIT_DISK_FAILED),
        "exit status 74 (disk failed)"
    );
    let log = cluster.node_log(0);
    let fatal = log
        .lines()
        .find(|l| l.contains("FATAL: could not"))
        .expect("a FATAL line names what failed");
    println!("{fatal}");
    assert!(
        fatal.contains("disk failed") && fatal.contains("without retrying"),
        "the message says the disk failed and nothing is retried: {fatal}"
    );
    assert!(
        !log.contains("validator stopped"),
        "no graceful shutdown (no final sync) after a disk error"
    );
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
