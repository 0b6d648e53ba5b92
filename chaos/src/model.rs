//! The in-process model harness: deterministic, seeded, no network.
//!
//! Four governance replicas are fed one leader-ordered log. Replica 0 is
//! the leader: it applies every entry as it is appended and answers clients
//! from that outcome; followers apply the same log later, in batches. A
//! workload of voters votes continuously across each NEP's closing tick;
//! requests and answers are lost at seeded rates and every unanswered
//! command is retried byte for byte. Certificates are issued as the node
//! issues them (each validator signs its own replica's payload, the leader
//! combines t+1 shares). With faults on, the log stalls around the first
//! NEP's deadline (no leader, nothing commits) and a follower crashes and
//! restarts (from its snapshot, or from genesis replaying the whole log).
//! Everything is recorded as a history for the invariant checkers.
//!
//! The same seed gives the same history, byte for byte: the only sources of
//! variation are the seeded RNG and the simulated clock.

mod issuer;
mod replica;
pub mod workload;

use std::collections::BTreeMap;

use neuroshard_certificate::SchemeError;
use neuroshard_governance::genesis::ParamInput;
use neuroshard_governance::testkit::{self, user_key, TestConfig};
use neuroshard_governance::{
    AccountId, Command, Effect, Entry, Genesis, GenesisError, GovError, NepId, Outcome,
    ProposalFilter, SignedCommand, SnapshotError, VoteChoice,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::history::{
    BallotRecord, CertificateSeen, Event, Fault, Header, Heal, History, Invoke, OpResult,
    OutcomeKind, HISTORY_FORMAT,
};
use crate::observe::{
    client_result, command_summary, final_view, replica_payload, unknown_result, Attempt,
    FinalObservation,
};
use crate::rule::PRE_EXECUTION_RULES;

use issuer::Issuer;
use replica::Replica;
pub use replica::{Restart, MAX_FOLLOWER_BATCH};
pub use workload::{nep_contents, LATE_WINDOW_MS, MAX_BACKOFF_MS};
use workload::{Client, OpenVote, Pending, Role};

/// Steps a run may take before it stops regardless (bounds a run whose
/// NEPs never settle; liveness then reports them).
pub const MAX_MODEL_STEPS: u64 = 4_000;
/// Most voters a run may have.
pub const MAX_VOTERS: usize = 64;
/// Validators (= replicas) of the model committee: n = 4, t + 1 = 3.
pub const MODEL_VALIDATORS: u32 = 4;
/// A governance day in the model chain (`gov.day_ms`).
pub const MODEL_DAY_MS: u64 = 1_000;
/// How long the run continues after the last deadline plus grace, so every
/// activation and every lagging follower is observed.
pub const TAIL_MS: u64 = 1_500;

/// A deliberately broken build, for testing the checkers themselves: each
/// mode misreports what the state machine did in a way an invariant must
/// catch. Never enabled outside checker tests and demonstrations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sabotage {
    #[default]
    None,
    /// Tells clients a vote refused after the closing tick was counted.
    AcknowledgeLateVotes,
    /// Counts votes refused after the closing tick in the recorded final tallies.
    CountLateVotes,
}

/// Shape of a model run.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub seed: u64,
    /// Regular voters (plus one latecomer and one author).
    pub voters: usize,
    /// Simulated time per step; clients act and followers catch up once per step.
    pub step_ms: u64,
    /// The leader proposes a tick every `tick_interval_ms` (a multiple of `step_ms`).
    pub tick_interval_ms: u64,
    /// Chance per step that an idle voter votes, in thousandths.
    pub vote_per_mille: u32,
    /// Chance a request never reaches the log, in thousandths.
    pub request_loss_per_mille: u32,
    /// Chance an applied command's answer is lost, in thousandths.
    pub response_loss_per_mille: u32,
    /// Sends per command (first send plus retries) before the client gives up.
    pub max_attempts: u32,
    /// Stall the log around the first deadline and crash a follower.
    pub faults: bool,
    pub liveness_bound_ms: u64,
    pub sabotage: Sabotage,
}

