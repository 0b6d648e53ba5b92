//! Writes the seed corpora under `fuzz/seeds/<target>/`: the committed
//! certificate test vectors, the example proposals, and encodings of the
//! fixture chain (`neuroshard_fuzz::fixture`) as every decoder receives
//! them. Deterministic: the same files on every run.
//!
//! A libFuzzer binary, so that it links with the targets' build: it
//! writes the seeds when libFuzzer initialises it and exits.
//!
//! ```text
//! bash fuzz/run --seeds      # builds with the fuzz flags and runs this
//! ```

#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;
use sha2::{Digest, Sha256};

use neuroshard_certificate::scheme::SchemeId;
use neuroshard_fuzz::{command, content, fixture, signer, Fixture};
use neuroshard_governance::proposal_file;
use neuroshard_governance::testkit::{account_of, user_key, validator_key};
use neuroshard_governance::{
    AccountId, Amount, Command, Entry, GovError, GovernanceState, NepId, NepType, SignedCommand,
    VoteChoice, NEURO,
};
use neuroshard_node::codec;
use neuroshard_node::proto;
use neuroshard_node::store::machine::GovernanceMachine;
use neuroshard_node::submit::{result_to_wire, Submitted};
use neuroshard_node::transport::convert;
use neuroshard_node::types::{LogId, RaftEntry, StoredMembership, TypeConfig, Vote};
use neuroshard_node::{NodeConfig, NodeError};
use openraft::{CommittedLeaderId, EntryPayload, Membership};

struct Seeds {
    root: PathBuf,
    total: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("seed directory");
        std::fs::write(dir.join(name), bytes).expect("seed file");
        self.total += bytes.len();
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ is in the repository")
        .to_path_buf()
}

/// Commands valid against `state` (next nonces), one of each kind.
fn commands(fx: &Fixture, state: &GovernanceState) -> Vec<(String, SignedCommand)> {
    let next = |key: &ed25519_dalek::SigningKey| {
        state.account(&account_of(key)).map_or(1, |a| a.next_nonce)
    };
    let sign = |key: &ed25519_dalek::SigningKey, command: Command| {
        SignedCommand::sign(&fx.chain_id, key, next(key), command)
    };
    let u = user_key;
    vec![
        (
            "transfer".into(),
            sign(
                &u(0),
                Command::Transfer {
                    to: account_of(&u(5)),
                    amount: Amount(5 * NEURO),
                },
            ),
        ),
        (
            "stake".into(),
            sign(
                &u(1),
                Command::Stake {
                    amount: Amount(NEURO),
                },
            ),
        ),
        (
            "unstake".into(),
            sign(
                &u(2),
                Command::Unstake {
                    amount: Amount(NEURO),
                },
            ),
        ),
        (
            "create-draft".into(),
            sign(
                &u(1),
                Command::CreateDraft {
                    content: content(NepType::Gov, "gov.review_days", 7, 8),
                },
            ),
        ),
        (
            "amend-draft".into(),
            sign(
                &u(2),
                Command::AmendDraft {
                    nep: NepId(3),
                    content: content(NepType::Net, "net.gossip_fanout", 8, 12),
                },
            ),
        ),
        (
            "submit".into(),
            sign(&u(2), Command::Submit { nep: NepId(3) }),
        ),
        (
            "withdraw".into(),
            sign(&u(3), Command::Withdraw { nep: NepId(4) }),
        ),
        (
            "vote".into(),
            sign(
                &u(0),
                Command::Vote {
                    nep: NepId(2),
                    choice: VoteChoice::Yes,
                },
            ),
        ),
        (
            "submit-emergency".into(),
            sign(
                &validator_key(2),
                Command::SubmitEmergency {
                    content: content(NepType::Emerg, "net.gossip_fanout", 8, 2),
                },
            ),
        ),
        (
            "emergency-approve".into(),
            sign(
                &validator_key(3),
                Command::EmergencyApprove { nep: NepId(5) },
            ),
        ),
        (
            // An identical retry of the fixture's first command.
            "retry".into(),
            SignedCommand::sign(
                &fx.chain_id,
                &u(0),
                1,
                Command::CreateDraft {
                    content: content(NepType::Train, "train.prediction_heads", 1, 4),
                },
            ),
        ),
    ]
}

