//! The replicated state and the entry point every replica calls for every
//! committed entry. Pure and deterministic: no clock, no I/O, no randomness,
//! only ordered collections.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::account::Account;
use crate::certificate::CertificateRecord;
use crate::command::{Command, Entry, SignedCommand};
use crate::error::GovError;
use crate::genesis::{CommitteeGenesis, Genesis, GenesisError};
use crate::hashing::{
    digest_of, plain_state_entry, Cached, Hash, HashedMap, HashedSet, STATE_DOMAIN,
};
use crate::params::ParameterSet;
use crate::position::Position;
use crate::proposal::Proposal;
use crate::receipt::{Effect, Outcome, Receipt};
use crate::signature;
use crate::types::{AccountId, Amount, NepId, ProtocolVersion, Timestamp};

/// Chain identity fixed at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainInfo {
    pub chain_id: String,
    pub genesis_time_ms: Timestamp,
    pub block_interval_ms: u64,
    pub committee: CommitteeGenesis,
    /// SHA-256 of the committee info's canonical JSON.
    pub committee_hash: [u8; 32],
}

impl ChainInfo {
    /// `height(t) = (t − genesis_time_ms) / block_interval_ms`.
    pub fn height_at(&self, t: Timestamp) -> u64 {
        t.0.saturating_sub(self.genesis_time_ms.0) / self.block_interval_ms.max(1)
    }
}

/// Where every base unit of NEURO is. Conservation:
/// `balances + staked + deposits + burned == genesis`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supply {
    pub genesis: u64,
    pub balances: u64,
    pub staked: u64,
    /// Locked in draft deposits.
    pub deposits: u64,
    pub burned: u64,
}

/// A change that takes effect at a time, in certificate order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EffectKind {
    Activate,
    Revoke,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEffect {
    pub nep: NepId,
    pub kind: EffectKind,
    pub effective_ms: Timestamp,
    pub version_after: ProtocolVersion,
}

/// The replicated state. Its encoding (snapshots) is that of its fields in
/// order, every collection as a plain ordered map or set; the caches of the
/// state hash (`hashing.rs`) are not part of it and are rebuilt on decoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StateImage")]
pub struct GovernanceState {
    pub(crate) chain: ChainInfo,
    /// Validator identity key → committee index.
    pub(crate) validators: BTreeMap<AccountId, u32>,
    /// Last applied log index (`None` before the first entry).
    pub(crate) last_index: Option<u64>,
    pub(crate) committed_ms: Timestamp,
    pub(crate) params: ParameterSet,
    pub(crate) version: ProtocolVersion,
    pub(crate) accounts: HashedMap<AccountId, Account>,
    pub(crate) supply: Supply,
    pub(crate) proposals: HashedMap<NepId, Proposal>,
    pub(crate) next_nep: u64,
    /// NEPs waiting for a tick-driven transition (REVIEW, VOTING,
    /// AWAITING_APPROVAL, EMERG ratification), visited in id order.
    pub(crate) timed: HashedSet<NepId>,
    /// Activations and revocations not yet in effect, by certificate sequence.
    pub(crate) effects: HashedMap<u64, PendingEffect>,
    /// Snapshot index of every open vote → how many votes use it.
    pub(crate) open_snapshots: HashedMap<u64, u32>,
    /// Drafts plus proposals in REVIEW per author.
    pub(crate) open_drafts: HashedMap<AccountId, u32>,
    /// Proposals not in a final stage.
    pub(crate) open_proposals: u32,
    /// EMERG NEPs awaiting approval.
    pub(crate) pending_emergencies: u32,
    pub(crate) certificates: HashedMap<u64, CertificateRecord>,
    /// The version_after of the last certificate (genesis version before any).
    pub(crate) certified_version: ProtocolVersion,
    /// Bytes charged to the state budget (`budget.rs`), kept incrementally.
    pub(crate) state_bytes: u64,
    /// The state hash as of the last applied entry, and the digest of what
    /// never changes after genesis (not serialized).
    #[serde(skip)]
    pub(crate) digests: Cached<StateDigests>,
}

