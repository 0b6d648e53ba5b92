//! Turns what a replica or a client sees into history records. Shared by
//! every harness that runs the governance state machine in-process (the
//! model and the simulation); a harness talking to real processes builds
//! the same records from API answers.

use neuroshard_governance::{
    Command, Effect, Entry, GovernanceState, NepId, Outcome, SignedCommand, Stage, Transition,
};

use crate::history::{
    BallotRecord, CommandSummary, EntryKind, EntrySummary, Final, OpResult, OutcomeKind,
    ReplicaPayload, TallyRecord, TransitionSummary,
};
use crate::rule::rule_name;

/// The summary of a signed command.
pub fn command_summary(c: &SignedCommand) -> CommandSummary {
    let (nep, choice) = match &c.command {
        Command::Vote { nep, choice } => (Some(*nep), Some(*choice)),
        Command::AmendDraft { nep, .. }
        | Command::Submit { nep }
        | Command::Withdraw { nep }
        | Command::EmergencyApprove { nep } => (Some(*nep), None),
        Command::Transfer { .. }
        | Command::Stake { .. }
        | Command::Unstake { .. }
        | Command::CreateDraft { .. }
        | Command::SubmitEmergency { .. } => (None, None),
    };
    CommandSummary {
        kind: c.command.name().to_owned(),
        account: c.author,
        nonce: c.nonce,
        nep,
        choice,
    }
}

/// Who asked, and when, for [`client_result`].
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    pub time_ms: u64,
    pub client: u32,
    pub op: u64,
    pub attempt: u32,
}

/// The client's record of an answered attempt. `applied_at`: the index the
/// refused entry was applied at, when the client can know it.
pub fn client_result(a: Attempt, outcome: &Outcome, applied_at: Option<u64>) -> OpResult {
    let mut r = OpResult {
        time_ms: a.time_ms,
        client: a.client,
        op: a.op,
        attempt: a.attempt,
        outcome: OutcomeKind::Ok,
        log_index: None,
        committed_ms: None,
        power: None,
        rule: None,
        message: None,
    };
    match outcome {
        Ok(receipt) => {
            r.log_index = Some(receipt.position.log_index);
            r.committed_ms = Some(receipt.committed_ms.0);
            if let Effect::Voted { power, .. } = &receipt.effect {
                r.power = Some(power.0);
            }
        }
        Err(e) => {
            r.outcome = OutcomeKind::Error;
            r.log_index = applied_at;
            r.rule = Some(rule_name(e).to_owned());
            r.message = Some(e.to_string());
        }
    }
    r
}

/// The client's record of an attempt that got no answer.
pub fn unknown_result(a: Attempt) -> OpResult {
    OpResult {
        time_ms: a.time_ms,
        client: a.client,
        op: a.op,
        attempt: a.attempt,
        outcome: OutcomeKind::Unknown,
        log_index: None,
        committed_ms: None,
        power: None,
        rule: None,
        message: None,
    }
}

/// A tick transition that closes a stake-weighted vote: the end of VOTING,
/// or the end of an EMERG NEP's ratification.
pub fn closes_vote(t: &Transition) -> bool {
    closes_vote_stages(t.from, t.to)
}

/// [`closes_vote`] on a stage pair.
pub fn closes_vote_stages(from: Stage, to: Stage) -> bool {
    matches!(
        (from, to),
        (Stage::Voting, _) | (Stage::Active, Stage::Ratified | Stage::Revoked)
    )
}

/// What an applied entry was and did.
pub fn entry_summary(entry: &Entry, outcome: &Outcome) -> EntrySummary {
    let mut s = EntrySummary {
        kind: EntryKind::Command,
        command: None,
        now_ms: None,
        sequence: None,
        outcome: OutcomeKind::Ok,
        receipt_index: None,
        power: None,
        rule: None,
        transitions: Vec::new(),
    };
    match entry {
        Entry::Command(c) => s.command = Some(command_summary(c)),
        // The recorder summarizes a batch command by command
        // (`sim/recording.rs`); a whole batch names its first.
        Entry::Commands(cs) => s.command = cs.first().map(command_summary),
        Entry::Tick { now_ms } => {
            s.kind = EntryKind::Tick;
            s.now_ms = Some(*now_ms);
        }
        Entry::CertificateIssued(c) => {
            s.kind = EntryKind::CertificateIssued;
            s.sequence = Some(c.sequence);
        }
    }
    match outcome {
        Ok(receipt) => {
            s.receipt_index = Some(receipt.position.log_index);
            match &receipt.effect {
                Effect::Voted { power, .. } => s.power = Some(power.0),
                Effect::Ticked { transitions } => {
                    s.transitions = transitions
                        .iter()
                        .map(|t| TransitionSummary {
                            nep: t.nep,
                            from: t.from,
                            to: t.to,
                            certificate: t.certificate,
                        })
                        .collect();
                }
                _ => {}
            }
        }
        Err(e) => {
            s.outcome = OutcomeKind::Error;
            s.rule = Some(rule_name(e).to_owned());
        }
    }
    s
}

/// Saturating: powers are stake and fit in u64 (see [`TallyRecord`]).
fn to_u64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// What the harness observed about a NEP on one replica besides its state.
#[derive(Clone, Copy, Debug, Default)]
pub struct FinalObservation {
    pub time_ms: u64,
    pub settled_ms: Option<u64>,
    pub closing_index: Option<u64>,
}

/// A replica's final view of `nep`, or `None` if it does not know the NEP.
pub fn final_view(
    state: &GovernanceState,
    replica: u32,
    nep: NepId,
    seen: FinalObservation,
) -> Option<Final> {
    let p = state.proposal(nep)?;
    let (ballots, tally, deadline) = match &p.vote {
        Some(v) => (
            v.ballots
                .iter()
                .map(|(account, b)| BallotRecord {
                    account: *account,
                    choice: b.choice,
                    power: b.power.0,
                })
                .collect(),
            Some(TallyRecord {
                yes: to_u64(v.tally.yes),
                no: to_u64(v.tally.no),
                abstain: to_u64(v.tally.abstain),
                total_power: to_u64(v.tally.total_power),
                quorum_bps: v.quorum_bps.0,
                approval_bps: v.approval_bps.0,
            }),
            Some(v.deadline_ms.0),
        ),
        None => (Vec::new(), None, None),
    };
    Some(Final {
        time_ms: seen.time_ms,
        replica,
        nep,
        stage: p.stage,
        emergency: p.is_emergency(),
        settled_ms: seen.settled_ms,
        deadline_ms: deadline,
        closing_index: seen.closing_index,
        ballots,
        tally,
        certificates: p.certificates.clone(),
    })
}

/// The payload `replica` derived for certificate `sequence`, if it decided it.
pub fn replica_payload(
    state: &GovernanceState,
    replica: u32,
    sequence: u64,
) -> Option<ReplicaPayload> {
    state.certificate(sequence).map(|r| ReplicaPayload {
        replica,
        payload: r.payload.clone(),
    })
}
