//! Drafts and submission: CreateDraft, AmendDraft, Submit (fee burn),
//! Withdraw (DESIGN §4).

use std::collections::BTreeSet;

use crate::budget::{draft_deposit, PROPOSAL_CHARGE};
use crate::error::GovError;
use crate::limits::{MAX_OPEN_DRAFTS_PER_AUTHOR, MAX_OPEN_PROPOSALS};
use crate::nep::NepContent;
use crate::proposal::{Proposal, Stage};
use crate::receipt::Effect;
use crate::state::GovernanceState;
use crate::types::{AccountId, Amount, NepId};
use crate::validation::validate_content;

impl GovernanceState {
    /// The proposer stake rule, checked at draft creation and at submission.
    fn require_proposer_stake(&self, author: AccountId) -> Result<(), GovError> {
        let needed = self.params.gov().min_proposer_stake;
        let staked = self.accounts[&author].staked;
        if staked < needed {
            return Err(GovError::InsufficientStake {
                account: author,
                needed,
                staked,
            });
        }
        Ok(())
    }

    pub(crate) fn require_open_capacity(&self) -> Result<(), GovError> {
        if self.open_proposals as usize >= MAX_OPEN_PROPOSALS {
            return Err(GovError::TooManyOpenProposals {
                open: self.open_proposals as usize,
                max: MAX_OPEN_PROPOSALS,
            });
        }
        Ok(())
    }

    /// A proposal the caller authored, in one of `stages`.
    fn authored(
        &self,
        author: AccountId,
        nep: NepId,
        stages: &[Stage],
        expected: &str,
    ) -> Result<&Proposal, GovError> {
        let p = self
            .proposals
            .get(&nep)
            .ok_or(GovError::UnknownNep { nep })?;
        if p.author != author {
            return Err(GovError::NotAuthor {
                nep,
                account: author,
            });
        }
        if !stages.contains(&p.stage) {
            return Err(GovError::WrongStage {
                nep,
                stage: p.stage,
                expected: expected.to_owned(),
            });
        }
        Ok(p)
    }

    pub(crate) fn create_draft(
        &mut self,
        author: AccountId,
        content: &NepContent,
    ) -> Result<Effect, GovError> {
        if content.nep_type.is_emergency() {
            return Err(GovError::EmergencyNotDraftable);
        }
        self.require_proposer_stake(author)?;
        let open = self.open_drafts.get(&author).copied().unwrap_or(0) as usize;
        if open >= MAX_OPEN_DRAFTS_PER_AUTHOR {
            return Err(GovError::TooManyOpenDrafts {
                account: author,
                open,
                max: MAX_OPEN_DRAFTS_PER_AUTHOR,
            });
        }
        self.require_open_capacity()?;
        let gov = self.params.gov();
        validate_content(content, &gov)?;
        let deposit = draft_deposit(content, gov.draft_deposit_base, gov.draft_deposit_per_kib);
        self.require_balance(author, deposit)?;
        let charge = PROPOSAL_CHARGE + self.content_charge(content);
        self.require_growth_budget(charge)?;
        let id = NepId(self.next_nep);
        let content_hash = content.content_hash();
        self.lock_deposit(author, deposit);
        self.state_bytes += charge;
        self.proposals.insert(
            id,
            Proposal {
                id,
                author,
                content: content.clone(),
                content_hash,
                stage: Stage::Draft,
                created_ms: self.committed_ms,
                submitted_ms: None,
                review_ends_ms: None,
                vote: None,
                approvals: BTreeSet::new(),
                window_ends_ms: None,
                decided_ms: None,
                activation_ms: None,
                version_after: None,
                previous_values: Vec::new(),
                rejection: None,
                certificates: Vec::new(),
                deposit,
                compacted: false,
                core_digest: Default::default(),
            },
        );
        self.next_nep += 1;
        *self.open_drafts.entry(author).or_insert(0) += 1;
        self.open_proposals += 1;
        Ok(Effect::DraftCreated {
            nep: id,
            content_hash,
            deposit,
        })
    }

    pub(crate) fn amend_draft(
        &mut self,
        author: AccountId,
        nep: NepId,
        content: &NepContent,
    ) -> Result<Effect, GovError> {
        self.authored(author, nep, &[Stage::Draft], "DRAFT")?;
        if content.nep_type.is_emergency() {
            return Err(GovError::EmergencyNotDraftable);
        }
        let gov = self.params.gov();
        validate_content(content, &gov)?;
        let deposit = draft_deposit(content, gov.draft_deposit_base, gov.draft_deposit_per_kib);
        let p = &self.proposals[&nep];
        let (old_deposit, old_charge) = (p.deposit, self.content_charge(&p.content));
        let new_charge = self.content_charge(content);
        if deposit > old_deposit {
            self.require_balance(author, Amount(deposit.0 - old_deposit.0))?;
        }
        self.require_growth_budget(new_charge.saturating_sub(old_charge))?;
        // Release the old deposit and lock the new one: the difference moves.
        self.release_deposit(author, old_deposit);
        self.lock_deposit(author, deposit);
        self.recharge(old_charge, new_charge);
        let content_hash = content.content_hash();
        let p = self.proposal_mut(nep);
        p.content = content.clone();
        p.content_hash = content_hash;
        p.deposit = deposit;
        Ok(Effect::DraftAmended {
            nep,
            content_hash,
            deposit,
        })
    }

