//! What the model's clients do: one author drafts and submits the NEPs,
//! voters vote continuously while each vote is open and a little past its
//! deadline, one latecomer votes only once the deadline has passed, and
//! every unanswered command is retried byte for byte.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;
use neuroshard_governance::{
    Command, EconomicImpact, Micro, NepContent, NepId, NepType, ParamValue, ParameterChange,
    SignedCommand, UpgradePath, VoteChoice,
};
use rand::Rng;

/// How long past a deadline voters keep trying (they learn the vote is
/// closed only from `voting_closed`).
pub const LATE_WINDOW_MS: u64 = 600;
/// Longest pause between two retries of one command.
pub const MAX_BACKOFF_MS: u64 = 800;

/// The NEPs of the model run: one TRAIN and one NET change, on disjoint
/// keys so both can be scheduled.
pub fn nep_contents() -> Vec<NepContent> {
    vec![
        content(
            NepType::Train,
            "train.prediction_heads",
            ParamValue::Integer(1),
            ParamValue::Integer(4),
        ),
        content(
            NepType::Net,
            "net.gossip_fanout",
            ParamValue::Integer(8),
            ParamValue::Integer(12),
        ),
    ]
}

fn content(nep_type: NepType, key: &str, old: ParamValue, new: ParamValue) -> NepContent {
    NepContent {
        title: format!("chaos model: change {key}"),
        nep_type,
        motivation: "exercise votes across the closing tick".to_owned(),
        specification: format!("set {key}"),
        parameter_changes: vec![ParameterChange {
            key: key.to_owned(),
            expected_old: old,
            new,
        }],
        economic_impact: EconomicImpact {
            training_efficiency_multiplier: Micro::ONE,
            training_reward_multiplier: Micro::ONE,
            net_earnings_change_percent: Micro(0),
            summary: "no economic change".to_owned(),
        },
        upgrade_path: UpgradePath {
            grace_period_days: 1,
            backward_compatible: true,
        },
    }
}

/// What a client does.
pub enum Role {
    /// Drafts and submits `contents` in order, one NEP every `spacing_ms`.
    Author {
        contents: Vec<NepContent>,
        spacing_ms: u64,
        /// The NEP created but not yet submitted.
        drafted: Option<NepId>,
        next_content: usize,
        last_submit_ms: Option<u64>,
    },
    /// Votes while a vote is open (and a little after).
    Voter { preference: VoteChoice },
    /// Votes only once a deadline has passed.
    Latecomer,
}

/// A command in flight: the same signed bytes are re-sent until answered.
pub struct Pending {
    pub op: u64,
    pub signed: SignedCommand,
    pub attempt: u32,
    pub retry_at_ms: u64,
}

pub struct Client {
    pub id: u32,
    pub key: SigningKey,
    pub next_nonce: u64,
    pub role: Role,
    pub pending: Option<Pending>,
    pub next_op: u64,
    /// NEPs this client was told are closed.
    pub closed: BTreeSet<NepId>,
    pub last_choice: BTreeMap<NepId, VoteChoice>,
}

/// A vote a voter may cast now: the NEP, its open time and its deadline.
#[derive(Clone, Copy, Debug)]
pub struct OpenVote {
    pub nep: NepId,
    pub opened_ms: u64,
    pub deadline_ms: u64,
}

const CHOICES: [VoteChoice; 3] = [VoteChoice::Yes, VoteChoice::No, VoteChoice::Abstain];

impl Client {
    pub fn new(id: u32, key: SigningKey, role: Role) -> Self {
        Self {
            id,
            key,
            next_nonce: 1,
            role,
            pending: None,
            next_op: 1,
            closed: BTreeSet::new(),
            last_choice: BTreeMap::new(),
        }
    }

    /// Delay before retry number `attempt` (1-based): doubling, capped.
    pub fn backoff_ms(step_ms: u64, attempt: u32) -> u64 {
        step_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(16))
            .min(MAX_BACKOFF_MS)
    }

    /// The next command this client wants to send now, if any.
    pub fn next_command<R: Rng>(
        &mut self,
        now: u64,
        open: &[OpenVote],
        vote_per_mille: u32,
        rng: &mut R,
    ) -> Option<Command> {
        match &mut self.role {
            Role::Author {
                contents,
                spacing_ms,
                drafted,
                next_content,
                last_submit_ms,
            } => {
                if let Some(nep) = drafted.take() {
                    *last_submit_ms = Some(now);
                    return Some(Command::Submit { nep });
                }
                let due = last_submit_ms.is_none_or(|t| now >= t + *spacing_ms);
                let content = contents.get(*next_content).filter(|_| due)?.clone();
                *next_content += 1;
                Some(Command::CreateDraft { content })
            }
            Role::Voter { preference } => {
                let preference = *preference;
                let candidates: Vec<&OpenVote> = open
                    .iter()
                    .filter(|v| !self.closed.contains(&v.nep))
                    .filter(|v| now >= v.opened_ms && now < v.deadline_ms + LATE_WINDOW_MS)
                    .collect();
                if candidates.is_empty() || rng.gen_range(0..1000) >= vote_per_mille {
                    return None;
                }
                let v = candidates[rng.gen_range(0..candidates.len())];
                // Mostly the preference; sometimes a change of mind, so
                // ballots get replaced.
                let choice = match self.last_choice.get(&v.nep) {
                    Some(last) if rng.gen_bool(0.25) => {
                        let others: Vec<VoteChoice> =
                            CHOICES.into_iter().filter(|c| c != last).collect();
                        others[rng.gen_range(0..others.len())]
                    }
                    _ if rng.gen_bool(0.85) => preference,
                    _ => CHOICES[rng.gen_range(0..CHOICES.len())],
                };
                self.last_choice.insert(v.nep, choice);
                Some(Command::Vote { nep: v.nep, choice })
            }
            Role::Latecomer => {
                let v = open
                    .iter()
                    .filter(|v| !self.closed.contains(&v.nep))
                    .find(|v| now >= v.deadline_ms && now < v.deadline_ms + LATE_WINDOW_MS)?;
                if rng.gen_range(0..1000) >= vote_per_mille {
                    return None;
                }
                Some(Command::Vote {
                    nep: v.nep,
                    choice: CHOICES[rng.gen_range(0..CHOICES.len())],
                })
            }
        }
    }

    /// The author learned the id of the NEP it drafted.
    pub fn drafted(&mut self, nep: NepId) {
        if let Role::Author { drafted, .. } = &mut self.role {
            *drafted = Some(nep);
        }
    }

    /// Whether the author still has NEPs to draft or submit.
    pub fn author_busy(&self) -> bool {
        match &self.role {
            Role::Author {
                contents,
                drafted,
                next_content,
                ..
            } => drafted.is_some() || *next_content < contents.len(),
            _ => false,
        }
    }
}
