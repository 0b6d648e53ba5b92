//! `Tick`: committed time moves forward and every time-driven transition
//! happens (DESIGN §4).
//!
//! A tick first visits, in NEP-id order, every NEP waiting on time (REVIEW
//! end, VOTING end, emergency window, ratification end); then it applies the
//! pending activations and revocations that are due, in certificate order —
//! which is also their time order, because a newly scheduled change never
//! takes effect before an earlier scheduled one.

use crate::certificate::{CertificateKind, CertifiedChange};
use crate::issuance::Decision;
use crate::position::Position;
use crate::proposal::{RejectReason, Stage};
use crate::receipt::{Effect, Receipt, Transition};
use crate::state::{EffectKind, GovernanceState};
use crate::tally::VoteBox;
use crate::types::{AccountId, NepId, Timestamp};

impl GovernanceState {
    pub(crate) fn tick(&mut self, log_index: u64, now_ms: Timestamp) -> Receipt {
        self.committed_ms = self.committed_ms.max(now_ms);
        let mut transitions = Vec::new();
        let waiting: Vec<NepId> = self.timed.iter().copied().collect();
        for nep in waiting {
            self.advance_on_time(log_index, nep, &mut transitions);
        }
        self.apply_due_effects(log_index, &mut transitions);
        self.receipt(Position::entry(log_index), Effect::Ticked { transitions })
    }

    fn advance_on_time(&mut self, log_index: u64, nep: NepId, out: &mut Vec<Transition>) {
        let now = self.committed_ms;
        let Some(p) = self.proposals.get(&nep) else {
            return;
        };
        match p.stage {
            Stage::Review if p.review_ends_ms.is_some_and(|t| now >= t) => {
                self.open_vote(log_index, nep);
                let author = self.proposals[&nep].author;
                self.release_draft_slot(author);
                self.set_stage(nep, Stage::Voting, None, out);
            }
            Stage::Voting if p.vote.as_ref().is_some_and(|v| now >= v.deadline_ms) => {
                self.decide_vote(log_index, nep, out);
            }
            Stage::AwaitingApproval => {
                let approvals = p.approvals.len() as u32;
                let threshold = self.emergency_approvals_needed();
                if approvals >= threshold {
                    self.timed.remove(&nep);
                    self.pending_emergencies -= 1;
                    self.schedule_emergency(log_index, nep, out);
                } else if p.window_ends_ms.is_some_and(|t| now >= t) {
                    self.timed.remove(&nep);
                    self.pending_emergencies -= 1;
                    self.reject(
                        nep,
                        RejectReason::EmergencyWindowExpired {
                            approvals,
                            threshold,
                        },
                        out,
                    );
                }
            }
            Stage::Active if p.vote.as_ref().is_some_and(|v| now >= v.deadline_ms) => {
                self.decide_ratification(log_index, nep, out);
            }
            _ => {}
        }
    }

    /// Opens a stake-weighted vote on `nep` now, snapshotting at this entry.
    fn open_vote(&mut self, log_index: u64, nep: NepId) {
        let gov = self.params.gov();
        let now = self.committed_ms;
        let vote = VoteBox::new(
            log_index,
            now,
            now.plus_ms(gov.days_ms(gov.voting_days)),
            self.total_staked(),
            gov.quorum_bps,
            gov.approval_bps,
        );
        self.add_open_snapshot(log_index);
        self.proposal_mut(nep).vote = Some(vote);
    }

    /// Closes the open vote of `nep` and returns (verdict approved?, deadline).
    fn close_vote(&mut self, log_index: u64, nep: NepId) -> (bool, bool, Timestamp) {
        let vote = self
            .proposal_mut(nep)
            .vote
            .as_mut()
            .expect("a NEP in VOTING or ratification has a vote");
        let verdict = vote.close(log_index);
        let (snapshot, deadline) = (vote.snapshot_index, vote.deadline_ms);
        let voters: Vec<AccountId> = vote.ballots.keys().copied().collect();
        self.remove_open_snapshot(snapshot);
        self.release_vote_locks(nep, &voters);
        (verdict.quorum, verdict.approved, deadline)
    }

