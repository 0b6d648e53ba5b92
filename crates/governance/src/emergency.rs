//! The emergency track: a committee validator submits an EMERG NEP with its
//! identity key (no stake, no fee); a Byzantine quorum of the n validators
//! (`quorum::byzantine_quorum`: ⌊(n + f)/2⌋ + 1, = 2f+1 of n = 3f+1)
//! approves it with `EmergencyApprove` within `gov.emergency_window_days`
//! (DESIGN §4).

use std::collections::BTreeSet;

use crate::error::GovError;
use crate::limits::MAX_PENDING_EMERGENCIES;
use crate::nep::NepContent;
use crate::proposal::{Proposal, Stage};
use crate::receipt::Effect;
use crate::state::GovernanceState;
use crate::types::{AccountId, NepId};
use crate::validation::validate_content;

impl GovernanceState {
    fn validator_index(&self, who: AccountId) -> Result<u32, GovError> {
        self.validators
            .get(&who)
            .copied()
            .ok_or(GovError::NotValidator { account: who })
    }

    /// Approvals an emergency needs: the Byzantine quorum of this
    /// committee, the same count as the certificate threshold t + 1 (n = 3
    /// → 2, n = 4 → 3, n = 5 → 4).
    pub fn emergency_approvals_needed(&self) -> u32 {
        // At most MAX_VALIDATORS (genesis refuses more).
        crate::quorum::byzantine_quorum(self.validators.len() as u32)
    }

    pub(crate) fn submit_emergency(
        &mut self,
        author: AccountId,
        content: &NepContent,
    ) -> Result<Effect, GovError> {
        self.validator_index(author)?;
        if !content.nep_type.is_emergency() {
            return Err(GovError::NotEmergency {
                nep_type: content.nep_type,
            });
        }
        if self.pending_emergencies as usize >= MAX_PENDING_EMERGENCIES {
            return Err(GovError::TooManyPendingEmergencies {
                open: self.pending_emergencies as usize,
                max: MAX_PENDING_EMERGENCIES,
            });
        }
        self.require_open_capacity()?;
        let gov = self.params.gov();
        validate_content(content, &gov)?;
        // Charged but never refused by the budget: with at most
        // MAX_PENDING_EMERGENCIES from committee keys, this is how the
        // committee raises a full budget or the prices of growth.
        let charge = crate::budget::PROPOSAL_CHARGE
            + crate::budget::EMERGENCY_EXTRA_CHARGE
            + self.content_charge(content);
        self.state_bytes += charge;
        let id = NepId(self.next_nep);
        let now = self.committed_ms;
        let window_ends_ms = now.plus_ms(gov.days_ms(gov.emergency_window_days));
        self.proposals.insert(
            id,
            Proposal {
                id,
                author,
                content: content.clone(),
                content_hash: content.content_hash(),
                stage: Stage::AwaitingApproval,
                created_ms: now,
                submitted_ms: Some(now),
                review_ends_ms: None,
                vote: None,
                approvals: BTreeSet::new(),
                window_ends_ms: Some(window_ends_ms),
                decided_ms: None,
                activation_ms: None,
                version_after: None,
                previous_values: Vec::new(),
                rejection: None,
                certificates: Vec::new(),
                deposit: crate::types::Amount::ZERO,
                compacted: false,
                core_digest: Default::default(),
            },
        );
        self.next_nep += 1;
        self.open_proposals += 1;
        self.pending_emergencies += 1;
        self.timed.insert(id);
        Ok(Effect::EmergencySubmitted {
            nep: id,
            window_ends_ms,
        })
    }

    pub(crate) fn emergency_approve(
        &mut self,
        who: AccountId,
        nep: NepId,
    ) -> Result<Effect, GovError> {
        let validator = self.validator_index(who)?;
        let threshold = self.emergency_approvals_needed();
        let p = self
            .proposals
            .get(&nep)
            .ok_or(GovError::UnknownNep { nep })?;
        if !p.is_emergency() {
            return Err(GovError::NotEmergency {
                nep_type: p.content.nep_type,
            });
        }
        if p.stage != Stage::AwaitingApproval {
            // An approval applied after the tick that closed the window.
            if p.stage == Stage::Rejected {
                if let Some(deadline_ms) = p.window_ends_ms {
                    return Err(GovError::EmergencyWindowClosed {
                        nep,
                        deadline_ms,
                        committed_ms: self.committed_ms,
                    });
                }
            }
            return Err(GovError::WrongStage {
                nep,
                stage: p.stage,
                expected: "AWAITING_APPROVAL".to_owned(),
            });
        }
        if p.approvals.contains(&validator) {
            return Err(GovError::AlreadyApproved { nep, validator });
        }
        let p = self.proposal_mut(nep);
        p.approvals.insert(validator);
        Ok(Effect::EmergencyApproved {
            nep,
            validator,
            approvals: p.approvals.len() as u32,
            threshold,
        })
    }
}
