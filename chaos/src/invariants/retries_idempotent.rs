//! Retries are idempotent: every answer to an operation — the first send
//! and each identical retry — states the same outcome (for an `ok`, the
//! original receipt: same log index, committed time and power), and a retry
//! re-sends the very same command. Where replicas report the entries they
//! applied, a command that reached the log several times ran once: every
//! later copy is answered from memory with the original receipt, and the
//! client was told what the replicas did.

use std::collections::BTreeMap;

use neuroshard_governance::AccountId;

use crate::history::{CommandSummary, EntrySummary, History, OpResult, OutcomeKind};
use crate::rule::PRE_EXECUTION_RULES;

use super::Checked;

pub const NAME: &str = "retries_idempotent";
pub const CLAIM: &str = "identical retries return the original receipt";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RetryFault {
    #[error(
        "client {client} op {op}: attempt {attempt} sends {found:?}, the first send was {first:?}"
    )]
    ChangedCommand {
        client: u32,
        op: u64,
        attempt: u32,
        first: Box<CommandSummary>,
        found: Box<CommandSummary>,
    },
    #[error("client {client} op {op}: a result without any invoke")]
    ResultWithoutInvoke { client: u32, op: u64 },
    #[error("client {client} op {op}: attempt {attempt} was answered {found}, attempt {first_attempt} {first}")]
    DifferentAnswers {
        client: u32,
        op: u64,
        first_attempt: u32,
        first: String,
        attempt: u32,
        found: String,
    },
    #[error("replica {replica}: {account} nonce {nonce} ran at log index {first_index} and again at {index}")]
    AppliedTwice {
        replica: u32,
        account: AccountId,
        nonce: u64,
        first_index: u64,
        index: u64,
    },
    #[error("replica {replica}: {account} nonce {nonce} was answered {first} at log index {first_index} but {found} at {index}")]
    ReplicaAnswersDiffer {
        replica: u32,
        account: AccountId,
        nonce: u64,
        first_index: u64,
        first: String,
        index: u64,
        found: String,
    },
    #[error("client {client} op {op} was told {told}, but replica {replica} answered the command {found} at log index {index}")]
    ClientToldOtherwise {
        client: u32,
        op: u64,
        told: String,
        replica: u32,
        index: u64,
        found: String,
    },
}

/// What must be identical across answers. A refused command is refused
/// again from memory, but each refused retry is its own log entry, so its
/// index is not compared.
fn answer(r: &OpResult) -> String {
    match r.outcome {
        OutcomeKind::Ok => format!(
            "ok at log index {:?}, committed {:?}, power {:?}",
            r.log_index, r.committed_ms, r.power
        ),
        OutcomeKind::Error => format!("error {:?}", r.rule),
        OutcomeKind::Unknown => "unknown".to_owned(),
    }
}

/// A replica's answer to an applied command, comparable with a client's.
fn entry_answer(e: &EntrySummary) -> String {
    match e.outcome {
        OutcomeKind::Ok => format!("ok at log index {:?}, power {:?}", e.receipt_index, e.power),
        _ => format!("error {:?}", e.rule),
    }
}

/// The comparable part of a client's answer ([`entry_answer`]'s form).
fn client_answer(r: &OpResult) -> String {
    match r.outcome {
        OutcomeKind::Ok => format!("ok at log index {:?}, power {:?}", r.log_index, r.power),
        _ => format!("error {:?}", r.rule),
    }
}

/// Applications of one signed command on one replica: (index, summary).
type Applications<'a> = BTreeMap<(u32, AccountId, u64), Vec<(u64, &'a EntrySummary)>>;