    /// The vote on `nep` closed: its voters' locks end now (and their
    /// charge is refunded), not at each voter's next command.
    fn release_vote_locks(&mut self, nep: NepId, voters: &[AccountId]) {
        let mut released = 0u64;
        for who in voters {
            if let Some(account) = self.accounts.get_mut(who) {
                if let Ok(i) = account.vote_locks.binary_search_by_key(&nep, |l| l.nep) {
                    account.vote_locks.remove(i);
                    released += 1;
                }
            }
        }
        self.recharge(released * crate::budget::LOCK_CHARGE, 0);
    }

    fn set_stage(
        &mut self,
        nep: NepId,
        to: Stage,
        certificate: Option<u64>,
        out: &mut Vec<Transition>,
    ) {
        let now = self.committed_ms;
        let p = self.proposal_mut(nep);
        let from = p.stage;
        p.set_stage(to);
        if matches!(
            to,
            Stage::Scheduled
                | Stage::Rejected
                | Stage::Ratified
                | Stage::Revoked
                | Stage::Cancelled
        ) {
            p.decided_ms = Some(now);
        }
        let emergency = p.is_emergency();
        if to.is_final(emergency) {
            self.open_proposals -= 1;
        }
        out.push(Transition {
            nep,
            from,
            to,
            certificate,
        });
    }

    fn reject(&mut self, nep: NepId, reason: RejectReason, out: &mut Vec<Transition>) {
        self.proposal_mut(nep).rejection = Some(reason);
        self.set_stage(nep, Stage::Rejected, None, out);
        self.compact(nep);
    }

    fn decide_vote(&mut self, log_index: u64, nep: NepId, out: &mut Vec<Transition>) {
        self.timed.remove(&nep);
        let (quorum, approved, deadline) = self.close_vote(log_index, nep);
        // The vote closed: the author gets the draft deposit back whatever
        // the verdict (the burned proposal fee paid for the record).
        self.refund_deposit(nep);
        if !quorum {
            return self.reject(nep, RejectReason::NoQuorum, out);
        }
        if !approved {
            return self.reject(nep, RejectReason::NotApproved, out);
        }
        let content = self.proposals[&nep].content.clone();
        if let Some(conflict) = self.find_conflict(nep, &content, false) {
            return self.reject(nep, conflict, out);
        }
        let gov = self.params.gov();
        let grace = gov.days_ms(u64::from(content.upgrade_path.grace_period_days));
        let activation = deadline.plus_ms(grace).max(self.latest_pending_effect_ms());
        self.schedule(log_index, nep, activation, out);
    }

    /// SCHEDULED with an ACTIVATION certificate and a pending effect.
    fn schedule(
        &mut self,
        log_index: u64,
        nep: NepId,
        activation: Timestamp,
        out: &mut Vec<Transition>,
    ) {
        let p = &self.proposals[&nep];
        let changes = p
            .content
            .parameter_changes
            .iter()
            .map(|c| CertifiedChange {
                key: c.key.clone(),
                old: c.expected_old.clone(),
                new: c.new.clone(),
            })
            .collect();
        let backward_compatible = p.content.upgrade_path.backward_compatible;
        let seq = self.decide_certificate(Decision {
            kind: CertificateKind::Activation,
            nep,
            log_index,
            effective_ms: activation,
            changes,
            effect: Some(EffectKind::Activate),
            bump: Some(backward_compatible),
        });
        let version_after = self.certificates[&seq].event.version_after;
        let p = self.proposal_mut(nep);
        p.activation_ms = Some(activation);
        p.version_after = Some(version_after);
        self.set_stage(nep, Stage::Scheduled, Some(seq), out);
    }

