//! A rolled-back data directory on real processes: a follower's data
//! directory is copied while it is stopped (an old backup or VM snapshot),
//! the committee acknowledges more commands with that follower taking
//! part, then the follower is killed and the old copy put back. A plain
//! restart must refuse (another validator recorded that it acknowledged
//! more than its log holds); `--recover` must bring it back with every
//! acknowledged command intact. (The wiped directory is in cluster.rs.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use neuroshard_cli::cluster::LocalCluster;
use neuroshard_cli::keygen::{self, KeygenOptions};
use neuroshard_cli::workload::{self, Acks, Connections, Target, TRANSFER_UNITS};
use neuroshard_governance::NEURO;
use neuroshard_tests::{free_base_port, neuroshard_binary};

const SENDERS: usize = 8;
const PER_SENDER: u64 = 5;

async fn transfers(
    conns: &Arc<Connections>,
    chain_id: &str,
    treasury: &ed25519_dalek::SigningKey,
    treasury_nonce: u64,
    tag: u8,
) -> (
    Vec<ed25519_dalek::SigningKey>,
    Vec<neuroshard_governance::AccountId>,
) {
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| workload::workload_key(tag, 0, i))
        .collect();
    let receivers: Vec<_> = (0..SENDERS)
        .map(|i| workload::account(&workload::workload_key(tag, 1, i)))
        .collect();
    workload::fund(
        conns,
        chain_id,
        treasury,
        treasury_nonce,
        &senders,
        10 * NEURO,
    )
    .await
    .expect("fund the senders");
    let acks = Arc::new(Mutex::new(Acks::default()));
    workload::run(
        conns.clone(),
        chain_id.to_owned(),
        senders.clone(),
        receivers.clone(),
        PER_SENDER,
        acks,
    )
    .await
    .expect("every transfer acknowledged");
    (senders, receivers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolled_back_validator_refuses_a_plain_restart_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = KeygenOptions::new(4, dir.path().join("committee"));
    opts.chain_id = "neuroshard-rollback".into();
    opts.base_port = free_base_port(8);
    opts.ticks.tick_interval_ms = 200;
    let ceremony = keygen::run(&opts).expect("keygen");
    let treasury =
        neuroshard_cli::bench::read_key(ceremony.treasury_key.as_ref().expect("treasury"))
            .expect("key");
    let chain_id = ceremony.genesis.chain_id.clone();
    let mut cluster = LocalCluster::start(&neuroshard_binary(), ceremony).expect("start");
    let (leader, _) = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let conns = Connections::new(Target {
        endpoints: cluster.ceremony.api_endpoints.clone(),
        ca: cluster.ca(),
        chain_id: chain_id.clone(),
    });
    let first = transfers(&conns, &chain_id, &treasury, 1, 31).await;

    // The backup: the follower stopped, its data directory copied.
    let victim = (0..4usize)
        .find(|&i| i as u64 != leader)
        .expect("a follower");
    assert!(
        cluster
            .terminate(victim, Duration::from_secs(20))
            .expect("SIGTERM"),
        "the follower stops gracefully"
    );
    let data = cluster.data_dir(victim).expect("data dir");
    let backup = dir.path().join("backup");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&backup)
        .status()
        .expect("cp");
    assert!(copied.success(), "copy the data directory");
    let backed_up_at = cluster
        .status(leader as usize)
        .await
        .and_then(|s| s.commit_index);

    // It restarts (a plain restart of an intact directory is accepted) and
    // acknowledges more commands.
    cluster.spawn(victim).expect("restart");
    let second = transfers(&conns, &chain_id, &treasury, 1 + SENDERS as u64, 32).await;
    let (index, _) = cluster
        .wait_for_agreement(&[0, 1, 2, 3], Duration::from_secs(60))
        .await
        .expect("everyone agrees, the follower included");
    println!("backup at commit index {backed_up_at:?}; the follower then applied up to {index}");
    // The leader records acknowledgements every 250 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;

    // The old copy comes back.
    cluster.kill(victim).expect("kill -9");
    std::fs::remove_dir_all(&data).expect("remove the data directory");
    let restored = std::process::Command::new("cp")
        .arg("-a")
        .arg(&backup)
        .arg(&data)
        .status()
        .expect("cp");
    assert!(restored.success(), "restore the old copy");
    cluster
        .spawn(victim)
        .expect("plain restart of the rolled-back copy");
    let status = cluster
        .wait_exit(victim, Duration::from_secs(30))
        .await
        .expect("a rolled-back validator refuses a plain restart");
    assert!(!status.success(), "refused with a failure status: {status}");
    let log = cluster.node_log(victim);
    let refusal = log
        .lines()
        .find(|l| l.contains("was rolled back"))
        .expect("the refusal says the data directory was rolled back");
    println!("plain restart refused: {refusal}");

    // --recover: it catches up before it votes, and nothing is lost.
    cluster
        .spawn_recovering(victim)
        .expect("restart with --recover");
    let (index, hash) = cluster
        .wait_for_agreement(&[0, 1, 2, 3], Duration::from_secs(90))
        .await
        .expect("the recovered validator catches up");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = cluster.status(victim).await.expect("status");
        if s.recovering_until.is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "recovery did not finish: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        cluster
            .node_log(victim)
            .contains("recovered: this validator holds what it acknowledged"),
        "the recovery logs its end"
    );
    println!("recovered validator {victim}: all at {index}, {hash}");
    let mut client = cluster.client(victim).await.expect("client");
    for (senders, receivers) in [&first, &second] {
        for (s, key) in senders.iter().enumerate() {
            let sender = client
                .account(&workload::account(key))
                .await
                .expect("sender");
            assert_eq!(sender.next_nonce, PER_SENDER + 1, "sender {s}");
            let receiver = client.account(&receivers[s]).await.expect("receiver");
            assert_eq!(
                receiver.balance,
                PER_SENDER * TRANSFER_UNITS,
                "receiver {s}"
            );
        }
    }
    assert_eq!(cluster.stop_all(), Vec::<usize>::new());
}
