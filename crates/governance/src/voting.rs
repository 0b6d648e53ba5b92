//! Vote and re-vote (DESIGN §4). A vote counts iff its entry is applied
//! before the tick that closes the vote; after that it is refused with
//! `VotingClosed`, identically on every replica.

use crate::budget::{BALLOT_CHARGE, LOCK_CHARGE};
use crate::command::VoteChoice;
use crate::error::GovError;
use crate::proposal::Stage;
use crate::receipt::Effect;
use crate::state::GovernanceState;
use crate::tally::Ballot;
use crate::types::{AccountId, Amount, NepId};

impl GovernanceState {
    pub(crate) fn vote(
        &mut self,
        who: AccountId,
        nep: NepId,
        choice: VoteChoice,
    ) -> Result<Effect, GovError> {
        let p = self
            .proposals
            .get(&nep)
            .ok_or(GovError::UnknownNep { nep })?;
        let Some(vote) = p.open_vote() else {
            return Err(match &p.vote {
                Some(closed) if closed.closed.is_some() => GovError::VotingClosed {
                    nep,
                    deadline_ms: closed.deadline_ms,
                    committed_ms: self.committed_ms,
                },
                _ => GovError::VotingNotOpen {
                    nep,
                    stage: p.stage,
                },
            });
        };
        debug_assert!(matches!(p.stage, Stage::Voting | Stage::Active));
        let account = &self.accounts[&who];
        // Power is the stake at the snapshot, but never more than the stake
        // still held: stake added after the snapshot gives no power, and stake
        // withdrawn before voting cannot be voted with.
        let power = Amount(
            account
                .staked_at(vote.snapshot_index)
                .0
                .min(account.staked.0),
        );
        if power == Amount::ZERO {
            return Err(GovError::NoVotingPower { nep, account: who });
        }
        let first_ballot = !vote.ballots.contains_key(&who);
        if first_ballot {
            // A new ballot and the account's lock on it are growth.
            self.require_budget(BALLOT_CHARGE + LOCK_CHARGE)?;
        }
        // Only the vote changed: the proposal's other fields are not re-hashed.
        let replaced = self
            .proposals
            .get_mut_part(&nep)
            .and_then(|p| p.vote.as_mut())
            .expect("open vote exists: checked above")
            .cast(who, Ballot { choice, power });
        let account = self.account_mut(who);
        let locks = account.vote_locks.len();
        account.lock(nep, power);
        let new_locks = (account.vote_locks.len() - locks) as u64;
        if replaced.is_none() {
            self.state_bytes += BALLOT_CHARGE;
        }
        self.state_bytes += new_locks * LOCK_CHARGE;
        Ok(Effect::Voted {
            nep,
            choice,
            power,
            replaced,
        })
    }
}