    fn schedule_emergency(&mut self, log_index: u64, nep: NepId, out: &mut Vec<Transition>) {
        let content = self.proposals[&nep].content.clone();
        if let Some(conflict) = self.find_conflict(nep, &content, true) {
            return self.reject(nep, conflict, out);
        }
        // SCHEDULED normal NEPs on the same keys are cancelled, in id order,
        // before the emergency is scheduled (so its activation time does not
        // wait for a change that will never happen).
        let mut cancelled: Vec<(u64, NepId)> = self
            .effects
            .iter()
            .filter(|(_, e)| e.kind == EffectKind::Activate)
            .filter_map(|(seq, e)| {
                let other = &self.proposals[&e.nep];
                let overlaps = !other.is_emergency()
                    && other
                        .content
                        .keys()
                        .any(|k| content.keys().any(|mine| mine == k));
                overlaps.then_some((*seq, e.nep))
            })
            .collect();
        cancelled.sort_by_key(|(_, id)| *id);
        for (seq, victim) in cancelled {
            let effect = self.effects.remove(&seq).expect("effect listed above");
            let changes = self.proposals[&victim]
                .content
                .parameter_changes
                .iter()
                .map(|c| CertifiedChange {
                    key: c.key.clone(),
                    old: c.expected_old.clone(),
                    new: c.new.clone(),
                })
                .collect();
            let cert = self.decide_certificate(Decision {
                kind: CertificateKind::Cancellation,
                nep: victim,
                log_index,
                effective_ms: effect.effective_ms,
                changes,
                effect: None,
                bump: None,
            });
            self.set_stage(victim, Stage::Cancelled, Some(cert), out);
        }
        let gov = self.params.gov();
        let grace = gov.days_ms(u64::from(content.upgrade_path.grace_period_days));
        let activation = self
            .committed_ms
            .plus_ms(grace)
            .max(self.latest_pending_effect_ms());
        self.schedule(log_index, nep, activation, out);
    }

    fn decide_ratification(&mut self, log_index: u64, nep: NepId, out: &mut Vec<Transition>) {
        self.timed.remove(&nep);
        let (_, approved, _) = self.close_vote(log_index, nep);
        if approved {
            return self.set_stage(nep, Stage::Ratified, None, out);
        }
        let p = &self.proposals[&nep];
        let changes = p
            .previous_values
            .iter()
            .map(|(key, old_value)| CertifiedChange {
                key: key.clone(),
                old: self
                    .params
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| old_value.clone()),
                new: old_value.clone(),
            })
            .collect();
        let backward_compatible = p.content.upgrade_path.backward_compatible;
        let effective = self.committed_ms.max(self.latest_pending_effect_ms());
        let seq = self.decide_certificate(Decision {
            kind: CertificateKind::Revocation,
            nep,
            log_index,
            effective_ms: effective,
            changes,
            effect: Some(EffectKind::Revoke),
            bump: Some(backward_compatible),
        });
        self.set_stage(nep, Stage::Revoked, Some(seq), out);
    }

    /// Applies every pending effect due now, in certificate order.
    fn apply_due_effects(&mut self, log_index: u64, out: &mut Vec<Transition>) {
        while let Some((&seq, &effect)) = self.effects.iter().next() {
            if effect.effective_ms > self.committed_ms {
                break;
            }
            self.effects.remove(&seq);
            match effect.kind {
                EffectKind::Activate => self.activate(log_index, effect.nep, out),
                EffectKind::Revoke => self.revert(effect.nep),
            }
            self.version = effect.version_after;
        }
    }

    /// SCHEDULED → ACTIVE: compare-and-set every change, atomically.
    fn activate(&mut self, log_index: u64, nep: NepId, out: &mut Vec<Transition>) {
        let p = &self.proposals[&nep];
        let changes = p.content.parameter_changes.clone();
        let emergency = p.is_emergency();
        let mut previous = Vec::with_capacity(changes.len());
        for c in &changes {
            let current = self.params.get(&c.key).cloned();
            // The conflict rules reserve a scheduled NEP's keys until it
            // activates, so the compare-and-set cannot fail here.
            assert_eq!(
                current.as_ref(),
                Some(&c.expected_old),
                "invariant: {nep} activates {} but the registry holds {current:?}",
                c.key
            );
            previous.push((c.key.clone(), c.expected_old.clone()));
        }
        for c in &changes {
            self.params
                .set(&c.key, c.new.clone())
                .expect("invariant: scheduled values were schema-checked");
        }
        if emergency {
            self.proposal_mut(nep).previous_values = previous;
            self.open_vote(log_index, nep);
            self.timed.insert(nep);
        }
        self.set_stage(nep, Stage::Active, None, out);
    }

    /// A revoked emergency's keys return to their values before it.
    fn revert(&mut self, nep: NepId) {
        let p = &self.proposals[&nep];
        let restore = p.previous_values.clone();
        for c in &p.content.parameter_changes {
            assert_eq!(
                self.params.get(&c.key),
                Some(&c.new),
                "invariant: revoking {nep} but {} was changed by someone else",
                c.key
            );
        }
        for (key, value) in restore {
            self.params
                .set(&key, value)
                .expect("invariant: restored values were valid before");
        }
    }
}
