//! Watching the replicas while the scenario runs: one task per validator
//! asks for its status (applied index and state hash under one lock, role,
//! leader, certificates) every [`SAMPLE_EVERY`], records each new applied
//! index in the history, notes when each NEP is first seen settled on that
//! replica, and when each certificate is first seen issued. Reads are
//! stale (the replica's own state), which is what a per-replica view is.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use neuroshard_governance::{NepType, Stage};
use neuroshard_node::api_proto as api;
use neuroshard_node::transport::api_convert::{nep_type_from_proto, stage_from_proto};

use neuroshard_chaos::history::{is_settled, Applied, Event, StateHash};

use super::api::Endpoints;
use super::journal::{now_ms, Journal};

/// How often each replica is asked for its status.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(40);
/// Proposal stages are read every this many status samples.
pub const PROPOSALS_EVERY: u32 = 3;
/// Longest one sampling call may take (a paused replica costs this much).
pub const SAMPLE_TIMEOUT: Duration = Duration::from_millis(400);
/// Certificates fetched per call.
pub const CERTIFICATE_PAGE: u32 = 16;
/// A status older than this does not name the current leader.
pub const FRESH_MS: u64 = 1_500;

/// What is known about one replica.
#[derive(Clone, Debug, Default)]
pub struct ReplicaView {
    pub status: Option<api::ClusterStatus>,
    pub status_ms: u64,
    pub stages: BTreeMap<u64, Stage>,
    /// First time each NEP was seen settled here.
    pub settled_ms: BTreeMap<u64, u64>,
    /// Every certificate up to here was seen issued on this replica.
    pub issued_through: u64,
}

/// A certificate as first seen issued.
#[derive(Clone, Debug)]
pub struct Sighting {
    pub first_issued_ms: u64,
    /// Every distinct envelope (JSON) any replica returned for it.
    pub envelopes: BTreeSet<String>,
    pub signers: Vec<u32>,
}

#[derive(Debug, Default)]
pub struct Observed {
    pub replicas: Vec<ReplicaView>,
    pub certificates: BTreeMap<u64, Sighting>,
}

/// The shared view the samplers keep up to date.
#[derive(Clone)]
pub struct Watch {
    inner: Arc<Mutex<Observed>>,
}

