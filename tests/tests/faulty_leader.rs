//! A faulty leader on real processes. The test holds the current leader's
//! own TLS key and certificate (what a faulty validator has) and sends every
//! other validator an AppendEntries of the leader's term carrying what no
//! honest leader sends: a tick two days ahead, `Tick{u64::MAX}`, and a
//! membership that makes it the only voter. Each follower must refuse it
//! before Raft (the answer names the rule), ignore that validator, and the
//! committee must go on under another leader within the measured bound.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use neuroshard_cli::cluster::LocalCluster;
use neuroshard_cli::keygen::{self, KeygenOptions};
use neuroshard_governance::Entry;
use neuroshard_node::governance_client::GovernanceClient;
use neuroshard_node::proto;
use neuroshard_node::proto::raft_peer_client::RaftPeerClient;
use neuroshard_node::transport::convert;
use neuroshard_node::transport::peer_client::connect_as;
use neuroshard_node::transport::tls::TlsMaterial;
use neuroshard_node::types::{LogId, RaftEntry, Vote};
use neuroshard_node::NodeConfig;
use neuroshard_tests::{free_base_port, neuroshard_binary};
use openraft::{CommittedLeaderId, EntryPayload, Membership};

/// The bound this test holds the committee to: from the refused message to
/// a new leader (not the faulty one) committing ticks again. An election
/// after the followers stop hearing the faulty leader takes about one
/// election timeout (0.5–1 s) for their leases to lapse plus one to
/// campaign; the rest is slack for a loaded 2-core machine.
const MOVES_ON_WITHIN: Duration = Duration::from_secs(10);
const TWO_DAYS_MS: u64 = 2 * 86_400_000;
/// `gov.max_clock_skew_ms` of the equivocation test's genesis.
const SHORT_SKEW_MS: u64 = 3_000;

type Payload = EntryPayload<neuroshard_node::types::TypeConfig>;
/// What the faulty leader puts in its entry, given its own id.
type MakePayload = dyn Fn(u64) -> Payload;

/// A peer client that presents validator `as_validator`'s own certificate.
async fn peer_as(
    cluster: &LocalCluster,
    as_validator: usize,
    to: usize,
) -> RaftPeerClient<tonic::transport::Channel> {
    try_peer_as(cluster, as_validator, to)
        .await
        .expect("connect to the peer listener")
}

/// As [`peer_as`]; `None` while the peer listener does not accept.
async fn try_peer_as(
    cluster: &LocalCluster,
    as_validator: usize,
    to: usize,
) -> Option<RaftPeerClient<tonic::transport::Channel>> {
    let config = NodeConfig::load(&cluster.ceremony.node_configs[as_validator]).expect("config");
    let tls = TlsMaterial::load(&config.tls.ca_cert, &config.tls.cert, &config.tls.key)
        .expect("the faulty validator's TLS material");
    let target = NodeConfig::load(&cluster.ceremony.node_configs[to]).expect("config");
    connect_as(&tls, to as u64, &target.peer_listen, Duration::from_secs(3))
        .await
        .ok()
        .map(RaftPeerClient::new)
}

