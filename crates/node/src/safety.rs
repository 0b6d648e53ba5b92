//! What one validator refuses from the others before Raft sees it, what it
//! does about the validator that sent it, and what it remembers of the
//! others' acknowledgements (docs/operations.md, "Faulty leaders and lost
//! disks").
//!
//! openraft treats an error of its storage as fatal, so nothing a leader
//! sends may be refused inside the store: the peer service asks [`Safety`]
//! first and answers a refusal itself. A refused leader is ignored for
//! `safety.ignore_refused_leader_ms` (doubling on repeats) and this
//! validator campaigns, so a faulty leader costs an election, not the
//! committee's progress. The rules:
//!
//! * a `Tick` more than `gov.max_clock_skew_ms` ahead of this validator's
//!   clock (a leader running ahead would close votes early);
//! * a membership entry or a snapshot whose membership is not the genesis
//!   committee (a leader making itself the only voter);
//! * committed time behind this validator's clock by more than
//!   `gov.max_clock_skew_ms` under one leader for longer than a grace (a
//!   leader withholding ticks would keep a vote open late): the tick
//!   watchdog ([`run_tick_watchdog`]);
//! * a `CertificateIssued` entry whose certificate does not verify under
//!   the pinned genesis committee (a bad signature, too few or forged
//!   shares, another chain's committee): apply would refuse it anyway, but
//!   a leader that sends one is faulty and is not given a log entry;
//! * a vote request while this validator recovers its data directory (it
//!   must not vote before it holds what it acknowledged).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use openraft::EntryPayload;

use crate::clock::Clock;
use crate::store::SharedMachine;
use crate::types::{LogId, NodeId, Raft, RaftEntry, StoredMembership};

/// A repeat offence doubles the time an offender is ignored, at most this
/// many times over the configured base.
pub const MAX_IGNORE_FACTOR: u32 = 32;

/// The furthest a term another validator sends may lie above this
/// validator's own: honest terms grow by one per election, so this is
/// centuries of elections, and far from `u64::MAX` (where openraft's
/// `term + 1` would overflow).
pub const MAX_TERM_STEP: u64 = 1 << 32;

/// Why a message from another validator was refused before Raft saw it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("tick at log index {index} says {tick_ms} ms, {ahead_ms} ms ahead of this validator's clock ({clock_ms} ms): more than gov.max_clock_skew_ms = {max_skew_ms}")]
    TickAhead {
        index: u64,
        tick_ms: u64,
        clock_ms: u64,
        ahead_ms: u64,
        max_skew_ms: u64,
    },
    #[error("{what} at log index {index} names voters {voters:?} and other nodes {others:?}: the committee is pinned to the genesis validators {genesis:?} (as one configuration, no learners)")]
    ForeignMembership {
        what: &'static str,
        index: u64,
        voters: BTreeSet<NodeId>,
        others: BTreeSet<NodeId>,
        genesis: BTreeSet<NodeId>,
    },
    #[error("committed time {committed_ms} ms has been {behind_ms} ms behind this validator's clock for {held_ms} ms under leader {leader}: more than gov.max_clock_skew_ms = {max_skew_ms} (the leader withholds ticks)")]
    TicksWithheld {
        leader: NodeId,
        committed_ms: u64,
        behind_ms: u64,
        held_ms: u64,
        max_skew_ms: u64,
    },
    #[error("certificate {sequence} at log index {index} does not verify under the genesis committee: {reason}")]
    BadCertificate {
        index: u64,
        sequence: u64,
        reason: String,
    },
    #[error("malformed message: {what}")]
    MalformedAppend { what: String },
    #[error(
        "term {term} is implausible: more than {MAX_TERM_STEP} above this validator's term {own}"
    )]
    TermTooHigh { term: u64, own: u64 },
    #[error("validator {from} is ignored for another {remaining_ms} ms after it sent what this validator refused ({rule})")]
    Ignored {
        from: NodeId,
        remaining_ms: u64,
        rule: &'static str,
    },
    #[error("this validator is recovering its data directory (applied {applied:?}, the others reported {target}): it grants no vote until it holds what it acknowledged")]
    Recovering { applied: Option<u64>, target: u64 },
    #[error("snapshot {snapshot_id} ({bytes} bytes, up to log index {index}) is not a certified checkpoint of this chain: {reason}")]
    UncertifiedSnapshot {
        snapshot_id: String,
        index: u64,
        bytes: usize,
        reason: String,
    },
}

