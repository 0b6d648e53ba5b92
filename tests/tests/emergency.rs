//! The emergency track end to end, through the `neuroshard` CLI against
//! four real validator processes: a scheduled NET NEP is CANCELLED when an
//! emergency NEP on the same key is approved by 2f+1 validators, the
//! emergency activates, its ratification vote fails for want of a quorum
//! and it is REVOKED — the old value is back, and each of the four
//! certificates (ACTIVATION, CANCELLATION, ACTIVATION, REVOCATION) verifies
//! against the pinned committee alone, one by one and as a followed chain.
//! `neuroshard status` agrees across the committee at the end.

mod cli_support;

use cli_support::Setup;

const KEY: &str = "net.max_message_bytes";

/// A NET NEP on the key the emergency example changes: 4 MiB → 2 MiB.
const NET_NEP: &str = r#"
title = "Halve the peer-to-peer message cap"
nep_type = "NET"
motivation = "Smaller messages spread load across the shard network."
specification = "Lower net.max_message_bytes from 4 MiB to 2 MiB."

[[parameter_changes]]
key = "net.max_message_bytes"
expected_old = 4194304
new = 2097152

[economic_impact]
training_efficiency_multiplier = 1.0
training_reward_multiplier = 1.0
net_earnings_change_percent = 0.0
summary = "No change to training or rewards."

[upgrade_path]
# The longest grace (30 s at 1 000 ms a day): the emergency must be approved
# while this NEP is still SCHEDULED, however slow the CLI calls are.
grace_period_days = 30
backward_compatible = true
"#;

