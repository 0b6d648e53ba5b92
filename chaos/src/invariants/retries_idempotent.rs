//! Retries are idempotent: every answer to an operation — the first send
//! and each identical retry — states the same outcome (for an `ok`, the
//! original receipt: same log index, committed time and power), and a retry
//! re-sends the very same command.

use crate::history::{CommandSummary, History, OpResult, OutcomeKind};

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

pub fn check(h: &History) -> Checked<RetryFault> {
    let mut out = Checked::default();
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