impl ModelConfig {
    /// The default workload for `seed`, faults on.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            voters: 6,
            step_ms: 50,
            tick_interval_ms: 100,
            vote_per_mille: 300,
            request_loss_per_mille: 50,
            response_loss_per_mille: 150,
            max_attempts: 6,
            faults: true,
            liveness_bound_ms: 2_000,
            sabotage: Sabotage::None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the model configuration is invalid: {0}")]
    Config(String),
    #[error("test genesis refused: {0}")]
    Genesis(#[from] GenesisError),
    #[error("a replica could not restart from its snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("threshold signing failed: {0}")]
    Scheme(#[from] SchemeError),
    #[error("validator {validator} has no key share in the dealt committee")]
    NoKeyShare { validator: u32 },
    #[error("the author's {command} was refused, so the workload cannot start: {error}")]
    Setup {
        command: &'static str,
        error: GovError,
    },
}

/// What a run did, for the summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    pub steps: u64,
    pub entries: u64,
    pub ops: u64,
    pub attempts: u64,
    pub unanswered: u64,
    pub votes_acknowledged: u64,
    pub votes_refused_closed: u64,
    pub certificates: u64,
    pub faults: u64,
    /// Misreports made by a [`Sabotage`] mode.
    pub sabotaged: u64,
}

pub struct ModelRun {
    pub history: History,
    pub stats: ModelStats,
}

/// A fault planned relative to the first NEP's deadline.
struct PlannedFault {
    id: u32,
    kind: FaultKind,
    offset_ms: i64,
    duration_ms: u64,
    started_ms: Option<u64>,
    healed: bool,
}

#[derive(Clone, Copy, Debug)]
enum FaultKind {
    /// No leader: nothing is appended (no ticks, commands or certificates).
    LogStall,
    /// A follower stops, then restarts.
    Crash { replica: u32, restart: Restart },
}

/// A vote the leader refused with `voting_closed` (for [`Sabotage`]).
struct LateRefusal {
    nep: NepId,
    account: AccountId,
    choice: VoteChoice,
}

struct World {
    config: ModelConfig,
    rng: ChaCha8Rng,
    genesis: Genesis,
    log: Vec<Entry>,
    replicas: Vec<Replica>,
    clients: Vec<Client>,
    issuer: Issuer,
    events: Vec<Event>,
    stats: ModelStats,
    stalled: bool,
    faults: Vec<PlannedFault>,
    issued_ms: BTreeMap<u64, u64>,
    late: Vec<LateRefusal>,
    header: Header,
}

/// Runs the model and returns its history.
pub fn run(config: &ModelConfig) -> Result<ModelRun, ModelError> {
    validate(config)?;
    let mut world = World::new(config.clone())?;
    let start = world.genesis.genesis_time_ms;
    let mut now = start + config.step_ms;
    let mut end_ms = None;
    for _ in 0..MAX_MODEL_STEPS {
        world.stats.steps += 1;
        world.faults_step(now)?;
        if !world.stalled && (now - start).is_multiple_of(config.tick_interval_ms) {
            // Every outcome is in the leader's applied record; a tick has
            // nobody else to answer.
            let _ = world.commit(Entry::Tick { now_ms: now }, now);
        }
        world.issue(now)?;
        world.clients_step(now)?;
        world.followers_step(now);
        if end_ms.is_none() {
            end_ms = world.planned_end();
        }
        if end_ms.is_some_and(|e| now >= e) {
            break;
        }
        now += config.step_ms;
    }
    Ok(world.finish(now))
}

fn validate(c: &ModelConfig) -> Result<(), ModelError> {
    let bad = |what: String| Err(ModelError::Config(what));
    if c.voters == 0 || c.voters > MAX_VOTERS {
        return bad(format!("voters must be 1..={MAX_VOTERS}, got {}", c.voters));
    }
    if c.step_ms == 0 || c.tick_interval_ms == 0 || !c.tick_interval_ms.is_multiple_of(c.step_ms) {
        return bad(format!(
            "tick_interval_ms ({}) must be a positive multiple of step_ms ({})",
            c.tick_interval_ms, c.step_ms
        ));
    }
    if c.max_attempts == 0 {
        return bad("max_attempts must be at least 1".to_owned());
    }
    for (name, v) in [
        ("vote_per_mille", c.vote_per_mille),
        ("request_loss_per_mille", c.request_loss_per_mille),
        ("response_loss_per_mille", c.response_loss_per_mille),
    ] {
        if v > 1000 {
            return bad(format!("{name} is {v}, more than 1000"));
        }
    }
    Ok(())
}

impl World {
    fn new(config: ModelConfig) -> Result<Self, ModelError> {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let voters = config.voters;
        let test = TestConfig {
            chain_id: "neuroshard-chaos".to_owned(),
            users: voters + 2,
            validators: MODEL_VALIDATORS,
            day_ms: MODEL_DAY_MS as i64,
            extra_parameters: vec![
                ("gov.review_days".to_owned(), ParamInput::Integer(1)),
                ("gov.voting_days".to_owned(), ParamInput::Integer(2)),
                ("gov.grace_min_days".to_owned(), ParamInput::Integer(1)),
            ],
            ..TestConfig::default()
        };
        let (genesis, dealt) = testkit::genesis(&test);
        let replicas = (0..MODEL_VALIDATORS)
            .map(|id| Replica::new(id, &genesis))
            .collect::<Result<Vec<_>, _>>()?;
        let preferences = [
            VoteChoice::Yes,
            VoteChoice::Yes,
            VoteChoice::No,
            VoteChoice::Yes,
            VoteChoice::Abstain,
            VoteChoice::Yes,
        ];
        let mut clients: Vec<Client> = (0..voters)
            .map(|i| {
                Client::new(
                    i as u32,
                    user_key(i),
                    Role::Voter {
                        preference: preferences[i % preferences.len()],
                    },
                )
            })
            .collect();
        clients.push(Client::new(
            voters as u32,
            user_key(voters),
            Role::Latecomer,
        ));
        clients.push(Client::new(
            voters as u32 + 1,
            user_key(voters + 1),
            Role::Author {
                contents: workload::nep_contents(),
                spacing_ms: 500,
                drafted: None,
                next_content: 0,
                last_submit_ms: None,
            },
        ));
        let faults = if config.faults {
            plan_faults(&mut rng)
        } else {
            Vec::new()
        };
        let header = Header {
            format: HISTORY_FORMAT,
            harness: "model".to_owned(),
            seed: Some(config.seed),
            chain_id: genesis.chain_id.clone(),
            committee: genesis.committee.info.clone(),
            replicas: MODEL_VALIDATORS,
            liveness_bound_ms: config.liveness_bound_ms,
            started_ms: genesis.genesis_time_ms,
        };
        Ok(Self {
            config,
            rng,
            events: Vec::new(),
            header,
            genesis,
            log: Vec::new(),
            replicas,
            clients,
            issuer: Issuer::new(dealt),
            stats: ModelStats::default(),
            stalled: false,
            faults,
            issued_ms: BTreeMap::new(),
            late: Vec::new(),
        })
    }

