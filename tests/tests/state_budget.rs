//! A committee whose state is filled to its budget: four real validators
//! with a 1 MiB `gov.state_budget_bytes`, accounts created by transfers
//! until the budget refuses the next one (`state_budget_exceeded`), then
//! the full state is snapshotted, every validator is stopped and restarted
//! on it, and a validator that lost its data directory installs it. Every
//! validator must end at the same applied index and state hash, and moving
//! NEURO between existing accounts must still work on the full state.

use std::time::Duration;

use neuroshard_cli::cluster::LocalCluster;
use neuroshard_cli::keygen::{self, KeygenOptions};
use neuroshard_cli::workload::{self, Connections, Target};
use neuroshard_governance::genesis::ParamInput;
use neuroshard_governance::{Amount, Command, Genesis, GovError, SignedCommand, NEURO};
use neuroshard_tests::{free_base_port, neuroshard_binary};

const BUDGET: i64 = 1024 * 1024;
const SENDERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_state_snapshots_restarts_and_installs_on_a_wiped_validator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = KeygenOptions::new(4, dir.path().join("committee"));
    opts.chain_id = "neuroshard-budget".into();
    opts.base_port = free_base_port(8);
    opts.checkpoint_interval = Some(200);
    opts.raft.logs_to_keep_after_snapshot = 20;
    opts.raft.snapshot_chunk_bytes = 64 * 1024;
    opts.ticks.tick_interval_ms = 500;
    let mut ceremony = keygen::run(&opts).expect("keygen");
    // The genesis gets a small budget, so filling it takes seconds.
    let genesis_path = ceremony.dir.join("genesis.toml");
    let mut genesis = Genesis::from_toml(&std::fs::read_to_string(&genesis_path).unwrap())
        .expect("genesis parses");
    genesis.parameters.insert(
        "gov.state_budget_bytes".to_owned(),
        ParamInput::Integer(BUDGET),
    );
    std::fs::write(&genesis_path, genesis.to_toml().expect("genesis encodes")).unwrap();
    ceremony.genesis = genesis;
    let treasury =
        neuroshard_cli::bench::read_key(ceremony.treasury_key.as_ref().expect("treasury"))
            .expect("key");
    let chain_id = ceremony.genesis.chain_id.clone();
    let mut cluster = LocalCluster::start(&neuroshard_binary(), ceremony).expect("start");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("leader");
    let conns = Connections::new(Target {
        endpoints: cluster.ceremony.api_endpoints.clone(),
        ca: cluster.ca(),
        chain_id: chain_id.clone(),
    });
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| workload::workload_key(9, 0, i))
        .collect();
    workload::fund(&conns, &chain_id, &treasury, 1, &senders, 1_000 * NEURO)
        .await
        .expect("fund the senders");

    // Every sender creates accounts until the budget refuses one.
    let mut tasks = Vec::new();
    for (s, key) in senders.iter().enumerate() {
        let conns = conns.clone();
        let key = key.clone();
        let chain_id = chain_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut created = 0u64;
            for nonce in 1.. {
                let to = workload::account(&workload::workload_key(9, 1 + s as u8, nonce as usize));
                let cmd = SignedCommand::sign(
                    &chain_id,
                    &key,
                    nonce,
                    Command::Transfer {
                        to,
                        amount: Amount(1),
                    },
                );
                let submitted = loop {
                    match conns.submit(s + nonce as usize, &cmd).await {
                        Ok(done) => break done,
                        Err(e) => {
                            eprintln!("sender {s} nonce {nonce}: {e}; retrying the same bytes");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                };
                match submitted.outcome {
                    Ok(_) => created += 1,
                    Err(GovError::StateBudgetExceeded {
                        needed,
                        would_be,
                        budget,
                        ..
                    }) => return (s, created, would_be - needed, budget),
                    Err(e) => panic!("sender {s} nonce {nonce}: unexpected refusal {e}"),
                }
            }
            unreachable!("the budget refuses an account before nonces run out")
        }));
    }
    let mut created = 0;
    let mut charged = 0;
    // The budget refusal used its nonce: each sender's next one follows it.
    let mut next_nonce = [0u64; SENDERS];
    for t in tasks {
        let (s, n, bytes, budget) = t.await.expect("sender task");
        assert_eq!(budget, BUDGET as u64);
        created += n;
        charged = charged.max(bytes);
        next_nonce[s] = n + 2;
    }
    println!("{created} accounts created; the state is charged {charged} of {BUDGET} bytes");
    // New accounts stop at the growth limit: the budget less the sixteenth
    // kept for ballots on open votes and the committee's emergencies.
    let growth_limit = BUDGET - BUDGET / 16;
    assert!(
        charged as i64 > growth_limit - 2 * 1024 && charged as i64 <= growth_limit,
        "the state is full: {charged} of {growth_limit} (budget {BUDGET})"
    );

    // Everyone agrees on the full state.
    let all: Vec<usize> = (0..4).collect();
    let (index, hash) = cluster
        .wait_for_agreement(&all, Duration::from_secs(60))
        .await
        .expect("agreement on the full state");
    println!("full state at applied index {index}, hash {hash}");
    for s in cluster.statuses().await {
        let s = s.expect("status of every validator");
        assert_eq!(s.state_budget_bytes, BUDGET as u64);
        assert!(
            s.state_bytes <= BUDGET as u64 && s.state_bytes >= charged,
            "validator {} reports {} charged bytes",
            s.node_id,
            s.state_bytes
        );
    }

    // Stop every validator and start them again on their snapshots and logs.
    for i in 0..4 {
        assert!(
            cluster
                .terminate(i, Duration::from_secs(10))
                .expect("stop a validator"),
            "validator {i} stops cleanly"
        );
    }
    for i in 0..4 {
        cluster.spawn(i).expect("restart a validator");
    }
    let (leader, _) = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("a leader after the restart");
    let (after, same) = cluster
        .wait_for_agreement(&all, Duration::from_secs(60))
        .await
        .expect("agreement after the restart");
    assert!(after >= index);
    println!("restarted: applied index {after}, hash {same}");

    // Moving NEURO between existing accounts works on the full state, and
    // runs the log past the snapshot.
    for (s, key) in senders.iter().enumerate() {
        let cmd = SignedCommand::sign(
            &chain_id,
            key,
            next_nonce[s],
            Command::Transfer {
                to: workload::account(&senders[(s + 1) % SENDERS]),
                amount: Amount(1),
            },
        );
        let done = workload::submit_until_acked(&conns, s, s, &cmd)
            .await
            .expect("a transfer between existing accounts on the full state");
        assert!(done.outcome.is_ok());
    }

    // A validator loses its data directory and installs the full snapshot.
    let victim = (0..4usize)
        .find(|&i| i as u64 != leader)
        .expect("a follower");
    cluster.kill(victim).expect("kill the victim");
    cluster.wipe(victim).expect("wipe its data directory");
    cluster
        .spawn_recovering(victim)
        .expect("restart it empty with --recover");
    let (final_index, final_hash) = cluster
        .wait_for_agreement(&all, Duration::from_secs(90))
        .await
        .expect("the wiped validator catches up from the snapshot");
    println!("wiped validator {victim} caught up: applied index {final_index}, hash {final_hash}");
    let running: Vec<bool> = (0..4).map(|i| cluster.is_running(i)).collect();
    assert_eq!(running, vec![true; 4], "every validator is running");
}
