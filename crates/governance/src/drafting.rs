//! Drafts and submission: CreateDraft, AmendDraft, Submit (fee burn),
//! Withdraw (DESIGN §4).

use std::collections::BTreeSet;

use crate::error::GovError;
use crate::limits::{MAX_OPEN_DRAFTS_PER_AUTHOR, MAX_OPEN_PROPOSALS};
use crate::nep::NepContent;
use crate::proposal::{Proposal, Stage};
use crate::receipt::Effect;
use crate::state::GovernanceState;
use crate::types::{AccountId, NepId};
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
        validate_content(content, &self.params.gov())?;
        let id = NepId(self.next_nep);
        let content_hash = content.content_hash();
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
            },
        );
        self.next_nep += 1;
        *self.open_drafts.entry(author).or_insert(0) += 1;
        self.open_proposals += 1;
        Ok(Effect::DraftCreated {
            nep: id,
            content_hash,
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
        validate_content(content, &self.params.gov())?;
        let content_hash = content.content_hash();
        let p = self.proposal_mut(nep);
        p.content = content.clone();
        p.content_hash = content_hash;
        Ok(Effect::DraftAmended { nep, content_hash })
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
        Ok(Effect::Withdrawn { nep })
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
