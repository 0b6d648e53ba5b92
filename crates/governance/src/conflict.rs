//! Conflict rules that guarantee every SCHEDULED change can activate
//! (DESIGN §4): compare-and-set against the registry, and no two pending
//! changes on one key.

use crate::nep::NepContent;
use crate::proposal::{RejectReason, Stage};
use crate::state::GovernanceState;
use crate::types::NepId;

impl GovernanceState {
    /// The first conflict of `content` (NEP `nep`), if any. Keys are
    /// reserved by every pending activation or revocation and by every EMERG
    /// NEP whose ratification has not ended. With `skip_normal_scheduled`
    /// (an emergency being scheduled) SCHEDULED normal NEPs do not count:
    /// they are cancelled instead.
    pub(crate) fn find_conflict(
        &self,
        nep: NepId,
        content: &NepContent,
        skip_normal_scheduled: bool,
    ) -> Option<RejectReason> {
        for change in &content.parameter_changes {
            let current = self.params.get(&change.key)?;
            if *current != change.expected_old {
                return Some(RejectReason::Conflict {
                    key: change.key.clone(),
                    with: None,
                    expected_old: change.expected_old.clone(),
                    current: current.clone(),
                });
            }
        }
        for other in self.reserving_neps() {
            if other == nep {
                continue;
            }
            let Some(p) = self.proposals.get(&other) else {
                continue;
            };
            if skip_normal_scheduled && !p.is_emergency() && p.stage == Stage::Scheduled {
                continue;
            }
            for change in &content.parameter_changes {
                if p.content.keys().any(|k| k == change.key) {
                    return Some(RejectReason::Conflict {
                        key: change.key.clone(),
                        with: Some(other),
                        expected_old: change.expected_old.clone(),
                        current: self.params.get(&change.key)?.clone(),
                    });
                }
            }
        }
        None
    }

    /// NEPs whose keys are reserved, ascending.
    pub(crate) fn reserving_neps(&self) -> Vec<NepId> {
        let mut neps: Vec<NepId> = self.effects.values().map(|e| e.nep).collect();
        neps.extend(
            self.timed
                .iter()
                .filter(|id| {
                    self.proposals
                        .get(id)
                        .is_some_and(|p| p.is_emergency() && p.stage == Stage::Active)
                })
                .copied(),
        );
        neps.sort();
        neps.dedup();
        neps
    }
}