/// Pseudo-random bytes (xorshift), for the structured targets.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn write_seeds() {
    let root = repo().join("fuzz/seeds");
    if root.exists() {
        std::fs::remove_dir_all(&root).expect("clear the old seeds");
    }
    let mut s = Seeds { root, total: 0 };
    let fx = fixture();
    let states = [
        ("fresh", &fx.fresh),
        ("pending", &fx.pending),
        ("certified", &fx.certified),
    ];
    let commands = commands(fx, &fx.pending);

    // submit_request: both forms of every command.
    for (name, c) in &commands {
        let postcard = proto_submit(
            neuroshard_node::api_proto::submit_request::Command::Postcard(
                postcard::to_stdvec(c).expect("encodes"),
            ),
        );
        s.put("submit_request", &format!("{name}.postcard"), &postcard);
        let json = proto_submit(neuroshard_node::api_proto::submit_request::Command::Json(
            serde_json::to_string(c).expect("JSON"),
        ));
        s.put("submit_request", &format!("{name}.json"), &json);
    }

    // proposal_toml: the example NEPs and the fixture's contents.
    for entry in std::fs::read_dir(repo().join("examples/neps")).expect("examples/neps") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        s.put("proposal_toml", &name, &std::fs::read(&path).expect("read"));
    }
    for (name, c) in &commands {
        if let Command::CreateDraft { content }
        | Command::AmendDraft { content, .. }
        | Command::SubmitEmergency { content } = &c.command
        {
            s.put(
                "proposal_toml",
                &format!("{name}.toml"),
                proposal_file::to_toml(content).as_bytes(),
            );
        }
    }

    // genesis_toml: the fixture genesis, without the key set, with its hash
    // and with parameter overrides of each kind.
    let genesis = &fx.genesis;
    s.put(
        "genesis_toml",
        "fixture.toml",
        genesis.to_toml().expect("genesis TOML").as_bytes(),
    );
    let mut g = genesis.clone();
    g.committee.public_key_set = None;
    g.committee_hash = Some(hex::encode(g.committee.committee_hash()));
    use neuroshard_governance::genesis::ParamInput;
    g.parameters = BTreeMap::from([
        ("gov.day_ms".to_owned(), ParamInput::Integer(60_000)),
        ("net.require_tls".to_owned(), ParamInput::Bool(false)),
        ("train.learning_rate".to_owned(), ParamInput::Float(0.0003)),
        (
            "train.gradient_clip".to_owned(),
            ParamInput::Text("1.5".to_owned()),
        ),
        (
            "net.protocol_id".to_owned(),
            ParamInput::Text("/neuroshard/2".to_owned()),
        ),
    ]);
    s.put(
        "genesis_toml",
        "overrides.toml",
        g.to_toml().expect("genesis TOML").as_bytes(),
    );

    // node_config: the documented example, then every key written out.
    let minimal = r#"node_id = 0
data_dir = "data"
genesis = "../genesis.toml"
peer_listen = "127.0.0.1:7100"
api_listen = "127.0.0.1:7200"

[tls]
ca_cert = "../ca.pem"
cert = "tls.pem"
key = "tls.key"

[keys]
identity = "identity.key"
bls_share = "bls_share.key"

[[peers]]
id = 1
addr = "127.0.0.1:7101"

[[peers]]
id = 2
addr = "validator-2.example:7100"