    pub(crate) fn submit(&mut self, author: AccountId, nep: NepId) -> Result<Effect, GovError> {
        let p = self.authored(author, nep, &[Stage::Draft], "DRAFT")?;
        // Parameters may have changed since the draft was written.
        validate_content(&p.content, &self.params.gov())?;
        self.require_proposer_stake(author)?;
        let gov = self.params.gov();
        let fee = gov.proposal_fee;
        let account = &self.accounts[&author];
        if account.balance < fee {
            return Err(GovError::InsufficientBalance {
                account: author,
                needed: fee,
                available: account.balance,
            });
        }
        let review_ends_ms = self.committed_ms.plus_ms(gov.days_ms(gov.review_days));
        self.account_mut(author).balance.0 -= fee.0;
        self.supply.balances -= fee.0;
        self.supply.burned += fee.0;
        let now = self.committed_ms;
        let p = self.proposal_mut(nep);
        p.set_stage(Stage::Review);
        p.submitted_ms = Some(now);
        p.review_ends_ms = Some(review_ends_ms);
        self.timed.insert(nep);
        Ok(Effect::Submitted {
            nep,
            fee_burned: fee,
            review_ends_ms,
        })
    }

    pub(crate) fn withdraw(&mut self, author: AccountId, nep: NepId) -> Result<Effect, GovError> {
        self.authored(
            author,
            nep,
            &[Stage::Draft, Stage::Review],
            "DRAFT or REVIEW",
        )?;
        self.proposal_mut(nep).set_stage(Stage::Withdrawn);
        self.timed.remove(&nep);
        self.release_draft_slot(author);
        self.open_proposals -= 1;
        // Withdrawing burns the deposit: every record that stays in the state
        // for good has cost its author at least `econ.draft_deposit_base`.
        let deposit = std::mem::take(&mut self.proposal_mut(nep).deposit);
        self.account_mut(author).deposited.0 -= deposit.0;
        self.supply.deposits -= deposit.0;
        self.supply.burned += deposit.0;
        self.compact(nep);
        Ok(Effect::Withdrawn {
            nep,
            deposit_burned: deposit,
        })
    }

    /// Refunds a NEP's deposit to its author (its vote closed).
    pub(crate) fn refund_deposit(&mut self, nep: NepId) {
        let p = self.proposal_mut(nep);
        let author = p.author;
        let deposit = std::mem::take(&mut p.deposit);
        self.release_deposit(author, deposit);
    }

    fn require_balance(&self, who: AccountId, needed: Amount) -> Result<(), GovError> {
        let available = self.accounts[&who].balance;
        if available < needed {
            return Err(GovError::InsufficientBalance {
                account: who,
                needed,
                available,
            });
        }
        Ok(())
    }

    /// Balance → deposits (the caller checked the balance).
    fn lock_deposit(&mut self, who: AccountId, amount: Amount) {
        let a = self.account_mut(who);
        a.balance.0 -= amount.0;
        a.deposited.0 += amount.0;
        self.supply.balances -= amount.0;
        self.supply.deposits += amount.0;
    }

    /// Deposits → balance.
    fn release_deposit(&mut self, who: AccountId, amount: Amount) {
        let a = self.account_mut(who);
        a.deposited.0 -= amount.0;
        a.balance.0 += amount.0;
        self.supply.deposits -= amount.0;
        self.supply.balances += amount.0;
    }

    /// Drops a WITHDRAWN or REJECTED NEP's content text and parameter
    /// changes, keeping its hash, title, type, stage, times and vote (tally
    /// and ballots: a voter can still prove its ballot was counted), and
    /// refunds the content's charge.
    pub(crate) fn compact(&mut self, nep: NepId) {
        let before = self.proposal_charge(&self.proposals[&nep]);
        let p = self.proposal_mut(nep);
        let c = &mut p.content;
        c.motivation = String::new();
        c.specification = String::new();
        c.parameter_changes = Vec::new();
        c.economic_impact.summary = String::new();
        p.compacted = true;
        let after = self.proposal_charge(&self.proposals[&nep]);
        self.recharge(before, after);
    }

    pub(crate) fn release_draft_slot(&mut self, author: AccountId) {
        if let Some(n) = self.open_drafts.get_mut(&author) {
            *n -= 1;
            if *n == 0 {
                self.open_drafts.remove(&author);
            }
        }
    }

    pub(crate) fn proposal_mut(&mut self, nep: NepId) -> &mut Proposal {
        self.proposals
            .get_mut(&nep)
            .expect("proposal exists: every caller checked it first")
    }
}
