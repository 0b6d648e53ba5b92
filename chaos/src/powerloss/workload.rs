//! The load under which the machine loses power: closed-loop clients,
//! each with its own genesis account, transferring a fixed amount to one
//! sink account, one command at a time. Every command is re-sent with
//! identical bytes until it is answered (across crashes: after the
//! restart, an applied one is answered with its original receipt, a lost
//! unacknowledged one is applied anew). Every acknowledged command is
//! recorded with its receipt (its position: log index and offset).
//!
//! [`check`] judges the restarted state: every acknowledged command's
//! nonce consumed (else it was lost), each account's balance what its
//! consumed nonces imply, the applied index at or past every
//! acknowledged position; the caller also re-sends each client's last
//! acknowledged command, which must be answered with the same receipt.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use neuroshard_governance::{AccountId, Amount, Command, SignedCommand};

use crate::hostile::client::{self, Kind, Pool, Reply};

/// Longest one send waits for its answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Amount of each transfer (base units).
pub const TRANSFER_UNITS: u64 = 1_000;

/// One acknowledged command.
#[derive(Clone, Debug)]
pub struct Ack {
    pub client: usize,
    pub nonce: u64,
    pub log_index: u64,
    /// The receipt as the API returned it (its `position` included).
    pub receipt_json: String,
    pub bytes: Vec<u8>,
}

/// What the clients share with the driver.
pub struct Load {
    pub keys: Vec<SigningKey>,
    pub sink: AccountId,
    /// Genesis balance of every client (base units).
    pub genesis_balance: u64,
    acks: Mutex<Vec<Ack>>,
    /// Transfers refused when applied (their nonce consumed, no money
    /// moved), per client: none are expected.
    refused_at_apply: Mutex<Vec<u64>>,
    stop: AtomicBool,
    /// While set, clients finish the command they have (retrying it until
    /// answered) and start no new one.
    paused: AtomicBool,
    /// Clients waiting while paused.
    idle: AtomicUsize,
}

impl Load {
    pub fn new(keys: Vec<SigningKey>, sink: AccountId, genesis_balance: u64) -> Arc<Self> {
        let n = keys.len();
        Arc::new(Self {
            keys,
            sink,
            genesis_balance,
            acks: Mutex::new(Vec::new()),
            refused_at_apply: Mutex::new(vec![0; n]),
            stop: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            idle: AtomicUsize::new(0),
        })
    }

