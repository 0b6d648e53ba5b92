//! What the simulation records while it runs, shared by every simulated
//! host and the driver: the history's events in the order they happen, and
//! the harness's own observations (closing ticks, settle times, issue
//! times, each vote's window) that the final views and the workload need.
//!
//! Everything runs on turmoil's one thread, in an order fixed by the seed,
//! so the events come out in the same order in every run of a seed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use neuroshard_governance::NepId;

use crate::history::{Event, MAX_HISTORY_EVENTS};
use crate::model::workload::OpenVote;

/// Most events one simulated run records (a history holds no more).
pub const MAX_SIM_EVENTS: usize = MAX_HISTORY_EVENTS;

/// One vote's window as the replicas applied it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoteWindow {
    pub opened_ms: u64,
    pub deadline_ms: u64,
    /// Harness time a replica first applied the tick that closed it.
    pub closed_at_ms: Option<u64>,
}

/// What the harness saw one replica do.
#[derive(Clone, Debug, Default)]
pub struct ReplicaSeen {
    /// Log index of the tick that closed each NEP's vote here.
    pub closing: BTreeMap<NepId, u64>,
    /// Harness time each NEP was first seen settled here.
    pub settled: BTreeMap<NepId, u64>,
    /// Snapshots installed (state replaced from the leader).
    pub snapshots_installed: u64,
}

#[derive(Default)]
struct State {
    events: Vec<Event>,
    dropped: usize,
    replicas: Vec<ReplicaSeen>,
    /// Harness time each certificate's entry was first applied.
    issued_ms: BTreeMap<u64, u64>,
    votes: BTreeMap<NepId, VoteWindow>,
}

/// The shared record of one run.
#[derive(Clone)]
pub struct Journal(Arc<Mutex<State>>);

impl Journal {
    pub fn new(replicas: usize) -> Self {
        Self(Arc::new(Mutex::new(State {
            replicas: vec![ReplicaSeen::default(); replicas],
            ..State::default()
        })))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while recording left plain collections behind.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, event: Event) {
        let mut s = self.lock();
        if s.events.len() >= MAX_SIM_EVENTS {
            s.dropped += 1;
        } else {
            s.events.push(event);
        }
    }

    /// Events refused because the run exceeded [`MAX_SIM_EVENTS`].
    pub fn dropped(&self) -> usize {
        self.lock().dropped
    }

    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut self.lock().events)
    }

    pub fn closed_vote(&self, replica: u32, nep: NepId, index: u64, now_ms: u64) {
        let mut s = self.lock();
        if let Some(r) = s.replicas.get_mut(replica as usize) {
            r.closing.entry(nep).or_insert(index);
        }
        if let Some(v) = s.votes.get_mut(&nep) {
            v.closed_at_ms.get_or_insert(now_ms);
        }
    }

    pub fn settled(&self, replica: u32, nep: NepId, now_ms: u64) {
        if let Some(r) = self.lock().replicas.get_mut(replica as usize) {
            r.settled.entry(nep).or_insert(now_ms);
        }
    }

    pub fn snapshot_installed(&self, replica: u32) {
        if let Some(r) = self.lock().replicas.get_mut(replica as usize) {
            r.snapshots_installed += 1;
        }
    }

    pub fn vote_opened(&self, nep: NepId, opened_ms: u64, deadline_ms: u64) {
        self.lock().votes.entry(nep).or_insert(VoteWindow {
            opened_ms,
            deadline_ms,
            closed_at_ms: None,
        });
    }

    pub fn issued(&self, sequence: u64, now_ms: u64) {
        self.lock().issued_ms.entry(sequence).or_insert(now_ms);
    }

    pub fn issued_ms(&self) -> BTreeMap<u64, u64> {
        self.lock().issued_ms.clone()
    }

    pub fn replica(&self, replica: u32) -> ReplicaSeen {
        self.lock()
            .replicas
            .get(replica as usize)
            .cloned()
            .unwrap_or_default()
    }

    pub fn votes(&self) -> BTreeMap<NepId, VoteWindow> {
        self.lock().votes.clone()
    }

    /// The votes as the workload sees them at `now_ms`. A vote's "deadline"
    /// for the workload is the later of its committed deadline and the
    /// moment its closing tick was first applied (or now, while it has not
    /// been): voters keep voting until they are told it closed, however
    /// late a fault makes the closing tick.
    pub fn open_votes(&self, now_ms: u64) -> Vec<OpenVote> {
        self.lock()
            .votes
            .iter()
            .map(|(nep, v)| OpenVote {
                nep: *nep,
                opened_ms: v.opened_ms,
                deadline_ms: v
                    .deadline_ms
                    .max(v.closed_at_ms.unwrap_or(now_ms.max(v.deadline_ms))),
            })
            .collect()
    }
}
