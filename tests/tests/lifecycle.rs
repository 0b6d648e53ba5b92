//! A NEP's whole lifecycle through the `neuroshard` CLI against four real
//! validator processes, as its author and stakers would run it: accounts,
//! stake, draft, amend, a withdrawn second draft, submit, votes with a
//! re-vote, the decision and its certificate, a vote after the deadline
//! refused with `VotingClosed`, a vote receipt proving a ballot was counted
//! as cast (checked by the CLI and, independently, here), certificate files
//! verified against the pinned committee info, activation, and a light node
//! following the chain from another validator.

mod cli_support;

use std::time::Duration;

use neuroshard_certificate::merkle::{BallotChoice, BallotLeaf, InclusionProof};
use neuroshard_certificate::{CommitteeInfo, Envelope, Verifier};
use neuroshard_governance::{GovError, NEURO};
use neuroshard_node::api_proto::get_certificate_request::By;
use neuroshard_node::GovernanceClient;

use cli_support::{proposal_file, Setup};

const TITLE: &str = "Add Multi-Token Prediction Training";

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What grpcurl and load balancers use: health and reflection on the API
/// listener, through the committee CA's server TLS.
async fn standard_tools_work(endpoint: &str, ca: &std::path::Path) {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let channel = neuroshard_node::client::connect_channel(endpoint, ca, Duration::from_secs(5))
        .await
        .expect("channel");
    // NOT_SERVING until this validator knows the leader and is caught up
    // (docs/operations.md, "Metrics, health and alerts"): a moment after
    // the committee's first leader.
    let mut status = ServingStatus::Unknown as i32;
    for _ in 0..100 {
        status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: "neuroshard.governance.v1.Governance".into(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status;
        if status == ServingStatus::Serving as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, ServingStatus::Serving as i32);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("answer")
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "neuroshard.governance.v1.Governance",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} not in {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nep_goes_from_draft_to_active_through_the_cli() {
    let c = cli_support::start(Setup::default()).await;
    standard_tools_work(&c.cluster.ceremony.api_endpoints[2], &c.dir.join("ca.pem")).await;
    let (alice, _) = c.staker("alice", "1000", "500");
    let (bob, _) = c.staker("bob", "5000", "4000");
    let (carol, carol_account) = c.staker("carol", "3000", "2000");
    let (dave, _) = c.staker("dave", "2000", "1500");
    // Linearizable by default: a command applied through one validator is
    // seen at once through any other (a follower waits for the leader's
    // read index).
    let (erin_key, erin) = c.staker("erin", "10", "1");
    for endpoint in &c.cluster.ceremony.api_endpoints {
        let mut api =
            GovernanceClient::connect(endpoint, &c.dir.join("ca.pem"), Duration::from_secs(10))
                .await
                .expect("API client");
        let before = api.account(&erin, false).await.expect("account");
        c.ok(&[
            "stake",
            "1",
            "--key",
            &erin_key,
            "--endpoint",
            &c.cluster.ceremony.api_endpoints[0],
        ]);
        let after = api.account(&erin, false).await.expect("account");
        assert_eq!(
            after.staked,
            before.staked + NEURO,
            "read through {endpoint}"
        );
        let point = after.read_point.expect("read point");
        assert!(point.linearizable);
    }
    let shown = c.json(&["account", "show", "--key", &alice]);
    assert_eq!(shown["balance"], 500 * NEURO);
    assert_eq!(shown["staked"], 500 * NEURO);
    assert_eq!(
        shown["next_nonce"], 2,
        "one command (stake) so far: {shown}"
    );

    // Draft, amend, and a refused amendment by somebody else.
    let draft = c.path("draft.toml");
    proposal_file(
        std::path::Path::new(&draft),
        "Multi-token prediction (first draft)",
    );
    let created = c.json(&["nep", "draft", &draft, "--key", &alice]);
    let nep = created["nep"].as_u64().expect("NEP id").to_string();
    assert_eq!(created["effect"], "DraftCreated");
    let final_text = c.path("final.toml");
    proposal_file(std::path::Path::new(&final_text), TITLE);
    c.ok(&["nep", "amend", &nep, &final_text, "--key", &alice]);
    let refused = c.cli(&["nep", "amend", &nep, &draft, "--key", &bob]);
    assert!(!refused.status.success());
    assert!(
        stderr_of(&refused).contains("[not_author]"),
        "{}",
        stderr_of(&refused)
    );
    let shown = c.json(&["nep", "show", &nep]);
    assert_eq!(shown["title"], TITLE);
    assert_eq!(shown["stage"], "DRAFT");

    // A second draft, withdrawn by its author.
    let other = c.json(&["nep", "draft", &draft, "--key", &alice])["nep"]
        .as_u64()
        .expect("second NEP")
        .to_string();
    c.ok(&["nep", "withdraw", &other, "--key", &alice]);
    let withdrawn = c.json(&["nep", "list", "--stage", "withdrawn"]);
    assert_eq!(
        withdrawn.as_array().map(|a| a.len()),
        Some(1),
        "{withdrawn}"
    );
    assert_eq!(withdrawn[0]["nep"].to_string(), other);

    // Submit, review, vote (carol changes her mind).
    let submitted = c.json(&["nep", "submit", &nep, "--key", &alice]);
    assert_eq!(submitted["effect"], "Submitted");
    c.watch_until(&nep, "VOTING");
    c.ok(&["nep", "vote", &nep, "yes", "--key", &bob]);
    c.ok(&["nep", "vote", &nep, "yes", "--key", &carol]);
    c.ok(&["nep", "vote", &nep, "abstain", "--key", &dave]);
    let revote = c.json(&["nep", "vote", &nep, "no", "--key", &carol]);
    assert_eq!(
        revote["receipt"]["effect"]["Voted"]["replaced"], "yes",
        "{revote}"
    );
    let live = c.json(&["nep", "show", &nep])["vote"].clone();
    assert_eq!(live["yes"], 4000 * NEURO);
    assert_eq!(live["no"], 2000 * NEURO);
    assert_eq!(live["abstain"], 1500 * NEURO);
    assert_eq!(live["ballots"], 3);
    assert_eq!(live["closed"], false);

    // The decision: 4000 yes of 6000 yes+no = 66.7% >= 66%, quorum 7500/8000.
    let scheduled = c.watch_until(&nep, "SCHEDULED");
    assert_eq!(
        scheduled["certificates"],
        serde_json::json!([1]),
        "{scheduled}"
    );

    // A vote after the closing tick is refused, by name and with its values.
    let late = c.cli(&["nep", "vote", &nep, "yes", "--key", &alice]);
    assert!(!late.status.success(), "a late vote was accepted");
    assert!(
        stderr_of(&late).contains("[voting_closed]"),
        "{}",
        stderr_of(&late)
    );
    let mut api = GovernanceClient::connect(
        &c.cluster.ceremony.api_endpoints[1],
        &c.dir.join("ca.pem"),
        Duration::from_secs(10),
    )
    .await
    .expect("API client");
    let status = api.status().await.expect("status");
    assert_eq!(status.certificates, 1);

    // Carol's receipt, through the CLI...
    let committee_json = c.committee_file("committee.json");
    let receipt = c.json(&[
        "nep",
        "receipt",
        &nep,
        "--key",
        &carol,
        "--committee",
        &committee_json,
    ]);
    assert_eq!(receipt["choice"], "no");
    assert_eq!(receipt["path_verified"], true, "{receipt}");
    assert_eq!(receipt["certificate_verified"], true, "{receipt}");
    // ...and checked here from the raw answers: the leaf and its path give
    // the root, and the root is the one the committee signed.
    let nep_id: u64 = nep.parse().expect("id");
    let raw = api
        .vote_receipt(nep_id, &carol_account, false)
        .await
        .expect("receipt");
    let leaf = BallotLeaf {
        account: neuroshard_governance::AccountId::from_hex(&carol_account)
            .expect("account")
            .0,
        choice: BallotChoice::No,
        power: 2000 * NEURO,
    };
    let proof = InclusionProof {
        leaf_index: raw.leaf_index,
        tree_size: raw.tree_size,
        path: raw
            .path
            .iter()
            .map(|h| h.as_slice().try_into().expect("32 bytes"))
            .collect(),
    };
    let root: [u8; 32] = raw.ballots_root.as_slice().try_into().expect("root");
    assert!(
        proof.verify(&leaf, &root),
        "the Merkle path does not lead to the root"
    );
    let forged = BallotLeaf {
        choice: BallotChoice::Yes,
        ..leaf
    };
    assert!(
        !proof.verify(&forged, &root),
        "a different choice must not verify"
    );
    let cert = api
        .certificate(By::Sequence(raw.certificate.expect("certified")), false)
        .await
        .expect("certificate");
    let pinned = CommitteeInfo::from_json(&std::fs::read(&committee_json).expect("committee"))
        .expect("committee info");
    let verified = Verifier::new(pinned)
        .expect("verifier")
        .verify(&Envelope::from_proto(cert.envelope.expect("issued")).expect("envelope"))
        .expect("the certificate verifies against the pinned committee");
    assert_eq!(verified.payload.ballots_root, root.to_vec());
    assert_eq!(verified.payload.tally.expect("tally").no, 2000 * NEURO);

    // The certificate as a file, verified with the pinned committee only.
    let file = c.path("certificate-1.json");
    c.ok(&["cert", "get", "--nep", &nep, "--out", &file]);
    let checked = c.json(&["cert", "verify", &file, "--committee", &committee_json]);
    assert_eq!(checked["kind"], "ACTIVATION");
    assert_eq!(checked["nep"].to_string(), nep);
    assert_eq!(checked["changes"][0]["key"], "train.prediction_heads");

    // Activation, the active parameters, and a released stake lock.
    c.watch_until(&nep, "ACTIVE");
    let params = c.json(&["params"]);
    assert_eq!(params["version"], "1.1", "{params}");
    let heads = params["parameters"]
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["key"] == "train.prediction_heads")
        .expect("train.prediction_heads")
        .clone();
    assert_eq!(heads["value"], "4");
    c.ok(&["unstake", "100", "--key", &carol]);

    // A light node pinned to committee.json and genesis.toml follows the
    // chain from the last validator.
    let followed = c.ok(&[
        "cert",
        "follow",
        "--committee",
        &committee_json,
        "--genesis",
        &c.committee_file("genesis.toml"),
        "--count",
        "1",
        "--endpoint",
        &c.cluster.ceremony.api_endpoints[3],
        "--json",
    ]);
    let event: serde_json::Value =
        serde_json::from_str(followed.lines().last().expect("a line")).expect("json");
    assert_eq!(event["certificate"]["sequence"], 1);
    assert_eq!(
        event["active_now"]["changed"]["train.prediction_heads"],
        "4"
    );

    // The typed error of the late vote, as a client library sees it.
    let mut late = neuroshard_cli::session::Session::new(
        c.cluster.ceremony.api_endpoints.clone(),
        c.dir.join("ca.pem"),
    );
    let key = neuroshard_cli::keyfile::read_key_file(std::path::Path::new(&dave)).expect("key");
    let err = neuroshard_cli::nep::vote(
        &mut late,
        &key,
        neuroshard_governance::NepId(nep_id),
        neuroshard_governance::VoteChoice::Yes,
    )
    .await
    .expect_err("voting is closed");
    let api_err = err
        .downcast_ref::<neuroshard_node::ApiError>()
        .expect("an API error");
    match api_err.gov_error() {
        Some(GovError::VotingClosed {
            deadline_ms,
            committed_ms,
            ..
        }) => assert!(deadline_ms <= committed_ms),
        other => panic!("expected VotingClosed, got {other:?} ({api_err})"),
    }

    // The certificates were offered to the followers before they were
    // proposed (`OfferCertificate`), and every offer verified.
    let (mut valid, mut invalid) = (0.0, 0.0);
    for i in 0..4 {
        valid += cli_support::metric(
            &c.cluster,
            i,
            "neuroshard_certificate_offers_total{verdict=\"valid\"}",
        )
        .await;
        invalid += cli_support::metric(
            &c.cluster,
            i,
            "neuroshard_certificate_offers_total{verdict=\"invalid\"}",
        )
        .await;
    }
    assert!(valid >= 1.0, "no follower verified an offered certificate");
    assert_eq!(
        invalid, 0.0,
        "a follower found an offered certificate invalid"
    );

    let mut cluster = c.cluster;
    assert_eq!(
        cluster.stop_all(),
        Vec::<usize>::new(),
        "validators that needed SIGKILL"
    );
}