impl Refusal {
    /// The rule's stable name (logs, status, docs).
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::TickAhead { .. } => "tick_ahead",
            Refusal::ForeignMembership { .. } => "foreign_membership",
            Refusal::TicksWithheld { .. } => "ticks_withheld",
            Refusal::BadCertificate { .. } => "bad_certificate",
            Refusal::MalformedAppend { .. } => "malformed",
            Refusal::TermTooHigh { .. } => "term_too_high",
            Refusal::Ignored { .. } => "ignored_validator",
            Refusal::Recovering { .. } => "recovering",
            Refusal::UncertifiedSnapshot { .. } => "uncertified_snapshot",
        }
    }

    /// The log index the refused message was about, for the `index` field.
    pub fn index(&self) -> Option<u64> {
        match self {
            Refusal::TickAhead { index, .. }
            | Refusal::ForeignMembership { index, .. }
            | Refusal::BadCertificate { index, .. }
            | Refusal::UncertifiedSnapshot { index, .. } => Some(*index),
            Refusal::TicksWithheld { .. }
            | Refusal::MalformedAppend { .. }
            | Refusal::TermTooHigh { .. }
            | Refusal::Ignored { .. }
            | Refusal::Recovering { .. } => None,
        }
    }

    /// Whether the sender did something wrong (it is then ignored and this
    /// validator campaigns), rather than being refused because of an
    /// earlier offence or this validator's own state.
    pub fn is_offence(&self) -> bool {
        matches!(
            self,
            Refusal::TickAhead { .. }
                | Refusal::ForeignMembership { .. }
                | Refusal::TicksWithheld { .. }
                | Refusal::BadCertificate { .. }
                | Refusal::MalformedAppend { .. }
                | Refusal::TermTooHigh { .. }
                | Refusal::UncertifiedSnapshot { .. }
        )
    }

    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::failed_precondition(format!("refused before Raft ({}): {self}", self.rule()))
    }
}

/// An ignored validator.
#[derive(Clone, Debug)]
struct Ignored {
    until: Instant,
    rule: &'static str,
    /// Offences so far; the next one is ignored twice as long.
    strikes: u32,
}

/// This validator recovering a lost or rolled-back data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovering {
    /// The highest log index the other validators reported (shown in the
    /// status; the probe's answers are not trusted to end the recovery).
    pub target_index: u64,
    /// The term of the vote it stored to recover. It grants votes and
    /// campaigns again once it applied an entry of this term or later: a
    /// leader elected without it (it votes for no one), which by Raft's
    /// leader completeness holds every committed entry, and whose log it
    /// now holds up to that entry.
    pub since_term: u64,
}

/// The highest log id each other validator acknowledged to this one while
/// it led: kept in memory and (on sled) in the `acks` tree, written
/// without a sync of its own (the sled-sync thread makes it durable within
/// `durability::SLED_SYNC_INTERVAL`). Another
/// validator starting up asks for its own record: holding less than it
/// acknowledged means its data directory was rolled back.
pub struct AckRecords {
    mem: Mutex<BTreeMap<NodeId, LogId>>,
    tree: Option<sled::Tree>,
}

const ACK_TREE: &str = "acks";

impl AckRecords {
    pub fn in_memory() -> Self {
        Self {
            mem: Mutex::default(),
            tree: None,
        }
    }

    /// Records kept in `db`'s `acks` tree (loaded now).
    pub fn on_disk(db: &sled::Db) -> Result<Self, sled::Error> {
        let tree = db.open_tree(ACK_TREE)?;
        let mut mem = BTreeMap::new();
        for item in tree.iter() {
            let (k, v) = item?;
            let (Ok(k), Ok(id)) = (
                <[u8; 8]>::try_from(k.as_ref()),
                postcard::from_bytes::<LogId>(&v),
            ) else {
                continue;
            };
            mem.insert(u64::from_be_bytes(k), id);
        }
        Ok(Self {
            mem: Mutex::new(mem),
            tree: Some(tree),
        })
    }

    /// The highest log id `node` is known to have acknowledged.
    pub fn get(&self, node: NodeId) -> Option<LogId> {
        self.mem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&node)
            .copied()
    }

    /// Notes that `node` acknowledged `log_id` (kept if higher).
    pub fn record(&self, node: NodeId, log_id: LogId) {
        let mut mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        if mem.get(&node).is_some_and(|have| *have >= log_id) {
            return;
        }
        mem.insert(node, log_id);
        if let Some(tree) = &self.tree {
            if let Ok(bytes) = postcard::to_allocvec(&log_id) {
                if let Err(e) = tree.insert(node.to_be_bytes(), bytes) {
                    crate::store::durability::disk_failed("write the acknowledgement records", &e);
                }
            }
        }
    }
}

/// Counts of refusals by rule, for the status.
#[derive(Default)]
pub struct RefusalCounts {
    tick_ahead: AtomicU64,
    foreign_membership: AtomicU64,
    ticks_withheld: AtomicU64,
    bad_certificate: AtomicU64,
    malformed: AtomicU64,
    term_too_high: AtomicU64,
    ignored_validator: AtomicU64,
    recovering: AtomicU64,
    reverted_followers: AtomicU64,
    uncertified_snapshot: AtomicU64,
}

