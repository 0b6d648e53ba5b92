//! The certified tally is a recount of the committed ballots: every
//! certificate's yes/no/abstain sums, ballot count and ballots root equal
//! what a recount of each replica's counted ballots gives (and each
//! replica's own recorded tally equals the recount of its ballots).

use neuroshard_certificate::decode_payload;
use neuroshard_certificate::merkle::{empty_root, BallotLeaf, BallotTree};
use neuroshard_certificate::proto::{self, CertificatePayload};
use neuroshard_governance::{AccountId, NepId, VoteChoice};

use crate::history::{BallotRecord, Final, History, TallyRecord};

use super::Checked;

pub const NAME: &str = "certified_tally";
pub const CLAIM: &str = "certified tally and ballots root equal a recount of the committed ballots";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TallyMismatch {
    #[error("certificate {sequence}: payload does not decode: {reason}")]
    Undecodable { sequence: u64, reason: String },
    #[error("certificate {sequence} is about {nep}, but no replica recorded a final view of it")]
    NoFinal { sequence: u64, nep: NepId },
    #[error("certificate {sequence} ({nep}): certified {field} is {certified}, a recount of replica {replica}'s ballots gives {recounted}")]
    TallyDiffers {
        sequence: u64,
        nep: NepId,
        replica: u32,
        field: &'static str,
        certified: u64,
        recounted: u64,
    },
    #[error("certificate {sequence} ({nep}): certified ballots root {certified}, recomputed from replica {replica}'s ballots {recomputed}")]
    RootDiffers {
        sequence: u64,
        nep: NepId,
        replica: u32,
        certified: String,
        recomputed: String,
    },
    #[error("{nep}: replica {replica} records {account} with two ballots")]
    DuplicateBallot {
        nep: NepId,
        replica: u32,
        account: AccountId,
    },
    #[error("{nep}: replica {replica} records a tally with {field} {recorded}, its own ballots add up to {recounted}")]
    FinalTallyNotRecount {
        nep: NepId,
        replica: u32,
        field: &'static str,
        recorded: u64,
        recounted: u64,
    },
}

/// A recount of a list of ballots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recount {
    pub yes: u64,
    pub no: u64,
    pub abstain: u64,
    pub ballots: u64,
    pub root: [u8; 32],
}

/// Recounts `ballots` (any order); `Err(account)` names a repeated voter.
pub fn recount(ballots: &[BallotRecord]) -> Result<Recount, AccountId> {
    let mut leaves: Vec<BallotLeaf> = ballots
        .iter()
        .map(|b| BallotLeaf {
            account: b.account.0,
            choice: b.choice,
            power: b.power,
        })
        .collect();
    leaves.sort_by_key(|a| a.account);
    if let Some(w) = leaves.windows(2).find(|w| w[0].account == w[1].account) {
        return Err(AccountId(w[0].account));
    }
    let mut r = Recount {
        ballots: leaves.len() as u64,
        ..Recount::default()
    };
    for l in &leaves {
        let sum = match l.choice {
            VoteChoice::Yes => &mut r.yes,
            VoteChoice::No => &mut r.no,
            VoteChoice::Abstain => &mut r.abstain,
        };
        *sum = sum.saturating_add(l.power);
    }
    r.root = match BallotTree::new(&leaves) {
        Ok(tree) => tree.root(),
        // Sorted and de-duplicated above, so the tree always builds.
        Err(_) => return Err(AccountId(leaves[0].account)),
    };
    Ok(r)
}

