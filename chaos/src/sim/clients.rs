//! The simulated clients: the model's workload (an author drafting and
//! submitting NEPs, voters voting continuously across each closing tick, a
//! latecomer) driven over the real public API of the simulated validators,
//! through TLS, with every unanswered command re-sent byte for byte.
//!
//! Each client sends one command at a time to a validator (its home, then
//! the next one after every unanswered attempt), waits at most
//! [`ATTEMPT_TIMEOUT`] for the answer and records the attempt and what it
//! learned. Setup commands (stakes, drafts, submissions) are never given up
//! and a refusal of one stops the run: setup is not under test. A voter
//! gives up a vote after `max_attempts` unanswered sends and asks the API
//! for its account's next nonce, as a real client must.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use neuroshard_governance::{
    Amount, Command, Effect, GovError, NepContent, Outcome, Receipt, SignedCommand, VoteChoice,
    NEURO,
};
use neuroshard_node::api_proto as api;
use neuroshard_node::api_proto::governance_client::GovernanceClient;
use neuroshard_node::transport::api_service::MAX_API_MESSAGE_BYTES;
use neuroshard_node::transport::net::tls_connector;
use neuroshard_node::ApiError;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tonic::transport::{Channel, Endpoint};

use crate::history::{Event, Invoke};
use crate::model::workload::{Client, Pending, Role};
use crate::observe::{client_result, command_summary, unknown_result, Attempt};
use crate::rule::PRE_EXECUTION_RULES;
use crate::sim::clock;
use crate::sim::journal::Journal;
use crate::sim::net::SimNetwork;
use crate::sim::pki::host_name;
use crate::sim::validator::API_PORT;

/// Longest a client waits for one attempt's answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_500);
/// Most clients one run drives.
pub const MAX_CLIENTS: usize = 66;

/// What the clients share with the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub ops: u64,
    pub attempts: u64,
    pub unanswered: u64,
    pub votes_acknowledged: u64,
    pub votes_refused_closed: u64,
}

/// The workload of one run.
pub struct ClientsSetup {
    pub epoch_ms: u64,
    pub chain_id: String,
    pub seed: u64,
    pub validators: u32,
    pub voters: usize,
    pub contents: Vec<NepContent>,
    /// Time between two decisions of a client.
    pub step_ms: u64,
    /// Chance per step that an idle voter votes, in thousandths.
    pub vote_per_mille: u32,
    /// Sends of one vote before the voter gives it up.
    pub max_attempts: u32,
    pub tls: Arc<rustls::ClientConfig>,
    pub network: SimNetwork,
    pub journal: Journal,
    pub stop: Arc<AtomicBool>,
    pub stats: Arc<Mutex<ClientStats>>,
}

impl ClientsSetup {
    fn stats(&self) -> MutexGuard<'_, ClientStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why the clients stopped the run.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client {client}: setup command {command} was refused: {error}")]
    Setup {
        client: u32,
        command: &'static str,
        error: GovError,
    },
    #[error(
        "client {client}: validator {validator} answered a receipt that does not decode: {message}"
    )]
    BadReceipt {
        client: u32,
        validator: u32,
        message: String,
    },
    #[error("API endpoint {addr}: {message}")]
    Endpoint { addr: String, message: String },
}

