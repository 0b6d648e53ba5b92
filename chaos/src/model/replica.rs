//! One replica of the model: a governance state fed the shared log, what
//! the harness observed about it (closing ticks, settle times), and its
//! crash/restart cycle.

use std::collections::BTreeMap;

use neuroshard_governance::{Effect, Entry, Genesis, GovernanceState, NepId, Outcome};

use crate::history::{is_settled, Applied, Event, StateHash};
use crate::observe::{closes_vote, entry_summary};

use super::ModelError;

/// Most entries a follower applies in one `apply_batch` call (the node
/// applies Raft batches the same way).
pub const MAX_FOLLOWER_BATCH: usize = 8;

pub struct Replica {
    pub id: u32,
    pub state: GovernanceState,
    pub up: bool,
    /// The snapshot on "disk" while crashed: state and applied index are
    /// persisted together, as the node's sled batch does.
    disk: Option<Vec<u8>>,
    /// Log index of the tick that closed each NEP's vote here.
    pub closing: BTreeMap<NepId, u64>,
    /// Harness time each NEP was first seen settled here.
    pub settled: BTreeMap<NepId, u64>,
}

/// How a crashed replica comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Loads the snapshot it persisted, then catches up.
    FromSnapshot,
    /// Lost its disk: starts from genesis and replays the whole log.
    FromGenesis,
}

impl Replica {
    pub fn new(id: u32, genesis: &Genesis) -> Result<Self, ModelError> {
        Ok(Self {
            id,
            state: GovernanceState::from_genesis(genesis)?,
            up: true,
            disk: None,
            closing: BTreeMap::new(),
            settled: BTreeMap::new(),
        })
    }

    /// Next log index this replica needs.
    pub fn next_index(&self) -> u64 {
        self.state.last_applied_index().map_or(1, |i| i + 1)
    }

    pub fn crash(&mut self) {
        self.disk = Some(self.state.to_snapshot_bytes().expect("snapshot encodes"));
        self.up = false;
    }

    pub fn restart(&mut self, how: Restart, genesis: &Genesis) -> Result<(), ModelError> {
        self.state = match (how, self.disk.take()) {
            (Restart::FromSnapshot, Some(bytes)) => GovernanceState::from_snapshot_bytes(&bytes)?,
            _ => GovernanceState::from_genesis(genesis)?,
        };
        self.up = true;
        Ok(())
    }

    /// Applies one entry on its own and reports every index (the leader,
    /// which answers clients from this outcome).
    pub fn apply_one(
        &mut self,
        index: u64,
        entry: &Entry,
        now: u64,
        out: &mut Vec<Event>,
    ) -> Outcome {
        let outcome = self.state.apply(index, entry);
        self.observe(index, &outcome, now);
        out.push(Event::Applied(Applied {
            time_ms: now,
            replica: self.id,
            index,
            state_hash: StateHash(self.state.state_hash()),
            entry: Some(entry_summary(entry, &outcome)),
        }));
        outcome
    }

    /// Applies the log from its next index in batches of `batch` entries,
    /// reporting the state hash (and last entry) at the end of each batch.
    pub fn catch_up(&mut self, log: &[Entry], batch: usize, now: u64, out: &mut Vec<Event>) {
        let batch = batch.clamp(1, MAX_FOLLOWER_BATCH);
        loop {
            let from = self.next_index();
            let Some(rest) = log.get((from - 1) as usize..) else {
                return;
            };
            if rest.is_empty() {
                return;
            }
            let chunk: Vec<(u64, Entry)> = rest
                .iter()
                .take(batch)
                .enumerate()
                .map(|(i, e)| (from + i as u64, e.clone()))
                .collect();
            // The model logs one command per entry: one outcome each.
            let outcomes: Vec<Outcome> = self
                .state
                .apply_batch(&chunk)
                .into_iter()
                .map(|mut o| o.pop().expect("a model entry has one outcome"))
                .collect();
            for ((index, _), outcome) in chunk.iter().zip(&outcomes) {
                self.observe(*index, outcome, now);
            }
            if let (Some((index, entry)), Some(outcome)) = (chunk.last(), outcomes.last()) {
                out.push(Event::Applied(Applied {
                    time_ms: now,
                    replica: self.id,
                    index: *index,
                    state_hash: StateHash(self.state.state_hash()),
                    entry: Some(entry_summary(entry, outcome)),
                }));
            }
        }
    }

    /// Notes closing ticks and settled NEPs from a tick's transitions.
    fn observe(&mut self, index: u64, outcome: &Outcome, now: u64) {
        let Ok(receipt) = outcome else { return };
        let Effect::Ticked { transitions } = &receipt.effect else {
            return;
        };
        for t in transitions {
            if closes_vote(t) {
                self.closing.entry(t.nep).or_insert(index);
            }
            let emergency = self.state.proposal(t.nep).is_some_and(|p| p.is_emergency());
            if is_settled(t.to, emergency) {
                self.settled.entry(t.nep).or_insert(now);
            }
        }
    }
}