    fn leader(&self) -> &Replica {
        &self.replicas[0]
    }

    /// Appends `entry` and applies it on the leader.
    fn commit(&mut self, entry: Entry, now: u64) -> (u64, Outcome) {
        self.log.push(entry);
        let index = self.log.len() as u64;
        let entry = &self.log[self.log.len() - 1];
        let outcome = self.replicas[0].apply_one(index, entry, now, &mut self.events);
        match (entry, &outcome) {
            (Entry::CertificateIssued(_), Ok(r)) => {
                if let Effect::CertificateRecorded { sequence } = r.effect {
                    self.issued_ms.insert(sequence, now);
                }
            }
            (Entry::Command(c), Err(GovError::VotingClosed { nep, .. })) => {
                if let Command::Vote { choice, .. } = c.command {
                    self.late.push(LateRefusal {
                        nep: *nep,
                        account: c.author,
                        choice,
                    });
                }
            }
            _ => {}
        }
        (index, outcome)
    }

    /// The first NEP's vote deadline, once its vote is open.
    fn first_deadline(&self) -> Option<u64> {
        let p = self.leader().state.proposal(NepId(1))?;
        p.vote.as_ref().map(|v| v.deadline_ms.0)
    }

    /// When the run may stop: every NEP drafted and voting, then the last
    /// deadline, grace and a tail have passed, and every fault is healed.
    fn planned_end(&self) -> Option<u64> {
        if self.clients.iter().any(Client::author_busy) {
            return None;
        }
        let mut last = 0;
        for p in self.leader().state.proposals(&ProposalFilter::default()) {
            last = last.max(p.vote.as_ref()?.deadline_ms.0);
        }
        let mut end = last + MODEL_DAY_MS + TAIL_MS;
        for f in &self.faults {
            end = end.max(f.started_ms? + f.duration_ms + self.config.step_ms);
        }
        Some(end)
    }

