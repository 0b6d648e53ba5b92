//! Four real `neuroshard node` processes from a fresh keygen, real TLS, real
//! disk: a few hundred signed commands through every validator while the
//! leader is killed with SIGKILL, the old leader restarted, and one
//! follower's data directory wiped (it recovers through a chunked snapshot).
//! Every acknowledged command must be in the final state, and every
//! validator must report the same state hash at the same applied index.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use neuroshard_cli::cluster::LocalCluster;
use neuroshard_cli::keygen::{self, KeygenOptions};
use neuroshard_cli::workload::{self, Acks, Connections, Target, TRANSFER_UNITS};
use neuroshard_governance::NEURO;
use neuroshard_tests::{free_base_port, neuroshard_binary};

const SENDERS: usize = 16;
const PER_SENDER: u64 = 25;
const SNAPSHOT_CHUNK_BYTES: u64 = 1024;
/// "A few election timeouts" (max election timeout 1 s) plus slack for a
/// loaded 2-core machine.
const NEW_LEADER_WITHIN: Duration = Duration::from_secs(8);

fn count_acks(acks: &Mutex<Acks>) -> u64 {
    acks.lock()
        .unwrap_or_else(|p| p.into_inner())
        .per_sender
        .iter()
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committee_survives_leader_kill_restart_and_wiped_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    // NEUROSHARD_KEEP_TEST_DIR=1 keeps the committee (configs, data, node.log).
    let dir_path = if std::env::var_os("NEUROSHARD_KEEP_TEST_DIR").is_some() {
        dir.keep()
    } else {
        dir.path().to_path_buf()
    };
    println!("committee directory: {}", dir_path.display());
    let mut opts = KeygenOptions::new(4, dir_path.join("committee"));
    opts.chain_id = "neuroshard-e2e".into();
    opts.base_port = free_base_port(8);
    opts.raft.heartbeat_interval_ms = 100;
    opts.raft.election_timeout_min_ms = 500;
    opts.raft.election_timeout_max_ms = 1000;
    // Checkpoints (so snapshots) early and small chunks, so the wiped node needs a
    // snapshot of many chunks.
    opts.checkpoint_interval = Some(100);
    opts.raft.logs_to_keep_after_snapshot = 20;
    opts.raft.snapshot_chunk_bytes = SNAPSHOT_CHUNK_BYTES;
    opts.ticks.tick_interval_ms = 200;
    let ceremony = keygen::run(&opts).expect("keygen");
    let treasury =
        neuroshard_cli::bench::read_key(ceremony.treasury_key.as_ref().expect("treasury"))
            .expect("key");
    let chain_id = ceremony.genesis.chain_id.clone();

    let mut cluster =
        LocalCluster::start(&neuroshard_binary(), ceremony).expect("start the committee");
    let (first_leader, first_term) = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("initial leader");

    let target = Target {
        endpoints: cluster.ceremony.api_endpoints.clone(),
        ca: cluster.ca(),
        chain_id: chain_id.clone(),
    };
    let conns = Connections::new(target);
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| workload::workload_key(2, 0, i))
        .collect();
    let receivers: Vec<_> = (0..SENDERS)
        .map(|i| workload::account(&workload::workload_key(2, 1, i)))
        .collect();
    workload::fund(&conns, &chain_id, &treasury, 1, &senders, 10 * NEURO)
        .await
        .expect("fund senders");

    // The stream of signed commands, through all four validators.
    let acks = Arc::new(Mutex::new(Acks::default()));
    let stream = tokio::spawn(workload::run(
        conns.clone(),
        chain_id.clone(),
        senders.clone(),
        receivers.clone(),
        PER_SENDER,
        acks.clone(),
    ));

    // kill -9 the leader mid-stream.
    let start = Instant::now();
    while count_acks(&acks) < 100 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "workload made no progress"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let acked_before_kill = count_acks(&acks);
    cluster
        .kill(first_leader as usize)
        .expect("kill -9 the leader");
    let killed_at = Instant::now();
    let (new_leader, new_term) = cluster
        .wait_for_leader(NEW_LEADER_WITHIN)
        .await
        .expect("a new leader after the kill");
    let election = killed_at.elapsed();
    assert_ne!(new_leader, first_leader);
    assert!(new_term > first_term);
    println!("leader {first_leader} killed after {acked_before_kill} acks; leader {new_leader} elected in {election:?}");

    stream
        .await
        .expect("workload task")
        .expect("every command acknowledged");
    assert_eq!(count_acks(&acks), SENDERS as u64 * PER_SENDER);

    // The old leader restarts and catches up.
    cluster
        .spawn(first_leader as usize)
        .expect("restart the old leader");
    let all: Vec<usize> = (0..4).collect();
    let (index, hash) = cluster
        .wait_for_agreement(&all, Duration::from_secs(60))
        .await
        .expect("restarted node catches up");
    println!("after restart: all validators at applied index {index}, state hash {hash}");

    // Wipe a follower's data directory; the leader has purged its log
    // behind a snapshot, so only a snapshot can bring the follower back.
    let (leader, _) = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leader");
    let victim = (0..4usize)
        .find(|&i| i as u64 != leader && i as u64 != first_leader)
        .expect("a follower");
    cluster.kill(victim).expect("stop the follower");
    cluster.wipe(victim).expect("wipe its data dir");
    let purged = cluster
        .status(leader as usize)
        .await
        .and_then(|s| s.purged_index);
    assert!(
        purged.is_some_and(|p| p > 0),
        "the leader must have purged its log behind a snapshot, purged = {purged:?}"
    );
    // A plain restart refuses: an empty data directory without the
    // first-boot marker is a lost disk.
    cluster.spawn(victim).expect("restart the wiped follower");
    let status = cluster
        .wait_exit(victim, Duration::from_secs(30))
        .await
        .expect("a wiped validator refuses a plain restart");
    assert!(!status.success(), "refused with a failure status: {status}");
    assert!(
        cluster
            .node_log(victim)
            .contains("holds no store and no first-boot marker"),
        "the refusal names the lost data directory"
    );
    cluster
        .spawn_recovering(victim)
        .expect("restart the wiped follower with --recover");
    let (index, hash) = cluster
        .wait_for_agreement(&all, Duration::from_secs(60))
        .await
        .expect("wiped node recovers");
    let victim_status = cluster.status(victim).await.expect("victim status");
    assert!(
        victim_status.snapshot_index.is_some(),
        "the wiped node holds a snapshot: {victim_status:?}"
    );
    let log =
        std::fs::read_to_string(cluster.ceremony.node_configs[victim].with_file_name("node.log"))
            .expect("log");
    let installed = log
        .lines()
        .filter(|l| l.contains("snapshot installed"))
        .filter_map(|l| {
            l.split("bytes=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .next_back()
        .expect("the wiped node logged a snapshot install");
    assert!(
        installed > 4 * SNAPSHOT_CHUNK_BYTES,
        "the snapshot ({installed} bytes) must span many {SNAPSHOT_CHUNK_BYTES}-byte chunks"
    );
    println!("wiped validator {victim} recovered through a {installed}-byte snapshot; all at {index}, {hash}");

    // No acknowledged command lost: each sender's nonce and each receiver's
    // balance are exactly what the acknowledged transfers imply.
    let mut client = cluster.client(victim).await.expect("client");
    for (s, key) in senders.iter().enumerate() {
        let sender = client
            .account(&workload::account(key))
            .await
            .expect("sender account");
        assert_eq!(
            sender.next_nonce,
            PER_SENDER + 1,
            "sender {s}: every acknowledged command applied once"
        );
        let receiver = client
            .account(&receivers[s])
            .await
            .expect("receiver account");
        assert_eq!(
            receiver.balance,
            PER_SENDER * TRANSFER_UNITS,
            "receiver of sender {s}"
        );
    }

    // SIGTERM stops every validator gracefully (exit status 0).
    assert_eq!(
        cluster.stop_all(),
        Vec::<usize>::new(),
        "validators that did not stop gracefully"
    );
}