/// What the faulty leader sends: one entry after the follower's last one,
/// in the leader's current term.
fn bad_append(
    leader: u64,
    term: u64,
    after: u64,
    payload: EntryPayload<neuroshard_node::types::TypeConfig>,
) -> proto::AppendEntriesRequest {
    let log_id = |index| LogId::new(CommittedLeaderId::new(term, leader), index);
    let rpc = openraft::raft::AppendEntriesRequest {
        vote: Vote::new_committed(term, leader),
        prev_log_id: Some(log_id(after)),
        leader_commit: None,
        entries: vec![RaftEntry {
            log_id: log_id(after + 1),
            payload,
        }],
    };
    convert::append_request_to(&rpc).expect("encode")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_faulty_leader_is_refused_before_raft_and_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    // NEUROSHARD_KEEP_TEST_DIR=1 keeps the committee (configs, data, node.log).
    let dir_path = if std::env::var_os("NEUROSHARD_KEEP_TEST_DIR").is_some() {
        dir.keep()
    } else {
        dir.path().to_path_buf()
    };
    println!("committee directory: {}", dir_path.display());
    let mut opts = KeygenOptions::new(4, dir_path.join("committee"));
    opts.chain_id = "neuroshard-faulty-leader".into();
    opts.base_port = free_base_port(8);
    opts.ticks.tick_interval_ms = 200;
    // Ignored for two election timeouts (the least the validator uses), so
    // each attack starts once the last one's offender is heard again.
    opts.safety.ignore_refused_leader_ms = 2_000;
    let ceremony = keygen::run(&opts).expect("keygen");
    let mut cluster = LocalCluster::start(&neuroshard_binary(), ceremony).expect("start");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("a leader");

    let attacks: Vec<(&str, &str, Box<MakePayload>)> = vec![
        (
            "a tick two days ahead",
            "tick_ahead",
            Box::new(|_| {
                EntryPayload::Normal(Entry::Tick {
                    now_ms: now_ms() + TWO_DAYS_MS,
                })
            }),
        ),
        (
            "Tick{u64::MAX}",
            "tick_ahead",
            Box::new(|_| EntryPayload::Normal(Entry::Tick { now_ms: u64::MAX })),
        ),
        (
            "a membership with the leader as the only voter",
            "foreign_membership",
            Box::new(|leader| {
                EntryPayload::Membership(Membership::new(vec![BTreeSet::from([leader])], None))
            }),
        ),
    ];
    let mut measured = Vec::new();
    for (what, rule, payload) in attacks {
        // One faulty validator at a time: the last offender is heard again.
        let quiet_by = Instant::now() + Duration::from_secs(30);
        while cluster
            .statuses()
            .await
            .iter()
            .flatten()
            .any(|s| !s.ignored.is_empty())
        {
            assert!(Instant::now() < quiet_by, "ignores never expired");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (leader, term) = cluster
            .wait_for_leader(Duration::from_secs(30))
            .await
            .expect("a leader before the attack");
        let applied_before = cluster
            .status(leader as usize)
            .await
            .and_then(|s| s.applied_index)
            .unwrap_or(0);
        let statuses = cluster.statuses().await;
        let sent_at = Instant::now();
        for to in (0..4usize).filter(|i| *i as u64 != leader) {
            let last = statuses[to]
                .as_ref()
                .and_then(|s| s.last_log_index)
                .unwrap_or(0);
            let mut client = peer_as(&cluster, leader as usize, to).await;
            let answer = client
                .append_entries(bad_append(leader, term, last, payload(leader)))
                .await;
            let status = answer.expect_err("a follower must refuse it");
            assert_eq!(
                status.code(),
                tonic::Code::FailedPrecondition,
                "{what} to {to}: {status:?}"
            );
            assert!(
                status.message().contains(rule),
                "{what} to {to}: the refusal names {rule}: {}",
                status.message()
            );
            // Refused before Raft: nothing of it is in the follower's log.
            let after = cluster.status(to).await.expect("status");
            assert!(
                after
                    .ignored
                    .iter()
                    .any(|(id, _, r)| *id == leader && r == rule),
                "{what}: validator {to} ignores {leader}: {:?}",
                after.ignored
            );
        }
        // The committee moves on under a leader of a higher term that
        // commits ticks: another validator, or the one whose identity the
        // attack borrowed once its followers no longer ignore it (it is
        // an honest process; when the honest three split their votes for
        // longer than the ignore period, as on a loaded 2-core machine,
        // it may fairly win the next election: docs/chaos.md, finding 6).
        let ignore_period = Duration::from_millis(opts.safety.ignore_refused_leader_ms);
        let moved = loop {
            let elapsed = sent_at.elapsed();
            assert!(
                elapsed < MOVES_ON_WITHIN,
                "{what}: no other leader committed within {MOVES_ON_WITHIN:?}: {:?}",
                cluster.statuses().await
            );
            let statuses = cluster.statuses().await;
            let new_leader = statuses.iter().flatten().find(|s| {
                s.role == "leader"
                    && s.term > term
                    && (s.node_id != leader || sent_at.elapsed() >= ignore_period)
            });
            if let Some(l) = new_leader {
                let before = l.commit_index;
                tokio::time::sleep(Duration::from_millis(300)).await;
                let again = cluster.status(l.node_id as usize).await;
                if again.is_some_and(|a| {
                    a.role == "leader"
                        && a.commit_index > before
                        && a.applied_index > Some(applied_before)
                }) {
                    break (l.node_id, sent_at.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        println!(
            "{what} from validator {leader} (term {term}): refused by every follower, validator {} leads and commits after {:?}{}",
            moved.0,
            moved.1,
            if moved.0 == leader {
                " (the borrowed identity's own process, elected after the ignore period)"
            } else {
                ""
            }
        );
        measured.push(moved.1);
        // The refused entry is in no log: every validator's committed time
        // is near the real clock, not two days or u64::MAX ahead.
        for s in cluster.statuses().await.into_iter().flatten() {
            assert!(
                s.committed_time_ms <= now_ms() + 60_000,
                "validator {} committed time {} ms runs ahead of the clock",
                s.node_id,
                s.committed_time_ms
            );
            assert_eq!(
                s.members,
                vec![0, 1, 2, 3],
                "membership stays the genesis committee"
            );
        }
    }
    let worst = measured.iter().max().copied().unwrap_or_default();
    println!("faulty leader replaced within {worst:?} (bound {MOVES_ON_WITHIN:?})");
    let (index, hash) = cluster
        .wait_for_agreement(&[0, 1, 2, 3], Duration::from_secs(60))
        .await
        .expect("every validator agrees again");
    println!("all four at applied index {index}, state hash {hash}");
    assert_eq!(cluster.stop_all(), Vec::<usize>::new());
}

/// The attack of issue 13, with nothing but validator 0's own key files:
/// an `InstallSnapshot` to validator 1 carrying the genesis state plus one
/// account holding 10⁹ NEURO, claimed at log index 1 000 000 of a higher
/// term — as a plain image (what worked before checkpoints), with no
/// signature, and signed by validator 0's BLS share alone. Validator 1 must
/// refuse each before Raft, naming the rule and ignoring validator 0; no
/// validator may ever hold the made-up state; the committee goes on
/// certifying checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_made_up_snapshot_is_refused_before_raft() {
    use neuroshard_governance::{Allocation, Amount, GovernanceState, NEURO};
    use neuroshard_node::checkpoint::{CertifiedCheckpoint, CheckpointPayload};
    use neuroshard_node::store::GovernanceMachine;
    use neuroshard_node::types::{SnapshotMeta, StoredMembership};

    let dir = tempfile::tempdir().expect("tempdir");
    // NEUROSHARD_KEEP_TEST_DIR=1 keeps the committee (configs, data, node.log).
    let dir_path = if std::env::var_os("NEUROSHARD_KEEP_TEST_DIR").is_some() {
        dir.keep()
    } else {
        dir.path().to_path_buf()
    };
    println!("committee directory: {}", dir_path.display());
    let mut opts = KeygenOptions::new(4, dir_path.join("committee"));
    opts.chain_id = "neuroshard-forged-snapshot".into();
    opts.base_port = free_base_port(8);
    opts.ticks.tick_interval_ms = 200;
    opts.checkpoint_interval = Some(20);
    // Little log behind a snapshot, so a validator that fell behind needs
    // one (the catch-up phase).
    opts.raft.logs_to_keep_after_snapshot = 5;
    // Ignored briefly (each offence doubles it), so every variant is judged
    // on its own content, not refused as from an ignored validator.
    opts.safety.ignore_refused_leader_ms = 2_000;
    let ceremony = keygen::run(&opts).expect("keygen");
    let genesis = ceremony.genesis.clone();
    let mut cluster = LocalCluster::start(&neuroshard_binary(), ceremony).expect("start");
    let (_, term) = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("a leader");

    // The made-up state.
    let rich = neuroshard_governance::AccountId(
        ed25519_dalek::SigningKey::from_bytes(&[42; 32])
            .verifying_key()
            .to_bytes(),
    );
    let mut forged_genesis = genesis.clone();
    forged_genesis.allocations.push(Allocation {
        account: rich,
        balance: Amount(1_000_000_000 * NEURO),
        staked: Amount(0),
    });
    let mut forged =
        GovernanceMachine::new(GovernanceState::from_genesis(&forged_genesis).expect("state"));
    let claimed = LogId::new(CommittedLeaderId::new(term + 1, 0), 1_000_000);
    forged.last_applied = Some(claimed);
    forged.membership = StoredMembership::new(
        Some(LogId::new(CommittedLeaderId::new(0, 0), 0)),
        Membership::new(vec![BTreeSet::from([0, 1, 2, 3])], None),
    );
    let image = forged.image().expect("image").encode().expect("encode");
    let payload = CheckpointPayload::new(
        forged.state.chain(),
        claimed,
        &forged.membership,
        forged.state.state_hash(),
    )
    .expect("payload");
    let config = NodeConfig::load(&cluster.ceremony.node_configs[0]).expect("config");
    let keys = neuroshard_node::keys::load_validator_keys(
        0,
        &genesis,
        &config.keys.identity,
        &config.keys.bls_share,
    )
    .expect("validator 0's keys");
    let scheme = genesis.committee.info.scheme.scheme();
    let own_share = scheme
        .sign_share(&keys.bls_share, &payload.signing_message())
        .expect("sign")
        .to_bytes()
        .to_vec();
    let variants = [
        ("a plain image", image.clone()),
        (
            "no signature",
            CertifiedCheckpoint::encode_parts(&[], &image).expect("encode"),
        ),
        (
            "validator 0's share alone",
            CertifiedCheckpoint::encode_parts(&own_share, &image).expect("encode"),
        ),
    ];
    let meta = SnapshotMeta {
        last_log_id: Some(claimed),
        last_membership: forged.membership.clone(),
        snapshot_id: "made-up".into(),
    };
    for (what, data) in variants {
        let mut client = peer_as(&cluster, 0, 1).await;
        let rpc = openraft::raft::InstallSnapshotRequest {
            vote: Vote::new_committed(term + 1, 0),
            meta: meta.clone(),
            offset: 0,
            data,
            done: true,
        };
        let status = client
            .install_snapshot(convert::install_request_to(&rpc))
            .await
            .expect_err("validator 1 must refuse a made-up snapshot");
        assert_eq!(
            status.code(),
            tonic::Code::FailedPrecondition,
            "{what}: {status:?}"
        );
        assert!(
            status.message().contains("uncertified_snapshot"),
            "{what}: the refusal names the rule: {}",
            status.message()
        );
        println!("{what}: refused: {}", status.message());
        let victim = cluster.status(1).await.expect("validator 1 answers");
        assert!(
            victim.applied_index < Some(1_000_000),
            "{what}: validator 1 applied the made-up state: {victim:?}"
        );
        assert!(
            victim
                .ignored
                .iter()
                .any(|(id, _, rule)| *id == 0 && rule == "uncertified_snapshot"),
            "{what}: validator 1 ignores validator 0: {:?}",
            victim.ignored
        );
        // Wait for the ignore to lapse before the next variant.
        let quiet_by = Instant::now() + Duration::from_secs(60);
        while cluster
            .status(1)
            .await
            .is_some_and(|s| !s.ignored.is_empty())
        {
            assert!(Instant::now() < quiet_by, "the ignore never expired");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The committee certifies checkpoints and agrees; nobody holds the
    // made-up state.
    let certified_by = Instant::now() + Duration::from_secs(60);
    loop {
        let statuses = cluster.statuses().await;
        if statuses
            .iter()
            .all(|s| s.as_ref().is_some_and(|s| s.certified_checkpoint.is_some()))
        {
            for s in statuses.iter().flatten() {
                assert!(s.applied_index < Some(1_000_000), "{s:?}");
                assert!(s.diverged.is_empty(), "{s:?}");
                println!(
                    "validator {}: applied {:?}, certified checkpoint {:?}",
                    s.node_id, s.applied_index, s.certified_checkpoint
                );
            }
            break;
        }
        assert!(
            Instant::now() < certified_by,
            "no certified checkpoint on every validator: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Catching up from another validator: validator 1 falls behind every
    // log the others keep, comes back, and is sent a made-up snapshot by
    // the leader's identity first. It refuses it and fetches a certified
    // snapshot from one of the others (`FetchCheckpoint`) — or, if the
    // leader's own certified snapshot is faster, installs that. Either way
    // it ends in agreement with the others.
    cluster.kill(1).expect("kill validator 1");
    let behind = cluster
        .status(0)
        .await
        .and_then(|s| s.applied_index)
        .unwrap_or(0);
    let purged_by = Instant::now() + Duration::from_secs(60);
    while cluster
        .status(0)
        .await
        .and_then(|s| s.purged_index)
        .unwrap_or(0)
        <= behind + 20
    {
        assert!(
            Instant::now() < purged_by,
            "the others never purged past validator 1"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.spawn(1).expect("restart validator 1");
    let (leader, term) = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let offender = if leader == 1 { 0 } else { leader as usize };
    let refused_by = Instant::now() + Duration::from_secs(30);
    loop {
        let rpc = openraft::raft::InstallSnapshotRequest {
            vote: Vote::new_committed(term, offender as u64),
            meta: meta.clone(),
            offset: 0,
            data: CertifiedCheckpoint::encode_parts(&[], &image).expect("encode"),
            done: true,
        };
        if let Some(mut client) = try_peer_as(&cluster, offender, 1).await {
            if let Err(status) = client
                .install_snapshot(convert::install_request_to(&rpc))
                .await
            {
                if status.message().contains("uncertified_snapshot") {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < refused_by,
            "validator 1 never refused the made-up snapshot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let agreed = cluster
        .wait_for_agreement(&[0, 1, 2, 3], Duration::from_secs(60))
        .await;
    let log = cluster.node_log(1);
    let (index, hash) = agreed.unwrap_or_else(|e| {
        let tail: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("panic") || l.contains("ERROR"))
            .take(10)
            .collect();
        panic!(
            "every validator agrees: {e}; validator 1's log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    });
    let how = if log.contains("caught up from another validator's certified snapshot") {
        "fetched from another validator (FetchCheckpoint)"
    } else {
        "installed the leader's certified snapshot first"
    };
    assert!(
        log.contains("catching up from this validator failed")
            || log.contains("caught up from another validator")
            || log.contains("is not ahead of this one"),
        "validator 1 tried to catch up from another validator: {}",
        log.lines()
            .filter(|l| l.contains("snapshot") || l.contains("catch") || l.contains("refused"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("validator 1 caught up: {how}");
    println!("all four at applied index {index}, state hash {hash}");
    assert_eq!(cluster.stop_all(), Vec::<usize>::new());
}

/// Equivocation: with the leader's own TLS key, the test sends one
/// follower an entry the leader never wrote — a correctly signed transfer
/// from the treasury that no other validator ever sees — at a log id of the
/// leader's term, so Raft takes it for the leader's own and nothing before
/// the state machine can tell. That follower's state differs from the others' from then on. At
/// the next checkpoint the three others certify their state and the victim
/// must find itself diverged (t + 1 signatures on another payload), within
/// one checkpoint interval of the entries being applied, while the others
/// go on certifying and agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_equivocating_leader_is_caught_at_the_next_checkpoint() {
    const INTERVAL: u64 = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = KeygenOptions::new(4, dir.path().join("committee"));
    opts.chain_id = "neuroshard-equivocation".into();
    opts.base_port = free_base_port(8);
    opts.ticks.tick_interval_ms = 200;
    opts.checkpoint_interval = Some(INTERVAL);
    let mut ceremony = keygen::run(&opts).expect("keygen");
    // A short skew bound: the diverged victim's committed time freezes
    // with its state, and its tick watchdog must not take the honest
    // leader for one withholding ticks (checked below, after the bound).
    let genesis_path = ceremony.dir.join("genesis.toml");
    let mut genesis = neuroshard_governance::Genesis::from_toml(
        &std::fs::read_to_string(&genesis_path).expect("genesis"),
    )
    .expect("genesis parses");
    genesis.parameters.insert(
        "gov.max_clock_skew_ms".into(),
        neuroshard_governance::genesis::ParamInput::Integer(SHORT_SKEW_MS as i64),
    );
    std::fs::write(&genesis_path, genesis.to_toml().expect("toml")).expect("write genesis");
    ceremony.genesis = genesis;
    let mut cluster = LocalCluster::start(&neuroshard_binary(), ceremony).expect("start");
    let (leader, term) = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let victim = (0..4usize)
        .find(|i| *i as u64 != leader)
        .expect("a follower");

    // One entry after the victim's last one: a valid transfer only the
    // victim will hold.
    let treasury = neuroshard_cli::bench::read_key(
        cluster
            .ceremony
            .treasury_key
            .as_ref()
            .expect("treasury key"),
    )
    .expect("treasury key");
    let chain_id = cluster.ceremony.genesis.chain_id.clone();
    let receiver = neuroshard_governance::AccountId(
        ed25519_dalek::SigningKey::from_bytes(&[77; 32])
            .verifying_key()
            .to_bytes(),
    );
    let transfer = neuroshard_governance::SignedCommand::sign(
        &chain_id,
        &treasury,
        1,
        neuroshard_governance::Command::Transfer {
            to: receiver,
            amount: neuroshard_governance::Amount(5 * neuroshard_governance::NEURO),
        },
    );
    let mut sent_at = None;
    for _attempt in 0..50 {
        // Connected first, so the entry goes out right after the victim's
        // last index is read.
        let mut client = peer_as(&cluster, leader as usize, victim).await;
        let last = cluster
            .status(victim)
            .await
            .and_then(|s| s.last_log_index)
            .unwrap_or(0);
        let log_id = |index| LogId::new(CommittedLeaderId::new(term, leader), index);
        let rpc = openraft::raft::AppendEntriesRequest {
            vote: Vote::new_committed(term, leader),
            prev_log_id: Some(log_id(last)),
            leader_commit: None,
            entries: vec![RaftEntry {
                log_id: log_id(last + 1),
                payload: EntryPayload::Normal(Entry::Command(transfer.clone())),
            }],
        };
        if let Ok(answer) = client
            .append_entries(convert::append_request_to(&rpc).expect("encode"))
            .await
        {
            let answer = answer.into_inner();
            if !matches!(
                answer.result,
                Some(proto::append_entries_response::Result::Success(_))
            ) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            println!(
                "equivocated entry {} sent to validator {victim}: {answer:?}",
                last + 1
            );
            sent_at = Some((Instant::now(), last + 1));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (sent_at, entry_index) = sent_at.expect("the victim took the equivocated entry");

    // Detected within one checkpoint interval: the next checkpoint comes
    // after at most INTERVAL entries (ticks every 200 ms: about 4 s), plus
    // the shares' exchange; the bound leaves room for a loaded machine.
    let detect_by = sent_at + Duration::from_secs(60);
    let diverged = loop {
        if let Some(s) = cluster.status(victim).await {
            if !s.diverged.is_empty() {
                break s;
            }
        }
        assert!(
            Instant::now() < detect_by,
            "validator {victim} never found itself diverged: {:?}",
            cluster.statuses().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let detected_after = sent_at.elapsed();
    println!(
        "validator {victim} diverged after {detected_after:?}: {}",
        diverged.diverged
    );
    // Caught at the first checkpoint after the entries, not later.
    let first_after = diverged
        .diverged
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.trim_end_matches(':').parse::<u64>().ok())
        .expect("the checkpoint index in the status");
    let first_checkpoint = entry_index.div_ceil(INTERVAL) * INTERVAL;
    assert_eq!(
        first_after, first_checkpoint,
        "the entry at {entry_index} is caught at the first checkpoint after it"
    );
    // The others certify on and agree among themselves.
    let others: Vec<usize> = (0..4).filter(|i| *i != victim).collect();
    let (index, hash) = cluster
        .wait_for_agreement(&others, Duration::from_secs(60))
        .await
        .expect("the three others agree");
    for &i in &others {
        let s = cluster.status(i).await.expect("status");
        assert!(s.diverged.is_empty(), "validator {i}: {s:?}");
        assert!(
            s.certified_checkpoint >= Some(first_after),
            "validator {i} certified the checkpoint the victim diverged at: {s:?}"
        );
    }
    println!("the three others at applied index {index}, state hash {hash}");

    // The diverged victim stands down (issue 13, item 2): it orders nothing,
    // answers linearizable reads with `replica_diverged` and stale reads
    // from its frozen state, marked; it never leads; all of it survives a
    // restart.
    let receiver_hex: String = receiver.0.iter().map(|b| format!("{b:02x}")).collect();
    let endpoints = cluster.ceremony.api_endpoints.clone();
    let ca = cluster.ca();
    let gov = |i: usize| {
        let (endpoint, ca) = (endpoints[i].clone(), ca.clone());
        async move {
            GovernanceClient::connect(&endpoint, &ca, Duration::from_secs(5))
                .await
                .expect("connect")
        }
    };
    let refused = gov(victim)
        .await
        .submit(&transfer)
        .await
        .expect_err("a diverged validator orders nothing");
    assert_eq!(refused.rule(), Some("replica_diverged"), "{refused}");
    let refused = gov(victim)
        .await
        .account(&receiver_hex, false)
        .await
        .expect_err("no linearizable read from a diverged validator");
    assert_eq!(refused.rule(), Some("replica_diverged"), "{refused}");
    let frozen = |a: &neuroshard_node::api_proto::Account| {
        let point = a.read_point.expect("a read point");
        assert!(point.diverged, "the stale read is marked diverged: {a:?}");
        assert!(!point.linearizable);
        point.applied_index
    };
    let stale = gov(victim)
        .await
        .account(&receiver_hex, true)
        .await
        .expect("a stale read");
    assert_eq!(
        stale.balance,
        5 * neuroshard_governance::NEURO,
        "the victim's own (equivocated) state"
    );
    let frozen_at = frozen(&stale);
    // The committee never applied the equivocated transfer; the same
    // command sent to another validator is ordered and applied there.
    let other = others[0];
    gov(other)
        .await
        .submit(&transfer)
        .await
        .expect("the committee orders what the victim refused");
    let applied_before = cluster
        .status(victim)
        .await
        .and_then(|s| s.applied_index)
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim_now = cluster.status(victim).await.expect("status");
    assert!(
        victim_now.applied_index > Some(applied_before),
        "the victim still stores and acknowledges the log: {victim_now:?}"
    );
    let again = gov(victim)
        .await
        .account(&receiver_hex, true)
        .await
        .expect("a stale read");
    assert_eq!(frozen(&again), frozen_at, "its governance state is frozen");

    // Its committed time is frozen too, for longer than the skew bound
    // and the watchdog's grace: it must neither refuse the honest leader
    // (`ticks_withheld`) nor campaign.
    let (leader_then, term_then) = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    tokio::time::sleep(Duration::from_millis(SHORT_SKEW_MS + 4_000)).await;
    let quiet = cluster.status(victim).await.expect("status");
    assert!(
        quiet.ignored.is_empty(),
        "the diverged victim ignores no honest leader: {:?}",
        quiet.ignored
    );
    let (leader_now, term_now) = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    assert_eq!(
        (leader_now, term_now),
        (leader_then, term_then),
        "no election while the diverged victim idles"
    );

    // The leader goes away: the others elect one of themselves (the
    // victim votes but never campaigns).
    assert_ne!(
        leader_now as usize, victim,
        "a diverged validator never leads"
    );
    cluster.kill(leader_now as usize).expect("kill the leader");
    let (next, _) = cluster
        .wait_for_leader(Duration::from_secs(60))
        .await
        .expect("another leader");
    assert_ne!(next as usize, victim, "a diverged validator never leads");
    assert_ne!(next, leader_now);
    cluster.spawn(leader_now as usize).expect("restart");

    // A restart keeps it diverged and frozen at the same point.
    cluster.kill(victim).expect("kill the victim");
    cluster.spawn(victim).expect("restart the victim");
    let restarted_by = Instant::now() + Duration::from_secs(60);
    let after = loop {
        if let Some(s) = cluster.status(victim).await {
            break s;
        }
        assert!(Instant::now() < restarted_by, "the victim did not restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        !after.diverged.is_empty(),
        "diverged across a restart: {after:?}"
    );
    let stale = gov(victim)
        .await
        .account(&receiver_hex, true)
        .await
        .expect("a stale read after the restart");
    assert_eq!(
        frozen(&stale),
        frozen_at,
        "the replay stops where the state froze"
    );
    assert_eq!(stale.balance, 5 * neuroshard_governance::NEURO);
    println!(
        "validator {victim} stands down: submit and linearizable reads refused (replica_diverged), stale reads marked and frozen at {frozen_at} across a restart, never leads (validator {next} took over)"
    );
    let (index, hash) = cluster
        .wait_for_agreement(&others, Duration::from_secs(60))
        .await
        .expect("the three others agree again");
    println!("the three others at applied index {index}, state hash {hash}");
    assert_eq!(cluster.stop_all(), Vec::<usize>::new());
}

/// The committee's own certificate over a made-up payload of this chain,
/// signed with validators 0..=t's real BLS shares: it verifies.
fn committee_certificate(
    cluster: &LocalCluster,
    genesis: &neuroshard_governance::Genesis,
    sequence: u64,
) -> neuroshard_governance::IssuedCertificate {
    use neuroshard_certificate::proto::CertificatePayload;
    use neuroshard_certificate::{encode_payload, signing_message, Envelope, ShareIndex};
    let info = &genesis.committee.info;
    let payload = encode_payload(&CertificatePayload {
        chain_id: genesis.chain_id.clone(),
        committee_hash: genesis.committee.committee_hash().to_vec(),
        sequence,
        ..Default::default()
    });
    let scheme = info.scheme.scheme();
    let shares: Vec<_> = (0..=info.t as usize)
        .map(|i| {
            let config = NodeConfig::load(&cluster.ceremony.node_configs[i]).expect("config");
            let k = neuroshard_node::keys::load_validator_keys(
                i as u64,
                genesis,
                &config.keys.identity,
                &config.keys.bls_share,
            )
            .expect("keys");
            let share = scheme
                .sign_share(&k.bls_share, &signing_message(&payload))
                .expect("share");
            (ShareIndex(i as u32), share)
        })
        .collect();
    let keys = scheme
        .public_key_set_from_bytes(genesis.committee.public_key_set.as_ref().expect("keys"))
        .expect("key set");
    let envelope = Envelope::combine(&keys, &shares, payload, info.epoch).expect("combine");
    neuroshard_governance::IssuedCertificate {
        sequence,
        envelope,
        shares: shares
            .iter()
            .map(
                |(i, s)| neuroshard_governance::certificate::CertificateShare {
                    validator: i.0,
                    share: s.to_bytes().to_vec(),
                },
            )
            .collect(),
    }
}

/// `OfferCertificate` (the leader's combined certificate, sent before it is
/// proposed so followers verify it off their write path): only this
/// replica's leader may offer, the size bound holds at, under and over its
/// value, undecodable bytes are refused by rule, and a certificate this
/// replica has not decided is refused before any pairing (the valid path,
/// on a decided certificate, is checked by `lifecycle.rs` through the
/// followers' `neuroshard_certificate_offers_total{verdict="valid"}`). An
/// offer is not an entry: it is not an offence and changes no replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificate_offers_are_checked_by_rule() {
    use neuroshard_node::transport::peer_service::MAX_CERTIFICATE_OFFER_BYTES;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = KeygenOptions::new(4, dir.path().join("committee"));
    opts.chain_id = "neuroshard-offers".into();
    opts.base_port = free_base_port(8);
    let ceremony = keygen::run(&opts).expect("keygen");
    let genesis = ceremony.genesis.clone();
    let mut cluster = LocalCluster::start(&neuroshard_binary(), ceremony).expect("start");
    let (leader, _) = cluster
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let leader = leader as usize;
    let follower = (0..4).find(|i| *i != leader).expect("a follower");
    let other = (0..4)
        .find(|i| *i != leader && *i != follower)
        .expect("another follower");
    let offer = |from: usize, certificate: Vec<u8>| proto::CertificateOfferRequest {
        from: from as u64,
        certificate,
    };
    let good = committee_certificate(&cluster, &genesis, 1);
    let good_bytes = neuroshard_node::codec::encode_entry("certificate", &good).expect("encode");

    // Not from the follower's leader: refused before anything is decoded.
    let mut as_other = peer_as(&cluster, other, follower).await;
    let err = as_other
        .offer_certificate(offer(other, good_bytes.clone()))
        .await
        .expect_err("an offer from a non-leader");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("offer_not_from_leader"), "{err:?}");

    let mut as_leader = peer_as(&cluster, leader, follower).await;
    // Over the bound, at it and under it (not a certificate either way).
    for (len, rule) in [
        (MAX_CERTIFICATE_OFFER_BYTES + 1, "offer_too_large"),
        (MAX_CERTIFICATE_OFFER_BYTES, "offer_malformed"),
        (MAX_CERTIFICATE_OFFER_BYTES - 1, "offer_malformed"),
        (3, "offer_malformed"),
    ] {
        let err = as_leader
            .offer_certificate(offer(leader, vec![0xff; len]))
            .await
            .expect_err("not a certificate");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{len}: {err:?}");
        assert!(err.message().contains(rule), "{len}: {err:?}");
    }

    // The committee's own certificate, but for a sequence this replica has
    // not decided: refused before any pairing.
    let err = as_leader
        .offer_certificate(offer(leader, good_bytes))
        .await
        .expect_err("not pending");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("offer_not_pending"), "{err:?}");

    // An offer is not an entry: the follower ignores nobody and refused
    // nothing before Raft, and the leader still leads.
    let status = cluster.status(follower).await.expect("status");
    assert!(status.ignored.is_empty(), "{:?}", status.ignored);
    assert!(
        status.safety_refusals.values().all(|n| *n == 0),
        "{:?}",
        status.safety_refusals
    );
    assert_eq!(cluster.stop_all(), Vec::<usize>::new());
}
