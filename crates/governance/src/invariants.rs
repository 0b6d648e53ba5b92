//! Invariants checked after every applied entry. A violation is a bug in the
//! rules, never a user error, so `apply` panics on it; a snapshot that breaks
//! one is refused.
//!
//! * Conservation: balances + staked + deposits + burned = genesis supply,
//!   and deposits are held by proposals exactly as accounts record them.
//! * The state budget's running charge equals the recount of every record.
//! * Tallies: no vote counts more power than its snapshot total.
//! * Stages only move forward: enforced where they change
//!   (`Proposal::set_stage`), and bookkeeping counters match the stages.
//! * The maintained state hash (and every cached digest and ballots root
//!   under it) equals its recomputation from the whole state: checked after
//!   every applied batch in debug builds while the state is small enough
//!   for that to be cheap (`HASH_CHECK_MAX_RECORDS`).

use crate::proposal::Stage;
use crate::state::GovernanceState;

/// Largest state (accounts, proposals, certificates and ballots) whose
/// hash debug builds recompute after every applied batch.
const HASH_CHECK_MAX_RECORDS: usize = 20_000;

impl GovernanceState {
    /// Debug builds: panics if the maintained state hash differs from its
    /// recomputation (`recompute_state_hash`), for states small enough.
    pub(crate) fn assert_hash_caches(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let mut records = self.accounts.len() + self.proposals.len() + self.certificates.len();
        for p in self.proposals.values() {
            records += p.vote.as_ref().map_or(0, |v| v.ballots.len());
        }
        if records <= HASH_CHECK_MAX_RECORDS {
            assert_eq!(
                self.state_hash(),
                self.recompute_state_hash(),
                "invariant: the maintained state hash differs from its recomputation"
            );
        }
    }

    /// Panics if an invariant is broken. The O(1) conservation check runs
    /// always; the full recount over every account and proposal runs in
    /// debug builds (tests, property tests), where states are small.
    pub(crate) fn assert_invariants(&self) {
        let s = &self.supply;
        assert_eq!(
            u128::from(s.balances)
                + u128::from(s.staked)
                + u128::from(s.deposits)
                + u128::from(s.burned),
            u128::from(s.genesis),
            "invariant: NEURO conservation broken: {s:?}"
        );
        if cfg!(debug_assertions) {
            if let Err(e) = self.check_invariants() {
                panic!("invariant: {e}");
            }
        }
    }

