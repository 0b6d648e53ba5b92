//! The public governance API (`neuroshard.governance.v1.Governance`,
//! proto/governance.proto) with gRPC health and reflection, served on the
//! API listener beside `ReplicaAdmin`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tonic::transport::server::Router;
use tonic::{Request, Response, Status};

use neuroshard_governance::admission;
use neuroshard_governance::{
    AccountId, Effect, Genesis, GovernanceState, NepId, ProposalFilter, SignedCommand,
};

use crate::api_proto as api;
use crate::api_proto::governance_server::{Governance, GovernanceServer};
use crate::error::NodeError;
use crate::node::NodeCore;
use crate::reads::read_barrier;
use crate::transport::api_convert as convert;
use crate::transport::api_errors::{self as errors, invalid_argument};
use crate::transport::api_service::{self, MAX_API_MESSAGE_BYTES, MAX_API_REQUEST_BYTES};
use crate::transport::conn::Refusal;
use crate::transport::net::PeerIdentity;

/// Bytes of proposals (certificates) one `ListProposals`
/// (`ListCertificates`) answer carries at most: half the message bound,
/// leaving room for the read point and framing.
pub const MAX_LIST_RESPONSE_BYTES: usize = MAX_API_MESSAGE_BYTES / 2;
/// Longest a read waits to become linearizable.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Certificates buffered per stream before the sender waits for the client.
pub const STREAM_BUFFER: usize = 16;

/// What genesis set, for light nodes (`GetCommittee`).
#[derive(Clone)]
struct GenesisView {
    parameters: Vec<api::Parameter>,
    version: neuroshard_certificate::proto::ProtocolVersion,
    block_interval_ms: u64,
}

#[derive(Clone)]
pub struct GovernanceService {
    core: Arc<NodeCore>,
    genesis: Arc<GenesisView>,
    shutdown: watch::Receiver<bool>,
}

/// The governance service's name in `grpc.health.v1`.
pub const SERVICE_NAME: &str =
    <GovernanceServer<GovernanceService> as tonic::server::NamedService>::NAME;

/// The services of the public API, ready to be added to the API listener.
pub struct PublicApi {
    governance: GovernanceServer<GovernanceService>,
    health: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    reporter: tonic_health::server::HealthReporter,
}