/// The decoded form of a [`GovernanceState`]: its fields with plain
/// collections, turned into the state (caches built) by `From`.
#[derive(Deserialize)]
struct StateImage {
    chain: ChainInfo,
    validators: BTreeMap<AccountId, u32>,
    last_index: Option<u64>,
    committed_ms: Timestamp,
    params: ParameterSet,
    version: ProtocolVersion,
    accounts: BTreeMap<AccountId, Account>,
    supply: Supply,
    proposals: BTreeMap<NepId, Proposal>,
    next_nep: u64,
    timed: BTreeSet<NepId>,
    effects: BTreeMap<u64, PendingEffect>,
    open_snapshots: BTreeMap<u64, u32>,
    open_drafts: BTreeMap<AccountId, u32>,
    open_proposals: u32,
    pending_emergencies: u32,
    certificates: BTreeMap<u64, CertificateRecord>,
    certified_version: ProtocolVersion,
    state_bytes: u64,
}

impl From<StateImage> for GovernanceState {
    fn from(i: StateImage) -> Self {
        let mut state = Self {
            chain: i.chain,
            validators: i.validators,
            last_index: i.last_index,
            committed_ms: i.committed_ms,
            params: i.params,
            version: i.version,
            accounts: HashedMap::from_map(i.accounts),
            supply: i.supply,
            proposals: HashedMap::from_map(i.proposals),
            next_nep: i.next_nep,
            timed: HashedSet::from_set(i.timed),
            effects: HashedMap::from_map(i.effects),
            open_snapshots: HashedMap::from_map(i.open_snapshots),
            open_drafts: HashedMap::from_map(i.open_drafts),
            open_proposals: i.open_proposals,
            pending_emergencies: i.pending_emergencies,
            certificates: HashedMap::from_map(i.certificates),
            certified_version: i.certified_version,
            state_bytes: i.state_bytes,
            digests: Cached::default(),
        };
        state.finish_hashes();
        state
    }
}

/// The state hash's own caches.
#[derive(Clone, Debug, Default)]
pub(crate) struct StateDigests {
    /// Digest of the chain info and the validators (fixed at genesis).
    chain: Hash,
    /// The state hash as of the last flush.
    hash: Hash,
}

const CHAIN_TAG: &[u8] = b"neuroshard/state/v2/chain";
const HEADER_TAG: &[u8] = b"neuroshard/state/v2/header";

plain_state_entry!(Account, b"neuroshard/state/v2/account");
plain_state_entry!(PendingEffect, b"neuroshard/state/v2/effect");
plain_state_entry!(CertificateRecord, b"neuroshard/state/v2/certificate");

/// Why a snapshot could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is {bytes} bytes, more than {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("not a governance snapshot (bad magic)")]
    BadHeader,
    #[error(transparent)]
    Format(#[from] crate::format::FormatError),
    #[error("snapshot does not decode: {0}")]
    Decode(String),
    #[error("snapshot decodes but breaks an invariant: {0}")]
    Invariant(String),
}

/// Magic at the start of a snapshot; the format version byte follows it
/// (`crate::format`).
const SNAPSHOT_MAGIC: &[u8; 8] = b"NSGOVsn\0";

/// What [`GovernanceState::apply_batch`] already knows about a command's
/// signature, so a command is verified exactly once.
enum SignatureCheck {
    /// Not verified yet: `apply_command` verifies it on its own.
    Unchecked,
    /// Verified (ZIP-215) and valid.
    Valid,
    /// Verified and refused.
    Invalid,
}

impl GovernanceState {
    /// The state at genesis.
    pub fn from_genesis(g: &Genesis) -> Result<Self, GenesisError> {
        g.validate()?;
        let params = g.parameter_set()?;
        let mut accounts = BTreeMap::new();
        let mut supply = Supply::default();
        for a in &g.allocations {
            accounts.insert(a.account, Account::with_genesis(a.balance, a.staked));
            supply.balances += a.balance.0;
            supply.staked += a.staked.0;
        }
        supply.genesis = supply.balances + supply.staked;
        let mut validators = BTreeMap::new();
        for v in &g.validators {
            validators.insert(v.identity, v.index);
            // Validator identities sign commands, so they need a nonce.
            accounts.entry(v.identity).or_default();
        }
        let state = Self {
            chain: ChainInfo {
                chain_id: g.chain_id.clone(),
                genesis_time_ms: Timestamp(g.genesis_time_ms),
                block_interval_ms: g.block_interval_ms,
                committee: g.committee.clone(),
                committee_hash: g.committee.committee_hash(),
            },
            validators,
            last_index: None,
            committed_ms: Timestamp(g.genesis_time_ms),
            params,
            version: g.protocol_version,
            accounts: HashedMap::from_map(accounts),
            supply,
            proposals: HashedMap::default(),
            next_nep: 1,
            timed: HashedSet::default(),
            effects: HashedMap::default(),
            open_snapshots: HashedMap::default(),
            open_drafts: HashedMap::default(),
            open_proposals: 0,
            pending_emergencies: 0,
            certificates: HashedMap::default(),
            certified_version: g.protocol_version,
            state_bytes: 0,
            digests: Cached::default(),
        };
        let mut state = state;
        state.state_bytes = state.recount_state_bytes();
        let budget = state.state_budget();
        if state.state_bytes > budget {
            return Err(GenesisError::OverStateBudget {
                bytes: state.state_bytes,
                budget,
            });
        }
        state.finish_hashes();
        state.assert_invariants();
        Ok(state)
    }

