//! The workload client of a real-process run, driving the validators
//! through their public API exactly as a user would:
//!
//! * setup (not under test, so never given up): the treasury funds an
//!   author, a "whale", six voters and a latecomer, who all stake; the
//!   author drafts and submits the model's two NEPs
//!   ([`nep_contents`]) [`NEP_SPACING`] apart; the whale votes yes on each
//!   as soon as it opens. The whale holds most of the stake, so both NEPs
//!   are approved and certified whatever the voters end on: the
//!   certificate's decision index is what pins the closing tick;
//! * voters, one task each, run the model's client logic
//!   ([`Client::next_command`]): they vote continuously while a vote is
//!   open and a little past its deadline, sometimes changing their mind;
//!   the latecomer votes only once the deadline has passed. Every
//!   unanswered command is re-sent with identical bytes, to the next
//!   validator each time, with back-off, up to [`MAX_ATTEMPTS`] sends;
//!   then the client asks for its account's next nonce and moves on.
//!
//! Every send is an `invoke` and every answer (or timeout) a `result`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use neuroshard_governance::{
    AccountId, Amount, Command, Effect, GovError, NepId, Receipt, SignedCommand, VoteChoice, NEURO,
};
use neuroshard_node::api_proto as api;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use neuroshard_chaos::history::{Event, Invoke};
use neuroshard_chaos::model::workload::{nep_contents, Client, OpenVote, Pending, Role};
use neuroshard_chaos::observe::{client_result, command_summary, unknown_result, Attempt};
use neuroshard_chaos::rule::PRE_EXECUTION_RULES;

use super::api::{submit, Answer, Endpoints};
use super::error::RealError;
use super::journal::{now_ms, Journal};

/// Longest a client waits for one send's answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_500);
/// Sends per vote (first plus identical retries) before a voter gives up.
pub const MAX_ATTEMPTS: u32 = 8;
/// A voter's step: how often it considers sending something.
pub const STEP: Duration = Duration::from_millis(50);
/// Chance per step (per mille) that an idle voter votes.
pub const VOTE_PER_MILLE: u32 = 250;
/// First retry back-off (doubling up to the model's cap).
pub const BACKOFF_STEP_MS: u64 = 100;
/// Time between the author's two submissions.
pub const NEP_SPACING: Duration = Duration::from_millis(1_500);
/// Longest setup may take before the run is abandoned.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(40);
/// Regular voters (plus the whale and a latecomer).
pub const VOTERS: usize = 6;

/// Stakes in NEURO: the whale outweighs everybody else together twice, so
/// yes ≥ 66 % of yes + no whatever the others vote.
pub const WHALE_STAKE: u64 = 20_000;
pub const VOTER_STAKE: u64 = 1_000;
pub const AUTHOR_STAKE: u64 = 200;
/// Balance beyond the stake (fees).
pub const SPARE: u64 = 50;

/// Client ids in the history.
pub const TREASURY_CLIENT: u32 = 0;
pub const AUTHOR_CLIENT: u32 = 1;
pub const WHALE_CLIENT: u32 = 2;
pub const FIRST_VOTER_CLIENT: u32 = 3;

/// What every client task shares.
#[derive(Clone)]
pub struct Shared {
    pub journal: Arc<Journal>,
    pub endpoints: Endpoints,
    pub chain_id: String,
    /// Votes open so far (the voters' view).
    pub open: Arc<Mutex<Vec<OpenVote>>>,
    /// NEPs the author created, in order.
    pub neps: Arc<Mutex<Vec<NepId>>>,
    pub stop: Arc<AtomicBool>,
}