impl RefusalCounts {
    fn count(&self, r: &Refusal) {
        let c = match r {
            Refusal::TickAhead { .. } => &self.tick_ahead,
            Refusal::ForeignMembership { .. } => &self.foreign_membership,
            Refusal::TicksWithheld { .. } => &self.ticks_withheld,
            Refusal::BadCertificate { .. } => &self.bad_certificate,
            Refusal::MalformedAppend { .. } => &self.malformed,
            Refusal::TermTooHigh { .. } => &self.term_too_high,
            Refusal::Ignored { .. } => &self.ignored_validator,
            Refusal::Recovering { .. } => &self.recovering,
            Refusal::UncertifiedSnapshot { .. } => &self.uncertified_snapshot,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// (rule, count) for every rule.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("tick_ahead", self.tick_ahead.load(Ordering::Relaxed)),
            (
                "uncertified_snapshot",
                self.uncertified_snapshot.load(Ordering::Relaxed),
            ),
            (
                "foreign_membership",
                self.foreign_membership.load(Ordering::Relaxed),
            ),
            (
                "ticks_withheld",
                self.ticks_withheld.load(Ordering::Relaxed),
            ),
            (
                "bad_certificate",
                self.bad_certificate.load(Ordering::Relaxed),
            ),
            ("malformed", self.malformed.load(Ordering::Relaxed)),
            ("term_too_high", self.term_too_high.load(Ordering::Relaxed)),
            (
                "ignored_validator",
                self.ignored_validator.load(Ordering::Relaxed),
            ),
            ("recovering", self.recovering.load(Ordering::Relaxed)),
            (
                "reverted_followers",
                self.reverted_followers.load(Ordering::Relaxed),
            ),
        ]
    }
}

/// The checks and the memory of one validator (shared by its peer service,
/// its peer clients and its watchdog).
pub struct Safety {
    me: NodeId,
    genesis: BTreeSet<NodeId>,
    clock: Arc<dyn Clock>,
    machine: SharedMachine,
    ignore_base: Duration,
    /// How long a leader that withheld ticks is ignored: long enough for
    /// the others to elect another, no longer (a partition that kept a
    /// leader from committing looks the same from here).
    ignore_short: Duration,
    ignored: Mutex<BTreeMap<NodeId, Ignored>>,
    raft: std::sync::OnceLock<Raft>,
    recovering: watch::Sender<Option<Recovering>>,
    /// When the last InstallSnapshot chunk arrived.
    last_snapshot_chunk: Mutex<Option<Instant>>,
    /// Validators that announced a recovery in a probe.
    recovering_peers: Mutex<BTreeSet<NodeId>>,
    pub counts: RefusalCounts,
    pub acks: AckRecords,
}

impl Safety {
    pub fn new(
        me: NodeId,
        genesis: BTreeSet<NodeId>,
        clock: Arc<dyn Clock>,
        machine: SharedMachine,
        ignore_base: Duration,
        ignore_short: Duration,
        acks: AckRecords,
    ) -> Arc<Self> {
        Arc::new(Self {
            me,
            genesis,
            clock,
            machine,
            ignore_base,
            ignore_short: ignore_short.min(ignore_base),
            ignored: Mutex::default(),
            raft: std::sync::OnceLock::new(),
            recovering: watch::channel(None).0,
            last_snapshot_chunk: Mutex::default(),
            recovering_peers: Mutex::default(),
            counts: RefusalCounts::default(),
            acks,
        })
    }

    /// The Raft handle, once it exists (campaigns after a refusal).
    pub fn set_raft(&self, raft: Raft) {
        let _already = self.raft.set(raft);
    }

    pub fn genesis_members(&self) -> &BTreeSet<NodeId> {
        &self.genesis
    }

    /// Marks this validator as recovering (see [`Recovering`]).
    pub fn start_recovering(&self, target_index: u64, since_term: u64) {
        self.recovering.send_replace(Some(Recovering {
            target_index,
            since_term,
        }));
    }

    /// Ends recovery: votes are granted again.
    pub fn finish_recovering(&self) {
        self.recovering.send_replace(None);
    }

    pub fn recovering(&self) -> Option<Recovering> {
        *self.recovering.borrow()
    }

