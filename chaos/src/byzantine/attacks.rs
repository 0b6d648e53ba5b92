//! The scenarios: what the faulty validator sends, and what must happen.
//! Each returns an [`Outcome`]; a finding fails the row. A scenario whose
//! attack message was never delivered (no connection, or an answer that is
//! neither Raft's nor a refusal) is a finding too: nothing was tested.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use neuroshard_certificate::proto::CertificatePayload;
use neuroshard_certificate::{encode_payload, payload_hash, signing_message, Envelope, ShareIndex};
use neuroshard_governance::certificate::{CertificateShare, IssuedCertificate};
use neuroshard_governance::{
    AccountId, Allocation, Amount, Command, Entry, Genesis, GovernanceState, SignedCommand, NEURO,
};
use neuroshard_node::checkpoint::{CertifiedCheckpoint, CheckpointPayload};
use neuroshard_node::proto;
use neuroshard_node::status::NodeStatus;
use neuroshard_node::store::GovernanceMachine;
use neuroshard_node::transport::convert;
use neuroshard_node::types::{SnapshotMeta, StoredMembership, Vote};
use openraft::{EntryPayload, Membership};
use sha2::{Digest, Sha256};

use super::faulty::{self, Answer, Keys, Payload};
use crate::hostile::client::{self, Pool};
use crate::real::journal::now_ms;
use crate::real::processes::Validators;

/// Longest the committee may take to commit again under another leader.
pub const RECOVER_WITHIN: Duration = Duration::from_secs(20);
/// Longest a scenario waits for a leader to attack.
pub const LEADER_WAIT: Duration = Duration::from_secs(20);
const TWO_DAYS_MS: u64 = 2 * 86_400_000;

/// What one scenario found.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// `refused (rule)` or `detected (…)`; empty when neither happened.
    pub verdict: String,
    /// Validators that refused (or detected).
    pub by: Vec<usize>,
    /// The faulty validator played.
    pub faulty: Option<usize>,
    /// When the attack message first reached a validator (ms since epoch).
    pub delivered_ms: Option<u64>,
    /// The term went up during the scenario.
    pub election: bool,
    /// From the attack to a leader committing again (ms).
    pub recovered_ms: Option<u64>,
    /// Equivocation: from the entry to the victim finding itself diverged.
    pub detection: Option<String>,
    /// The validator excluded from "replicas agree" from this index on
    /// (the equivocation's victim, detected diverged).
    pub excluded: Option<(usize, u64)>,
    pub findings: Vec<String>,
    pub notes: Vec<String>,
}

/// What the scenarios act on.
pub struct Ctx<'a> {
    pub keys: &'a Keys,
    /// The public API of every validator.
    pub admin: &'a Pool,
    pub validators: &'a mut Validators,
    pub genesis: &'a Genesis,
    pub treasury: &'a SigningKey,
    pub foreign_genesis: &'a Genesis,
    pub foreign_keys: &'a Keys,
    pub checkpoint_interval: u64,
}

