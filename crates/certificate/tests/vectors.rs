//! Test vectors at `tests/vectors/*.json`, generated from fixed seeds.
//!
//! Regenerate with
//!
//! ```text
//! NEUROSHARD_REGENERATE_VECTORS=1 cargo test -p neuroshard-certificate --test vectors committed_vectors_match_the_generator
//! ```
//!
//! (naming the one test, so no other test reads the directory while it is
//! rewritten). Without the variable, `committed_vectors_match_the_generator` fails if
//! the committed files differ from what this generator produces (BLS
//! signatures and the dealing are deterministic), and
//! `every_vector_gives_its_expected_outcome` runs each through the verifier.
//! `.ci/interop` verifies the default-scheme ones with py_ecc.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use neuroshard_certificate::proto::{
    parameter_value, CertificateKind, CertificatePayload, NepType, ParameterChange, ParameterValue,
};
use neuroshard_certificate::{
    encode_payload, pae, payload_hash, signing_message, CommitteeInfo, Envelope, SchemeId,
    Verifier, PAYLOAD_TYPE,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    description: String,
    committee: CommitteeInfo,
    certificate: Envelope,
    expect: String,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn value(v: parameter_value::Value) -> Option<ParameterValue> {
    Some(ParameterValue { value: Some(v) })
}

fn vector(
    description: &str,
    committee: &CommitteeInfo,
    certificate: Envelope,
    expect: &str,
) -> Vector {
    Vector {
        description: description.into(),
        committee: committee.clone(),
        certificate,
        expect: expect.into(),
    }
}

/// Every vector, by file name.
fn generate() -> BTreeMap<String, Vector> {
    use parameter_value::Value;

    let a = Committee::standard(SchemeId::G2Rfc9380);
    let info = &a.info;
    let mut out = BTreeMap::new();
    let mut put = |name: &str, v: Vector| {
        out.insert(format!("{name}.json"), v);
    };

    // A short linked log: two activations, a cancellation, an emergency
    // activation and its revocation.
    let log = activation_log(&a, 2);
    let (p1, e1) = &log[0];
    let (p2, e2) = &log[1];
    put(
        "01-ok-activation",
        vector(
            "ACTIVATION, sequence 1, signed by validators 0, 1, 2 of a 3-of-4 committee",
            info,
            e1.clone(),
            "ok",
        ),
    );
    put(
        "02-ok-activation-linked",
        vector(
            "ACTIVATION, sequence 2, linked to sequence 1, signed by validators 1, 2, 3",
            info,
            e2.clone(),
            "ok",
        ),
    );
    let mut p3 = payload(
        info,
        3,
        payload_hash(&encode_payload(p2)),
        CertificateKind::Cancellation,
        2,
        p2.parameter_changes.clone(),
        p2.activation_time_ms,
        p2.version_after.unwrap(),
        p2.version_after.unwrap(),
    );
    p3.decision_time_ms = p2.activation_time_ms - DAY_MS;
    let e3 = a.issue(&[0, 2, 3], &p3);
    put(
        "03-ok-cancellation",
        vector(
            "CANCELLATION of NEP 2's pending activation, sequence 3, signed by validators 0, 2, 3",
            info,
            e3,
            "ok",
        ),
    );
    let mut p4 = payload(
        info,
        4,
        payload_hash(&encode_payload(&p3)),
        CertificateKind::Activation,
        7,
        vec![
            ParameterChange {
                key: "net.gossip_enabled".into(),
                old_value: value(Value::Boolean(true)),
                new_value: value(Value::Boolean(false)),
            },
            ParameterChange {
                key: "net.seed_region".into(),
                old_value: value(Value::Text("eu-west".into())),
                new_value: value(Value::Text("ap-south".into())),
            },
            ParameterChange {
                key: "train.learning_rate".into(),
                old_value: value(Value::FixedMicro(3_000)),
                new_value: value(Value::FixedMicro(1_500)),
            },
        ],
        p2.activation_time_ms,
        p2.version_after.unwrap(),
        version(2, 0),
    );
    p4.nep_type = NepType::Emerg as i32;
    p4.title = "NEP-7: emergency switch of the gossip layer".into();
    p4.emergency_approvals = vec![0, 1, 3];
    p4.tally = None;
    p4.upgrade_path.as_mut().unwrap().grace_period_days = 0;
    p4.upgrade_path.as_mut().unwrap().backward_compatible = false;
    let e4 = a.issue(&[0, 1, 3], &p4);
    put(
        "04-ok-emergency-activation",
        vector("EMERG ACTIVATION with bool, text and fixed-point changes, major version bump, sequence 4", info, e4, "ok"),
    );
    let mut p5 = p4.clone();
    p5.sequence = 5;
    p5.previous_payload_hash = payload_hash(&encode_payload(&p4)).to_vec();
    p5.kind = CertificateKind::Revocation as i32;
    p5.parameter_changes = p4
        .parameter_changes
        .iter()
        .map(|c| ParameterChange {
            key: c.key.clone(),
            old_value: c.new_value.clone(),
            new_value: c.old_value.clone(),
        })
        .collect();
    p5.version_before = Some(version(2, 0));
    p5.version_after = Some(version(3, 0));
    p5.decision_time_ms = p4.activation_time_ms + 8 * DAY_MS;
    p5.activation_time_ms = p5.decision_time_ms;
    p5.activation_height = height_at(p5.activation_time_ms);
    let e5 = a.issue(&[1, 2, 3], &p5);
    put(
        "05-ok-revocation",
        vector(
            "REVOCATION of the emergency NEP after a failed ratification, sequence 5",
            info,
            e5,
            "ok",
        ),
    );

    // Negatives.
    let mut flipped = e1.clone();
    let title = p1.title.as_bytes();
    let at = flipped
        .payload
        .windows(title.len())
        .position(|w| w == title)
        .expect("title in payload")
        + 5;
    flipped.payload[at] ^= 0x01;
    put(
        "10-bad-signature-flipped-payload-byte",
        vector("vector 01 with one bit of a title byte flipped: decodes, names the right committee, signature fails", info, flipped, "bad-signature"),
    );
    let mut sig_flip = e1.clone();
    sig_flip.signature[40] ^= 0x01;
    put(
        "11-bad-signature-flipped-signature-byte",
        vector(
            "vector 01 with one bit of the signature flipped",
            info,
            sig_flip,
            "bad-signature",
        ),
    );
    let other = Committee::new(SchemeId::G2Rfc9380, 2, 4, [0x77; 32]);
    put(
        "12-bad-signature-wrong-group-key",
        vector(
            "vector 01's payload (naming the pinned committee) signed by another committee's key",
            info,
            other.issue(&[0, 1, 2], p1),
            "bad-signature",
        ),
    );
    let t_only = forge_from_t_shares(&a, &[0, 1], &signing_message(&encode_payload(p1)));
    let mut e = e1.clone();
    e.signature = t_only;
    put(
        "13-bad-signature-t-shares-only",
        vector(
            "vector 01 with a signature interpolated from t = 2 shares only (3 are needed)",
            info,
            e,
            "bad-signature",
        ),
    );
    let mut raw = e1.clone();
    raw.signature = a.sign_message(&[0, 1, 2], &raw.payload);
    put(
        "14-bad-signature-raw-payload-signed",
        vector(
            "vector 01 signed over the bare payload instead of its DSSE PAE",
            info,
            raw,
            "bad-signature",
        ),
    );
    let mut pinned_other = info.clone();
    pinned_other.group_public_key = other.info.group_public_key;
    put(
        "20-wrong-committee-pinned-other-group-key",
        vector(
            "vector 01 checked by a light node that pinned a committee with another group key",
            &pinned_other,
            e1.clone(),
            "wrong-committee",
        ),
    );
    let mut epoch = e1.clone();
    epoch.committee_epoch = 2;
    put(
        "21-wrong-committee-epoch",
        vector(
            "vector 01 with the envelope naming committee epoch 2",
            info,
            epoch,
            "wrong-committee",
        ),
    );
    let mut p = p1.clone();
    p.chain_id = "neuroshard-other".into();
    put(
        "22-wrong-chain",
        vector(
            "a certificate validly signed by the pinned committee, for chain neuroshard-other",
            info,
            a.issue(&[0, 1, 2], &p),
            "wrong-chain",
        ),
    );
    let mut scheme = e1.clone();
    scheme.scheme = SchemeId::Tc04.as_str().into();
    put(
        "23-wrong-scheme",
        vector(
            "vector 01 with the envelope claiming scheme bls-threshold-tc04",
            info,
            scheme,
            "wrong-scheme",
        ),
    );
    let mut typed = e1.clone();
    typed.payload_type = "application/vnd.in-toto+json".into();
    typed.signature = a.sign_message(&[0, 1, 2], &pae(&typed.payload_type, &typed.payload));
    put(
        "24-wrong-payload-type",
        vector(
            "vector 01's payload signed under another payload type",
            info,
            typed,
            "wrong-payload-type",
        ),
    );
    let garbage = vec![0x0a, 0x10, b'n'];
    let bad_payload = Envelope {
        payload_type: PAYLOAD_TYPE.into(),
        signature: a.sign_message(&[0, 1, 2], &signing_message(&garbage)),
        payload: garbage,
        scheme: SchemeId::G2Rfc9380.as_str().into(),
        committee_epoch: 1,
    };
    put(
        "25-bad-payload-truncated",
        vector(
            "a validly signed payload that is not a CertificatePayload (truncated string field)",
            info,
            bad_payload,
            "bad-payload",
        ),
    );

    // The comparison scheme: checked by the Rust tests only.
    let tc = Committee::standard(SchemeId::Tc04);
    let tc_log = activation_log(&tc, 1);
    put(
        "30-tc04-ok-activation",
        vector(
            "bls-threshold-tc04: ACTIVATION, sequence 1 (not IETF-interoperable)",
            &tc.info,
            tc_log[0].1.clone(),
            "ok",
        ),
    );
    let mut tc_flip = tc_log[0].1.clone();
    tc_flip.payload[at] ^= 0x01;
    put(
        "31-tc04-bad-signature-flipped-payload-byte",
        vector(
            "bls-threshold-tc04: vector 30 with one title bit flipped",
            &tc.info,
            tc_flip,
            "bad-signature",
        ),
    );
    out
}

fn render(v: &Vector) -> String {
    let mut text = serde_json::to_string_pretty(v).expect("vector serialises");
    text.push('\n');
    text
}

fn committed() -> BTreeMap<String, String> {
    std::fs::read_dir(dir())
        .expect("vectors directory")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("read vector"))
        })
        .collect()
}

