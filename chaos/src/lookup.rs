//! Views over a history that several invariants share: operations with
//! their attempts, finals by NEP, where each vote was applied, and where
//! each NEP's vote closed.

use std::collections::BTreeMap;

use neuroshard_governance::{AccountId, NepId, VoteChoice};

use crate::history::{
    Applied, CertificateSeen, CommandSummary, EntryKind, Event, Final, History, Invoke, OpResult,
    OutcomeKind,
};
use crate::observe::closes_vote_stages;

/// One client operation: the first send, its identical retries, and every
/// answer (or timeout) the client recorded.
#[derive(Clone, Debug)]
pub struct OpView<'a> {
    pub client: u32,
    pub op: u64,
    pub invokes: Vec<&'a Invoke>,
    pub results: Vec<&'a OpResult>,
}

impl<'a> OpView<'a> {
    /// The command of the first send (retries must repeat it).
    pub fn command(&self) -> Option<&'a CommandSummary> {
        self.invokes.first().map(|i| &i.command)
    }

    /// The first answer that says what happened (`ok` or `error`).
    pub fn known(&self) -> Option<&'a OpResult> {
        self.results
            .iter()
            .copied()
            .find(|r| r.outcome != OutcomeKind::Unknown)
    }
}

/// Where a vote was seen applied, and what it did there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteApplication {
    pub account: AccountId,
    pub nonce: u64,
    pub nep: NepId,
    pub choice: VoteChoice,
    /// The log index of the entry (for a client `ok`, the receipt's index:
    /// where the vote was first applied and counted).
    pub index: u64,
    pub outcome: OutcomeKind,
    /// `ok` only: the index the receipt names. Equal to `index` when this
    /// entry is the one that counted the vote, smaller for an identical
    /// retry answered from memory.
    pub receipt_index: Option<u64>,
    pub power: Option<u64>,
    pub rule: Option<String>,
    pub seen_by: Observer,
}

impl VoteApplication {
    /// This entry is the one that counted the ballot.
    pub fn counted_here(&self) -> bool {
        self.outcome == OutcomeKind::Ok && self.receipt_index == Some(self.index)
    }
}

/// Who reported an observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Observer {
    Client { client: u32, op: u64, attempt: u32 },
    Replica(u32),
}

impl std::fmt::Display for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Observer::Client {
                client,
                op,
                attempt,
            } => write!(f, "client {client} op {op} attempt {attempt}"),
            Observer::Replica(r) => write!(f, "replica {r}"),
        }
    }
}

impl History {
    pub fn invokes(&self) -> impl Iterator<Item = &Invoke> {
        self.events.iter().filter_map(|e| match e {
            Event::Invoke(i) => Some(i),
            _ => None,
        })
    }

    pub fn results(&self) -> impl Iterator<Item = &OpResult> {
        self.events.iter().filter_map(|e| match e {
            Event::Result(r) => Some(r),
            _ => None,
        })
    }

    pub fn applied(&self) -> impl Iterator<Item = &Applied> {
        self.events.iter().filter_map(|e| match e {
            Event::Applied(a) => Some(a),
            _ => None,
        })
    }

    pub fn certificates(&self) -> impl Iterator<Item = &CertificateSeen> {
        self.events.iter().filter_map(|e| match e {
            Event::Certificate(c) => Some(c),
            _ => None,
        })
    }

    pub fn finals(&self) -> impl Iterator<Item = &Final> {
        self.events.iter().filter_map(|e| match e {
            Event::Final(f) => Some(f),
            _ => None,
        })
    }

    /// Finals grouped by NEP, in recording order.
    pub fn finals_by_nep(&self) -> BTreeMap<NepId, Vec<&Final>> {
        let mut out: BTreeMap<NepId, Vec<&Final>> = BTreeMap::new();
        for f in self.finals() {
            out.entry(f.nep).or_default().push(f);
        }
        out
    }

    /// Operations keyed by (client, op).
    pub fn ops(&self) -> BTreeMap<(u32, u64), OpView<'_>> {
        let mut out: BTreeMap<(u32, u64), OpView<'_>> = BTreeMap::new();
        let view = |client, op| OpView {
            client,
            op,
            invokes: Vec::new(),
            results: Vec::new(),
        };
        for e in &self.events {
            match e {
                Event::Invoke(i) => out
                    .entry((i.client, i.op))
                    .or_insert_with(|| view(i.client, i.op))
                    .invokes
                    .push(i),
                Event::Result(r) => out
                    .entry((r.client, r.op))
                    .or_insert_with(|| view(r.client, r.op))
                    .results
                    .push(r),
                _ => {}
            }
        }
        out
    }

    /// Every observed application of a vote: from replicas' entry
    /// summaries and from clients' answers that name a log index.
    pub fn vote_applications(&self) -> Vec<VoteApplication> {
        let mut out = Vec::new();
        for a in self.applied() {
            let Some(entry) = &a.entry else { continue };
            let Some(c) = &entry.command else { continue };
            let (Some(nep), Some(choice), true) = (c.nep, c.choice, c.is_vote()) else {
                continue;
            };
            out.push(VoteApplication {
                account: c.account,
                nonce: c.nonce,
                nep,
                choice,
                index: a.index,
                outcome: entry.outcome,
                receipt_index: entry.receipt_index,
                power: entry.power,
                rule: entry.rule.clone(),
                seen_by: Observer::Replica(a.replica),
            });
        }
        for op in self.ops().values() {
            let Some(c) = op.command() else { continue };
            let (Some(nep), Some(choice), true) = (c.nep, c.choice, c.is_vote()) else {
                continue;
            };
            for r in &op.results {
                let Some(index) = r.log_index else { continue };
                if r.outcome == OutcomeKind::Unknown {
                    continue;
                }
                out.push(VoteApplication {
                    account: c.account,
                    nonce: c.nonce,
                    nep,
                    choice,
                    index,
                    outcome: r.outcome,
                    receipt_index: (r.outcome == OutcomeKind::Ok).then_some(index),
                    power: r.power,
                    rule: r.rule.clone(),
                    seen_by: Observer::Client {
                        client: op.client,
                        op: op.op,
                        attempt: r.attempt,
                    },
                });
            }
        }
        out
    }

    /// The log index of the tick that closed `nep`'s vote: as the finals
    /// state it, else as a replica's applied tick shows it.
    pub fn closing_index(&self, nep: NepId) -> Option<u64> {
        if let Some(i) = self
            .finals()
            .filter(|f| f.nep == nep)
            .find_map(|f| f.closing_index)
        {
            return Some(i);
        }
        self.applied()
            .filter_map(|a| {
                let entry = a.entry.as_ref()?;
                (entry.kind == EntryKind::Tick
                    && entry
                        .transitions
                        .iter()
                        .any(|t| t.nep == nep && closes_vote_stages(t.from, t.to)))
                .then_some(a.index)
            })
            .min()
    }

    /// Time of the last `heal`, if any fault was healed.
    pub fn last_heal_ms(&self) -> Option<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Heal(h) => Some(h.time_ms),
                _ => None,
            })
            .max()
    }

    /// Time of the last event of any kind.
    pub fn end_ms(&self) -> u64 {
        self.events
            .iter()
            .map(Event::time_ms)
            .max()
            .unwrap_or(self.header.started_ms)
    }
}
