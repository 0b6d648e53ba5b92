//! Certificate decisions, issuance, payload contents and vote receipts.

use neuroshard_certificate::proto::{CertificateKind as ProtoKind, NepType as ProtoNepType};
use neuroshard_certificate::{decode_payload, merkle::BallotChoice, Verifier};
use neuroshard_governance::{Entry, GovError, ProtocolVersion, VoteChoice};

use crate::support::*;

fn scheduled_chain() -> (testkit::TestChain, neuroshard_governance::NepId) {
    let mut c = chain();
    let nep = to_voting(&mut c, 0, heads(1, 4));
    ok(vote(&mut c, 1, nep, VoteChoice::Yes));
    ok(vote(&mut c, 2, nep, VoteChoice::No));
    ok(vote(&mut c, 3, nep, VoteChoice::Yes));
    close_voting(&mut c, nep);
    (c, nep)
}

#[test]
fn an_activation_payload_states_what_the_replica_decided() {
    let (c, nep) = scheduled_chain();
    let pending = c.state.pending_certificates();
    assert_eq!(pending.len(), 1);
    let payload = decode_payload(&pending[0].payload).unwrap();
    let p = c.state.proposal(nep).unwrap();
    assert_eq!(payload.chain_id, c.genesis.chain_id);
    assert_eq!(payload.sequence, 1);
    assert_eq!(payload.previous_payload_hash, vec![0u8; 32]);
    assert_eq!(payload.kind, ProtoKind::Activation as i32);
    assert_eq!(payload.nep_id, nep.0);
    assert_eq!(payload.nep_type, ProtoNepType::Train as i32);
    assert_eq!(payload.content_hash, p.content_hash.to_vec());
    assert_eq!(payload.parameter_changes.len(), 1);
    let tally = payload.tally.unwrap();
    assert_eq!(
        (tally.yes, tally.no, tally.abstain),
        (2000 * NEURO, 1000 * NEURO, 0)
    );
    assert_eq!(
        (
            tally.total_power,
            tally.quorum_bps,
            tally.approval_bps,
            tally.ballots
        ),
        (4000 * NEURO, 2000, 6600, 3)
    );
    assert_eq!(payload.activation_time_ms, p.activation_ms.unwrap().0);
    assert_eq!(
        payload.activation_height,
        (p.activation_ms.unwrap().0 - c.genesis.genesis_time_ms) / c.genesis.block_interval_ms
    );
    assert_eq!(payload.version_before.unwrap().minor, 0);
    assert_eq!(payload.version_after.unwrap().minor, 1);
    assert_eq!(
        payload.committee_hash,
        c.genesis.committee.committee_hash().to_vec()
    );
    assert_eq!(
        payload.ballots_root,
        c.state.tally(nep).unwrap().ballots_root.to_vec()
    );
    assert_eq!(
        payload
            .economic_impact
            .unwrap()
            .training_efficiency_multiplier_micro,
        1_000_000
    );
    // The parameters hash is the parameter set once this takes effect.
    let mut after = c.state.params().clone();
    after
        .set(
            "train.prediction_heads",
            neuroshard_governance::ParamValue::Integer(4),
        )
        .unwrap();
    assert_eq!(payload.parameters_hash, after.hash().to_vec());
}

#[test]
fn issued_certificates_verify_for_a_light_node_and_chain_by_payload_hash() {
    let (mut c, _) = scheduled_chain();
    let second = to_voting(
        &mut c,
        1,
        neuroshard_governance::NepContent {
            title: "bigger batches".to_owned(),
            ..nep(
                neuroshard_governance::NepType::Train,
                vec![int_change("train.batch_size", 512, 1024)],
                7,
                false,
            )
        },
    );
    ok(vote(&mut c, 2, second, VoteChoice::Yes));
    close_voting(&mut c, second);
    for outcome in c.issue_pending() {
        ok(outcome);
    }
    assert!(c.state.pending_certificates().is_empty());
    let verifier = Verifier::new(c.genesis.committee.info.clone()).unwrap();
    let records = c.state.certificates(1, 10);
    assert_eq!(records.len(), 2);
    let first = verifier
        .verify(&records[0].issued.as_ref().unwrap().envelope)
        .unwrap();
    let second = verifier
        .verify(&records[1].issued.as_ref().unwrap().envelope)
        .unwrap();
    assert_eq!(
        second.payload.previous_payload_hash,
        first.payload_hash.to_vec()
    );
    assert_eq!(
        second.payload.version_after.unwrap(),
        neuroshard_certificate::proto::ProtocolVersion { major: 2, minor: 0 }
    );
    assert_eq!(
        c.state.certified_version(),
        ProtocolVersion { major: 2, minor: 0 }
    );
}

#[test]
fn a_certificate_is_verified_before_it_is_recorded() {
    let (mut c, _) = scheduled_chain();
    let good = c.issued_certificate(1).unwrap();

    let mut other_payload = good.clone();
    other_payload.envelope.payload.push(0);
    assert_eq!(
        c.apply(Entry::CertificateIssued(other_payload)),
        Err(GovError::CertificatePayloadMismatch { sequence: 1 })
    );

    let mut bad_signature = good.clone();
    bad_signature.envelope.signature.reverse();
    assert!(matches!(
        c.apply(Entry::CertificateIssued(bad_signature)),
        Err(GovError::CertificateInvalid { sequence: 1, .. })
    ));

    let mut too_few_shares = good.clone();
    too_few_shares.shares.pop();
    assert!(matches!(
        c.apply(Entry::CertificateIssued(too_few_shares)),
        Err(GovError::CertificateInvalid { .. })
    ));

    let mut forged_share = good.clone();
    forged_share.shares[0].share = good.shares[1].share.clone();
    assert!(matches!(
        c.apply(Entry::CertificateIssued(forged_share)),
        Err(GovError::CertificateInvalid { .. })
    ));

    let mut unknown = good.clone();
    unknown.sequence = 9;
    assert_eq!(
        c.apply(Entry::CertificateIssued(unknown)),
        Err(GovError::UnknownCertificate { sequence: 9 })
    );

    ok(c.apply(Entry::CertificateIssued(good.clone())));
    assert_eq!(
        c.apply(Entry::CertificateIssued(good)),
        Err(GovError::CertificateAlreadyIssued { sequence: 1 })
    );
}

#[test]
fn a_vote_receipt_proves_the_ballot_under_the_certified_root() {
    let (c, nep) = scheduled_chain();
    let payload = decode_payload(&c.state.pending_certificates()[0].payload).unwrap();
    let root: [u8; 32] = payload.ballots_root.as_slice().try_into().unwrap();
    for (u, choice) in [
        (1, BallotChoice::Yes),
        (2, BallotChoice::No),
        (3, BallotChoice::Yes),
    ] {
        let r = c.state.vote_receipt(nep, &user(u)).unwrap();
        assert_eq!(r.ballot.choice, choice);
        assert_eq!(r.ballot.power, 1000 * NEURO);
        assert_eq!(r.certificate, Some(1));
        assert!(r.closed);
        assert!(r.proof.verify(&r.ballot, &root));
        let mut lie = r.ballot;
        lie.power += 1;
        assert!(!r.proof.verify(&lie, &root));
    }
    assert!(c.state.vote_receipt(nep, &user(0)).is_err());
}
