//! Certificate issuance on real validator processes (DESIGN §5): the leader
//! is killed with SIGKILL while it is collecting signature shares, and the
//! certificate is still issued, by the next leader, exactly once.
//!
//! The leader is killed the moment it has decided the certificate (it
//! applied the closing tick), while it collects the shares or has just
//! combined them. (An earlier version held the collection window open with
//! two followers' clocks 5 s behind a 1 s skew bound; since validators
//! refuse ticks that far ahead of their clocks, such followers cannot follow
//! at all, so a committed decision is signable at once by every validator
//! that stored it.) Whoever issues it, the certificate is issued exactly
//! once and every replica holds the same one.

mod cli_support;

use std::path::Path;
use std::time::{Duration, Instant};

use neuroshard_certificate::proto::CertificateKind;
use neuroshard_certificate::{CommitteeInfo, Envelope, Verifier};
use neuroshard_cli::keyfile::{account_of, read_key_file};
use neuroshard_cli::session::Session;
use neuroshard_cli::{account, nep};
use neuroshard_governance::{NepId, Stage, VoteChoice};
use neuroshard_node::api_proto::get_certificate_request::By;
use neuroshard_node::api_proto::Certificate;
use neuroshard_node::transport::api_convert::stage_from_proto;
use neuroshard_node::GovernanceClient;

use cli_support::{proposal_file, Setup};

const MAX_SKEW_MS: i64 = 1_000;

async fn client(endpoint: &str, ca: &Path) -> Option<GovernanceClient> {
    GovernanceClient::connect(endpoint, ca, Duration::from_secs(3))
        .await
        .ok()
}

/// Certificate 1 as validator `i` holds it (a stale read: what that replica
/// has applied).
async fn certificate_at(endpoint: &str, ca: &Path) -> Option<Certificate> {
    let mut c = client(endpoint, ca).await?;
    let cert = c.certificate(By::Sequence(1), true).await.ok()?;
    Some(cert)
}

async fn wait_for_stage(s: &mut Session, id: NepId, stage: Stage, timeout: Duration) {
    let start = Instant::now();
    loop {
        let p = nep::proposal(s, id).await.expect("proposal");
        if stage_from_proto(p.stage) == Some(stage) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "{id} did not reach {stage} within {timeout:?} (stage {:?})",
            stage_from_proto(p.stage)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_dies_while_collecting_shares_and_the_certificate_is_issued_once() {
    let mut c = cli_support::start(Setup {
        // The floor of gov.day_ms, with 2-day REVIEW and VOTING.
        day_ms: 1_000,
        tick_ms: 50,
        parameters: vec![
            ("gov.max_clock_skew_ms", MAX_SKEW_MS),
            ("gov.review_days", 2),
            ("gov.voting_days", 2),
        ],
        clock_offsets: Vec::new(),
    })
    .await;
    let ca = c.dir.join("ca.pem");
    let endpoints = c.cluster.ceremony.api_endpoints.clone();

    let (leader, _) = c
        .cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .expect("leader");
    let leader = leader as usize;
    let on_time = (0..4).find(|i| *i != leader).expect("a follower");

    // A NEP decided by a vote.
    let mut s = Session::new(endpoints.clone(), ca.clone());
    let treasury = read_key_file(&c.dir.join("treasury.key")).expect("treasury key");
    let (alice, _) =
        neuroshard_cli::keyfile::create_key_file(&c.work.join("alice.key")).expect("key");
    let (bob, _) = neuroshard_cli::keyfile::create_key_file(&c.work.join("bob.key")).expect("key");
    for (key, fund, stake) in [(&alice, "1000", "500"), (&bob, "5000", "4000")] {
        account::transfer(&mut s, &treasury, &account_of(key).to_hex(), fund)
            .await
            .expect("fund");
        account::stake(&mut s, key, stake).await.expect("stake");
    }
    let file = c.work.join("nep.toml");
    proposal_file(&file, "Add Multi-Token Prediction Training");
    let id = NepId(
        nep::draft(&mut s, &alice, &file)
            .await
            .expect("draft")
            .nep
            .expect("id"),
    );
    nep::submit(&mut s, &alice, id).await.expect("submit");
    wait_for_stage(&mut s, id, Stage::Voting, Duration::from_secs(20)).await;
    nep::vote(&mut s, &bob, id, VoteChoice::Yes)
        .await
        .expect("vote");

    // SIGKILL the leader the moment it has decided certificate 1.
    let mut leader_api = client(&endpoints[leader], &ca).await.expect("client");
    let start = Instant::now();
    loop {
        if let Ok(st) = leader_api.status().await {
            if st.certificates >= 1 {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the leader did not decide certificate 1"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.cluster.kill(leader).expect("kill -9 the leader");
    let decided = Instant::now();
    let (new_leader, _) = c
        .cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .expect("a new leader");
    assert_ne!(new_leader as usize, leader);

    // Issued (by the old leader just before it died, or by the new one
    // from the live validators' re-sent shares).
    let start = Instant::now();
    let cert = loop {
        if let Some(cert) = certificate_at(&endpoints[on_time], &ca).await {
            if cert.issued {
                break cert;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "certificate 1 was not issued after the leader died"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut signers = cert.signers.clone();
    signers.sort_unstable();
    signers.dedup();
    assert_eq!(signers.len(), 3, "t + 1 = 3 distinct signers: {signers:?}");
    println!(
        "certificate 1 issued {:?} after the leader ({leader}) was killed at its decision; signers {signers:?}",
        decided.elapsed()
    );

    // The certificate verifies as a light node would check it.
    let pinned =
        CommitteeInfo::from_json(&std::fs::read(c.dir.join("committee.json")).expect("file"))
            .expect("committee info");
    let verified = Verifier::new(pinned)
        .expect("verifier")
        .verify(&Envelope::from_proto(cert.envelope.clone().expect("envelope")).expect("decode"))
        .expect("certificate verifies against the pinned committee");
    assert_eq!(verified.payload.sequence, 1);
    assert_eq!(verified.payload.kind, CertificateKind::Activation as i32);
    assert_eq!(verified.payload.nep_id, id.0);

    // Exactly once: the old leader comes back, every replica agrees, and
    // every validator holds the same single certificate.
    c.cluster.spawn(leader).expect("restart the old leader");
    c.cluster
        .wait_for_agreement(&[0, 1, 2, 3], Duration::from_secs(30))
        .await
        .expect("all four replicas agree");
    for (i, endpoint) in endpoints.iter().enumerate() {
        let mut api = client(endpoint, &ca).await.expect("client");
        let status = api.status().await.expect("status");
        assert_eq!(
            (status.certificates, status.pending_certificates),
            (1, 0),
            "validator {i}"
        );
        let held = api.certificate(By::Sequence(1), true).await.expect("cert");
        assert_eq!(held.envelope_json, cert.envelope_json, "validator {i}");
        let listed = api.certificates(1, 10, true).await.expect("list");
        assert_eq!(listed.certificates.len(), 1, "validator {i}");
    }
    assert_eq!(c.cluster.stop_all(), Vec::<usize>::new());
}
