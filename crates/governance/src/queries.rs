//! Read queries for the API: accounts, proposals, live tallies, parameters,
//! certificates and vote receipts. Nothing here changes state.

use neuroshard_certificate::merkle::{BallotLeaf, InclusionProof};
use serde::{Deserialize, Serialize};

use crate::certificate::CertificateRecord;
use crate::limits::MAX_QUERY_PAGE;
use crate::nep::NepType;
use crate::params::ParameterSet;
use crate::proposal::{Proposal, Stage};
use crate::state::{ChainInfo, GovernanceState, Supply};
use crate::tally::{Tally, Verdict};
use crate::types::{AccountId, Amount, BasisPoints, NepId, ProtocolVersion, Timestamp};

/// Public view of an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub account: AccountId,
    pub balance: Amount,
    pub staked: Amount,
    /// Next nonce to sign with.
    pub next_nonce: u64,
    /// Stake locked by votes still open.
    pub locked: Amount,
    /// Committee index if this is a validator identity.
    pub validator: Option<u32>,
    /// Draft deposits locked by this account's open NEPs.
    pub deposited: Amount,
    /// Drafts plus NEPs in REVIEW it holds (quota: `MAX_OPEN_DRAFTS_PER_AUTHOR`).
    pub open_drafts: u32,
}

/// Which proposals to list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalFilter {
    pub stage: Option<Stage>,
    pub nep_type: Option<NepType>,
    /// Pagination: only ids greater than this.
    pub start_after: Option<NepId>,
    /// At most this many (capped at `MAX_QUERY_PAGE`; 0 means the cap).
    pub limit: usize,
}

/// The live or final tally of a NEP's vote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallyView {
    pub nep: NepId,
    pub stage: Stage,
    pub tally: Tally,
    pub quorum_bps: BasisPoints,
    pub approval_bps: BasisPoints,
    pub ballots: u64,
    pub opened_ms: Timestamp,
    pub deadline_ms: Timestamp,
    /// What the tally would decide now (for an open vote) or decided.
    pub verdict: Verdict,
    pub closed: bool,
    /// Log index of the tick that closed the vote, once closed.
    pub closed_index: Option<u64>,
    pub ballots_root: [u8; 32],
}

/// An account's counted ballot with the Merkle path to the ballots root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteReceipt {
    pub nep: NepId,
    pub ballot: BallotLeaf,
    pub proof: InclusionProof,
    pub ballots_root: [u8; 32],
    /// Whether the vote has closed (the root is final).
    pub closed: bool,
    /// The certificate that carries this root, if one was decided.
    pub certificate: Option<u64>,
}

/// Why a query has no answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum QueryError {
    #[error("{nep} does not exist")]
    UnknownNep { nep: NepId },
    #[error("{nep} has no vote")]
    NoVote { nep: NepId },
    #[error("{account} has no counted ballot on {nep}")]
    NoBallot { nep: NepId, account: AccountId },
}

impl GovernanceState {
    pub fn chain(&self) -> &ChainInfo {
        &self.chain
    }

    pub fn supply(&self) -> Supply {
        self.supply
    }

    pub fn params(&self) -> &ParameterSet {
        &self.params
    }

    /// The protocol version in effect now.
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.version
    }

    /// Validator identities and their committee indices.
    pub fn validators(&self) -> impl Iterator<Item = (&AccountId, u32)> {
        self.validators.iter().map(|(k, i)| (k, *i))
    }

    /// The chain id commands are signed for.
    pub fn chain_id(&self) -> &str {
        &self.chain.chain_id
    }

    /// Whether `account` is a committee validator's identity key.
    pub fn is_validator(&self, account: &AccountId) -> bool {
        self.validators.contains_key(account)
    }

    /// The stored record of an account (nonce and remembered outcomes
    /// included), for admission.
    pub fn account_record(&self, account: &AccountId) -> Option<&crate::account::Account> {
        self.accounts.get(account)
    }

    pub fn account(&self, account: &AccountId) -> Option<AccountView> {
        let a = self.accounts.get(account)?;
        let locked = self
            .strongest_lock(*account)
            .map(|(_, l, _)| l)
            .unwrap_or_default();
        Some(AccountView {
            account: *account,
            balance: a.balance,
            staked: a.staked,
            next_nonce: a.nonce + 1,
            locked,
            validator: self.validators.get(account).copied(),
            deposited: a.deposited,
            open_drafts: self.open_drafts.get(account).copied().unwrap_or(0),
        })
    }

    pub fn proposal(&self, nep: NepId) -> Option<&Proposal> {
        self.proposals.get(&nep)
    }

    pub fn proposals(&self, filter: &ProposalFilter) -> Vec<&Proposal> {
        let limit = if filter.limit == 0 {
            MAX_QUERY_PAGE
        } else {
            filter.limit.min(MAX_QUERY_PAGE)
        };
        let start = filter
            .start_after
            .map_or(NepId(0), |n| NepId(n.0.saturating_add(1)));
        self.proposals
            .range(start..)
            .map(|(_, p)| p)
            .filter(|p| filter.stage.is_none_or(|s| p.stage == s))
            .filter(|p| filter.nep_type.is_none_or(|t| p.content.nep_type == t))
            .take(limit)
            .collect()
    }

    pub fn tally(&self, nep: NepId) -> Result<TallyView, QueryError> {
        let p = self
            .proposals
            .get(&nep)
            .ok_or(QueryError::UnknownNep { nep })?;
        let v = p.vote.as_ref().ok_or(QueryError::NoVote { nep })?;
        Ok(TallyView {
            nep,
            stage: p.stage,
            tally: v.tally,
            quorum_bps: v.quorum_bps,
            approval_bps: v.approval_bps,
            ballots: v.ballot_count(),
            opened_ms: v.opened_ms,
            deadline_ms: v.deadline_ms,
            verdict: v
                .closed
                .unwrap_or_else(|| v.tally.verdict(v.quorum_bps, v.approval_bps)),
            closed: v.closed.is_some(),
            closed_index: v.closed_index,
            // Kept (final once the vote closed): O(1).
            ballots_root: v.ballots_root(),
        })
    }

    pub fn certificate(&self, sequence: u64) -> Option<&CertificateRecord> {
        self.certificates.get(&sequence)
    }

    /// Certificates from `from_sequence` on, at most `limit` (capped).
    pub fn certificates(&self, from_sequence: u64, limit: usize) -> Vec<&CertificateRecord> {
        let limit = if limit == 0 {
            MAX_QUERY_PAGE
        } else {
            limit.min(MAX_QUERY_PAGE)
        };
        self.certificates
            .range(from_sequence..)
            .map(|(_, r)| r)
            .take(limit)
            .collect()
    }

    /// The counted ballot of `account` on `nep` with its Merkle proof.
    pub fn vote_receipt(&self, nep: NepId, account: &AccountId) -> Result<VoteReceipt, QueryError> {
        let p = self
            .proposals
            .get(&nep)
            .ok_or(QueryError::UnknownNep { nep })?;
        let v = p.vote.as_ref().ok_or(QueryError::NoVote { nep })?;
        // From the kept tree: O(log n), nothing rebuilt.
        let (ballot, proof) = v.receipt(account).ok_or(QueryError::NoBallot {
            nep,
            account: *account,
        })?;
        let root = v.ballots_root();
        let certificate = p.certificates.iter().copied().find(|seq| {
            self.certificates
                .get(seq)
                .is_some_and(|r| r.event.ballots_root == root)
        });
        Ok(VoteReceipt {
            nep,
            ballot,
            proof,
            ballots_root: root,
            closed: v.closed.is_some(),
            certificate,
        })
    }
}