impl Watch {
    pub fn new(replicas: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Observed {
                replicas: vec![ReplicaView::default(); replicas],
                certificates: BTreeMap::new(),
            })),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Observed> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The validator that freshly reports itself leader with the highest
    /// term, if any.
    pub fn leader(&self) -> Option<u32> {
        let now = now_ms();
        let o = self.lock();
        o.replicas
            .iter()
            .filter(|r| now.saturating_sub(r.status_ms) <= FRESH_MS)
            .filter_map(|r| r.status.as_ref())
            .filter(|s| s.role == "leader")
            .max_by_key(|s| s.term)
            .map(|s| s.node_id as u32)
    }

    /// The highest term any replica reported, and whether a replica other
    /// than `except` reports itself leader in it.
    pub fn top_term(&self, except: u32) -> (u64, bool) {
        let o = self.lock();
        let statuses: Vec<&api::ClusterStatus> = o
            .replicas
            .iter()
            .filter_map(|r| r.status.as_ref())
            .collect();
        let top = statuses.iter().map(|s| s.term).max().unwrap_or(0);
        let led = statuses
            .iter()
            .any(|s| s.term == top && s.role == "leader" && s.node_id != u64::from(except));
        (top, led)
    }

    /// Whether every replica saw each of `neps` settled and every decided
    /// certificate issued.
    pub fn all_settled(&self, neps: &[u64]) -> bool {
        let o = self.lock();
        o.replicas.iter().all(|r| {
            let settled = neps.iter().all(|n| r.settled_ms.contains_key(n));
            let issued = r
                .status
                .as_ref()
                .is_some_and(|s| s.pending_certificates == 0 && r.issued_through >= s.certificates);
            settled && issued
        })
    }

    /// One line per replica, for timeouts and progress.
    pub fn describe(&self) -> String {
        let o = self.lock();
        o.replicas
            .iter()
            .enumerate()
            .map(|(i, r)| match &r.status {
                Some(s) => format!(
                    "v{i}: {} term {} applied {:?} certs {}/{} pending, stages {:?}",
                    s.role,
                    s.term,
                    s.applied_index,
                    s.certificates,
                    s.pending_certificates,
                    r.stages
                ),
                None => format!("v{i}: no status"),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Samples replica `i` until `stop`.
pub async fn sample(
    i: u32,
    endpoints: Endpoints,
    journal: Arc<Journal>,
    watch: Watch,
    stop: Arc<AtomicBool>,
) {
    let r = i as usize;
    let mut last_index: Option<u64> = None;
    let mut round: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        round = round.wrapping_add(1);
        let tick = tokio::time::sleep(SAMPLE_EVERY);
        let status = endpoints
            .call(r, SAMPLE_TIMEOUT, |mut c| async move {
                c.get_status(api::GetStatusRequest {}).await
            })
            .await;
        if let Ok(s) = status {
            let at = now_ms();
            if let (Some(index), Ok(hash)) = (
                s.applied_index,
                <[u8; 32]>::try_from(s.state_hash.as_slice()),
            ) {
                if last_index != Some(index) {
                    last_index = Some(index);
                    journal.record(Event::Applied(Applied {
                        time_ms: at,
                        replica: i,
                        index,
                        state_hash: StateHash(hash),
                        entry: None,
                    }));
                }
            }
            let issued_through = {
                let mut o = watch.lock();
                let r = &mut o.replicas[i as usize];
                r.status = Some(s.clone());
                r.status_ms = at;
                r.issued_through
            };
            if s.certificates > issued_through {
                certificates(i, &endpoints, &watch, issued_through + 1).await;
            }
            if round.is_multiple_of(PROPOSALS_EVERY) {
                proposals(i, &endpoints, &watch).await;
            }
        }
        tick.await;
    }
}

async fn proposals(i: u32, endpoints: &Endpoints, watch: &Watch) {
    let request = api::ListProposalsRequest {
        read: Some(api::ReadOptions { stale: true }),
        ..Default::default()
    };
    let list = endpoints
        .call(i as usize, SAMPLE_TIMEOUT, |mut c| async move {
            c.list_proposals(request).await
        })
        .await;
    let Ok(list) = list else {
        return;
    };
    let at = now_ms();
    let mut o = watch.lock();
    let r = &mut o.replicas[i as usize];
    for p in list.proposals {
        let Some(stage) = stage_from_proto(p.stage) else {
            continue;
        };
        let emergency = p
            .content
            .as_ref()
            .is_some_and(|c| nep_type_from_proto(c.nep_type) == Some(NepType::Emerg));
        r.stages.insert(p.nep, stage);
        if is_settled(stage, emergency) {
            r.settled_ms.entry(p.nep).or_insert(at);
        }
    }
}

async fn certificates(i: u32, endpoints: &Endpoints, watch: &Watch, from: u64) {
    let request = api::ListCertificatesRequest {
        from_sequence: from,
        limit: CERTIFICATE_PAGE,
        read: Some(api::ReadOptions { stale: true }),
    };
    let list = endpoints
        .call(i as usize, SAMPLE_TIMEOUT, |mut c| async move {
            c.list_certificates(request).await
        })
        .await;
    let Ok(list) = list else {
        return;
    };
    let at = now_ms();
    let mut o = watch.lock();
    let mut through = o.replicas[i as usize].issued_through;
    for c in list.certificates {
        if !c.issued {
            break;
        }
        let s = o
            .certificates
            .entry(c.sequence)
            .or_insert_with(|| Sighting {
                first_issued_ms: at,
                envelopes: BTreeSet::new(),
                signers: c.signers.clone(),
            });
        s.envelopes.insert(c.envelope_json.clone());
        if c.sequence == through + 1 {
            through = c.sequence;
        }
    }
    o.replicas[i as usize].issued_through = through;
}