fn param(c: &cli_support::Committee, key: &str) -> String {
    let params = c.json(&["params"]);
    params["parameters"]
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["key"] == key)
        .unwrap_or_else(|| panic!("{key} in {params}"))["value"]
        .as_str()
        .expect("value")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_cancels_a_scheduled_nep_and_a_failed_ratification_revokes_it() {
    let c = cli_support::start(Setup {
        parameters: vec![
            ("gov.review_days", 1),
            ("gov.voting_days", 4),
            // Room for the CLI calls between approvals (a day is 1 000 ms).
            ("gov.emergency_window_days", 20),
        ],
        ..Setup::default()
    })
    .await;
    let (author, _) = c.staker("author", "1000", "500");
    let (bob, _) = c.staker("bob", "5000", "4000");
    let validator_key = |i: usize| c.committee_file(&format!("validator-{i}/identity.key"));

    // A NET NEP, approved and SCHEDULED (its grace is 30 days).
    let file = c.path("net.toml");
    std::fs::write(&file, NET_NEP).expect("write NEP file");
    let net = c.json(&["nep", "draft", &file, "--key", &author])["nep"]
        .as_u64()
        .expect("NEP id")
        .to_string();
    c.ok(&["nep", "submit", &net, "--key", &author]);
    c.watch_until(&net, "VOTING");
    c.ok(&["nep", "vote", &net, "yes", "--key", &bob]);
    c.watch_until(&net, "SCHEDULED");

    // A client key is not a validator's: it cannot propose an emergency.
    let emerg_file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/neps/emergency-message-cap.toml"
    );
    let refused = c.cli(&["emergency", "propose", emerg_file, "--key", &bob]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("[not_validator]"), "{stderr}");

    // Validator 0 proposes the emergency; 2f = 2 approvals leave it
    // waiting, the third schedules it and cancels the NET NEP.
    let emerg = c.json(&[
        "emergency",
        "propose",
        emerg_file,
        "--key",
        &validator_key(0),
    ])["nep"]
        .as_u64()
        .expect("emergency NEP id")
        .to_string();
    for v in [0, 1] {
        c.ok(&["emergency", "approve", &emerg, "--key", &validator_key(v)]);
    }
    let waiting = c.json(&["nep", "show", &emerg]);
    assert_eq!(waiting["stage"], "AWAITING_APPROVAL", "{waiting}");
    let again = c.cli(&["emergency", "approve", &emerg, "--key", &validator_key(1)]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("[already_approved]"), "{stderr}");
    c.ok(&["emergency", "approve", &emerg, "--key", &validator_key(2)]);

    let cancelled = c.watch_until(&net, "CANCELLED");
    assert_eq!(
        cancelled["certificates"].as_array().map(|a| a.len()),
        Some(2),
        "the NET NEP's ACTIVATION and CANCELLATION: {cancelled}"
    );
    c.watch_until(&emerg, "ACTIVE");
    assert_eq!(param(&c, KEY), "1048576", "the emergency's value is active");

    // Nobody votes on the ratification: no quorum, so it fails.
    let revoked = c.watch_until(&emerg, "REVOKED");
    assert_eq!(
        revoked["certificates"].as_array().map(|a| a.len()),
        Some(2),
        "the emergency's ACTIVATION and REVOCATION: {revoked}"
    );
    assert_eq!(
        param(&c, KEY),
        "4194304",
        "the revocation restored the value"
    );

    // Each certificate, fetched from a different validator, verifies with
    // the pinned committee alone, in sequence order.
    let committee = c.committee_file("committee.json");
    let mut kinds = Vec::new();
    for seq in 1..=4u64 {
        let endpoint = &c.cluster.ceremony.api_endpoints[seq as usize % 4];
        let out = c.path(&format!("certificate-{seq}.json"));
        c.ok(&[
            "cert",
            "get",
            &seq.to_string(),
            "--out",
            &out,
            "--endpoint",
            endpoint,
        ]);
        let checked = c.json(&["cert", "verify", &out, "--committee", &committee]);
        assert_eq!(checked["sequence"], seq, "{checked}");
        kinds.push((
            checked["kind"].as_str().expect("kind").to_owned(),
            checked["nep"].to_string(),
        ));
    }
    kinds[1..3].sort();
    assert_eq!(
        kinds,
        [
            ("ACTIVATION".to_owned(), net.clone()),
            ("ACTIVATION".to_owned(), emerg.clone()),
            ("CANCELLATION".to_owned(), net.clone()),
            ("REVOCATION".to_owned(), emerg.clone()),
        ]
    );
    assert!(
        !c.cli(&["cert", "get", "5"]).status.success(),
        "there is no fifth certificate"
    );

    // A light node follows the whole chain and ends on the restored value.
    let followed = c.ok(&[
        "cert",
        "follow",
        "--committee",
        &committee,
        "--genesis",
        &c.committee_file("genesis.toml"),
        "--count",
        "4",
        "--json",
    ]);
    let last: serde_json::Value =
        serde_json::from_str(followed.lines().last().expect("a line")).expect("json");
    assert_eq!(last["certificate"]["sequence"], 4, "{last}");
    assert_eq!(last["certificate"]["kind"], "REVOCATION", "{last}");
    assert!(
        last["active_now"]["changed"].get(KEY).is_none(),
        "after the revocation {KEY} is at its genesis value: {last}"
    );

    // `neuroshard status` on every validator: one leader, the same members,
    // and never two state hashes for one applied index (ticks keep
    // committing, so the validators are sampled at whatever index each has).
    let ca = c.committee_file("ca.pem");
    let mut hash_at = std::collections::BTreeMap::new();
    for _round in 0..3 {
        let statuses: Vec<serde_json::Value> = (0..4)
            .map(|i| {
                c.json(&[
                    "status",
                    "--endpoint",
                    &c.cluster.ceremony.api_endpoints[i],
                    "--ca",
                    &ca,
                ])
            })
            .collect();
        let leader = statuses[0]["leader"].as_u64().expect("a leader");
        for (i, s) in statuses.iter().enumerate() {
            assert_eq!(s["node_id"], i as u64, "{s}");
            assert_eq!(s["chain_id"], "neuroshard-e2e", "{s}");
            assert_eq!(s["leader"], leader, "{s}");
            assert_eq!(s["members"], serde_json::json!([0, 1, 2, 3]), "{s}");
            assert_eq!(s["role"] == "leader", i as u64 == leader, "{s}");
            let hash = s["state_hash"].as_str().expect("state hash").to_owned();
            assert_eq!(hash.len(), 64, "{s}");
            let index = s["applied_index"].as_u64().expect("applied index");
            if let Some(seen) = hash_at.insert(index, hash.clone()) {
                assert_eq!(seen, hash, "two state hashes at index {index}");
            }
        }
    }
    // The human output names the same fields.
    let human = c.ok(&[
        "status",
        "--endpoint",
        &c.cluster.ceremony.api_endpoints[0],
        "--ca",
        &ca,
    ]);
    for field in ["node ", "leader ", "term ", "applied ", "state hash "] {
        assert!(human.contains(field), "{field:?} missing in:\n{human}");
    }

    let mut cluster = c.cluster;
    assert_eq!(
        cluster.stop_all(),
        Vec::<usize>::new(),
        "validators that needed SIGKILL"
    );
}