    /// Applies one committed entry that has one outcome (a command, a tick,
    /// a certificate; a batch of exactly one command). Every replica calls
    /// this or [`Self::apply_entry`] with the same `(log_index, entry)`
    /// sequence and reaches the same state.
    ///
    /// Panics on an `Entry::Commands` batch of other than one command: use
    /// [`Self::apply_entry`], which returns every outcome.
    pub fn apply(&mut self, log_index: u64, entry: &Entry) -> Outcome {
        let mut outcomes = self.apply_entry(log_index, entry);
        assert_eq!(
            outcomes.len(),
            1,
            "apply() is for entries with one outcome; use apply_entry()"
        );
        outcomes.pop().expect("one outcome")
    }

    /// Applies one committed entry: one outcome per command of a batch
    /// (none for an empty one), one for anything else.
    pub fn apply_entry(&mut self, log_index: u64, entry: &Entry) -> Vec<Outcome> {
        let outcomes = self.apply_checked(log_index, entry, &mut |_| SignatureCheck::Unchecked);
        self.flush_hashes();
        outcomes
    }

    /// Applies entries in order, returning each entry's outcomes (as
    /// [`Self::apply_entry`] does). Command signatures are taken from the
    /// verdicts this process already reached ([`signature::verify_commands`]
    /// at admission, or when the entry arrived, beside its fsync) and the
    /// rest verified in ed25519 batches first; a batch that fails is redone
    /// one signature at a time, so one bad signature refuses only its own
    /// command. The outcomes are the same as with `apply_entry`.
    pub fn apply_batch(&mut self, entries: &[(u64, Entry)]) -> Vec<Vec<Outcome>> {
        let commands: Vec<&SignedCommand> = entries
            .iter()
            .flat_map(|(_, e)| e.commands().iter())
            .collect();
        let mut verdicts = signature::verify_commands(&self.chain.chain_id, &commands).into_iter();
        let outcomes = entries
            .iter()
            .map(|(index, entry)| {
                // One verdict per command, in entry order; entries without a
                // signature (ticks, certificates) consume none.
                self.apply_checked(*index, entry, &mut |_| match verdicts.next() {
                    Some(true) => SignatureCheck::Valid,
                    Some(false) => SignatureCheck::Invalid,
                    // Unreachable (one verdict per command), and safe: the
                    // command is then verified on its own.
                    None => SignatureCheck::Unchecked,
                })
            })
            .collect();
        self.flush_hashes();
        outcomes
    }

    /// `check`: what the caller already knows about each command's
    /// signature, asked once per command in order.
    fn apply_checked(
        &mut self,
        log_index: u64,
        entry: &Entry,
        check: &mut dyn FnMut(&SignedCommand) -> SignatureCheck,
    ) -> Vec<Outcome> {
        if let Some(last) = self.last_index {
            if log_index <= last {
                let refused = Err(GovError::LogIndexNotIncreasing {
                    index: log_index,
                    last,
                });
                return match entry {
                    Entry::Commands(cs) => vec![refused; cs.len()],
                    _ => vec![refused],
                };
            }
        }
        let outcomes = match entry {
            Entry::Command(c) => {
                let verdict = check(c);
                vec![self.apply_command(Position::entry(log_index), c, verdict)]
            }
            Entry::Commands(cs) => cs
                .iter()
                .enumerate()
                .map(|(offset, c)| {
                    let verdict = check(c);
                    // A batch never holds more than u32::MAX commands: the
                    // entry's byte bound (`MAX_LOG_ENTRY_BYTES`) is far below.
                    let offset = u32::try_from(offset).unwrap_or(u32::MAX);
                    self.apply_command(Position::new(log_index, offset), c, verdict)
                })
                .collect(),
            Entry::Tick { now_ms } => vec![Ok(self.tick(log_index, Timestamp(*now_ms)))],
            Entry::CertificateIssued(c) => vec![self.record_issued(log_index, c)],
        };
        self.last_index = Some(log_index);
        self.assert_invariants();
        outcomes
    }

