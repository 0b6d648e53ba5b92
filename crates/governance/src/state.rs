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
use crate::params::ParameterSet;
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovernanceState {
    pub(crate) chain: ChainInfo,
    /// Validator identity key → committee index.
    pub(crate) validators: BTreeMap<AccountId, u32>,
    /// Last applied log index (`None` before the first entry).
    pub(crate) last_index: Option<u64>,
    pub(crate) committed_ms: Timestamp,
    pub(crate) params: ParameterSet,
    pub(crate) version: ProtocolVersion,
    pub(crate) accounts: BTreeMap<AccountId, Account>,
    pub(crate) supply: Supply,
    pub(crate) proposals: BTreeMap<NepId, Proposal>,
    pub(crate) next_nep: u64,
    /// NEPs waiting for a tick-driven transition (REVIEW, VOTING,
    /// AWAITING_APPROVAL, EMERG ratification), visited in id order.
    pub(crate) timed: BTreeSet<NepId>,
    /// Activations and revocations not yet in effect, by certificate sequence.
    pub(crate) effects: BTreeMap<u64, PendingEffect>,
    /// Snapshot index of every open vote → how many votes use it.
    pub(crate) open_snapshots: BTreeMap<u64, u32>,
    /// Drafts plus proposals in REVIEW per author.
    pub(crate) open_drafts: BTreeMap<AccountId, u32>,
    /// Proposals not in a final stage.
    pub(crate) open_proposals: u32,
    /// EMERG NEPs awaiting approval.
    pub(crate) pending_emergencies: u32,
    pub(crate) certificates: BTreeMap<u64, CertificateRecord>,
    /// The version_after of the last certificate (genesis version before any).
    pub(crate) certified_version: ProtocolVersion,
    /// Bytes charged to the state budget (`budget.rs`), kept incrementally.
    pub(crate) state_bytes: u64,
}

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
const STATE_HASH_DOMAIN: &[u8] = b"neuroshard/state/v1";

const HASH_CHUNK_BYTES: usize = 64 * 1024;

/// A postcard output that hashes what it is given instead of keeping it.
struct HashingFlavor {
    hasher: Sha256,
    buffer: Vec<u8>,
}

impl postcard::ser_flavors::Flavor for HashingFlavor {
    type Output = [u8; 32];

    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        if self.buffer.len() == HASH_CHUNK_BYTES {
            self.hasher.update(&self.buffer);
            self.buffer.clear();
        }
        self.buffer.push(b);
        Ok(())
    }

    fn try_extend(&mut self, b: &[u8]) -> postcard::Result<()> {
        if self.buffer.len() + b.len() > HASH_CHUNK_BYTES {
            self.hasher.update(&self.buffer);
            self.buffer.clear();
        }
        if b.len() >= HASH_CHUNK_BYTES {
            self.hasher.update(b);
        } else {
            self.buffer.extend_from_slice(b);
        }
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<[u8; 32]> {
        self.hasher.update(&self.buffer);
        Ok(self.hasher.finalize().into())
    }
}