/// The clients' software: one task per client, until the driver stops them.
pub async fn run(setup: Arc<ClientsSetup>) -> turmoil::Result {
    let voters = setup.voters;
    let preferences = [
        VoteChoice::Yes,
        VoteChoice::Yes,
        VoteChoice::No,
        VoteChoice::Yes,
        VoteChoice::Abstain,
        VoteChoice::Yes,
    ];
    let mut clients: Vec<(Client, VecDeque<Command>)> = (0..voters)
        .map(|i| {
            let preference = preferences[i % preferences.len()];
            // Those who favour the change stake nearly all their balance
            // before the snapshot, so most votes pass (and certificates get
            // issued) despite the voters' changes of mind; some still fail.
            let extra = if preference == VoteChoice::Yes {
                990
            } else {
                10
            };
            let stake = Command::Stake {
                amount: Amount(NEURO * extra + i as u64),
            };
            let role = Role::Voter { preference };
            (
                Client::new(i as u32, user_key(i), role),
                VecDeque::from([stake]),
            )
        })
        .collect();
    clients.push((
        Client::new(voters as u32, user_key(voters), Role::Latecomer),
        VecDeque::new(),
    ));
    clients.push((
        Client::new(
            voters as u32 + 1,
            user_key(voters + 1),
            Role::Author {
                contents: setup.contents.clone(),
                spacing_ms: 500,
                drafted: None,
                next_content: 0,
                last_submit_ms: None,
            },
        ),
        VecDeque::new(),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for (client, setup_commands) in clients {
        let driver = SimClient::new(setup.clone(), client, setup_commands)?;
        tasks.spawn_local(driver.run());
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

fn user_key(i: usize) -> SigningKey {
    neuroshard_governance::testkit::user_key(i)
}

/// What one attempt learned.
enum Answer {
    Known(Outcome, Option<u64>),
    Unknown,
}

struct SimClient {
    setup: Arc<ClientsSetup>,
    client: Client,
    /// Commands sent before the role's own (stakes), never given up.
    setup_commands: VecDeque<Command>,
    /// Whether the pending command is a setup command.
    reliable: bool,
    apis: Vec<GovernanceClient<Channel>>,
    target: u32,
    rng: ChaCha8Rng,
}

impl SimClient {
    fn new(
        setup: Arc<ClientsSetup>,
        client: Client,
        setup_commands: VecDeque<Command>,
    ) -> Result<Self, ClientError> {
        let apis = (0..setup.validators)
            .map(|v| api_client(&setup, v))
            .collect::<Result<Vec<_>, _>>()?;
        // One stream per client: what one client decides never depends on
        // how the others' tasks interleave.
        let mut rng = ChaCha8Rng::seed_from_u64(setup.seed);
        rng.set_stream(1_000 + u64::from(client.id));
        Ok(Self {
            target: client.id % setup.validators.max(1),
            setup,
            client,
            setup_commands,
            reliable: false,
            apis,
            rng,
        })
    }

    fn now(&self) -> u64 {
        clock::now_ms(self.setup.epoch_ms)
    }

    fn is_author(&self) -> bool {
        matches!(self.client.role, Role::Author { .. })
    }

    async fn run(mut self) -> Result<(), ClientError> {
        let step = Duration::from_millis(self.setup.step_ms);
        while !self.setup.stop.load(Ordering::Relaxed) {
            let now = self.now();
            if self.client.pending.is_none() {
                self.next(now);
            }
            let due = self
                .client
                .pending
                .as_ref()
                .is_some_and(|p| p.retry_at_ms <= now);
            if due {
                self.send().await?;
            }
            tokio::time::sleep(step).await;
        }
        Ok(())
    }

    /// Chooses the next command, if any.
    fn next(&mut self, now: u64) {
        let (command, reliable) = match self.setup_commands.pop_front() {
            Some(c) => (Some(c), true),
            None => {
                let open = self.setup.journal.open_votes(now);
                let per_mille = self.setup.vote_per_mille;
                let author = self.is_author();
                (
                    self.client
                        .next_command(now, &open, per_mille, &mut self.rng),
                    author,
                )
            }
        };
        let Some(command) = command else { return };
        let signed = SignedCommand::sign(
            &self.setup.chain_id,
            &self.client.key,
            self.client.next_nonce,
            command,
        );
        self.client.pending = Some(Pending {
            op: self.client.next_op,
            signed,
            attempt: 0,
            retry_at_ms: now,
        });
        self.reliable = reliable;
        self.client.next_op += 1;
        self.setup.stats().ops += 1;
    }

    /// Sends the pending command once and records what it learns.
    async fn send(&mut self) -> Result<(), ClientError> {
        let Some(p) = self.client.pending.as_ref() else {
            return Ok(());
        };
        let signed = p.signed.clone();
        let (op, attempt_no) = (p.op, p.attempt);
        let sent_at = self.now();
        self.setup.journal.record(Event::Invoke(Invoke {
            time_ms: sent_at,
            client: self.client.id,
            op,
            attempt: attempt_no,
            command: command_summary(&signed),
        }));
        self.setup.stats().attempts += 1;
        let validator = self.target;
        let answer = self.submit(validator, &signed).await?;
        let attempt = Attempt {
            time_ms: self.now(),
            client: self.client.id,
            op,
            attempt: attempt_no,
        };
        match answer {
            Answer::Unknown => {
                self.setup
                    .journal
                    .record(Event::Result(unknown_result(attempt)));
                self.setup.stats().unanswered += 1;
                // No answer: try the next validator.
                self.target = (self.target + 1) % self.setup.validators.max(1);
                let give_up = {
                    let p = self.client.pending.as_mut();
                    match p {
                        Some(p) => {
                            p.attempt += 1;
                            p.retry_at_ms =
                                attempt.time_ms + Client::backoff_ms(self.setup.step_ms, p.attempt);
                            !self.reliable && p.attempt >= self.setup.max_attempts
                        }
                        None => false,
                    }
                };
                if give_up {
                    self.client.pending = None;
                    self.refresh_nonce().await;
                }
            }
            Answer::Known(outcome, applied_at) => {
                self.setup
                    .journal
                    .record(Event::Result(client_result(attempt, &outcome, applied_at)));
                self.client.pending = None;
                match &outcome {
                    Ok(receipt) => {
                        self.client.next_nonce = signed.nonce + 1;
                        match receipt.effect {
                            Effect::DraftCreated { nep, .. } => self.client.drafted(nep),
                            Effect::Voted { .. } => self.setup.stats().votes_acknowledged += 1,
                            _ => {}
                        }
                    }
                    Err(e) => {
                        if self.reliable {
                            return Err(ClientError::Setup {
                                client: self.client.id,
                                command: signed.command.name(),
                                error: e.clone(),
                            });
                        }
                        if let GovError::VotingClosed { nep, .. } = e {
                            self.client.closed.insert(*nep);
                            self.setup.stats().votes_refused_closed += 1;
                        }
                        if PRE_EXECUTION_RULES.contains(&crate::rule::rule_name(e)) {
                            self.refresh_nonce().await;
                        } else {
                            self.client.next_nonce = signed.nonce + 1;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// One attempt at `validator`.
    async fn submit(
        &mut self,
        validator: u32,
        signed: &SignedCommand,
    ) -> Result<Answer, ClientError> {
        let bytes = match neuroshard_node::codec::encode("signed command", signed) {
            Ok(b) => b,
            // A command this client signed always encodes; if not, it
            // never reached anybody.
            Err(_) => return Ok(Answer::Unknown),
        };
        let Some(api) = self.apis.get_mut(validator as usize) else {
            return Ok(Answer::Unknown);
        };
        let request = api::SubmitRequest {
            command: Some(api::submit_request::Command::Postcard(bytes)),
        };
        let call = tokio::time::timeout(ATTEMPT_TIMEOUT, api.submit(request)).await;
        let response = match call {
            Err(_) => return Ok(Answer::Unknown),
            Ok(Err(status)) => {
                let e = ApiError::from(status);
                let applied_at = match &e {
                    ApiError::Status {
                        detail: Some(d), ..
                    } => d.log_index,
                    _ => None,
                };
                return Ok(match e.gov_error() {
                    Some(gov) => Answer::Known(Err(gov), applied_at),
                    // no_leader, timeout, forward_failed...: it may or may
                    // not have been applied.
                    None => Answer::Unknown,
                });
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        let receipt: Receipt =
            serde_json::from_str(&response.receipt_json).map_err(|e| ClientError::BadReceipt {
                client: self.client.id,
                validator,
                message: e.to_string(),
            })?;
        Ok(Answer::Known(Ok(receipt), Some(response.log_index)))
    }

    /// Asks the API (a linearizable read) for the next nonce, trying every
    /// validator in turn until one answers or the run stops.
    async fn refresh_nonce(&mut self) {
        let account = hex::encode(self.client.key.verifying_key().to_bytes());
        while !self.setup.stop.load(Ordering::Relaxed) {
            let validator = self.target;
            if let Some(api) = self.apis.get_mut(validator as usize) {
                let request = api::GetAccountRequest {
                    account: account.clone(),
                    read: Some(api::ReadOptions { stale: false }),
                };
                if let Ok(Ok(a)) =
                    tokio::time::timeout(ATTEMPT_TIMEOUT, api.get_account(request)).await
                {
                    self.client.next_nonce = a.into_inner().next_nonce;
                    return;
                }
            }
            self.target = (self.target + 1) % self.setup.validators.max(1);
            tokio::time::sleep(Duration::from_millis(self.setup.step_ms)).await;
        }
    }
}

/// A client of validator `v`'s public API over simulated TCP and TLS.
fn api_client(setup: &ClientsSetup, v: u32) -> Result<GovernanceClient<Channel>, ClientError> {
    let addr = format!("{}:{API_PORT}", host_name(v));
    let bad = |message: String| ClientError::Endpoint {
        addr: addr.clone(),
        message,
    };
    let server_name =
        rustls::pki_types::ServerName::try_from(host_name(v)).map_err(|e| bad(e.to_string()))?;
    let connector = tls_connector(
        Arc::new(setup.network.clone()),
        addr.clone(),
        server_name,
        setup.tls.clone(),
    );
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(ATTEMPT_TIMEOUT)
        .timeout(ATTEMPT_TIMEOUT)
        .connect_with_connector_lazy(connector);
    Ok(GovernanceClient::new(channel)
        .max_decoding_message_size(MAX_API_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_API_MESSAGE_BYTES))
}