    fn apply_command(
        &mut self,
        position: Position,
        c: &SignedCommand,
        check: SignatureCheck,
    ) -> Outcome {
        // Admission refuses these before the log; a faulty leader may still
        // order one, and every replica refuses it here the same way.
        let bytes = crate::admission::encoded_len(c);
        if bytes > crate::limits::MAX_COMMAND_BYTES {
            return Err(GovError::CommandTooLarge {
                bytes,
                max: crate::limits::MAX_COMMAND_BYTES,
            });
        }
        let message = c.message(&self.chain.chain_id);
        match check {
            SignatureCheck::Valid => {}
            SignatureCheck::Invalid => return Err(GovError::BadSignature { author: c.author }),
            SignatureCheck::Unchecked => {
                if !signature::verify_one(&c.author, &message, &c.signature.0) {
                    return Err(GovError::BadSignature { author: c.author });
                }
            }
        }
        let account = self
            .accounts
            .get(&c.author)
            .ok_or(GovError::UnknownAccount { account: c.author })?;
        let expected = account.nonce + 1;
        let digest: [u8; 32] = Sha256::digest(&message).into();
        if c.nonce < expected {
            // An identical retry gets its original outcome and changes nothing.
            return match account.remembered(c.nonce) {
                Some(r) if r.digest == digest => r.outcome.clone(),
                _ => Err(GovError::NonceReplay {
                    account: c.author,
                    nonce: c.nonce,
                    expected,
                }),
            };
        }
        if c.nonce > expected {
            return Err(GovError::NonceOutOfOrder {
                account: c.author,
                nonce: c.nonce,
                expected,
            });
        }
        // From here the nonce is used, whatever the outcome: a refused
        // command is answered, remembered and never re-run.
        let outcome = self.execute(position, c.author, &c.command);
        let account = self
            .accounts
            .get_mut(&c.author)
            .expect("author account exists: checked above and never removed");
        account.nonce = c.nonce;
        account.remember(c.nonce, digest, outcome.clone(), position);
        outcome
    }

    fn execute(&mut self, position: Position, author: AccountId, command: &Command) -> Outcome {
        // Stake checkpoints are per entry: two commands of one batch that
        // change one account's stake leave one checkpoint (the later one),
        // which is what a snapshot between whole entries reads.
        let log_index = position.log_index;
        let effect = match command {
            Command::Transfer { to, amount } => self.transfer(author, *to, *amount)?,
            Command::Stake { amount } => self.stake(log_index, author, *amount)?,
            Command::Unstake { amount } => self.unstake(log_index, author, *amount)?,
            Command::CreateDraft { content } => self.create_draft(author, content)?,
            Command::AmendDraft { nep, content } => self.amend_draft(author, *nep, content)?,
            Command::Submit { nep } => self.submit(author, *nep)?,
            Command::Withdraw { nep } => self.withdraw(author, *nep)?,
            Command::Vote { nep, choice } => self.vote(author, *nep, *choice)?,
            Command::SubmitEmergency { content } => self.submit_emergency(author, content)?,
            Command::EmergencyApprove { nep } => self.emergency_approve(author, *nep)?,
        };
        Ok(self.receipt(position, effect))
    }

    pub(crate) fn receipt(&self, position: Position, effect: Effect) -> Receipt {
        Receipt {
            position,
            committed_ms: self.committed_ms,
            effect,
        }
    }

    /// The state hash: equal on two replicas iff their states are equal
    /// (ARCHITECTURE.md, "The state hash"). Maintained as entries are
    /// applied, so this is O(1).
    pub fn state_hash(&self) -> [u8; 32] {
        debug_assert!(self.hashes_flushed(), "state hash read before a flush");
        self.digests.0.hash
    }

    /// The state hash computed from its definition over the whole state,
    /// reading no cache: O(state). For tests and checks: it must equal
    /// [`Self::state_hash`].
    #[doc(hidden)]
    pub fn recompute_state_hash(&self) -> [u8; 32] {
        self.compose_hash(true)
    }

    fn hashes_flushed(&self) -> bool {
        self.accounts.is_flushed()
            && self.proposals.is_flushed()
            && self.timed.is_flushed()
            && self.effects.is_flushed()
            && self.open_snapshots.is_flushed()
            && self.open_drafts.is_flushed()
            && self.certificates.is_flushed()
    }

