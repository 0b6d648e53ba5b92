//! Measures signed-command throughput through a 4-validator committee of
//! real processes with durable appends, and prints it (`--nocapture`). The
//! same measurement at any size: `neuroshard bench cluster`.

use neuroshard_cli::bench::{self, BenchOptions};
use neuroshard_tests::{free_base_port, neuroshard_binary};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throughput_of_signed_commands_through_four_validators() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = BenchOptions {
        validators: 4,
        senders: 32,
        commands_per_sender: 20,
        out: dir.path().join("bench"),
        base_port: free_base_port(8),
    };
    let report = bench::run(&neuroshard_binary(), &opts)
        .await
        .expect("bench");
    println!("{report}");
    assert_eq!(report.commands, 640);
    assert!(report.commands_per_second > 0.0);
}
