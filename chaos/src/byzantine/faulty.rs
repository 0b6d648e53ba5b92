//! The faulty validator: the suite itself, holding one validator's own key
//! files (its TLS key and certificate, its BLS share), sending the others
//! what no honest validator sends. Nothing here goes through the
//! validator's own process: the channel is the one that process would
//! open (`neuroshard_node::transport::peer_client::connect_as`).

use std::path::PathBuf;
use std::time::Duration;

use neuroshard_node::proto;
use neuroshard_node::proto::raft_peer_client::RaftPeerClient;
use neuroshard_node::status::NodeStatus;
use neuroshard_node::transport::convert;
use neuroshard_node::transport::peer_client::connect_as;
use neuroshard_node::transport::tls::TlsMaterial;
use neuroshard_node::types::{LogId, RaftEntry, TypeConfig, Vote};
use neuroshard_node::NodeConfig;
use openraft::{CommittedLeaderId, EntryPayload};
use tonic::transport::Channel;

use crate::real::error::RealError;

/// Longest a connection or one call of the faulty validator may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

pub type Payload = EntryPayload<TypeConfig>;

/// The committee as the faulty validator knows it: every validator's
/// node.toml (its own key files, the others' addresses).
#[derive(Clone)]
pub struct Keys {
    pub configs: Vec<PathBuf>,
    pub ca: PathBuf,
    pub api_addrs: Vec<String>,
}

/// How one message was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Refused with FailedPrecondition naming this rule (the text after
    /// "refused before Raft (").
    Refused { rule: String, message: String },
    /// Taken (a Raft answer came back).
    Taken(String),
    /// Not delivered: no connection, or another error.
    Undelivered(String),
}

impl Answer {
    pub fn from_status(status: &tonic::Status) -> Self {
        let message = status.message().to_owned();
        if status.code() == tonic::Code::FailedPrecondition {
            if let Some(rest) = message.split("refused before Raft (").nth(1) {
                let rule = rest.split(')').next().unwrap_or_default().to_owned();
                return Answer::Refused { rule, message };
            }
            // A Raft error (a vote or log mismatch) is an answer of Raft.
            return Answer::Taken(format!("raft error: {message}"));
        }
        Answer::Undelivered(format!("{:?}: {message}", status.code()))
    }

    pub fn rule(&self) -> Option<&str> {
        match self {
            Answer::Refused { rule, .. } => Some(rule),
            _ => None,
        }
    }
}

impl Keys {
    fn config(&self, i: usize) -> Result<NodeConfig, RealError> {
        NodeConfig::load(&self.configs[i])
            .map_err(|e| RealError::invalid(self.configs[i].display().to_string(), e))
    }

    /// A channel to validator `to`'s peer listener presenting validator
    /// `me`'s own certificate.
    pub async fn channel_as(&self, me: usize, to: usize) -> Result<Channel, String> {
        let mine = self.config(me).map_err(|e| e.to_string())?;
        let tls = TlsMaterial::load(&mine.tls.ca_cert, &mine.tls.cert, &mine.tls.key)
            .map_err(|e| format!("validator {me}'s TLS material: {e}"))?;
        let target = self.config(to).map_err(|e| e.to_string())?;
        connect_as(&tls, to as u64, &target.peer_listen, CALL_TIMEOUT).await
    }

    pub async fn peer_as(&self, me: usize, to: usize) -> Result<RaftPeerClient<Channel>, String> {
        self.channel_as(me, to).await.map(RaftPeerClient::new)
    }

    /// Validator `i`'s status (role, log, ignored validators, refusals,
    /// certified checkpoint, divergence) from its API listener.
    pub async fn status(&self, i: usize) -> Option<NodeStatus> {
        let endpoint = format!("https://{}", self.api_addrs[i]);
        let mut c = neuroshard_node::client::ApiClient::connect(&endpoint, &self.ca, CALL_TIMEOUT)
            .await
            .ok()?;
        tokio::time::timeout(CALL_TIMEOUT, c.status())
            .await
            .ok()?
            .ok()
    }

    /// The next nonce of `account` as validator `i` has applied it.
    pub async fn next_nonce(
        &self,
        i: usize,
        account: &neuroshard_governance::AccountId,
    ) -> Option<u64> {
        let endpoint = format!("https://{}", self.api_addrs[i]);
        let mut c = neuroshard_node::client::ApiClient::connect(&endpoint, &self.ca, CALL_TIMEOUT)
            .await
            .ok()?;
        tokio::time::timeout(CALL_TIMEOUT, c.account(account))
            .await
            .ok()?
            .ok()
            .map(|a| a.next_nonce)
    }

    pub async fn statuses(&self) -> Vec<Option<NodeStatus>> {
        let mut out = Vec::new();
        for i in 0..self.configs.len() {
            out.push(self.status(i).await);
        }
        out
    }

    /// The validator's own keys (identity, BLS share).
    pub fn validator_keys(
        &self,
        i: usize,
        genesis: &neuroshard_governance::Genesis,
    ) -> Result<neuroshard_node::keys::ValidatorKeys, RealError> {
        let config = self.config(i)?;
        neuroshard_node::keys::load_validator_keys(
            i as u64,
            genesis,
            &config.keys.identity,
            &config.keys.bls_share,
        )
        .map_err(|e| RealError::invalid(format!("validator {i}'s keys"), e))
    }
}

/// A log id of `leader` in `term`.
pub fn log_id(term: u64, leader: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, leader), index)
}

/// An AppendEntries of `leader` in `term` carrying `entries` right after
/// index `after` (taken to be `leader`'s own entry of `term`).
pub fn append(
    leader: u64,
    term: u64,
    after: u64,
    leader_commit: Option<u64>,
    payloads: Vec<Payload>,
) -> Result<proto::AppendEntriesRequest, String> {
    let rpc = openraft::raft::AppendEntriesRequest {
        vote: Vote::new_committed(term, leader),
        prev_log_id: Some(log_id(term, leader, after)),
        leader_commit: leader_commit.map(|c| log_id(term, leader, c)),
        entries: payloads
            .into_iter()
            .enumerate()
            .map(|(k, payload)| RaftEntry {
                log_id: log_id(term, leader, after + 1 + k as u64),
                payload,
            })
            .collect(),
    };
    convert::append_request_to(&rpc).map_err(|e| e.to_string())
}

/// Sends one AppendEntries as validator `me` to validator `to`.
pub async fn send_append(
    keys: &Keys,
    me: usize,
    to: usize,
    request: proto::AppendEntriesRequest,
) -> Answer {
    let mut client = match keys.peer_as(me, to).await {
        Ok(c) => c,
        Err(e) => return Answer::Undelivered(e),
    };
    match tokio::time::timeout(CALL_TIMEOUT, client.append_entries(request)).await {
        Err(_) => Answer::Undelivered("timed out".into()),
        Ok(Err(status)) => Answer::from_status(&status),
        Ok(Ok(r)) => Answer::Taken(match r.into_inner().result {
            Some(proto::append_entries_response::Result::Success(_)) => "success".into(),
            other => format!("{other:?}"),
        }),
    }
}
