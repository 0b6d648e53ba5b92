//! Minimal history fixtures for the checkers' unit tests.

use neuroshard_governance::testkit::{account_of, user_key, TestChain, TestConfig};
use neuroshard_governance::{AccountId, Command, Effect, Entry, NepId, Stage, VoteChoice};

use crate::history::{
    BallotRecord, CertificateSeen, CommandSummary, Event, Final, Header, History, Invoke, OpResult,
    OutcomeKind, TallyRecord, HISTORY_FORMAT,
};
use crate::observe::{
    client_result, command_summary, final_view as observed_final, replica_payload, Attempt,
    FinalObservation,
};

pub const LIVENESS_BOUND_MS: u64 = 1_000;

fn header_for(chain: &neuroshard_governance::Genesis) -> Header {
    Header {
        format: HISTORY_FORMAT,
        harness: "unit-test".to_owned(),
        seed: None,
        chain_id: chain.chain_id.clone(),
        committee: chain.committee.info.clone(),
        replicas: 4,
        liveness_bound_ms: LIVENESS_BOUND_MS,
        started_ms: 0,
    }
}

/// A header naming the default test committee.
pub fn header() -> Header {
    header_for(&neuroshard_governance::testkit::genesis(&TestConfig::default()).0)
}

pub fn user(i: usize) -> AccountId {
    account_of(&user_key(i))
}

/// Client `client` sends op `op`: test user `user` votes `choice` on NEP-1.
pub fn vote_invoke(
    client: u32,
    op: u64,
    user_index: usize,
    nonce: u64,
    choice: VoteChoice,
) -> Event {
    Event::Invoke(Invoke {
        time_ms: 0,
        client,
        op,
        attempt: 0,
        command: CommandSummary {
            kind: "vote".to_owned(),
            account: user(user_index),
            nonce,
            nep: Some(NepId(1)),
            choice: Some(choice),
        },
    })
}

fn result(client: u32, op: u64, outcome: OutcomeKind) -> OpResult {
    OpResult {
        time_ms: 0,
        client,
        op,
        attempt: 0,
        outcome,
        log_index: None,
        committed_ms: None,
        power: None,
        rule: None,
        message: None,
    }
}

pub fn vote_ok(client: u32, op: u64, index: u64, power: u64) -> Event {
    Event::Result(OpResult {
        log_index: Some(index),
        committed_ms: Some(0),
        power: Some(power),
        ..result(client, op, OutcomeKind::Ok)
    })
}

pub fn vote_err(client: u32, op: u64, index: u64, rule: &str) -> Event {
    Event::Result(OpResult {
        log_index: Some(index),
        rule: Some(rule.to_owned()),
        ..result(client, op, OutcomeKind::Error)
    })
}

pub fn vote_unknown(client: u32, op: u64) -> Event {
    Event::Result(result(client, op, OutcomeKind::Unknown))
}

/// A settled final view of NEP `nep` on `replica` whose tally is the sum of
/// `ballots` (test user index, choice, power).
pub fn final_view(
    replica: u32,
    nep: u64,
    closing_index: Option<u64>,
    ballots: &[(usize, VoteChoice, u64)],
) -> Final {
    let ballots: Vec<BallotRecord> = ballots
        .iter()
        .map(|(u, choice, power)| BallotRecord {
            account: user(*u),
            choice: *choice,
            power: *power,
        })
        .collect();
    let sum = |c: VoteChoice| {
        ballots
            .iter()
            .filter(|b| b.choice == c)
            .map(|b| b.power)
            .sum()
    };
    Final {
        time_ms: 0,
        replica,
        nep: NepId(nep),
        stage: Stage::Scheduled,
        emergency: false,
        settled_ms: Some(0),
        deadline_ms: Some(0),
        closing_index,
        tally: Some(TallyRecord {
            yes: sum(VoteChoice::Yes),
            no: sum(VoteChoice::No),
            abstain: sum(VoteChoice::Abstain),
            total_power: 10_000,
            quorum_bps: 2_000,
            approval_bps: 6_600,
        }),
        ballots,
        certificates: Vec::new(),
    }
}

/// A real, clean history: a test chain votes (two yes, one no) on one NEP,
/// closes it, and issues its activation certificate. Two replica views
/// (the same state) are recorded.
pub fn certified_run() -> History {
    let mut chain = TestChain::new(&TestConfig::default());
    let author = user_key(3);
    let mut content = crate::model::nep_contents().remove(0);
    // The default test chain keeps the default grace bounds (7..=30 days).
    content.upgrade_path.grace_period_days = 7;
    let nep = match chain.exec(&author, Command::CreateDraft { content }) {
        Ok(r) => match r.effect {
            Effect::DraftCreated { nep, .. } => nep,
            other => panic!("unexpected effect {other:?}"),
        },
        Err(e) => panic!("draft refused: {e}"),
    };
    chain
        .exec(&author, Command::Submit { nep })
        .expect("submit");
    let review = chain.state.params().gov().review_days;
    chain.advance_days(review).expect("review ends");
    let mut events = Vec::new();
    for (i, choice) in [VoteChoice::Yes, VoteChoice::Yes, VoteChoice::No]
        .into_iter()
        .enumerate()
    {
        let signed = chain.sign(&user_key(i), Command::Vote { nep, choice });
        let attempt = Attempt {
            time_ms: chain.now_ms,
            client: i as u32,
            op: 1,
            attempt: 0,
        };
        events.push(Event::Invoke(Invoke {
            time_ms: chain.now_ms,
            client: i as u32,
            op: 1,
            attempt: 0,
            command: command_summary(&signed),
        }));
        let index = chain.next_index;
        let outcome = chain.apply(Entry::Command(signed));
        events.push(Event::Result(client_result(attempt, &outcome, Some(index))));
    }
    let deadline = chain
        .state
        .proposal(nep)
        .and_then(|p| p.vote.as_ref())
        .map(|v| v.deadline_ms.0)
        .expect("the vote is open");
    let closing_index = chain.next_index;
    chain.tick_at(deadline).expect("the vote closes");
    for outcome in chain.issue_pending() {
        outcome.expect("the certificate is recorded");
    }
    let record = chain.state.certificate(1).expect("certificate 1 decided");
    let issued = record.issued.as_ref().expect("certificate 1 issued");
    events.push(Event::Certificate(CertificateSeen {
        time_ms: deadline,
        sequence: 1,
        nep,
        kind: record.event.kind,
        envelope: issued.envelope.clone(),
        replica_payloads: (0..2)
            .filter_map(|r| replica_payload(&chain.state, r, 1))
            .collect(),
    }));
    for replica in 0..2 {
        let seen = FinalObservation {
            time_ms: deadline,
            settled_ms: Some(deadline),
            closing_index: Some(closing_index),
        };
        let f = observed_final(&chain.state, replica, nep, seen).expect("the NEP exists");
        events.push(Event::Final(f));
    }
    History {
        header: Header {
            started_ms: chain.genesis.genesis_time_ms,
            ..header_for(&chain.genesis)
        },
        events,
    }
}