pub fn check(h: &History) -> Checked<RetryFault> {
    let mut out = Checked::default();
    // A refusal decided before the command ran (e.g. a different command
    // reusing the nonce) is not an answer to this command.
    let mut applied: Applications<'_> = BTreeMap::new();
    for a in h.applied() {
        let Some(e) = &a.entry else { continue };
        let Some(c) = &e.command else { continue };
        if e.rule
            .as_deref()
            .is_some_and(|r| PRE_EXECUTION_RULES.contains(&r))
        {
            continue;
        }
        applied
            .entry((a.replica, c.account, c.nonce))
            .or_default()
            .push((a.index, e));
    }
    for ((replica, account, nonce), runs) in &applied {
        let mut runs = runs.clone();
        runs.sort_by_key(|(index, _)| *index);
        runs.dedup_by_key(|(index, _)| *index);
        let Some(((first_index, first), rest)) = runs.split_first() else {
            continue;
        };
        if !rest.is_empty() {
            out.checked += 1;
        }
        let expected = entry_answer(first);
        let ran_at = |(index, e): &(u64, &EntrySummary)| {
            e.outcome == OutcomeKind::Ok && e.receipt_index == Some(*index)
        };
        let mut ran = runs.iter().filter(|r| ran_at(r)).map(|(index, _)| *index);
        if let (Some(first_run), Some(again)) = (ran.next(), ran.next()) {
            out.violations.push(RetryFault::AppliedTwice {
                replica: *replica,
                account: *account,
                nonce: *nonce,
                first_index: first_run,
                index: again,
            });
        }
        for (index, e) in rest {
            let found = entry_answer(e);
            if found != expected {
                out.violations.push(RetryFault::ReplicaAnswersDiffer {
                    replica: *replica,
                    account: *account,
                    nonce: *nonce,
                    first_index: *first_index,
                    first: expected.clone(),
                    index: *index,
                    found,
                });
            }
        }
    }
    for op in h.ops().values() {
        let Some(first) = op.command() else {
            out.violations.push(RetryFault::ResultWithoutInvoke {
                client: op.client,
                op: op.op,
            });
            continue;
        };
        for i in op.invokes.iter().skip(1) {
            if &i.command != first {
                out.violations.push(RetryFault::ChangedCommand {
                    client: op.client,
                    op: op.op,
                    attempt: i.attempt,
                    first: Box::new(first.clone()),
                    found: Box::new(i.command.clone()),
                });
            }
        }
        let known: Vec<&OpResult> = op
            .results
            .iter()
            .copied()
            .filter(|r| r.outcome != OutcomeKind::Unknown)
            .collect();
        let Some((reference, rest)) = known.split_first() else {
            continue;
        };
        if op.invokes.len() > 1 {
            out.checked += 1;
        }
        let expected = answer(reference);
        if let Some(c) = op.command() {
            let told = client_answer(reference);
            let replicas = applied
                .range((0, c.account, c.nonce)..=(u32::MAX, c.account, c.nonce))
                .filter(|((_, account, nonce), _)| *account == c.account && *nonce == c.nonce);
            for ((replica, _, _), runs) in replicas {
                for (index, e) in runs {
                    if e.command.as_ref() != Some(c) {
                        continue;
                    }
                    let found = entry_answer(e);
                    if found != told {
                        out.violations.push(RetryFault::ClientToldOtherwise {
                            client: op.client,
                            op: op.op,
                            told: told.clone(),
                            replica: *replica,
                            index: *index,
                            found,
                        });
                    }
                }
            }
        }
        for r in rest {
            let found = answer(r);
            if found != expected {
                out.violations.push(RetryFault::DifferentAnswers {
                    client: op.client,
                    op: op.op,
                    first_attempt: reference.attempt,
                    first: expected.clone(),
                    attempt: r.attempt,
                    found,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use neuroshard_governance::VoteChoice::{No, Yes};

    use super::*;
    use crate::history::Event;
    use crate::testing::{header, vote_invoke, vote_ok};

    fn retry(mut e: Event, attempt: u32) -> Event {
        match &mut e {
            Event::Invoke(i) => i.attempt = attempt,
            Event::Result(r) => r.attempt = attempt,
            _ => {}
        }
        e
    }

    #[test]
    fn flags_a_retry_answered_with_another_receipt() {
        let h = History {
            header: header(),
            events: vec![
                vote_invoke(0, 1, 1, 1, Yes),
                vote_ok(0, 1, 5, 100),
                retry(vote_invoke(0, 1, 1, 1, Yes), 1),
                retry(vote_ok(0, 1, 9, 100), 1),
            ],
        };
        let c = check(&h);
        assert_eq!(c.checked, 1);
        assert!(matches!(
            &c.violations[..],
            [RetryFault::DifferentAnswers { attempt: 1, .. }]
        ));
    }

    #[test]
    fn flags_a_retry_that_changes_the_command() {
        let h = History {
            header: header(),
            events: vec![
                vote_invoke(0, 1, 1, 1, Yes),
                retry(vote_invoke(0, 1, 1, 1, No), 1),
            ],
        };
        assert!(matches!(
            &check(&h).violations[..],
            [RetryFault::ChangedCommand { attempt: 1, .. }]
        ));
    }

    fn applied_vote(replica: u32, index: u64, receipt_index: u64) -> Event {
        use crate::history::{Applied, EntryKind, StateHash};
        let command = match vote_invoke(0, 1, 1, 1, Yes) {
            Event::Invoke(i) => i.command,
            _ => unreachable!("vote_invoke builds an invoke"),
        };
        Event::Applied(Applied {
            time_ms: 0,
            replica,
            index,
            state_hash: StateHash([0; 32]),
            entry: Some(EntrySummary {
                kind: EntryKind::Command,
                command: Some(command),
                now_ms: None,
                sequence: None,
                outcome: OutcomeKind::Ok,
                receipt_index: Some(receipt_index),
                power: Some(100),
                rule: None,
                transitions: Vec::new(),
            }),
        })
    }

    #[test]
    fn flags_a_command_that_ran_twice_on_a_replica() {
        let h = History {
            header: header(),
            events: vec![applied_vote(0, 5, 5), applied_vote(0, 9, 9)],
        };
        let v = check(&h).violations;
        assert!(v.iter().any(|v| matches!(
            v,
            RetryFault::AppliedTwice {
                first_index: 5,
                index: 9,
                ..
            }
        )));
    }

    #[test]
    fn flags_a_client_told_another_receipt_than_the_replicas_gave() {
        let h = History {
            header: header(),
            events: vec![
                vote_invoke(0, 1, 1, 1, Yes),
                applied_vote(0, 5, 5),
                applied_vote(0, 9, 5),
                vote_ok(0, 1, 9, 100),
            ],
        };
        let c = check(&h);
        assert_eq!(c.checked, 1);
        assert!(
            matches!(
                &c.violations[..],
                [
                    RetryFault::ClientToldOtherwise { index: 5, .. },
                    RetryFault::ClientToldOtherwise { index: 9, .. }
                ]
            ),
            "{:?}",
            c.violations
        );
    }

    #[test]
    fn a_retry_answered_from_memory_passes() {
        let h = History {
            header: header(),
            events: vec![
                vote_invoke(0, 1, 1, 1, Yes),
                vote_unknown_at(0),
                retry(vote_invoke(0, 1, 1, 1, Yes), 1),
                applied_vote(0, 5, 5),
                applied_vote(0, 9, 5),
                retry(vote_ok(0, 1, 5, 100), 1),
            ],
        };
        let c = check(&h);
        assert_eq!(c.violations, vec![]);
        assert_eq!(c.checked, 2);
    }

    fn vote_unknown_at(attempt: u32) -> Event {
        retry(crate::testing::vote_unknown(0, 1), attempt)
    }

    #[test]
    fn an_identical_answer_passes() {
        let h = History {
            header: header(),
            events: vec![
                vote_invoke(0, 1, 1, 1, Yes),
                vote_ok(0, 1, 5, 100),
                retry(vote_invoke(0, 1, 1, 1, Yes), 1),
                retry(vote_ok(0, 1, 5, 100), 1),
            ],
        };
        assert_eq!(check(&h).violations, vec![]);
    }
}