[[peers]]
id = 3
addr = "[::1]:7103"
"#;
    s.put("node_config", "minimal.toml", minimal.as_bytes());
    let full = NodeConfig::parse(minimal)
        .expect("the example config parses")
        .to_toml()
        .expect("writes");
    s.put("node_config", "full.toml", full.as_bytes());

    // log_entry: governance entries, whole openraft entries, bare commands.
    let mut entries = vec![
        (
            "tick".to_owned(),
            Entry::Tick {
                now_ms: 1_700_000_000_000,
            },
        ),
        (
            "certificate".to_owned(),
            Entry::CertificateIssued(fx.issued.clone()),
        ),
    ];
    for (name, c) in &commands {
        entries.push((format!("command-{name}"), Entry::Command(c.clone())));
    }
    for (name, e) in &entries {
        s.put(
            "log_entry",
            &format!("{name}.entry"),
            &codec::encode_entry("seed", e).expect("encodes"),
        );
    }
    let log_id = |term, node, index| LogId::new(CommittedLeaderId::new(term, node), index);
    let membership = Membership::new(vec![[0u64, 1, 2, 3].into_iter().collect()], ());
    let raft_entries: Vec<RaftEntry> = vec![
        RaftEntry {
            log_id: log_id(1, 0, 1),
            payload: EntryPayload::Blank,
        },
        RaftEntry {
            log_id: log_id(1, 0, 2),
            payload: EntryPayload::Membership(membership.clone()),
        },
        RaftEntry {
            log_id: log_id(2, 1, 3),
            payload: EntryPayload::Normal(entries[2].1.clone()),
        },
    ];
    for (i, e) in raft_entries.iter().enumerate() {
        s.put(
            "log_entry",
            &format!("raft-{i}.entry"),
            &codec::encode_entry("seed", e).expect("encodes"),
        );
    }
    s.put(
        "log_entry",
        "command.postcard",
        &codec::encode("seed", &commands[0].1).expect("encodes"),
    );

    // snapshot: governance snapshots and node images of each state.
    for (name, state) in states {
        let bytes = state.to_snapshot_bytes().expect("snapshot");
        s.put("snapshot", &format!("{name}.governance"), &bytes);
        let mut machine = GovernanceMachine::new(state.clone());
        machine.last_applied = Some(log_id(3, 1, state.last_applied_index().unwrap_or(0)));
        machine.membership = StoredMembership::new(Some(log_id(1, 0, 2)), membership.clone());
        let image = machine.image().expect("image");
        s.put(
            "snapshot",
            &format!("{name}.image"),
            &image.encode().expect("encodes"),
        );
    }

    // raft_proto: one of each message, after its selector byte.
    let mut raft = |which: u8, name: &str, bytes: Vec<u8>| {
        let mut out = vec![which];
        out.extend(bytes);
        s.put("raft_proto", name, &out);
    };
    let vote = Vote::new_committed(3, 1);
    let append = openraft::raft::AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: Some(log_id(1, 0, 0)),
        entries: raft_entries.clone(),
        leader_commit: Some(log_id(1, 0, 2)),
    };
    raft(
        0,
        "append-entries",
        convert::append_request_to(&append)
            .expect("encodes")
            .encode_to_vec(),
    );
    for (i, r) in [
        openraft::raft::AppendEntriesResponse::Success,
        openraft::raft::AppendEntriesResponse::PartialSuccess(Some(log_id(2, 1, 7))),
        openraft::raft::AppendEntriesResponse::Conflict,
        openraft::raft::AppendEntriesResponse::HigherVote(Vote::new(9, 2)),
    ]
    .iter()
    .enumerate()
    {
        raft(
            1,
            &format!("append-response-{i}"),
            convert::append_response_to(r).encode_to_vec(),
        );
    }
    raft(
        2,
        "vote-request",
        convert::vote_request_to(&openraft::raft::VoteRequest {
            vote: Vote::new(4, 2),
            last_log_id: Some(log_id(3, 1, 9)),
        })
        .encode_to_vec(),
    );
    raft(
        3,
        "vote-response",
        convert::vote_response_to(&openraft::raft::VoteResponse {
            vote: Vote::new(4, 2),
            vote_granted: true,
            last_log_id: Some(log_id(3, 1, 9)),
        })
        .encode_to_vec(),
    );
    let meta = neuroshard_node::types::SnapshotMeta {
        last_log_id: Some(log_id(3, 1, 40)),
        last_membership: StoredMembership::new(Some(log_id(1, 0, 2)), membership.clone()),
        snapshot_id: "3-1-40-1".to_owned(),
    };
    let image = GovernanceMachine::new(fx.fresh.clone())
        .image()
        .expect("image")
        .encode()
        .expect("encodes");
    raft(
        4,
        "install-snapshot",
        convert::install_request_to(&openraft::raft::InstallSnapshotRequest {
            vote,
            meta: meta.clone(),
            offset: 0,
            data: image,
            done: true,
        })
        .encode_to_vec(),
    );
    raft(
        5,
        "forward-commands",
        proto::ForwardCommandsRequest {
            from: 1,
            commands: commands
                .iter()
                .map(|(_, c)| postcard::to_stdvec(c).expect("encodes"))
                .collect(),
        }
        .encode_to_vec(),
    );
    let mut state = fx.pending.clone();
    let outcome = state.apply(
        Fixture::next_index(&fx.pending),
        &Entry::Command(commands[0].1.clone()),
    );
    let results = [
        Ok(Submitted {
            position: neuroshard_governance::Position::new(41, 0),
            outcome,
        }),
        Ok(Submitted {
            position: neuroshard_governance::Position::new(42, 3),
            outcome: Err(GovError::ZeroAmount),
        }),
        Err(NodeError::NotLeader { leader: 2 }),
        Err(NodeError::Overloaded {
            pending: 9,
            limit: 8,
        }),
        Err(NodeError::Admission(GovError::BadSignature {
            author: AccountId([7; 32]),
        })),
    ];
    raft(
        6,
        "forward-results",
        proto::ForwardCommandsResponse {
            results: results.iter().map(result_to_wire).collect(),
        }
        .encode_to_vec(),
    );
    raft(
        7,
        "log-entry",
        convert::entry_to(&raft_entries[2])
            .expect("encodes")
            .encode_to_vec(),
    );
    raft(
        8,
        "snapshot-meta",
        convert::snapshot_meta_to(&meta).encode_to_vec(),
    );

    // signature_share: valid shares for the pending certificate, with and
    // without the honest ones first, and a tc04 share.
    let pending = &fx.pending_certificate;
    let message = neuroshard_certificate::signing_message(&pending.payload);
    let sha: [u8; 32] = Sha256::digest(&pending.payload).into();
    let scheme = SchemeId::G2Rfc9380.scheme();
    for (i, key) in fx.dealt.secret_key_shares.iter().enumerate() {
        let share = scheme.sign_share(key, &message).expect("share");
        let request = proto::SignatureShareRequest {
            from: i as u64,
            sequence: pending.sequence,
            payload_sha256: sha.to_vec(),
            share: share.to_bytes().to_vec(),
        };
        for mode in [0u8, 1] {
            let mut out = vec![mode];
            out.extend(request.encode_to_vec());
            s.put("signature_share", &format!("share-{i}-mode-{mode}"), &out);
        }
    }
    let tc04 = SchemeId::Tc04.scheme();
    let dealt = tc04.deal(2, 4, &[9; 32]).expect("tc04 keys");
    let share = tc04
        .sign_share(&dealt.secret_key_shares[0], &message)
        .expect("tc04 share");
    let mut out = vec![0u8];
    out.extend(
        proto::SignatureShareRequest {
            from: 0,
            sequence: pending.sequence,
            payload_sha256: sha.to_vec(),
            share: share.to_bytes().to_vec(),
        }
        .encode_to_vec(),
    );
    s.put("signature_share", "tc04-share", &out);

    // envelope and committee_json: every committed vector, both forms.
    let vectors = repo().join("crates/certificate/tests/vectors");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&vectors)
        .expect("vectors")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    for path in names {
        let name = path
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("vector JSON");
        let certificate = serde_json::to_string_pretty(&v["certificate"]).expect("JSON");
        s.put("envelope", &format!("{name}.json"), certificate.as_bytes());
        if let Ok(e) = neuroshard_certificate::Envelope::from_json(certificate.as_bytes()) {
            s.put("envelope", &format!("{name}.proto"), &e.to_proto_bytes());
        }
        let committee = serde_json::to_string_pretty(&v["committee"]).expect("JSON");
        s.put(
            "committee_json",
            &format!("{name}.json"),
            committee.as_bytes(),
        );
    }
    s.put(
        "envelope",
        "fixture.json",
        fx.issued.envelope.to_json().as_bytes(),
    );
    s.put(
        "committee_json",
        "fixture.json",
        fx.genesis.committee.info.to_json_pretty().as_bytes(),
    );

    // state_machine: its input is read as choices; any bytes are a
    // sequence. Noise of a few lengths, and the command generator checked.
    let mut u = arbitrary::Unstructured::new(&[0u8; 64]);
    let _ = command(&mut u);
    let _ = signer(0);
    for (i, len) in [16usize, 64, 256, 512, 1024, 2048].iter().enumerate() {
        for start in 0..3u8 {
            let mut bytes = noise(i as u64 * 3 + u64::from(start) + 1, *len);
            bytes[0] = start;
            s.put(
                "state_machine",
                &format!("noise-{len}-from-{start}"),
                &bytes,
            );
        }
    }
    println!(
        "wrote {} bytes of seeds under {}",
        s.total,
        s.root.display()
    );
}

fn proto_submit(command: neuroshard_node::api_proto::submit_request::Command) -> Vec<u8> {
    neuroshard_node::api_proto::SubmitRequest {
        command: Some(command),
    }
    .encode_to_vec()
}

/// Writes the seeds and ends the process before libFuzzer starts fuzzing.
fn write_seeds_and_exit() {
    write_seeds();
    std::process::exit(0)
}

libfuzzer_sys::fuzz_target!(init: write_seeds_and_exit(), |_data: &[u8]| {});
