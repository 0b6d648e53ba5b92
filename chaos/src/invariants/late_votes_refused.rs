//! No vote applied after the closing tick is counted, and every such vote
//! is refused with `voting_closed`; no vote applied before it is refused
//! that way; and every ballot a replica counts is the last vote its account
//! committed before the closing tick.

use std::collections::{BTreeMap, BTreeSet};

use neuroshard_governance::{AccountId, NepId, VoteChoice};

use crate::history::{is_settled, History, OutcomeKind};
use crate::lookup::{Observer, VoteApplication};
use crate::rule::{PRE_EXECUTION_RULES, VOTING_CLOSED};

use super::Checked;

pub const NAME: &str = "late_votes_refused";
pub const CLAIM: &str =
    "votes applied after the closing tick are refused with voting_closed and never counted";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LateVote {
    #[error("{nep}: its vote is closed (final stage on replica {replica}) but the history does not say which tick closed it")]
    ClosingIndexUnknown { nep: NepId, replica: u32 },
    #[error("{nep}: {account}'s vote (nonce {nonce}) was counted at log index {index}, after the closing tick at {closing_index} (seen by {seen_by})")]
    CountedAfterClose {
        nep: NepId,
        account: AccountId,
        nonce: u64,
        index: u64,
        closing_index: u64,
        seen_by: Observer,
    },
    #[error("{nep}: {account}'s vote (nonce {nonce}) applied at log index {index}, after the closing tick at {closing_index}, was refused with {rule:?} instead of voting_closed (seen by {seen_by})")]
    WrongRefusal {
        nep: NepId,
        account: AccountId,
        nonce: u64,
        index: u64,
        closing_index: u64,
        rule: Option<String>,
        seen_by: Observer,
    },
    #[error("{nep}: {account}'s vote (nonce {nonce}) applied at log index {index}, before the closing tick at {closing_index}, was refused with voting_closed (seen by {seen_by})")]
    ClosedEarly {
        nep: NepId,
        account: AccountId,
        nonce: u64,
        index: u64,
        closing_index: u64,
        seen_by: Observer,
    },
    #[error("{nep}: replica {replica} counts {account} as {choice:?}, which only its vote at log index {late_index} cast — applied after the closing tick at {closing_index}")]
    LateVoteCounted {
        nep: NepId,
        account: AccountId,
        replica: u32,
        choice: VoteChoice,
        late_index: u64,
        closing_index: u64,
    },
    #[error("{nep}: replica {replica} counts {account} as {choice:?} with power {power}, but the last vote it committed before the closing tick was {expected:?}")]
    UnexplainedBallot {
        nep: NepId,
        account: AccountId,
        replica: u32,
        choice: VoteChoice,
        power: u64,
        /// (choice, power) of the last vote committed before the close, if any.
        expected: Option<(VoteChoice, Option<u64>)>,
    },
}