    fn faults_step(&mut self, now: u64) -> Result<(), ModelError> {
        let Some(deadline) = self.first_deadline() else {
            return Ok(());
        };
        for i in 0..self.faults.len() {
            let f = &self.faults[i];
            let start = deadline.saturating_add_signed(f.offset_ms);
            match f.started_ms {
                None if now >= start => {
                    let (id, kind, offset, duration) = (f.id, f.kind, f.offset_ms, f.duration_ms);
                    self.faults[i].started_ms = Some(now);
                    self.stats.faults += 1;
                    let (name, targets) = match kind {
                        FaultKind::LogStall => {
                            self.stalled = true;
                            ("log_stall", vec![])
                        }
                        FaultKind::Crash { replica, .. } => {
                            self.replicas[replica as usize].crash();
                            ("replica_crash", vec![replica])
                        }
                    };
                    self.events.push(Event::Fault(Fault {
                        time_ms: now,
                        id,
                        fault: name.to_owned(),
                        targets,
                        detail: format!("{offset:+} ms from NEP-1's deadline, for {duration} ms"),
                    }));
                }
                Some(started) if !f.healed && now >= started + f.duration_ms => {
                    let (id, kind) = (f.id, f.kind);
                    self.faults[i].healed = true;
                    let detail = match kind {
                        FaultKind::LogStall => {
                            self.stalled = false;
                            "leader back".to_owned()
                        }
                        FaultKind::Crash { replica, restart } => {
                            self.replicas[replica as usize].restart(restart, &self.genesis)?;
                            format!("replica {replica} restarted {restart:?}")
                        }
                    };
                    self.events.push(Event::Heal(Heal {
                        time_ms: now,
                        id,
                        detail,
                    }));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn issue(&mut self, now: u64) -> Result<(), ModelError> {
        if self.stalled {
            return Ok(());
        }
        if let Some(cert) = self.issuer.next(&self.replicas[0], &self.replicas)? {
            // A refused certificate stays unissued: liveness reports it.
            let _ = self.commit(Entry::CertificateIssued(cert), now);
        }
        Ok(())
    }

    fn open_votes(&self) -> Vec<OpenVote> {
        self.leader()
            .state
            .proposals(&ProposalFilter::default())
            .into_iter()
            .filter_map(|p| {
                let v = p.vote.as_ref()?;
                Some(OpenVote {
                    nep: p.id,
                    opened_ms: v.opened_ms.0,
                    deadline_ms: v.deadline_ms.0,
                })
            })
            .collect()
    }

    fn clients_step(&mut self, now: u64) -> Result<(), ModelError> {
        let open = self.open_votes();
        let mut order: Vec<usize> = (0..self.clients.len()).collect();
        order.shuffle(&mut self.rng);
        for ci in order {
            let is_author = matches!(self.clients[ci].role, Role::Author { .. });
            // The author's setup is not under test: it waits out a stall
            // and its requests are never lost.
            if is_author && self.stalled {
                continue;
            }
            if self.clients[ci].pending.is_none() {
                let per_mille = self.config.vote_per_mille;
                let c = &mut self.clients[ci];
                if let Some(command) = c.next_command(now, &open, per_mille, &mut self.rng) {
                    let signed =
                        SignedCommand::sign(&self.genesis.chain_id, &c.key, c.next_nonce, command);
                    c.pending = Some(Pending {
                        op: c.next_op,
                        signed,
                        attempt: 0,
                        retry_at_ms: now,
                    });
                    c.next_op += 1;
                    self.stats.ops += 1;
                }
            }
            let due = self.clients[ci]
                .pending
                .as_ref()
                .is_some_and(|p| p.retry_at_ms <= now);
            if due {
                self.send(ci, now, is_author)?;
            }
        }
        Ok(())
    }

    /// Sends client `ci`'s pending command once and records what it learns.
    fn send(&mut self, ci: usize, now: u64, reliable: bool) -> Result<(), ModelError> {
        let Some(p) = self.clients[ci].pending.as_ref() else {
            return Ok(());
        };
        let signed = p.signed.clone();
        let attempt = Attempt {
            time_ms: now,
            client: self.clients[ci].id,
            op: p.op,
            attempt: p.attempt,
        };
        self.events.push(Event::Invoke(Invoke {
            time_ms: now,
            client: attempt.client,
            op: attempt.op,
            attempt: attempt.attempt,
            command: command_summary(&signed),
        }));
        self.stats.attempts += 1;
        let lost = |rng: &mut ChaCha8Rng, per_mille: u32| rng.gen_range(0..1000) < per_mille;
        let delivered =
            !self.stalled && (reliable || !lost(&mut self.rng, self.config.request_loss_per_mille));
        let answer = if delivered {
            let (index, outcome) = self.commit(Entry::Command(signed.clone()), now);
            let heard = reliable || !lost(&mut self.rng, self.config.response_loss_per_mille);
            heard.then_some((index, outcome))
        } else {
            None
        };
        let Some((index, outcome)) = answer else {
            self.events.push(Event::Result(unknown_result(attempt)));
            self.stats.unanswered += 1;
            let max_attempts = self.config.max_attempts;
            let step_ms = self.config.step_ms;
            let next_nonce = self
                .leader()
                .state
                .account(&signed.author)
                .map(|a| a.next_nonce);
            let c = &mut self.clients[ci];
            if let Some(p) = c.pending.as_mut() {
                p.attempt += 1;
                if p.attempt >= max_attempts {
                    // Give up, and ask the API which nonce is next, as a
                    // real client must after an unanswered command.
                    c.pending = None;
                    c.next_nonce = next_nonce.unwrap_or(c.next_nonce);
                } else {
                    p.retry_at_ms = now + Client::backoff_ms(step_ms, p.attempt);
                }
            }
            return Ok(());
        };
        let mut result = client_result(attempt, &outcome, Some(index));
        self.sabotage_answer(&signed, &outcome, &mut result);
        self.events.push(Event::Result(result));
        let next_nonce = self
            .leader()
            .state
            .account(&signed.author)
            .map(|a| a.next_nonce);
        let c = &mut self.clients[ci];
        c.pending = None;
        match &outcome {
            Ok(receipt) => {
                c.next_nonce = signed.nonce + 1;
                match receipt.effect {
                    Effect::DraftCreated { nep, .. } => c.drafted(nep),
                    Effect::Voted { .. } => self.stats.votes_acknowledged += 1,
                    _ => {}
                }
            }
            Err(e) => {
                if reliable {
                    return Err(ModelError::Setup {
                        command: signed.command.name(),
                        error: e.clone(),
                    });
                }
                let rule = crate::rule::rule_name(e);
                c.next_nonce = if PRE_EXECUTION_RULES.contains(&rule) {
                    next_nonce.unwrap_or(c.next_nonce)
                } else {
                    signed.nonce + 1
                };
                if let GovError::VotingClosed { nep, .. } = e {
                    c.closed.insert(*nep);
                    self.stats.votes_refused_closed += 1;
                }
            }
        }
        Ok(())
    }

    /// [`Sabotage::AcknowledgeLateVotes`]: a late refusal reported as counted.
    fn sabotage_answer(&mut self, signed: &SignedCommand, outcome: &Outcome, r: &mut OpResult) {
        if self.config.sabotage != Sabotage::AcknowledgeLateVotes {
            return;
        }
        if !matches!(outcome, Err(GovError::VotingClosed { .. })) {
            return;
        }
        let leader = &self.leader().state;
        r.outcome = OutcomeKind::Ok;
        r.rule = None;
        r.message = None;
        r.committed_ms = Some(leader.committed_time_ms());
        r.power = leader.account(&signed.author).map(|a| a.staked.0);
        self.stats.sabotaged += 1;
    }

    fn followers_step(&mut self, now: u64) {
        for r in 1..self.replicas.len() {
            if !self.replicas[r].up || self.rng.gen_range(0..1000) >= 600 {
                continue;
            }
            let batch = self.rng.gen_range(1..=MAX_FOLLOWER_BATCH);
            self.replicas[r].catch_up(&self.log, batch, now, &mut self.events);
        }
    }

    fn finish(mut self, now: u64) -> ModelRun {
        for r in self.replicas.iter_mut().filter(|r| r.up) {
            r.catch_up(&self.log, MAX_FOLLOWER_BATCH, now, &mut self.events);
        }
        let leader = &self.replicas[0].state;
        for (seq, issued_ms) in &self.issued_ms {
            let Some(record) = leader.certificate(*seq) else {
                continue;
            };
            let Some(issued) = &record.issued else {
                continue;
            };
            self.events.push(Event::Certificate(CertificateSeen {
                time_ms: *issued_ms,
                sequence: *seq,
                nep: record.event.nep,
                kind: record.event.kind,
                envelope: issued.envelope.clone(),
                replica_payloads: self
                    .replicas
                    .iter()
                    .filter(|r| r.up)
                    .filter_map(|r| replica_payload(&r.state, r.id, *seq))
                    .collect(),
            }));
        }
        self.stats.certificates = self.issued_ms.len() as u64;
        for r in self.replicas.iter().filter(|r| r.up) {
            for p in r.state.proposals(&ProposalFilter::default()) {
                let seen = FinalObservation {
                    time_ms: now,
                    settled_ms: r.settled.get(&p.id).copied(),
                    closing_index: r.closing.get(&p.id).copied(),
                };
                if let Some(mut f) = final_view(&r.state, r.id, p.id, seen) {
                    if self.config.sabotage == Sabotage::CountLateVotes {
                        let counted = count_late_votes(&mut f, &self.late, &r.state);
                        if r.id == 0 {
                            self.stats.sabotaged += counted;
                        }
                    }
                    self.events.push(Event::Final(f));
                }
            }
        }
        self.stats.entries = self.log.len() as u64;
        ModelRun {
            history: History {
                header: self.header,
                events: self.events,
            },
            stats: self.stats,
        }
    }
}

/// [`Sabotage::CountLateVotes`]: folds late refused votes into a final
/// view's ballots and tally. Returns how many ballots it changed.
fn count_late_votes(
    f: &mut crate::history::Final,
    late: &[LateRefusal],
    state: &neuroshard_governance::GovernanceState,
) -> u64 {
    let Some(tally) = f.tally.as_mut() else {
        return 0;
    };
    let mut changed = 0;
    for l in late.iter().filter(|l| l.nep == f.nep) {
        let power = state.account(&l.account).map_or(0, |a| a.staked.0);
        let ballot = BallotRecord {
            account: l.account,
            choice: l.choice,
            power,
        };
        match f.ballots.iter_mut().find(|b| b.account == l.account) {
            Some(b) if *b == ballot => continue,
            Some(b) => *b = ballot,
            None => f.ballots.push(ballot),
        }
        changed += 1;
    }
    f.ballots.sort_by_key(|a| a.account);
    let sum = |c: VoteChoice| {
        f.ballots
            .iter()
            .filter(|b| b.choice == c)
            .map(|b| b.power)
            .sum::<u64>()
    };
    tally.yes = sum(VoteChoice::Yes);
    tally.no = sum(VoteChoice::No);
    tally.abstain = sum(VoteChoice::Abstain);
    changed
}

/// The faults of one run, relative to the first NEP's deadline: the log
/// stalls just before, at or just after it; half the runs also crash a
/// follower somewhere in the last 1.5 s of the vote.
fn plan_faults(rng: &mut ChaCha8Rng) -> Vec<PlannedFault> {
    const STALL_OFFSETS_MS: [i64; 6] = [-300, -150, -50, 0, 50, 150];
    let mut plan = vec![PlannedFault {
        id: 1,
        kind: FaultKind::LogStall,
        offset_ms: STALL_OFFSETS_MS[rng.gen_range(0..STALL_OFFSETS_MS.len())],
        duration_ms: 50 * rng.gen_range(3..=20),
        started_ms: None,
        healed: false,
    }];
    if rng.gen_bool(0.5) {
        let restart = if rng.gen_bool(0.5) {
            Restart::FromSnapshot
        } else {
            Restart::FromGenesis
        };
        plan.push(PlannedFault {
            id: 2,
            kind: FaultKind::Crash {
                replica: rng.gen_range(1..MODEL_VALIDATORS),
                restart,
            },
            offset_ms: -50 * rng.gen_range(0..=30),
            duration_ms: 50 * rng.gen_range(4..=30),
            started_ms: None,
            healed: false,
        });
    }
    plan
}
