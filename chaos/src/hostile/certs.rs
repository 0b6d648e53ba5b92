//! Certificates on demand, for the rows that need some issued while they
//! run: the committee's cheapest path to a certificate is an emergency NEP
//! (EMERG: submitted with a validator's identity key, approved by a
//! Byzantine quorum, 3 of the 4 validators, scheduled at the next tick with
//! no vote and no grace, so its ACTIVATION certificate is decided at once).
//!
//! An activated emergency opens a ratification vote of `gov.voting_days`
//! and keeps its keys reserved until that vote ends. With the suite's
//! 365-day vote (the honest NEP must stay open for the whole suite) every
//! emergency would hold its key for the rest of the run. So the first
//! emergency sets `gov.voting_days` to 2 (the honest NEP's vote keeps the
//! deadline it opened with) and the honest author, whose stake is most of
//! the stake at that snapshot, ratifies it. From then on each emergency on
//! a harmless key (`arch.*`, `net.gossip_fanout`, `train.batch_size`,
//! `econ.slashing_bps`) gives two certificates: its ACTIVATION, and two
//! seconds later, its ratification vote failing for lack of quorum, a
//! REVOCATION that restores the key, which can then be used again.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use neuroshard_governance::params::{spec, ParamKind};
use neuroshard_governance::{
    AccountId, Command, EconomicImpact, Effect, Micro, NepContent, NepId, NepType, ParamValue,
    ParameterChange, SignedCommand, UpgradePath, VoteChoice,
};
use neuroshard_node::api_proto as api;

use super::client::{self, Pool, Reply};
use super::honest::describe;

/// Keys the issuer's emergencies change: nothing the committee itself
/// reads.
pub const KEYS: &[&str] = &[
    "arch.context_length",
    "arch.hidden_size",
    "arch.num_experts",
    "arch.num_layers",
    "arch.shard_count",
    "net.gossip_fanout",
    "train.batch_size",
    "econ.slashing_bps",
];
/// The ratification vote of every emergency after the first.
pub const RATIFICATION_DAYS: i64 = 2;
/// A key is used again only this long after its last emergency (its
/// ratification vote, the revocation, and a margin).
pub const KEY_REST: Duration = Duration::from_millis(3_500);
/// Longest one issuer command is retried.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);
const ATTEMPT: Duration = Duration::from_secs(5);

fn account_of(key: &SigningKey) -> AccountId {
    AccountId(key.verifying_key().to_bytes())
}

/// An EMERG content changing `changes`, no grace.
pub fn emergency_content(title: &str, changes: Vec<ParameterChange>) -> NepContent {
    NepContent {
        title: title.to_owned(),
        nep_type: NepType::Emerg,
        motivation: "hostile-client suite: a certificate on demand".to_owned(),
        specification: "emergency change of a parameter the committee does not read".to_owned(),
        parameter_changes: changes,
        economic_impact: EconomicImpact {
            training_efficiency_multiplier: Micro::ONE,
            training_reward_multiplier: Micro::ONE,
            net_earnings_change_percent: Micro(0),
            summary: "none".to_owned(),
        },
        upgrade_path: UpgradePath {
            grace_period_days: 0,
            backward_compatible: true,
        },
    }
}

/// Another value of an integer key within its bounds.
fn other_value(key: &str, old: &ParamValue) -> Option<ParamValue> {
    let s = spec(key)?;
    match (s.kind, old) {
        (ParamKind::Integer, ParamValue::Integer(v)) => {
            Some(ParamValue::Integer(if *v < s.max { v + 1 } else { v - 1 }))
        }
        _ => None,
    }
}

/// Issues emergencies with the validators' identity keys.
pub struct Issuer {
    pool: Pool,
    chain_id: String,
    identities: Vec<SigningKey>,
    nonces: Vec<u64>,
    /// (key, value now, the other value, last used).
    keys: Vec<(String, ParamValue, ParamValue, Option<Instant>)>,
    next_key: usize,
    turn: usize,
    /// Emergencies submitted and scheduled-to-be.
    pub issued: u64,
    pub neps: Vec<NepId>,
    /// The emergency that shortened ratification votes.
    pub shortened: Option<NepId>,
}

impl Issuer {
    /// `params`: the live values of [`KEYS`] (the genesis values: nothing
    /// else changes them).
    pub async fn new(
        pool: Pool,
        chain_id: &str,
        identities: Vec<SigningKey>,
        params: &dyn Fn(&str) -> Option<ParamValue>,
    ) -> Result<Self, String> {
        let mut nonces = Vec::new();
        for (i, id) in identities.iter().enumerate() {
            let a = client::account(&pool, i, &account_of(id), ATTEMPT)
                .await
                .ok_or_else(|| format!("validator {i}'s identity account could not be read"))?;
            nonces.push(a.next_nonce);
        }
        let keys = KEYS
            .iter()
            .filter_map(|k| {
                let old = params(k)?;
                let new = other_value(k, &old)?;
                Some(((*k).to_owned(), old, new, None))
            })
            .collect::<Vec<_>>();
        if keys.is_empty() {
            return Err("no parameter for the issuer's emergencies".into());
        }
        Ok(Self {
            pool,
            chain_id: chain_id.to_owned(),
            identities,
            nonces,
            keys,
            next_key: 0,
            turn: 0,
            issued: 0,
            neps: Vec::new(),
            shortened: None,
        })
    }

