//! Fixtures shared by the integration tests, the vector generator and the
//! benches: a dealt committee and certificates signed by chosen validators.

#![allow(dead_code)]

use neuroshard_certificate::proto::{
    parameter_value, CertificateKind, CertificatePayload, EconomicImpact, NepType, ParameterChange,
    ParameterValue, ProtocolVersion, Tally, UpgradePath,
};
use neuroshard_certificate::scheme::{DealtKeys, ShareIndex};
use neuroshard_certificate::{
    encode_payload, payload_hash, signing_message, CommitteeInfo, Envelope, SchemeId,
};
use sha2::{Digest, Sha256};

pub const CHAIN_ID: &str = "neuroshard-vectors";
pub const GENESIS_TIME_MS: u64 = 1_700_000_000_000;
pub const BLOCK_INTERVAL_MS: u64 = 2_000;
pub const DAY_MS: u64 = 86_400_000;

/// A committee of `n` validators with threshold `t`, dealt from `seed`.
pub struct Committee {
    pub info: CommitteeInfo,
    pub keys: DealtKeys,
}

impl Committee {
    pub fn new(scheme: SchemeId, t: u32, n: u32, seed: [u8; 32]) -> Self {
        let keys = scheme.scheme().deal(t, n, &seed).expect("deal");
        let info = CommitteeInfo {
            chain_id: CHAIN_ID.into(),
            scheme,
            group_public_key: keys.public_key_set.group_public_key().to_bytes(),
            t,
            n,
            epoch: 1,
            genesis_time_ms: GENESIS_TIME_MS,
            validator_set_hash: Sha256::digest(b"neuroshard vector validators").into(),
        };
        Self { info, keys }
    }

    /// The usual test committee: t = 2 of n = 4 (3 shares sign).
    pub fn standard(scheme: SchemeId) -> Self {
        Self::new(scheme, 2, 4, [0x5e; 32])
    }

    /// Signs arbitrary bytes with the shares of `signers`, combined.
    pub fn sign_message(&self, signers: &[u32], message: &[u8]) -> Vec<u8> {
        let scheme = self.info.scheme.scheme();
        let shares: Vec<_> = signers
            .iter()
            .map(|&i| {
                let share = scheme
                    .sign_share(&self.keys.secret_key_shares[i as usize], message)
                    .expect("sign share");
                (ShareIndex(i), share)
            })
            .collect();
        scheme
            .combine(&self.keys.public_key_set, &shares, message)
            .expect("combine")
            .to_bytes()
            .to_vec()
    }

    /// A certificate over `payload`, signed by `signers`.
    pub fn issue(&self, signers: &[u32], payload: &CertificatePayload) -> Envelope {
        let bytes = encode_payload(payload);
        let signature = self.sign_message(signers, &signing_message(&bytes));
        Envelope {
            payload_type: neuroshard_certificate::PAYLOAD_TYPE.into(),
            payload: bytes,
            scheme: self.info.scheme.as_str().into(),
            committee_epoch: self.info.epoch,
            signature,
        }
    }
}

pub fn height_at(time_ms: u64) -> u64 {
    (time_ms - GENESIS_TIME_MS) / BLOCK_INTERVAL_MS
}

pub fn integer(v: i64) -> ParameterValue {
    ParameterValue {
        value: Some(parameter_value::Value::Integer(v)),
    }
}

pub fn change(key: &str, old: i64, new: i64) -> ParameterChange {
    ParameterChange {
        key: key.into(),
        old_value: Some(integer(old)),
        new_value: Some(integer(new)),
    }
}

pub fn version(major: u32, minor: u32) -> ProtocolVersion {
    ProtocolVersion { major, minor }
}