    /// Re-hashes what the entries since the last flush changed: the end of
    /// every `apply` and `apply_batch`.
    fn flush_hashes(&mut self) {
        self.accounts.flush();
        self.proposals.flush();
        self.timed.flush();
        self.effects.flush();
        self.open_snapshots.flush();
        self.open_drafts.flush();
        self.certificates.flush();
        self.digests.0.hash = self.compose_hash(false);
        self.assert_hash_caches();
    }

    /// Computes the fixed digest and the hash of a state whose collections
    /// were just built (genesis, a decoded snapshot).
    fn finish_hashes(&mut self) {
        self.digests.0.chain = self.chain_digest();
        self.flush_hashes();
    }

    fn chain_digest(&self) -> Hash {
        digest_of(CHAIN_TAG, &(&self.chain, &self.validators))
    }

    /// `SHA-256("neuroshard/state/v2" ‖ chain ‖ header ‖ the root of each
    /// collection)`; the roots kept (`from_scratch == false`) or recomputed.
    fn compose_hash(&self, from_scratch: bool) -> Hash {
        // Every field: a new one must be added here (the compiler says so).
        let GovernanceState {
            chain: _,
            validators: _,
            last_index,
            committed_ms,
            params,
            version,
            accounts,
            supply,
            proposals,
            next_nep,
            timed,
            effects,
            open_snapshots,
            open_drafts,
            open_proposals,
            pending_emergencies,
            certificates,
            certified_version,
            state_bytes,
            digests,
        } = self;
        let chain = if from_scratch {
            self.chain_digest()
        } else {
            digests.0.chain
        };
        let header = digest_of(
            HEADER_TAG,
            &(
                (last_index, committed_ms, params, version, supply),
                (next_nep, open_proposals, pending_emergencies),
                (certified_version, state_bytes),
            ),
        );
        let roots = if from_scratch {
            [
                accounts.root_from_scratch(),
                proposals.root_from_scratch(),
                timed.root_from_scratch(),
                effects.root_from_scratch(),
                open_snapshots.root_from_scratch(),
                open_drafts.root_from_scratch(),
                certificates.root_from_scratch(),
            ]
        } else {
            [
                accounts.root(),
                proposals.root(),
                timed.root(),
                effects.root(),
                open_snapshots.root(),
                open_drafts.root(),
                certificates.root(),
            ]
        };
        let mut h = Sha256::new();
        h.update(STATE_DOMAIN);
        h.update(chain);
        h.update(header);
        for root in roots {
            h.update(root);
        }
        h.finalize().into()
    }

    fn encode(&self) -> Vec<u8> {
        // Every field is a plain value or an ordered collection; encoding into
        // a Vec cannot fail.
        postcard::to_allocvec(self).expect("state encodes")
    }

