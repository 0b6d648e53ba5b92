//! A deterministic test chain: genesis with funded users and a real BLS
//! committee, signing with the next nonce, ticking, and issuing every
//! pending certificate the way the node does. For this crate's tests and
//! benches and for other crates' tests (feature `testkit`). Keys come from
//! fixed seeds: never use them outside tests.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use neuroshard_certificate::scheme::{DealtKeys, SchemeId};
use neuroshard_certificate::{CommitteeInfo, Envelope, ShareIndex};
use sha2::{Digest, Sha256};

use crate::certificate::{CertificateShare, IssuedCertificate};
use crate::command::{Command, Entry, SignedCommand};
use crate::genesis::{Allocation, CommitteeGenesis, Genesis, GenesisValidator, ParamInput};
use crate::receipt::Outcome;
use crate::state::GovernanceState;
use crate::types::{AccountId, Amount, NEURO};

/// Shape of a test chain.
#[derive(Clone, Debug)]
pub struct TestConfig {
    pub chain_id: String,
    pub users: usize,
    pub user_balance: Amount,
    pub user_staked: Amount,
    pub validators: u32,
    pub genesis_time_ms: u64,
    /// `gov.day_ms`: a governance day, short so tests run fast.
    pub day_ms: i64,
    pub extra_parameters: Vec<(String, ParamInput)>,
    /// `Genesis::checkpoint_interval`: short, so tests certify checkpoints.
    pub checkpoint_interval: u64,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self {
            chain_id: "neuroshard-test".to_owned(),
            users: 4,
            user_balance: Amount(1_000 * NEURO),
            user_staked: Amount(1_000 * NEURO),
            validators: 4,
            genesis_time_ms: 1_700_000_000_000,
            day_ms: 1_000,
            extra_parameters: Vec::new(),
            checkpoint_interval: 50,
        }
    }
}

/// The ed25519 key of test user `i` (deterministic).
pub fn user_key(i: usize) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    seed[8] = 0x55;
    SigningKey::from_bytes(&seed)
}

/// The ed25519 identity key of test validator `i` (deterministic).
pub fn validator_key(i: u32) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_be_bytes());
    seed[8] = 0xaa;
    SigningKey::from_bytes(&seed)
}

pub fn account_of(key: &SigningKey) -> AccountId {
    AccountId(key.verifying_key().to_bytes())
}

/// A genesis for `config` plus the dealt BLS keys of its committee.
pub fn genesis(config: &TestConfig) -> (Genesis, DealtKeys) {
    let n = config.validators;
    let t = crate::quorum::byzantine_quorum(n) - 1;
    let dealt = SchemeId::G2Rfc9380
        .scheme()
        .deal(t, n, &[7u8; 32])
        .expect("dealing a valid committee");
    let validators: Vec<GenesisValidator> = (0..n)
        .map(|i| GenesisValidator {
            index: i,
            identity: account_of(&validator_key(i)),
        })
        .collect();
    let mut set_hash = Sha256::new();
    for v in &validators {
        set_hash.update(v.index.to_be_bytes());
        set_hash.update(v.identity.0);
    }
    let info = CommitteeInfo {
        chain_id: config.chain_id.clone(),
        scheme: SchemeId::G2Rfc9380,
        group_public_key: dealt.public_key_set.group_public_key().to_bytes(),
        t,
        n,
        epoch: 1,
        genesis_time_ms: config.genesis_time_ms,
        validator_set_hash: set_hash.finalize().into(),
    };
    let mut parameters = BTreeMap::new();
    parameters.insert("gov.day_ms".to_owned(), ParamInput::Integer(config.day_ms));
    for (k, v) in &config.extra_parameters {
        parameters.insert(k.clone(), v.clone());
    }
    let genesis = Genesis {
        chain_id: config.chain_id.clone(),
        genesis_time_ms: config.genesis_time_ms,
        block_interval_ms: 100,
        protocol_version: crate::types::ProtocolVersion { major: 1, minor: 0 },
        allocations: (0..config.users)
            .map(|i| Allocation {
                account: account_of(&user_key(i)),
                balance: config.user_balance,
                staked: config.user_staked,
            })
            .collect(),
        validators,
        committee: CommitteeGenesis {
            info,
            public_key_set: Some(dealt.public_key_set.to_bytes()),
        },
        committee_hash: None,
        parameters,
        checkpoint_interval: config.checkpoint_interval,
    };
    (genesis, dealt)
}

