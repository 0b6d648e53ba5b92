//! Admission on a validator: what is checked before a client command is
//! proposed to the log, so that a command no state could accept never
//! reaches it (issue 9).
//!
//! The validator that receives a command (public or admin `Submit`) admits
//! it against its own applied state with `neuroshard_governance::admission`
//! (size against `MAX_COMMAND_BYTES`, every field, the signature, a nonce
//! already consumed), answers an identical retry of an applied command with
//! its original receipt, then holds it under two pending quotas (per author
//! account and per source address) until it is answered. The leader admits
//! forwarded commands again against its own state (`peer_service.rs`).
//!
//! The state is read under the machine's read lock for one `admit` call and
//! released before anything is awaited.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use neuroshard_governance::admission::{self, Admitted};
use neuroshard_governance::{AccountId, SignedCommand};

use crate::config::ClientSettings;
use crate::error::{NodeError, Quota, QuotaRefusal};
use crate::store::SharedMachine;
use crate::submit::Submitted;

/// What admission decided about a command it did not refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Propose it to the log.
    Propose,
    /// An identical retry of a command this state already applied: answer
    /// with its original receipt or apply refusal and its original log index.
    Answer(Submitted),
}

/// Admits `command` (`encoded_len`: the size of its postcard encoding as
/// the client sent it) against the state `machine` has applied.
pub fn admit(
    machine: &SharedMachine,
    command: &SignedCommand,
    encoded_len: usize,
) -> Result<Verdict, NodeError> {
    // The signature was normally checked already, before the state's lock
    // (`SignatureBatcher`, or the forwarded batch's check): `admit` finds
    // the memoized verdict. A miss is checked here, with the same result.
    let verdict = {
        let m = machine.read();
        admission::admit(&m.state, command, encoded_len)
    };
    match verdict {
        Err(e) => Err(NodeError::Admission(e)),
        Ok(Admitted::New) => Ok(Verdict::Propose),
        // The original answer, receipt or apply refusal, with the position
        // of the command: never proposed again.
        Ok(Admitted::Retry { outcome, position }) => {
            Ok(Verdict::Answer(Submitted { position, outcome }))
        }
    }
}

#[derive(Default)]
struct Pending {
    accounts: BTreeMap<AccountId, u64>,
    sources: BTreeMap<IpAddr, u64>,
}

/// Pending (admitted, not yet answered) commands per author account and per
/// source address on this validator, bounded by `client.max_pending_per_account`
/// and `client.max_pending_per_source`: one account or one client host
/// cannot hold the whole `client.max_pending_commands` of a validator.
#[derive(Clone)]
pub struct Quotas {
    pending: Arc<Mutex<Pending>>,
    per_account: u64,
    per_source: u64,
}

/// Holds one command's place under its quotas until dropped.
pub struct QuotaTicket {
    pending: Arc<Mutex<Pending>>,
    account: AccountId,
    source: Option<IpAddr>,
}

impl Quotas {
    pub fn new(settings: &ClientSettings) -> Self {
        Self {
            pending: Arc::default(),
            per_account: settings.max_pending_per_account as u64,
            per_source: settings.max_pending_per_source as u64,
        }
    }

    /// Counts a command of `account` from `source` (None: in process, no
    /// source quota) as pending, or refuses it when either quota is full.
    pub fn acquire(
        &self,
        account: AccountId,
        source: Option<IpAddr>,
    ) -> Result<QuotaTicket, NodeError> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let by_account = p.accounts.get(&account).copied().unwrap_or(0);
        if by_account >= self.per_account {
            return Err(NodeError::Quota(QuotaRefusal {
                quota: Quota::Account(account),
                pending: by_account,
                limit: self.per_account,
            }));
        }
        if let Some(ip) = source {
            let by_source = p.sources.get(&ip).copied().unwrap_or(0);
            if by_source >= self.per_source {
                return Err(NodeError::Quota(QuotaRefusal {
                    quota: Quota::Source(ip),
                    pending: by_source,
                    limit: self.per_source,
                }));
            }
            *p.sources.entry(ip).or_insert(0) += 1;
        }
        *p.accounts.entry(account).or_insert(0) += 1;
        Ok(QuotaTicket {
            pending: self.pending.clone(),
            account,
            source,
        })
    }

    /// Commands pending for `account` and for `source` right now.
    pub fn pending(&self, account: &AccountId, source: Option<IpAddr>) -> (u64, u64) {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        (
            p.accounts.get(account).copied().unwrap_or(0),
            source
                .and_then(|ip| p.sources.get(&ip).copied())
                .unwrap_or(0),
        )
    }
}