    /// The snapshot the node stores and ships to lagging replicas.
    ///
    /// Refuses (rather than writes) a snapshot its own decoder would refuse:
    /// the charges bound the encoding, so this only fails on a bug.
    pub fn to_snapshot_bytes(&self) -> Result<Vec<u8>, SnapshotError> {
        let body = self.encode();
        let mut out = Vec::with_capacity(SNAPSHOT_MAGIC.len() + 1 + body.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.push(crate::format::SNAPSHOT_FORMAT_VERSION);
        out.extend_from_slice(&body);
        if out.len() > crate::limits::MAX_SNAPSHOT_BYTES {
            return Err(SnapshotError::TooLarge {
                bytes: out.len(),
                max: crate::limits::MAX_SNAPSHOT_BYTES,
            });
        }
        Ok(out)
    }

    /// Loads a snapshot, refusing anything that does not decode to a state
    /// that keeps every invariant.
    pub fn from_snapshot_bytes(b: &[u8]) -> Result<Self, SnapshotError> {
        if b.len() > crate::limits::MAX_SNAPSHOT_BYTES {
            return Err(SnapshotError::TooLarge {
                bytes: b.len(),
                max: crate::limits::MAX_SNAPSHOT_BYTES,
            });
        }
        let versioned = b
            .strip_prefix(SNAPSHOT_MAGIC.as_slice())
            .ok_or(SnapshotError::BadHeader)?;
        let (&version, body) =
            versioned
                .split_first()
                .ok_or(crate::format::FormatError::Empty {
                    what: "governance snapshot",
                })?;
        if !crate::format::READABLE_SNAPSHOT_FORMATS.contains(&version) {
            return Err(crate::format::FormatError::Unsupported {
                what: "governance snapshot",
                found: version,
                readable: crate::format::READABLE_SNAPSHOT_FORMATS,
                writes: crate::format::SNAPSHOT_FORMAT_VERSION,
            }
            .into());
        }
        let state: Self =
            postcard::from_bytes(body).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        state.check_invariants().map_err(SnapshotError::Invariant)?;
        Ok(state)
    }

    /// Time as committed by ticks.
    pub fn committed_time_ms(&self) -> u64 {
        self.committed_ms.0
    }

    /// Last applied log index, if any entry was applied.
    pub fn last_applied_index(&self) -> Option<u64> {
        self.last_index
    }

    pub(crate) fn open_snapshot_list(&self) -> Vec<u64> {
        self.open_snapshots.keys().copied().collect()
    }

    pub(crate) fn add_open_snapshot(&mut self, index: u64) {
        *self.open_snapshots.entry(index).or_insert(0) += 1;
    }

    pub(crate) fn remove_open_snapshot(&mut self, index: u64) {
        if let Some(n) = self.open_snapshots.get_mut(&index) {
            *n -= 1;
            if *n == 0 {
                self.open_snapshots.remove(&index);
            }
        }
    }

    /// Total staked now (the snapshot total of a vote opened now).
    pub(crate) fn total_staked(&self) -> Amount {
        Amount(self.supply.staked)
    }
}

#[cfg(test)]
mod hash_tests {
    use super::*;
    use crate::command::VoteChoice;
    use crate::proposal::Stage;
    use crate::receipt::Effect;
    use crate::testkit::{account_of, user_key, TestChain, TestConfig};

    fn heads() -> crate::nep::NepContent {
        crate::proposal_file::parse(include_str!(
            "../../../examples/neps/multi-token-prediction.toml"
        ))
        .expect("example parses")
    }

    fn draft(c: &mut TestChain, who: usize) -> NepId {
        match c.exec(&user_key(who), Command::CreateDraft { content: heads() }) {
            Ok(r) => match r.effect {
                Effect::DraftCreated { nep, .. } => nep,
                other => panic!("{other:?}"),
            },
            Err(e) => panic!("{e}"),
        }
    }

    /// A state with something in every collection: a NEP SCHEDULED with
    /// an issued certificate and a pending effect, one in VOTING with
    /// ballots (open snapshot), one in REVIEW (timed, open draft slot).
    fn populated() -> (TestChain, NepId, NepId) {
        let mut c = TestChain::new(&TestConfig {
            users: 6,
            ..Default::default()
        });
        let scheduled = draft(&mut c, 0);
        c.exec(&user_key(0), Command::Submit { nep: scheduled })
            .expect("submit");
        c.advance_days(7).expect("tick");
        for who in 1..5 {
            c.exec(
                &user_key(who),
                Command::Vote {
                    nep: scheduled,
                    choice: VoteChoice::Yes,
                },
            )
            .expect("vote");
        }
        c.advance_days(7).expect("tick");
        assert!(c.issue_pending().iter().all(|o| o.is_ok()));
        let voting = draft(&mut c, 1);
        c.exec(&user_key(1), Command::Submit { nep: voting })
            .expect("submit");
        c.advance_days(7).expect("tick");
        for who in [2, 3, 5] {
            c.exec(
                &user_key(who),
                Command::Vote {
                    nep: voting,
                    choice: VoteChoice::No,
                },
            )
            .expect("vote");
        }
        let review = draft(&mut c, 2);
        c.exec(&user_key(2), Command::Submit { nep: review })
            .expect("submit");
        let s = &c.state;
        assert_eq!(s.proposals[&scheduled].stage, Stage::Scheduled);
        assert_eq!(s.proposals[&voting].stage, Stage::Voting);
        assert!(!s.certificates.is_empty() && !s.effects.is_empty());
        assert!(!s.timed.is_empty() && !s.open_snapshots.is_empty() && !s.open_drafts.is_empty());
        (c, scheduled, voting)
    }