pub fn check(h: &History) -> Checked<TallyMismatch> {
    let mut out = Checked::default();
    let finals = h.finals_by_nep();
    // Each replica's own tally against its own ballots.
    let mut recounts: Vec<(&Final, Recount)> = Vec::new();
    for f in h.finals() {
        out.checked += 1;
        match recount(&f.ballots) {
            Err(account) => out.violations.push(TallyMismatch::DuplicateBallot {
                nep: f.nep,
                replica: f.replica,
                account,
            }),
            Ok(r) => {
                if let Some(t) = &f.tally {
                    for (field, recorded, recounted) in [
                        ("yes", t.yes, r.yes),
                        ("no", t.no, r.no),
                        ("abstain", t.abstain, r.abstain),
                    ] {
                        if recorded != recounted {
                            out.violations.push(TallyMismatch::FinalTallyNotRecount {
                                nep: f.nep,
                                replica: f.replica,
                                field,
                                recorded,
                                recounted,
                            });
                        }
                    }
                }
                recounts.push((f, r));
            }
        }
    }
    for c in h.certificates() {
        let payload = match decode_payload(&c.envelope.payload) {
            Ok(p) => p,
            Err(e) => {
                out.violations.push(TallyMismatch::Undecodable {
                    sequence: c.sequence,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let nep = NepId(payload.nep_id);
        let certified = payload.tally.unwrap_or_default();
        if emergency_activation(&payload) {
            // Decided by committee approvals before any vote: no ballots.
            out.checked += 1;
            let none = Recount {
                root: empty_root(),
                ..Recount::default()
            };
            compare(
                c.sequence,
                nep,
                u32::MAX,
                &payload,
                &certified,
                &none,
                None,
                &mut out,
            );
            continue;
        }
        if !finals.contains_key(&nep) {
            out.violations.push(TallyMismatch::NoFinal {
                sequence: c.sequence,
                nep,
            });
            continue;
        }
        // Replicas whose vote is not closed yet lag; liveness judges them.
        for (f, r) in recounts
            .iter()
            .filter(|(f, _)| f.nep == nep && f.closing_index.is_some())
        {
            out.checked += 1;
            compare(
                c.sequence,
                nep,
                f.replica,
                &payload,
                &certified,
                r,
                f.tally.as_ref(),
                &mut out,
            );
        }
    }
    out
}

fn emergency_activation(p: &CertificatePayload) -> bool {
    p.kind == proto::CertificateKind::Activation as i32
        && p.nep_type == proto::NepType::Emerg as i32
}

#[allow(clippy::too_many_arguments)]
fn compare(
    sequence: u64,
    nep: NepId,
    replica: u32,
    payload: &CertificatePayload,
    certified: &proto::Tally,
    r: &Recount,
    recorded: Option<&TallyRecord>,
    out: &mut Checked<TallyMismatch>,
) {
    let mut fields = vec![
        ("yes", certified.yes, r.yes),
        ("no", certified.no, r.no),
        ("abstain", certified.abstain, r.abstain),
        ("ballots", certified.ballots, r.ballots),
    ];
    if let Some(t) = recorded {
        fields.push(("total_power", certified.total_power, t.total_power));
        fields.push((
            "quorum_bps",
            u64::from(certified.quorum_bps),
            u64::from(t.quorum_bps),
        ));
        fields.push((
            "approval_bps",
            u64::from(certified.approval_bps),
            u64::from(t.approval_bps),
        ));
    }
    for (field, certified, recounted) in fields {
        if certified != recounted {
            out.violations.push(TallyMismatch::TallyDiffers {
                sequence,
                nep,
                replica,
                field,
                certified,
                recounted,
            });
        }
    }
    if payload.ballots_root.as_slice() != r.root.as_slice() {
        out.violations.push(TallyMismatch::RootDiffers {
            sequence,
            nep,
            replica,
            certified: hex::encode(&payload.ballots_root),
            recomputed: hex::encode(r.root),
        });
    }
}

#[cfg(test)]
mod tests {
    use neuroshard_governance::VoteChoice::{No, Yes};

    use super::*;
    use crate::history::Event;
    use crate::testing::{certified_run, final_view};

    #[test]
    fn a_certificate_matching_the_ballots_passes() {
        let run = certified_run();
        let c = check(&run);
        assert_eq!(c.violations, vec![]);
        assert!(c.checked >= 2, "{c:?}");
    }

    #[test]
    fn flags_a_final_view_whose_ballots_differ_from_the_certificate() {
        let mut run = certified_run();
        // Replace every final with one that lost a yes ballot.
        let nep = run
            .finals()
            .next()
            .map(|f| f.nep)
            .expect("the run records finals");
        run.events.retain(|e| !matches!(e, Event::Final(_)));
        run.events
            .push(Event::Final(final_view(0, nep.0, Some(99), &[(2, No, 7)])));
        let c = check(&run);
        assert!(
            c.violations
                .iter()
                .any(|v| matches!(v, TallyMismatch::TallyDiffers { field: "yes", .. })),
            "{:?}",
            c.violations
        );
        assert!(c
            .violations
            .iter()
            .any(|v| matches!(v, TallyMismatch::RootDiffers { .. })));
    }

    #[test]
    fn flags_a_recorded_tally_that_is_not_the_sum_of_its_ballots() {
        let mut f = final_view(0, 1, Some(10), &[(1, Yes, 100)]);
        if let Some(t) = f.tally.as_mut() {
            t.yes = 150;
        }
        let h = History {
            header: crate::testing::header(),
            events: vec![Event::Final(f)],
        };
        assert!(matches!(
            &check(&h).violations[..],
            [TallyMismatch::FinalTallyNotRecount {
                field: "yes",
                recorded: 150,
                recounted: 100,
                ..
            }]
        ));
    }

    #[test]
    fn flags_two_ballots_of_one_account() {
        let f = final_view(0, 1, Some(10), &[(1, Yes, 100), (1, No, 100)]);
        let h = History {
            header: crate::testing::header(),
            events: vec![Event::Final(f)],
        };
        assert!(matches!(
            &check(&h).violations[..],
            [TallyMismatch::DuplicateBallot { .. }]
        ));
    }
}
