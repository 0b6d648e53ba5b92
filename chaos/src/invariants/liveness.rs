//! Liveness: every fault is healed, and after the last heal every NEP
//! settles (its vote or approval window decided) and every certificate it
//! decided is issued within the header's `liveness_bound_ms`.
//!
//! The clock is the history's: `time_ms` of events, compared with committed
//! times (deadlines, decision times). In the model and the simulation both
//! are the same simulated clock; on real processes the harness clock is
//! wall time and the bound must absorb the clock-skew faults it injects.

use std::collections::{BTreeMap, BTreeSet};

use neuroshard_certificate::decode_payload;
use neuroshard_governance::{NepId, Stage};

use crate::history::{is_settled, Event, History};

use super::Checked;

pub const NAME: &str = "liveness";
pub const CLAIM: &str =
    "after the last heal every NEP settles and its certificates issue within the bound";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stall {
    #[error("fault {id} ({fault}) injected at {since_ms} was never healed")]
    Unhealed {
        id: u32,
        fault: String,
        since_ms: u64,
    },
    #[error("{nep} was voted on but no replica recorded a final view of it")]
    NoFinal { nep: NepId },
    #[error("{nep} is still {stage} on replica {replica} at {observed_ms}; it was due to settle by {due_ms}")]
    NotSettled {
        nep: NepId,
        replica: u32,
        stage: Stage,
        observed_ms: u64,
        due_ms: u64,
    },
    #[error("{nep} settled on replica {replica} at {settled_ms}, after the bound ({due_ms})")]
    SettledLate {
        nep: NepId,
        replica: u32,
        settled_ms: u64,
        due_ms: u64,
    },
    #[error("certificate {sequence} ({nep}) was decided but never issued")]
    CertificateMissing { sequence: u64, nep: NepId },
    #[error("certificate {sequence} was issued at {issued_ms}, after the bound ({due_ms})")]
    CertificateLate {
        sequence: u64,
        issued_ms: u64,
        due_ms: u64,
    },
}

pub fn check(h: &History) -> Checked<Stall> {
    let mut out = Checked::default();
    let bound = h.header.liveness_bound_ms;
    let mut open: BTreeMap<u32, (&str, u64)> = BTreeMap::new();
    for e in &h.events {
        match e {
            Event::Fault(f) => {
                open.insert(f.id, (f.fault.as_str(), f.time_ms));
            }
            Event::Heal(x) => {
                open.remove(&x.id);
            }
            _ => {}
        }
    }
    for (id, (fault, since_ms)) in open {
        out.violations.push(Stall::Unhealed {
            id,
            fault: fault.to_owned(),
            since_ms,
        });
    }
    let healed = h.last_heal_ms().unwrap_or(h.header.started_ms);

    let finals = h.finals_by_nep();
    let voted: BTreeSet<NepId> = h
        .invokes()
        .filter(|i| i.command.is_vote())
        .filter_map(|i| i.command.nep)
        .collect();
    for nep in voted.iter().filter(|n| !finals.contains_key(n)) {
        out.violations.push(Stall::NoFinal { nep: *nep });
    }

    let issued: BTreeMap<u64, (u64, Option<u64>)> = h
        .certificates()
        .map(|c| {
            let decided = decode_payload(&c.envelope.payload)
                .ok()
                .map(|p| p.decision_time_ms);
            (c.sequence, (c.time_ms, decided))
        })
        .collect();
    let mut certificates_seen = BTreeSet::new();
    for (nep, views) in &finals {
        for f in views {
            out.checked += 1;
            let due_ms = healed.max(f.deadline_ms.unwrap_or(0)).saturating_add(bound);
            if !is_settled(f.stage, f.emergency) {
                out.violations.push(Stall::NotSettled {
                    nep: *nep,
                    replica: f.replica,
                    stage: f.stage,
                    observed_ms: f.time_ms,
                    due_ms,
                });
                continue;
            }
            let settled_ms = f.settled_ms.unwrap_or(f.time_ms);
            if settled_ms > due_ms {
                out.violations.push(Stall::SettledLate {
                    nep: *nep,
                    replica: f.replica,
                    settled_ms,
                    due_ms,
                });
            }
            for seq in &f.certificates {
                if !certificates_seen.insert(*seq) {
                    continue;
                }
                out.checked += 1;
                match issued.get(seq) {
                    None => out.violations.push(Stall::CertificateMissing {
                        sequence: *seq,
                        nep: *nep,
                    }),
                    Some((issued_ms, decided_ms)) => {
                        let due_ms = healed.max(decided_ms.unwrap_or(0)).saturating_add(bound);
                        if *issued_ms > due_ms {
                            out.violations.push(Stall::CertificateLate {
                                sequence: *seq,
                                issued_ms: *issued_ms,
                                due_ms,
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Fault, Heal};
    use crate::testing::{certified_run, final_view, header};

    #[test]
    fn a_settled_run_with_its_certificate_passes() {
        let c = check(&certified_run());
        assert_eq!(c.violations, vec![]);
        assert!(c.checked > 0);
    }

    #[test]
    fn flags_an_unhealed_fault_and_a_nep_still_voting() {
        let mut f = final_view(0, 1, None, &[]);
        f.stage = Stage::Voting;
        let h = History {
            header: header(),
            events: vec![
                Event::Fault(Fault {
                    time_ms: 5,
                    id: 1,
                    fault: "partition".to_owned(),
                    targets: vec![0],
                    detail: String::new(),
                }),
                Event::Final(f),
            ],
        };
        let v = check(&h).violations;
        assert!(v.iter().any(|v| matches!(v, Stall::Unhealed { id: 1, .. })));
        assert!(v.iter().any(|v| matches!(
            v,
            Stall::NotSettled {
                stage: Stage::Voting,
                ..
            }
        )));
    }

    #[test]
    fn flags_a_nep_that_settles_after_the_bound_past_the_last_heal() {
        let bound = header().liveness_bound_ms;
        let mut f = final_view(0, 1, Some(3), &[]);
        f.deadline_ms = Some(0);
        f.settled_ms = Some(1_000 + bound + 1);
        let h = History {
            header: header(),
            events: vec![
                Event::Fault(Fault {
                    time_ms: 500,
                    id: 7,
                    fault: "log_stall".to_owned(),
                    targets: vec![],
                    detail: String::new(),
                }),
                Event::Heal(Heal {
                    time_ms: 1_000,
                    id: 7,
                    detail: String::new(),
                }),
                Event::Final(f),
            ],
        };
        assert!(matches!(
            &check(&h).violations[..],
            [Stall::SettledLate { due_ms, .. }] if *due_ms == 1_000 + bound
        ));
    }

    #[test]
    fn flags_a_decided_certificate_that_was_never_issued() {
        let mut h = certified_run();
        h.events.retain(|e| !matches!(e, Event::Certificate(_)));
        assert!(check(&h)
            .violations
            .iter()
            .any(|v| matches!(v, Stall::CertificateMissing { sequence: 1, .. })));
    }
}