    type Change = (&'static str, Box<dyn Fn(&mut GovernanceState)>);

    /// One field of one record (or of the header) changed.
    fn changes(scheduled: NepId, voting: NepId) -> Vec<Change> {
        let a = account_of(&user_key(3));
        vec![
            (
                "account balance",
                Box::new(move |s| s.accounts.get_mut(&a).unwrap().balance.0 += 1),
            ),
            (
                "account nonce",
                Box::new(move |s| s.accounts.get_mut(&a).unwrap().nonce += 1),
            ),
            (
                "remembered outcome",
                Box::new(move |s| s.accounts.get_mut(&a).unwrap().recent[0].digest[5] ^= 1),
            ),
            (
                "vote lock",
                Box::new(move |s| s.accounts.get_mut(&a).unwrap().vote_locks[0].power.0 -= 1),
            ),
            (
                "new account",
                Box::new(|s| {
                    s.accounts.insert(AccountId([0xEE; 32]), Account::default());
                }),
            ),
            (
                "proposal title",
                Box::new(move |s| {
                    s.proposals
                        .get_mut(&scheduled)
                        .unwrap()
                        .content
                        .title
                        .push('!')
                }),
            ),
            (
                "proposal specification",
                Box::new(move |s| {
                    s.proposals
                        .get_mut(&voting)
                        .unwrap()
                        .content
                        .specification
                        .push('!')
                }),
            ),
            (
                "proposal deposit",
                Box::new(move |s| s.proposals.get_mut(&voting).unwrap().deposit.0 += 1),
            ),
            (
                "vote tally",
                Box::new(move |s| {
                    s.proposals
                        .get_mut_part(&voting)
                        .unwrap()
                        .vote
                        .as_mut()
                        .unwrap()
                        .tally
                        .no += 1
                }),
            ),
            (
                "vote deadline",
                Box::new(move |s| {
                    s.proposals
                        .get_mut_part(&voting)
                        .unwrap()
                        .vote
                        .as_mut()
                        .unwrap()
                        .deadline_ms
                        .0 += 1
                }),
            ),
            (
                "ballot power",
                Box::new(move |s| {
                    let v = s
                        .proposals
                        .get_mut_part(&voting)
                        .unwrap()
                        .vote
                        .as_mut()
                        .unwrap();
                    v.ballots.get_mut(&a).unwrap().power.0 -= 1;
                    v.index.0.note_cast(a, false);
                }),
            ),
            (
                "closed ballot choice",
                Box::new(move |s| {
                    let v = s
                        .proposals
                        .get_mut(&scheduled)
                        .unwrap()
                        .vote
                        .as_mut()
                        .unwrap();
                    v.ballots.get_mut(&a).unwrap().choice = VoteChoice::No;
                    v.index.0.note_cast(a, false);
                }),
            ),
            (
                "certificate payload",
                Box::new(|s| s.certificates.get_mut(&1).unwrap().payload[0] ^= 1),
            ),
            (
                "pending effect",
                Box::new(|s| s.effects.get_mut(&1).unwrap().effective_ms.0 += 1),
            ),
            (
                "timed set",
                Box::new(move |s| {
                    s.timed.insert(scheduled);
                }),
            ),
            (
                "open snapshot count",
                Box::new(|s| {
                    let k = *s.open_snapshots.keys().next().unwrap();
                    *s.open_snapshots.get_mut(&k).unwrap() += 1;
                }),
            ),
            (
                "open drafts",
                Box::new(|s| {
                    s.open_drafts.insert(AccountId([0xEE; 32]), 1);
                }),
            ),
            ("committed time", Box::new(|s| s.committed_ms.0 += 1)),
            ("state bytes", Box::new(|s| s.state_bytes += 1)),
            ("supply", Box::new(|s| s.supply.burned += 1)),
            ("next nep", Box::new(|s| s.next_nep += 1)),
            (
                "parameter",
                Box::new(|s| {
                    s.params
                        .set("train.batch_size", crate::params::ParamValue::Integer(513))
                        .unwrap();
                }),
            ),
        ]
    }

    /// Two states that differ in one field of one record hash differently,
    /// and the maintained hash equals the recomputation for each.
    #[test]
    fn one_changed_field_changes_the_hash() {
        let (c, scheduled, voting) = populated();
        let base = c.state.state_hash();
        assert_eq!(base, c.state.recompute_state_hash());
        let mut seen = BTreeMap::new();
        seen.insert(base, "unchanged");
        for (name, change) in changes(scheduled, voting) {
            let mut s = c.state.clone();
            change(&mut s);
            s.flush_hashes();
            assert_eq!(s.state_hash(), s.recompute_state_hash(), "{name}");
            if let Some(other) = seen.insert(s.state_hash(), name) {
                panic!("{name} hashes like {other}");
            }
        }
        // The fixed part (never changed by an entry) is in the hash too.
        let mut s = c.state.clone();
        s.chain.chain_id.push('x');
        assert_ne!(s.recompute_state_hash(), base);
        s.finish_hashes();
        assert_ne!(s.state_hash(), base);
    }

    /// Equal states hash equally however they were reached: a change undone
    /// in a later batch, and a decoded snapshot.
    #[test]
    fn equal_states_hash_equally() {
        let (c, _, voting) = populated();
        let base = c.state.state_hash();
        let mut s = c.state.clone();
        let a = AccountId([0xEE; 32]);
        s.accounts.insert(a, Account::default());
        s.timed.insert(NepId(999));
        s.proposals
            .get_mut(&voting)
            .unwrap()
            .content
            .title
            .push('!');
        s.flush_hashes();
        assert_ne!(s.state_hash(), base);
        s.accounts.remove(&a);
        s.timed.remove(&NepId(999));
        s.proposals.get_mut(&voting).unwrap().content.title.pop();
        s.flush_hashes();
        assert_eq!(s, c.state);
        assert_eq!(s.state_hash(), base);
        let restored =
            GovernanceState::from_snapshot_bytes(&c.state.to_snapshot_bytes().unwrap()).unwrap();
        assert_eq!(restored.state_hash(), base);
    }

    /// A vote of a few blocks of ballots, cast in batches of new ballots
    /// and re-votes: the kept hash, root and receipts match the full
    /// recomputation after every batch, and after the vote closes.
    #[test]
    fn a_large_vote_applied_in_batches_keeps_its_tree() {
        const VOTERS: usize = 150;
        let mut c = TestChain::new(&TestConfig {
            users: VOTERS + 1,
            ..Default::default()
        });
        let nep = draft(&mut c, VOTERS);
        c.exec(&user_key(VOTERS), Command::Submit { nep })
            .expect("submit");
        c.advance_days(7).expect("tick");
        let chain_id = c.genesis.chain_id.clone();
        let mut entries = Vec::new();
        for (nonce, choice) in [(1, VoteChoice::Yes), (2, VoteChoice::No)] {
            for i in (0..VOTERS).rev().step_by(nonce as usize) {
                let cmd = crate::command::SignedCommand::sign(
                    &chain_id,
                    &user_key(i),
                    nonce,
                    Command::Vote { nep, choice },
                );
                entries.push(Entry::Command(cmd));
            }
        }
        for batch in entries.chunks(23) {
            let indexed: Vec<(u64, Entry)> = batch
                .iter()
                .map(|e| {
                    c.next_index += 1;
                    (c.next_index - 1, e.clone())
                })
                .collect();
            assert!(c
                .state
                .apply_batch(&indexed)
                .iter()
                .flatten()
                .all(|o| o.is_ok()));
            assert_eq!(c.state.state_hash(), c.state.recompute_state_hash());
            let v = c.state.proposals[&nep].vote.as_ref().unwrap();
            assert_eq!(v.ballots_root(), v.tree().root());
            for who in (0..VOTERS).step_by(11) {
                if let Ok(r) = c.state.vote_receipt(nep, &account_of(&user_key(who))) {
                    assert!(r.proof.verify(&r.ballot, &v.tree().root()));
                }
            }
        }
        c.advance_days(7).expect("tick");
        let v = c.state.proposals[&nep].vote.as_ref().unwrap();
        assert!(v.closed.is_some());
        assert_eq!(v.ballots_root(), v.tree().root());
        let r = c
            .state
            .vote_receipt(nep, &account_of(&user_key(77)))
            .expect("counted");
        assert!(r.closed && r.proof.verify(&r.ballot, &v.tree().root()));
    }

    /// The snapshot encoding is unchanged by the caches: the state encodes
    /// exactly as its plain collections.
    #[test]
    fn the_encoding_is_the_plain_collections() {
        let (c, _, _) = populated();
        let s = &c.state;
        let plain = (
            (&s.chain, &s.validators, &s.last_index, &s.committed_ms),
            (
                &s.params,
                &s.version,
                &*s.accounts,
                &s.supply,
                &*s.proposals,
            ),
            (
                &s.next_nep,
                &*s.timed,
                &*s.effects,
                &*s.open_snapshots,
                &*s.open_drafts,
            ),
            (&s.open_proposals, &s.pending_emergencies, &*s.certificates),
            (&s.certified_version, &s.state_bytes),
        );
        assert_eq!(
            postcard::to_allocvec(s).unwrap(),
            postcard::to_allocvec(&plain).unwrap()
        );
    }
}
