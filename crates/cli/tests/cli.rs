//! The `neuroshard` binary itself: the genesis ceremony's files and modes,
//! and refusals that name what is wrong.

use std::path::Path;
use std::process::Command;

fn neuroshard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_neuroshard"))
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn keygen_writes_a_committee_with_secret_files_0600() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c");
    let status = neuroshard()
        .args(["keygen", "--validators", "4", "--out"])
        .arg(&out)
        .args([
            "--chain-id",
            "neuroshard-cli-test",
            "--day-ms",
            "1000",
            "--base-port",
            "42100",
        ])
        .status()
        .expect("run keygen");
    assert!(status.success());
    for public in ["genesis.toml", "committee.json", "ca.pem"] {
        assert!(out.join(public).is_file(), "{public}");
    }
    let committee: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("committee.json")).expect("read"))
            .expect("json");
    assert_eq!(committee["n"], 4);
    assert_eq!(committee["t"], 2, "t + 1 = 3 of 4 shares");
    assert_eq!(committee["scheme"], "bls-threshold-g2-rfc9380");
    #[cfg(unix)]
    {
        assert_eq!(mode(&out.join("ca.key")), 0o600);
        assert_eq!(mode(&out.join("treasury.key")), 0o600);
        for i in 0..4 {
            let v = out.join(format!("validator-{i}"));
            for secret in ["identity.key", "bls_share.key", "tls.key"] {
                assert_eq!(mode(&v.join(secret)), 0o600, "validator-{i}/{secret}");
            }
            let config =
                neuroshard_node::NodeConfig::load(&v.join("node.toml")).expect("valid node.toml");
            assert_eq!(config.node_id, i);
            assert_eq!(config.peer_listen, format!("127.0.0.1:{}", 42100 + 2 * i));
            assert_eq!(
                config.api_listen,
                format!("127.0.0.1:{}", 42100 + 2 * i + 1)
            );
        }
    }
    // A second ceremony into the same directory is refused.
    let again = neuroshard()
        .args(["keygen", "--validators", "4", "--out"])
        .arg(&out)
        .output()
        .expect("run");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a genesis.toml"));
}

/// One host per validator (containers, machines): the same ports on each,
/// listening on every interface, peers dialled by name, and certificates
/// naming the host; a host list that does not fit is refused by name.
#[test]
fn keygen_with_one_host_per_validator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c");
    let hosts = ["v0.example", "v1.example", "10.0.0.12", "v3.example"];
    let status = neuroshard()
        .args(["keygen", "--validators", "4", "--out"])
        .arg(&out)
        .args(["--hosts", &hosts.join(",")])
        .status()
        .expect("run keygen");
    assert!(status.success());
    for (i, host) in hosts.iter().enumerate() {
        let v = out.join(format!("validator-{i}"));
        let config =
            neuroshard_node::NodeConfig::load(&v.join("node.toml")).expect("valid node.toml");
        assert_eq!(config.peer_listen, "0.0.0.0:7100");
        assert_eq!(config.api_listen, "0.0.0.0:7101");
        let mut peers: Vec<_> = config.peers.iter().map(|p| p.addr.clone()).collect();
        peers.sort();
        let mut expected: Vec<_> = hosts
            .iter()
            .filter(|h| *h != host)
            .map(|h| format!("{h}:7100"))
            .collect();
        expected.sort();
        assert_eq!(peers, expected, "validator-{i}");
        let pem = std::fs::read(v.join("tls.pem")).expect("certificate");
        let (_, cert) = x509_parser::pem::parse_x509_pem(&pem).expect("pem");
        let cert = cert.parse_x509().expect("x509");
        let san = cert
            .subject_alternative_name()
            .expect("extension")
            .expect("SAN");
        let names = format!("{:?}", san.value.general_names);
        let expected = match host.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => format!("IPAddress({:?})", ip.octets()),
            Err(_) => format!("DNSName({host:?})"),
        };
        assert!(names.contains(&expected), "{expected} not in {names}");
    }
    for (arg, rule) in [
        ("a,b,c", "3 addresses for 4 validators"),
        ("a,b,b,d", "given twice"),
        ("a,b:7100,c,d", "not a DNS name"),
    ] {
        let refused = neuroshard()
            .args(["keygen", "--validators", "4", "--out"])
            .arg(dir.path().join("bad"))
            .args(["--hosts", arg])
            .output()
            .expect("run");
        assert!(!refused.status.success(), "--hosts {arg} accepted");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(rule), "--hosts {arg}: {stderr}");
    }
}

#[test]
fn keygen_deals_a_byzantine_quorum_for_every_committee_size() {
    // t + 1 = ⌊(n + f)/2⌋ + 1: n = 3 needs 2 signatures (not 1), n = 5
    // needs 4 (not 3); the genesis it writes is accepted.
    for (n, signers, port) in [
        (2u32, 2u32, 42400u16),
        (3, 2, 42410),
        (5, 4, 42420),
        (7, 5, 42440),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("c");
        let status = neuroshard()
            .args(["keygen", "--validators", &n.to_string(), "--out"])
            .arg(&out)
            .args(["--base-port", &port.to_string()])
            .status()
            .expect("run keygen");
        assert!(status.success(), "n = {n}");
        let committee: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("committee.json")).expect("read"))
                .expect("json");
        assert_eq!(committee["n"], n);
        assert_eq!(committee["t"], signers - 1, "n = {n}: t + 1 = {signers}");
        assert_eq!(neuroshard_governance::byzantine_quorum(n), signers);
        let genesis = neuroshard_governance::Genesis::from_toml(
            &std::fs::read_to_string(out.join("genesis.toml")).expect("genesis"),
        )
        .expect("parse");
        neuroshard_governance::GovernanceState::from_genesis(&genesis).expect("valid genesis");
    }
}

#[test]
fn node_refuses_a_config_with_an_unknown_key_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c");
    let status = neuroshard()
        .args(["keygen", "--validators", "1", "--out"])
        .arg(&out)
        .args(["--base-port", "42200"])
        .status()
        .expect("keygen");
    assert!(status.success());
    let config = out.join("validator-0").join("node.toml");
    let text = std::fs::read_to_string(&config).expect("read");
    assert!(text.contains("[ticks]"));
    std::fs::write(
        &config,
        text.replace("[ticks]", "[ticks]\ntick_every_ms = 5"),
    )
    .expect("write");
    let run = neuroshard()
        .arg("node")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run node");
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("tick_every_ms"), "{stderr}");

    assert!(
        text.contains("election_timeout_max_ms = 1000"),
        "keygen writes the default"
    );
    let text2 = text.replace(
        "election_timeout_max_ms = 1000",
        "election_timeout_max_ms = 1",
    );
    std::fs::write(&config, &text2).expect("write");
    let run = neuroshard()
        .arg("node")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run node");
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("raft.election_timeout_max_ms"),
        "{stderr}\n{text2}"
    );
}

#[test]
fn status_of_an_unreachable_validator_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c");
    assert!(neuroshard()
        .args(["keygen", "--validators", "1", "--out"])
        .arg(&out)
        .args(["--base-port", "42300"])
        .status()
        .expect("keygen")
        .success());
    let run = neuroshard()
        .args(["status", "--endpoint", "https://127.0.0.1:9", "--ca"])
        .arg(out.join("ca.pem"))
        .output()
        .expect("run status");
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("cannot connect"));
}
