//! The validator's real in-memory state machine with the harness watching:
//! every batch openraft applies goes to `MemStateMachine` unchanged, and
//! the harness records what each entry did.
//!
//! The node applies Raft batches as one governance batch, so it only has a
//! state hash at the end of each batch. A shadow copy of the governance
//! state applies the same entries one by one to give every index its hash;
//! at the end of each batch the shadow's hash must equal the real one
//! (batched and one-by-one application agree), and if it does not, the
//! real hash is recorded too and `replicas_agree` reports the index.

use neuroshard_governance::{Effect, Entry as GovEntry, GovernanceState, Outcome, SnapshotError};
use neuroshard_node::store::mem::MemSnapshotBuilder;
use neuroshard_node::store::{MemStateMachine, SnapshotBuffer};
use neuroshard_node::types::{
    Applied, LogId, RaftEntry, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use openraft::storage::RaftStateMachine;
use openraft::EntryPayload;

use crate::history::{is_settled, Applied as AppliedEvent, Event, StateHash};
use crate::observe::{closes_vote, entry_summary};
use crate::sim::clock;
use crate::sim::journal::Journal;

/// One validator's state machine as openraft sees it.
pub struct RecordingMachine {
    replica: u32,
    inner: MemStateMachine,
    shadow: GovernanceState,
    journal: Journal,
    epoch_ms: u64,
}

fn copy_state(state: &GovernanceState) -> Result<GovernanceState, SnapshotError> {
    GovernanceState::from_snapshot_bytes(&state.to_snapshot_bytes().expect("snapshot encodes"))
}

impl RecordingMachine {
    /// Wraps the replica's persistent machine (a restarted validator gets
    /// the machine it had before the crash: its "disk").
    pub fn new(
        replica: u32,
        inner: MemStateMachine,
        journal: Journal,
        epoch_ms: u64,
    ) -> Result<Self, SnapshotError> {
        let shadow = copy_state(&inner.shared().read().state)?;
        Ok(Self {
            replica,
            inner,
            shadow,
            journal,
            epoch_ms,
        })
    }

    /// Notes what a tick did: votes opened, closed, NEPs settled.
    fn observe(&self, index: u64, outcome: &Outcome, now_ms: u64) {
        let Ok(receipt) = outcome else { return };
        match &receipt.effect {
            Effect::Ticked { transitions } => {
                for t in transitions {
                    let proposal = self.shadow.proposal(t.nep);
                    if closes_vote(t) {
                        self.journal.closed_vote(self.replica, t.nep, index, now_ms);
                    }
                    if let Some(v) = proposal.and_then(|p| p.vote.as_ref()) {
                        self.journal
                            .vote_opened(t.nep, v.opened_ms.0, v.deadline_ms.0);
                    }
                    let emergency = proposal.is_some_and(|p| p.is_emergency());
                    if is_settled(t.to, emergency) {
                        self.journal.settled(self.replica, t.nep, now_ms);
                    }
                }
            }
            Effect::CertificateRecorded { sequence } => self.journal.issued(*sequence, now_ms),
            _ => {}
        }
    }

    fn real_hash(&self) -> [u8; 32] {
        self.inner.shared().read().state.state_hash()
    }
}

impl RaftStateMachine<TypeConfig> for RecordingMachine {
    type SnapshotBuilder = MemSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.inner.applied_state().await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = RaftEntry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<RaftEntry> = entries.into_iter().collect();
        let governance: Vec<(u64, GovEntry)> = entries
            .iter()
            .filter_map(|e| match &e.payload {
                EntryPayload::Normal(g) => Some((e.log_id.index, g.clone())),
                _ => None,
            })
            .collect();
        let results = self.inner.apply(entries).await?;
        if governance.is_empty() {
            return Ok(results);
        }
        let now_ms = clock::now_ms(self.epoch_ms);
        let mut last = None;
        for (index, entry) in &governance {
            let shadow_outcomes = self.shadow.apply_entry(*index, entry);
            // What the node answered is what the history records; the
            // shadow only supplies the per-index hash.
            let outcomes = results
                .iter()
                .find(|r| r.log_index == *index)
                .map(|r| r.outcomes.clone())
                .filter(|o| o.len() == shadow_outcomes.len())
                .unwrap_or(shadow_outcomes);
            // A batch is recorded command by command, each under the
            // entry's index (a client's answer names the same index).
            let parts: Vec<GovEntry> = match entry {
                GovEntry::Commands(cs) => cs.iter().cloned().map(GovEntry::Command).collect(),
                other => vec![other.clone()],
            };
            for (part, outcome) in parts.iter().zip(&outcomes) {
                self.observe(*index, outcome, now_ms);
                self.journal.record(Event::Applied(AppliedEvent {
                    time_ms: now_ms,
                    replica: self.replica,
                    index: *index,
                    state_hash: StateHash(self.shadow.state_hash()),
                    entry: Some(entry_summary(part, outcome)),
                }));
            }
            last = Some(*index);
        }
        let real = self.real_hash();
        if let Some(index) = last.filter(|_| real != self.shadow.state_hash()) {
            self.journal.record(Event::Applied(AppliedEvent {
                time_ms: now_ms,
                replica: self.replica,
                index,
                state_hash: StateHash(real),
                entry: None,
            }));
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.inner.get_snapshot_builder().await
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotBuffer>, StorageError> {
        self.inner.begin_receiving_snapshot().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotBuffer>,
    ) -> Result<(), StorageError> {
        self.inner.install_snapshot(meta, snapshot).await?;
        let now_ms = clock::now_ms(self.epoch_ms);
        let shared = self.inner.shared();
        let machine = shared.read();
        // The installed image was checked by the node; a copy of it that
        // does not decode would be a bug in the snapshot encoding itself.
        match copy_state(&machine.state) {
            Ok(state) => self.shadow = state,
            Err(e) => {
                return Err(openraft::StorageIOError::read_snapshot(
                    Some(meta.signature()),
                    openraft::AnyError::new(&e),
                )
                .into())
            }
        }
        self.journal.snapshot_installed(self.replica);
        if let Some(index) = machine.last_applied.map(|l| l.index) {
            self.journal.record(Event::Applied(AppliedEvent {
                time_ms: now_ms,
                replica: self.replica,
                index,
                state_hash: StateHash(machine.state.state_hash()),
                entry: None,
            }));
        }
        // NEPs decided inside the snapshot settled here when it arrived.
        for p in machine
            .state
            .proposals(&neuroshard_governance::ProposalFilter::default())
        {
            if let Some(v) = &p.vote {
                self.journal
                    .vote_opened(p.id, v.opened_ms.0, v.deadline_ms.0);
                if let Some(closing) = v.closed_index {
                    self.journal
                        .closed_vote(self.replica, p.id, closing, now_ms);
                }
            }
            if is_settled(p.stage, p.is_emergency()) {
                self.journal.settled(self.replica, p.id, now_ms);
            }
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        self.inner.get_current_snapshot().await
    }
}
