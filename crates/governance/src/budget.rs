//! The state budget: every record the state keeps is charged a fixed,
//! deterministic number of bytes when it is created or grows, and refunded
//! when it is compacted or shrinks. The sum, [`GovernanceState::state_bytes`],
//! is maintained incrementally (never by encoding the state) and equals
//! [`GovernanceState::recount_state_bytes`] after every entry.
//!
//! Every charge is an upper bound of what the record adds to the state's
//! encoding, so `encoded state ≤ state_bytes + STATE_ENCODING_SLACK_BYTES`
//! (tests check it on states at the limits). Commands that create or grow a
//! record are refused with `state_budget_exceeded` when the charge would take
//! `state_bytes` above `gov.state_budget_bytes`; what only the committee can
//! cause (ticks, certificates) is never refused and is charged in advance by
//! the proposal that leads to it.

use crate::account::Account;
use crate::error::GovError;
use crate::limits::{MAX_VALIDATORS, STATE_ENCODING_SLACK_BYTES};
use crate::nep::NepContent;
use crate::proposal::Proposal;
use crate::state::GovernanceState;
use crate::types::Amount;

/// One account: key, amounts, nonce, its first stake checkpoint, its
/// `open_drafts` entry and four remembered outcomes at their largest.
pub const ACCOUNT_CHARGE: u64 = 1024;
/// Each stake checkpoint beyond an account's first.
pub const CHECKPOINT_CHARGE: u64 = 20;
/// Each vote lock an account holds.
pub const LOCK_CHARGE: u64 = 20;
/// Each counted ballot (account key, choice, power).
pub const BALLOT_CHARGE: u64 = 48;
/// A proposal's record without its content: ids, times, stage, the vote's
/// fixed part, a rejection naming a conflict with two text values, the
/// references to it from the timed set, effects and open snapshots.
pub const PROPOSAL_CHARGE: u64 = 3 * 1024;
/// New accounts and drafts stop at `budget - budget / GROWTH_HEADROOM_DIVISOR`.
pub const GROWTH_HEADROOM_DIVISOR: u64 = 16;
/// An emergency NEP's record also holds up to `MAX_VALIDATORS` approvals.
pub const EMERGENCY_EXTRA_CHARGE: u64 = 5 * MAX_VALIDATORS as u64 + 1024;

/// Postcard size of a value (plain serde data: measuring cannot fail).
pub(crate) fn encoded_size<T: serde::Serialize>(value: &T) -> u64 {
    postcard::experimental::serialized_size(value).map_or(u64::MAX / 4, |n| n as u64)
}

/// What a NEP's content is charged while the content is kept: its encoding,
/// plus a reserve for the (at most two) certificate records it can lead to.
/// A record holds the certified part (title, changes, impact) four times
/// over at most (event, protobuf payload, and the issued envelope's payload
/// as base64, 4/3 of it), `shares` signature shares as hex (≤ 256 bytes
/// each) and fixed fields; an emergency also keeps the previous value of
/// every key it changes.
pub fn content_charge(content: &NepContent, shares: u64) -> u64 {
    let encoded = encoded_size(content);
    let certified = encoded_size(&content.title)
        + encoded_size(&content.parameter_changes)
        + encoded_size(&content.economic_impact);
    let reserve = 2 * (4 * certified + shares * 256 + 4096);
    let previous = if content.nep_type.is_emergency() {
        encoded_size(&content.parameter_changes)
    } else {
        0
    };
    encoded + reserve + previous
}

/// The deposit a draft with this content locks.
pub fn draft_deposit(content: &NepContent, base: Amount, per_kib: Amount) -> Amount {
    let kib = encoded_size(content).div_ceil(1024);
    Amount(
        base.0
            .saturating_add(per_kib.0.saturating_mul(kib))
            .min(u64::MAX / 2),
    )
}

/// An account's charge.
pub(crate) fn account_charge(a: &Account) -> u64 {
    ACCOUNT_CHARGE
        + (a.checkpoints.len().saturating_sub(1) as u64) * CHECKPOINT_CHARGE
        + a.vote_locks.len() as u64 * LOCK_CHARGE
}