pub fn check(h: &History) -> Checked<LateVote> {
    let mut out = Checked::default();
    let applications = h.vote_applications();
    let mut by_nep: BTreeMap<NepId, Vec<&VoteApplication>> = BTreeMap::new();
    for a in &applications {
        by_nep.entry(a.nep).or_default().push(a);
    }
    let finals = h.finals_by_nep();
    let neps: BTreeSet<NepId> = by_nep.keys().chain(finals.keys()).copied().collect();
    // Votes whose outcome nobody saw: (nep, account) -> [(nonce, choice)].
    let seen: BTreeSet<(AccountId, u64)> =
        applications.iter().map(|a| (a.account, a.nonce)).collect();
    let mut unanswered: BTreeMap<(NepId, AccountId), Vec<(u64, VoteChoice)>> = BTreeMap::new();
    for op in h.ops().values() {
        let Some(c) = op.command() else { continue };
        let (Some(nep), Some(choice), true) = (c.nep, c.choice, c.is_vote()) else {
            continue;
        };
        if op.known().is_none() && !seen.contains(&(c.account, c.nonce)) {
            unanswered
                .entry((nep, c.account))
                .or_default()
                .push((c.nonce, choice));
        }
    }

    for nep in neps {
        let Some(closing) = h.closing_index(nep) else {
            // A NEP whose vote ended on some replica must say where.
            if let Some(f) = finals
                .get(&nep)
                .into_iter()
                .flatten()
                .find(|f| f.deadline_ms.is_some() && is_settled(f.stage, f.emergency))
            {
                out.violations.push(LateVote::ClosingIndexUnknown {
                    nep,
                    replica: f.replica,
                });
            }
            continue;
        };
        let apps = by_nep.get(&nep).map(Vec::as_slice).unwrap_or_default();
        check_applications(nep, closing, apps, &mut out);
        let Some(views) = finals.get(&nep) else {
            continue;
        };
        for f in views {
            for b in &f.ballots {
                out.checked += 1;
                let account_apps: Vec<&&VoteApplication> =
                    apps.iter().filter(|a| a.account == b.account).collect();
                // The last vote counted before the close is what must be counted.
                let expected = account_apps
                    .iter()
                    .filter(|a| a.outcome == OutcomeKind::Ok)
                    .filter(|a| a.receipt_index.unwrap_or(a.index) < closing)
                    .max_by_key(|a| (a.receipt_index.unwrap_or(a.index), a.nonce));
                if let Some(e) = expected {
                    if e.choice == b.choice && e.power.is_none_or(|p| p == b.power) {
                        continue;
                    }
                }
                let after = expected.map_or(0, |e| e.nonce);
                let maybe_later = unanswered
                    .get(&(nep, b.account))
                    .into_iter()
                    .flatten()
                    .any(|(nonce, choice)| *nonce > after && *choice == b.choice);
                if maybe_later {
                    continue;
                }
                let late = account_apps
                    .iter()
                    .filter(|a| a.index > closing && a.choice == b.choice)
                    .map(|a| a.index)
                    .min();
                out.violations.push(match late {
                    Some(late_index) => LateVote::LateVoteCounted {
                        nep,
                        account: b.account,
                        replica: f.replica,
                        choice: b.choice,
                        late_index,
                        closing_index: closing,
                    },
                    None => LateVote::UnexplainedBallot {
                        nep,
                        account: b.account,
                        replica: f.replica,
                        choice: b.choice,
                        power: b.power,
                        expected: expected.map(|e| (e.choice, e.power)),
                    },
                });
            }
        }
    }
    out
}

/// Every observed application of a vote on `nep` against its closing index.
fn check_applications(
    nep: NepId,
    closing: u64,
    apps: &[&VoteApplication],
    out: &mut Checked<LateVote>,
) {
    // One report per vote (account, nonce), however many observers saw it.
    let mut reported = BTreeSet::new();
    for a in apps {
        let key = (a.account, a.nonce);
        let violation = match a.outcome {
            OutcomeKind::Ok => {
                let counted_at = a.receipt_index.unwrap_or(a.index);
                if counted_at < closing {
                    continue;
                }
                LateVote::CountedAfterClose {
                    nep,
                    account: a.account,
                    nonce: a.nonce,
                    index: counted_at,
                    closing_index: closing,
                    seen_by: a.seen_by,
                }
            }
            OutcomeKind::Error => {
                let rule = a.rule.as_deref();
                let pre_execution = rule.is_some_and(|r| PRE_EXECUTION_RULES.contains(&r));
                if a.index > closing {
                    out.checked += 1;
                    if rule == Some(VOTING_CLOSED) || pre_execution {
                        continue;
                    }
                    LateVote::WrongRefusal {
                        nep,
                        account: a.account,
                        nonce: a.nonce,
                        index: a.index,
                        closing_index: closing,
                        rule: a.rule.clone(),
                        seen_by: a.seen_by,
                    }
                } else if rule == Some(VOTING_CLOSED) {
                    LateVote::ClosedEarly {
                        nep,
                        account: a.account,
                        nonce: a.nonce,
                        index: a.index,
                        closing_index: closing,
                        seen_by: a.seen_by,
                    }
                } else {
                    continue;
                }
            }
            OutcomeKind::Unknown => continue,
        };
        if reported.insert(key) {
            out.violations.push(violation);
        }
    }
}

