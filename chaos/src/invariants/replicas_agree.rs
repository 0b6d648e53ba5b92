//! Replicas agree: every replica that reports a log index reports the same
//! state hash for it, and replicas that closed a NEP's vote hold the same
//! closing index, deadline, ballots and tally.

use std::collections::{BTreeMap, BTreeSet};

use neuroshard_governance::NepId;

use crate::history::{Final, History, StateHash};

use super::Checked;

pub const NAME: &str = "replicas_agree";
pub const CLAIM: &str = "same state hash at every applied index; same closed vote on every replica";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Disagreement {
    #[error("state hashes differ at log index {index}: {}", list(.reports))]
    StateHash {
        index: u64,
        /// Each distinct (replica, hash) report at this index.
        reports: Vec<(u32, StateHash)>,
    },
    #[error("replicas {reference} and {replica} closed {nep}'s vote differently: {field} is {expected} on {reference}, {found} on {replica}")]
    ClosedVote {
        nep: NepId,
        reference: u32,
        replica: u32,
        field: &'static str,
        expected: String,
        found: String,
    },
}

fn list(reports: &[(u32, StateHash)]) -> String {
    reports
        .iter()
        .map(|(r, h)| format!("replica {r} {h}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn check(h: &History) -> Checked<Disagreement> {
    let mut out = Checked::default();
    let mut by_index: BTreeMap<u64, BTreeSet<(u32, StateHash)>> = BTreeMap::new();
    for a in h.applied() {
        by_index
            .entry(a.index)
            .or_default()
            .insert((a.replica, a.state_hash));
    }
    for (index, reports) in by_index {
        if reports.len() < 2 {
            continue;
        }
        out.checked += 1;
        let distinct: BTreeSet<StateHash> = reports.iter().map(|(_, h)| *h).collect();
        if distinct.len() > 1 {
            out.violations.push(Disagreement::StateHash {
                index,
                reports: reports.into_iter().collect(),
            });
        }
    }
    for finals in h.finals_by_nep().into_values() {
        let closed: Vec<&Final> = finals
            .into_iter()
            .filter(|f| f.closing_index.is_some())
            .collect();
        let Some((reference, rest)) = closed.split_first() else {
            continue;
        };
        for f in rest {
            out.checked += 1;
            if let Some(d) = first_difference(reference, f) {
                out.violations.push(d);
            }
        }
    }
    out
}

fn first_difference(a: &Final, b: &Final) -> Option<Disagreement> {
    let diff = |field: &'static str, x: String, y: String| {
        (x != y).then_some(Disagreement::ClosedVote {
            nep: a.nep,
            reference: a.replica,
            replica: b.replica,
            field,
            expected: x,
            found: y,
        })
    };
    diff(
        "closing_index",
        format!("{:?}", a.closing_index),
        format!("{:?}", b.closing_index),
    )
    .or_else(|| {
        diff(
            "deadline_ms",
            format!("{:?}", a.deadline_ms),
            format!("{:?}", b.deadline_ms),
        )
    })
    .or_else(|| diff("tally", format!("{:?}", a.tally), format!("{:?}", b.tally)))
    .or_else(|| {
        let sorted = |f: &Final| {
            let mut v: Vec<String> = f
                .ballots
                .iter()
                .map(|x| format!("{}:{:?}:{}", x.account, x.choice, x.power))
                .collect();
            v.sort();
            v.join(",")
        };
        diff("ballots", sorted(a), sorted(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Applied, Event};
    use crate::testing::{final_view, header};

    fn applied(replica: u32, index: u64, hash: u8) -> Event {
        Event::Applied(Applied {
            time_ms: 0,
            replica,
            index,
            state_hash: StateHash([hash; 32]),
            entry: None,
        })
    }

    #[test]
    fn flags_a_replica_with_another_hash_at_the_same_index() {
        let h = History {
            header: header(),
            events: vec![
                applied(0, 1, 1),
                applied(1, 1, 1),
                applied(0, 2, 2),
                applied(1, 2, 9),
                applied(2, 3, 3),
            ],
        };
        let c = check(&h);
        assert_eq!(c.checked, 2);
        assert_eq!(c.violations.len(), 1);
        assert!(matches!(
            &c.violations[0],
            Disagreement::StateHash { index: 2, reports } if reports.len() == 2
        ));
    }

    #[test]
    fn flags_replicas_that_closed_a_vote_with_different_ballots() {
        let a = final_view(
            0,
            1,
            Some(10),
            &[(1, neuroshard_governance::VoteChoice::Yes, 5)],
        );
        let b = final_view(
            1,
            1,
            Some(10),
            &[(1, neuroshard_governance::VoteChoice::No, 5)],
        );
        let h = History {
            header: header(),
            events: vec![Event::Final(a), Event::Final(b)],
        };
        let c = check(&h);
        assert!(
            matches!(&c.violations[..], [Disagreement::ClosedVote { field, .. }] if *field == "tally" || *field == "ballots"),
            "{:?}",
            c.violations
        );
    }
}