fn release<K: Ord>(map: &mut BTreeMap<K, u64>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            // Entries live only while commands are pending: the maps stay as
            // small as the number of commands in flight.
            map.remove(key);
        }
    }
}

impl Drop for QuotaTicket {
    fn drop(&mut self) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        release(&mut p.accounts, &self.account);
        if let Some(ip) = &self.source {
            release(&mut p.sources, ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_account: usize, per_source: usize) -> ClientSettings {
        ClientSettings {
            max_pending_per_account: per_account,
            max_pending_per_source: per_source,
            ..ClientSettings::default()
        }
    }

    fn signed(seed: u8, nonce: u64, forge: bool) -> SignedCommand {
        use neuroshard_governance::{Amount, Command};
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let mut c = SignedCommand::sign(
            "batcher-test",
            &key,
            nonce,
            Command::Transfer {
                to: AccountId([9; 32]),
                amount: Amount(nonce),
            },
        );
        if forge {
            c.signature.0[0] ^= 1;
        }
        c
    }

    fn remembered(c: &SignedCommand) -> Option<bool> {
        let message = c.message("batcher-test");
        neuroshard_governance::signature::recall(&neuroshard_governance::signature::memo_key(
            &c.author,
            &message,
            &c.signature.0,
        ))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signature_checks_alone_or_queued_all_reach_a_verdict() {
        let batcher = SignatureBatcher::start("batcher-test".into(), 64);
        // Alone: checked on the caller's task, nothing left busy.
        let good = signed(41, 1, false);
        let bad = signed(41, 2, true);
        batcher.check(&good, 100).await;
        batcher.check(&bad, 100).await;
        assert_eq!(remembered(&good), Some(true));
        assert_eq!(remembered(&bad), Some(false));
        assert_eq!(batcher.busy(), 0);
        // Many at once: some alone, the rest queued and batched; every
        // verdict is right and nothing stays busy.
        let commands: Vec<SignedCommand> = (0..200u64)
            .map(|n| signed(42 + (n % 5) as u8, 10 + n, n % 7 == 3))
            .collect();
        let checks = commands.iter().map(|c| {
            let b = batcher.clone();
            let c = c.clone();
            tokio::spawn(async move { b.check(&c, 100).await })
        });
        for h in checks.collect::<Vec<_>>() {
            h.await.expect("check task");
        }
        for (n, c) in commands.iter().enumerate() {
            assert_eq!(remembered(c), Some(n % 7 != 3), "command {n}");
        }
        assert_eq!(batcher.busy(), 0);
        // With a check under way (as if on another task), the next one is
        // queued and the batcher's task reaches its verdict; one whose
        // caller gives up while queued leaves nothing counted.
        batcher.busy.fetch_add(1, Ordering::AcqRel);
        let queued = signed(44, 1, false);
        batcher.check(&queued, 100).await;
        assert_eq!(remembered(&queued), Some(true));
        let abandoned = signed(44, 2, false);
        let _gave_up =
            tokio::time::timeout(std::time::Duration::ZERO, batcher.check(&abandoned, 100)).await;
        batcher.busy.fetch_sub(1, Ordering::AcqRel);
        assert_eq!(batcher.busy(), 0);
        // Over the size bound: not checked (admission refuses it by size).
        let big = signed(43, 1, false);
        batcher
            .check(&big, neuroshard_governance::limits::MAX_COMMAND_BYTES + 1)
            .await;
        assert_eq!(remembered(&big), None);
        assert_eq!(batcher.busy(), 0);
    }

    #[test]
    fn quotas_refuse_past_their_limit_and_free_on_drop() {
        let q = Quotas::new(&settings(2, 3));
        let alice = AccountId([1; 32]);
        let bob = AccountId([2; 32]);
        let host: IpAddr = "192.0.2.7".parse().expect("ip");
        let a1 = q.acquire(alice, Some(host)).expect("1st of alice");
        let _a2 = q.acquire(alice, Some(host)).expect("2nd of alice");
        match q.acquire(alice, None) {
            Err(NodeError::Quota(r)) => {
                assert_eq!(r.rule(), "too_many_pending_for_account");
                assert_eq!((r.pending, r.limit), (2, 2));
            }
            other => panic!("expected the account quota: {:?}", other.err()),
        }
        let _b1 = q
            .acquire(bob, Some(host))
            .expect("bob's first, third of the host");
        match q.acquire(bob, Some(host)) {
            Err(NodeError::Quota(r)) => assert_eq!(r.rule(), "too_many_pending_for_source"),
            other => panic!("expected the source quota: {:?}", other.err()),
        }
        // In process (no source), only the account counts.
        let b2 = q.acquire(bob, None).expect("no source quota in process");
        assert_eq!(q.pending(&bob, Some(host)), (2, 3));
        // A refused acquire counted nothing; answers free their places.
        drop(a1);
        drop(b2);
        assert_eq!(q.pending(&alice, Some(host)), (1, 2));
        let _a3 = q.acquire(alice, Some(host)).expect("a place freed");
    }
}

/// Signature checks of client commands queued at once by this validator's
/// API; the batcher checks all of them in one ed25519 batch.
pub const MAX_SIGNATURE_BATCH: usize = 256;

struct SignatureJob {
    command: SignedCommand,
    done: oneshot::Sender<()>,
}

/// Checks the signatures of commands clients send to this validator in
/// ed25519 batches (about half the cost of checking them one by one),
/// before admission takes the state's read lock: every check queued while
/// the previous batch ran forms the next batch. The verdicts are memoized
/// (`neuroshard_governance::signature::verify_commands`), so admission,
/// this validator's apply and its check of the entry that carries the
/// command all reuse them.
///
/// A check that finds nothing queued or being checked (`busy` is 0) is done
/// at once on the caller's task instead: alone, it would be a batch of one
/// anyway, and the hand-off to the batcher's task and back cost more than
/// the check itself at one command in flight (BENCHMARKS.md, "A lone
/// command's shortcuts"). While it runs, `busy` counts it,
/// so the checks that arrive meanwhile queue and are batched.
#[derive(Clone)]
pub struct SignatureBatcher {
    tx: mpsc::Sender<SignatureJob>,
    chain_id: Arc<str>,
    /// Checks queued, being batched, or being done on a caller's task.
    busy: Arc<AtomicUsize>,
}

/// Takes one off `busy` when dropped (a check done or given up).
struct Busy<'a>(&'a AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SignatureBatcher {
    /// `capacity`: checks that may wait (the validator's
    /// `client.max_pending_commands`).
    pub fn start(chain_id: String, capacity: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<SignatureJob>(capacity.max(1));
        let chain_id: Arc<str> = chain_id.into();
        let busy = Arc::new(AtomicUsize::new(0));
        let this = Self {
            tx,
            chain_id: chain_id.clone(),
            busy,
        };
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < MAX_SIGNATURE_BATCH {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                let refs: Vec<&SignedCommand> = jobs.iter().map(|j| &j.command).collect();
                neuroshard_governance::signature::verify_commands(&chain_id, &refs);
                for job in jobs {
                    let _caller_gone = job.done.send(());
                }
            }
        });
        this
    }

    /// Returns once `command`'s signature verdict is memoized (or at once
    /// if the batcher stopped: admission then checks it itself). A command
    /// over `MAX_COMMAND_BYTES` is not checked: admission refuses it by
    /// its size first.
    pub async fn check(&self, command: &SignedCommand, encoded_len: usize) {
        if encoded_len > neuroshard_governance::limits::MAX_COMMAND_BYTES {
            return;
        }
        let alone = self.busy.fetch_add(1, Ordering::AcqRel) == 0;
        let _busy = Busy(&self.busy);
        if alone {
            neuroshard_governance::signature::verify_commands(&self.chain_id, &[command]);
            return;
        }
        let (done, rx) = oneshot::channel();
        let job = SignatureJob {
            command: command.clone(),
            done,
        };
        if self.tx.send(job).await.is_ok() {
            let _stopped = rx.await;
        }
    }

    /// Checks queued, being batched, or being done on a caller's task.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Acquire)
    }
}
