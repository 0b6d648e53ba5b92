//! Governance values as the public API's protobuf messages, and back where
//! a client needs them (parameter values, stages, types, choices).

use neuroshard_certificate::proto as cert;
use neuroshard_governance::queries::TallyView as GovTally;
use neuroshard_governance::{
    CertificateKind, CertificateRecord, GovernanceState, Micro, NepContent, NepType, ParamValue,
    Proposal, ProtocolVersion, RejectReason, Stage, VoteChoice, VoteReceipt,
};

use crate::api_proto as api;

pub fn stage_to_proto(s: Stage) -> api::Stage {
    match s {
        Stage::Draft => api::Stage::Draft,
        Stage::Review => api::Stage::Review,
        Stage::Voting => api::Stage::Voting,
        Stage::AwaitingApproval => api::Stage::AwaitingApproval,
        Stage::Scheduled => api::Stage::Scheduled,
        Stage::Active => api::Stage::Active,
        Stage::Ratified => api::Stage::Ratified,
        Stage::Revoked => api::Stage::Revoked,
        Stage::Rejected => api::Stage::Rejected,
        Stage::Withdrawn => api::Stage::Withdrawn,
        Stage::Cancelled => api::Stage::Cancelled,
    }
}

/// `None` for STAGE_UNSPECIFIED or an unknown number (any stage).
pub fn stage_from_proto(value: i32) -> Option<Stage> {
    Some(match api::Stage::try_from(value).ok()? {
        api::Stage::Unspecified => return None,
        api::Stage::Draft => Stage::Draft,
        api::Stage::Review => Stage::Review,
        api::Stage::Voting => Stage::Voting,
        api::Stage::AwaitingApproval => Stage::AwaitingApproval,
        api::Stage::Scheduled => Stage::Scheduled,
        api::Stage::Active => Stage::Active,
        api::Stage::Ratified => Stage::Ratified,
        api::Stage::Revoked => Stage::Revoked,
        api::Stage::Rejected => Stage::Rejected,
        api::Stage::Withdrawn => Stage::Withdrawn,
        api::Stage::Cancelled => Stage::Cancelled,
    })
}

pub fn nep_type_to_proto(t: NepType) -> cert::NepType {
    match t {
        NepType::Arch => cert::NepType::Arch,
        NepType::Econ => cert::NepType::Econ,
        NepType::Train => cert::NepType::Train,
        NepType::Net => cert::NepType::Net,
        NepType::Gov => cert::NepType::Gov,
        NepType::Emerg => cert::NepType::Emerg,
    }
}

/// `None` for NEP_TYPE_UNSPECIFIED or an unknown number (any type).
pub fn nep_type_from_proto(value: i32) -> Option<NepType> {
    Some(match cert::NepType::try_from(value).ok()? {
        cert::NepType::Unspecified => return None,
        cert::NepType::Arch => NepType::Arch,
        cert::NepType::Econ => NepType::Econ,
        cert::NepType::Train => NepType::Train,
        cert::NepType::Net => NepType::Net,
        cert::NepType::Gov => NepType::Gov,
        cert::NepType::Emerg => NepType::Emerg,
    })
}

pub fn choice_to_proto(c: VoteChoice) -> api::VoteChoice {
    match c {
        VoteChoice::Yes => api::VoteChoice::Yes,
        VoteChoice::No => api::VoteChoice::No,
        VoteChoice::Abstain => api::VoteChoice::Abstain,
    }
}

pub fn choice_from_proto(value: i32) -> Option<VoteChoice> {
    match api::VoteChoice::try_from(value).ok()? {
        api::VoteChoice::Yes => Some(VoteChoice::Yes),
        api::VoteChoice::No => Some(VoteChoice::No),
        api::VoteChoice::Abstain => Some(VoteChoice::Abstain),
        api::VoteChoice::Unspecified => None,
    }
}

pub fn kind_to_proto(k: CertificateKind) -> cert::CertificateKind {
    match k {
        CertificateKind::Activation => cert::CertificateKind::Activation,
        CertificateKind::Cancellation => cert::CertificateKind::Cancellation,
        CertificateKind::Revocation => cert::CertificateKind::Revocation,
    }
}

pub fn version_to_proto(v: ProtocolVersion) -> cert::ProtocolVersion {
    cert::ProtocolVersion {
        major: v.major,
        minor: v.minor,
    }
}

pub fn value_to_proto(v: &ParamValue) -> cert::ParameterValue {
    use cert::parameter_value::Value;
    cert::ParameterValue {
        value: Some(match v {
            ParamValue::Integer(i) => Value::Integer(*i),
            ParamValue::FixedPoint(m) => Value::FixedMicro(m.0),
            ParamValue::Bool(b) => Value::Boolean(*b),
            ParamValue::String(t) => Value::Text(t.clone()),
        }),
    }
}

/// `None` for a value without its oneof set.
pub fn value_from_proto(v: &cert::ParameterValue) -> Option<ParamValue> {
    use cert::parameter_value::Value;
    Some(match v.value.as_ref()? {
        Value::Integer(i) => ParamValue::Integer(*i),
        Value::FixedMicro(m) => ParamValue::FixedPoint(Micro(*m)),
        Value::Boolean(b) => ParamValue::Bool(*b),
        Value::Text(t) => ParamValue::String(t.clone()),
    })
}