#[cfg(test)]
mod tests {
    use neuroshard_governance::VoteChoice::{No, Yes};

    use super::*;
    use crate::history::Event;
    use crate::testing::{final_view, header, user, vote_err, vote_invoke, vote_ok};

    #[test]
    fn flags_a_vote_acknowledged_after_the_closing_tick() {
        let h = History {
            header: header(),
            events: vec![
                vote_invoke(0, 1, 1, 1, Yes),
                vote_ok(0, 1, 12, 100),
                Event::Final(final_view(0, 1, Some(10), &[])),
            ],
        };
        let c = check(&h);
        assert!(matches!(
            &c.violations[..],
            [LateVote::CountedAfterClose {
                index: 12,
                closing_index: 10,
                ..
            }]
        ));
    }

    #[test]
    fn flags_a_late_vote_refused_with_another_rule() {
        let h = History {
            header: header(),
            events: vec![
                vote_invoke(0, 1, 1, 1, Yes),
                vote_err(0, 1, 12, "voting_not_open"),
                Event::Final(final_view(0, 1, Some(10), &[])),
            ],
        };
        assert!(matches!(
            &check(&h).violations[..],
            [LateVote::WrongRefusal { index: 12, .. }]
        ));
    }

    #[test]
    fn flags_voting_closed_before_the_closing_tick() {
        let h = History {
            header: header(),
            events: vec![
                vote_invoke(0, 1, 1, 1, Yes),
                vote_err(0, 1, 7, "voting_closed"),
                Event::Final(final_view(0, 1, Some(10), &[])),
            ],
        };
        assert!(matches!(
            &check(&h).violations[..],
            [LateVote::ClosedEarly { index: 7, .. }]
        ));
    }

    #[test]
    fn flags_a_refused_late_vote_that_is_counted_anyway() {
        // Yes before the close, No refused after it, but the replica counts No.
        let h = History {
            header: header(),
            events: vec![
                vote_invoke(0, 1, 1, 1, Yes),
                vote_ok(0, 1, 5, 100),
                vote_invoke(0, 2, 1, 2, No),
                vote_err(0, 2, 12, "voting_closed"),
                Event::Final(final_view(0, 1, Some(10), &[(1, No, 100)])),
            ],
        };
        let c = check(&h);
        assert_eq!(
            c.violations,
            vec![LateVote::LateVoteCounted {
                nep: NepId(1),
                account: user(1),
                replica: 0,
                choice: No,
                late_index: 12,
                closing_index: 10,
            }]
        );
    }

    #[test]
    fn flags_a_closed_vote_without_a_closing_index() {
        let h = History {
            header: header(),
            events: vec![Event::Final(final_view(0, 1, None, &[]))],
        };
        assert!(matches!(
            &check(&h).violations[..],
            [LateVote::ClosingIndexUnknown { .. }]
        ));
    }

    #[test]
    fn a_vote_counted_before_the_close_passes() {
        let h = History {
            header: header(),
            events: vec![
                vote_invoke(0, 1, 1, 1, Yes),
                vote_ok(0, 1, 5, 100),
                vote_invoke(0, 2, 1, 2, No),
                vote_err(0, 2, 12, "voting_closed"),
                Event::Final(final_view(0, 1, Some(10), &[(1, Yes, 100)])),
            ],
        };
        let c = check(&h);
        assert_eq!(c.violations, vec![]);
        assert_eq!(c.checked, 2);
    }
}