    /// Validators ignored now, with the time left (ms) and their offence.
    pub fn ignored_now(&self) -> Vec<(NodeId, u64, &'static str)> {
        let now = Instant::now();
        self.ignored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, i)| i.until > now)
            .map(|(id, i)| (*id, (i.until - now).as_millis() as u64, i.rule))
            .collect()
    }

    pub(crate) fn still_ignored(&self, from: NodeId) -> Option<Refusal> {
        let now = Instant::now();
        let ignored = self.ignored.lock().unwrap_or_else(|p| p.into_inner());
        let i = ignored.get(&from)?;
        (i.until > now).then(|| Refusal::Ignored {
            from,
            remaining_ms: (i.until - now).as_millis() as u64,
            rule: i.rule,
        })
    }

    fn membership_refusal(
        &self,
        what: &'static str,
        index: u64,
        m: &openraft::Membership<NodeId, openraft::EmptyNode>,
    ) -> Option<Refusal> {
        let configs = m.get_joint_config();
        let voters: BTreeSet<NodeId> = configs.iter().flatten().copied().collect();
        let nodes: BTreeSet<NodeId> = m.nodes().map(|(id, _)| *id).collect();
        let others: BTreeSet<NodeId> = nodes.difference(&voters).copied().collect();
        let pinned = configs.len() == 1 && voters == self.genesis && others.is_empty();
        (!pinned).then(|| Refusal::ForeignMembership {
            what,
            index,
            voters,
            others,
            genesis: self.genesis.clone(),
        })
    }

    fn max_skew_ms(&self) -> u64 {
        self.machine.read().state.params().gov().max_clock_skew_ms
    }

    /// The checks of an AppendEntries from `from`, before Raft sees it.
    pub fn check_append(
        &self,
        from: NodeId,
        vote: &crate::types::Vote,
        prev: Option<LogId>,
        entries: &[RaftEntry],
    ) -> Result<(), Refusal> {
        if let Some(r) = self.still_ignored(from) {
            return Err(r);
        }
        self.check_term(vote.leader_id().term)?;
        check_structure(vote, prev, entries)?;
        let mut skew = None;
        for e in entries {
            match &e.payload {
                EntryPayload::Membership(m) => {
                    if let Some(r) = self.membership_refusal("membership entry", e.log_id.index, m)
                    {
                        return Err(r);
                    }
                }
                EntryPayload::Normal(neuroshard_governance::Entry::CertificateIssued(c)) => {
                    // The same pure check apply runs (memoized, so apply
                    // finds the verdict): a few milliseconds of pairings.
                    let committee = self.machine.read().state.chain().committee.clone();
                    if let Err(reason) =
                        neuroshard_governance::certificate::verify_issued(&committee, c)
                    {
                        return Err(Refusal::BadCertificate {
                            index: e.log_id.index,
                            sequence: c.sequence,
                            reason,
                        });
                    }
                }
                EntryPayload::Normal(neuroshard_governance::Entry::Tick { now_ms }) => {
                    let max_skew_ms = *skew.get_or_insert_with(|| self.max_skew_ms());
                    let clock_ms = self.clock.now_ms();
                    let ahead_ms = now_ms.saturating_sub(clock_ms);
                    if ahead_ms > max_skew_ms {
                        return Err(Refusal::TickAhead {
                            index: e.log_id.index,
                            tick_ms: *now_ms,
                            clock_ms,
                            ahead_ms,
                            max_skew_ms,
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A term far above this validator's own is refused (see
    /// [`MAX_TERM_STEP`]).
    fn check_term(&self, term: u64) -> Result<(), Refusal> {
        let own = self
            .raft
            .get()
            .map(|r| r.metrics().borrow().current_term)
            .unwrap_or(0);
        if term > own.saturating_add(MAX_TERM_STEP) || term > u64::MAX / 2 {
            return Err(Refusal::TermTooHigh { term, own });
        }
        Ok(())
    }

    /// A snapshot chunk arrived now (the tick watchdog waits while a
    /// snapshot streams in: committed time cannot move meanwhile).
    pub fn snapshot_chunk_received(&self) {
        *self
            .last_snapshot_chunk
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    fn snapshot_streaming_within(&self, window: Duration) -> bool {
        self.last_snapshot_chunk
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < window)
    }

    /// A validator that recovers asked (Probe): a leader forgets that its
    /// log went backwards, so it is replicated to again.
    pub fn peer_recovering(&self, node: NodeId) {
        self.recovering_peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node);
    }

    /// Whether `node` announced a recovery since the last call.
    pub fn take_peer_recovering(&self, node: NodeId) -> bool {
        self.recovering_peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&node)
    }

    /// The checks of an InstallSnapshot from `from`.
    pub fn check_snapshot(
        &self,
        from: NodeId,
        vote: &crate::types::Vote,
        membership: &StoredMembership,
        index: u64,
    ) -> Result<(), Refusal> {
        if let Some(r) = self.still_ignored(from) {
            return Err(r);
        }
        self.check_term(vote.leader_id().term)?;
        match self.membership_refusal("snapshot membership", index, membership.membership()) {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }

    /// The checks of a vote request from `from`.
    pub fn check_vote(
        &self,
        from: NodeId,
        vote: &crate::types::Vote,
        last_log_id: Option<LogId>,
    ) -> Result<(), Refusal> {
        if let Some(r) = self.still_ignored(from) {
            return Err(r);
        }
        let term = vote.leader_id().term;
        self.check_term(term)?;
        if let Some(last) = last_log_id {
            if last.leader_id.term > term {
                return Err(Refusal::MalformedAppend {
                    what: format!(
                        "a vote request of term {term} claims a last log entry {last} of a later term"
                    ),
                });
            }
        }
        if let Some(rec) = self.recovering() {
            let applied = self.machine.read().last_applied.map(|l| l.index);
            return Err(Refusal::Recovering {
                applied,
                target: rec.target_index,
            });
        }
        Ok(())
    }

    /// Answers a refusal: counts it and, for an offence, logs the sender
    /// (`who` names its connection), ignores it and campaigns.
    pub fn refused(&self, from: NodeId, who: &str, refusal: &Refusal) {
        self.counts.count(refusal);
        if !refusal.is_offence() {
            crate::limited!(
                crate::logging::REFUSALS,
                key = refusal.rule(),
                debug!(peer = from, rule = refusal.rule(), index = refusal.index(), %refusal, "refused a message of an ignored validator")
            );
            return;
        }
        let ignore_for = {
            let now = Instant::now();
            let mut ignored = self.ignored.lock().unwrap_or_else(|p| p.into_inner());
            let strikes = match ignored.get(&from) {
                // A repeat within two base periods after the last one ended
                // doubles the time.
                Some(i) if now < i.until + self.ignore_base * 2 => i.strikes.saturating_add(1),
                _ => 1,
            };
            let factor = 1u32
                .checked_shl(strikes - 1)
                .unwrap_or(MAX_IGNORE_FACTOR)
                .min(MAX_IGNORE_FACTOR);
            let base = match refusal {
                Refusal::TicksWithheld { .. } => self.ignore_short,
                _ => self.ignore_base,
            };
            let ignore_for = base * factor;
            ignored.insert(
                from,
                Ignored {
                    until: now + ignore_for,
                    rule: refusal.rule(),
                    strikes,
                },
            );
            ignore_for
        };
        // Bounded by the ignore period already; limited as well, since
        // every refused message is an offence until it is recorded.
        crate::limited!(
            crate::logging::REFUSALS,
            key = refusal.rule(),
            warn!(
            peer = from,
            connection = who,
            rule = refusal.rule(),
            index = refusal.index(),
            ignored_ms = ignore_for.as_millis() as u64,
            "refused what validator {from} sent, before Raft: {refusal}; ignoring it and campaigning"
        ));
        if self.recovering().is_some() || self.machine.read().checkpoints.diverged.is_some() {
            // A recovering or diverged validator never campaigns
            // (openraft's explicit election trigger ignores `enable_elect`).
            return;
        }
        if let Some(raft) = self.raft.get() {
            let raft = raft.clone();
            tokio::spawn(async move {
                if let Err(e) = raft.trigger().elect().await {
                    tracing::warn!(error = %e, "could not start an election");
                }
            });
        }
    }

    /// A follower's log went backwards under this leader (`had` matched,
    /// `conflict` now missing): logged once per leadership by the caller.
    pub fn follower_reverted(&self, follower: NodeId, had: LogId, conflict: Option<LogId>) {
        self.counts
            .reverted_followers
            .fetch_add(1, Ordering::Relaxed);
        self.acks.record(follower, had);
        tracing::error!(
            peer = follower,
            index = had.index,
            term = had.leader_id.term,
            matched = %had,
            conflict = ?conflict,
            "validator {follower} lost log entries it had acknowledged (it matched {had}, now misses {conflict:?}): its data directory was wiped or rolled back. It is not replicated to until it restarts with --recover (docs/operations.md, \"Recovering a validator\")"
        );
    }

    pub fn me(&self) -> NodeId {
        self.me
    }
}

/// What openraft assumes of a well-formed AppendEntries (it only
/// debug-asserts some of it): entries follow `prev` with consecutive
/// indexes and non-decreasing terms, none of a term later than the
/// leader's vote, and entries of the vote's term are that leader's.
fn check_structure(
    vote: &crate::types::Vote,
    prev: Option<LogId>,
    entries: &[RaftEntry],
) -> Result<(), Refusal> {
    let term = vote.leader_id().term;
    let bad = |what: String| Err(Refusal::MalformedAppend { what });
    // A batch above the bound no honest leader builds (`submit.rs`).
    for e in entries {
        if let EntryPayload::Normal(neuroshard_governance::Entry::Commands(cs)) = &e.payload {
            if cs.len() > neuroshard_governance::limits::MAX_COMMANDS_PER_ENTRY {
                return bad(format!(
                    "entry {} batches {} commands, more than MAX_COMMANDS_PER_ENTRY = {}",
                    e.log_id.index,
                    cs.len(),
                    neuroshard_governance::limits::MAX_COMMANDS_PER_ENTRY
                ));
            }
            let bytes: usize = cs
                .iter()
                .map(neuroshard_governance::admission::encoded_len)
                .fold(0, usize::saturating_add);
            if bytes > neuroshard_governance::limits::MAX_BATCH_BYTES {
                return bad(format!(
                    "entry {} batches {bytes} bytes of commands, more than MAX_BATCH_BYTES = {}",
                    e.log_id.index,
                    neuroshard_governance::limits::MAX_BATCH_BYTES
                ));
            }
        }
    }
    if let Some(p) = prev {
        if p.leader_id.term > term {
            return bad(format!(
                "prev_log_id {p} is of a term after the vote's {term}"
            ));
        }
    }
    let mut last = prev;
    for (i, e) in entries.iter().enumerate() {
        let id = e.log_id;
        let follows = match last {
            Some(l) => id.index == l.index + 1,
            // No prev: the first entry may start anywhere openraft allows
            // (index 0 on an empty log); the rest must follow it.
            None => i == 0,
        };
        if !follows {
            return bad(format!("entry {id} does not follow the previous entry"));
        }
        if last.is_some_and(|l| id.leader_id.term < l.leader_id.term) {
            return bad(format!("entry {id} has a term before the previous entry's"));
        }
        if id.leader_id.term > term {
            return bad(format!("entry {id} is of a term after the vote's {term}"));
        }
        if id.leader_id.term == term && id.leader_id.node_id != vote.leader_id().node_id {
            return bad(format!(
                "entry {id} of term {term} is not the leader's ({})",
                vote.leader_id().node_id
            ));
        }
        last = Some(id);
    }
    Ok(())
}

/// Checks, in a task of its own, the signature of every client command
/// `entries` carry (`signature::verify_commands`, which skips the verdicts
/// this validator already reached at admission). The log store calls it
/// once it has requested the entries' sync (`store::ChecksOnAppend`), so
/// the checks run while the disk syncs; it takes no lock and copies
/// nothing (the task owns the entries), so it never holds up RaftCore.
/// Apply, under the state's write lock, then finds the verdicts memoized
/// instead of delaying every command applied after them. A verdict that
/// is not ready (the task has not run yet, or it was evicted) is simply
/// computed again at apply, with the same result. Certificates are
/// checked before they are proposed (`issuance::Offers`, and each
/// follower's `OfferCertificate`) or by [`Safety::check_append`].
pub fn check_entry_commands(chain_id: std::sync::Arc<str>, entries: Vec<RaftEntry>) {
    let carries_commands = entries
        .iter()
        .any(|e| matches!(&e.payload, EntryPayload::Normal(g) if !g.commands().is_empty()));
    if !carries_commands {
        return;
    }
    tokio::spawn(async move {
        let commands: Vec<&neuroshard_governance::SignedCommand> = entries
            .iter()
            .filter_map(|e| match &e.payload {
                EntryPayload::Normal(g) => Some(g.commands()),
                _ => None,
            })
            .flatten()
            .collect();
        crate::hoptrace::mark("PV_start", commands.len() as u64);
        neuroshard_governance::signature::verify_commands(&chain_id, &commands);
        crate::hoptrace::mark("PV_end", 0);
    });
}

/// The tick watchdog: a follower whose committed time stays more than
/// `gov.max_clock_skew_ms` behind its own clock under one leader for longer
/// than `grace`, while it is caught up, ignores that leader and campaigns
/// (a leader withholding ticks cannot keep a vote open late by more than
/// the skew bound plus `grace` plus an election).
pub async fn run_tick_watchdog(
    safety: Arc<Safety>,
    raft: Raft,
    every: Duration,
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // (leader, since, committed time then): fire only if committed time
    // did not move at all under that leader for the whole grace (a
    // follower catching up applies old ticks and is not withheld from).
    let mut behind_since: Option<(NodeId, Instant, u64)> = None;
    loop {
        tokio::select! {
            _ = timer.tick() => {}
            _ = shutdown.changed() => return,
        }
        let leader = {
            let m = raft.metrics();
            let m = m.borrow();
            m.current_leader
        };
        let Some(leader) = leader.filter(|l| *l != safety.me) else {
            behind_since = None;
            continue;
        };
        // A diverged replica's committed time is frozen with its state:
        // it would take every honest leader for one withholding ticks.
        if safety.machine.read().checkpoints.diverged.is_some() {
            behind_since = None;
            continue;
        }
        if safety.recovering().is_some() {
            behind_since = None;
            continue;
        }
        let committed = raft
            .with_raft_state(|s| s.committed.map(|c| c.index))
            .await
            .ok()
            .flatten();
        let (applied, committed_ms, max_skew_ms) = {
            let m = safety.machine.read();
            (
                m.last_applied.map(|l| l.index),
                m.state.committed_time_ms(),
                m.state.params().gov().max_clock_skew_ms,
            )
        };
        // Still applying what is committed, or receiving a snapshot: its
        // time says nothing yet.
        if applied < committed || safety.snapshot_streaming_within(grace) {
            behind_since = None;
            continue;
        }
        let behind_ms = safety.clock.now_ms().saturating_sub(committed_ms);
        if behind_ms <= max_skew_ms {
            behind_since = None;
            continue;
        }
        match behind_since {
            Some((l, since, then_ms)) if l == leader && then_ms == committed_ms => {
                let held = since.elapsed();
                if held >= grace {
                    let refusal = Refusal::TicksWithheld {
                        leader,
                        committed_ms,
                        behind_ms,
                        held_ms: held.as_millis() as u64,
                        max_skew_ms,
                    };
                    safety.refused(leader, "tick watchdog", &refusal);
                    behind_since = None;
                }
            }
            _ => behind_since = Some((leader, Instant::now(), committed_ms)),
        }
    }
}

/// Records, while this validator leads, the highest log id each follower
/// acknowledged (sampled every `every`; the record of a follower only
/// grows).
pub async fn run_ack_recorder(
    safety: Arc<Safety>,
    raft: Raft,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = timer.tick() => {}
            _ = shutdown.changed() => return,
        }
        let matched: Vec<(NodeId, LogId)> = {
            let m = raft.metrics();
            let m = m.borrow();
            match &m.replication {
                Some(r) => r
                    .iter()
                    .filter(|(id, _)| **id != safety.me)
                    .filter_map(|(id, l)| l.map(|l| (*id, l)))
                    .collect(),
                None => continue,
            }
        };
        for (id, l) in matched {
            safety.acks.record(id, l);
        }
    }
}

/// Ends recovery once this validator applied an entry of a leader elected
/// after the recovery began (see [`Recovering`]): votes are granted and
/// elections enabled again, and `done` runs (it removes the recovery
/// marker).
pub async fn run_recovery_watch(
    safety: Arc<Safety>,
    raft: Raft,
    done: Box<dyn FnOnce() + Send>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut timer = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = timer.tick() => {}
            _ = shutdown.changed() => return,
        }
        let Some(rec) = safety.recovering() else {
            return;
        };
        let applied = safety.machine.read().last_applied;
        if applied.is_some_and(|a| a.leader_id.term >= rec.since_term) {
            // A replica that diverged meanwhile stays out of elections.
            if safety.machine.read().checkpoints.diverged.is_none() {
                raft.runtime_config().elect(true);
            }
            safety.finish_recovering();
            done();
            tracing::info!(
                index = applied.map(|a| a.index),
                term = applied.map(|a| a.leader_id.term),
                applied = %applied.map(|a| a.to_string()).unwrap_or_default(),
                reported = rec.target_index,
                since_term = rec.since_term,
                "recovered: this validator holds what it acknowledged (it applied an entry of a leader elected without it); it votes and campaigns again"
            );
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Vote;
    use neuroshard_governance::certificate::{CertificateShare, IssuedCertificate};
    use openraft::CommittedLeaderId;

    fn id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    fn blank(log_id: LogId) -> RaftEntry {
        RaftEntry {
            log_id,
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn a_well_formed_append_passes() {
        let vote = Vote::new_committed(5, 2);
        let entries = [
            blank(id(4, 1, 11)),
            blank(id(5, 2, 12)),
            blank(id(5, 2, 13)),
        ];
        assert_eq!(check_structure(&vote, Some(id(4, 1, 10)), &entries), Ok(()));
        assert_eq!(check_structure(&vote, None, &[blank(id(0, 0, 0))]), Ok(()));
        assert_eq!(check_structure(&vote, Some(id(5, 2, 13)), &[]), Ok(()));
    }

    #[test]
    fn malformed_appends_are_refused() {
        let vote = Vote::new_committed(5, 2);
        let prev = Some(id(4, 1, 10));
        for (what, prev, entries) in [
            ("a gap", prev, vec![blank(id(5, 2, 12))]),
            (
                "a repeat",
                prev,
                vec![blank(id(5, 2, 11)), blank(id(5, 2, 11))],
            ),
            (
                "terms going down",
                prev,
                vec![blank(id(5, 2, 11)), blank(id(4, 1, 12))],
            ),
            ("a term after the vote", prev, vec![blank(id(6, 2, 11))]),
            (
                "the vote's term by another node",
                prev,
                vec![blank(id(5, 3, 11))],
            ),
            ("prev after the vote", Some(id(9, 1, 10)), vec![]),
        ] {
            assert!(
                matches!(
                    check_structure(&vote, prev, &entries),
                    Err(Refusal::MalformedAppend { .. })
                ),
                "{what} must be refused"
            );
        }
    }

    #[test]
    fn a_batch_is_refused_above_max_commands_per_entry_only() {
        use neuroshard_governance::limits::MAX_COMMANDS_PER_ENTRY;
        use neuroshard_governance::testkit::user_key;
        use neuroshard_governance::{Amount, Command, Entry, SignedCommand};
        let vote = Vote::new_committed(5, 2);
        let c = SignedCommand::sign(
            "chain",
            &user_key(0),
            1,
            Command::Stake { amount: Amount(1) },
        );
        let batch = |n: usize| {
            vec![RaftEntry {
                log_id: id(5, 2, 11),
                payload: EntryPayload::Normal(Entry::Commands(vec![c.clone(); n])),
            }]
        };
        let prev = Some(id(4, 1, 10));
        for n in [0, 1, MAX_COMMANDS_PER_ENTRY - 1, MAX_COMMANDS_PER_ENTRY] {
            assert_eq!(check_structure(&vote, prev, &batch(n)), Ok(()), "{n}");
        }
        match check_structure(&vote, prev, &batch(MAX_COMMANDS_PER_ENTRY + 1)) {
            Err(Refusal::MalformedAppend { what }) => {
                assert!(what.contains("MAX_COMMANDS_PER_ENTRY"), "{what}")
            }
            other => panic!("{other:?}"),
        }
    }

    /// A certificate signed by t + 1 shares of `chain`'s committee over a
    /// payload naming `chain`'s chain id and committee (what verification
    /// checks; the payload's other fields are left empty).
    fn certificate_of(chain: &neuroshard_governance::testkit::TestChain) -> IssuedCertificate {
        use neuroshard_certificate::proto::CertificatePayload;
        use neuroshard_certificate::{encode_payload, signing_message, Envelope, ShareIndex};
        let payload = encode_payload(&CertificatePayload {
            chain_id: chain.genesis.chain_id.clone(),
            committee_hash: chain.genesis.committee.committee_hash().to_vec(),
            sequence: 1,
            ..Default::default()
        });
        let keys = &chain.dealt.public_key_set;
        let scheme = chain.genesis.committee.info.scheme.scheme();
        let shares: Vec<(ShareIndex, _)> = (0..=keys.threshold() as usize)
            .map(|i| {
                let share = scheme
                    .sign_share(
                        &chain.dealt.secret_key_shares[i],
                        &signing_message(&payload),
                    )
                    .expect("share");
                (ShareIndex(i as u32), share)
            })
            .collect();
        IssuedCertificate {
            sequence: 1,
            envelope: Envelope::combine(keys, &shares, payload, 1).expect("combine"),
            shares: shares
                .iter()
                .map(|(i, s)| CertificateShare {
                    validator: i.0,
                    share: s.to_bytes().to_vec(),
                })
                .collect(),
        }
    }

    /// A leader that sends a `CertificateIssued` entry whose certificate
    /// does not verify under the genesis committee (a bad signature,
    /// another chain's committee, too few shares) is refused before Raft
    /// (`bad_certificate`, an offence); a good one passes.
    #[test]
    fn a_certificate_that_does_not_verify_is_refused_before_raft() {
        use neuroshard_governance::testkit::{TestChain, TestConfig};
        let chain = TestChain::new(&TestConfig::default());
        let foreign = TestChain::new(&TestConfig {
            chain_id: "another-chain".into(),
            ..TestConfig::default()
        });
        let machine = SharedMachine::new(crate::store::GovernanceMachine::new(chain.state.clone()));
        let safety = Safety::new(
            1,
            BTreeSet::from([0, 1, 2, 3]),
            Arc::new(crate::clock::SystemClock::default()),
            machine,
            Duration::from_millis(10),
            Duration::from_millis(10),
            AckRecords::in_memory(),
        );
        let vote = Vote::new_committed(5, 2);
        let append = |c: IssuedCertificate| {
            let entry = RaftEntry {
                log_id: id(5, 2, 11),
                payload: EntryPayload::Normal(neuroshard_governance::Entry::CertificateIssued(c)),
            };
            safety.check_append(2, &vote, Some(id(4, 1, 10)), &[entry])
        };
        let good = certificate_of(&chain);
        assert_eq!(append(good.clone()), Ok(()));

        let mut bad_signature = good.clone();
        bad_signature.envelope.signature.reverse();
        let mut too_few = good.clone();
        too_few.shares.pop();
        // The combined signature verifies; one attached share is another
        // validator's (a valid point, under the wrong index): only the
        // shares' check (one pairing check with the signature) refuses it.
        let mut swapped_share = good.clone();
        swapped_share.shares[0].share = good.shares[1].share.clone();
        for (what, c) in [
            ("a bad signature", bad_signature),
            ("another chain's committee", certificate_of(&foreign)),
            ("too few shares", too_few),
            ("a share under another validator's index", swapped_share),
        ] {
            match append(c) {
                Err(
                    r @ Refusal::BadCertificate {
                        index: 11,
                        sequence: 1,
                        ..
                    },
                ) => {
                    assert_eq!(r.rule(), "bad_certificate", "{what}");
                    assert!(r.is_offence(), "{what}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_refusal_has_a_rule_and_offences_are_marked() {
        let r = Refusal::MalformedAppend { what: "x".into() };
        assert_eq!(r.rule(), "malformed");
        assert!(r.is_offence());
        let r = Refusal::TermTooHigh {
            term: u64::MAX,
            own: 3,
        };
        assert_eq!(r.rule(), "term_too_high");
        assert!(r.is_offence());
        let r = Refusal::Recovering {
            applied: None,
            target: 1,
        };
        assert!(!r.is_offence());
        assert!(r.to_status().message().contains("recovering"));
    }
}