    /// Sends one command of validator `v`'s identity until its outcome is
    /// known.
    async fn send(&mut self, v: usize, command: Command) -> Result<Effect, String> {
        let signed =
            SignedCommand::sign(&self.chain_id, &self.identities[v], self.nonces[v], command);
        let started = Instant::now();
        loop {
            self.turn += 1;
            match client::submit(&self.pool, self.turn, &signed, ATTEMPT).await {
                Reply::Applied { receipt, .. } => {
                    self.nonces[v] += 1;
                    return Ok(receipt.effect);
                }
                Reply::Refused(r) => {
                    if r.kind == client::Kind::Apply {
                        self.nonces[v] += 1;
                    }
                    return Err(format!(
                        "{}: {}",
                        signed.command.name(),
                        describe(&Reply::Refused(r))
                    ));
                }
                Reply::Unknown { rule, message } => {
                    if started.elapsed() > COMMAND_TIMEOUT {
                        // Ask which nonce is next, as a client must.
                        if let Some(a) = client::account(
                            &self.pool,
                            v,
                            &account_of(&self.identities[v]),
                            ATTEMPT,
                        )
                        .await
                        {
                            self.nonces[v] = a.next_nonce;
                        }
                        return Err(format!(
                            "{}: unanswered for {} s [{rule}]: {message}",
                            signed.command.name(),
                            COMMAND_TIMEOUT.as_secs()
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// One emergency: submitted by validator `k % n`, approved by it and
    /// the next two. Returns its NEP id.
    pub async fn emergency(
        &mut self,
        title: &str,
        changes: Vec<ParameterChange>,
    ) -> Result<NepId, String> {
        let n = self.identities.len();
        let v = self.issued as usize % n;
        let content = emergency_content(title, changes);
        let nep = match self.send(v, Command::SubmitEmergency { content }).await? {
            Effect::EmergencySubmitted { nep, .. } => nep,
            other => return Err(format!("submit-emergency answered {other:?}")),
        };
        // A Byzantine quorum of approvals (3 of 4), the submitter's first.
        let threshold = neuroshard_governance::byzantine_quorum(n as u32) as usize;
        for j in 0..threshold {
            self.send((v + j) % n, Command::EmergencyApprove { nep })
                .await?;
        }
        self.issued += 1;
        self.neps.push(nep);
        Ok(nep)
    }

    /// The next emergency on a rested key; `None` when every key is still
    /// resting.
    pub async fn next(&mut self) -> Result<Option<NepId>, String> {
        let now = Instant::now();
        for _ in 0..self.keys.len() {
            let i = self.next_key % self.keys.len();
            self.next_key += 1;
            let (key, old, new, last) = self.keys[i].clone();
            if last.is_some_and(|t| now.duration_since(t) < KEY_REST) {
                continue;
            }
            self.keys[i].3 = Some(now);
            let change = ParameterChange {
                key: key.clone(),
                expected_old: old,
                new,
            };
            let title = format!("hostile suite: certificate {} ({key})", self.issued + 1);
            return self.emergency(&title, vec![change]).await.map(Some);
        }
        Ok(None)
    }
}

/// The proposal `nep` as validator `i` sees it (linearizable).
pub async fn proposal(pool: &Pool, i: usize, nep: NepId) -> Option<api::Proposal> {
    let request = api::GetProposalRequest {
        nep: nep.0,
        read: Some(api::ReadOptions { stale: false }),
    };
    let mut c = pool.client(i);
    match tokio::time::timeout(ATTEMPT, c.get_proposal(request)).await {
        Ok(Ok(p)) => Some(p.into_inner()),
        _ => None,
    }
}

/// Sets `gov.voting_days` to [`RATIFICATION_DAYS`] with an emergency that
/// `ratifier` (most of the stake) ratifies. Returns the NEP once its
/// ratification vote has the ratifier's ballot; the caller checks it was
/// RATIFIED later.
pub async fn shorten_ratification(
    issuer: &mut Issuer,
    ratifier: &SigningKey,
    voting_days_now: i64,
) -> Result<NepId, String> {
    let nep = issuer
        .emergency(
            "hostile suite: two-day ratification votes",
            vec![ParameterChange {
                key: "gov.voting_days".to_owned(),
                expected_old: ParamValue::Integer(voting_days_now),
                new: ParamValue::Integer(RATIFICATION_DAYS),
            }],
        )
        .await?;
    // ACTIVE, with its ratification vote open.
    let started = Instant::now();
    loop {
        if let Some(p) = proposal(&issuer.pool, 0, nep).await {
            if p.stage == api::Stage::Active as i32 && p.vote.is_some() {
                break;
            }
            if p.stage == api::Stage::Rejected as i32 {
                return Err(format!("NEP-{} was rejected: {}", nep.0, p.rejection));
            }
        }
        if started.elapsed() > COMMAND_TIMEOUT {
            return Err(format!(
                "NEP-{} not ACTIVE within {} s",
                nep.0,
                COMMAND_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let account = account_of(ratifier);
    let a = client::account(&issuer.pool, 0, &account, ATTEMPT)
        .await
        .ok_or("the ratifier's account could not be read")?;
    let vote = SignedCommand::sign(
        &issuer.chain_id,
        ratifier,
        a.next_nonce,
        Command::Vote {
            nep,
            choice: VoteChoice::Yes,
        },
    );
    let started = Instant::now();
    loop {
        match client::submit(&issuer.pool, 0, &vote, ATTEMPT).await {
            Reply::Applied { .. } => {
                issuer.shortened = Some(nep);
                return Ok(nep);
            }
            Reply::Refused(r) => {
                return Err(format!(
                    "the ratifying vote: {}",
                    describe(&Reply::Refused(r))
                ))
            }
            Reply::Unknown { .. } if started.elapsed() < COMMAND_TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return Err(format!("the ratifying vote: {}", describe(&other))),
        }
    }
}