/// A realistic payload; callers adjust the fields a test is about.
#[allow(clippy::too_many_arguments)]
pub fn payload(
    info: &CommitteeInfo,
    sequence: u64,
    previous: [u8; 32],
    kind: CertificateKind,
    nep_id: u64,
    changes: Vec<ParameterChange>,
    activation_time_ms: u64,
    version_before: ProtocolVersion,
    version_after: ProtocolVersion,
) -> CertificatePayload {
    let decision_time_ms = activation_time_ms
        .saturating_sub(7 * DAY_MS)
        .max(GENESIS_TIME_MS);
    CertificatePayload {
        chain_id: info.chain_id.clone(),
        sequence,
        previous_payload_hash: previous.to_vec(),
        kind: kind as i32,
        nep_id,
        nep_type: NepType::Train as i32,
        content_hash: Sha256::digest(format!("NEP-{nep_id} content")).to_vec(),
        title: format!("NEP-{nep_id}: raise the batch reward"),
        parameter_changes: changes,
        economic_impact: Some(EconomicImpact {
            training_efficiency_multiplier_micro: 1_000_000,
            training_reward_multiplier_micro: 1_100_000,
            net_earnings_change_percent_micro: 10_000_000,
            summary: "Rewards per batch rise by ten percent.".into(),
        }),
        upgrade_path: Some(UpgradePath {
            grace_period_days: 7,
            backward_compatible: true,
        }),
        tally: Some(Tally {
            yes: 700_000_000,
            no: 100_000_000,
            abstain: 50_000_000,
            total_power: 1_000_000_000,
            quorum_bps: 2000,
            approval_bps: 6600,
            ballots: 3,
        }),
        decision_time_ms,
        decision_log_index: 40 + sequence,
        activation_time_ms,
        activation_height: height_at(activation_time_ms),
        version_before: Some(version_before),
        version_after: Some(version_after),
        parameters_hash: Sha256::digest(format!("parameters after {sequence}")).to_vec(),
        committee_hash: info.committee_hash().to_vec(),
        ballots_root: Sha256::digest(format!("ballots of NEP-{nep_id}")).to_vec(),
        emergency_approvals: vec![],
    }
}

/// A linked log: `count` ACTIVATION certificates, one per NEP, a day apart,
/// each bumping the minor version and changing `train.reward_per_batch`.
pub fn activation_log(committee: &Committee, count: u64) -> Vec<(CertificatePayload, Envelope)> {
    let mut previous = [0u8; 32];
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count {
        let p = payload(
            &committee.info,
            i + 1,
            previous,
            CertificateKind::Activation,
            i + 1,
            vec![change(
                "train.reward_per_batch",
                100 + i as i64,
                101 + i as i64,
            )],
            GENESIS_TIME_MS + (i + 8) * DAY_MS,
            version(1, i as u32),
            version(1, i as u32 + 1),
        );
        previous = payload_hash(&encode_payload(&p));
        let signers: Vec<u32> = (0..=committee.info.t)
            .map(|s| (s + i as u32) % committee.info.n)
            .collect();
        let envelope = committee.issue(&signers, &p);
        out.push((p, envelope));
    }
    out
}

/// What a dishonest combiner gets from only `t` shares of the default
/// scheme: it interpolates them as if the threshold were `t - 1`. The result
/// is a well-formed G2 point that is not the group signature.
pub fn forge_from_t_shares(committee: &Committee, signers: &[u32], message: &[u8]) -> Vec<u8> {
    assert_eq!(committee.info.scheme, SchemeId::G2Rfc9380);
    assert_eq!(signers.len() as u32, committee.info.t);
    let set = committee.keys.public_key_set.to_bytes();
    // Drop `n` and the highest coefficient: a degree t - 1 commitment.
    let lower =
        blsttc::PublicKeySet::from_bytes(set[4..set.len() - 48].to_vec()).expect("lower set");
    let shares: Vec<(usize, blsttc::SignatureShare)> = signers
        .iter()
        .map(|&i| {
            let raw = committee.keys.secret_key_shares[i as usize].to_bytes();
            let sk = blsttc::SecretKeyShare::from_bytes(raw).expect("share");
            (i as usize, sk.sign(message))
        })
        .collect();
    lower
        .combine_signatures(shares)
        .expect("interpolate")
        .to_bytes()
        .to_vec()
}