    /// Full check, returning the first violation.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let s = &self.supply;
        if u128::from(s.balances)
            + u128::from(s.staked)
            + u128::from(s.deposits)
            + u128::from(s.burned)
            != u128::from(s.genesis)
        {
            return Err(format!("NEURO conservation broken: {s:?}"));
        }
        let (mut balances, mut staked, mut deposited) = (0u128, 0u128, 0u128);
        for a in self.accounts.values() {
            balances += u128::from(a.balance.0);
            staked += u128::from(a.staked.0);
            deposited += u128::from(a.deposited.0);
        }
        if balances != u128::from(s.balances)
            || staked != u128::from(s.staked)
            || deposited != u128::from(s.deposits)
        {
            return Err(format!(
                "account sums (balances {balances}, staked {staked}, deposited {deposited}) differ from the supply record {s:?}"
            ));
        }
        // Vote locks end when their vote closes (`tick::release_vote_locks`):
        // every lock names an open vote on which its account has a ballot.
        for (who, a) in &self.accounts {
            for l in &a.vote_locks {
                let counted = self
                    .proposals
                    .get(&l.nep)
                    .and_then(|p| p.open_vote())
                    .is_some_and(|v| v.ballots.contains_key(who));
                if !counted {
                    return Err(format!(
                        "{who} holds a lock on {} without a ballot in an open vote",
                        l.nep
                    ));
                }
            }
        }
        let held: u128 = self
            .proposals
            .values()
            .map(|p| u128::from(p.deposit.0))
            .sum();
        if held != deposited {
            return Err(format!(
                "proposals hold {held} in deposits but accounts record {deposited}"
            ));
        }
        let recount = self.recount_state_bytes();
        if recount != self.state_bytes {
            return Err(format!(
                "state_bytes is {} but the records are charged {recount}",
                self.state_bytes
            ));
        }
        let mut open = 0u32;
        let mut pending_emergencies = 0u32;
        for p in self.proposals.values() {
            if let Some(v) = &p.vote {
                let t = &v.tally;
                if t.participating() > t.total_power {
                    return Err(format!(
                        "{} tally {} exceeds snapshot power {}",
                        p.id,
                        t.participating(),
                        t.total_power
                    ));
                }
                let sum: u128 = v.ballots.values().map(|b| u128::from(b.power.0)).sum();
                if sum != t.participating() {
                    return Err(format!(
                        "{} tally {} differs from its ballots {sum}",
                        p.id,
                        t.participating()
                    ));
                }
            }
            if !p.stage.is_final(p.is_emergency()) {
                open += 1;
            }
            if p.stage == Stage::AwaitingApproval {
                pending_emergencies += 1;
            }
        }
        if open != self.open_proposals {
            return Err(format!(
                "{open} open proposals but the counter says {}",
                self.open_proposals
            ));
        }
        if pending_emergencies != self.pending_emergencies {
            return Err(format!(
                "{pending_emergencies} emergencies await approval but the counter says {}",
                self.pending_emergencies
            ));
        }
        // Certificate sequence numbers are gap-free from 1 and chained.
        let mut previous = [0u8; 32];
        for (i, (seq, r)) in self.certificates.iter().enumerate() {
            if *seq != i as u64 + 1
                || r.event.sequence != *seq
                || r.event.previous_payload_hash != previous
            {
                return Err(format!("certificate chain broken at sequence {seq}"));
            }
            previous = r.payload_hash;
        }
        // Internal references point at records that exist, in a fitting stage.
        for (seq, e) in &self.effects {
            let fits = self.proposals.get(&e.nep).is_some_and(|p| match e.kind {
                crate::state::EffectKind::Activate => p.stage == Stage::Scheduled,
                crate::state::EffectKind::Revoke => p.stage == Stage::Revoked,
            });
            if !fits || !self.certificates.contains_key(seq) {
                return Err(format!(
                    "pending effect {seq} refers to {} in the wrong stage",
                    e.nep
                ));
            }
        }
        // The pending effects apply, in certificate order, as `tick` will
        // apply them: every compare-and-set holds and every value fits its
        // schema (`tick::activate` and `revert` assert both). Found by
        // fuzzing: a snapshot whose scheduled NEP expected another value
        // passed every check above, then stopped the replica at activation.
        let mut params = self.params.clone();
        for (seq, e) in &self.effects {
            let Some(p) = self.proposals.get(&e.nep) else {
                continue; // refused above
            };
            let changes = &p.content.parameter_changes;
            let expected = |c: &crate::nep::ParameterChange| match e.kind {
                crate::state::EffectKind::Activate => c.expected_old.clone(),
                crate::state::EffectKind::Revoke => c.new.clone(),
            };
            for c in changes {
                if params.get(&c.key) != Some(&expected(c)) {
                    return Err(format!(
                        "pending effect {seq} of {} expects {} = {:?} but the registry will hold {:?}",
                        e.nep,
                        c.key,
                        expected(c),
                        params.get(&c.key)
                    ));
                }
            }
            let after: Vec<(String, crate::params::ParamValue)> = match e.kind {
                crate::state::EffectKind::Activate => changes
                    .iter()
                    .map(|c| (c.key.clone(), c.new.clone()))
                    .collect(),
                crate::state::EffectKind::Revoke => p.previous_values.clone(),
            };
            for (key, value) in after {
                params
                    .set(&key, value)
                    .map_err(|err| format!("pending effect {seq} of {}: {err}", e.nep))?;
            }
        }
        for nep in &self.timed {
            let fits = self.proposals.get(nep).is_some_and(|p| {
                matches!(
                    p.stage,
                    Stage::Review | Stage::Voting | Stage::AwaitingApproval
                ) || (p.stage == Stage::Active && p.is_emergency())
            });
            if !fits {
                return Err(format!("{nep} waits on time but is not in a timed stage"));
            }
        }
        for p in self.proposals.values() {
            let votes_open = p.open_vote().is_some();
            if votes_open != p.vote.as_ref().is_some_and(|v| v.closed.is_none()) {
                return Err(format!(
                    "{} is {} but its vote's open/closed state disagrees",
                    p.id, p.stage
                ));
            }
            if p.id.0 >= self.next_nep || !self.accounts.contains_key(&p.author) {
                return Err(format!(
                    "{} has an id or author the state does not know",
                    p.id
                ));
            }
        }
        self.params.validate().map_err(|e| e.to_string())?;
        Ok(())
    }
}