    pub fn account(&self, client: usize) -> AccountId {
        AccountId(self.keys[client].verifying_key().to_bytes())
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn acked(&self) -> usize {
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn refused_at_apply(&self) -> Vec<u64> {
        self.refused_at_apply
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Clients start no new command until [`Load::resume`] (the driver
    /// verifies a quiet state; the crash itself happens under load).
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Clients waiting for [`Load::resume`] with nothing in flight.
    pub fn idle(&self) -> usize {
        self.idle.load(Ordering::SeqCst)
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((20u64 << attempt.min(4)).min(300))
}

/// One client until [`Load::stop`]: its account has used no nonce before.
pub async fn run(load: Arc<Load>, pool: Pool, chain_id: String, id: usize) {
    let key = load.keys[id].clone();
    let n = pool.len();
    let mut nonce = 1u64;
    let mut sends = 0usize;
    while !load.stopped() {
        if load.paused.load(Ordering::SeqCst) {
            load.idle.fetch_add(1, Ordering::SeqCst);
            while load.paused.load(Ordering::SeqCst) && !load.stopped() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            load.idle.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let command = Command::Transfer {
            to: load.sink,
            amount: Amount(TRANSFER_UNITS),
        };
        let signed = SignedCommand::sign(&chain_id, &key, nonce, command);
        let Ok(bytes) = postcard::to_stdvec(&signed) else {
            return;
        };
        let mut attempt = 0u32;
        loop {
            if load.stopped() {
                return;
            }
            let replica = (id + sends) % n;
            sends += 1;
            match client::submit_bytes(&pool, replica, bytes.clone(), ATTEMPT_TIMEOUT).await {
                Reply::Applied {
                    log_index,
                    receipt_json,
                    ..
                } => {
                    load.acks
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Ack {
                            client: id,
                            nonce,
                            log_index,
                            receipt_json,
                            bytes,
                        });
                    nonce += 1;
                    break;
                }
                Reply::Refused(r) if !client::QUOTA_RULES.contains(&r.rule.as_str()) => {
                    // None expected. A refusal at apply that is not about
                    // the nonce consumed it without moving money.
                    if r.kind == Kind::Apply && !r.rule.starts_with("nonce") {
                        load.refused_at_apply
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())[id] += 1;
                    }
                    eprintln!(
                        "powerloss: client {id} nonce {nonce} refused ({:?}) [{}]: {}",
                        r.kind, r.rule, r.message
                    );
                    // As a real client must: ask which nonce is next.
                    let mut asked = 0;
                    while asked < 3 * n && !load.stopped() {
                        let replica = (id + asked) % n;
                        asked += 1;
                        if let Some(a) =
                            client::account(&pool, replica, &load.account(id), ATTEMPT_TIMEOUT)
                                .await
                        {
                            nonce = a.next_nonce;
                            break;
                        }
                    }
                    break;
                }
                // No answer (validators down, restarting, no leader): the
                // same bytes again.
                _ => {
                    attempt += 1;
                    if sends.is_multiple_of(n) {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                }
            }
        }
    }
}

/// One account as the restarted committee reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub next_nonce: u64,
    pub balance: u64,
    pub applied_index: u64,
}

/// The verdict on the restarted state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Acknowledged commands checked.
    pub checked: usize,
    /// Acknowledged commands whose nonce is not consumed: lost.
    pub lost: usize,
    /// Every problem, one line each.
    pub findings: Vec<String>,
}

/// Judges `views[client]` (None: no validator answered) against `acks`.
pub fn check(
    acks: &[Ack],
    views: &[Option<View>],
    genesis_balance: u64,
    refused_at_apply: &[u64],
) -> Verdict {
    let mut v = Verdict::default();
    for ack in acks {
        v.checked += 1;
        match views.get(ack.client).copied().flatten() {
            None => {
                v.lost += 1;
                v.findings.push(format!(
                    "client {} nonce {}: acknowledged at {} but its account could not be read",
                    ack.client, ack.nonce, ack.log_index
                ));
            }
            Some(view) if ack.nonce >= view.next_nonce => {
                v.lost += 1;
                v.findings.push(format!(
                    "client {} nonce {}: acknowledged at log index {} but LOST: the account's next nonce is {}",
                    ack.client, ack.nonce, ack.log_index, view.next_nonce
                ));
            }
            Some(view) if ack.log_index > view.applied_index => {
                v.findings.push(format!(
                    "client {} nonce {}: acknowledged at log index {} beyond the applied index {}",
                    ack.client, ack.nonce, ack.log_index, view.applied_index
                ));
            }
            Some(_) => {}
        }
    }
    for (client, view) in views.iter().enumerate() {
        let Some(view) = view else { continue };
        let consumed = view.next_nonce.saturating_sub(1);
        let moved = consumed.saturating_sub(refused_at_apply.get(client).copied().unwrap_or(0));
        let want = genesis_balance.saturating_sub(moved * TRANSFER_UNITS);
        if view.balance != want {
            v.findings.push(format!(
                "client {client}: balance {} but its {consumed} consumed nonces imply {want}",
                view.balance
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(client: usize, nonce: u64, log_index: u64) -> Ack {
        Ack {
            client,
            nonce,
            log_index,
            receipt_json: String::new(),
            bytes: Vec::new(),
        }
    }

    fn view(next_nonce: u64, applied_index: u64) -> Option<View> {
        Some(View {
            next_nonce,
            balance: 1_000_000 - (next_nonce - 1) * TRANSFER_UNITS,
            applied_index,
        })
    }

    #[test]
    fn every_acknowledged_command_present_passes() {
        let acks = [ack(0, 1, 10), ack(0, 2, 11), ack(1, 1, 10)];
        let v = check(&acks, &[view(3, 20), view(2, 20)], 1_000_000, &[0, 0]);
        assert_eq!((v.checked, v.lost), (3, 0));
        assert!(v.findings.is_empty(), "{:?}", v.findings);
    }

    #[test]
    fn a_lost_acknowledged_command_is_caught() {
        // The restarted state forgot nonce 2 of client 0 (what a store
        // that acknowledged before fsync would show after a power loss).
        let acks = [ack(0, 1, 10), ack(0, 2, 11), ack(1, 1, 10)];
        let v = check(&acks, &[view(2, 20), view(2, 20)], 1_000_000, &[0, 0]);
        assert_eq!(v.lost, 1);
        assert!(v.findings[0].contains("LOST"), "{:?}", v.findings);
        // An unreadable account counts its acknowledged commands as lost.
        let v = check(&acks, &[None, view(2, 20)], 1_000_000, &[0, 0]);
        assert_eq!(v.lost, 2);
    }

    #[test]
    fn a_balance_that_does_not_follow_the_nonces_is_reported() {
        let acks = [ack(0, 1, 10)];
        let mut views = [view(2, 20)];
        if let Some(v) = views[0].as_mut() {
            v.balance += 1;
        }
        let v = check(&acks, &views, 1_000_000, &[0]);
        assert_eq!(v.lost, 0);
        assert_eq!(v.findings.len(), 1);
    }
}