impl PublicApi {
    pub async fn new(
        core: Arc<NodeCore>,
        genesis: &Genesis,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, NodeError> {
        let parameters = genesis.parameter_set().map_err(|e| NodeError::Genesis {
            path: "genesis".into(),
            message: e.to_string(),
        })?;
        let view = GenesisView {
            parameters: parameters
                .iter()
                .map(|(key, value)| api::Parameter {
                    key: key.to_owned(),
                    value: Some(convert::value_to_proto(value)),
                })
                .collect(),
            version: convert::version_to_proto(genesis.protocol_version),
            block_interval_ms: genesis.block_interval_ms,
        };
        let service = GovernanceService {
            core,
            genesis: Arc::new(view),
            shutdown,
        };
        // NOT_SERVING until the validator knows a leader and is caught up
        // (`crate::metrics::observe` keeps it up to date).
        let reporter = tonic_health::server::HealthReporter::new();
        crate::metrics::set_health(&reporter, false).await;
        Ok(Self {
            reporter: reporter.clone(),
            // Requests are bounded by the largest command (`Submit`), every
            // other request is far smaller; answers by the message bound.
            governance: GovernanceServer::new(service)
                .max_decoding_message_size(MAX_API_REQUEST_BYTES)
                .max_encoding_message_size(MAX_API_MESSAGE_BYTES),
            health: tonic_health::pb::health_server::HealthServer::new(
                tonic_health::server::HealthService::from_health_reporter(reporter),
            ),
        })
    }

    /// Sets what `grpc.health.v1` answers.
    pub fn health_reporter(&self) -> tonic_health::server::HealthReporter {
        self.reporter.clone()
    }

    /// Adds the governance service, health and reflection (v1 and v1alpha,
    /// for older grpcurl) to the API listener's router.
    pub fn add_to<L>(self, router: Router<L>) -> Result<Router<L>, NodeError> {
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(api::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_err = |e: tonic_reflection::server::Error| {
            NodeError::Internal(format!("reflection descriptors: {e}"))
        };
        let v1 = reflection().build_v1().map_err(reflection_err)?;
        let v1alpha = reflection().build_v1alpha().map_err(reflection_err)?;
        Ok(router
            .add_service(self.governance)
            .add_service(self.health)
            .add_service(v1)
            .add_service(v1alpha))
    }
}

fn parse_account(field: &str, hex: &str) -> Result<AccountId, Status> {
    AccountId::from_hex(hex.trim())
        .map_err(|e| invalid_argument(field, format!("{hex:?} is not 64 hex digits: {e}")))
}

fn parse_nep(field: &str, n: u64) -> Result<NepId, Status> {
    if n == 0 {
        return Err(invalid_argument(field, "NEP ids start at 1"));
    }
    Ok(NepId(n))
}

/// The NEP a receipt is about, if any.
fn effect_nep(e: &Effect) -> Option<u64> {
    crate::logging::effect_nep(e)
}

/// Highest certificate sequence decided (sequences are gap-free from 1).
fn certificate_count(state: &GovernanceState) -> u64 {
    if state.certificate(1).is_none() {
        return 0;
    }
    let mut high = 1u64;
    while state.certificate(high.saturating_mul(2)).is_some() && high < u64::MAX / 2 {
        high *= 2;
    }
    // Invariant: `high` exists, `2 * high` does not.
    let (mut lo, mut hi) = (high, high.saturating_mul(2));
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if state.certificate(mid).is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

impl GovernanceService {
    /// Waits until a read may be served (unless `stale`), then runs `f` on
    /// the state with the read point.
    async fn read<T>(
        &self,
        options: Option<api::ReadOptions>,
        f: impl FnOnce(&GovernanceState, api::ReadPoint) -> Result<T, Status>,
    ) -> Result<T, Status> {
        let stale = options.is_some_and(|o| o.stale);
        if !stale {
            if let Some(d) = self.core.diverged() {
                return Err(errors::read_status(&crate::reads::ReadError::Diverged {
                    detail: d.describe(),
                }));
            }
        }
        let linearizable = read_barrier(&self.core, stale, READ_TIMEOUT)
            .await
            .map_err(|e| errors::read_status(&e))?;
        let machine = self.core.machine.read();
        // Diverged while the read waited: no linearizable answer.
        if let (false, Some(d)) = (stale, &machine.checkpoints.diverged) {
            return Err(errors::read_status(&crate::reads::ReadError::Diverged {
                detail: d.describe(),
            }));
        }
        let point = api::ReadPoint {
            node_id: self.core.id,
            applied_index: machine.state_position().map_or(0, |l| l.index),
            committed_ms: machine.state.committed_time_ms(),
            linearizable,
            diverged: machine.checkpoints.diverged.is_some(),
        };
        f(&machine.state, point)
    }

    /// The command and the size of its postcard encoding: as received for
    /// the postcard form (one above `MAX_COMMAND_BYTES` is refused by its
    /// size alone, undecoded), computed for the JSON form. A request that
    /// does not decode is refused before ordering too.
    /// The postcard form's bytes come back too, to be forwarded as sent.
    #[allow(clippy::type_complexity)]
    fn decode_command(
        req: api::SubmitRequest,
    ) -> Result<(SignedCommand, usize, Option<Vec<u8>>), Status> {
        match req.command {
            Some(api::submit_request::Command::Postcard(bytes)) => {
                match api_service::decode_command(&bytes) {
                    Ok(command) => {
                        let len = bytes.len();
                        Ok((command, len, Some(bytes)))
                    }
                    Err(NodeError::Malformed(m)) => Err(errors::admission_invalid("postcard", m)),
                    Err(e) => Err(errors::node_status(&e)),
                }
            }
            Some(api::submit_request::Command::Json(text)) => {
                serde_json::from_str::<SignedCommand>(&text)
                    .map(|c| {
                        let len = admission::encoded_len(&c);
                        (c, len, None)
                    })
                    .map_err(|e| errors::admission_invalid("json", e))
            }
            None => Err(errors::admission_invalid(
                "command",
                "set either `postcard` or `json`",
            )),
        }
    }
}

type CertificateStream = Pin<Box<dyn Stream<Item = Result<api::Certificate, Status>> + Send>>;

#[tonic::async_trait]
impl Governance for GovernanceService {
    async fn submit(
        &self,
        req: Request<api::SubmitRequest>,
    ) -> Result<Response<api::SubmitResponse>, Status> {
        let source = api_service::source_ip(&req);
        let (command, encoded_len, original) =
            Self::decode_command(req.into_inner()).inspect_err(|status| {
                crate::limited!(
                    crate::logging::REFUSALS,
                    info!(
                        rule = "malformed",
                        remote = source.map(tracing::field::display),
                        error = %status.message(),
                        "command refused: it does not decode"
                    )
                );
            })?;
        let submitted = self
            .core
            .submit_from(command, encoded_len, source, original)
            .await
            .map_err(|e| errors::node_status(&e))?;
        match submitted.outcome {
            Ok(receipt) => Ok(Response::new(api::SubmitResponse {
                log_index: receipt.position.log_index,
                offset: receipt.position.offset,
                committed_ms: receipt.committed_ms.0,
                effect: serde_json::to_value(&receipt.effect)
                    .ok()
                    .and_then(|v| match v {
                        serde_json::Value::Object(m) => m.keys().next().cloned(),
                        serde_json::Value::String(s) => Some(s),
                        _ => None,
                    })
                    .unwrap_or_default(),
                receipt_json: serde_json::to_string(&receipt).unwrap_or_default(),
                nep: effect_nep(&receipt.effect),
            })),
            Err(e) => Err(errors::apply_status(&e, submitted.position)),
        }
    }

    async fn get_account(
        &self,
        req: Request<api::GetAccountRequest>,
    ) -> Result<Response<api::Account>, Status> {
        let req = req.into_inner();
        let account = parse_account("account", &req.account)?;
        self.read(req.read, |state, point| {
            Ok(Response::new(match state.account(&account) {
                Some(a) => api::Account {
                    account: account.to_hex(),
                    exists: true,
                    balance: a.balance.0,
                    staked: a.staked.0,
                    locked: a.locked.0,
                    next_nonce: a.next_nonce,
                    validator: a.validator,
                    read_point: Some(point),
                    deposited: a.deposited.0,
                    open_drafts: a.open_drafts,
                    max_open_drafts: neuroshard_governance::limits::MAX_OPEN_DRAFTS_PER_AUTHOR
                        as u32,
                },
                None => api::Account {
                    account: account.to_hex(),
                    exists: false,
                    next_nonce: 1,
                    read_point: Some(point),
                    ..Default::default()
                },
            }))
        })
        .await
    }

    async fn get_proposal(
        &self,
        req: Request<api::GetProposalRequest>,
    ) -> Result<Response<api::Proposal>, Status> {
        let req = req.into_inner();
        let nep = parse_nep("nep", req.nep)?;
        self.read(req.read, |state, point| {
            let p = state.proposal(nep).ok_or_else(|| {
                errors::query_status(&neuroshard_governance::QueryError::UnknownNep { nep })
            })?;
            Ok(Response::new(convert::proposal_to_proto(
                state,
                p,
                convert::BallotsRoot::Include,
                Some(point),
            )))
        })
        .await
    }

    async fn list_proposals(
        &self,
        req: Request<api::ListProposalsRequest>,
    ) -> Result<Response<api::ListProposalsResponse>, Status> {
        let req = req.into_inner();
        let filter = ProposalFilter {
            stage: convert::stage_from_proto(req.stage),
            nep_type: convert::nep_type_from_proto(req.nep_type),
            start_after: (req.start_after > 0).then_some(NepId(req.start_after)),
            limit: req.limit as usize,
        };
        self.read(req.read, |state, point| {
            // Each proposal carries its full text (up to ~90 KB), so a page
            // of many large drafts would not fit the message bound.
            let (proposals, truncated) = take_within(
                state.proposals(&filter).into_iter().map(|p| {
                    convert::proposal_to_proto(state, p, convert::BallotsRoot::Omit, None)
                }),
                MAX_LIST_RESPONSE_BYTES,
            );
            Ok(Response::new(api::ListProposalsResponse {
                proposals,
                read_point: Some(point),
                truncated,
            }))
        })
        .await
    }

    async fn get_tally(
        &self,
        req: Request<api::GetTallyRequest>,
    ) -> Result<Response<api::TallyView>, Status> {
        let req = req.into_inner();
        let nep = parse_nep("nep", req.nep)?;
        self.read(req.read, |state, point| {
            let t = state.tally(nep).map_err(|e| errors::query_status(&e))?;
            Ok(Response::new(convert::tally_to_proto(&t, Some(point))))
        })
        .await
    }

    async fn get_parameters(
        &self,
        req: Request<api::GetParametersRequest>,
    ) -> Result<Response<api::Parameters>, Status> {
        self.read(req.into_inner().read, |state, point| {
            let params = state.params();
            Ok(Response::new(api::Parameters {
                parameters: params
                    .iter()
                    .map(|(key, value)| api::Parameter {
                        key: key.to_owned(),
                        value: Some(convert::value_to_proto(value)),
                    })
                    .collect(),
                version: Some(convert::version_to_proto(state.protocol_version())),
                parameters_hash: params.hash().to_vec(),
                height: state
                    .chain()
                    .height_at(neuroshard_governance::Timestamp(point.committed_ms)),
                read_point: Some(point),
            }))
        })
        .await
    }

    async fn get_committee(
        &self,
        _req: Request<api::GetCommitteeRequest>,
    ) -> Result<Response<api::Committee>, Status> {
        let machine = self.core.machine.read();
        let chain = machine.state.chain();
        Ok(Response::new(api::Committee {
            committee_json: chain.committee.info.to_json_pretty(),
            committee_hash: chain.committee_hash.to_vec(),
            genesis_parameters: self.genesis.parameters.clone(),
            genesis_version: Some(self.genesis.version),
            block_interval_ms: self.genesis.block_interval_ms,
        }))
    }

    async fn get_certificate(
        &self,
        req: Request<api::GetCertificateRequest>,
    ) -> Result<Response<api::Certificate>, Status> {
        let req = req.into_inner();
        let by = req
            .by
            .ok_or_else(|| invalid_argument("by", "set either `sequence` or `nep`"))?;
        let log = self.core.issuance.clone();
        self.read(req.read, |state, point| {
            let sequence = match by {
                api::get_certificate_request::By::Sequence(s) => s,
                api::get_certificate_request::By::Nep(n) => {
                    let nep = parse_nep("nep", n)?;
                    let p = state.proposal(nep).ok_or_else(|| {
                        errors::query_status(&neuroshard_governance::QueryError::UnknownNep { nep })
                    })?;
                    *p.certificates.last().ok_or_else(|| {
                        errors::with_detail(
                            tonic::Code::NotFound,
                            api::ErrorDetail {
                                rule: "no_certificate".into(),
                                message: format!("{nep} has no certificate (stage {})", p.stage),
                                ..Default::default()
                            },
                        )
                    })?
                }
            };
            let r = state.certificate(sequence).ok_or_else(|| {
                errors::gov_status(
                    &neuroshard_governance::GovError::UnknownCertificate { sequence },
                    None,
                )
            })?;
            Ok(Response::new(convert::certificate_to_proto(
                r,
                log.latency_ms(sequence),
                Some(point),
            )))
        })
        .await
    }

    async fn list_certificates(
        &self,
        req: Request<api::ListCertificatesRequest>,
    ) -> Result<Response<api::ListCertificatesResponse>, Status> {
        let req = req.into_inner();
        let log = self.core.issuance.clone();
        self.read(req.read, |state, point| {
            // A certificate carries its payload (up to 256 KiB) in three
            // forms, so a page is bounded by bytes as well as by count.
            let (certificates, truncated) = take_within(
                state
                    .certificates(req.from_sequence.max(1), req.limit as usize)
                    .into_iter()
                    .map(|r| {
                        convert::certificate_to_proto(r, log.latency_ms(r.event.sequence), None)
                    }),
                MAX_LIST_RESPONSE_BYTES,
            );
            Ok(Response::new(api::ListCertificatesResponse {
                certificates,
                read_point: Some(point),
                truncated,
            }))
        })
        .await
    }

    type StreamCertificatesStream = CertificateStream;

    async fn stream_certificates(
        &self,
        req: Request<api::StreamCertificatesRequest>,
    ) -> Result<Response<Self::StreamCertificatesStream>, Status> {
        let streams = &self.core.certificate_streams;
        let source = api_service::source_ip(&req);
        let permit = streams.acquire(source).map_err(|why| {
            let message = match why {
                Refusal::TooManyStreamsFromSource => format!(
                    "{} certificate streams are open from {} (streams.max_certificate_streams_per_source); close one or retry later",
                    streams.per_source(),
                    source.map_or("this source".to_owned(), |ip| ip.to_string()),
                ),
                _ => format!(
                    "{} certificate streams are open on this validator (streams.max_certificate_streams); use another validator or retry later",
                    streams.total()
                ),
            };
            errors::with_detail(
                tonic::Code::ResourceExhausted,
                api::ErrorDetail {
                    rule: why.as_str().into(),
                    message,
                    ..Default::default()
                },
            )
        })?;
        // The stream keeps its connection out of the idle timeout while it
        // runs (and lets it go once a slow reader is cut off).
        let call = req
            .extensions()
            .get::<PeerIdentity>()
            .and_then(|p| p.activity.as_ref())
            .map(|a| a.begin());
        let slow_reader_timeout = self.core.slow_reader_timeout;
        let stats = streams.stats.clone();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let core = self.core.clone();
        let mut shutdown = self.shutdown.clone();
        let mut next = req.into_inner().from_sequence.max(1);
        tokio::spawn(async move {
            let _permit = permit;
            let _call = call;
            let mut applied = core.raft.metrics();
            loop {
                // Issued certificates from `next` on, stopping at the first
                // one still collecting shares: the stream has no gaps.
                let batch: Vec<api::Certificate> = {
                    let machine = core.machine.read();
                    let mut out = Vec::new();
                    while out.len() < STREAM_BUFFER {
                        match machine.state.certificate(next + out.len() as u64) {
                            Some(r) if r.issued.is_some() => {
                                out.push(convert::certificate_to_proto(
                                    r,
                                    core.issuance.latency_ms(r.event.sequence),
                                    None,
                                ))
                            }
                            _ => break,
                        }
                    }
                    out
                };
                let full = batch.len() == STREAM_BUFFER;
                for c in batch {
                    match tx.send_timeout(Ok(c), slow_reader_timeout).await {
                        Ok(()) => next += 1,
                        Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                            // The reader left a full buffer unread: end the
                            // stream and give its place to someone else.
                            stats.refuse(
                                Refusal::SlowReader,
                                source.map_or("in-process".to_owned(), |ip| ip.to_string()),
                                false,
                            );
                            return;
                        }
                        Err(mpsc::error::SendTimeoutError::Closed(_)) => return,
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    changed = applied.changed() => if changed.is_err() { return },
                    _ = shutdown.changed() => return,
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_vote_receipt(
        &self,
        req: Request<api::GetVoteReceiptRequest>,
    ) -> Result<Response<api::VoteReceipt>, Status> {
        let req = req.into_inner();
        let nep = parse_nep("nep", req.nep)?;
        let account = parse_account("account", &req.account)?;
        self.read(req.read, |state, point| {
            let r = state
                .vote_receipt(nep, &account)
                .map_err(|e| errors::query_status(&e))?;
            Ok(Response::new(convert::receipt_to_proto(&r, Some(point))))
        })
        .await
    }

    async fn get_status(
        &self,
        _req: Request<api::GetStatusRequest>,
    ) -> Result<Response<api::ClusterStatus>, Status> {
        let s = self.core.status().await;
        let (version, certificates, pending, state_bytes, state_budget_bytes) = {
            let machine = self.core.machine.read();
            let state = &machine.state;
            (
                state.protocol_version(),
                certificate_count(state),
                state.pending_certificates().len() as u64,
                state.state_bytes(),
                state.state_budget(),
            )
        };
        Ok(Response::new(api::ClusterStatus {
            node_id: s.node_id,
            role: s.role,
            leader: s.leader,
            term: s.term,
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            members: s.members,
            state_hash: hex::decode(&s.state_hash).unwrap_or_default(),
            committed_ms: s.committed_time_ms,
            chain_id: s.chain_id,
            version: Some(convert::version_to_proto(version)),
            certificates,
            pending_certificates: pending,
            state_bytes,
            state_budget_bytes,
            listeners: self
                .core
                .connections
                .iter()
                .map(|l| {
                    let l = l.status();
                    api::ListenerStatus {
                        name: l.name,
                        open: l.open,
                        handshaking: l.handshaking,
                        accepted: l.accepted,
                        committee_refused: l.committee_refused,
                        refused: l.refused.into_iter().collect(),
                    }
                })
                .collect(),
        }))
    }
}

/// The leading `items` whose encodings fit in `budget_bytes` together (the
/// first always, so a page is never empty while items remain), and whether
/// any item was left out.
fn take_within<M: Message>(
    items: impl IntoIterator<Item = M>,
    budget_bytes: usize,
) -> (Vec<M>, bool) {
    let mut taken = Vec::new();
    let mut bytes = 0;
    for item in items {
        let len = item.encoded_len();
        if !taken.is_empty() && bytes + len > budget_bytes {
            return (taken, true);
        }
        bytes += len;
        taken.push(item);
    }
    (taken, false)
}

#[cfg(test)]
#[path = "submit_tests.rs"]
mod submit_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(nep: u64, text_bytes: usize) -> api::Proposal {
        api::Proposal {
            nep,
            author: "a".repeat(text_bytes),
            ..Default::default()
        }
    }

    #[test]
    fn a_page_stops_at_its_byte_budget_and_says_so() {
        let items: Vec<_> = (1..=10).map(|n| proposal(n, 1_000)).collect();
        let one = items[0].encoded_len();
        // Room for three and a half: three are taken, the rest is left.
        let (page, truncated) = take_within(items.clone(), one * 7 / 2);
        assert_eq!(page.iter().map(|p| p.nep).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(truncated);
        // Exactly ten fit: nothing is left, so not truncated.
        let (page, truncated) = take_within(items.clone(), one * 10);
        assert_eq!(page.len(), 10);
        assert!(!truncated);
        // One item larger than the whole budget still makes a page of one.
        let (page, truncated) = take_within(items, one / 2);
        assert_eq!(page.len(), 1);
        assert!(truncated);
        let (page, truncated) = take_within(Vec::<api::Proposal>::new(), 10);
        assert!(page.is_empty() && !truncated);
    }
}