/// A proposal's charge (`shares`: the certificate threshold t+1).
pub(crate) fn proposal_charge(p: &Proposal, shares: u64) -> u64 {
    let mut c = PROPOSAL_CHARGE;
    if p.is_emergency() {
        c += EMERGENCY_EXTRA_CHARGE;
    }
    if !p.compacted {
        c += content_charge(&p.content, shares);
    }
    if let Some(v) = &p.vote {
        c += v.ballots.len() as u64 * BALLOT_CHARGE;
    }
    c
}

impl GovernanceState {
    /// Bytes the state is charged now (see the module docs).
    pub fn state_bytes(&self) -> u64 {
        self.state_bytes
    }

    /// The budget in force (`gov.state_budget_bytes`).
    pub fn state_budget(&self) -> u64 {
        self.params.gov().state_budget_bytes
    }

    /// Where new accounts and drafts stop: the budget less a sixteenth kept
    /// as headroom, so ballots and stake changes on the NEPs already open
    /// (and the committee's emergency NEPs, never refused) still fit when
    /// an attacker has filled everything else.
    pub fn growth_limit(&self) -> u64 {
        let budget = self.state_budget();
        budget - budget / GROWTH_HEADROOM_DIVISOR
    }

    /// Signature shares a certificate carries (t+1).
    pub(crate) fn certificate_shares(&self) -> u64 {
        u64::from(self.chain.committee.info.t) + 1
    }

    /// What the content of a NEP is charged in this committee.
    pub(crate) fn content_charge(&self, content: &NepContent) -> u64 {
        content_charge(content, self.certificate_shares())
    }

    pub(crate) fn proposal_charge(&self, p: &Proposal) -> u64 {
        proposal_charge(p, self.certificate_shares())
    }

    /// The charge recounted from every record: equal to `state_bytes` after
    /// every entry (checked in debug builds and on snapshot load).
    pub fn recount_state_bytes(&self) -> u64 {
        let accounts: u64 = self.accounts.values().map(account_charge).sum();
        let proposals: u64 = self
            .proposals
            .values()
            .map(|p| self.proposal_charge(p))
            .sum();
        accounts + proposals
    }

    /// Refuses a new account or draft whose `extra` bytes would pass the
    /// growth limit (the budget less its headroom).
    pub(crate) fn require_growth_budget(&self, extra: u64) -> Result<(), GovError> {
        self.require_within(extra, self.growth_limit())
    }

    /// Refuses a ballot or a stake checkpoint whose `extra` bytes would pass
    /// the budget itself.
    pub(crate) fn require_budget(&self, extra: u64) -> Result<(), GovError> {
        self.require_within(extra, self.state_budget())
    }

    fn require_within(&self, extra: u64, limit: u64) -> Result<(), GovError> {
        let would_be = self.state_bytes.saturating_add(extra);
        if extra > 0 && would_be > limit {
            return Err(GovError::StateBudgetExceeded {
                needed: extra,
                would_be,
                limit,
                budget: self.state_budget(),
            });
        }
        Ok(())
    }

    /// Replaces a charge of `before` bytes by `after`.
    pub(crate) fn recharge(&mut self, before: u64, after: u64) {
        self.state_bytes = self
            .state_bytes
            .checked_sub(before)
            .and_then(|b| b.checked_add(after))
            .expect("invariant: a refund never exceeds what was charged");
    }

    /// The soundness bound of the charges: the state's encoding never
    /// exceeds what it was charged plus the slack. Encodes the whole state:
    /// for tests and snapshot checks, never per entry.
    pub fn check_encoding_within_charge(&self) -> Result<(), String> {
        let encoded = encoded_size(self);
        let bound = self.state_bytes + STATE_ENCODING_SLACK_BYTES as u64;
        if encoded > bound {
            return Err(format!(
                "the state encodes to {encoded} bytes, more than its charge {} + slack {STATE_ENCODING_SLACK_BYTES}",
                self.state_bytes
            ));
        }
        Ok(())
    }
}

const _: () = assert!(
    crate::limits::MAX_ACCOUNTS as u64 * ACCOUNT_CHARGE <= crate::limits::MAX_STATE_BYTES as u64
);