/// What [`GovernanceState::apply_batch`] already knows about a command's
/// signature, so a command is verified exactly once.
enum SignatureCheck<'m> {
    /// Not verified yet: `apply_command` verifies it on its own.
    Unchecked,
    /// Verified (ZIP-215); the signed message, reused for the retry digest.
    Valid(&'m [u8]),
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
            accounts,
            supply,
            proposals: BTreeMap::new(),
            next_nep: 1,
            timed: BTreeSet::new(),
            effects: BTreeMap::new(),
            open_snapshots: BTreeMap::new(),
            open_drafts: BTreeMap::new(),
            open_proposals: 0,
            pending_emergencies: 0,
            certificates: BTreeMap::new(),
            certified_version: g.protocol_version,
            state_bytes: 0,
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
        state.assert_invariants();
        Ok(state)
    }

    /// Applies one committed entry. Every replica calls this with the same
    /// `(log_index, entry)` sequence and reaches the same state.
    pub fn apply(&mut self, log_index: u64, entry: &Entry) -> Outcome {
        self.apply_checked(log_index, entry, SignatureCheck::Unchecked)
    }

    /// Applies entries in order, verifying the command signatures in ed25519
    /// batches first ([`signature::verify_each`]); a batch that fails is
    /// redone one signature at a time, so one bad signature refuses only its
    /// own command. The outcome of every entry is the same as with `apply`.
    pub fn apply_batch(&mut self, entries: &[(u64, Entry)]) -> Vec<Outcome> {
        let messages: Vec<Option<Vec<u8>>> = entries
            .iter()
            .map(|(_, e)| match e {
                Entry::Command(c) => Some(c.message(&self.chain.chain_id)),
                _ => None,
            })
            .collect();
        let items: Vec<signature::BatchItem<'_>> = entries
            .iter()
            .zip(&messages)
            .filter_map(|((_, e), m)| match (e, m) {
                (Entry::Command(c), Some(m)) => Some((&c.author, m.as_slice(), &c.signature.0)),
                _ => None,
            })
            .collect();
        let mut verdicts = signature::verify_each(&items).into_iter();
        entries
            .iter()
            .zip(&messages)
            .map(|((index, entry), message)| {
                // One verdict per command, in entry order; entries without a
                // signature (ticks, certificates) must not consume one.
                let check = match message {
                    None => SignatureCheck::Unchecked,
                    Some(m) => match verdicts.next() {
                        Some(true) => SignatureCheck::Valid(m),
                        Some(false) => SignatureCheck::Invalid,
                        // Unreachable (one verdict per message), and safe:
                        // the command is then verified on its own.
                        None => SignatureCheck::Unchecked,
                    },
                };
                self.apply_checked(*index, entry, check)
            })
            .collect()
    }

    /// `check`: what `apply_batch` already knows about a command's signature.
    fn apply_checked(
        &mut self,
        log_index: u64,
        entry: &Entry,
        check: SignatureCheck<'_>,
    ) -> Outcome {
        if let Some(last) = self.last_index {
            if log_index <= last {
                return Err(GovError::LogIndexNotIncreasing {
                    index: log_index,
                    last,
                });
            }
        }
        let outcome = match entry {
            Entry::Command(c) => self.apply_command(log_index, c, check),
            Entry::Tick { now_ms } => Ok(self.tick(log_index, Timestamp(*now_ms))),
            Entry::CertificateIssued(c) => self.record_issued(log_index, c),
        };
        self.last_index = Some(log_index);
        self.assert_invariants();
        outcome
    }

    fn apply_command(
        &mut self,
        log_index: u64,
        c: &SignedCommand,
        check: SignatureCheck<'_>,
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
        let owned;
        let message = match check {
            SignatureCheck::Valid(m) => m,
            SignatureCheck::Invalid => return Err(GovError::BadSignature { author: c.author }),
            SignatureCheck::Unchecked => {
                owned = c.message(&self.chain.chain_id);
                if !signature::verify_one(&c.author, &owned, &c.signature.0) {
                    return Err(GovError::BadSignature { author: c.author });
                }
                &owned
            }
        };
        let account = self
            .accounts
            .get(&c.author)
            .ok_or(GovError::UnknownAccount { account: c.author })?;
        let expected = account.nonce + 1;
        let digest: [u8; 32] = Sha256::digest(message).into();
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
        let outcome = self.execute(log_index, c.author, &c.command);
        let account = self
            .accounts
            .get_mut(&c.author)
            .expect("author account exists: checked above and never removed");
        account.nonce = c.nonce;
        account.remember(c.nonce, digest, outcome.clone(), log_index);
        outcome
    }

    fn execute(&mut self, log_index: u64, author: AccountId, command: &Command) -> Outcome {
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
        Ok(self.receipt(log_index, effect))
    }

    pub(crate) fn receipt(&self, log_index: u64, effect: Effect) -> Receipt {
        Receipt {
            log_index,
            committed_ms: self.committed_ms,
            effect,
        }
    }

    /// SHA-256 over the canonical encoding of the whole state: equal on two
    /// replicas iff their states are byte-identical.
    ///
    /// The encoding is streamed into the hash in 64 KiB pieces: no copy of
    /// the state is allocated (a full state is hundreds of MiB).
    pub fn state_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(STATE_HASH_DOMAIN);
        let flavor = HashingFlavor {
            hasher: h,
            buffer: Vec::with_capacity(HASH_CHUNK_BYTES),
        };
        // Plain values and ordered collections: serializing cannot fail.
        postcard::serialize_with_flavor(self, flavor).expect("state encodes")
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

    /// The streamed hash is SHA-256 of the domain and the whole encoding.
    #[test]
    fn the_streamed_hash_equals_the_hash_of_the_encoding() {
        let mut c = crate::testkit::TestChain::new(&crate::testkit::TestConfig {
            users: 300,
            ..Default::default()
        });
        for i in 0..50 {
            let key = crate::testkit::user_key(i);
            let _ = c.exec(
                &key,
                Command::Stake {
                    amount: crate::types::Amount(1),
                },
            );
        }
        // A draft whose specification is one write of a whole chunk.
        let mut content = crate::nep::NepContent {
            title: "big".into(),
            nep_type: crate::nep::NepType::Train,
            motivation: "m".into(),
            specification: "s".repeat(crate::limits::MAX_SPEC_BYTES),
            parameter_changes: vec![crate::nep::ParameterChange {
                key: "train.prediction_heads".into(),
                expected_old: crate::params::ParamValue::Integer(1),
                new: crate::params::ParamValue::Integer(2),
            }],
            economic_impact: crate::nep::EconomicImpact {
                training_efficiency_multiplier: crate::types::Micro::ONE,
                training_reward_multiplier: crate::types::Micro::ONE,
                net_earnings_change_percent: crate::types::Micro(0),
                summary: "none".into(),
            },
            upgrade_path: crate::nep::UpgradePath {
                grace_period_days: 7,
                backward_compatible: true,
            },
        };
        c.exec(
            &crate::testkit::user_key(0),
            Command::CreateDraft {
                content: content.clone(),
            },
        )
        .expect("draft");
        content.specification.truncate(1000);
        c.exec(
            &crate::testkit::user_key(1),
            Command::CreateDraft { content },
        )
        .expect("draft");
        let mut h = Sha256::new();
        h.update(STATE_HASH_DOMAIN);
        h.update(c.state.encode());
        let expected: [u8; 32] = h.finalize().into();
        assert!(c.state.encode().len() > HASH_CHUNK_BYTES);
        assert_eq!(c.state.state_hash(), expected);
    }
}
