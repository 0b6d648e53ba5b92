//! The end of a scenario: each replica's own view of every NEP (stage,
//! tally, counted ballots read back one by one through vote receipts, the
//! closing tick's index from the certificate that decided it) and every
//! certificate with each replica's own payload bytes, all from stale reads
//! so each replica answers for itself.

use std::collections::BTreeMap;
use std::time::Duration;

use neuroshard_certificate::Envelope;
use neuroshard_governance::certificate::CertificateKind;
use neuroshard_governance::{AccountId, NepId, NepType};
use neuroshard_node::api_proto as api;
use neuroshard_node::transport::api_convert::{
    choice_from_proto, nep_type_from_proto, stage_from_proto,
};

use neuroshard_chaos::history::{
    BallotRecord, CertificateSeen, Event, Final, ReplicaPayload, TallyRecord,
};

use super::api::Endpoints;
use super::journal::{now_ms, Journal};
use super::sampler::Watch;

/// Longest one read of the final phase may take.
pub const FINAL_READ_TIMEOUT: Duration = Duration::from_millis(2_000);
/// Certificates read per call at the end (every page is read).
pub const MAX_FINAL_CERTIFICATES: u32 = 64;

fn stale() -> Option<api::ReadOptions> {
    Some(api::ReadOptions { stale: true })
}

fn kind_from_proto(kind: i32) -> Option<CertificateKind> {
    use neuroshard_certificate::proto::CertificateKind as P;
    match P::try_from(kind).ok()? {
        P::Activation => Some(CertificateKind::Activation),
        P::Cancellation => Some(CertificateKind::Cancellation),
        P::Revocation => Some(CertificateKind::Revocation),
        P::Unspecified => None,
    }
}

/// Replica `replica`'s final view of `nep`; `None` if it cannot be read.
async fn final_of(
    endpoints: &Endpoints,
    replica: u32,
    nep: NepId,
    voters: &[AccountId],
    watch: &Watch,
    findings: &mut Vec<String>,
) -> Option<Final> {
    let request = api::GetProposalRequest {
        nep: nep.0,
        read: stale(),
    };
    let r = replica as usize;
    let p = endpoints
        .call(r, FINAL_READ_TIMEOUT, |mut c| async move {
            c.get_proposal(request).await
        })
        .await
        .ok()?;
    let stage = stage_from_proto(p.stage)?;
    let emergency = p
        .content
        .as_ref()
        .is_some_and(|c| nep_type_from_proto(c.nep_type) == Some(NepType::Emerg));
    let mut f = Final {
        time_ms: now_ms(),
        replica,
        nep,
        stage,
        emergency,
        settled_ms: watch.lock().replicas[replica as usize]
            .settled_ms
            .get(&nep.0)
            .copied(),
        deadline_ms: None,
        closing_index: None,
        ballots: Vec::new(),
        tally: None,
        certificates: p.certificates.clone(),
    };
    if let Some(vote) = &p.vote {
        f.deadline_ms = Some(vote.deadline_ms);
        let t = vote.tally.unwrap_or_default();
        f.tally = Some(TallyRecord {
            yes: t.yes,
            no: t.no,
            abstain: t.abstain,
            total_power: t.total_power,
            quorum_bps: t.quorum_bps,
            approval_bps: t.approval_bps,
        });
        for account in voters {
            let request = api::GetVoteReceiptRequest {
                nep: nep.0,
                account: account.to_hex(),
                read: stale(),
            };
            let receipt = endpoints
                .call(r, FINAL_READ_TIMEOUT, |mut c| async move {
                    c.get_vote_receipt(request).await
                })
                .await;
            match receipt {
                Ok(r) => f.ballots.push(BallotRecord {
                    account: *account,
                    choice: choice_from_proto(r.choice)?,
                    power: r.power,
                }),
                // No ballot: a query refusal naming the rule. Anything else
                // (an unreachable replica) leaves this view incomplete.
                Err(e) if e.rule().is_some() => {}
                Err(_) => return None,
            }
        }
        f.ballots.sort_by_key(|b| b.account);
        f.closing_index = vote.closed_index;
        // The closing tick also decided the activation certificate of an
        // approved vote: its decision index must be the same.
        for seq in &p.certificates {
            let request = api::GetCertificateRequest {
                by: Some(api::get_certificate_request::By::Sequence(*seq)),
                read: stale(),
            };
            let certificate = endpoints
                .call(r, FINAL_READ_TIMEOUT, |mut c| async move {
                    c.get_certificate(request).await
                })
                .await;
            if let Ok(c) = certificate {
                // An emergency's activation is decided when it is approved,
                // before its ratification vote opens.
                if !f.emergency && kind_from_proto(c.kind) == Some(CertificateKind::Activation) {
                    match f.closing_index {
                        Some(closed) if closed != c.decision_log_index => {
                            findings.push(format!(
                                "replica {replica}, {nep}: the vote closed at index {closed} (TallyView.closed_index) but its ACTIVATION certificate {seq} was decided at index {}",
                                c.decision_log_index
                            ));
                        }
                        Some(_) => {}
                        None => f.closing_index = Some(c.decision_log_index),
                    }
                }
            }
        }
    }
    Some(f)
}