pub fn content_to_proto(c: &NepContent) -> api::NepContent {
    api::NepContent {
        title: c.title.clone(),
        nep_type: nep_type_to_proto(c.nep_type) as i32,
        motivation: c.motivation.clone(),
        specification: c.specification.clone(),
        parameter_changes: c
            .parameter_changes
            .iter()
            .map(|p| cert::ParameterChange {
                key: p.key.clone(),
                old_value: Some(value_to_proto(&p.expected_old)),
                new_value: Some(value_to_proto(&p.new)),
            })
            .collect(),
        economic_impact: Some(cert::EconomicImpact {
            training_efficiency_multiplier_micro: c
                .economic_impact
                .training_efficiency_multiplier
                .0,
            training_reward_multiplier_micro: c.economic_impact.training_reward_multiplier.0,
            net_earnings_change_percent_micro: c.economic_impact.net_earnings_change_percent.0,
            summary: c.economic_impact.summary.clone(),
        }),
        upgrade_path: Some(cert::UpgradePath {
            grace_period_days: c.upgrade_path.grace_period_days,
            backward_compatible: c.upgrade_path.backward_compatible,
        }),
    }
}

/// Saturating: counted power never exceeds the u64 supply.
fn power(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

pub fn tally_to_proto(t: &GovTally, read_point: Option<api::ReadPoint>) -> api::TallyView {
    api::TallyView {
        nep: t.nep.0,
        stage: stage_to_proto(t.stage) as i32,
        tally: Some(cert::Tally {
            yes: power(t.tally.yes),
            no: power(t.tally.no),
            abstain: power(t.tally.abstain),
            total_power: power(t.tally.total_power),
            quorum_bps: t.quorum_bps.0,
            approval_bps: t.approval_bps.0,
            ballots: t.ballots,
        }),
        opened_ms: t.opened_ms.0,
        deadline_ms: t.deadline_ms.0,
        closed: t.closed,
        quorum_reached: t.verdict.quorum,
        approved: t.verdict.approved,
        ballots_root: t.ballots_root.to_vec(),
        closed_index: t.closed_index,
        read_point,
    }
}

/// A rejection in a user's words.
pub fn rejection_text(r: &RejectReason) -> String {
    match r {
        RejectReason::NoQuorum => "no quorum: too little of the snapshot's stake voted".to_owned(),
        RejectReason::NotApproved => "not approved: too few yes votes".to_owned(),
        RejectReason::Conflict {
            key,
            with,
            expected_old,
            current,
        } => match with {
            Some(nep) => format!("conflict: {key} is reserved by {nep}"),
            None => {
                format!("conflict: {key} expected {expected_old} but holds {current}")
            }
        },
        RejectReason::EmergencyWindowExpired {
            approvals,
            threshold,
        } => format!("emergency window expired with {approvals} of {threshold} approvals"),
    }
}

/// The next stage change time alone can cause.
fn next_deadline(p: &Proposal) -> Option<api::StageDeadline> {
    let deadline = |to: &str, at: Option<u64>, since: Option<u64>| {
        at.map(|at_ms| api::StageDeadline {
            to: to.to_owned(),
            at_ms,
            since_ms: since.unwrap_or(p.created_ms.0),
        })
    };
    let vote = p.vote.as_ref();
    match p.stage {
        Stage::Review => deadline(
            "VOTING",
            p.review_ends_ms.map(|t| t.0),
            p.submitted_ms.map(|t| t.0),
        ),
        Stage::Voting => deadline(
            "SCHEDULED or REJECTED",
            vote.map(|v| v.deadline_ms.0),
            vote.map(|v| v.opened_ms.0),
        ),
        Stage::AwaitingApproval => deadline(
            "REJECTED (unless approved)",
            p.window_ends_ms.map(|t| t.0),
            p.submitted_ms.map(|t| t.0),
        ),
        Stage::Scheduled => deadline(
            "ACTIVE",
            p.activation_ms.map(|t| t.0),
            p.decided_ms.map(|t| t.0),
        ),
        Stage::Active if p.is_emergency() => deadline(
            "RATIFIED or REVOKED",
            vote.filter(|v| v.closed.is_none()).map(|v| v.deadline_ms.0),
            vote.map(|v| v.opened_ms.0),
        ),
        _ => None,
    }
}

/// The vote of `p` without its ballots root (which hashes every ballot).
fn vote_without_root(p: &Proposal) -> Option<api::TallyView> {
    let v = p.vote.as_ref()?;
    let view = GovTally {
        nep: p.id,
        stage: p.stage,
        tally: v.tally,
        quorum_bps: v.quorum_bps,
        approval_bps: v.approval_bps,
        ballots: v.ballots.len() as u64,
        opened_ms: v.opened_ms,
        deadline_ms: v.deadline_ms,
        verdict: v
            .closed
            .unwrap_or_else(|| v.tally.verdict(v.quorum_bps, v.approval_bps)),
        closed: v.closed.is_some(),
        closed_index: v.closed_index,
        ballots_root: [0; 32],
    };
    let mut out = tally_to_proto(&view, None);
    out.ballots_root.clear();
    Some(out)
}

/// Whether a proposal answer carries its vote's ballots root: single
/// proposals do, list items do not (`GetTally` has it), so a list costs no
/// hashing of ballots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BallotsRoot {
    Include,
    Omit,
}

