//! The NEP rules: a pure, deterministic state machine with no I/O.
//!
//! The node feeds every committed log entry to [`GovernanceState::apply`] (or
//! [`GovernanceState::apply_batch`]); every replica reaches the same state,
//! comparable with [`GovernanceState::state_hash`]. Time comes only from
//! committed [`Entry::Tick`] entries. This crate knows nothing about Raft,
//! gRPC, storage or tokio.

pub mod account;
pub mod admission;
mod balances;
mod ballot_index;
pub mod budget;
pub mod certificate;
pub mod command;
mod conflict;
mod drafting;
pub mod economic_parity;
pub mod emergency;
pub mod error;
pub mod format;
pub mod genesis;
mod hashing;
mod invariants;
mod issuance;
pub mod limits;
pub mod nep;
pub mod params;
pub mod position;
pub mod proposal;
pub mod proposal_file;
pub mod queries;
pub mod quorum;
pub mod receipt;
pub mod signature;
pub mod state;
pub mod tally;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
mod tick;
pub mod types;
pub mod validation;
mod voting;

pub use certificate::{
    CertificateEvent, CertificateKind, CertificateRecord, IssuedCertificate, PendingCertificate,
};
pub use command::{Command, CommandSignature, Entry, SignedCommand, VoteChoice};
pub use error::GovError;
pub use genesis::{Allocation, CommitteeGenesis, Genesis, GenesisError, GenesisValidator};
pub use nep::{EconomicImpact, NepContent, NepType, ParameterChange, UpgradePath};
pub use params::{ParamKind, ParamValue, ParameterSet};
pub use position::Position;
pub use proposal::{Proposal, RejectReason, Stage};
pub use queries::{AccountView, ProposalFilter, QueryError, TallyView, VoteReceipt};
pub use quorum::{byzantine_quorum, max_faulty};
pub use receipt::{Effect, Outcome, Receipt, Transition};
pub use state::{ChainInfo, GovernanceState, SnapshotError, Supply};
pub use types::{AccountId, Amount, BasisPoints, Micro, NepId, ProtocolVersion, Timestamp, NEURO};