impl Shared {
    fn open_votes(&self) -> Vec<OpenVote> {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn nep_ids(&self) -> Vec<NepId> {
        self.neps.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// The accounts of a run.
pub struct Accounts {
    pub author: SigningKey,
    pub whale: SigningKey,
    /// Regular voters with their preference.
    pub voters: Vec<(SigningKey, VoteChoice)>,
    pub latecomer: SigningKey,
}

impl Accounts {
    /// Keys and preferences from `seed`: five voters prefer yes, one no.
    pub fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut key = || SigningKey::from_bytes(&rng.gen());
        let author = key();
        let whale = key();
        let voters = (0..VOTERS)
            .map(|i| {
                let preference = if i == VOTERS - 1 {
                    VoteChoice::No
                } else {
                    VoteChoice::Yes
                };
                (key(), preference)
            })
            .collect();
        Self {
            author,
            whale,
            voters,
            latecomer: key(),
        }
    }

    /// Every account that may vote, for reading ballots back.
    pub fn voting_accounts(&self) -> Vec<AccountId> {
        std::iter::once(&self.whale)
            .chain(self.voters.iter().map(|(k, _)| k))
            .chain(std::iter::once(&self.latecomer))
            .map(account_of)
            .collect()
    }
}

pub fn account_of(key: &SigningKey) -> AccountId {
    AccountId(key.verifying_key().to_bytes())
}

/// One send of `signed` to validator `replica`, recorded.
async fn send_once(
    shared: &Shared,
    client: u32,
    op: u64,
    attempt: u32,
    replica: usize,
    signed: &SignedCommand,
) -> Answer {
    let a = Attempt {
        time_ms: now_ms(),
        client,
        op,
        attempt,
    };
    shared.journal.record(Event::Invoke(Invoke {
        time_ms: a.time_ms,
        client,
        op,
        attempt,
        command: command_summary(signed),
    }));
    let answer = submit(&shared.endpoints, replica, signed, ATTEMPT_TIMEOUT).await;
    let answered = Attempt {
        time_ms: now_ms(),
        ..a
    };
    let result = match &answer {
        Answer::Known {
            outcome,
            applied_at,
        } => client_result(answered, outcome, *applied_at),
        Answer::Unknown { reason } => {
            let mut r = unknown_result(answered);
            r.message = Some(reason.clone());
            r
        }
    };
    shared.journal.record(Event::Result(result));
    answer
}

/// A setup command: re-sent with identical bytes to each validator in turn
/// until its outcome is known. A refusal fails the run (setup is not
/// under test).
async fn ensure(
    shared: &Shared,
    client: u32,
    op: u64,
    key: &SigningKey,
    nonce: u64,
    command: Command,
) -> Result<Receipt, RealError> {
    let signed = SignedCommand::sign(&shared.chain_id, key, nonce, command);
    let start = now_ms();
    let n = shared.endpoints.len();
    let mut attempt = 0u32;
    loop {
        if shared.stopped() {
            return Err(RealError::Interrupted("the end of the run"));
        }
        let replica = (client as usize + attempt as usize) % n;
        match send_once(shared, client, op, attempt, replica, &signed).await {
            Answer::Known {
                outcome: Ok(receipt),
                ..
            } => return Ok(receipt),
            Answer::Known {
                outcome: Err(e), ..
            } => {
                return Err(RealError::SetupRefused {
                    command: signed.command.name().to_owned(),
                    message: e.to_string(),
                })
            }
            Answer::Unknown { reason } => {
                let waited = now_ms().saturating_sub(start);
                if waited > SETUP_TIMEOUT.as_millis() as u64 {
                    return Err(RealError::Timeout {
                        what: format!("setup command {} of client {client}", signed.command.name()),
                        waited_ms: waited,
                        last: reason,
                    });
                }
            }
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The treasury funds every account; every account stakes.
pub async fn fund_and_stake(
    shared: &Shared,
    treasury: &SigningKey,
    accounts: &Accounts,
) -> Result<(), RealError> {
    let mut stakes: Vec<(u32, SigningKey, u64)> = vec![
        (AUTHOR_CLIENT, accounts.author.clone(), AUTHOR_STAKE),
        (WHALE_CLIENT, accounts.whale.clone(), WHALE_STAKE),
    ];
    for (k, (key, _)) in accounts.voters.iter().enumerate() {
        stakes.push((FIRST_VOTER_CLIENT + k as u32, key.clone(), VOTER_STAKE));
    }
    stakes.push((
        FIRST_VOTER_CLIENT + accounts.voters.len() as u32,
        accounts.latecomer.clone(),
        VOTER_STAKE,
    ));
    // Treasury nonces must follow each other: one transfer at a time.
    for (k, (_, key, stake)) in stakes.iter().enumerate() {
        let command = Command::Transfer {
            to: account_of(key),
            amount: Amount((stake + SPARE) * NEURO),
        };
        let n = k as u64 + 1;
        ensure(shared, TREASURY_CLIENT, n, treasury, n, command).await?;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (client, key, stake) in stakes {
        let shared = shared.clone();
        tasks.spawn(async move {
            let command = Command::Stake {
                amount: Amount(stake * NEURO),
            };
            ensure(&shared, client, 1, &key, 1, command).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| RealError::invalid("stake task", e))??;
    }
    Ok(())
}

/// The author drafts and submits each NEP ([`NEP_SPACING`] apart).
/// Its account has nonce 1 used by its stake.
pub async fn author(shared: Shared, key: SigningKey) -> Result<(), RealError> {
    // Op 1 and nonce 1 were its stake.
    let mut nonce = 2;
    let mut op = 2;
    for (k, content) in nep_contents().into_iter().enumerate() {
        if k > 0 {
            tokio::time::sleep(NEP_SPACING).await;
        }
        let receipt = ensure(
            &shared,
            AUTHOR_CLIENT,
            op,
            &key,
            nonce,
            Command::CreateDraft { content },
        )
        .await?;
        let Effect::DraftCreated { nep, .. } = receipt.effect else {
            return Err(RealError::invalid(
                "create-draft",
                format!("receipt names no draft: {:?}", receipt.effect),
            ));
        };
        ensure(
            &shared,
            AUTHOR_CLIENT,
            op + 1,
            &key,
            nonce + 1,
            Command::Submit { nep },
        )
        .await?;
        shared
            .neps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(nep);
        nonce += 2;
        op += 2;
    }
    Ok(())
}

/// Follows the NEPs the author created until each is in VOTING; publishes
/// its vote window to the voters and has the whale vote yes on it.
pub async fn open_votes(
    shared: Shared,
    whale: SigningKey,
    expected: usize,
) -> Result<(), RealError> {
    let mut seen = 0usize;
    let mut next_replica = 0usize;
    let mut whale_nonce = 2;
    let start = now_ms();
    while seen < expected {
        if shared.stopped() {
            return Err(RealError::Interrupted("the end of the run"));
        }
        let neps = shared.nep_ids();
        if let Some(nep) = neps.get(seen).copied() {
            let replica = next_replica % shared.endpoints.len();
            next_replica += 1;
            let request = api::GetProposalRequest {
                nep: nep.0,
                read: Some(api::ReadOptions { stale: false }),
            };
            let proposal = shared
                .endpoints
                .call(replica, ATTEMPT_TIMEOUT, |mut c| async move {
                    c.get_proposal(request).await
                })
                .await;
            if let Ok(p) = proposal {
                if let Some(vote) = p.vote {
                    shared
                        .open
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(OpenVote {
                            nep,
                            opened_ms: vote.opened_ms,
                            deadline_ms: vote.deadline_ms,
                        });
                    let command = Command::Vote {
                        nep,
                        choice: VoteChoice::Yes,
                    };
                    // Op 1 and nonce 1 were its stake.
                    ensure(
                        &shared,
                        WHALE_CLIENT,
                        seen as u64 + 2,
                        &whale,
                        whale_nonce,
                        command,
                    )
                    .await?;
                    whale_nonce += 1;
                    seen += 1;
                    continue;
                }
            }
        }
        if now_ms().saturating_sub(start) > 2 * SETUP_TIMEOUT.as_millis() as u64 {
            return Err(RealError::Timeout {
                what: format!("NEP {} in VOTING", seen + 1),
                waited_ms: now_ms().saturating_sub(start),
                last: format!("{neps:?} created"),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The next nonce of `account` as any validator answers it (linearizable).
async fn next_nonce(shared: &Shared, account: &AccountId, first: usize) -> Option<u64> {
    let n = shared.endpoints.len();
    for k in 0..n {
        let request = api::GetAccountRequest {
            account: account.to_hex(),
            read: Some(api::ReadOptions { stale: false }),
        };
        let answer = shared
            .endpoints
            .call((first + k) % n, ATTEMPT_TIMEOUT, |mut c| async move {
                c.get_account(request).await
            })
            .await;
        if let Ok(a) = answer {
            return Some(a.next_nonce);
        }
    }
    None
}

/// One voter (or the latecomer) until the run stops.
pub async fn voter(shared: Shared, id: u32, key: SigningKey, role: Role, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (u64::from(id) << 32));
    let account = account_of(&key);
    let mut c = Client::new(id, key, role);
    // Op 1 and nonce 1 were its stake.
    c.next_nonce = 2;
    c.next_op = 2;
    let n = shared.endpoints.len();
    let home = id as usize % n;
    while !shared.stopped() {
        let now = now_ms();
        if c.pending.is_none() {
            let open = shared.open_votes();
            if let Some(command) = c.next_command(now, &open, VOTE_PER_MILLE, &mut rng) {
                let signed = SignedCommand::sign(&shared.chain_id, &c.key, c.next_nonce, command);
                c.pending = Some(Pending {
                    op: c.next_op,
                    signed,
                    attempt: 0,
                    retry_at_ms: now,
                });
                c.next_op += 1;
            }
        }
        let due = c.pending.as_ref().filter(|p| p.retry_at_ms <= now);
        if let Some(p) = due {
            let (op, attempt, signed) = (p.op, p.attempt, p.signed.clone());
            let replica = (home + attempt as usize) % n;
            match send_once(&shared, id, op, attempt, replica, &signed).await {
                Answer::Known { outcome, .. } => {
                    c.pending = None;
                    match outcome {
                        Ok(_) => c.next_nonce = signed.nonce + 1,
                        Err(e) => {
                            if PRE_EXECUTION_RULES.contains(&e.rule()) {
                                if let Some(next) = next_nonce(&shared, &account, replica).await {
                                    c.next_nonce = next;
                                }
                            } else {
                                c.next_nonce = signed.nonce + 1;
                            }
                            if let GovError::VotingClosed { nep, .. } = e {
                                c.closed.insert(nep);
                            }
                        }
                    }
                }
                Answer::Unknown { .. } => {
                    let give_up = c.pending.as_mut().is_some_and(|p| {
                        p.attempt += 1;
                        p.retry_at_ms = now_ms() + Client::backoff_ms(BACKOFF_STEP_MS, p.attempt);
                        p.attempt >= MAX_ATTEMPTS
                    });
                    if give_up {
                        // As a real client must: ask which nonce is next.
                        c.pending = None;
                        if let Some(next) = next_nonce(&shared, &account, replica + 1).await {
                            c.next_nonce = next;
                        }
                    }
                }
            }
        }
        tokio::time::sleep(STEP).await;
    }
}