/// Records every replica's final view of `neps` and every certificate.
/// Returns what the answers contradict among themselves (a closing index
/// the deciding certificate does not confirm, an envelope that does not
/// parse): the history cannot express those, so they count as findings.
pub async fn record(
    endpoints: &Endpoints,
    journal: &Journal,
    watch: &Watch,
    neps: &[NepId],
    voters: &[AccountId],
) -> Vec<String> {
    let mut findings = Vec::new();
    let n = endpoints.len();
    // Per sequence: every distinct envelope seen, and each replica's payload.
    let mut payloads: BTreeMap<u64, Vec<ReplicaPayload>> = BTreeMap::new();
    let mut seen: BTreeMap<u64, (u64, i32, Vec<String>)> = BTreeMap::new();
    for i in 0..n {
        for nep in neps {
            if let Some(f) = final_of(endpoints, i as u32, *nep, voters, watch, &mut findings).await
            {
                journal.record(Event::Final(f));
            }
        }
        // Every page: a long run issues more than one page of certificates.
        let mut from = 1;
        loop {
            let request = api::ListCertificatesRequest {
                from_sequence: from,
                limit: MAX_FINAL_CERTIFICATES,
                read: stale(),
            };
            let list = endpoints
                .call(i, FINAL_READ_TIMEOUT, |mut c| async move {
                    c.list_certificates(request).await
                })
                .await;
            let Ok(list) = list else {
                break;
            };
            if list.certificates.is_empty() {
                break;
            }
            for c in list.certificates {
                from = c.sequence + 1;
                payloads
                    .entry(c.sequence)
                    .or_default()
                    .push(ReplicaPayload {
                        replica: i as u32,
                        payload: c.payload.clone(),
                    });
                let entry = seen
                    .entry(c.sequence)
                    .or_insert_with(|| (c.nep, c.kind, Vec::new()));
                if c.issued && !entry.2.contains(&c.envelope_json) {
                    entry.2.push(c.envelope_json.clone());
                }
            }
        }
    }
    let sightings = watch.lock().certificates.clone();
    for (seq, (nep, kind, mut envelopes)) in seen {
        let first_ms = sightings.get(&seq).map(|s| s.first_issued_ms);
        if let Some(s) = sightings.get(&seq) {
            for e in &s.envelopes {
                if !envelopes.contains(e) {
                    envelopes.push(e.clone());
                }
            }
        }
        let Some(kind) = kind_from_proto(kind) else {
            continue;
        };
        for json in envelopes {
            let envelope = match Envelope::from_json(json.as_bytes()) {
                Ok(e) => e,
                Err(e) => {
                    findings.push(format!(
                        "certificate {seq}: a validator returned an envelope that does not parse ({e}): {json}"
                    ));
                    continue;
                }
            };
            journal.record(Event::Certificate(CertificateSeen {
                time_ms: first_ms.unwrap_or_else(now_ms),
                sequence: seq,
                nep: NepId(nep),
                kind,
                envelope,
                replica_payloads: payloads.get(&seq).cloned().unwrap_or_default(),
            }));
        }
    }
    findings
}