#[test]
fn committed_vectors_match_the_generator() {
    let generated: BTreeMap<String, String> = generate()
        .iter()
        .map(|(k, v)| (k.clone(), render(v)))
        .collect();
    if std::env::var_os("NEUROSHARD_REGENERATE_VECTORS").is_some() {
        std::fs::create_dir_all(dir()).expect("create vectors dir");
        for name in committed().keys() {
            std::fs::remove_file(dir().join(name)).expect("remove stale vector");
        }
        for (name, text) in &generated {
            std::fs::write(dir().join(name), text).expect("write vector");
        }
    }
    let on_disk = committed();
    assert_eq!(
        on_disk.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "vector file set differs; regenerate (see the module docs)"
    );
    for (name, text) in &generated {
        assert_eq!(
            &on_disk[name], text,
            "{name} differs from the generator; regenerate"
        );
    }
}

#[test]
fn every_vector_gives_its_expected_outcome() {
    let files = committed();
    let ok_default = files
        .values()
        .filter(|t| t.contains("\"expect\": \"ok\"") && t.contains("bls-threshold-g2-rfc9380"))
        .count();
    assert!(
        ok_default >= 3,
        "need at least three ok default-scheme vectors"
    );
    for (name, text) in files {
        let v: Vector = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let envelope =
            Envelope::from_json(serde_json::to_string(&v.certificate).unwrap().as_bytes())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let verifier = Verifier::new(v.committee.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let outcome = match verifier.verify(&envelope) {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        assert_eq!(outcome, v.expect, "{name}: {}", v.description);
    }
}

#[test]
fn decoded_ok_vectors_round_trip() {
    for v in generate().values().filter(|v| v.expect == "ok") {
        let p: CertificatePayload =
            neuroshard_certificate::decode_payload(&v.certificate.payload).unwrap();
        assert_eq!(
            encode_payload(&p),
            v.certificate.payload,
            "{}",
            v.description
        );
    }
}