/// A state machine driven like the node drives it.
pub struct TestChain {
    pub genesis: Genesis,
    pub dealt: DealtKeys,
    pub state: GovernanceState,
    pub next_index: u64,
    pub now_ms: u64,
    nonces: BTreeMap<AccountId, u64>,
}

impl TestChain {
    pub fn new(config: &TestConfig) -> Self {
        let (genesis, dealt) = genesis(config);
        let state = GovernanceState::from_genesis(&genesis).expect("test genesis is valid");
        Self {
            now_ms: genesis.genesis_time_ms,
            genesis,
            dealt,
            state,
            next_index: 1,
            nonces: BTreeMap::new(),
        }
    }

    pub fn day_ms(&self) -> u64 {
        self.state.params().gov().day_ms
    }

    /// Signs `command` with `key`'s next nonce (not yet applied).
    pub fn sign(&mut self, key: &SigningKey, command: Command) -> SignedCommand {
        let nonce = self.nonces.entry(account_of(key)).or_insert(0);
        *nonce += 1;
        SignedCommand::sign(&self.genesis.chain_id, key, *nonce, command)
    }

    /// Applies any entry at the next log index.
    pub fn apply(&mut self, entry: Entry) -> Outcome {
        let index = self.next_index;
        self.next_index += 1;
        self.state.apply(index, &entry)
    }

    /// Signs and applies a command.
    pub fn exec(&mut self, key: &SigningKey, command: Command) -> Outcome {
        let signed = self.sign(key, command);
        self.apply(Entry::Command(signed))
    }

    /// Applies a tick at `now_ms`.
    pub fn tick_at(&mut self, now_ms: u64) -> Outcome {
        self.now_ms = self.now_ms.max(now_ms);
        self.apply(Entry::Tick { now_ms })
    }

    /// Advances time by `ms` with one tick.
    pub fn advance_ms(&mut self, ms: u64) -> Outcome {
        let t = self.now_ms + ms;
        self.tick_at(t)
    }

    /// Advances by whole governance days.
    pub fn advance_days(&mut self, days: u64) -> Outcome {
        let ms = days * self.day_ms();
        self.advance_ms(ms)
    }

    /// Builds the `CertificateIssued` entry for pending certificate
    /// `sequence` from t+1 validators' shares, as the leader would.
    pub fn issued_certificate(&self, sequence: u64) -> Option<IssuedCertificate> {
        let pending = self
            .state
            .pending_certificates()
            .into_iter()
            .find(|p| p.sequence == sequence)?;
        let scheme = SchemeId::G2Rfc9380.scheme();
        let keys = &self.dealt.public_key_set;
        let message = neuroshard_certificate::signing_message(&pending.payload);
        let needed = keys.threshold() as usize + 1;
        let shares: Vec<(ShareIndex, _)> = (0..needed)
            .map(|i| {
                let share = scheme
                    .sign_share(&self.dealt.secret_key_shares[i], &message)
                    .expect("test share signs");
                (ShareIndex(i as u32), share)
            })
            .collect();
        let envelope = Envelope::combine(keys, &shares, pending.payload.clone(), 1)
            .expect("test shares combine");
        Some(IssuedCertificate {
            sequence,
            envelope,
            shares: shares
                .iter()
                .map(|(i, s)| CertificateShare {
                    validator: i.0,
                    share: s.to_bytes().to_vec(),
                })
                .collect(),
        })
    }

    /// Issues every pending certificate.
    pub fn issue_pending(&mut self) -> Vec<Outcome> {
        let seqs: Vec<u64> = self
            .state
            .pending_certificates()
            .iter()
            .map(|p| p.sequence)
            .collect();
        let issued: Vec<IssuedCertificate> = seqs
            .into_iter()
            .filter_map(|s| self.issued_certificate(s))
            .collect();
        issued
            .into_iter()
            .map(|c| self.apply(Entry::CertificateIssued(c)))
            .collect()
    }
}
