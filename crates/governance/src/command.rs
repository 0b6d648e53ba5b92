//! Signed client commands and the log entries the node proposes (DESIGN §4).

use ed25519_dalek::{Signer, SigningKey};
use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::certificate::IssuedCertificate;
use crate::nep::NepContent;
use crate::types::{AccountId, Amount, NepId};

/// How an account votes. Shares its codes with the certificate crate's
/// ballot leaves.
pub use neuroshard_certificate::merkle::BallotChoice as VoteChoice;

/// What a client asks for. `Tick` and `CertificateIssued` are not commands:
/// only the node proposes them, as [`Entry`] variants, so no client signature
/// can ever produce one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Moves balance to another account, creating it.
    Transfer { to: AccountId, amount: Amount },
    /// Moves balance into stake.
    Stake { amount: Amount },
    /// Moves stake back to balance; stake that voted on an open vote is locked.
    Unstake { amount: Amount },
    /// Creates a DRAFT (not for EMERG).
    CreateDraft { content: NepContent },
    /// Replaces a DRAFT's content (author only).
    AmendDraft { nep: NepId, content: NepContent },
    /// DRAFT → REVIEW; burns the proposal fee.
    Submit { nep: NepId },
    /// DRAFT or REVIEW → WITHDRAWN (author only; no refund).
    Withdraw { nep: NepId },
    /// Casts or replaces this account's ballot on an open vote.
    Vote { nep: NepId, choice: VoteChoice },
    /// A validator's identity key submits an EMERG NEP (no stake, no fee).
    SubmitEmergency { content: NepContent },
    /// A validator's identity key approves an EMERG NEP.
    EmergencyApprove { nep: NepId },
}

impl Command {
    /// Short name for logs and receipts.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Transfer { .. } => "transfer",
            Command::Stake { .. } => "stake",
            Command::Unstake { .. } => "unstake",
            Command::CreateDraft { .. } => "create-draft",
            Command::AmendDraft { .. } => "amend-draft",
            Command::Submit { .. } => "submit",
            Command::Withdraw { .. } => "withdraw",
            Command::Vote { .. } => "vote",
            Command::SubmitEmergency { .. } => "submit-emergency",
            Command::EmergencyApprove { .. } => "emergency-approve",
        }
    }
}

/// An ed25519 signature; hex in human-readable formats.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CommandSignature(pub [u8; 64]);

impl std::fmt::Debug for CommandSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CommandSignature({})", hex::encode(self.0))
    }
}

impl Serialize for CommandSignature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(self.0))
        } else {
            // serde implements arrays only up to 32 elements.
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for CommandSignature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            let mut out = [0u8; 64];
            hex::decode_to_slice(&s, &mut out).map_err(D::Error::custom)?;
            Ok(Self(out))
        } else {
            d.deserialize_bytes(SignatureVisitor)
        }
    }
}

struct SignatureVisitor;

impl<'de> serde::de::Visitor<'de> for SignatureVisitor {
    type Value = CommandSignature;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("64 signature bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        <[u8; 64]>::try_from(v)
            .map(CommandSignature)
            .map_err(|_| E::invalid_length(v.len(), &self))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = [0u8; 64];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = seq
                .next_element()?
                .ok_or_else(|| A::Error::invalid_length(i, &self))?;
        }
        if seq.next_element::<u8>()?.is_some() {
            return Err(A::Error::invalid_length(65, &self));
        }
        Ok(CommandSignature(out))
    }
}

/// A command with its author's key, nonce and signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCommand {
    /// The author's ed25519 public key.
    pub author: AccountId,
    /// Exactly one more than the author's last accepted nonce (first is 1).
    pub nonce: u64,
    pub command: Command,
    pub signature: CommandSignature,
}

/// Domain tag of the signed message.
const SIGNING_DOMAIN: &[u8] = b"neuroshard/command/v1\0";

/// The exact bytes an author signs:
/// `"neuroshard/command/v1\0" || u32 len(chain_id) || chain_id || author ||
/// u64 nonce || postcard(command)` (integers big-endian). The chain id makes a
/// command useless on any other chain.
pub fn signing_message(
    chain_id: &str,
    author: &AccountId,
    nonce: u64,
    command: &Command,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNING_DOMAIN.len() + chain_id.len() + 96);
    out.extend_from_slice(SIGNING_DOMAIN);
    out.extend_from_slice(&(chain_id.len() as u32).to_be_bytes());
    out.extend_from_slice(chain_id.as_bytes());
    out.extend_from_slice(&author.0);
    out.extend_from_slice(&nonce.to_be_bytes());
    // postcard into a Vec cannot fail for these plain types.
    postcard::to_extend(command, out).expect("encoding a command into a Vec cannot fail")
}

impl SignedCommand {
    /// Signs `command` as the account of `key`.
    pub fn sign(chain_id: &str, key: &SigningKey, nonce: u64, command: Command) -> Self {
        let author = AccountId(key.verifying_key().to_bytes());
        let message = signing_message(chain_id, &author, nonce, &command);
        let signature = key.sign(&message);
        Self {
            author,
            nonce,
            command,
            signature: CommandSignature(signature.to_bytes()),
        }
    }

    /// The signed message of this command on `chain_id`.
    pub fn message(&self, chain_id: &str) -> Vec<u8> {
        signing_message(chain_id, &self.author, self.nonce, &self.command)
    }

    /// SHA-256 of the signed message: "same nonce, same bytes" for retries.
    pub fn digest(&self, chain_id: &str) -> [u8; 32] {
        Sha256::digest(self.message(chain_id)).into()
    }
}

/// One replicated log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// A client's signed command.
    Command(SignedCommand),
    /// The leader's clock; committed time = max(previous, now_ms).
    Tick { now_ms: u64 },
    /// A combined certificate, verified by every replica before it is applied.
    CertificateIssued(IssuedCertificate),
    /// Client commands the leader batched into one entry (log format 3),
    /// applied in order; command `k` has position (log index, `k`). Only
    /// client commands share an entry: ticks and certificates are always
    /// entries of their own, so every decision a tick makes, and every
    /// stake snapshot a vote reads, falls between whole entries.
    Commands(Vec<SignedCommand>),
}

impl Entry {
    /// The client commands this entry carries, in order.
    pub fn commands(&self) -> &[SignedCommand] {
        match self {
            Entry::Command(c) => std::slice::from_ref(c),
            Entry::Commands(cs) => cs,
            Entry::Tick { .. } | Entry::CertificateIssued(_) => &[],
        }
    }
}