/// The leader all reachable validators agree on, its term, and everyone's
/// status.
pub async fn leader(keys: &Keys) -> Result<(usize, u64, Vec<Option<NodeStatus>>), String> {
    let started = Instant::now();
    loop {
        let statuses = keys.statuses().await;
        let leaders: Vec<&NodeStatus> = statuses
            .iter()
            .flatten()
            .filter(|s| s.role == "leader")
            .collect();
        if let [l] = leaders.as_slice() {
            let (id, term) = (l.node_id as usize, l.term);
            if statuses
                .iter()
                .flatten()
                .all(|s| s.term == term && s.leader == Some(id as u64))
            {
                return Ok((id, term, statuses));
            }
        }
        if started.elapsed() > LEADER_WAIT {
            return Err(format!("no agreed leader within {LEADER_WAIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until no validator ignores another (the last scenario's offender
/// is heard again), so each scenario is judged on its own message.
pub async fn quiet(keys: &Keys, within: Duration) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let statuses = keys.statuses().await;
        if statuses.iter().flatten().all(|s| s.ignored.is_empty()) {
            return Ok(());
        }
        if started.elapsed() > within {
            return Err(format!("validators still ignore others after {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until a leader in a term above `term` commits again; returns how
/// long since `since`. The offender (`faulty`) is the real validator whose
/// identity the suite used: once its ignore period ends the others hear it
/// again, and it may win an election like anyone else (after split votes
/// that outlast the period it sometimes does), so a later term led by it
/// counts too, named as such. On a timeout the finding carries every
/// validator's view.
async fn recovered(
    keys: &Keys,
    term: u64,
    faulty: Option<usize>,
    since: Instant,
    out: &mut Outcome,
) {
    loop {
        let statuses = keys.statuses().await;
        if since.elapsed() > RECOVER_WITHIN {
            let views: Vec<String> = statuses
                .iter()
                .enumerate()
                .map(|(i, s)| match s {
                    Some(s) => format!(
                        "v{i}: {} term {} leader {:?} commit {:?} applied {:?} ignored {:?} recovering {:?}{}",
                        s.role,
                        s.term,
                        s.leader,
                        s.commit_index,
                        s.applied_index,
                        s.ignored,
                        s.recovering_until,
                        if s.diverged.is_empty() { "" } else { " diverged" }
                    ),
                    None => format!("v{i}: no status"),
                })
                .collect();
            out.findings.push(format!(
                "no leader above term {term} committed within {RECOVER_WITHIN:?}; {}",
                views.join("; ")
            ));
            return;
        }
        let new = statuses
            .iter()
            .flatten()
            .find(|s| s.role == "leader" && s.term > term);
        if let Some(l) = new {
            let (id, before) = (l.node_id as usize, l.commit_index);
            tokio::time::sleep(Duration::from_millis(250)).await;
            if keys
                .status(id)
                .await
                .is_some_and(|a| a.role == "leader" && a.commit_index > before)
            {
                out.election = true;
                out.recovered_ms = Some(since.elapsed().as_millis() as u64);
                let who = if Some(id) == faulty {
                    " (the offender, heard again after its ignore period)"
                } else {
                    ""
                };
                out.notes.push(format!(
                    "validator {id}{who} leads term {} and commits",
                    l.term
                ));
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The faulty leader sends every follower one entry of its own term right
/// after the follower's last one; each must refuse it naming `rule`.
async fn refused_append(
    ctx: &mut Ctx<'_>,
    rule: &str,
    payload: &dyn Fn(u64) -> Payload,
) -> Outcome {
    let mut out = Outcome::default();
    let (l, term, statuses) = match leader(ctx.keys).await {
        Ok(x) => x,
        Err(e) => {
            out.findings.push(e);
            return out;
        }
    };
    out.faulty = Some(l);
    let since = Instant::now();
    for (f, s) in statuses.iter().enumerate() {
        if f == l {
            continue;
        }
        let last = s.as_ref().and_then(|s| s.last_log_index).unwrap_or(0);
        let request = match faulty::append(l as u64, term, last, None, vec![payload(l as u64)]) {
            Ok(r) => r,
            Err(e) => {
                out.findings.push(format!("encoding the entry: {e}"));
                return out;
            }
        };
        let answer = faulty::send_append(ctx.keys, l, f, request).await;
        judge(&mut out, f, rule, &answer);
    }
    recovered(ctx.keys, term, Some(l), since, &mut out).await;
    out
}

/// Records validator `f`'s answer: a refusal naming `rule` counts; an
/// entry taken or a message undelivered is a finding.
fn judge(out: &mut Outcome, f: usize, rule: &str, answer: &Answer) {
    match answer {
        Answer::Refused { rule: r, .. } if r == rule => {
            out.delivered_ms.get_or_insert_with(now_ms);
            out.by.push(f);
            out.verdict = format!("refused ({rule})");
        }
        Answer::Refused { rule: r, message } => {
            out.delivered_ms.get_or_insert_with(now_ms);
            out.findings.push(format!(
                "validator {f} refused with {r}, not {rule}: {message}"
            ));
        }
        Answer::Taken(what) => {
            out.delivered_ms.get_or_insert_with(now_ms);
            out.findings.push(format!(
                "validator {f} took it ({what}): not refused before Raft"
            ));
        }
        Answer::Undelivered(e) => out
            .findings
            .push(format!("not delivered to validator {f}: {e}")),
    }
}

pub async fn tick_ahead(ctx: &mut Ctx<'_>) -> Outcome {
    refused_append(ctx, "tick_ahead", &|_| {
        EntryPayload::Normal(Entry::Tick {
            now_ms: now_ms() + TWO_DAYS_MS,
        })
    })
    .await
}

pub async fn tick_max(ctx: &mut Ctx<'_>) -> Outcome {
    refused_append(ctx, "tick_ahead", &|_| {
        EntryPayload::Normal(Entry::Tick { now_ms: u64::MAX })
    })
    .await
}

pub async fn membership(ctx: &mut Ctx<'_>) -> Outcome {
    refused_append(ctx, "foreign_membership", &|l| {
        EntryPayload::Membership(Membership::new(vec![BTreeSet::from([l])], None))
    })
    .await
}

/// A certificate for the next sequence, signed by t + 1 shares of a
/// committee (`genesis`, `keys`: this chain's or another's) over a payload
/// naming that committee's chain.
fn certificate(genesis: &Genesis, keys: &Keys, sequence: u64) -> Result<IssuedCertificate, String> {
    let info = &genesis.committee.info;
    let payload = encode_payload(&CertificatePayload {
        chain_id: genesis.chain_id.clone(),
        committee_hash: genesis.committee.committee_hash().to_vec(),
        sequence,
        ..Default::default()
    });
    let scheme = info.scheme.scheme();
    let public = genesis
        .committee
        .public_key_set
        .as_ref()
        .ok_or("the genesis has no public key set")?;
    let mut shares = Vec::new();
    for i in 0..=info.t as usize {
        let k = keys.validator_keys(i, genesis).map_err(|e| e.to_string())?;
        let share = scheme
            .sign_share(&k.bls_share, &signing_message(&payload))
            .map_err(|e| e.to_string())?;
        shares.push((ShareIndex(i as u32), share));
    }
    let keyset = scheme
        .public_key_set_from_bytes(public)
        .map_err(|e| e.to_string())?;
    let envelope =
        Envelope::combine(&keyset, &shares, payload, info.epoch).map_err(|e| e.to_string())?;
    Ok(IssuedCertificate {
        sequence,
        envelope,
        shares: shares
            .iter()
            .map(|(i, s)| CertificateShare {
                validator: i.0,
                share: s.to_bytes().to_vec(),
            })
            .collect(),
    })
}

/// The certificates any validator reports decided (issued or collecting
/// shares).
async fn decided_count(admin: &Pool) -> u64 {
    let mut best = 0;
    for i in 0..admin.len() {
        if let Some(s) = client::status(admin, i, Duration::from_secs(2)).await {
            best = best.max(s.certificates);
        }
    }
    best
}

/// A `CertificateIssued` whose signature is not the committee's: a valid
/// certificate of another chain's committee with its signature bytes
/// reversed (`bad`), or as that committee signed it (`foreign`).
pub async fn bad_certificate(ctx: &mut Ctx<'_>, foreign_valid: bool) -> Outcome {
    let sequence = decided_count(ctx.admin).await + 1;
    let mut c = match certificate(ctx.foreign_genesis, ctx.foreign_keys, sequence) {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                findings: vec![format!("making the certificate: {e}")],
                ..Outcome::default()
            }
        }
    };
    if !foreign_valid {
        c.envelope.signature.reverse();
    } else {
        // It does verify under its own committee: the refusal is about
        // whose committee signed it.
        let verifier =
            neuroshard_certificate::Verifier::new(ctx.foreign_genesis.committee.info.clone());
        if let Err(e) = verifier.map(|v| v.verify(&c.envelope)) {
            return Outcome {
                findings: vec![format!(
                    "the foreign certificate does not verify there: {e}"
                )],
                ..Outcome::default()
            };
        }
    }
    let entry = EntryPayload::Normal(Entry::CertificateIssued(c));
    refused_append(ctx, "bad_certificate", &|_| entry.clone()).await
}

/// Equivocation: the leader's identity sends one follower an entry the
/// leader never wrote (a valid transfer from the treasury) at a log id of
/// the leader's term. Nothing before the state machine can tell; the
/// victim must find itself diverged at the first checkpoint after it.
pub async fn equivocation(ctx: &mut Ctx<'_>) -> Outcome {
    let mut out = Outcome::default();
    let (l, term, _) = match leader(ctx.keys).await {
        Ok(x) => x,
        Err(e) => {
            out.findings.push(e);
            return out;
        }
    };
    out.faulty = Some(l);
    let victim = (0..ctx.keys.configs.len())
        .find(|i| *i != l)
        .unwrap_or_default();
    let receiver = AccountId(SigningKey::from_bytes(&[77; 32]).verifying_key().to_bytes());
    let transfer = SignedCommand::sign(
        &ctx.genesis.chain_id,
        ctx.treasury,
        1,
        Command::Transfer {
            to: receiver,
            amount: Amount(5 * NEURO),
        },
    );
    let treasury = AccountId(ctx.treasury.verifying_key().to_bytes());
    let mut sent = None;
    let mut last_answer = String::new();
    for _ in 0..20 {
        let Ok(mut client) = ctx.keys.peer_as(l, victim).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let last = ctx
            .keys
            .status(victim)
            .await
            .and_then(|s| s.last_log_index)
            .unwrap_or(0);
        let Ok(request) = faulty::append(
            l as u64,
            term,
            last,
            None,
            vec![EntryPayload::Normal(Entry::Command(transfer.clone()))],
        ) else {
            break;
        };
        let at = Instant::now();
        match client.append_entries(request).await {
            Ok(r) => {
                if !matches!(
                    r.into_inner().result,
                    Some(proto::append_entries_response::Result::Success(_))
                ) {
                    last_answer = "not a success (the log moved on)".into();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
            Err(s) => {
                last_answer = s.message().to_owned();
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        }
        // A success may also mean the leader's own entry got there first
        // (same log id: Raft keeps the one it has): the forged entry is in
        // only when the victim applies the transfer.
        let mut taken = false;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if ctx.keys.next_nonce(victim, &treasury).await == Some(2) {
                taken = true;
                break;
            }
        }
        if taken {
            sent = Some((at, last + 1));
            break;
        }
        last_answer = "answered success, but the leader's own entry was there first".into();
    }
    let Some((sent_at, index)) = sent else {
        out.findings.push(format!(
            "the victim never took the equivocated entry: {last_answer}"
        ));
        return out;
    };
    out.delivered_ms = Some(now_ms());
    out.excluded = Some((victim, index));
    let checkpoint = index.div_ceil(ctx.checkpoint_interval) * ctx.checkpoint_interval;
    // The next checkpoint comes within one interval of entries (ticks every
    // 100 ms plus the honest commands), plus the shares' exchange.
    let by = Duration::from_secs(60);
    loop {
        if let Some(s) = ctx.keys.status(victim).await {
            if !s.diverged.is_empty() {
                let at = s
                    .diverged
                    .split_whitespace()
                    .nth(2)
                    .and_then(|n| n.trim_end_matches(':').parse::<u64>().ok());
                let elapsed = sent_at.elapsed();
                out.detection = Some(format!(
                    "{:.1} s, at checkpoint {} ({} entries after the equivocated one at {index})",
                    elapsed.as_secs_f64(),
                    at.map_or("?".into(), |a| a.to_string()),
                    at.map_or("?".into(), |a| a.saturating_sub(index).to_string()),
                ));
                if at != Some(checkpoint) {
                    out.findings.push(format!(
                        "the entry at {index} was caught at checkpoint {at:?}, not the first after it ({checkpoint}): {}",
                        s.diverged
                    ));
                }
                out.verdict = "detected (diverged)".into();
                out.by.push(victim);
                out.notes
                    .push(format!("validator {victim}: {}", s.diverged));
                break;
            }
        }
        if sent_at.elapsed() > by {
            out.findings.push(format!(
                "validator {victim} never found itself diverged within {by:?}"
            ));
            return out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The others certify the checkpoint and stay undiverged.
    let started = Instant::now();
    loop {
        let statuses = ctx.keys.statuses().await;
        let others: Vec<&NodeStatus> = statuses
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .filter_map(|(_, s)| s.as_ref())
            .collect();
        if others.len() == ctx.keys.configs.len() - 1
            && others
                .iter()
                .all(|s| s.diverged.is_empty() && s.certified_checkpoint >= Some(checkpoint))
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            out.findings.push(format!(
                "the others did not all certify checkpoint {checkpoint} undiverged"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out
}

/// Withheld ticks: the leader is killed (SIGKILL) and the suite plays it,
/// heartbeating every follower with its vote and no entries faster than
/// the election timeout: they hear a live leader that never ticks. The
/// tick watchdog must refuse it (`ticks_withheld`) and the committee elect
/// another; then the killed validator restarts and must rejoin.
pub async fn withheld_ticks(ctx: &mut Ctx<'_>) -> Outcome {
    let mut out = Outcome::default();
    let (l, term, statuses) = match leader(ctx.keys).await {
        Ok(x) => x,
        Err(e) => {
            out.findings.push(e);
            return out;
        }
    };
    out.faulty = Some(l);
    let refusals_before: Vec<u64> = statuses
        .iter()
        .map(|s| {
            s.as_ref()
                .and_then(|s| s.safety_refusals.get("ticks_withheld").copied())
                .unwrap_or(0)
        })
        .collect();
    if let Err(e) = ctx.validators.kill9(l) {
        out.findings.push(format!("kill -9 validator {l}: {e}"));
        return out;
    }
    let since = Instant::now();
    let followers: Vec<usize> = (0..ctx.keys.configs.len()).filter(|f| *f != l).collect();
    let mut clients = Vec::new();
    for &f in &followers {
        match ctx.keys.peer_as(l, f).await {
            Ok(c) => clients.push((f, c)),
            Err(e) => out.findings.push(format!("connecting to {f}: {e}")),
        }
    }
    // Heartbeats at the follower's own last log id (the leader's entries).
    let mut heard = 0u64;
    let mut refused_by: BTreeSet<usize> = BTreeSet::new();
    let mut answers = Vec::new();
    let deadline = since + RECOVER_WITHIN;
    let mut last_index: Vec<Option<u64>> = vec![None; ctx.keys.configs.len()];
    let mut moved_on = None;
    while Instant::now() < deadline && moved_on.is_none() {
        for (f, client) in clients.iter_mut() {
            let f = *f;
            if last_index[f].is_none() || heard.is_multiple_of(10) {
                if let Some(s) = ctx.keys.status(f).await {
                    if s.term > term && s.role == "leader" {
                        moved_on = Some(f);
                    }
                    last_index[f] = s.last_log_index;
                }
            }
            let last = last_index[f].unwrap_or(0);
            let Ok(request) = faulty::append(l as u64, term, last, Some(last), Vec::new()) else {
                continue;
            };
            match tokio::time::timeout(faulty::CALL_TIMEOUT, client.append_entries(request)).await {
                Ok(Ok(_)) => heard += 1,
                Ok(Err(status)) => {
                    let a = Answer::from_status(&status);
                    if let Some(rule) = a.rule() {
                        if rule == "ticks_withheld" || rule == "ignored_validator" {
                            refused_by.insert(f);
                        }
                        if answers.len() < 3 {
                            answers.push(format!("{f}: {rule}"));
                        }
                    } else {
                        heard += 1;
                    }
                }
                Err(_) => {}
            }
        }
        out.delivered_ms.get_or_insert_with(now_ms);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    out.notes.push(format!(
        "{heard} heartbeats of validator {l} (term {term}, no entries) taken by the followers; answers after: {answers:?}"
    ));
    if heard < 2 * followers.len() as u64 {
        out.findings.push(format!(
            "only {heard} heartbeats were taken: the followers never heard a live leader withholding ticks"
        ));
    }
    recovered(ctx.keys, term, Some(l), since, &mut out).await;
    let statuses = ctx.keys.statuses().await;
    for (f, s) in statuses.iter().enumerate() {
        if let Some(s) = s {
            let now = s
                .safety_refusals
                .get("ticks_withheld")
                .copied()
                .unwrap_or(0);
            if now > refusals_before[f] {
                refused_by.insert(f);
            }
        }
    }
    out.by = refused_by.into_iter().collect();
    if out.by.is_empty() {
        out.findings.push(
            "no follower refused the silent leader (ticks_withheld): the election, if any, was not the watchdog's".into(),
        );
    } else {
        out.verdict = "refused (ticks_withheld)".into();
    }
    // The killed validator restarts and rejoins.
    drop(clients);
    if let Err(e) = ctx.validators.spawn(l) {
        out.findings.push(format!("restarting validator {l}: {e}"));
        return out;
    }
    let started = Instant::now();
    loop {
        let statuses = ctx.keys.statuses().await;
        let top = statuses
            .iter()
            .flatten()
            .filter(|s| s.node_id as usize != l)
            .filter_map(|s| s.commit_index)
            .min()
            .unwrap_or(0);
        if statuses[l]
            .as_ref()
            .is_some_and(|s| s.applied_index >= Some(top) && s.leader.is_some())
        {
            out.notes.push(format!(
                "validator {l} restarted and rejoined in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            out.findings
                .push(format!("validator {l} did not rejoin within 30 s"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out
}

/// A forged snapshot to a lagging follower: a follower is killed until the
/// others' logs no longer hold what it misses, restarted, and sent by the
/// leader's identity an InstallSnapshot of a made-up state (the genesis
/// plus an account holding 10⁹ NEURO, at a far index), unsigned and signed
/// by the faulty validator's BLS share alone. It must refuse both
/// (`uncertified_snapshot`) and catch up to the others' state.
pub async fn forged_snapshot(ctx: &mut Ctx<'_>) -> Outcome {
    let mut out = Outcome::default();
    let (l, term, _) = match leader(ctx.keys).await {
        Ok(x) => x,
        Err(e) => {
            out.findings.push(e);
            return out;
        }
    };
    let victim = (0..ctx.keys.configs.len())
        .rev()
        .find(|i| *i != l)
        .unwrap_or_default();
    out.faulty = Some(l);
    // The made-up state.
    let rich = AccountId(SigningKey::from_bytes(&[42; 32]).verifying_key().to_bytes());
    let mut forged_genesis = ctx.genesis.clone();
    forged_genesis.allocations.push(Allocation {
        account: rich,
        balance: Amount(1_000_000_000 * NEURO),
        staked: Amount(0),
    });
    let state = match GovernanceState::from_genesis(&forged_genesis) {
        Ok(s) => s,
        Err(e) => {
            out.findings.push(format!("made-up state: {e}"));
            return out;
        }
    };
    let mut forged = GovernanceMachine::new(state);
    let claimed = faulty::log_id(term, l as u64, 1_000_000);
    forged.last_applied = Some(claimed);
    forged.membership = StoredMembership::new(
        Some(faulty::log_id(0, 0, 0)),
        Membership::new(
            vec![(0..ctx.keys.configs.len() as u64).collect::<BTreeSet<u64>>()],
            None,
        ),
    );
    let image = match forged
        .image()
        .map_err(|e| e.to_string())
        .and_then(|i| i.encode().map_err(|e| e.to_string()))
    {
        Ok(i) => i,
        Err(e) => {
            out.findings.push(format!("image: {e}"));
            return out;
        }
    };
    let own_share = CheckpointPayload::new(
        forged.state.chain(),
        claimed,
        &forged.membership,
        forged.state.state_hash(),
    )
    .map_err(|e| e.to_string())
    .and_then(|payload| {
        let k = ctx
            .keys
            .validator_keys(l, ctx.genesis)
            .map_err(|e| e.to_string())?;
        ctx.genesis
            .committee
            .info
            .scheme
            .scheme()
            .sign_share(&k.bls_share, &payload.signing_message())
            .map(|s| s.to_bytes().to_vec())
            .map_err(|e| e.to_string())
    });
    let own_share = match own_share {
        Ok(s) => s,
        Err(e) => {
            out.findings.push(format!("signing: {e}"));
            return out;
        }
    };
    let variants = [
        ("unsigned", CertifiedCheckpoint::encode_parts(&[], &image)),
        (
            "the faulty validator's share alone",
            CertifiedCheckpoint::encode_parts(&own_share, &image),
        ),
    ];
    // The victim falls behind every log the others keep.
    if let Err(e) = ctx.validators.kill9(victim) {
        out.findings
            .push(format!("kill -9 validator {victim}: {e}"));
        return out;
    }
    let behind = ctx
        .keys
        .status(l)
        .await
        .and_then(|s| s.applied_index)
        .unwrap_or(0);
    let purged_by = Instant::now() + Duration::from_secs(60);
    while ctx
        .keys
        .status(l)
        .await
        .and_then(|s| s.purged_index)
        .unwrap_or(0)
        <= behind + 5
    {
        if Instant::now() > purged_by {
            out.findings
                .push(format!("the leader never purged past validator {victim}"));
            let _ = ctx.validators.spawn(victim);
            return out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Err(e) = ctx.validators.spawn(victim) {
        out.findings
            .push(format!("restarting validator {victim}: {e}"));
        return out;
    }
    let since = Instant::now();
    let meta = SnapshotMeta {
        last_log_id: Some(claimed),
        last_membership: forged.membership.clone(),
        snapshot_id: "made-up".into(),
    };
    for (what, data) in variants {
        let data = match data {
            Ok(d) => d,
            Err(e) => {
                out.findings.push(format!("{what}: encoding: {e}"));
                continue;
            }
        };
        let mut answer = Answer::Undelivered("never sent".into());
        // Until the restarted victim's peer listener answers.
        while since.elapsed() < Duration::from_secs(30) {
            let (_, term_now, _) = match leader(ctx.keys).await {
                Ok(x) => x,
                Err(_) => (l, term, Vec::new()),
            };
            let rpc = openraft::raft::InstallSnapshotRequest {
                vote: Vote::new_committed(term_now, l as u64),
                meta: meta.clone(),
                offset: 0,
                data: data.clone(),
                done: true,
            };
            answer = match ctx.keys.peer_as(l, victim).await {
                Err(e) => Answer::Undelivered(e),
                Ok(mut c) => match c.install_snapshot(convert::install_request_to(&rpc)).await {
                    Ok(_) => Answer::Taken("accepted".into()),
                    Err(s) => Answer::from_status(&s),
                },
            };
            // Refused as an ignored validator: wait for the ignore to lapse
            // so this variant is judged on its content.
            if matches!(&answer, Answer::Refused { rule, .. } if rule == "ignored_validator")
                || matches!(answer, Answer::Undelivered(_))
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            break;
        }
        out.notes.push(format!("{what}: {answer:?}"));
        judge(&mut out, victim, "uncertified_snapshot", &answer);
    }
    out.by.dedup();
    // The victim catches up to the others and holds no made-up state.
    let started = Instant::now();
    loop {
        let statuses = ctx.keys.statuses().await;
        let hashes: BTreeSet<(Option<u64>, String)> = statuses
            .iter()
            .flatten()
            .map(|s| (s.applied_index, s.state_hash.clone()))
            .collect();
        let victim_ok = statuses[victim]
            .as_ref()
            .is_some_and(|s| s.applied_index < Some(1_000_000));
        if statuses.iter().all(Option::is_some) && hashes.len() == 1 && victim_ok {
            out.recovered_ms = Some(since.elapsed().as_millis() as u64);
            out.notes.push(format!(
                "validator {victim} caught up: all four at {:?}",
                hashes.iter().next().map(|h| h.0)
            ));
            break;
        }
        if statuses[victim]
            .as_ref()
            .is_some_and(|s| s.applied_index >= Some(1_000_000))
        {
            out.findings
                .push(format!("validator {victim} applied the made-up state"));
            break;
        }
        if started.elapsed() > Duration::from_secs(45) {
            out.findings.push(format!(
                "validator {victim} did not catch up with the others within 45 s"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let term_now = ctx.keys.status(l).await.map_or(term, |s| s.term);
    out.election = term_now > term;
    out
}

/// Shares for payloads the faulty validator's replica did not derive: a
/// certificate share (to the leader) for the next sequence and a
/// checkpoint share (to every other validator) for the next checkpoint,
/// both signed with its real BLS share over made-up payloads. They must
/// never combine: no certificate carries the made-up payload, the next
/// checkpoint is certified with the honest state and nobody diverges.
pub async fn foreign_shares(ctx: &mut Ctx<'_>) -> Outcome {
    let mut out = Outcome::default();
    let (l, term, statuses) = match leader(ctx.keys).await {
        Ok(x) => x,
        Err(e) => {
            out.findings.push(e);
            return out;
        }
    };
    let f = (0..ctx.keys.configs.len())
        .find(|i| *i != l)
        .unwrap_or_default();
    out.faulty = Some(f);
    let k = match ctx.keys.validator_keys(f, ctx.genesis) {
        Ok(k) => k,
        Err(e) => {
            out.findings.push(e.to_string());
            return out;
        }
    };
    let scheme = ctx.genesis.committee.info.scheme.scheme();
    let applied = statuses
        .iter()
        .flatten()
        .filter_map(|s| s.applied_index)
        .max()
        .unwrap_or(0);
    let checkpoint = (applied / ctx.checkpoint_interval + 1) * ctx.checkpoint_interval;
    // The certificate share: a made-up payload for the next sequence.
    let sequence = decided_count(ctx.admin).await + 1;
    let made_up = encode_payload(&CertificatePayload {
        chain_id: ctx.genesis.chain_id.clone(),
        committee_hash: ctx.genesis.committee.committee_hash().to_vec(),
        sequence,
        nep_id: 999_999,
        ..Default::default()
    });
    let made_up_hash = payload_hash(&made_up);
    let cert_share = match scheme.sign_share(&k.bls_share, &signing_message(&made_up)) {
        Ok(s) => s.to_bytes().to_vec(),
        Err(e) => {
            out.findings.push(e.to_string());
            return out;
        }
    };
    match ctx.keys.peer_as(f, l).await {
        Ok(mut c) => match c
            .submit_signature_share(proto::SignatureShareRequest {
                from: f as u64,
                sequence,
                payload_sha256: made_up_hash.to_vec(),
                share: cert_share,
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                out.delivered_ms.get_or_insert_with(now_ms);
                out.notes.push(format!(
                    "certificate share for a made-up payload of sequence {sequence} to leader {l}: accepted into its queue = {} {}",
                    r.accepted, r.message
                ));
            }
            Err(s) => out
                .findings
                .push(format!("the certificate share was not delivered: {s:?}")),
        },
        Err(e) => out
            .findings
            .push(format!("the certificate share was not delivered: {e}")),
    }
    // The checkpoint share: a made-up state at the next checkpoint.
    let made_up_state: [u8; 32] = Sha256::digest(b"a state no log produced").into();
    let chain = GovernanceState::from_genesis(ctx.genesis).map(|s| s.chain().clone());
    let Ok(chain) = chain else {
        out.findings.push("genesis state".into());
        return out;
    };
    let membership = StoredMembership::new(
        Some(faulty::log_id(0, 0, 0)),
        Membership::new(
            vec![(0..ctx.keys.configs.len() as u64).collect::<BTreeSet<u64>>()],
            None,
        ),
    );
    let payload = match CheckpointPayload::new(
        &chain,
        faulty::log_id(term, l as u64, checkpoint),
        &membership,
        made_up_state,
    ) {
        Ok(p) => p,
        Err(e) => {
            out.findings.push(e.to_string());
            return out;
        }
    };
    let share = match scheme.sign_share(&k.bls_share, &payload.signing_message()) {
        Ok(s) => s.to_bytes().to_vec(),
        Err(e) => {
            out.findings.push(e.to_string());
            return out;
        }
    };
    let mut delivered = 0;
    for to in (0..ctx.keys.configs.len()).filter(|i| *i != f) {
        if let Ok(mut c) = ctx.keys.peer_as(f, to).await {
            if let Ok(r) = c
                .submit_checkpoint_share(proto::CheckpointShareRequest {
                    from: f as u64,
                    term: payload.term,
                    leader: payload.leader,
                    index: payload.index,
                    membership_sha256: payload.membership_sha256.to_vec(),
                    state_hash: payload.state_hash.to_vec(),
                    share: share.clone(),
                })
                .await
            {
                if r.into_inner().accepted {
                    delivered += 1;
                }
            }
        }
    }
    out.notes.push(format!(
        "checkpoint share for a made-up state at checkpoint {checkpoint} taken by {delivered} validators"
    ));
    if delivered == 0 {
        out.findings
            .push("the checkpoint share was delivered to no validator".into());
    }
    // Wait for the checkpoint to be certified everywhere (honestly) and the
    // sequence to be issued with another payload (or not at all).
    let started = Instant::now();
    loop {
        let statuses = ctx.keys.statuses().await;
        let done = statuses.iter().all(|s| {
            s.as_ref()
                .is_some_and(|s| s.certified_checkpoint >= Some(checkpoint))
        });
        if done {
            if let Some(d) = statuses.iter().flatten().find(|s| !s.diverged.is_empty()) {
                out.findings
                    .push(format!("validator {} diverged: {}", d.node_id, d.diverged));
            }
            out.notes.push(format!(
                "checkpoint {checkpoint} certified on every validator with the honest state ({:.1} s)",
                started.elapsed().as_secs_f64()
            ));
            break;
        }
        if started.elapsed() > Duration::from_secs(45) {
            out.findings.push(format!(
                "checkpoint {checkpoint} was not certified on every validator within 45 s"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out.by = (0..ctx.keys.configs.len()).filter(|i| *i != f).collect();
    out.verdict = "refused (never combined)".into();
    out.notes.push(format!(
        "made-up certificate payload {}",
        hex::encode(&made_up_hash[..8])
    ));
    out
}

/// The made-up certificate payload hash a note names, if any.
pub fn made_up_payload(out: &Outcome) -> Option<String> {
    out.notes
        .iter()
        .find_map(|n| n.strip_prefix("made-up certificate payload "))
        .map(str::to_owned)
}