pub fn proposal_to_proto(
    state: &GovernanceState,
    p: &Proposal,
    root: BallotsRoot,
    read_point: Option<api::ReadPoint>,
) -> api::Proposal {
    api::Proposal {
        nep: p.id.0,
        stage: stage_to_proto(p.stage) as i32,
        author: p.author.to_hex(),
        content_hash: p.content_hash.to_vec(),
        content: Some(content_to_proto(&p.content)),
        created_ms: p.created_ms.0,
        submitted_ms: p.submitted_ms.map(|t| t.0),
        review_ends_ms: p.review_ends_ms.map(|t| t.0),
        window_ends_ms: p.window_ends_ms.map(|t| t.0),
        approvals: p.approvals.iter().copied().collect(),
        approvals_needed: if p.is_emergency() {
            state.emergency_approvals_needed()
        } else {
            0
        },
        decided_ms: p.decided_ms.map(|t| t.0),
        activation_ms: p.activation_ms.map(|t| t.0),
        version_after: p.version_after.map(version_to_proto),
        rejection: p.rejection.as_ref().map(rejection_text).unwrap_or_default(),
        rejection_json: p
            .rejection
            .as_ref()
            .and_then(|r| serde_json::to_string(r).ok())
            .unwrap_or_default(),
        certificates: p.certificates.clone(),
        vote: match root {
            BallotsRoot::Include => state.tally(p.id).ok().map(|t| tally_to_proto(&t, None)),
            BallotsRoot::Omit => vote_without_root(p),
        },
        next: next_deadline(p),
        read_point,
        deposit: p.deposit.0,
        compacted: p.compacted,
    }
}

pub fn certificate_to_proto(
    r: &CertificateRecord,
    observed_latency_ms: Option<u64>,
    read_point: Option<api::ReadPoint>,
) -> api::Certificate {
    let issued = r.issued.as_ref();
    api::Certificate {
        sequence: r.event.sequence,
        nep: r.event.nep.0,
        kind: kind_to_proto(r.event.kind) as i32,
        issued: issued.is_some(),
        payload: r.payload.clone(),
        envelope: issued.map(|c| c.envelope.to_proto()),
        envelope_json: issued.map(|c| c.envelope.to_json()).unwrap_or_default(),
        signers: issued
            .map(|c| c.shares.iter().map(|s| s.validator).collect())
            .unwrap_or_default(),
        decision_log_index: r.event.decision_log_index,
        observed_latency_ms: issued.and(observed_latency_ms),
        read_point,
    }
}

pub fn receipt_to_proto(r: &VoteReceipt, read_point: Option<api::ReadPoint>) -> api::VoteReceipt {
    api::VoteReceipt {
        nep: r.nep.0,
        account: hex::encode(r.ballot.account),
        choice: choice_to_proto(r.ballot.choice) as i32,
        power: r.ballot.power,
        leaf_index: r.proof.leaf_index,
        tree_size: r.proof.tree_size,
        path: r.proof.path.iter().map(|h| h.to_vec()).collect(),
        ballots_root: r.ballots_root.to_vec(),
        closed: r.closed,
        certificate: r.certificate,
        read_point,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_and_values_round_trip() {
        for s in [
            Stage::Draft,
            Stage::Review,
            Stage::Voting,
            Stage::AwaitingApproval,
            Stage::Scheduled,
            Stage::Active,
            Stage::Ratified,
            Stage::Revoked,
            Stage::Rejected,
            Stage::Withdrawn,
            Stage::Cancelled,
        ] {
            assert_eq!(stage_from_proto(stage_to_proto(s) as i32), Some(s));
        }
        assert_eq!(stage_from_proto(0), None);
        for t in [
            NepType::Arch,
            NepType::Econ,
            NepType::Train,
            NepType::Net,
            NepType::Gov,
            NepType::Emerg,
        ] {
            assert_eq!(nep_type_from_proto(nep_type_to_proto(t) as i32), Some(t));
        }
        for c in [VoteChoice::Yes, VoteChoice::No, VoteChoice::Abstain] {
            assert_eq!(choice_from_proto(choice_to_proto(c) as i32), Some(c));
            // The API's numbers are the Merkle leaf's choice codes.
            assert_eq!(choice_to_proto(c) as i32, i32::from(c.code()));
        }
        for v in [
            ParamValue::Integer(-3),
            ParamValue::FixedPoint(Micro(1_500_000)),
            ParamValue::Bool(true),
            ParamValue::String("x".into()),
        ] {
            assert_eq!(value_from_proto(&value_to_proto(&v)), Some(v));
        }
    }
}
