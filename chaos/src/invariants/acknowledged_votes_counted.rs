//! No acknowledged vote is lost: every vote a client was told was counted
//! is in every replica's final tally with the acknowledged choice and
//! power — unless a later vote of the same account replaced it (a later
//! acknowledged one, or a later one whose answer the client never got).

use std::collections::{BTreeMap, BTreeSet};

use neuroshard_governance::{AccountId, NepId, VoteChoice};

use crate::history::{History, OutcomeKind};
use crate::lookup::Observer;

use super::Checked;

pub const NAME: &str = "acknowledged_votes_counted";
pub const CLAIM: &str = "every acknowledged vote is in the final tally as acknowledged";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LostVote {
    #[error("{nep}: no replica recorded a final view, so {acknowledged} acknowledged votes cannot be confirmed")]
    NoFinal { nep: NepId, acknowledged: usize },
    #[error("{nep}: {account}'s vote (nonce {nonce}, {choice:?}, power {power:?}, log index {index}) was acknowledged but replica {replica} counts no ballot of that account")]
    Missing {
        nep: NepId,
        account: AccountId,
        nonce: u64,
        choice: VoteChoice,
        power: Option<u64>,
        index: u64,
        replica: u32,
    },
    #[error("{nep}: {account}'s vote (nonce {nonce}, log index {index}) was acknowledged as {choice:?} with power {power:?} but replica {replica} counts {counted_choice:?} with power {counted_power}")]
    Changed {
        nep: NepId,
        account: AccountId,
        nonce: u64,
        choice: VoteChoice,
        power: Option<u64>,
        index: u64,
        replica: u32,
        counted_choice: VoteChoice,
        counted_power: u64,
    },
}

/// The latest acknowledged vote of an account on a NEP.
struct Acked {
    nonce: u64,
    choice: VoteChoice,
    power: Option<u64>,
    index: u64,
}

pub fn check(h: &History) -> Checked<LostVote> {
    let mut out = Checked::default();
    let ops = h.ops();
    // Votes a replica saw refused: an unanswered retry of one of these did
    // not replace anything.
    let refused: BTreeSet<(AccountId, u64)> = h
        .vote_applications()
        .into_iter()
        .filter(|a| matches!(a.seen_by, Observer::Replica(_)) && a.outcome == OutcomeKind::Error)
        .map(|a| (a.account, a.nonce))
        .collect();

    let mut acked: BTreeMap<(NepId, AccountId), Acked> = BTreeMap::new();
    // Unanswered votes: (nep, account) -> [(nonce, choice)].
    let mut unanswered: BTreeMap<(NepId, AccountId), Vec<(u64, VoteChoice)>> = BTreeMap::new();
    for op in ops.values() {
        let Some(c) = op.command() else { continue };
        let (Some(nep), Some(choice), true) = (c.nep, c.choice, c.is_vote()) else {
            continue;
        };
        match op.known() {
            Some(r) if r.outcome == OutcomeKind::Ok => {
                let Some(index) = r.log_index else { continue };
                let newer = acked
                    .get(&(nep, c.account))
                    .is_none_or(|a| a.nonce < c.nonce);
                if newer {
                    acked.insert(
                        (nep, c.account),
                        Acked {
                            nonce: c.nonce,
                            choice,
                            power: r.power,
                            index,
                        },
                    );
                }
            }
            Some(_) => {}
            None if refused.contains(&(c.account, c.nonce)) => {}
            None => unanswered
                .entry((nep, c.account))
                .or_default()
                .push((c.nonce, choice)),
        }
    }

    let finals = h.finals_by_nep();
    let mut per_nep: BTreeMap<NepId, usize> = BTreeMap::new();
    for (nep, _) in acked.keys() {
        *per_nep.entry(*nep).or_default() += 1;
    }
    for (nep, n) in &per_nep {
        if !finals.contains_key(nep) {
            out.violations.push(LostVote::NoFinal {
                nep: *nep,
                acknowledged: *n,
            });
        }
    }

    for ((nep, account), a) in &acked {
        let Some(views) = finals.get(nep) else {
            continue;
        };
        out.checked += 1;
        // A later unanswered vote may have been applied and replaced it.
        let replacements: BTreeSet<VoteChoice> = unanswered
            .get(&(*nep, *account))
            .into_iter()
            .flatten()
            .filter(|(nonce, _)| *nonce > a.nonce)
            .map(|(_, choice)| *choice)
            .collect();
        for f in views {
            match f.ballots.iter().find(|b| b.account == *account) {
                None => out.violations.push(LostVote::Missing {
                    nep: *nep,
                    account: *account,
                    nonce: a.nonce,
                    choice: a.choice,
                    power: a.power,
                    index: a.index,
                    replica: f.replica,
                }),
                Some(b) => {
                    let as_acked = b.choice == a.choice && a.power.is_none_or(|p| p == b.power);
                    if !as_acked && !replacements.contains(&b.choice) {
                        out.violations.push(LostVote::Changed {
                            nep: *nep,
                            account: *account,
                            nonce: a.nonce,
                            choice: a.choice,
                            power: a.power,
                            index: a.index,
                            replica: f.replica,
                            counted_choice: b.choice,
                            counted_power: b.power,
                        });
                    }
                }
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
    use crate::testing::{final_view, header, vote_invoke, vote_ok, vote_unknown};

    #[test]
    fn flags_an_acknowledged_vote_missing_from_the_final_tally() {
        let h = History {
            header: header(),
            events: vec![
                vote_invoke(0, 1, 1, 1, Yes),
                vote_ok(0, 1, 5, 100),
                Event::Final(final_view(0, 1, Some(9), &[])),
            ],
        };
        let c = check(&h);
        assert!(matches!(
            &c.violations[..],
            [LostVote::Missing { index: 5, .. }]
        ));
    }

    #[test]
    fn flags_a_counted_ballot_that_differs_from_the_acknowledgement() {
        let h = History {
            header: header(),
            events: vec![
                vote_invoke(0, 1, 1, 1, Yes),
                vote_ok(0, 1, 5, 100),
                Event::Final(final_view(0, 1, Some(9), &[(1, No, 100)])),
            ],
        };
        assert!(matches!(
            &check(&h).violations[..],
            [LostVote::Changed {
                counted_choice: No,
                ..
            }]
        ));
    }

    #[test]
    fn a_later_unanswered_vote_may_replace_the_acknowledged_one() {
        let h = History {
            header: header(),
            events: vec![
                vote_invoke(0, 1, 1, 1, Yes),
                vote_ok(0, 1, 5, 100),
                vote_invoke(0, 2, 1, 2, No),
                vote_unknown(0, 2),
                Event::Final(final_view(0, 1, Some(9), &[(1, No, 100)])),
            ],
        };
        let c = check(&h);
        assert_eq!(c.violations, vec![]);
        assert_eq!(c.checked, 1);
    }

    #[test]
    fn flags_votes_of_a_nep_without_any_final_view() {
        let h = History {
            header: header(),
            events: vec![vote_invoke(0, 1, 1, 1, Yes), vote_ok(0, 1, 5, 100)],
        };
        assert!(matches!(
            &check(&h).violations[..],
            [LostVote::NoFinal {
                acknowledged: 1,
                ..
            }]
        ));
    }
}
